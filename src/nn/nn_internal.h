/* nn_internal.h: helpers shared by the op files of src/nn (not part of the public contract). */
#ifndef JTRAK_NN_INTERNAL_H
#define JTRAK_NN_INTERNAL_H

#include "core/common.h"
#include "nn/nn.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

/* The number of OpenMP threads an op may use: the caller's OpenMP setting, capped by the number
 * of per-thread scratch regions in the context (so opctx_scratch never runs out). */
static inline int nn_threads(const OpCtx *c) {
    int t = omp_get_max_threads();
    if (c && c->nthreads > 0 && c->nthreads < t) t = c->nthreads;
    return t < 1 ? 1 : t;
}

/* Entry check of every op that uses per-thread scratch or gradient slots: scratch is indexed by
 * omp_get_thread_num(), which is only unique when the op opens the outermost parallel region. */
static inline void nn_check_ctx(const OpCtx *c, size_t scratch_floats, const char *op) {
    CHECK(c != NULL, "%s: NULL OpCtx", op);
    CHECK(!omp_in_parallel(), "%s: called inside an OpenMP parallel region", op);
    if (scratch_floats > 0) {
        CHECK(c->thread_buf != NULL && c->nthreads > 0, "%s: OpCtx has no thread scratch", op);
        CHECK(c->thread_floats >= scratch_floats, "%s: thread scratch %zu floats < %zu needed", op,
              c->thread_floats, scratch_floats);
    }
}

/* The sum of x[0..n) in double over NN_SUM_LANES interleaved partial sums added up in a fixed
 * order at the end: the compiler vectorizes the lanes (one running double sum cannot be, without
 * the reassociation -O3 does not allow), and the order depends on n alone. */
#define NN_SUM_LANES 8

static inline double nn_sum_double(const float *x, size_t n) {
    double acc[NN_SUM_LANES] = {0};
    size_t i = 0;
    for (; i + NN_SUM_LANES <= n; i += NN_SUM_LANES)
        for (int l = 0; l < NN_SUM_LANES; l++)
            acc[l] += x[i + l];
    for (; i < n; i++)
        acc[i % NN_SUM_LANES] += x[i];
    double s = 0.0;
    for (int l = 0; l < NN_SUM_LANES; l++)
        s += acc[l];
    return s;
}

/* The dot product of x and y in double, in nn_sum_double's lanes and order. */
static inline double nn_dot_double(const float *x, const float *y, size_t n) {
    double acc[NN_SUM_LANES] = {0};
    size_t i = 0;
    for (; i + NN_SUM_LANES <= n; i += NN_SUM_LANES)
        for (int l = 0; l < NN_SUM_LANES; l++)
            acc[l] += (double)x[i + l] * y[i + l];
    for (; i < n; i++)
        acc[i % NN_SUM_LANES] += (double)x[i] * y[i];
    double s = 0.0;
    for (int l = 0; l < NN_SUM_LANES; l++)
        s += acc[l];
    return s;
}

/* The largest of x[0..n), n >= 1 (no NaN expected), over 16 lanes: the scalar running max does not
 * vectorize (GCC keeps its order for NaN), and a maximum does not depend on the order. */
static inline float nn_max_float(const float *x, size_t n) {
    float m[16];
    size_t i = 0;
    for (int l = 0; l < 16; l++)
        m[l] = x[0];
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++)
            m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
    for (; i < n; i++)
        m[0] = x[i] > m[0] ? x[i] : m[0];
    float mx = m[0];
    for (int l = 1; l < 16; l++)
        mx = m[l] > mx ? m[l] : mx;
    return mx;
}

/* exp(x) for float, written so that the compiler vectorizes loops that call it (libm's expf is a
 * scalar call: it was 7% of a training step inside SiLU). Range reduction x = n ln2 + r with ln2
 * split in two (Cody-Waite), e^r by its degree-6 Taylor polynomial on |r| <= ln2/2 (truncation
 * error < 1.2e-7 relative), 2^n put into the exponent bits. Within 2.2 ulp of exp on [-87, 88]
 * (inputs are clamped there: results stay normal, and SiLU/softmax only need the saturation). */
static inline float nn_expf(float x) {
    const float in = x;
    /* NaN fails both comparisons and is clamped to -87 here, so that the integer conversion and
     * shift below stay defined; it is returned as NaN at the end. */
    x = x >= -87.0f ? x : -87.0f;
    x = x <= 88.0f ? x : 88.0f;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to the nearest integer */
    float n = (x * 1.44269504088896341f + shifter) - shifter;
    float r = x - n * 0.693145751953125f; /* ln2's high part: n * it is exact */
    r = r - n * 1.428606765330187e-06f;   /* ln2's low part */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float y = p * scale;
    return in == in ? y : in; /* NaN in, NaN out */
}

#endif
