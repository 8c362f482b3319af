/* attention.c: diffusers' Attention as built for UNet2DModel's attention blocks
 * (_from_deprecated_attn_block, residual_connection=True, no mask), unet2d.md section 4.2, minus
 * the GroupNorm, which the caller runs as its own op. Per sample, with X = x^T (N tokens, C):
 *   Q = X Wq^T + bq, K = X Wk^T + bk, V = X Wv^T + bv                   (N, C) each
 *   head h (channels h*d .. h*d+d-1, d = C/heads):
 *     P_h = softmax_rows(Q_h K_h^T * d^-0.5)  (float, row max subtracted)  (N, N)
 *     O_h = P_h V_h                                                        (N, d)
 *   Y = O Wo^T + bo; out = (Y^T + residual) * scale, scale = 1/rescale_output_factor.
 * Backward is the textbook chain rule through these GEMMs and the softmax
 * (dS = P * (dP - rowsum(dP * P))). OpenMP over the batch, BLAS single-threaded.
 *
 * Saved layout, per sample b at saved + b * (4*N*C + heads*N*N):
 *   Q (N,C) | K (N,C) | V (N,C) | O (N,C) | P (heads,N,N). */
#include "core/linalg.h"
#include "nn/nn_internal.h"

#include <math.h>

static void attn_check(const AttnDims *d) {
    CHECK(d->B >= 1 && d->C >= 1 && d->N >= 1 && d->heads >= 1,
          "attention dims B=%d C=%d N=%d heads=%d", d->B, d->C, d->N, d->heads);
    CHECK(d->C % d->heads == 0, "attention: C=%d not divisible by heads=%d", d->C, d->heads);
}

static size_t attn_saved_per_sample(const AttnDims *d) {
    return 4 * (size_t)d->N * d->C + (size_t)d->heads * d->N * d->N;
}

size_t attention_saved_floats(const AttnDims *d) {
    attn_check(d);
    return (size_t)d->B * attn_saved_per_sample(d);
}

size_t attention_scratch_floats(const AttnDims *d) {
    attn_check(d);
    /* backward: dO, dQ, dK, dV (N,C) each and one head's dP (N,N); the forward needs none */
    return 4 * (size_t)d->N * d->C + (size_t)d->N * d->N;
}

/* diffusers: self.scale = dim_head ** -0.5, a Python double handed to a float32 kernel. */
static float attn_softmax_scale(const AttnDims *d) {
    return (float)pow((double)(d->C / d->heads), -0.5);
}

/* Q (N,C) = X Wq^T + bq with X = x^T, x (C,N): the output starts as the bias (torch's addmm). */
static void project(float *q, const float *x, const float *w, const float *bias, int C, int N) {
    for (int n = 0; n < N; n++)
        for (int ch = 0; ch < C; ch++)
            q[(size_t)n * C + ch] = bias ? bias[ch] : 0.0f;
    la_sgemm(1, 1, N, C, C, 1.0f, x, N, w, C, 1.0f, q, C);
}

