/* vae.h: diffusers AutoencoderKL in C (ldm.md section 3; diffusers 0.42.1
 * models/autoencoders/autoencoder_kl.py and vae.py): the config (diffusers field names), the
 * parameter slab with diffusers key names, the encoder graph x -> moments (quant_conv output) and
 * the decoder graph z -> x (from post_quant_conv) over the network executor (nn/graph.h, resnets
 * and the one-head mid attention from nn/blocks.h), the posterior (mean, log-variance clamped to
 * [-30, 20], sample = mean + exp(0.5 logvar) * noise) and the training loss MSE + beta * KL with
 * its backward through decoder, sampling, clamp and encoder.
 *
 * The scaling factor is the caller's: a diffusion latent is z * scaling_factor, and a diffusion
 * latent is decoded as decode(latent / scaling_factor), as diffusers' pipelines do. */
#ifndef JTRAK_VAE_H
#define JTRAK_VAE_H

#include "core/common.h"
#include "core/layout.h"

#include <stdint.h>

#define VAE_CLASS "AutoencoderKL"
#define VAE_MAX_LEVELS 8
/* Stated limits (diffusers accepts any positive value): with them every tensor size fits a
 * size_t and every int the ops use; memory is checked separately before allocation. */
#define VAE_MAX_CHANNELS 16384
#define VAE_MAX_IO_CHANNELS 1024
#define VAE_MAX_LATENT_CHANNELS 1024
#define VAE_MAX_SAMPLE_SIZE 8192
#define VAE_MAX_LAYERS_PER_BLOCK 32

/* The clamp diffusers' DiagonalGaussianDistribution applies to the log-variance. */
#define VAE_LOGVAR_MIN -30.0f
#define VAE_LOGVAR_MAX 20.0f
/* GroupNorm eps of every AutoencoderKL norm (Encoder/Decoder hard-code 1e-6). */
#define VAE_NORM_EPS 1e-6f

typedef struct {
    int in_channels, out_channels;
    int n_levels; /* len(block_out_channels) */
    int block_out_channels[VAE_MAX_LEVELS];
    int down_types[VAE_MAX_LEVELS]; /* 0: DownEncoderBlock2D, the only one implemented */
    int up_types[VAE_MAX_LEVELS];   /* 0: UpDecoderBlock2D */
    int layers_per_block;
    int latent_channels;
    int norm_num_groups;
    int sample_size;        /* a tiling hint in diffusers; jtrak reads it as the image size */
    int sample_h, sample_w; /* sample_size given as [height, width]; 0, 0 when one integer */
    float scaling_factor;
    int force_upcast; /* bool; a dtype hint, no effect on float32 numerics (kept for round trip) */
    int use_quant_conv, use_post_quant_conv, mid_block_add_attention; /* bools */
} VaeConfig;

/* diffusers' AutoencoderKL defaults (one level of 64, 3 channels, 4 latent channels, 32 groups,
 * scaling_factor 0.18215). */
void vae_config_default(VaeConfig *cfg);
/* The demo VAE of ldm.md 8.2 ("vae-fm"): (32, 64, 64), layers_per_block 1, 1 channel in and out,
 * 4 latent channels, 8 groups, sample_size 32 (f = 4: 32x32 -> 4x8x8). Returns 1 and fills cfg
 * for a shipped name, else 0. */
int vae_config_preset(const char *name, VaeConfig *cfg);
const char *vae_config_preset_names(void);
/* Strict parse of config.json text or of a parsed cJSON object (root: const cJSON *): unknown,
 * duplicate or wrongly typed fields are errors naming the file and the field, and so is every
 * value diffusers accepts that jtrak does not implement
 * (AttnDownEncoderBlock2D/AttnUpDecoderBlock2D, shift_factor, latents_mean/latents_std, an act_fn
 * other than silu). Validates. */
int vae_config_parse(VaeConfig *cfg, const char *json_text, const char *path, JtError *err);
int vae_config_from_json(VaeConfig *cfg, const void *root, const char *path, JtError *err);
int vae_config_load(VaeConfig *cfg, const char *path, JtError *err);
/* Group counts divide every channel count, levels and sizes within the limits. */
int vae_config_validate(const VaeConfig *cfg, const char *path, JtError *err);
/* config.json text (malloc'd), loadable by AutoencoderKL.from_config. */
char *vae_config_to_json(const VaeConfig *cfg);
/* The spatial factor 2^(n_levels - 1) between an image and its latent. */
int vae_config_factor(const VaeConfig *cfg);
/* The configured image size (sample_size or its [height, width]); 0 when unset. */
int vae_config_height(const VaeConfig *cfg);
int vae_config_width(const VaeConfig *cfg);
/* JT_OK when height x width is divisible by the factor; else "WHAT: HxW images do not fit ..."
 * naming the factor and the nearest sizes that do. */
