/* uniform.c: see uniform.h. */
#include "helpers/uniform.h"

void test_fill_uniform(float *x, size_t n, unsigned seed) {
    unsigned long long s = 0x9E3779B97F4A7C15ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}
