/* layernorm.c: torch.nn.LayerNorm(C, eps, elementwise_affine=True) over the C channels of each of
 * N tokens, on channel-major tensors (B, C, N) (token n's values are x[c*N + n]): the norm1/2/3
 * of diffusers' BasicTransformerBlock and CLIP's layer_norm1/2/final_layer_norm (ldm.md 2.4, 4.1).
 * Per token: mean and biased variance over C in double (two passes, no cancellation), eps inside
 * the sqrt; y = (x - mean) * rstd * gamma[c] + beta[c] in float from the stored float statistics.
 * Backward is the closed form: with xhat = (x - mean) * rstd and g = dout * gamma,
 * din = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)); dgamma[c] = sum_n dout * xhat,
 * dbeta[c] = sum_n dout (through GradSlots).
 * Channel-major means a token's values are strided: tokens go in blocks of LN_BLOCK, whose
 * per-token double accumulators live on the stack and whose inner loops run over contiguous tokens
 * (they vectorize). Forward and din: OpenMP over (example, token block); parameter gradients: over
 * examples, each channel's sums over tokens in one contiguous pass. */
#include "nn/nn_internal.h"

#include <math.h>

#define LN_BLOCK 64

static void ln_check(const LayerNormDims *d) {
    CHECK(d->B >= 1 && d->C >= 1 && d->N >= 1, "layernorm dims B=%d C=%d N=%d", d->B, d->C, d->N);
    CHECK(d->eps >= 0.0f, "layernorm eps %g", (double)d->eps);
}

void layernorm_forward(float *out /* (B,C,N) */, float *mean /* (B,N) */, float *rstd /* (B,N) */,
                       const float *in /* (B,C,N) */, const float *gamma /* (C) */,
                       const float *beta /* (C) */, const LayerNormDims *d, const OpCtx *c) {
    ln_check(d);
    const int C = d->C, N = d->N, nblk = (N + LN_BLOCK - 1) / LN_BLOCK;
    const size_t CN = (size_t)C * N;
    const int items = d->B * nblk;
#pragma omp parallel for schedule(static) num_threads(nn_threads(c))
    for (int it = 0; it < items; it++) {
        const int b = it / nblk, n0 = (it % nblk) * LN_BLOCK;
        const int nb = N - n0 < LN_BLOCK ? N - n0 : LN_BLOCK;
        const float *x = in + (size_t)b * CN + n0; /* row c at x + c*N */
        float *y = out + (size_t)b * CN + n0;
        double s[LN_BLOCK], ss[LN_BLOCK];
        for (int j = 0; j < nb; j++)
            s[j] = ss[j] = 0.0;
        for (int ch = 0; ch < C; ch++) {
            const float *xr = x + (size_t)ch * N;
            for (int j = 0; j < nb; j++)
                s[j] += xr[j];
        }
        for (int j = 0; j < nb; j++)
            s[j] /= (double)C; /* the mean */
        for (int ch = 0; ch < C; ch++) {
            const float *xr = x + (size_t)ch * N;
            for (int j = 0; j < nb; j++) {
                const double t = xr[j] - s[j];
                ss[j] += t * t;
            }
        }
        float fm[LN_BLOCK], fr[LN_BLOCK];
        for (int j = 0; j < nb; j++) {
            fm[j] = (float)s[j];
            fr[j] = (float)(1.0 / sqrt(ss[j] / (double)C + (double)d->eps));
            mean[(size_t)b * N + n0 + j] = fm[j];
            rstd[(size_t)b * N + n0 + j] = fr[j];
        }
        for (int ch = 0; ch < C; ch++) {
            const float ga = gamma[ch], be = beta[ch];
            const float *xr = x + (size_t)ch * N;
            float *yr = y + (size_t)ch * N;
            for (int j = 0; j < nb; j++)
                yr[j] = (xr[j] - fm[j]) * fr[j] * ga + be;
        }
    }
}

