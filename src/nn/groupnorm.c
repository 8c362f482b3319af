/* groupnorm.c: torch.nn.GroupNorm(G, C, eps, affine=True) (unet2d.md section 2). Channels split
 * into G contiguous groups; per (sample, group) the mean and the biased variance over (C/G)*HW
 * values, accumulated in double over fixed lanes (torch CPU uses float; the difference is about
 * 1e-7), eps inside the sqrt; y = (x - mean) * rstd * gamma[c] + beta[c]. Backward is the exact
 * closed form: with xhat = (x - mean) * rstd and g = dout * gamma,
 * din = rstd * (g - mean(g) - xhat * mean(g * xhat)) over the group; dgamma = sum dout * xhat,
 * dbeta = sum dout over HW, through GradSlots. OpenMP over (sample, group) pairs, whose writes
 * are disjoint. */
#include "nn/nn_internal.h"

#include <math.h>

/* The two group sums below keep nn_sum_double's NN_SUM_LANES (8) interleaved double lanes and its
 * order of operations; on AVX-512 the 8 lanes are one register (GCC left these loops scalar). */
#if defined(__AVX512F__)
#include <immintrin.h>
#define GN_VECTOR_LANES 1
#endif

static double lanes_total(const double *acc) {
    double s = 0.0;
    for (int l = 0; l < NN_SUM_LANES; l++)
        s += acc[l];
    return s;
}

/* sum (x - mu)^2 */
static double gn_sum_sq_dev(const float *x, size_t n, double mu) {
    double acc[NN_SUM_LANES] = {0};
    size_t i = 0;
#ifdef GN_VECTOR_LANES
    const __m512d vmu = _mm512_set1_pd(mu);
    __m512d va = _mm512_setzero_pd();
    for (; i + NN_SUM_LANES <= n; i += NN_SUM_LANES) {
        const __m512d t = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), vmu);
        va = _mm512_add_pd(va, _mm512_mul_pd(t, t));
    }
    _mm512_storeu_pd(acc, va);
#endif
    for (; i + NN_SUM_LANES <= n; i += NN_SUM_LANES)
        for (int l = 0; l < NN_SUM_LANES; l++) {
            double t = x[i + l] - mu;
            acc[l] += t * t;
        }
    for (; i < n; i++) {
        double t = x[i] - mu;
        acc[i % NN_SUM_LANES] += t * t;
    }
    return lanes_total(acc);
}

/* sum dy and sum dy * xhat with xhat = (x - mu) * rs */
static void gn_sum_dy(const float *x, const float *dy, int n, double mu, double rs, double *sdy,
                      double *sdyx) {
    double a[NN_SUM_LANES] = {0}, b[NN_SUM_LANES] = {0};
    int i = 0;
#ifdef GN_VECTOR_LANES
    const __m512d vmu = _mm512_set1_pd(mu), vrs = _mm512_set1_pd(rs);
    __m512d va = _mm512_setzero_pd(), vb = _mm512_setzero_pd();
    for (; i + NN_SUM_LANES <= n; i += NN_SUM_LANES) {
        const __m512d xh =
            _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), vmu), vrs);
        const __m512d g = _mm512_cvtps_pd(_mm256_loadu_ps(dy + i));
        va = _mm512_add_pd(va, g);
        vb = _mm512_add_pd(vb, _mm512_mul_pd(g, xh));
    }
    _mm512_storeu_pd(a, va);
    _mm512_storeu_pd(b, vb);
#endif
    for (; i + NN_SUM_LANES <= n; i += NN_SUM_LANES)
        for (int l = 0; l < NN_SUM_LANES; l++) {
            double xh = (x[i + l] - mu) * rs;
            a[l] += dy[i + l];
            b[l] += dy[i + l] * xh;
        }
    for (; i < n; i++) {
        double xh = (x[i] - mu) * rs;
        a[i % NN_SUM_LANES] += dy[i];
        b[i % NN_SUM_LANES] += dy[i] * xh;
    }
    *sdy = lanes_total(a);
    *sdyx = lanes_total(b);
}

static void gn_check(const GroupNormDims *d) {
    CHECK(d->B >= 1 && d->C >= 1 && d->HW >= 1 && d->G >= 1, "groupnorm dims B=%d C=%d HW=%d G=%d",
          d->B, d->C, d->HW, d->G);
    CHECK(d->C % d->G == 0, "groupnorm: C=%d not divisible by G=%d", d->C, d->G);
    CHECK(d->eps >= 0.0f, "groupnorm eps %g", (double)d->eps);
}

