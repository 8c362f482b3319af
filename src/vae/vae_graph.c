/* vae_graph.c: the static op graphs of AutoencoderKL.encode and .decode for one image size
 * (ldm.md section 3; diffusers 0.42.1 models/autoencoders/vae.py Encoder and Decoder):
 *   encoder: conv_in; per level layers_per_block resnets and (but the last) a Downsample2D with
 *            padding 0 (pad right/bottom, 3x3 stride 2); mid resnet, one-head attention, resnet;
 *            silu(conv_norm_out); conv_out to 2 * latent_channels; quant_conv (1x1).
 *   decoder: post_quant_conv (1x1); conv_in; mid block; per reversed level layers_per_block + 1
 *            resnets and (but the last) a nearest 2x upsample + 3x3 conv; silu(conv_norm_out);
 *            conv_out.
 * Every GroupNorm uses norm_num_groups and eps 1e-6; the resnets have no time embedding and an
 * output scale factor of 1; the mid attention's rescale factor is 1. */
#include "nn/blocks.h"
#include "vae/vae_internal.h"

#include <stdio.h>

static int mid_block(const VaeConfig *cfg, Graph *g, int h, const char *part) {
    const int c = cfg->block_out_channels[cfg->n_levels - 1], G = cfg->norm_num_groups;
    char p[LAYOUT_NAME_MAX];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", part);
    h = block_resnet2d(g, h, -1, c, G, VAE_NORM_EPS, 1.0f, p);
    if (cfg->mid_block_add_attention) { /* attention_head_dim = c: one head of width c */
        snprintf(p, sizeof p, "%s.mid_block.attentions.0", part);
        h = block_attn(g, h, G, VAE_NORM_EPS, 0, 1.0f, p);
    }
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", part);
    return block_resnet2d(g, h, -1, c, G, VAE_NORM_EPS, 1.0f, p);
}

void vae_build_encoder(const Vae *vae, Graph *g, int H, int W) {
    const VaeConfig *cfg = &vae->cfg;
    const int n = cfg->n_levels, L = cfg->layers_per_block, G = cfg->norm_num_groups;
    const int *ch = cfg->block_out_channels;
    char p[LAYOUT_NAME_MAX];
    graph_init(g, &vae->layout);
    int x = graph_input(g, GRAPH_INPUT_IMAGE, cfg->in_channels, H, W);
    int h = graph_conv(g, x, ch[0], 3, 1, CONV_PAD_SAME, "encoder.conv_in");
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            h = block_resnet2d(g, h, -1, ch[i], G, VAE_NORM_EPS, 1.0f, p);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            h = graph_conv(g, h, ch[i], 3, 2, CONV_PAD_RB, p);
        }
    }
    h = mid_block(cfg, g, h, "encoder");
    h = graph_groupnorm_silu(g, h, G, VAE_NORM_EPS, "encoder.conv_norm_out");
    h = graph_conv(g, h, 2 * cfg->latent_channels, 3, 1, CONV_PAD_SAME, "encoder.conv_out");
    if (cfg->use_quant_conv)
        h = graph_conv(g, h, 2 * cfg->latent_channels, 1, 1, CONV_PAD_SAME, "quant_conv");
    graph_output(g, h);
}

void vae_build_decoder(const Vae *vae, Graph *g, int hz, int wz) {
    const VaeConfig *cfg = &vae->cfg;
    const int n = cfg->n_levels, L = cfg->layers_per_block, G = cfg->norm_num_groups;
    const int *ch = cfg->block_out_channels;
    char p[LAYOUT_NAME_MAX];
    graph_init(g, &vae->layout);
    int h = graph_input(g, GRAPH_INPUT_IMAGE, cfg->latent_channels, hz, wz);
    if (cfg->use_post_quant_conv)
        h = graph_conv(g, h, cfg->latent_channels, 1, 1, CONV_PAD_SAME, "post_quant_conv");
    h = graph_conv(g, h, ch[n - 1], 3, 1, CONV_PAD_SAME, "decoder.conv_in");
    h = mid_block(cfg, g, h, "decoder");
    for (int i = 0; i < n; i++) {
        const int out = ch[n - 1 - i];
        for (int j = 0; j <= L; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            h = block_resnet2d(g, h, -1, out, G, VAE_NORM_EPS, 1.0f, p);
        }
        if (i < n - 1) {
            h = graph_unary(g, NODE_UPSAMPLE, h);
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            h = graph_conv(g, h, out, 3, 1, CONV_PAD_SAME, p);
        }
    }
    h = graph_groupnorm_silu(g, h, G, VAE_NORM_EPS, "decoder.conv_norm_out");
    graph_output(g, graph_conv(g, h, cfg->out_channels, 3, 1, CONV_PAD_SAME, "decoder.conv_out"));
}
