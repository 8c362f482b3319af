/* fpenv.h: the floating-point environment of jtrak's threads. */
#ifndef JTRAK_FPENV_H
#define JTRAK_FPENV_H

/* Sets flush-to-zero and denormals-are-zero on the calling thread and on every thread of the
 * OpenMP pool. Why: during training some activations and Adam moments decay into the denormal
 * range, where x86 arithmetic is ~100x slower; measured on fm-xs, a training step slowed down 2.3x
 * within 40 steps without it. Values below 1.2e-38 become 0, far below every tolerance we test. */
void fpenv_flush_denormals(void);

#endif