/* y = x * scale + shift with scale, shift of channel c from the stored (float) mean and rstd, so
 * that the fused backward recomputes exactly the y the forward had. */
static void gn_coeffs(double mu, double rs, float gamma, float beta, float *scale, float *shift) {
    *scale = (float)(rs * gamma);
    *shift = (float)(beta - mu * rs * gamma);
}

/* The forward of both ops: y = groupnorm(x), then z = silu(y) when silu (y itself not kept). */
static void gn_forward(float *out, float *mean, float *rstd, const float *in, const float *gamma,
                       const float *beta, const GroupNormDims *d, const OpCtx *c, int silu) {
    gn_check(d);
    const int G = d->G, cpg = d->C / d->G, HW = d->HW;
    const size_t gsize = (size_t)cpg * HW;
    const int items = d->B * G;
#pragma omp parallel for schedule(static) num_threads(nn_threads(c))
    for (int bg = 0; bg < items; bg++) {
        /* (b, g) = (bg / G, bg % G); the group is gsize contiguous floats. */
        const float *x = in + (size_t)bg * gsize; /* (cpg, HW) */
        float *y = out + (size_t)bg * gsize;
        const int c0 = (bg % G) * cpg;
        const double mu = nn_sum_double(x, gsize) / (double)gsize;
        const double ss = gn_sum_sq_dev(x, gsize, mu); /* two passes: no cancellation */
        mean[bg] = (float)mu;
        rstd[bg] = (float)(1.0 / sqrt(ss / (double)gsize + (double)d->eps));
        for (int ch = 0; ch < cpg; ch++) {
            /* y = x * scale + shift in float, scale and shift from double (as torch's CPU kernel):
             * one fused multiply-add per element instead of double arithmetic */
            float scale, shift;
            gn_coeffs(mean[bg], rstd[bg], gamma[c0 + ch], beta[c0 + ch], &scale, &shift);
            const float *xr = x + (size_t)ch * HW;
            float *yr = y + (size_t)ch * HW;
            for (int p = 0; p < HW; p++)
                yr[p] = fmaf(xr[p], scale, shift);
            if (silu) /* silu_forward's arithmetic, while the row is in L1 */
                for (int p = 0; p < HW; p++)
                    yr[p] = yr[p] / (1.0f + nn_expf(-yr[p]));
        }
    }
}

void groupnorm_forward(float *out /* (B,C,HW) */, float *mean /* (B,G) */, float *rstd /* (B,G) */,
                       const float *in /* (B,C,HW) */, const float *gamma /* (C) */,
                       const float *beta /* (C) */, const GroupNormDims *d, const OpCtx *c) {
    gn_forward(out, mean, rstd, in, gamma, beta, d, c, 0);
}

void groupnorm_silu_forward(float *out /* (B,C,HW) */, float *mean /* (B,G) */,
                            float *rstd /* (B,G) */, const float *in /* (B,C,HW) */,
                            const float *gamma /* (C) */, const float *beta /* (C) */,
                            const GroupNormDims *d, const OpCtx *c) {
    gn_forward(out, mean, rstd, in, gamma, beta, d, c, 1);
}

/* The backward of both ops. With silu (beta given), dout is dz = dL/d silu(y): the group's
 * dL/dy = dz silu'(y), y recomputed from x as the forward made it, goes through the thread's
 * scratch (cpg HW floats) instead of memory, with silu_backward's arithmetic. */
