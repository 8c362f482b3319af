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
/* Runs `jtrak <args>` (printf-style) and expects what every bad input must give: exit `status` and
 * one line on stderr starting "jtrak CMD:" that contains every string of `want` (NULL-terminated,
 * or NULL). stderr stays in err for further checks. */
void cli_expect_failure(char *err, size_t cap, int status, const char *cmd,
                        const char *const *want, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
