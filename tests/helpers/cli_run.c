/* cli_run.c: see cli_run.h. */
#include "helpers/cli_run.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int cli_run(const char *args, char *err, size_t cap) {
    char tmpl[] = "/tmp/jtrak-cli-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) return -1;
    close(fd);
    size_t n = strlen(args) + strlen(tmpl) + strlen(JTRAK_CLI) + 64;
    char *cmd = malloc(n);
    /* exec: the shell becomes jtrak, which therefore keeps the parent-death signal set below */
    snprintf(cmd, n, "exec %s %s >/dev/null 2>%s", JTRAK_CLI, args, tmpl);
    const pid_t parent = getpid();
    int status = -1;
    pid_t pid = fork();
    if (pid == 0) {
        /* jtrak dies with the test: a test runner killed mid-run (a timeout, ^C) used to leave
         * `jtrak train` children running */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127); /* the test died before prctl */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    free(cmd);
    FILE *f = fopen(tmpl, "r");
    size_t got = f ? fread(err, 1, cap - 1, f) : 0;
    err[got] = 0;
    if (f) fclose(f);
    unlink(tmpl);
    if (status == -1 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}
