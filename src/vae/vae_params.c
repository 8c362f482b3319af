/* vae_params.c: the parameter table of an AutoencoderKL, registered in PyTorch's
 * named_parameters() order with diffusers' key names (ldm.md section 3, checked against diffusers
 * 0.42.1): the encoder (conv_in, down_blocks, mid_block, conv_norm_out, conv_out), the decoder
 * (conv_in, up_blocks, then mid_block: Decoder assigns its up_blocks list before its mid block,
 * conv_norm_out, conv_out), quant_conv, post_quant_conv. Every resnet is a ResnetBlock2D without a
 * time embedding; the mid attention is the deprecated attention block (group_norm, to_q, to_k,
 * to_v, to_out.0) with one head. */
#include "nn/blocks.h"
#include "vae/vae_internal.h"

#include <stdio.h>

static void mid_params(const VaeConfig *cfg, ParamLayout *l, const char *part) {
    const int c = cfg->block_out_channels[cfg->n_levels - 1];
    char p[LAYOUT_NAME_MAX];
    /* UNetMidBlock2D registers its attentions before its resnets */
    if (cfg->mid_block_add_attention) {
        snprintf(p, sizeof p, "%s.mid_block.attentions.0", part);
        block_attn_params(l, p, c);
    }
    for (int j = 0; j < 2; j++) {
        snprintf(p, sizeof p, "%s.mid_block.resnets.%d", part, j);
        block_resnet2d_params(l, p, c, c, 0);
    }
}

void vae_register_params(const VaeConfig *cfg, ParamLayout *l) {
    const int n = cfg->n_levels, L = cfg->layers_per_block, z = cfg->latent_channels;
    const int *ch = cfg->block_out_channels;
    char p[LAYOUT_NAME_MAX];

    block_params_conv2d(l, "encoder.conv_in", ch[0], cfg->in_channels, 3);
    int prev = ch[0];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            block_resnet2d_params(l, p, j == 0 ? prev : ch[i], ch[i], 0);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            block_params_conv2d(l, p, ch[i], ch[i], 3);
        }
        prev = ch[i];
    }
    mid_params(cfg, l, "encoder");
    block_params_norm(l, "encoder.conv_norm_out", ch[n - 1]);
    block_params_conv2d(l, "encoder.conv_out", 2 * z, ch[n - 1], 3); /* double_z */

    block_params_conv2d(l, "decoder.conv_in", ch[n - 1], z, 3);
    prev = ch[n - 1];
    for (int i = 0; i < n; i++) {
        const int out = ch[n - 1 - i];
        for (int j = 0; j <= L; j++) { /* UpDecoderBlock2D: layers_per_block + 1 resnets */
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            block_resnet2d_params(l, p, j == 0 ? prev : out, out, 0);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            block_params_conv2d(l, p, out, out, 3);
        }
        prev = out;
    }
    mid_params(cfg, l, "decoder");
    block_params_norm(l, "decoder.conv_norm_out", ch[0]);
    block_params_conv2d(l, "decoder.conv_out", cfg->out_channels, ch[0], 3);

    if (cfg->use_quant_conv) block_params_conv2d(l, "quant_conv", 2 * z, 2 * z, 1);
    if (cfg->use_post_quant_conv) block_params_conv2d(l, "post_quant_conv", z, z, 1);
}

void vae_init_params(Vae *vae, uint64_t seed) {
    layout_init_params(&vae->layout, vae->params, seed);
}