static void gn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                        const float *mean, const float *rstd, const float *gamma, const float *beta,
                        const GroupNormDims *d, const OpCtx *c, int silu) {
    gn_check(d);
    const int G = d->G, cpg = d->C / d->G, HW = d->HW, B = d->B;
    const size_t gsize = (size_t)cpg * HW;
    nn_check_ctx(c, silu ? gsize : 0, silu ? "groupnorm_silu_backward" : "groupnorm_backward");
    GradSlots gs;
    float *dptr[2] = {dgamma, dbeta};
    size_t numel[2] = {dgamma ? (size_t)d->C : 0, dbeta ? (size_t)d->C : 0};
    grad_slots_begin(&gs, c, B, 2, dptr, numel);
    const int items = B * G;
#pragma omp parallel for schedule(static, gs.group * G) num_threads(nn_threads(c))
    for (int bg = 0; bg < items; bg++) {
        const int b = bg / G, c0 = (bg % G) * cpg;
        const float *x = in + (size_t)bg * gsize;    /* (cpg, HW) */
        const float *dy = dout + (size_t)bg * gsize; /* (cpg, HW) */
        if (silu) {
            float *dys = opctx_scratch(c);
            const float *dz = dy;
            for (int ch = 0; ch < cpg; ch++) {
                float scale, shift;
                gn_coeffs(mean[bg], rstd[bg], gamma[c0 + ch], beta[c0 + ch], &scale, &shift);
                const float *xr = x + (size_t)ch * HW, *dzr = dz + (size_t)ch * HW;
                float *dr = dys + (size_t)ch * HW;
                for (int p = 0; p < HW; p++) {
                    const float yv = fmaf(xr[p], scale, shift);
                    const float sg = 1.0f / (1.0f + nn_expf(-yv));
                    dr[p] = dzr[p] * (sg * (1.0f + yv * (1.0f - sg)));
                }
            }
            dy = dys;
        }
        const double mu = mean[bg], rs = rstd[bg];
        float *sg = grad_slot(&gs, b, 0); /* (C) or NULL */
        float *sb = grad_slot(&gs, b, 1); /* (C) or NULL */
        double sum_g = 0.0, sum_gx = 0.0; /* over the group: g and g * xhat */
        for (int ch = 0; ch < cpg; ch++) {
            const double ga = gamma[c0 + ch];
            const float *xr = x + (size_t)ch * HW, *dr = dy + (size_t)ch * HW;
            double sdy, sdyx;
            gn_sum_dy(xr, dr, HW, mu, rs, &sdy, &sdyx);
            if (sg) sg[c0 + ch] += (float)sdyx;
            if (sb) sb[c0 + ch] += (float)sdy;
            sum_g += ga * sdy;
            sum_gx += ga * sdyx;
        }
        if (din) {
            const double mg = sum_g / (double)gsize, mgx = sum_gx / (double)gsize;
            float *dx = din + (size_t)bg * gsize;
            /* rs (ga dy - mg - xhat mgx) = a dy + b (x - mu) + c with a = rs ga, b = -rs^2 mgx,
             * c = -rs mg: coefficients in double, the elements in float (x - mu first, so that a
             * large mean does not cancel) */
            const float fmu = (float)mu, b_x = (float)(-rs * rs * mgx), c_0 = (float)(-rs * mg);
            for (int ch = 0; ch < cpg; ch++) {
                const float a_dy = (float)(rs * gamma[c0 + ch]);
                const float *xr = x + (size_t)ch * HW, *dr = dy + (size_t)ch * HW;
                float *dxr = dx + (size_t)ch * HW;
                for (int p = 0; p < HW; p++)
                    dxr[p] += fmaf(a_dy, dr[p], fmaf(b_x, xr[p] - fmu, c_0));
            }
        }
    }
    grad_slots_end(&gs);
}

void groupnorm_backward(float *din /* (B,C,HW) */, float *dgamma /* (C) */, float *dbeta /* (C) */,
                        const float *dout /* (B,C,HW) */, const float *in /* (B,C,HW) */,
                        const float *mean /* (B,G) */, const float *rstd /* (B,G) */,
                        const float *gamma /* (C) */, const GroupNormDims *d, const OpCtx *c) {
    gn_backward(din, dgamma, dbeta, dout, in, mean, rstd, gamma, NULL, d, c, 0);
}

size_t groupnorm_silu_scratch_floats(const GroupNormDims *d) {
    gn_check(d);
    return (size_t)(d->C / d->G) * d->HW;
}

void groupnorm_silu_backward(float *din /* (B,C,HW) */, float *dgamma /* (C) */,
                             float *dbeta /* (C) */, const float *dout /* (B,C,HW) */,
                             const float *in /* (B,C,HW) */, const float *mean /* (B,G) */,
                             const float *rstd /* (B,G) */, const float *gamma /* (C) */,
                             const float *beta /* (C) */, const GroupNormDims *d, const OpCtx *c) {
    gn_backward(din, dgamma, dbeta, dout, in, mean, rstd, gamma, beta, d, c, 1);
}
