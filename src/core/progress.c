/* progress.c: see progress.h. */
#include "core/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* Log mode (stderr not a terminal): at most a line per 5% of the work, or one per LOG_SECONDS. */
#define LOG_SECONDS 30.0

double progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_init(Progress *p, const char *label, size_t total, size_t start_done,
                   double units_per_step, const char *unit) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->start_done = start_done;
    p->units_per_step = units_per_step;
    p->t_start = p->t_last = progress_now();
    p->quiet = 0;
    p->tty = isatty(STDERR_FILENO);
    p->last_twentieth = total ? (int)(20 * start_done / total) : 0;
}

double progress_rate(const Progress *p, size_t done) {
    double dt = progress_now() - p->t_start;
    return dt > 0 ? (double)(done - p->start_done) * p->units_per_step / dt : 0.0;
}

static void format_duration(char *buf, size_t cap, double s) {
    if (s < 0 || s != s) {
        snprintf(buf, cap, "?");
    } else if (s < 60) {
        snprintf(buf, cap, "%.0fs", s);
    } else if (s < 3600) {
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    } else {
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    }
}

void progress_update(Progress *p, size_t done, const char *extra, int force) {
    double now = progress_now();
    if (p->quiet) return;
    const int last = force || done >= p->total;
    const int twentieth = p->total ? (int)(20 * (done < p->total ? done : p->total) / p->total) : 20;
    if (!last) {
        if (now - p->t_last < 1.0) return;
        if (!p->tty && twentieth == p->last_twentieth && now - p->t_last < LOG_SECONDS) return;
    }
    p->t_last = now;
    p->last_twentieth = twentieth;
    double elapsed = now - p->t_start;
    size_t run_done = done - p->start_done;
    double steps_per_s = elapsed > 0 ? (double)run_done / elapsed : 0;
    char eta[32], el[32];
    format_duration(eta, sizeof eta, steps_per_s > 0 ? (double)(p->total - done) / steps_per_s : -1);
    format_duration(el, sizeof el, elapsed);
    /* On a terminal: carriage return, the line, clear to its end; a newline only at the end. */
    fprintf(stderr, "%s%s %zu/%zu (%.0f%%) %.1f %s/s elapsed %s ETA %s%s%s%s", p->tty ? "\r" : "",
            p->label, done, p->total,
            p->total ? 100.0 * (double)done / (double)p->total : 100.0,
            steps_per_s * p->units_per_step, p->unit, el, eta, extra ? " " : "", extra ? extra : "",
            p->tty ? (last ? "\033[K\n" : "\033[K") : "\n");
}