void attention_forward(float *out /* (B,C,N) */, float *saved, const float *x /* (B,C,N) */,
                       const float *residual /* (B,C,N) */, const float *wq /* (C,C) */,
                       const float *bq, const float *wk, const float *bk, const float *wv,
                       const float *bv, const float *wo, const float *bo, const AttnDims *d,
                       const OpCtx *c) {
    attn_check(d);
    CHECK(out != x && out != residual, "attention_forward: out must not alias x or residual");
    const int C = d->C, N = d->N, H = d->heads, dh = C / H;
    const size_t CN = (size_t)C * N, NN = (size_t)N * N, per = attn_saved_per_sample(d);
    const float as = attn_softmax_scale(d), sc = d->scale;
#pragma omp parallel for schedule(static) num_threads(nn_threads(c))
    for (int b = 0; b < d->B; b++) {
        const float *xb = x + (size_t)b * CN, *rb = residual + (size_t)b * CN;     /* (C,N) */
        float *Q = saved + (size_t)b * per, *K = Q + CN, *V = K + CN, *O = V + CN; /* (N,C) */
        float *P = O + CN;                                                         /* (H,N,N) */
        float *ob = out + (size_t)b * CN;                                          /* (C,N) */
        project(Q, xb, wq, bq, C, N);
        project(K, xb, wk, bk, C, N);
        project(V, xb, wv, bv, C, N);
        for (int h = 0; h < H; h++) {
            float *Ph = P + (size_t)h * NN; /* (N,N) */
            la_sgemm(0, 1, N, N, dh, as, Q + h * dh, C, K + h * dh, C, 0.0f, Ph, N);
            for (int i = 0; i < N; i++) {
                float *row = Ph + (size_t)i * N;
                const float mx = nn_max_float(row, (size_t)N);
                for (int j = 0; j < N; j++) /* a loop of its own: it vectorizes */
                    row[j] = nn_expf(row[j] - mx);
                const float inv = (float)(1.0 / nn_sum_double(row, (size_t)N));
                for (int j = 0; j < N; j++)
                    row[j] *= inv;
            }
            la_sgemm(0, 0, N, dh, N, 1.0f, Ph, N, V + h * dh, C, 0.0f, O + h * dh, C);
        }
        /* Y^T (C,N) = Wo O^T, then (Y^T + bo + residual) * scale in torch's order. */
        la_sgemm(0, 1, C, N, C, 1.0f, wo, C, O, C, 0.0f, ob, N);
        for (int ch = 0; ch < C; ch++) {
            const float bc = bo ? bo[ch] : 0.0f;
            float *orow = ob + (size_t)ch * N;
            const float *rrow = rb + (size_t)ch * N;
            for (int n = 0; n < N; n++)
                orow[n] = ((orow[n] + bc) + rrow[n]) * sc;
        }
    }
}

/* dbias (C) += column sums of dM (N,C), in double, row by row (contiguous: it vectorizes), in
 * blocks of COLSUM_BLOCK columns. */
#define COLSUM_BLOCK 256
static void colsum_add(float *db, const float *dm, int N, int C) {
    double acc[COLSUM_BLOCK];
    for (int c0 = 0; c0 < C; c0 += COLSUM_BLOCK) {
        const int nc = C - c0 < COLSUM_BLOCK ? C - c0 : COLSUM_BLOCK;
        for (int ch = 0; ch < nc; ch++)
            acc[ch] = 0.0;
        for (int n = 0; n < N; n++) {
            const float *row = dm + (size_t)n * C + c0;
            for (int ch = 0; ch < nc; ch++)
                acc[ch] += row[ch];
        }
        for (int ch = 0; ch < nc; ch++)
            db[c0 + ch] += (float)acc[ch];
    }
}

