/* cli_run.h: runs the jtrak binary (JTRAK_CLI) as a user would, for the bad-input tests: the exit
 * status and what it printed on stderr. */
#ifndef JTRAK_TEST_CLI_RUN_H
#define JTRAK_TEST_CLI_RUN_H

#include <stddef.h>

/* Runs `jtrak <args>` through the shell; stderr is captured into err (NUL-terminated, truncated to
 * cap). Returns the exit status, or -1 if it did not exit normally (a crash). */
int cli_run(const char *args, char *err, size_t cap);
/* The same, with stdout captured into out (NUL-terminated, truncated to out_cap) as well. */
int cli_run_out(const char *args, char *out, size_t out_cap, char *err, size_t cap);

#endif
