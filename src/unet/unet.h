/* unet.h: diffusers UNet2DModel in C (unet2d.md sections 3-6), and UNet2DConditionModel (ldm.md
 * section 2: the same network type, its UNetConfig says so with cfg.cond): built from a UNetConfig
 * as a static graph of nn ops run by the network executor (nn/graph.h, blocks from nn/blocks.h),
 * parameters in one slab described by a ParamLayout with diffusers key names, forward for a batch
 * with a per-sample timestep (and class label, for a class-conditional model), backward to all
 * parameter gradients, summed over the batch or one slab per example. */
#ifndef JTRAK_UNET_H
#define JTRAK_UNET_H

#include "core/common.h"
#include "core/layout.h"
#include "unet/config.h"

#include <stdint.h>

typedef struct UNet UNet;
typedef struct UNetRun UNetRun;

/* Builds the model for cfg (validated first). Parameters start at zero: call unet_init_params or
 * load them. */
int unet_create(UNet **out, const UNetConfig *cfg, JtError *err);
void unet_free(UNet *net);
const UNetConfig *unet_config(const UNet *net);
const ParamLayout *unet_layout(const UNet *net);
size_t unet_num_params(const UNet *net);
float *unet_params(UNet *net);             /* (num_params) in layout order */
const float *unet_params_const(const UNet *net);
/* PyTorch default initialisation (unet2d.md section 7): conv/linear weight and bias
 * ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norm gamma 1, beta 0, class_embedding.weight (nn.Embedding)
 * ~ N(0, 1); draws keyed by (seed, tensor, index). */
void unet_init_params(UNet *net, uint64_t seed);
/* cfg.num_class_embeds: the number of class ids a forward takes, 0 for an unconditional model. */
int unet_num_classes(const UNet *net);
/* The width D of the cross-attention context a forward takes (cross_attention_dim of a
 * UNet2DConditionModel with at least one cross-attention block; encoder_hid_dim when the model
 * projects its context with encoder_hid_proj first), 0 for a network without cross-attention
 * (every UNet2DModel). */
int unet_cross_attention_dim(const UNet *net);

/* UNET_RUN_FORWARD_ONLY: a run that only ever calls unet_forward (sampling, evaluation): no
 * gradient arena and no gradient scratch are allocated, and unet_backward on it is a CHECK
 * failure. */
typedef enum { UNET_RUN_TRAIN = 0, UNET_RUN_FORWARD_ONLY = 1 } UNetRunMode;
/* Activations and scratch for batches of up to B images of H x W (H, W divisible by
 * 2^(n_levels-1)). */
int unet_run_create(UNetRun **out, const UNet *net, int B, int H, int W, UNetRunMode mode,
                    JtError *err);
/* The same for a network with cross-attention: contexts of ctx_len tokens (L) of width
 * unet_cross_attention_dim. ctx_len must be >= 1 for a network with cross-attention and 0 for one
 * without (an error otherwise). unet_run_create is this with ctx_len 0. */
int unet_run_create_ctx(UNetRun **out, const UNet *net, int B, int H, int W, int ctx_len,
                        UNetRunMode mode, JtError *err);
void unet_run_free(UNetRun *run);
/* Bytes held by the run (activations, their gradients, scratch; the smaller figure for a
 * forward-only run): for memory estimates. */
size_t unet_run_bytes(const UNetRun *run);
/* For make bench: while on, unet_forward and unet_backward add the wall time of their convolution
 * nodes and of their other nodes to two counters (on = 1 also zeroes them). */
void unet_run_profile(UNetRun *run, int on);
void unet_run_profile_seconds(const UNetRun *run, double *conv_s, double *other_s);

/* eps = unet(x, t, class_labels) for the first B images (B <= the run's capacity). t holds one
 * timestep per sample (float, as diffusers converts them). labels: (B) class ids in
 * 0..num_class_embeds-1, required (non-NULL) iff the config has num_class_embeds > 0, must be NULL
 * otherwise (CHECK: a bug, not user input). */
void unet_forward(const UNet *net, UNetRun *run, int B, float *out /* (B,out_ch,H,W) */,
                  const float *x /* (B,in_ch,H,W) */, const float *t /* (B) */,
                  const int *labels /* (B) or NULL */);
/* unet_forward with the cross-attention context: context (B, L, D) token-major (diffusers'
 * encoder_hidden_states), L the run's ctx_len; required (non-NULL) iff the network has
 * cross-attention (CHECK). unet_forward is this with context NULL. */
void unet_forward_ctx(const UNet *net, UNetRun *run, int B, float *out /* (B,out_ch,H,W) */,
                      const float *x /* (B,in_ch,H,W) */, const float *t /* (B) */,
                      const int *labels /* (B) or NULL */, const float *context /* (B,L,D) */);
/* Backward of the last forward (no gradient with respect to the context): accumulates (+=)
 * parameter gradients into dparams. With example_stride 0 they are summed over the batch (dparams
 * has num_params floats); otherwise example b's gradient goes to dparams + b*example_stride
 * (example_stride >= num_params). dout is d(loss)/d(out). If dx is non-NULL the input gradient is
 * written (overwritten) there. */
void unet_backward(const UNet *net, UNetRun *run, int B, float *dparams, size_t example_stride,
                   const float *dout /* (B,out_ch,H,W) */, float *dx /* (B,in_ch,H,W) or NULL */);
/* Restricts the run's parameter gradients to a subset (nn/graph.h graph_run_select_params):
 * compact (unet_layout(net)->count) gives each tensor's offset in a compact gradient slab or
 * GRAPH_NO_PARAM ((size_t)-1) to leave it out; NULL selects every parameter again. unet_backward
 * then writes only the selected gradients, at their compact offsets (example_stride >=
 * unet_run_grad_params). */
void unet_run_select_params(UNetRun *run, const size_t *compact);
/* Floats of one gradient slab of the run: the selected count, or unet_num_params. */
size_t unet_run_grad_params(const UNetRun *run);

#endif
