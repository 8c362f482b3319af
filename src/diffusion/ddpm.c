/* ddpm.c: diffusers' DDPMScheduler.step for epsilon prediction with variance_type "fixed_small"
 * (unet2d.md 8.5, method.md 1.1). The scalars are float32 and formed in the order of diffusers'
 * step (0-dim float32 tensors there), with a correctly rounded sqrtf where torch uses MKL's
 * vsSqrt (up to 0.75 ulp off); the per-element work is float32, one rounding per torch op.
 * This file must be compiled without floating-point contraction: a fused multiply-add would round
 * differently from torch. CMake builds with -std=c11, where GCC turns contraction off. */
#include <math.h>

#include "diffusion/sampler.h"

int ddpm_prev_timestep(const int *timesteps, int n, int i) {
    CHECK(i >= 0 && i < n, "ddpm_prev_timestep: index %d outside 0..%d", i, n - 1);
    return i + 1 < n ? timesteps[i + 1] : -1;
}

DdpmCoeffs ddpm_coeffs(const NoiseSchedule *s, int t, int prev_t) {
    CHECK(t >= 0 && t < s->T, "ddpm: timestep %d outside 0..%d", t, s->T - 1);
    CHECK(prev_t < t && prev_t < s->T, "ddpm: prev timestep %d is not below %d", prev_t, t);
    DdpmCoeffs c;
    c.alpha_prod_t = s->alphas_cumprod[t];
    c.alpha_prod_t_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : 1.0f;
    c.beta_prod_t = 1.0f - c.alpha_prod_t;
    c.beta_prod_t_prev = 1.0f - c.alpha_prod_t_prev;
    c.current_alpha_t = c.alpha_prod_t / c.alpha_prod_t_prev;
    c.current_beta_t = 1.0f - c.current_alpha_t;
    c.sqrt_beta_prod_t = sqrtf(c.beta_prod_t);
    c.sqrt_alpha_prod_t = sqrtf(c.alpha_prod_t);
    /* (alpha_prod_t_prev ** 0.5 * current_beta_t) / beta_prod_t */
    c.pred_original_sample_coeff = (sqrtf(c.alpha_prod_t_prev) * c.current_beta_t) / c.beta_prod_t;
    /* current_alpha_t ** 0.5 * beta_prod_t_prev / beta_prod_t, left to right */
    c.current_sample_coeff = sqrtf(c.current_alpha_t) * c.beta_prod_t_prev / c.beta_prod_t;
    /* _get_variance: (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t, clamped */
    float var = c.beta_prod_t_prev / c.beta_prod_t * c.current_beta_t;
    c.variance = var < 1e-20f ? 1e-20f : var; /* NaN stays NaN, as torch.clamp */
    c.std = sqrtf(c.variance);
    c.clip = s->cfg.clip_sample ? (float)s->cfg.clip_sample_range : INFINITY;
    c.noise = t > 0;
    return c;
}

void ddpm_step_apply(float *x_prev, float *x0, const float *x_t, const float *eps_hat,
                     const float *z, size_t n, const DdpmCoeffs *c) {
    CHECK(!c->noise || z != NULL, "ddpm_step: t > 0 needs the noise z");
    float lo = -c->clip, hi = c->clip;
    for (size_t i = 0; i < n; i++) {
        float xt = x_t[i];
        /* (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5, then clamp */
        float p = c->sqrt_beta_prod_t * eps_hat[i];
        float x = (xt - p) / c->sqrt_alpha_prod_t;
        if (x < lo) x = lo;
        if (x > hi) x = hi;
        /* pred_original_sample_coeff * x0 + current_sample_coeff * sample */
        float a = c->pred_original_sample_coeff * x;
        float b = c->current_sample_coeff * xt;
        float mean = a + b;
        if (c->noise) {
            float v = c->std * z[i];
            mean = mean + v;
        }
        if (x0) x0[i] = x;
        x_prev[i] = mean;
    }
}

void ddpm_step(float *x_prev, float *x0, const float *x_t, const float *eps_hat, const float *z,
               size_t n, const NoiseSchedule *s, int t, int prev_t) {
    DdpmCoeffs c = ddpm_coeffs(s, t, prev_t);
    ddpm_step_apply(x_prev, x0, x_t, eps_hat, z, n, &c);
}
