/* mha.c: multi-head attention on channel-major tensors: diffusers' Attention as the
 * BasicTransformerBlock's attn1 (self) and attn2 (cross, keys/values from the text context) use it
 * (ldm.md 2.4: no mask, no residual, rescale 1), and CLIP's causal self-attention (ldm.md 4.1).
 * Per example, x (Cq, N) and ctx (Ckv, L) channel-major:
 *   Q = Wq x + bq (C,N), K = Wk ctx + bk (C,L), V = Wv ctx + bv (C,L)
 *   head h (rows h*d .. h*d+d-1, d = C/heads):
 *     P_h = softmax_rows(Q_h^T K_h * d^-0.5)   (N,L), float, row max subtracted; causal: only
 *           keys j <= i enter row i (the -inf of the mask gives exactly 0 weight)
 *     O_h = V_h P_h^T                          (d,N)
 *   out = Wo O + bo                            (C,N)
 * diffusers computes the same in token-major (B, N, C) layout; the numbers agree up to summation
 * order. Backward is the chain rule through these GEMMs and the softmax
 * (dS = P * (dP - rowsum(dP * P))). OpenMP over the batch, BLAS single-threaded (la_sgemm),
 * parameter gradients through GradSlots.
 *
 * Saved layout, per example b at saved + b * (2*C*N + 2*C*L + heads*N*L):
 *   Q (C,N) | K (C,L) | V (C,L) | O (C,N) | P (heads,N,L).
 * Backward scratch per thread: dO (C,N) | dQ (C,N) | dK (C,L) | dV (C,L) | dP (N,L). */
#include "core/linalg.h"
#include "nn/nn_internal.h"

#include <math.h>

static void mha_check(const MhaDims *d) {
    CHECK(d->B >= 1 && d->Cq >= 1 && d->Ckv >= 1 && d->C >= 1 && d->N >= 1 && d->L >= 1 &&
              d->heads >= 1,
          "mha dims B=%d Cq=%d Ckv=%d C=%d N=%d L=%d heads=%d", d->B, d->Cq, d->Ckv, d->C, d->N,
          d->L, d->heads);
    CHECK(d->C % d->heads == 0, "mha: C=%d not divisible by heads=%d", d->C, d->heads);
    CHECK(!d->causal || d->N == d->L, "mha: causal attention needs N == L (N=%d L=%d)", d->N, d->L);
}

static size_t mha_saved_per_example(const MhaDims *d) {
    return 2 * (size_t)d->C * d->N + 2 * (size_t)d->C * d->L + (size_t)d->heads * d->N * d->L;
}

size_t mha_saved_floats(const MhaDims *d) {
    mha_check(d);
    return (size_t)d->B * mha_saved_per_example(d);
}

size_t mha_scratch_floats(const MhaDims *d) {
    mha_check(d);
    return 2 * (size_t)d->C * d->N + 2 * (size_t)d->C * d->L + (size_t)d->N * d->L;
}

/* diffusers: self.scale = dim_head ** -0.5, a Python double handed to a float32 kernel. */
static float mha_softmax_scale(const MhaDims *d) {
    return (float)pow((double)(d->C / d->heads), -0.5);
}

/* M (C,T) = W (C,Cin) x (Cin,T) + bias: the output starts as the bias. */
static void project(float *m, const float *w, const float *bias, const float *x, int C, int Cin,
                    int T) {
    for (int ch = 0; ch < C; ch++) {
        const float bc = bias ? bias[ch] : 0.0f;
        float *row = m + (size_t)ch * T;
        for (int t = 0; t < T; t++)
            row[t] = bc;
    }
    la_sgemm(0, 0, C, T, Cin, 1.0f, w, Cin, x, T, 1.0f, m, T);
}

