/* schedule.h: the noise schedule of diffusers' DDPMScheduler / DDIMScheduler (unet2d.md sections 8
 * and 9): the configuration read from and written to scheduler_config.json, the float32 tables
 * betas / alphas / alphas_cumprod built exactly as diffusers builds them on the CPU, the inference
 * timesteps of set_timesteps, and add_noise (the forward process q(x_t | x_0)).
 *
 * Only the numerics jtrak implements are accepted: variance_type "fixed_small", prediction_type
 * "epsilon", thresholding false, rescale_betas_zero_snr false, trained_betas null. Anything else is
 * refused with an error naming the file and the field. */
#ifndef JTRAK_SCHEDULE_H
#define JTRAK_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/common.h"

typedef enum {
    SCHED_BETA_LINEAR = 0,            /* torch.linspace(beta_start, beta_end, T) */
    SCHED_BETA_SCALED_LINEAR = 1,     /* torch.linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2 */
    SCHED_BETA_SQUAREDCOS_CAP_V2 = 2, /* betas_for_alpha_bar, cosine alpha_bar, max_beta 0.999 */
} SchedBetaSchedule;

typedef enum {
    SCHED_SPACING_LEADING = 0,
    SCHED_SPACING_LINSPACE = 1,
    SCHED_SPACING_TRAILING = 2,
} SchedSpacing;

/* The fields of a diffusers DDPMScheduler / DDIMScheduler config that jtrak reads. */
typedef struct {
    int num_train_timesteps; /* T */
    double beta_start, beta_end;
    SchedBetaSchedule beta_schedule;
    bool clip_sample;
    double clip_sample_range;
    SchedSpacing timestep_spacing;
    int steps_offset;
    /* DDIM only: the alpha_cumprod "before" step 0 is 1 (else alphas_cumprod[0]) */
    bool set_alpha_to_one;
    /* Accepted and written back, but unused (thresholding is off). */
    double dynamic_thresholding_ratio, sample_max_value;
} SchedConfig;

typedef struct {
    SchedConfig cfg;
    int T;
    float *betas;          /* (T) */
    float *alphas;         /* (T) 1 - betas, float32 */
    float *alphas_cumprod; /* (T) torch CPU cumprod: accumulated in double, each prefix rounded */
    float final_alpha_cumprod; /* DDIM: 1 if set_alpha_to_one else alphas_cumprod[0] */
} NoiseSchedule;

/* diffusers' DDPMScheduler() defaults (= DDIMScheduler() defaults; Journey-TRAK's schedule):
 * T 1000, linear 1e-4..0.02, clip_sample true (range 1), leading, steps_offset 0,
 * set_alpha_to_one true. */
void sched_config_default(SchedConfig *cfg);

/* Parses scheduler_config.json text (len bytes); `name` (the file) is used in error messages.
 * Missing fields keep the values already in cfg (call sched_config_default first: that is what
 * diffusers does with missing keys). Keys starting with '_' are ignored; other unknown keys, wrong
 * types and unsupported values are errors naming the file and the field. */
int sched_config_parse(SchedConfig *cfg, const char *json, size_t len, const char *name,
                       JtError *err);
/* Reads `path`, a scheduler_config.json or a folder containing one, starting from the defaults. */
int sched_config_load(SchedConfig *cfg, const char *path, JtError *err);
/* The schedule of a model folder: its scheduler_config.json when it has one, else diffusers'
 * defaults (what DDPMScheduler() gives a folder without one). A pipeline folder's is its
 * scheduler/, as the pipeline loads it (pipeline_sched_config_load: StableDiffusionPipeline sets
 * steps_offset 1 and clip_sample false). */
int sched_config_load_model(SchedConfig *cfg, const char *model_dir, JtError *err);
/* Writes a scheduler_config.json that DDPMScheduler.from_pretrained loads (every DDPMScheduler
 * field, plus set_alpha_to_one when it is false so that a DDIMScheduler built from it keeps it).
 * `path` is a file or an existing folder; written to a temporary name, then renamed. */
int sched_config_save(const SchedConfig *cfg, const char *path, JtError *err);

const char *sched_beta_schedule_name(SchedBetaSchedule b);
const char *sched_spacing_name(SchedSpacing s);

/* Builds the tables. Validates the config (T >= 2, 0 < betas < 1, ...); `name` is for errors. */
int sched_init(NoiseSchedule *s, const SchedConfig *cfg, JtError *err);
/* Same, from explicit float32 betas (T = cfg->num_train_timesteps of them), e.g. a fixture. */
int sched_init_from_betas(NoiseSchedule *s, const SchedConfig *cfg, const float *betas,
                          JtError *err);
/* sched_config_load + sched_init. */
int sched_load(NoiseSchedule *s, const char *path, JtError *err);
void sched_free(NoiseSchedule *s);

/* The raw beta table of a config (float32, as diffusers): betas (T). */
void sched_make_betas(float *betas, const SchedConfig *cfg);
/* alphas_cumprod (T) from alphas (T) as torch's CPU cumprod: product in double, prefix rounded. */
void sched_cumprod(float *alphas_cumprod, const float *alphas, int T);

/* diffusers' set_timesteps(n) (same for DDPM and DDIM): writes n timesteps, descending, following
 * cfg.timestep_spacing and steps_offset (leading only, as diffusers). Fails (naming the field) when
 * n is outside 1..T, when a timestep would leave 0..T-1 (leading with a large steps_offset), or
 * when numpy's float arange makes "trailing" produce n+1 steps ending in -1 (T = 1000 with n = 61,
 * 103, 121, ...: diffusers would index alphas_cumprod[-1] there). */
int sched_set_timesteps(const NoiseSchedule *s, int n, int *timesteps /* (n) */, JtError *err);

/* x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps per sample, coefficients in float32 as diffusers'
 * add_noise. x_t may alias x0 or eps. t in 0..T-1. */
void sched_add_noise(float *x_t,       /* (B, per_sample) */
                     const float *x0,  /* (B, per_sample) */
                     const float *eps, /* (B, per_sample) */
                     const int *t,     /* (B) */
                     size_t B, size_t per_sample, const NoiseSchedule *s);

#endif
