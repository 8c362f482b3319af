/* denoiser.h: the one entry point every stage uses to run the network, eps = net(x_t, t, cond)
 * (architecture.md "Next shape"), with classifier-free guidance and the one noising loss.
 *
 * A conditioning value is the batch's class labels, its text contexts (encoder hidden states, for a
 * network with cross-attention: diffusers' UNet2DConditionModel), both, or nothing. Class-conditional models follow
 * jtrak's convention for classifier-free guidance (ldm.md 2.5): a model with num_class_embeds = K
 * has K - 1 real classes 0..K-2 and the null ("unconditional") class K - 1, which training's
 * condition dropout feeds and guidance's unconditional branch uses.
 *
 * The noising loss is diffusers' training objective and Journey-TRAK's output function:
 *   x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,   eps_hat = net(x_t, t, cond),
 *   loss = F.mse_loss(eps_hat, eps) (mean),
 * computed once here for train, the attribution output functions and the LDS ground truth. */
#ifndef JTRAK_DENOISER_H
#define JTRAK_DENOISER_H

#include "core/common.h"
#include "diffusion/schedule.h"
#include "unet/unet.h"

#include <stddef.h>

/* The conditioning of a batch. labels: (B) class ids in 0..K-1 (K - 1 = the null class), or NULL
 * for a model without class embeddings. context: (B, L, D) encoder hidden states, exactly for a
 * model with cross-attention (D = cross_attention_dim, L = the denoiser's context length).
 * uncond_context: (L, D), the unconditional context row that classifier-free guidance feeds the
 * unconditional branch (StableDiffusionPipeline encodes the empty prompt; ldm.md 5); only read by
 * denoiser_eps_guided. A NULL Cond pointer means no conditioning. */
typedef struct {
    const int *labels;
    const float *context;
    const float *uncond_context;
} Cond;

typedef enum {
    DENOISER_FORWARD = 0, /* sampling, evaluation: no gradient memory */
    DENOISER_TRAIN = 1    /* forward and backward */
} DenoiserMode;

/* How denoiser_loss_backward reduces the loss over the batch. */
typedef enum {
    LOSS_BATCH_MEAN = 0, /* d mean over all B*D elements (training), summed gradients */
    LOSS_PER_EXAMPLE = 1 /* d of each example's own mean, one gradient slab per example */
} LossReduction;

typedef struct Denoiser Denoiser;

/* A denoiser over `net` for batches of up to `capacity` images of H x W. sched may be NULL when
 * only denoiser_eps / denoiser_eps_guided are used (sampling). net must outlive the denoiser. */
int denoiser_create(Denoiser **out, const UNet *net, const NoiseSchedule *sched, int capacity,
                    int H, int W, DenoiserMode mode, JtError *err);
/* The same for a network with cross-attention, whose contexts have ctx_len tokens (ctx_len 0
 * for a network without: then it is denoiser_create). */
int denoiser_create_ctx(Denoiser **out, const UNet *net, const NoiseSchedule *sched, int capacity,
                        int H, int W, int ctx_len, DenoiserMode mode, JtError *err);
void denoiser_free(Denoiser *d);
size_t denoiser_bytes(const Denoiser *d);
const UNet *denoiser_net(const Denoiser *d);
int denoiser_capacity(const Denoiser *d);

/* Real classes (K - 1) of a class-conditional model, 0 for an unconditional one. */
int denoiser_num_classes(const Denoiser *d);
/* The null class K - 1, or -1 for an unconditional model. */
int denoiser_null_class(const Denoiser *d);
/* Checks a label of user input against the model: JT_ERR naming `what` when the model is
 * unconditional, or the label is outside 0..K-1. */
int denoiser_check_label(const Denoiser *d, int label, const char *what, JtError *err);

/* Context tokens L and width D of the network's cross-attention (0, 0 without). */
int denoiser_context_len(const Denoiser *d);
int denoiser_context_dim(const Denoiser *d);

/* eps (B, C_out, H, W) = net(x_t, t, cond) for B <= capacity; t (B) as float (diffusers converts
 * timesteps to float). cond's labels are given exactly for a class-conditional model, its context
 * exactly for a model with cross-attention (CHECK). */
void denoiser_eps(Denoiser *d, int B, float *eps, const float *x_t, const float *t,
                  const Cond *cond);
/* Classifier-free guidance (diffusers' pipelines): one batch of 2B, [unconditional; conditional],
 * then eps = eps_u + w (eps_c - eps_u) in float32 as torch computes it. The unconditional half
 * has the null class (class-conditional model) and the uncond_context row (model with
 * cross-attention), as StableDiffusionPipeline batches [negative; prompt]. Needs 2B <= capacity
 * and a conditional model. */
void denoiser_eps_guided(Denoiser *d, int B, float *eps, const float *x_t, const float *t,
                         const Cond *cond, float w);

/* The noising loss for B <= capacity examples: x0 (B, C_in, H, W), t (B) in 0..T-1, eps (B, C_in,
 * H, W). Returns the batch's mean over B*D elements (as training's mse_loss); fills each
 * example's own mean into per_example (B) when non-NULL. Both in double. */
double denoiser_loss(Denoiser *d, int B, const float *x0, const int *t, const float *eps,
                     const Cond *cond, double *per_example);
/* The forward half of the noising loss without the loss: x_t = add_noise(x0, eps, t), eps_hat
 * (B, C_out, H, W) = net(x_t, t, cond), returned (valid until the next call; the same buffer as
 * denoiser_last_eps). For output functions other than the loss (D-TRAK's squared norm), which
 * then call denoiser_backward with their own d f / d eps_hat; C_out may differ from C_in. */
const float *denoiser_noised_eps(Denoiser *d, int B, const float *x0, const int *t,
                                 const float *eps, const Cond *cond);
/* eps_hat (B, C_out, H, W) of the last denoiser_loss (valid until the next call). */
const float *denoiser_last_eps(const Denoiser *d);
/* Backward of the last denoiser_loss (torch's mse_loss backward, (eps_hat - eps) * 2/n): with
 * LOSS_BATCH_MEAN the gradient of the batch mean accumulates (+=) into dparams (example_stride 0);
 * with LOSS_PER_EXAMPLE example b's gradient of its own mean goes to dparams + b * example_stride. */
void denoiser_loss_backward(Denoiser *d, int B, LossReduction reduction, float *dparams,
                            size_t example_stride);
/* Backward of the last forward with a given d(f)/d(eps_hat) (B, C_out, H, W), for output
 * functions other than the loss; accumulates as unet_backward. */
void denoiser_backward(Denoiser *d, int B, const float *dout, float *dparams,
                       size_t example_stride);
/* Restricts the backwards' parameter gradients to a subset (unet_run_select_params; NULL: all);
 * dparams then holds denoiser_grad_params floats per slab, at the compact offsets. */
void denoiser_select_params(Denoiser *d, const size_t *compact);
size_t denoiser_grad_params(const Denoiser *d);

#endif
