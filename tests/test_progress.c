/* test_progress.c: the progress line in log mode (stderr not a terminal): a line per 5% of the
 * work, or after 30 s without one, and always the last one; never a line per update. The clock is
 * moved by setting the struct's last-print time back, as if that much time had passed. */
#include "core/progress.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Runs `updates` updates of a progress of `total` steps with stderr sent to a file, moving the
 * last-print time back by `seconds` before each; returns the number of lines written. */
static int lines_written(size_t total, size_t updates, double seconds) {
    char path[] = "/tmp/jtrak_progress_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    Progress p;
    progress_init(&p, "work", total, 0, 1.0, "items");
    p.tty = 0; /* the file is not a terminal anyway; be explicit */
    for (size_t i = 1; i <= updates; i++) {
        p.t_last -= seconds;
        progress_update(&p, i * total / updates, NULL, 0);
    }
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    FILE *f = fdopen(fd, "r");
    rewind(f);
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF) lines += c == '\n';
    fclose(f);
    unlink(path);
    return lines;
}

Test(progress, log_mode_writes_a_line_per_five_percent) {
    /* 1000 updates half a "second" apart (25 s per 5%): one line per 5% mark (20), not 1000 */
    int n = lines_written(1000, 1000, 0.5);
    cr_assert_eq(n, 20, "%d lines", n);
}

Test(progress, log_mode_writes_after_thirty_quiet_seconds) {
    /* 100 updates of 1% each, 31 "seconds" apart: every update is past the 30 s limit */
    cr_assert_eq(lines_written(100000, 100, 31.0), 100);
}

Test(progress, the_last_update_is_always_written) {
    /* updates faster than a second: only the final one */
    cr_assert_eq(lines_written(50, 50, 0.0), 1);
}