void attention_backward(float *dx /* (B,C,N) */, float *dresidual /* (B,C,N) */,
                        float *const dparams[8], const float *dout /* (B,C,N) */,
                        const float *x /* (B,C,N) */, const float *saved, const float *wq,
                        const float *wk, const float *wv, const float *wo, const AttnDims *d,
                        const OpCtx *c) {
    attn_check(d);
    const size_t scratch = attention_scratch_floats(d);
    nn_check_ctx(c, scratch, "attention_backward");
    const int C = d->C, N = d->N, H = d->heads, dh = C / H;
    const size_t CN = (size_t)C * N, NN = (size_t)N * N, per = attn_saved_per_sample(d);
    const float as = attn_softmax_scale(d), sc = d->scale;
    GradSlots gs;
    const size_t numel[8] = {(size_t)C * C, (size_t)C, (size_t)C * C, (size_t)C,
                             (size_t)C * C, (size_t)C, (size_t)C * C, (size_t)C};
    grad_slots_begin(&gs, c, d->B, 8, dparams, numel);
    /* which of Q, K, V need their gradient dM (a selected weight or bias, or dx) */
    int need[3], need_any = 0;
    for (int p = 0; p < 3; p++) {
        need[p] = dx || gs.d[2 * p] || gs.d[2 * p + 1];
        need_any |= need[p];
    }
    const float *wqkv[3] = {wq, wk, wv};
#pragma omp parallel for schedule(static, gs.group) num_threads(nn_threads(c))
    for (int b = 0; b < d->B; b++) {
        const float *xb = x + (size_t)b * CN, *g = dout + (size_t)b * CN; /* (C,N) */
        const float *Q = saved + (size_t)b * per, *K = Q + CN, *V = K + CN, *O = V + CN;
        const float *P = O + CN;                                                   /* (H,N,N) */
        float *dO = opctx_scratch(c), *dQ = dO + CN, *dK = dQ + CN, *dV = dK + CN; /* (N,C) */
        float *dP = dV + CN;                                                       /* (N,N) */
        if (dresidual) {
            float *dr = dresidual + (size_t)b * CN;
            for (size_t i = 0; i < CN; i++)
                dr[i] += g[i] * sc;
        }
        /* dY^T = scale * g (C,N): dbo += rowsums, dWo += dY^T O, dO = dY Wo. */
        float *sbo = grad_slot(&gs, b, 7);
        if (sbo) {
            for (int ch = 0; ch < C; ch++) {
                const double acc = nn_sum_double(g + (size_t)ch * N, (size_t)N);
                sbo[ch] += (float)(sc * acc);
            }
        }
        float *swo = grad_slot(&gs, b, 6);
        if (swo) la_sgemm(0, 0, C, C, N, sc, g, N, O, C, 1.0f, swo, C);
        if (!need_any) continue;
        la_sgemm(1, 0, N, C, C, sc, g, N, wo, C, 0.0f, dO, C);
        for (int h = 0; h < H; h++) {
            const float *Ph = P + (size_t)h * NN;
            if (need[2])
                la_sgemm(1, 0, N, dh, N, 1.0f, Ph, N, dO + h * dh, C, 0.0f, dV + h * dh, C);
            if (!need[0] && !need[1]) continue;
            la_sgemm(0, 1, N, N, dh, 1.0f, dO + h * dh, C, V + h * dh, C, 0.0f, dP, N);
            for (int i = 0; i < N; i++) { /* softmax backward, dS overwrites dP */
                const float *pr = Ph + (size_t)i * N;
                float *dr = dP + (size_t)i * N;
                const float fdot = (float)nn_dot_double(pr, dr, (size_t)N);
                for (int j = 0; j < N; j++)
                    dr[j] = pr[j] * (dr[j] - fdot);
            }
            if (need[0]) la_sgemm(0, 0, N, dh, N, as, dP, N, K + h * dh, C, 0.0f, dQ + h * dh, C);
            if (need[1]) la_sgemm(1, 0, N, dh, N, as, dP, N, Q + h * dh, C, 0.0f, dK + h * dh, C);
        }
        const float *dM[3] = {dQ, dK, dV};
        for (int p = 0; p < 3; p++) {
            if (!need[p]) continue;
            /* M = X W^T + bias: dW += dM^T X, dbias += colsum dM, dx (C,N) += W^T dM^T. */
            float *sw = grad_slot(&gs, b, 2 * p);
            if (sw) la_sgemm(1, 1, C, C, N, 1.0f, dM[p], C, xb, N, 1.0f, sw, C);
            float *sb = grad_slot(&gs, b, 2 * p + 1);
            if (sb) colsum_add(sb, dM[p], N, C);
            if (dx)
                la_sgemm(1, 1, C, N, C, 1.0f, wqkv[p], C, dM[p], C, 1.0f, dx + (size_t)b * CN, N);
        }
    }
    grad_slots_end(&gs);
}
