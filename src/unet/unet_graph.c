/* unet_graph.c: builds the static op graph of UNet2DModel.forward for one image size (unet2d.md
 * sections 3-5) from the graph ops and the shared blocks (nn/blocks.h): time embedding MLP (plus
 * the class embedding), conv_in, down blocks (resnets, attentions, downsamplers) pushing skips,
 * the mid block, up blocks popping skips ([h, skip] concatenation), and the output head. */
#include "nn/blocks.h"
#include "unet/unet_internal.h"

#include <stdio.h>
#include <stdlib.h>

void unet_build_graph(const UNet *net, Graph *g, int H, int W, int ctx_len) {
    if (net->cfg.cond) {
        unet_build_graph_cond(net, g, H, W, ctx_len);
        return;
    }
    CHECK(ctx_len == 0, "a UNet2DModel takes no context (%d tokens)", ctx_len);
    const UNetConfig *cfg = &net->cfg;
    const int nl = cfg->n_levels, L = cfg->layers_per_block, G = cfg->norm_num_groups;
    const int *ch = cfg->block_out_channels;
    const int tdim = unet_time_embed_dim(cfg);
    const float eps = cfg->norm_eps;
    const int hd = cfg->attention_head_dim;
    char p[LAYOUT_NAME_MAX];
    graph_init(g, &net->layout);

    int x = graph_input(g, GRAPH_INPUT_IMAGE, cfg->in_channels, H, W);
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
    /* conv_in, every down resnet (or attention) and every downsampler push one skip */
    const int max_skips = 1 + nl * L + (nl - 1);
    int *skips = xmalloc((size_t)max_skips * sizeof *skips);
    int n_skips = 0;
    skips[n_skips++] = h;

    for (int i = 0; i < nl; i++) {
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            h = block_resnet2d(g, h, emb_act, ch[i], G, eps, 1.0f, p);
            if (cfg->down_attn[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                h = block_attn(g, h, G, eps, hd, 1.0f, p);
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

    const float msf = cfg->mid_block_scale_factor;
    h = block_resnet2d(g, h, emb_act, ch[nl - 1], G, eps, msf, "mid_block.resnets.0");
    if (cfg->add_attention) {
        int ag = cfg->attn_norm_num_groups ? cfg->attn_norm_num_groups : G;
        h = block_attn(g, h, ag, eps, hd, msf, "mid_block.attentions.0");
    }
    h = block_resnet2d(g, h, emb_act, ch[nl - 1], G, eps, msf, "mid_block.resnets.1");

    for (int i = 0; i < nl; i++) {
        int out = ch[nl - 1 - i];
        for (int j = 0; j <= L; j++) {
            CHECK(n_skips > 0, "skip stack underflow");
            int s = skips[--n_skips];
            const Tensor *th = &g->tensors[h], *ts = &g->tensors[s];
            CHECK(th->H == ts->H && th->W == ts->W, "skip size mismatch %dx%d vs %dx%d", th->H,
                  th->W, ts->H, ts->W);
            int cat = graph_concat(g, h, s);
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            h = block_resnet2d(g, cat, emb_act, out, G, eps, 1.0f, p);
            if (cfg->up_attn[i]) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                h = block_attn(g, h, G, eps, hd, 1.0f, p);
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