int vae_config_check_size(const VaeConfig *cfg, int height, int width, const char *what,
                          JtError *err);

/* ---- the model ------------------------------------------------------------------------------ */
typedef struct Vae Vae;
typedef struct VaeRun VaeRun;

/* Validates cfg and allocates a zero parameter slab (checked against this machine first). */
int vae_create(Vae **out, const VaeConfig *cfg, JtError *err);
void vae_free(Vae *vae);
const VaeConfig *vae_config(const Vae *vae);
const ParamLayout *vae_layout(const Vae *vae);
size_t vae_num_params(const Vae *vae);
float *vae_params(Vae *vae); /* (num_params) in layout (named_parameters()) order */
const float *vae_params_const(const Vae *vae);
/* PyTorch default initialisation (conv weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norm
 * gamma 1, beta 0), draws keyed by (seed, tensor, index) as unet_init_params. */
void vae_init_params(Vae *vae, uint64_t seed);

/* VAE_RUN_FORWARD_ONLY: encode/decode only (no gradient arenas); vae_loss_backward on it is a
 * CHECK failure. */
typedef enum { VAE_RUN_TRAIN = 0, VAE_RUN_FORWARD_ONLY = 1 } VaeRunMode;
/* The encoder and decoder graphs for batches of up to B images of H x W (divisible by the
 * factor) and their arenas; each run's memory is checked against this machine before it is
 * allocated. */
int vae_run_create(VaeRun **out, const Vae *vae, int B, int H, int W, VaeRunMode mode,
                   JtError *err);
void vae_run_free(VaeRun *run);
size_t vae_run_bytes(const VaeRun *run);
int vae_run_capacity(const VaeRun *run);
/* The latent's (channels, height, width) for the run's image size. */
void vae_run_latent_shape(const VaeRun *run, int *c, int *h, int *w);

/* moments = quant_conv(encoder(x)) (or encoder(x) without quant_conv), unclamped. */
void vae_encode_moments(const Vae *vae, VaeRun *run, int B, const float *x /* (B,Cin,H,W) */,
                        float *moments /* (B,2z,h,w) */);
/* The posterior: mean = moments[:, :z], logvar = clamp(moments[:, z:], -30, 20). */
void vae_encode(const Vae *vae, VaeRun *run, int B, const float *x /* (B,Cin,H,W) */,
                float *mean /* (B,z,h,w) */, float *logvar /* (B,z,h,w) */);
/* z = mean + exp(0.5 * logvar) * noise, in diffusers' op order (std first). */
void vae_posterior_sample(float *z, const float *mean, const float *logvar, const float *noise,
                          size_t n);
/* out = decoder(post_quant_conv(z)). */
void vae_decode(const Vae *vae, VaeRun *run, int B, const float *z /* (B,z,h,w) */,
                float *out /* (B,Cout,H,W) */);

/* The training loss of a batch (a training run; out_channels == in_channels):
 *   z = mean + std * noise (the posterior of encode(x)), dec = decode(z),
 *   loss = F.mse_loss(dec, x) + beta * (1/B) sum_b KL_b,
 *   KL_b = 0.5 * sum over (z,h,w) of (mean^2 + var - 1 - logvar) (DiagonalGaussianDistribution.kl,
 *   var = exp(logvar)).
 * The run keeps what the backward needs; mse and kl (may be NULL) receive the two parts (kl as
 * the batch mean of KL_b). dec (may be NULL) receives decode(z), (B,Cout,H,W). */
double vae_loss(const Vae *vae, VaeRun *run, int B, const float *x /* (B,Cin,H,W) */,
                const float *noise /* (B,z,h,w) */, float beta, double *mse, double *kl,
                float *dec);
/* Accumulates (+=) the gradient of the last vae_loss into dparams (num_params floats), summed
 * over the batch: through the decoder, the sampling, the clamp (zero outside [-30, 20]) and the
 * encoder. */
void vae_loss_backward(const Vae *vae, VaeRun *run, float *dparams);

#endif
