/* gelu.c: the activations of the transformer blocks (ldm.md sections 2.4, 2.8 and 4.1):
 *  - GELU, exact erf form (torch F.gelu(approximate="none")): gelu(x) = x Phi(x), Phi the standard
 *    normal CDF; derivative Phi(x) + x phi(x);
 *  - quick GELU (OpenAI CLIP's quick_gelu): x sigmoid(1.702 x);
 *  - GEGLU (diffusers activations.GEGLU after its Linear proj): [a | g] = the two channel halves of
 *    the projection, out = a * gelu(g).
 * Phi(x) = 1 - erfc(z)/2 for x >= 0 and erfc(z)/2 for x < 0 (z = |x|/sqrt 2), with erfc(z) by
 * Abramowitz & Stegun 7.1.26 (t = 1/(1 + 0.3275911 z), erfc = t poly5(t) e^(-z^2), absolute error
 * <= 1.5e-7; the rational-times-exp form torch's vectorized CPU erf uses too) and e^(-z^2) by
 * nn_expf: libm's erff is a scalar call per element, and GEGLU runs on 4C channels of every token
 * of every transformer block. phi(x) = e^(-z^2)/sqrt(2 pi) reuses the same exponential. Elementwise
 * loops, OpenMP over elements (GEGLU: over (example, channel) rows). */
#include "nn/nn_internal.h"

/* Below this many elements the OpenMP fork costs more than the loop. */
#define GELU_PAR_MIN 16384

/* Phi(x) and phi(x) of one float (inline, branch-free: the loops that call it vectorize). */
static inline void gelu_phi(float x, float *cdf, float *pdf) {
    const float z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.3275911f * z);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float e = nn_expf(-z * z);
    const float half_erfc = 0.5f * (p * t * e);
    *cdf = x < 0.0f ? half_erfc : 1.0f - half_erfc;
    *pdf = e * 0.39894228040143268f; /* 1/sqrt(2 pi) */
}

void gelu_forward(float *out /* (n) */, const float *in /* (n) */, size_t n) {
#pragma omp parallel for schedule(static) if (n >= GELU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float cdf, pdf;
        gelu_phi(in[i], &cdf, &pdf);
        out[i] = in[i] * cdf;
    }
}

void gelu_backward(float *din /* (n) += */, const float *dout /* (n) */, const float *in /* (n) */,
                   size_t n) {
    if (!din) return;
#pragma omp parallel for schedule(static) if (n >= GELU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float cdf, pdf;
        const float x = in[i];
        gelu_phi(x, &cdf, &pdf);
        din[i] += dout[i] * (cdf + x * pdf);
    }
}

void quick_gelu_forward(float *out /* (n) */, const float *in /* (n) */, size_t n) {
#pragma omp parallel for schedule(static) if (n >= GELU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] / (1.0f + nn_expf(-1.702f * in[i]));
}

void quick_gelu_backward(float *din /* (n) += */, const float *dout /* (n) */,
                         const float *in /* (n) */, size_t n) {
    if (!din) return;
#pragma omp parallel for schedule(static) if (n >= GELU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float x = in[i];
        const float e = nn_expf(-1.702f * x), s = 1.0f / (1.0f + e);
        /* 1 - s = s e: no cancellation where s rounds near 1 */
        din[i] += dout[i] * (s + 1.702f * x * (s * (s * e)));
    }
}

void geglu_forward(float *out /* (B,F,N) */, const float *in /* (B,2F,N) */, int B, int F, int N) {
    CHECK(B >= 1 && F >= 1 && N >= 1, "geglu dims B=%d F=%d N=%d", B, F, N);
    const int rows = B * F;
    const size_t FN = (size_t)F * N;
#pragma omp parallel for schedule(static) if ((size_t)rows * N >= GELU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const int b = r / F, f = r % F;
        const float *a = in + (size_t)b * 2 * FN + (size_t)f * N; /* (N) */
        const float *gt = a + FN;                                 /* (N) */
        float *o = out + (size_t)r * N;
        for (int n = 0; n < N; n++) {
            float cdf, pdf;
            gelu_phi(gt[n], &cdf, &pdf);
            o[n] = a[n] * (gt[n] * cdf);
        }
    }
}

void geglu_backward(float *din /* (B,2F,N) += */, const float *dout /* (B,F,N) */,
                    const float *in /* (B,2F,N) */, int B, int F, int N) {
    CHECK(B >= 1 && F >= 1 && N >= 1, "geglu dims B=%d F=%d N=%d", B, F, N);
    if (!din) return;
    const int rows = B * F;
    const size_t FN = (size_t)F * N;
#pragma omp parallel for schedule(static) if ((size_t)rows * N >= GELU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const int b = r / F, f = r % F;
        const size_t off = (size_t)b * 2 * FN + (size_t)f * N;
        const float *a = in + off, *gt = a + FN, *g = dout + (size_t)r * N; /* (N) each */
        float *da = din + off, *dg = da + FN;
        for (int n = 0; n < N; n++) {
            float cdf, pdf;
            const float x = gt[n];
            gelu_phi(x, &cdf, &pdf);
            da[n] += g[n] * (x * cdf);
            dg[n] += g[n] * a[n] * (cdf + x * pdf);
        }
    }
}
