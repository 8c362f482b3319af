/* nn.h: the stateless neural-network ops of jtrak, as forward/backward pairs over explicit float32
 * NCHW buffers (the llm.c pattern, house-style.md conventions 1, 2 and 8).
 *
 * Rules every op follows:
 *  - inputs are const, every buffer carries a shape comment; ops never allocate: scratch comes from
 *    the OpCtx;
 *  - backward ACCUMULATES (+=) into every gradient it touches (activation and parameter gradients);
 *    a NULL gradient pointer means "not needed" and is skipped: an activation gradient (din), and
 *    any parameter gradient (dw, dbias, ... : a parameter outside the selection of graph.h's
 *    graph_run_select_params), whose weight-gradient GEMM is then not run; the gradients that are
 *    computed are bitwise the same whatever else is skipped;
 *  - work is split over the batch with OpenMP, BLAS runs single-threaded inside; results do not
 *    depend on the number of threads (parameter gradients are reduced over the batch in a fixed
 *    order, see OpCtx);
 *  - parameter gradients go either summed over the batch, or one slab per example (per-example
 *    gradients, what attribution needs), as OpCtx.example_stride says. */
#ifndef JTRAK_NN_H
#define JTRAK_NN_H

#include <stddef.h>

/* Scratch and gradient mode shared by every op call. */
typedef struct {
    /* Per-thread scratch: thread t (omp_get_thread_num()) owns thread_buf[t*thread_floats ...]. */
    float *thread_buf;
    size_t thread_floats;
    int nthreads;
    /* Batch-summed mode only: room for the slots of one op's parameter gradients (weights and
     * biases together, grad_slots_floats), reduced into the real gradient in a fixed order. */
    float *grad_buf;
    size_t grad_floats;
    /* 0: parameter gradients are summed over the batch into the given pointer.
     * k > 0: example b's gradient of a tensor whose gradient pointer is d lives at d + b*k
     * (one full parameter slab per example). */
    size_t example_stride;
} OpCtx;

/* The calling thread's scratch region (thread_floats floats). */
float *opctx_scratch(const OpCtx *c);

/* Per-example parameter-gradient slots of one op call with n_tensors parameter tensors of sizes
 * numel[i] whose gradient pointers are d[i] (NULL: not needed; its slots are NULL and take no
 * room, whatever numel[i] says). In per-example mode slot (b, i) is d[i] + b*stride.
 * In summed mode the examples b with the same b / group share one zeroed region of grad_buf
 * (group = ceil(B / NN_GRAD_SLOTS), so at most NN_GRAD_SLOTS regions): the op accumulates a group's
 * examples into it in example order, and grad_slots_end adds the regions into d[i] in order, in
 * double. Every op backward that touches parameters uses these, over a loop on the batch with
 * schedule(static, group) (times the items per example), so that a group's examples run in order
 * on one thread and the sum does not depend on the thread count. Fewer regions than examples:
 * zeroing and reducing B copies of the parameters cost more memory traffic than the GEMMs that
 * fill them (a 128-channel 3x3 conv at batch 64: 38 MB per pass). */
enum { NN_GRAD_SLOTS = 16 };
typedef struct {
    const OpCtx *ctx;
    int B, n;
    int group; /* examples per slot: ceil(B / NN_GRAD_SLOTS) summed, 1 per-example */
    float *d[8];
    size_t numel[8];
    size_t per_example; /* sum of numel over the non-NULL d[i] */
    int any;            /* some d[i] is non-NULL: the op has a parameter gradient to compute */
} GradSlots;

/* Floats of grad_buf a summed-mode backward of a batch of B needs for an op with `params`
 * parameters. */
size_t grad_slots_floats(int B, size_t params);
void grad_slots_begin(GradSlots *s, const OpCtx *c, int B, int n_tensors, float *const *d,
                      const size_t *numel);
float *grad_slot(const GradSlots *s, int b, int i);
void grad_slots_end(GradSlots *s);

/* ---- conv2d: cross-correlation, weights (cout, cin, k, k), optional bias (cout) ---------------- */
enum {
    CONV_PAD_SAME = 0, /* symmetric zero padding (k-1)/2: 3x3 pad 1, 1x1 pad 0 */
    CONV_PAD_RB = 1    /* diffusers downsample_padding=0: one zero row at the bottom and one zero
                          column at the right, then no padding */
};
typedef struct {
    int B, cin, cout, H, W; /* input (B, cin, H, W) */
    int k;                  /* 1 or 3 */
    int stride;             /* 1 or 2 */
    int pad;                /* CONV_PAD_SAME or CONV_PAD_RB */
} Conv2dDims;
int conv2d_out_h(const Conv2dDims *d);
int conv2d_out_w(const Conv2dDims *d);
size_t conv2d_scratch_floats(const Conv2dDims *d); /* per thread */
void conv2d_forward(float *out /* (B,cout,Ho,Wo) */, const float *in /* (B,cin,H,W) */,
                    const float *w /* (cout,cin,k,k) */, const float *bias /* (cout) or NULL */,
                    const Conv2dDims *d, const OpCtx *c);