void mha_forward(float *out /* (B,C,N) */, float *saved, const float *x /* (B,Cq,N) */,
                 const float *ctx /* (B,Ckv,L) */, const float *const w[8], const MhaDims *d,
                 const OpCtx *c) {
    mha_check(d);
    CHECK(out != x && out != ctx, "mha_forward: out must not alias x or ctx");
    for (int i = 0; i < 8; i += 2)
        CHECK(w[i] != NULL, "mha_forward: NULL weight %d", i);
    const int C = d->C, Cq = d->Cq, Ckv = d->Ckv, N = d->N, L = d->L, H = d->heads, dh = C / H;
    const size_t CN = (size_t)C * N, CL = (size_t)C * L, NL = (size_t)N * L;
    const size_t per = mha_saved_per_example(d);
    const float as = mha_softmax_scale(d);
#pragma omp parallel for schedule(static) num_threads(nn_threads(c))
    for (int b = 0; b < d->B; b++) {
        const float *xb = x + (size_t)b * Cq * N, *cb = ctx + (size_t)b * Ckv * L;
        float *Q = saved + (size_t)b * per, *K = Q + CN, *V = K + CL, *O = V + CL; /* (C,*) */
        float *P = O + CN;                                                         /* (H,N,L) */
        project(Q, w[0], w[1], xb, C, Cq, N);
        project(K, w[2], w[3], cb, C, Ckv, L);
        project(V, w[4], w[5], cb, C, Ckv, L);
        for (int h = 0; h < H; h++) {
            const size_t hr = (size_t)h * dh;
            float *Ph = P + (size_t)h * NL; /* (N,L) */
            /* S (N,L) = Q_h^T K_h * scale */
            la_sgemm(1, 0, N, L, dh, as, Q + hr * N, N, K + hr * L, L, 0.0f, Ph, L);
            for (int i = 0; i < N; i++) {
                float *row = Ph + (size_t)i * L;
                const int len = d->causal ? i + 1 : L;
                const float mx = nn_max_float(row, (size_t)len);
                for (int j = 0; j < len; j++) /* a loop of its own: it vectorizes */
                    row[j] = nn_expf(row[j] - mx);
                const float inv = (float)(1.0 / nn_sum_double(row, (size_t)len));
                for (int j = 0; j < len; j++)
                    row[j] *= inv;
                for (int j = len; j < L; j++)
                    row[j] = 0.0f;
            }
            /* O_h (d,N) = V_h (d,L) P_h^T */
            la_sgemm(0, 1, dh, N, L, 1.0f, V + hr * L, L, Ph, L, 0.0f, O + hr * N, N);
        }
        project(out + (size_t)b * CN, w[6], w[7], O, C, C, N);
    }
}

/* db (C) += row sums of dM (C,T), in double. */
static void rowsum_add(float *db, const float *dm, int C, int T) {
    for (int ch = 0; ch < C; ch++)
        db[ch] += (float)nn_sum_double(dm + (size_t)ch * T, (size_t)T);
}

