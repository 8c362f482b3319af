/* sampler.h: one reverse step of diffusers' DDPMScheduler.step and DDIMScheduler.step for epsilon
 * prediction (unet2d.md 8.5 and 9, method.md 1.1). Per-element math is float32 in diffusers' order
 * of operations, and the scalar coefficients are computed in float32 as diffusers computes them on
 * 0-dim float32 tensors. Given torch's scalars the per-element code matches diffusers bit for bit;
 * the scalars themselves can differ by 1-2 ulp because torch's CPU float32 sqrt is MKL's vsSqrt,
 * which is not correctly rounded (C uses sqrtf). Measured: steps within 1e-6 abs + 1e-6 rel.
 *
 * The noise z is an input: the caller draws it (rng_fill_normal with a stream keyed by sample and
 * step) and can store it with the trajectory. Every function here is elementwise over n floats of
 * one batch that shares the timestep t; x_prev may alias x_t (an in-place step), x0 may be NULL. */
#ifndef JTRAK_SAMPLER_H
#define JTRAK_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>

#include "diffusion/schedule.h"

/* The float32 scalars of one DDPM step (names as in diffusers' step). */
typedef struct {
    float alpha_prod_t, alpha_prod_t_prev, beta_prod_t, beta_prod_t_prev;
    float current_alpha_t, current_beta_t;
    /* x0 = (x_t - sqrt_beta_prod_t eps) / sqrt_alpha_prod_t */
    float sqrt_beta_prod_t, sqrt_alpha_prod_t;
    float pred_original_sample_coeff; /* mean = c_x0 x0 + c_xt x_t */
    float current_sample_coeff;
    float variance; /* fixed_small: max(beta_prod_t_prev / beta_prod_t * current_beta_t, 1e-20) */
    float std;      /* sqrt(variance); used only when t > 0 */
    float clip;     /* clip_sample_range as float32, or +inf when clip_sample is false */
    bool noise;     /* t > 0: add std z (diffusers tests the timestep value, not the index) */
} DdpmCoeffs;

/* prev(t) after set_timesteps: the next entry of the list, or -1 after the last (unet2d.md 8.4).
 * Before set_timesteps diffusers uses t - 1, which is this rule on the list T-1, ..., 0. */
int ddpm_prev_timestep(const int *timesteps, int n, int i);

DdpmCoeffs ddpm_coeffs(const NoiseSchedule *s, int t, int prev_t);

/* One DDPM step at timestep t (0..T-1) with the given prev_t (ddpm_prev_timestep):
 *   x0     = clip((x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t))       (pred_original_sample)
 *   x_prev = c_x0 x0 + c_xt x_t (+ std z when t > 0)
 * z may be NULL when t == 0 (it is not read then). */
void ddpm_step(float *x_prev,        /* (n) */
               float *x0,            /* (n) or NULL */
               const float *x_t,     /* (n) */
               const float *eps_hat, /* (n) */
               const float *z,       /* (n), N(0, I); NULL allowed when t == 0 */
               size_t n, const NoiseSchedule *s, int t, int prev_t);
/* The per-element part of ddpm_step with given scalars (ddpm_step = ddpm_coeffs + this). */
void ddpm_step_apply(float *x_prev, float *x0, const float *x_t, const float *eps_hat,
                     const float *z, size_t n, const DdpmCoeffs *c);

/* The float32 scalars of one DDIM step. */
typedef struct {
    int prev_t; /* t - T div num_inference_steps (may be negative: then final_alpha_cumprod) */
    float alpha_prod_t, alpha_prod_t_prev, beta_prod_t;
    float sqrt_beta_prod_t, sqrt_alpha_prod_t, sqrt_alpha_prod_t_prev;
    float variance;        /* (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev) */
    float std_dev_t;       /* eta * sqrt(variance) */
    float direction_coeff; /* sqrt(1 - abar_prev - std_dev_t^2) */
    float clip;
    bool noise; /* eta > 0: add std_dev_t z */
} DdimCoeffs;

/* DDIM's prev: t - T div n, NOT the next list entry (unet2d.md 9; with steps_offset 1 the last
 * prev is 1 - T div n < 0). */
int ddim_prev_timestep(const NoiseSchedule *s, int t, int num_inference_steps);

/* eta is diffusers' Python float; it enters the arithmetic as float32 (as torch does). */
DdimCoeffs ddim_coeffs(const NoiseSchedule *s, int t, int num_inference_steps, float eta);

/* One DDIM step (epsilon prediction):
 *   x0     = clip((x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t))
 *   eps    = eps_hat, or (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) if use_clipped_model_output
 *   x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps (+ sigma z when eta > 0)
 * z may be NULL when eta == 0. */
void ddim_step(float *x_prev,        /* (n) */
               float *x0,            /* (n) or NULL */
               const float *x_t,     /* (n) */
               const float *eps_hat, /* (n) */
               const float *z,       /* (n), N(0, I); NULL allowed when eta == 0 */
               size_t n, const NoiseSchedule *s, int t, int num_inference_steps, float eta,
               bool use_clipped_model_output);
/* The per-element part of ddim_step with given scalars (ddim_step = ddim_coeffs + this). */
void ddim_step_apply(float *x_prev, float *x0, const float *x_t, const float *eps_hat,
                     const float *z, size_t n, const DdimCoeffs *c, bool use_clipped_model_output);

#endif
