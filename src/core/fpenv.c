/* fpenv.c: see fpenv.h. Threads created later inherit the creating thread's MXCSR. */
#include "core/fpenv.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

static void set_this_thread(void) {
#if defined(__SSE__)
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
#endif
}

void fpenv_flush_denormals(void) {
    set_this_thread();
#pragma omp parallel
    set_this_thread();
}