void mha_backward(float *dx /* (B,Cq,N) += or NULL */, float *dctx /* (B,Ckv,L) += or NULL */,
                  float *const dw[8], const float *dout /* (B,C,N) */,
                  const float *x /* (B,Cq,N) */, const float *ctx /* (B,Ckv,L) */,
                  const float *saved, const float *const w[8], const MhaDims *d, const OpCtx *c) {
    mha_check(d);
    const size_t scratch = mha_scratch_floats(d);
    nn_check_ctx(c, scratch, "mha_backward");
    for (int i = 0; i < 8; i++) { /* a NULL gradient: not needed (nn.h) */
        if (i % 2 == 0)
            CHECK(w[i] != NULL, "mha_backward: NULL weight %d", i);
        else
            CHECK(w[i] != NULL || dw[i] == NULL, "mha_backward: gradient %d of a missing bias", i);
    }
    CHECK(dctx == NULL || dctx != dx || (x == ctx && d->Cq == d->Ckv && d->N == d->L),
          "mha_backward: dctx == dx needs self-attention (ctx == x)");
    const int C = d->C, Cq = d->Cq, Ckv = d->Ckv, N = d->N, L = d->L, H = d->heads, dh = C / H;
    const size_t CN = (size_t)C * N, CL = (size_t)C * L, NL = (size_t)N * L;
    const size_t per = mha_saved_per_example(d);
    const float as = mha_softmax_scale(d);
    GradSlots gs;
    const size_t numel[8] = {(size_t)C * Cq,  (size_t)C, (size_t)C * Ckv, (size_t)C,
                             (size_t)C * Ckv, (size_t)C, (size_t)C * C,   (size_t)C};
    grad_slots_begin(&gs, c, d->B, 8, dw, numel);
    /* which of Q, K, V need their gradient dM: a selected weight or bias, or the input's gradient;
     * what is not needed is not computed (the others are bitwise the same) */
    int need[3], need_any = 0;
    for (int p = 0; p < 3; p++) {
        need[p] = (p == 0 ? dx != NULL : dctx != NULL) || gs.d[2 * p] || gs.d[2 * p + 1];
        need_any |= need[p];
    }
#pragma omp parallel for schedule(static, gs.group) num_threads(nn_threads(c))
    for (int b = 0; b < d->B; b++) {
        const float *xb = x + (size_t)b * Cq * N, *cb = ctx + (size_t)b * Ckv * L;
        const float *g = dout + (size_t)b * CN; /* (C,N) */
        const float *Q = saved + (size_t)b * per, *K = Q + CN, *V = K + CL, *O = V + CL;
        const float *P = O + CN;                                                   /* (H,N,L) */
        float *dO = opctx_scratch(c), *dQ = dO + CN, *dK = dQ + CN, *dV = dK + CL; /* (C,*) */
        float *dP = dV + CL;                                                       /* (N,L) */
        /* out = Wo O + bo: dbo += rowsums g, dWo += g O^T, dO = Wo^T g. */
        float *sbo = grad_slot(&gs, b, 7);
        if (sbo) rowsum_add(sbo, g, C, N);
        float *swo = grad_slot(&gs, b, 6);
        if (swo) la_sgemm(0, 1, C, C, N, 1.0f, g, N, O, N, 1.0f, swo, C);
        if (!need_any) continue;
        la_sgemm(1, 0, C, N, C, 1.0f, w[6], C, g, N, 0.0f, dO, N);
        for (int h = 0; h < H; h++) {
            const size_t hr = (size_t)h * dh;
            const float *Ph = P + (size_t)h * NL;
            /* dP (N,L) = dO_h^T V_h; dV_h (d,L) = dO_h P_h */
            if (need[2])
                la_sgemm(0, 0, dh, L, N, 1.0f, dO + hr * N, N, Ph, L, 0.0f, dV + hr * L, L);
            if (!need[0] && !need[1]) continue;
            la_sgemm(1, 0, N, L, dh, 1.0f, dO + hr * N, N, V + hr * L, L, 0.0f, dP, L);
            for (int i = 0; i < N; i++) { /* softmax backward, dS overwrites dP (0 where masked) */
                const float *pr = Ph + (size_t)i * L;
                float *dr = dP + (size_t)i * L;
                const float fdot = (float)nn_dot_double(pr, dr, (size_t)L);
                for (int j = 0; j < L; j++)
                    dr[j] = pr[j] * (dr[j] - fdot);
            }
            /* dQ_h (d,N) = scale K_h dS^T; dK_h (d,L) = scale Q_h dS */
            if (need[0]) la_sgemm(0, 1, dh, N, L, as, K + hr * L, L, dP, L, 0.0f, dQ + hr * N, N);
            if (need[1]) la_sgemm(0, 0, dh, L, N, as, Q + hr * N, N, dP, L, 0.0f, dK + hr * L, L);
        }
        /* M = W in + bias (C,T): dW += dM in^T, dbias += rowsums dM, din += W^T dM. */
        const float *dM[3] = {dQ, dK, dV}, *src[3] = {xb, cb, cb};
        const int cin[3] = {Cq, Ckv, Ckv}, T[3] = {N, L, L};
        float *dsrc[3] = {dx ? dx + (size_t)b * Cq * N : NULL,
                          dctx ? dctx + (size_t)b * Ckv * L : NULL,
                          dctx ? dctx + (size_t)b * Ckv * L : NULL};
        for (int p = 0; p < 3; p++) {
            if (!need[p]) continue;
            float *sw = grad_slot(&gs, b, 2 * p);
            if (sw)
                la_sgemm(0, 1, C, cin[p], T[p], 1.0f, dM[p], T[p], src[p], T[p], 1.0f, sw, cin[p]);
            float *sb = grad_slot(&gs, b, 2 * p + 1);
            if (sb) rowsum_add(sb, dM[p], C, T[p]);
            if (dsrc[p])
                la_sgemm(1, 0, cin[p], T[p], C, 1.0f, w[2 * p], cin[p], dM[p], T[p], 1.0f, dsrc[p],
                         T[p]);
        }
    }
    grad_slots_end(&gs);
}
