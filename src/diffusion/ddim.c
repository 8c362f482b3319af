/* ddim.c: diffusers' DDIMScheduler.step for epsilon prediction (unet2d.md 9): prev = t - T div n,
 * the clipped x0, eps not re-derived unless use_clipped_model_output, sigma = eta sqrt(variance).
 * The scalars are float32 in diffusers' order (0-dim float32 tensors there, eta cast to float32),
 * with a correctly rounded sqrtf where torch uses MKL's vsSqrt (up to 0.75 ulp off); per-element
 * work is float32, one rounding per torch op. As ddpm.c, compile without floating-point
 * contraction (CMake's -std=c11 does that with GCC). */
#include <math.h>

#include "diffusion/sampler.h"

int ddim_prev_timestep(const NoiseSchedule *s, int t, int num_inference_steps) {
    CHECK(num_inference_steps >= 1 && num_inference_steps <= s->T,
          "ddim: %d inference steps outside 1..%d", num_inference_steps, s->T);
    return t - s->T / num_inference_steps;
}

DdimCoeffs ddim_coeffs(const NoiseSchedule *s, int t, int num_inference_steps, float eta) {
    CHECK(t >= 0 && t < s->T, "ddim: timestep %d outside 0..%d", t, s->T - 1);
    DdimCoeffs c;
    c.prev_t = ddim_prev_timestep(s, t, num_inference_steps);
    c.alpha_prod_t = s->alphas_cumprod[t];
    c.alpha_prod_t_prev = c.prev_t >= 0 ? s->alphas_cumprod[c.prev_t] : s->final_alpha_cumprod;
    c.beta_prod_t = 1.0f - c.alpha_prod_t;
    c.sqrt_beta_prod_t = sqrtf(c.beta_prod_t);
    c.sqrt_alpha_prod_t = sqrtf(c.alpha_prod_t);
    c.sqrt_alpha_prod_t_prev = sqrtf(c.alpha_prod_t_prev);
    /* _get_variance: (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev) */
    float beta_prod_t_prev = 1.0f - c.alpha_prod_t_prev;
    c.variance = (beta_prod_t_prev / c.beta_prod_t) * (1.0f - c.alpha_prod_t / c.alpha_prod_t_prev);
    c.std_dev_t = eta * sqrtf(c.variance);
    /* (1 - alpha_prod_t_prev - std_dev_t ** 2) ** 0.5 */
    float sd2 = c.std_dev_t * c.std_dev_t;
    c.direction_coeff = sqrtf(1.0f - c.alpha_prod_t_prev - sd2);
    c.clip = s->cfg.clip_sample ? (float)s->cfg.clip_sample_range : INFINITY;
    c.noise = eta > 0;
    return c;
}

void ddim_step_apply(float *x_prev, float *x0, const float *x_t, const float *eps_hat,
                     const float *z, size_t n, const DdimCoeffs *c, bool use_clipped_model_output) {
    CHECK(!c->noise || z != NULL, "ddim_step: eta > 0 needs the noise z");
    float lo = -c->clip, hi = c->clip;
    for (size_t i = 0; i < n; i++) {
        float xt = x_t[i];
        float e = eps_hat[i];
        /* (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5, then clamp */
        float p = c->sqrt_beta_prod_t * e;
        float x = (xt - p) / c->sqrt_alpha_prod_t;
        if (x < lo) x = lo;
        if (x > hi) x = hi;
        if (use_clipped_model_output) {
            /* (sample - alpha_prod_t ** 0.5 * pred_original_sample) / beta_prod_t ** 0.5 */
            float q = c->sqrt_alpha_prod_t * x;
            e = (xt - q) / c->sqrt_beta_prod_t;
        }
        /* alpha_prod_t_prev ** 0.5 * x0 + (1 - alpha_prod_t_prev - std ** 2) ** 0.5 * eps */
        float a = c->sqrt_alpha_prod_t_prev * x;
        float d = c->direction_coeff * e;
        float out = a + d;
        if (c->noise) {
            float v = c->std_dev_t * z[i];
            out = out + v;
        }
        if (x0) x0[i] = x;
        x_prev[i] = out;
    }
}

void ddim_step(float *x_prev, float *x0, const float *x_t, const float *eps_hat, const float *z,
               size_t n, const NoiseSchedule *s, int t, int num_inference_steps, float eta,
               bool use_clipped_model_output) {
    DdimCoeffs c = ddim_coeffs(s, t, num_inference_steps, eta);
    ddim_step_apply(x_prev, x0, x_t, eps_hat, z, n, &c, use_clipped_model_output);
}