void layernorm_backward(float *din /* (B,C,N) or NULL */, float *dgamma /* (C) */,
                        float *dbeta /* (C) */, const float *dout /* (B,C,N) */,
                        const float *in /* (B,C,N) */, const float *mean /* (B,N) */,
                        const float *rstd /* (B,N) */, const float *gamma /* (C) */,
                        const LayerNormDims *d, const OpCtx *c) {
    ln_check(d);
    nn_check_ctx(c, 0, "layernorm_backward");
    const int C = d->C, N = d->N, B = d->B, nblk = (N + LN_BLOCK - 1) / LN_BLOCK;
    const size_t CN = (size_t)C * N;
    if (din) {
        const int items = B * nblk;
#pragma omp parallel for schedule(static) num_threads(nn_threads(c))
        for (int it = 0; it < items; it++) {
            const int b = it / nblk, n0 = (it % nblk) * LN_BLOCK;
            const int nb = N - n0 < LN_BLOCK ? N - n0 : LN_BLOCK;
            const float *x = in + (size_t)b * CN + n0, *dy = dout + (size_t)b * CN + n0;
            const float *mu = mean + (size_t)b * N + n0, *rs = rstd + (size_t)b * N + n0;
            float *dx = din + (size_t)b * CN + n0;
            double sg[LN_BLOCK], sgx[LN_BLOCK]; /* over channels: g and g * xhat */
            for (int j = 0; j < nb; j++)
                sg[j] = sgx[j] = 0.0;
            for (int ch = 0; ch < C; ch++) {
                const double ga = gamma[ch];
                const float *xr = x + (size_t)ch * N, *dr = dy + (size_t)ch * N;
                for (int j = 0; j < nb; j++) {
                    const double gv = dr[j] * ga;
                    sg[j] += gv;
                    sgx[j] += gv * (((double)xr[j] - mu[j]) * rs[j]);
                }
            }
            /* rs (g - mg - xhat mgx) = rs g - rs mg - (x - mu) rs^2 mgx: coefficients in double,
             * elements in float */
            float k0[LN_BLOCK], k1[LN_BLOCK];
            for (int j = 0; j < nb; j++) {
                const double r = rs[j];
                k0[j] = (float)(-r * sg[j] / (double)C);
                k1[j] = (float)(-r * r * sgx[j] / (double)C);
            }
            for (int ch = 0; ch < C; ch++) {
                const float ga = gamma[ch];
                const float *xr = x + (size_t)ch * N, *dr = dy + (size_t)ch * N;
                float *dxr = dx + (size_t)ch * N;
                for (int j = 0; j < nb; j++)
                    dxr[j] += rs[j] * (dr[j] * ga) + (k1[j] * (xr[j] - mu[j]) + k0[j]);
            }
        }
    }
    if (!dgamma && !dbeta) return;
    GradSlots gs;
    float *dptr[2] = {dgamma, dbeta};
    size_t numel[2] = {dgamma ? (size_t)C : 0, dbeta ? (size_t)C : 0};
    grad_slots_begin(&gs, c, B, 2, dptr, numel);
#pragma omp parallel for schedule(static, gs.group) num_threads(nn_threads(c))
    for (int b = 0; b < B; b++) {
        const float *x = in + (size_t)b * CN, *dy = dout + (size_t)b * CN;
        const float *mu = mean + (size_t)b * N, *rs = rstd + (size_t)b * N;
        float *sgm = grad_slot(&gs, b, 0), *sbt = grad_slot(&gs, b, 1); /* (C) or NULL */
        for (int ch = 0; ch < C; ch++) {
            const float *xr = x + (size_t)ch * N, *dr = dy + (size_t)ch * N;
            if (sbt) sbt[ch] += (float)nn_sum_double(dr, (size_t)N);
            if (sgm) {
                double acc[NN_SUM_LANES] = {0};
                int n = 0;
                for (; n + NN_SUM_LANES <= N; n += NN_SUM_LANES)
                    for (int l = 0; l < NN_SUM_LANES; l++)
                        acc[l] += dr[n + l] * (((double)xr[n + l] - mu[n + l]) * rs[n + l]);
                for (; n < N; n++)
                    acc[n % NN_SUM_LANES] += dr[n] * (((double)xr[n] - mu[n]) * rs[n]);
                double s = 0.0;
                for (int l = 0; l < NN_SUM_LANES; l++)
                    s += acc[l];
                sgm[ch] += (float)s;
            }
        }
    }
    grad_slots_end(&gs);
}
