/* nn_internal.h: helpers shared by the op files of src/nn (not part of the public contract). */
#ifndef JTRAK_NN_INTERNAL_H
#define JTRAK_NN_INTERNAL_H

#include "core/common.h"
#include "nn/nn.h"

#include <omp.h>

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

#endif
