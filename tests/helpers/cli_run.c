/* cli_run.c: see cli_run.h. */
#include "helpers/cli_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int cli_run(const char *args, char *err, size_t cap) {
    char tmpl[] = "/tmp/jtrak-cli-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) return -1;
    close(fd);
    size_t n = strlen(args) + strlen(tmpl) + strlen(JTRAK_CLI) + 64;
    char *cmd = malloc(n);
    snprintf(cmd, n, "%s %s >/dev/null 2>%s", JTRAK_CLI, args, tmpl);
    int status = system(cmd);
    free(cmd);
    FILE *f = fopen(tmpl, "r");
    size_t got = f ? fread(err, 1, cap - 1, f) : 0;
    err[got] = 0;
    if (f) fclose(f);
    unlink(tmpl);
    if (status == -1 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}
