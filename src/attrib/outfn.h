/* outfn.h: the model-output functions of attribution and their per-example gradients
 * (method.md 1.3, 1.4, 2.2). For an example (or a target) with clean image x0 and S draws
 * (t_s, eps_s), the function is summed over the draws:
 *   OUTFN_LOSS    f = sum_s mean_e (eps_s - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps_s,
 * t_s))^2 (the denoising loss: TRAK / Journey-TRAK, F.mse_loss with mean reduction) OUTFN_SQNORM  f
 * = sum_s mean_e eps_theta(x_t_s, t_s)^2      (D-TRAK's "square" output) with eps_theta =
 * eps_theta(x_t, t, c) conditioned on the example's own class c for a class-conditional model
 * (Journey-TRAK featurizes each training image with its own caption, ldm.md 1.2), and its gradient
 * with respect to every parameter is one row of a (B, P) slab, computed from batched
 * forward/backward passes with per-example gradient slabs (unet_backward's example stride), never
 * with batch size 1. */
#ifndef JTRAK_OUTFN_H
#define JTRAK_OUTFN_H

#include "core/common.h"
#include "diffusion/denoiser.h"
#include "diffusion/schedule.h"
#include "unet/unet.h"

#include <stdint.h>

typedef enum { OUTFN_LOSS = 0, OUTFN_SQNORM = 1 } OutFn;

const char *outfn_name(OutFn f); /* "loss", "sqnorm" */
int outfn_parse(const char *name, OutFn *f);

typedef struct GradEngine GradEngine;

/* An engine for batches of up to `batch` examples of the model's image size. */
int grad_engine_create(GradEngine **out, const UNet *net, const NoiseSchedule *sched, int batch,
                       JtError *err);
/* The same for a network with cross-attention whose contexts have ctx_len tokens. */
int grad_engine_create_ctx(GradEngine **out, const UNet *net, const NoiseSchedule *sched,
                           int batch, int ctx_len, JtError *err);
void grad_engine_free(GradEngine *g);
size_t grad_engine_bytes(const GradEngine *g);

/* Per-example gradients over a parameter subset (denoiser_select_params): compact gives each
 * layout tensor's offset in the compact row or GRAPH_NO_PARAM ((size_t)-1) to leave it out, NULL
 * for every parameter (the default). The rows of grads become grad_engine_grad_params floats,
 * bitwise the selected entries of the full rows. */
void grad_engine_select_params(GradEngine *g, const size_t *compact);
/* P: floats of one gradient row (the selected count, or unet_num_params). */
size_t grad_engine_grad_params(const GradEngine *g);

/* num_class_embeds K of the engine's model (0 when unconditional). */
int grad_engine_num_classes(const GradEngine *g);

/* grads (B, P) (P = grad_engine_grad_params) is OVERWRITTEN with the per-example gradients of f for
 * B <= batch examples: x0 (B, C, H, W), t (B, S) timesteps, eps (B, S, C, H, W) noise, labels (B)
 * each example's class (0..K-1, K - 1 the null class) for a class-conditional model, NULL for an
 * unconditional one (the CFG convention of diffusion/denoiser.h). Also writes each example's value
 * of f into values (B) when non-NULL. */
void grad_engine_run(GradEngine *g, OutFn f, int B, int S, const float *x0, const int *t,
                     const float *eps, const int *labels, float *grads, double *values);
/* The general form: any conditioning (diffusion/denoiser.h's Cond: labels and/or text contexts
 * (B, L, D), each example's own), and x0 once per example (x0_per_draw 0) or per (example, draw)
 * (1: (B, S, C, H, W), latent posterior samples). */
void grad_engine_run_cond(GradEngine *g, OutFn f, int B, int S, const float *x0, int x0_per_draw,
                          const int *t, const float *eps, const Cond *cond, float *grads,
                          double *values);

/* grad_engine_run with a clean image per (example, draw): x0s (B, S, C, H, W), draw s of example b
 * noising x0s[b, s] (a latent dataset in sample mode: a fresh posterior sample per example and per
 * timestep, as Journey-TRAK's featurizer encodes inside the vmapped function, ldm.md 1.2). With
 * x0s[b, s] = x0[b] for every s it is grad_engine_run bit for bit. */
void grad_engine_run_x0s(GradEngine *g, OutFn f, int B, int S, const float *x0s, const int *t,
                         const float *eps, const int *labels, float *grads, double *values);

/* The draws of attribution, keyed so they depend only on (seed, model, item, slot):
 * train features:   item = training row, timesteps uniform on {0..T-1} (with replacement)
 * target gradients: item = target key (see attrib_target_key), timesteps all equal to t_fixed
 *                   when t_fixed >= 0, else uniform.
 * t (S) and eps (S, D). */
void attrib_draws(uint64_t seed, int model_id, uint64_t item, int S, int T, int t_fixed, size_t D,
                  int *t, float *eps);
/* The item of shared draws (common random numbers): with them every training row and every target
 * uses the same (t_s, eps_s) for slot s (a journey target keeps its fixed t and takes eps_s), as
 * D-TRAK seeds its noise by timestep so that training and query gradients share it. Row indices
 * and target keys (bit 62) never reach bit 63. */
#define ATTRIB_SHARED_ITEM ((uint64_t)1 << 63)

/* A key for target draws that differs from every training row: (sample index, step) packed with
 * a high tag bit. */
uint64_t attrib_target_key(int sample, int timestep);

#endif
