/* progress.h: the progress line of long work on stderr (done/total, rate, ETA), plus the
 * elapsed-time clock. House-style convention 9. On a terminal the line is rewritten in place about
 * once a second; into a file or a pipe (a log) a new line is written on every further 5% of the
 * work or after 30 s without one, so that a log stays readable; both print once at the end. */
#ifndef JTRAK_PROGRESS_H
#define JTRAK_PROGRESS_H

#include <stddef.h>

typedef struct {
    const char *label; /* e.g. "train" */
    const char *unit;  /* e.g. "img" for the rate */
    size_t total;      /* steps */
    size_t start_done; /* steps already done when this run started (resume) */
    double units_per_step;
    double t_start, t_last;
    int quiet;
    int tty;             /* stderr is a terminal: rewrite one line */
    int last_twentieth;  /* log mode: the 5% mark of the last line written */
} Progress;

double progress_now(void); /* monotonic seconds */
void progress_init(Progress *p, const char *label, size_t total, size_t start_done,
                   double units_per_step, const char *unit);
/* Reports `done` steps; `extra` (may be NULL) is appended, e.g. "loss 0.071". force prints now. */
void progress_update(Progress *p, size_t done, const char *extra, int force);
/* Units per second since the start of this run. */
double progress_rate(const Progress *p, size_t done);

#endif
