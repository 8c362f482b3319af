/* embedding.c: torch.nn.Embedding on a batch of ids, out_b = W[id_b] with W (K, T) (diffusers
 * UNet2DModel's class_embedding with class_embed_type null: its row is added to the time
 * embedding). Backward: dW[id_b] += dout_b, through GradSlots like every parameter gradient, so
 * summed mode reduces the examples in a fixed order (bitwise independent of the thread count) and
 * per-example mode writes example b's row into its own slab. Ids have no gradient. */
#include "nn/nn_internal.h"

static void emb_check(const EmbeddingDims *d, const int *ids) {
    CHECK(d->B >= 1 && d->K >= 1 && d->T >= 1, "embedding dims B=%d K=%d T=%d", d->B, d->K, d->T);
    CHECK(ids != NULL, "embedding: NULL ids");
    for (int b = 0; b < d->B; b++)
        CHECK(ids[b] >= 0 && ids[b] < d->K, "embedding: id %d of example %d is outside 0..%d",
              ids[b], b, d->K - 1);
}

void embedding_forward(float *out /* (B,T) */, const int *ids /* (B) */,
                       const float *w /* (K,T) */, const EmbeddingDims *d) {
    emb_check(d, ids);
    const size_t T = (size_t)d->T;
    for (int b = 0; b < d->B; b++)
        memcpy(out + (size_t)b * T, w + (size_t)ids[b] * T, T * sizeof(float));
}

void embedding_backward(float *dw /* (K,T) */, const float *dout /* (B,T) */,
                        const int *ids /* (B) */, const EmbeddingDims *d, const OpCtx *c) {
    emb_check(d, ids);
    nn_check_ctx(c, 0, "embedding_backward");
    if (!dw) return; /* the table is not selected: nothing to compute */
    const size_t T = (size_t)d->T;
    GradSlots gs;
    float *dptr[1] = {dw};
    size_t numel[1] = {(size_t)d->K * T};
    grad_slots_begin(&gs, c, d->B, 1, dptr, numel);
    /* a group's examples in order on one thread (schedule(static, group)): two examples with the
     * same id add into the same slot row in example order */
#pragma omp parallel for schedule(static, gs.group) num_threads(nn_threads(c))
    for (int b = 0; b < d->B; b++) {
        float *row = grad_slot(&gs, b, 0) + (size_t)ids[b] * T; /* (T) */
        const float *g = dout + (size_t)b * T;
        for (size_t j = 0; j < T; j++)
            row[j] += g[j];
    }
    grad_slots_end(&gs);
}
