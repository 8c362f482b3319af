/* fixture_npy.h: a test-only reader for the .npy fixtures written by the ref/ twin scripts
 * (numpy format versions 1-3, C order, little-endian float32 '<f4' or int64 '<i8'). Any problem
 * fails the current Criterion test with a message naming the file. */
#ifndef JTRAK_TEST_FIXTURE_NPY_H
#define JTRAK_TEST_FIXTURE_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef struct {
    int ndim;
    size_t shape[NPY_MAX_DIMS];
    size_t n; /* product of shape */
} NpyShape;

/* malloc'd data (free with free()); shape may be NULL. */
float *fixture_npy_f32(const char *path, NpyShape *shape);
int64_t *fixture_npy_i64(const char *path, NpyShape *shape);

#endif
