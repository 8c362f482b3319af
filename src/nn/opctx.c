/* opctx.c: per-thread scratch lookup and the per-example parameter-gradient slots (GradSlots) that
 * every op backward writes through. In summed mode the B per-example slots live in the context's
 * grad_buf and are reduced in example order (b = 0..B-1, accumulated in double), so a batch
 * gradient does not depend on how many threads computed it (house-style convention 7). */
#include "core/common.h"
#include "nn/nn.h"

#include <omp.h>
#include <string.h>

float *opctx_scratch(const OpCtx *c) {
    int t = omp_get_thread_num();
    CHECK(c->thread_buf != NULL, "OpCtx has no thread scratch");
    CHECK(t < c->nthreads, "thread %d has no scratch (OpCtx.nthreads = %d)", t, c->nthreads);
    return c->thread_buf + (size_t)t * c->thread_floats;
}

/* Summed-mode slots are zeroed in fixed chunks so the memset runs on all threads. */
#define SLOT_ZERO_CHUNK ((size_t)1 << 16)

void grad_slots_begin(GradSlots *s, const OpCtx *c, int B, int n_tensors, float *const *d,
                      const size_t *numel) {
    CHECK(c != NULL, "NULL OpCtx");
    CHECK(B >= 1, "batch %d", B);
    CHECK(n_tensors >= 1 && n_tensors <= 8, "%d tensors (1..8 supported)", n_tensors);
    s->ctx = c;
    s->B = B;
    s->n = n_tensors;
    s->per_example = 0;
    for (int i = 0; i < n_tensors; i++) {
        s->d[i] = d[i];
        s->numel[i] = numel[i];
        s->per_example += numel[i];
    }
    if (c->example_stride > 0) return;
    size_t total;
    CHECK(jt_mul_size((size_t)B, s->per_example, &total), "grad slot size overflows");
    CHECK(c->grad_buf != NULL && c->grad_floats >= total,
          "OpCtx.grad_buf holds %zu floats, summed-mode backward needs B*params = %d*%zu = %zu",
          c->grad_floats, B, s->per_example, total);
    size_t nchunks = (total + SLOT_ZERO_CHUNK - 1) / SLOT_ZERO_CHUNK;
    float *buf = c->grad_buf;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t k = 0; k < nchunks; k++) {
        size_t lo = k * SLOT_ZERO_CHUNK;
        size_t len = total - lo < SLOT_ZERO_CHUNK ? total - lo : SLOT_ZERO_CHUNK;
        memset(buf + lo, 0, len * sizeof(float));
    }
}

float *grad_slot(const GradSlots *s, int b, int i) {
    CHECK(b >= 0 && b < s->B && i >= 0 && i < s->n, "slot (%d, %d) of (%d, %d)", b, i, s->B, s->n);
    if (s->d[i] == NULL) return NULL;
    if (s->ctx->example_stride > 0) return s->d[i] + (size_t)b * s->ctx->example_stride;
    size_t off = 0;
    for (int k = 0; k < i; k++)
        off += s->numel[k];
    return s->ctx->grad_buf + (size_t)b * s->per_example + off;
}

void grad_slots_end(GradSlots *s) {
    if (s->ctx->example_stride > 0) return;
    const float *buf = s->ctx->grad_buf;
    size_t P = s->per_example, off = 0;
    int B = s->B;
    for (int i = 0; i < s->n; i++) {
        float *d = s->d[i];
        size_t n = s->numel[i];
        if (d != NULL) {
            /* Parallel over elements, never over examples: each element sums its B slots in
             * order b = 0..B-1, in double, whatever the thread count. */
#pragma omp parallel for schedule(static) if (n * (size_t)B > 32768)
            for (size_t j = 0; j < n; j++) {
                double acc = d[j];
                for (int b = 0; b < B; b++)
                    acc += buf[(size_t)b * P + off + j];
                d[j] = (float)acc;
            }
        }
        off += n;
    }
}