void conv2d_backward(float *din /* (B,cin,H,W) or NULL */, float *dw /* (cout,cin,k,k) */,
                     float *dbias /* (cout) or NULL */, const float *dout /* (B,cout,Ho,Wo) */,
                     const float *in /* (B,cin,H,W) */, const float *w /* (cout,cin,k,k) */,
                     const Conv2dDims *d, const OpCtx *c);

/* ---- group norm: G contiguous channel groups, biased variance, affine gamma/beta (C) ----------- */
typedef struct {
    int B, C, HW, G;
    float eps;
} GroupNormDims;
void groupnorm_forward(float *out /* (B,C,HW) */, float *mean /* (B,G) */, float *rstd /* (B,G) */,
                       const float *in /* (B,C,HW) */, const float *gamma /* (C) */,
                       const float *beta /* (C) */, const GroupNormDims *d, const OpCtx *c);
void groupnorm_backward(float *din /* (B,C,HW) */, float *dgamma /* (C) */, float *dbeta /* (C) */,
                        const float *dout /* (B,C,HW) */, const float *in /* (B,C,HW) */,
                        const float *mean /* (B,G) */, const float *rstd /* (B,G) */,
                        const float *gamma /* (C) */, const GroupNormDims *d, const OpCtx *c);
/* silu(groupnorm(x)) as one op (every group norm of a resnet block and conv_norm_out is followed
 * by SiLU): the same arithmetic as groupnorm_forward then silu_forward, bitwise, with the group
 * norm's output never written; the backward recomputes it from x and keeps dL/dy of one group in
 * the thread's scratch (groupnorm_silu_scratch_floats). dout is dL/dz. */
void groupnorm_silu_forward(float *out /* (B,C,HW) z */, float *mean /* (B,G) */,
                            float *rstd /* (B,G) */, const float *in /* (B,C,HW) */,
                            const float *gamma /* (C) */, const float *beta /* (C) */,
                            const GroupNormDims *d, const OpCtx *c);
size_t groupnorm_silu_scratch_floats(const GroupNormDims *d); /* per thread */
void groupnorm_silu_backward(float *din /* (B,C,HW) */, float *dgamma /* (C) */,
                             float *dbeta /* (C) */, const float *dout /* (B,C,HW) */,
                             const float *in /* (B,C,HW) */, const float *mean /* (B,G) */,
                             const float *rstd /* (B,G) */, const float *gamma /* (C) */,
                             const float *beta /* (C) */, const GroupNormDims *d, const OpCtx *c);

/* ---- SiLU: x * sigmoid(x) ---------------------------------------------------------------------- */
void silu_forward(float *out /* (n) */, const float *in /* (n) */, size_t n);
void silu_backward(float *din /* (n) */, const float *dout /* (n) */, const float *in /* (n) */,
                   size_t n);

/* ---- linear on a batch of vectors: y = W x + b, W (out, in) as torch nn.Linear ----------------- */
typedef struct {
    int B, in, out;
} LinearDims;
void linear_forward(float *y /* (B,out) */, const float *x /* (B,in) */, const float *w /* (out,in) */,
                    const float *bias /* (out) or NULL */, const LinearDims *d, const OpCtx *c);
void linear_backward(float *dx /* (B,in) or NULL */, float *dw /* (out,in) */,
                     float *dbias /* (out) or NULL */, const float *dy /* (B,out) */,
                     const float *x /* (B,in) */, const float *w /* (out,in) */,
                     const LinearDims *d, const OpCtx *c);

/* ---- embedding lookup: out_b = W[id_b], W (K, T) as torch nn.Embedding ------------------------ *
 * ids are in 0..K-1 (CHECK). Backward accumulates dout_b into row id_b of dW (summed or per
 * example, through GradSlots: the summed mode needs grad_slots_floats(B, K*T) of grad_buf). */
typedef struct {
    int B, K, T;
} EmbeddingDims;
void embedding_forward(float *out /* (B,T) */, const int *ids /* (B) */, const float *w /* (K,T) */,
                       const EmbeddingDims *d);
