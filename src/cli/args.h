/* args.h: the command-line options of a subcommand: "--name value" pairs, "--flag" switches and
 * positional words. Every option a command reads is declared by reading it; args_finish then
 * refuses any option the user gave that the command did not read (a usage error, exit 2). */
#ifndef JTRAK_CLI_ARGS_H
#define JTRAK_CLI_ARGS_H

#include <stdint.h>

typedef struct {
    const char *cmd;
    int argc;
    char **argv;
    unsigned char *used; /* per argv entry */
    int bad;             /* a usage error was reported */
} Args;

void args_init(Args *a, const char *cmd, int argc, char **argv);
void args_free(Args *a);
int args_flag(Args *a, const char *name);                  /* --name present */
const char *args_str(Args *a, const char *name, const char *dflt);
long args_long(Args *a, const char *name, long dflt, long lo, long hi);
double args_double(Args *a, const char *name, double dflt, double lo, double hi);
uint64_t args_u64(Args *a, const char *name, uint64_t dflt);
/* The i-th word that is not an option (or NULL). */
const char *args_positional(Args *a, int i);
/* Returns 0 if every argument was used and no usage error happened; else prints and returns 2. */
int args_finish(Args *a);

#endif
