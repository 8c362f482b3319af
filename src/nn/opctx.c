/* opctx.c: per-thread scratch lookup and the parameter-gradient slots (GradSlots) that every op
 * backward writes through. In summed mode at most NN_GRAD_SLOTS slots live in the context's
 * grad_buf, each filled by a fixed group of examples in order, and are reduced in slot order
 * (accumulated in double), so a batch gradient does not depend on how many threads computed it
 * (house-style convention 7). */
#include "core/common.h"
#include "nn/nn.h"

#include <omp.h>
#include <string.h>

/* Examples per summed-mode slot, and the slots a batch of B fills. */
static int slot_group(int B) {
    return (B + NN_GRAD_SLOTS - 1) / NN_GRAD_SLOTS;
}
static int slot_count(int B) {
    return (B + slot_group(B) - 1) / slot_group(B);
}

size_t grad_slots_floats(int B, size_t params) {
    size_t n;
    CHECK(jt_mul_size((size_t)slot_count(B), params, &n), "grad slot size overflows");
    return n;
}

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
    s->any = 0;
    for (int i = 0; i < n_tensors; i++) {
        s->d[i] = d[i];
        s->numel[i] = d[i] ? numel[i] : 0; /* an unneeded gradient takes no slot room */
        s->per_example += s->numel[i];
        s->any |= d[i] != NULL;
    }
    s->group = c->example_stride > 0 ? 1 : slot_group(B);
    if (c->example_stride > 0 || !s->any) return;
    const size_t total = grad_slots_floats(B, s->per_example);
    CHECK(c->grad_buf != NULL && c->grad_floats >= total,
          "OpCtx.grad_buf holds %zu floats, summed-mode backward of batch %d needs %zu "
          "(params %zu)",
          c->grad_floats, B, total, s->per_example);
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
    return s->ctx->grad_buf + (size_t)(b / s->group) * s->per_example + off;
}

/* Elements reduced at a time: their double sums stay in L1 while the slots stream past. */
#define SLOT_REDUCE_CHUNK 512

void grad_slots_end(GradSlots *s) {
    if (s->ctx->example_stride > 0 || !s->any) return;
    const float *buf = s->ctx->grad_buf;
    const size_t P = s->per_example;
    const int slots = slot_count(s->B);
    size_t off = 0;
    for (int i = 0; i < s->n; i++) {
        float *d = s->d[i];
        const size_t n = s->numel[i];
        if (d != NULL) {
            /* Parallel over elements, never over slots: each element sums its slots in order
             * 0, 1, ..., in double, whatever the thread count. */
            const size_t nchunks = (n + SLOT_REDUCE_CHUNK - 1) / SLOT_REDUCE_CHUNK;
#pragma omp parallel for schedule(static) if (n * (size_t)slots > 32768)
            for (size_t ch = 0; ch < nchunks; ch++) {
                const size_t j0 = ch * SLOT_REDUCE_CHUNK;
                const size_t len = n - j0 < SLOT_REDUCE_CHUNK ? n - j0 : SLOT_REDUCE_CHUNK;
                double acc[SLOT_REDUCE_CHUNK];
                for (size_t j = 0; j < len; j++)
                    acc[j] = d[j0 + j];
                for (int q = 0; q < slots; q++) {
                    const float *src = buf + (size_t)q * P + off + j0;
                    for (size_t j = 0; j < len; j++)
                        acc[j] += src[j];
                }
                for (size_t j = 0; j < len; j++)
                    d[j0 + j] = (float)acc[j];
            }
        }
        off += n;
    }
}
