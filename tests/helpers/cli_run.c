/* cli_run.c: see cli_run.h. */
#include "helpers/cli_run.h"

#include <criterion/criterion.h>
#include <stdarg.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* The whole of file `path` (up to cap - 1 bytes) into buf, NUL-terminated; the file removed. */
static void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[got] = 0;
    if (f) fclose(f);
    unlink(path);
}

int cli_run_out(const char *args, char *out, size_t out_cap, char *err, size_t cap) {
    char tmpl[] = "/tmp/jtrak-cli-XXXXXX", otmpl[] = "/tmp/jtrak-out-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) return -1;
    close(fd);
    if (out) {
        fd = mkstemp(otmpl);
        if (fd < 0) {
            unlink(tmpl);
            return -1;
        }
        close(fd);
    }
    size_t n = strlen(args) + 2 * strlen(tmpl) + strlen(JTRAK_CLI) + 64;
    char *cmd = malloc(n);
    /* exec: the shell becomes jtrak, which therefore keeps the parent-death signal set below */
    snprintf(cmd, n, "exec %s %s >%s 2>%s", JTRAK_CLI, args, out ? otmpl : "/dev/null", tmpl);
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
    slurp(tmpl, err, cap);
    if (out) slurp(otmpl, out, out_cap);
    if (status == -1 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

int cli_run(const char *args, char *err, size_t cap) {
    return cli_run_out(args, NULL, 0, err, cap);
}

void cli_expect_failure(char *err, size_t cap, int status, const char *cmd,
                        const char *const *want, const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int got = cli_run(args, err, cap);
    cr_expect_eq(got, status, "jtrak %s: exit %d, want %d; stderr: %s", args, got, status, err);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "jtrak %s:", cmd);
    cr_expect(strncmp(err, prefix, strlen(prefix)) == 0, "stderr does not start with '%s': %s",
              prefix, err);
    const char *nl = strchr(err, '\n');
    cr_expect(nl && nl[1] == 0, "stderr is not one line: %s", err);
    for (int i = 0; want && want[i]; i++)
        cr_expect(strstr(err, want[i]) != NULL, "stderr lacks '%s': %s", want[i], err);
}