void embedding_backward(float *dw /* (K,T) */, const float *dout /* (B,T) */,
                        const int *ids /* (B) */, const EmbeddingDims *d, const OpCtx *c);

/* ---- sinusoidal timestep embedding (diffusers get_timestep_embedding, max_period 10000) --------- *
 * Computed in float32 in diffusers' op order (unet2d.md section 3). No parameters, no backward. */
void timestep_embedding(float *out /* (B,dim) */, const float *t /* (B) */, int B, int dim,
                        int flip_sin_to_cos, float freq_shift);

/* ---- broadcast add of a per-sample channel vector (the resnet time projection) ----------------- */
void add_channel_vec_forward(float *out /* (B,C,HW) */, const float *in /* (B,C,HW) */,
                             const float *v /* (B,C) */, int B, int C, int HW);
void add_channel_vec_backward(float *din /* (B,C,HW) or NULL */, float *dv /* (B,C) */,
                              const float *dout /* (B,C,HW) */, int B, int C, int HW);

/* ---- out = (a + b) * scale (residual sums; scale = 1/output_scale_factor) ---------------------- */
void add_scaled_forward(float *out, const float *a, const float *b, float scale, size_t n);
void add_scaled_backward(float *da, float *db, const float *dout, float scale, size_t n);

/* ---- spatial self-attention (diffusers Attention with _from_deprecated_attn_block) ------------ *
 * x is the group-normed input viewed as N = H*W tokens of C channels (token n = y*W + x);
 * Q/K/V = X Wq^T + bq ...; per head h (channels h*d .. h*d+d-1, d = C/heads):
 * O_h = softmax(Q_h K_h^T / sqrt(d)) V_h; Y = O Wo^T + bo; out = (Y^T + residual) * scale, with
 * scale = 1/rescale_output_factor. `saved` keeps what backward needs. */
typedef struct {
    int B, C, N, heads;
    float scale;
} AttnDims;
size_t attention_saved_floats(const AttnDims *d);  /* whole batch */
size_t attention_scratch_floats(const AttnDims *d); /* per thread */
void attention_forward(float *out /* (B,C,N) */, float *saved, const float *x /* (B,C,N) */,
                       const float *residual /* (B,C,N) */, const float *wq /* (C,C) */,
                       const float *bq, const float *wk, const float *bk, const float *wv,
                       const float *bv, const float *wo, const float *bo, const AttnDims *d,
                       const OpCtx *c);
/* dwq..dbo are the 8 parameter gradients in the order of the weights above. */
void attention_backward(float *dx /* (B,C,N) */, float *dresidual /* (B,C,N) */,
                        float *const dparams[8], const float *dout /* (B,C,N) */,
                        const float *x /* (B,C,N) */, const float *saved, const float *wq,
                        const float *wk, const float *wv, const float *wo, const AttnDims *d,
                        const OpCtx *c);

/* ---- layer norm over the C channels of each of N tokens (torch.nn.LayerNorm(C)) -------------- *
 * Channel-major x (B, C, N): token n's values are x[c*N + n]. Biased variance (torch), eps inside
 * the sqrt, affine gamma/beta (C); statistics accumulated in double. Parameter gradients summed
 * or per example through GradSlots (summed mode: grad_slots_floats(B, 2*C) of grad_buf). */
typedef struct {
    int B, C, N;
    float eps;
} LayerNormDims;
void layernorm_forward(float *out /* (B,C,N) */, float *mean /* (B,N) */, float *rstd /* (B,N) */,
                       const float *in /* (B,C,N) */, const float *gamma /* (C) */,
                       const float *beta /* (C) */, const LayerNormDims *d, const OpCtx *c);
void layernorm_backward(float *din /* (B,C,N) or NULL */, float *dgamma /* (C) */,
                        float *dbeta /* (C) */, const float *dout /* (B,C,N) */,
                        const float *in /* (B,C,N) */, const float *mean /* (B,N) */,
                        const float *rstd /* (B,N) */, const float *gamma /* (C) */,
                        const LayerNormDims *d, const OpCtx *c);

/* ---- GELU, exact erf form (torch F.gelu default), and quick GELU x*sigmoid(1.702x) (CLIP) ----- *
 * Elementwise; backwards accumulate (+=) into din (NULL: skipped). */
void gelu_forward(float *out /* (n) */, const float *in /* (n) */, size_t n);
void gelu_backward(float *din /* (n) += */, const float *dout /* (n) */, const float *in /* (n) */,
                   size_t n);
void quick_gelu_forward(float *out /* (n) */, const float *in /* (n) */, size_t n);
void quick_gelu_backward(float *din /* (n) += */, const float *dout /* (n) */,
                         const float *in /* (n) */, size_t n);

