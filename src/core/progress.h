/* progress.h: the progress line of long work on stderr (done/total, rate, ETA), printed at most
 * about once a second and once at the end, plus the elapsed-time clock. House-style convention 9. */
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
} Progress;

double progress_now(void); /* monotonic seconds */
void progress_init(Progress *p, const char *label, size_t total, size_t start_done,
                   double units_per_step, const char *unit);
/* Reports `done` steps; `extra` (may be NULL) is appended, e.g. "loss 0.071". force prints now. */
void progress_update(Progress *p, size_t done, const char *extra, int force);
/* Units per second since the start of this run. */
double progress_rate(const Progress *p, size_t done);

#endif
