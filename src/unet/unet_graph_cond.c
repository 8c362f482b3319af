/* unet_graph_cond.c: the static op graph of UNet2DConditionModel.forward (ldm.md 2.1) for one
 * image size and context length: the UNet2DModel pieces (time embedding MLP plus the class
 * embedding, conv_in, resnets, samplers, skips, output head; unet_graph.c) with
 * Transformer2DModel blocks (nn/blocks.h) after the resnets of the CrossAttn levels and in
 * UNetMidBlock2DCrossAttn, all reading the context input (D, L, 1). Sizes whose sides are not
 * multiples of 2^(levels - 1) are refused before this (diffusers' upsample-size forwarding is
 * not ported). */
#include "unet/unet_internal.h"

#include <stdio.h>
#include <stdlib.h>

void unet_build_graph_cond(const UNet *net, Graph *g, int H, int W, int ctx_len) {
    const UNetConfig *cfg = &net->cfg;
    const int nl = cfg->n_levels, L = cfg->layers_per_block, G = cfg->norm_num_groups;
    const int *ch = cfg->block_out_channels;
    const int tdim = unet_time_embed_dim(cfg);
    const float eps = cfg->norm_eps;
    const int E = unet_cross_attention_dim(net); /* the context's width as given */
    CHECK((E > 0) == (ctx_len > 0), "context length %d for cross-attention width %d", ctx_len, E);
    char p[LAYOUT_NAME_MAX];
    graph_init(g, &net->layout);

    int x = graph_input(g, GRAPH_INPUT_IMAGE, cfg->in_channels, H, W);
    int ctx = E > 0 ? graph_input(g, GRAPH_INPUT_CONTEXT, E, ctx_len, 1) : -1;
    /* encoder_hid_proj ("text_proj"): ctx = Linear(ctx), once, before every block */
    if (ctx >= 0 && cfg->encoder_hid_dim > 0)
        ctx = graph_token_linear(g, ctx, cfg->cross_attention_dim, "encoder_hid_proj");
    if (cfg->center_input_sample) x = graph_unary(g, NODE_CENTER, x);

    int e = graph_timestep(g, ch[0], cfg->flip_sin_to_cos, cfg->freq_shift);
    e = graph_linear(g, e, tdim, "time_embedding.linear_1");
    e = graph_unary(g, NODE_SILU, e);
    e = graph_linear(g, e, tdim, "time_embedding.linear_2");
    if (cfg->num_class_embeds > 0) { /* emb = emb + class_embedding(class_labels) */
        int cemb = graph_embedding(g, cfg->num_class_embeds, tdim, "class_embedding.weight");
        e = graph_add(g, e, cemb, 1.0f);
    }
    int emb_act = graph_unary(g, NODE_SILU, e); /* every resnet applies SiLU to emb: do it once */

    int h = graph_conv(g, x, ch[0], 3, 1, CONV_PAD_SAME, "conv_in");
    const int max_skips = 1 + nl * L + (nl - 1);
    int *skips = xmalloc((size_t)max_skips * sizeof *skips);
    int n_skips = 0;
    skips[n_skips++] = h;

    for (int i = 0; i < nl; i++) {
        TransformerSpec s = unet_cond_spec_down(cfg, i);
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            h = block_resnet2d(g, h, emb_act, ch[i], G, eps, 1.0f, p);
            if (cfg->down_attn[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                h = block_transformer2d(g, h, ctx, G, &s, p);
            }
            CHECK(n_skips < max_skips, "too many skips");
            skips[n_skips++] = h;
        }
        if (i < nl - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            h = graph_conv(g, h, ch[i], 3, 2,
                           cfg->downsample_padding == 0 ? CONV_PAD_RB : CONV_PAD_SAME, p);
            CHECK(n_skips < max_skips, "too many skips");
            skips[n_skips++] = h;
        }
    }

    /* mid_block_scale_factor scales the mid resnets (not the transformer) */
    const float msf = cfg->mid_block_scale_factor;
    if (cfg->mid_block_type == 0) { /* UNetMidBlock2DCrossAttn */
        TransformerSpec s = unet_cond_spec_mid(cfg);
        h = block_resnet2d(g, h, emb_act, ch[nl - 1], G, eps, msf, "mid_block.resnets.0");
        h = block_transformer2d(g, h, ctx, G, &s, "mid_block.attentions.0");
        h = block_resnet2d(g, h, emb_act, ch[nl - 1], G, eps, msf, "mid_block.resnets.1");
    } else if (cfg->mid_block_type == 1) { /* UNetMidBlock2D(num_layers 0, no attention) */
        h = block_resnet2d(g, h, emb_act, ch[nl - 1], G, eps, msf, "mid_block.resnets.0");
    }

    for (int i = 0; i < nl; i++) {
        int out = ch[nl - 1 - i];
        TransformerSpec s = unet_cond_spec_up(cfg, i);
        for (int j = 0; j <= L; j++) {
            CHECK(n_skips > 0, "skip stack underflow");
            int sk = skips[--n_skips];
            const Tensor *th = &g->tensors[h], *ts = &g->tensors[sk];
            CHECK(th->H == ts->H && th->W == ts->W, "skip size mismatch %dx%d vs %dx%d", th->H,
                  th->W, ts->H, ts->W);
            int cat = graph_concat(g, h, sk);
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            h = block_resnet2d(g, cat, emb_act, out, G, eps, 1.0f, p);
            if (cfg->up_attn[i]) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                h = block_transformer2d(g, h, ctx, G, &s, p);
            }
        }
        if (i < nl - 1) {
            h = graph_unary(g, NODE_UPSAMPLE, h);
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            h = graph_conv(g, h, out, 3, 1, CONV_PAD_SAME, p);
        }
    }
    CHECK(n_skips == 0, "%d skips left over", n_skips);
    free(skips);

    h = graph_groupnorm_silu(g, h, G, eps, "conv_norm_out");
    graph_output(g, graph_conv(g, h, cfg->out_channels, 3, 1, CONV_PAD_SAME, "conv_out"));
}
