/* uniform.h: deterministic uniform(-1, 1) floats for tests that only need some values (an LCG keyed
 * by the seed; not a generator of any statistical quality). */
#ifndef JTRAK_TEST_UNIFORM_H
#define JTRAK_TEST_UNIFORM_H

#include <stddef.h>

void test_fill_uniform(float *x, size_t n, unsigned seed);

#endif
