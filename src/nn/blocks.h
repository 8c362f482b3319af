/* blocks.h: the network blocks several jtrak networks share, each block's parameter registration
 * (diffusers' key names, in PyTorch's named_parameters() order within the block, with PyTorch's
 * default initialisation) beside its wiring into a Graph (nn/graph.h), so that a network builder
 * registers a block's tensors with one call and wires it with another, under the same prefix.
 *
 * Module registration (torch's reset_parameters, recorded in each LayoutEntry's init):
 *   nn.Conv2d / nn.Linear: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in of the
 *   weight (cin*k*k, in); GroupNorm/LayerNorm: weight 1, bias 0; nn.Embedding: weight ~ N(0, 1).
 *
 * Blocks (unet2d.md section 4):
 *   ResnetBlock2D, time_embedding_norm "default", no up/down sampling: norm1, conv1,
 *   time_emb_proj, norm2, conv2, conv_shortcut (when cin != cout); without a time embedding
 *   (temb None, the AutoencoderKL resnets) there is no time_emb_proj and nothing is added;
 *   out = (shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + time_emb_proj(silu(temb))))))
 *         / output_scale_factor.
 *   Attention with _from_deprecated_attn_block (spatial self-attention, bias on every projection):
 *   group_norm, to_q, to_k, to_v, to_out.0; out = (attn(group_norm(x)) + x) / rescale. */
#ifndef JTRAK_BLOCKS_H
#define JTRAK_BLOCKS_H

#include "core/layout.h"
#include "nn/graph.h"

/* ---- module registration -------------------------------------------------------------------- */
/* "<prefix>.weight" (cout, cin, k, k) and "<prefix>.bias" (cout) */
void block_params_conv2d(ParamLayout *l, const char *prefix, int cout, int cin, int k);
/* "<prefix>.weight" (out, in) and "<prefix>.bias" (out) */
void block_params_linear(ParamLayout *l, const char *prefix, int out, int in);
/* affine norm: "<prefix>.weight" (c) = 1 and "<prefix>.bias" (c) = 0 */
void block_params_norm(ParamLayout *l, const char *prefix, int c);
/* "<prefix>.weight" (K, T) */
void block_params_embedding(ParamLayout *l, const char *prefix, int K, int T);

/* ---- ResnetBlock2D -------------------------------------------------------------------------- */
/* temb_dim 0: no time embedding (temb_channels None), no time_emb_proj registered. */
void block_resnet2d_params(ParamLayout *l, const char *prefix, int cin, int cout, int temb_dim);
/* x: (cin, H, W); temb_act: silu(temb), (temb_dim, 1, 1), shared by the network's resnets (the
 * SiLU is applied once by the caller), or -1 for a resnet without a time embedding; groups, eps:
 * resnet_groups and resnet_eps. */
int block_resnet2d(Graph *g, int x, int temb_act, int cout, int groups, float eps,
                   float output_scale_factor, const char *prefix);

/* ---- self-attention (deprecated attention block) -------------------------------------------- */
void block_attn_params(ParamLayout *l, const char *prefix, int c);
/* x: (c, H, W); head_dim 0: one head of width c. */
int block_attn(Graph *g, int x, int groups, float eps, int head_dim, float rescale_output_factor,
               const char *prefix);

/* ---- Transformer2DModel + BasicTransformerBlock (ldm.md 2.3, 2.4; blocks_transformer.c) ----
 * diffusers' Transformer2DModel on continuous input with norm_type "layer_norm", as
 * UNet2DConditionModel's cross-attention blocks build it:
 *   res = x; y = proj_in(GroupNorm(x, groups, eps 1e-6 fixed))   (1x1 conv, or Linear per token)
 *   per block k: y += attn1(LN1(y), kv = LN1(y), or the context when only_cross_attention)
 *                y += attn2(LN2(y), kv = context)
 *                y += ff.net.2(a * gelu_erf(g)), [a | g] = ff.net.0.proj(LN3(y))  (GEGLU, 4C)
 *   out = proj_out(y) + res
 * LayerNorms eps 1e-5; to_q/to_k/to_v without bias, to_out.0 with bias; heads split C
 * contiguously. Parameters per block with one layer: 20 C^2 + 2 D C + 21 C (ldm.md 2.4). */
typedef struct {
    int heads;             /* C % heads == 0 */
    int layers;            /* transformer_layers_per_block: BasicTransformerBlocks */
    int context_dim;       /* D: width of the context attn2 (and attn1 if only_cross) reads */
    int linear_projection; /* use_linear_projection: proj_in/proj_out weights (C,C), else (C,C,1,1)
                            */
    int only_cross_attention; /* attn1 attends to the context too */
} TransformerSpec;
void block_transformer2d_params(ParamLayout *l, const char *prefix, int c,
                                const TransformerSpec *s);
/* x: (c, H, W); ctx: the context tensor (D, L, 1) (graph_input GRAPH_INPUT_CONTEXT); groups:
 * the GroupNorm's (norm_num_groups). */
int block_transformer2d(Graph *g, int x, int ctx, int groups, const TransformerSpec *s,
                        const char *prefix);

#endif