/* ---- GEGLU (diffusers activations.GEGLU after its Linear) ------------------------------------- *
 * in (B, 2F, N) channel-major: a = channels [0, F), g = channels [F, 2F); out = a * gelu(g). */
void geglu_forward(float *out /* (B,F,N) */, const float *in /* (B,2F,N) */, int B, int F, int N);
void geglu_backward(float *din /* (B,2F,N) += */, const float *dout /* (B,F,N) */,
                    const float *in /* (B,2F,N) */, int B, int F, int N);

/* ---- multi-head attention, channel-major (diffusers Attention / CLIPAttention) --------------- *
 * Queries from x, keys/values from ctx (cross-attention; self-attention passes ctx == x). Per
 * example:
 *   Q = Wq x + bq (C, N); K = Wk ctx + bk (C, L); V = Wv ctx + bv (C, L);
 *   heads split the C channels contiguously (head h = channels h*d .. h*d+d-1, d = C/heads);
 *   P_h = softmax over keys of (Q_h^T K_h) * d^-0.5 (N, L), row max subtracted; causal: key j > query
 *   i gets -inf (requires N == L; the CLIP text encoder);
 *   O_h = V_h P_h^T (d, N); out = Wo O + bo (C, N).
 * No residual (the caller adds it). Biases may be NULL (diffusers' Attention has to_q/to_k/to_v
 * without bias, to_out.0 with bias; CLIP has all four). The softmax scale is (float)pow(d, -0.5)
 * as in attention.c. Parameter gradients summed or per example through GradSlots (summed mode:
 * grad_slots_floats(B, C*(Cq + 2*Ckv + C) + 4*C) of grad_buf at most). */
typedef struct {
    int B, Cq, Ckv, C, N, L, heads, causal;
} MhaDims;
size_t mha_saved_floats(const MhaDims *d);   /* whole batch */
size_t mha_scratch_floats(const MhaDims *d); /* per thread (backward; the forward needs none) */
void mha_forward(float *out /* (B,C,N) */, float *saved /* mha_saved_floats */,
                 const float *x /* (B,Cq,N) */, const float *ctx /* (B,Ckv,L) */,
                 const float *const w[8] /* wq (C,Cq), bq (C), wk (C,Ckv), bk (C), wv (C,Ckv),
                                            bv (C), wo (C,C), bo (C); biases may be NULL */,
                 const MhaDims *d, const OpCtx *c);
/* dw: the gradients in the order of w, NULL exactly where w has no bias. dctx may equal dx for
 * self-attention (ctx == x): both sides then accumulate into it. */
void mha_backward(float *dx /* (B,Cq,N) += or NULL */, float *dctx /* (B,Ckv,L) += or NULL */,
                  float *const dw[8], const float *dout /* (B,C,N) */, const float *x /* (B,Cq,N) */,
                  const float *ctx /* (B,Ckv,L) */, const float *saved, const float *const w[8],
                  const MhaDims *d, const OpCtx *c);

/* ---- nearest-neighbour 2x upsample ------------------------------------------------------------- */
void upsample2x_forward(float *out /* (B,C,2H,2W) */, const float *in /* (B,C,H,W) */, int B, int C,
                        int H, int W);
void upsample2x_backward(float *din /* (B,C,H,W) */, const float *dout /* (B,C,2H,2W) */, int B,
                         int C, int H, int W);

/* ---- channel concat: out = [a, b] along channels ----------------------------------------------- */
void concat_forward(float *out /* (B,Ca+Cb,HW) */, const float *a /* (B,Ca,HW) */,
                    const float *b /* (B,Cb,HW) */, int B, int Ca, int Cb, int HW);
void concat_backward(float *da /* (B,Ca,HW) or NULL */, float *db /* (B,Cb,HW) or NULL */,
                     const float *dout /* (B,Ca+Cb,HW) */, int B, int Ca, int Cb, int HW);

/* ---- mean squared error: mean over n elements of (pred - target)^2, accumulated in double ------ */
double mse_forward(const float *pred, const float *target, size_t n);
/* dpred += scale * 2 (pred - target) / n */
void mse_backward(float *dpred, const float *pred, const float *target, size_t n, float scale);

/* ---- AdamW, exactly as torch.optim.AdamW (decoupled weight decay, bias correction) ------------- */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} AdamWConfig;
/* step is 1-based (the number of this update). m and v start at zero. */
void adamw_step(float *p, float *m, float *v, const float *g, size_t n, const AdamWConfig *cfg,
                long step);

#endif
