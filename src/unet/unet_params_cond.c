/* unet_params_cond.c: the parameter table of a UNet2DConditionModel in diffusers'
 * named_parameters() order (ldm.md 2.6): conv_in, time_embedding, [class_embedding], down_blocks
 * (in each block its attentions, then its resnets, then its downsampler), up_blocks (the same),
 * THEN mid_block (registered after the up blocks' ModuleList; attentions.0 before resnets.0 and
 * resnets.1), conv_norm_out, conv_out. The resnets, samplers and time embedding are UNet2DModel's;
 * the cross-attention blocks are nn/blocks.h's Transformer2DModel. */
#include "nn/blocks.h"
#include "unet/unet_internal.h"

#include <stdio.h>

static TransformerSpec spec_of(const UNetConfig *cfg, int heads, int layers, int only_cross) {
    TransformerSpec s = {.heads = heads,
                         .layers = layers,
                         .context_dim = cfg->cross_attention_dim,
                         .linear_projection = cfg->use_linear_projection,
                         .only_cross_attention = only_cross};
    return s;
}

TransformerSpec unet_cond_spec_down(const UNetConfig *cfg, int i) {
    return spec_of(cfg, unet_config_heads_down(cfg, i), unet_config_tlayers_down(cfg, i),
                   cfg->only_cross_attention);
}
TransformerSpec unet_cond_spec_up(const UNetConfig *cfg, int i) {
    return spec_of(cfg, unet_config_heads_up(cfg, i), unet_config_tlayers_up(cfg, i),
                   cfg->only_cross_attention);
}
/* UNetMidBlock2DCrossAttn takes no only_cross_attention (diffusers ignores it for this block) */
TransformerSpec unet_cond_spec_mid(const UNetConfig *cfg) {
    return spec_of(cfg, unet_config_heads_mid(cfg), unet_config_tlayers_mid(cfg), 0);
}

void unet_register_params_cond(const UNetConfig *cfg, ParamLayout *l) {
    const int n = cfg->n_levels, L = cfg->layers_per_block;
    const int *ch = cfg->block_out_channels;
    const int tdim = unet_time_embed_dim(cfg);
    char p[LAYOUT_NAME_MAX];

    block_params_conv2d(l, "conv_in", ch[0], cfg->in_channels, 3);
    block_params_linear(l, "time_embedding.linear_1", tdim, ch[0]);
    block_params_linear(l, "time_embedding.linear_2", tdim, tdim);
    /* registered before class_embedding (_set_encoder_hid_proj runs first in __init__) */
    if (cfg->encoder_hid_dim > 0)
        block_params_linear(l, "encoder_hid_proj", cfg->cross_attention_dim, cfg->encoder_hid_dim);
    if (cfg->num_class_embeds > 0)
        block_params_embedding(l, "class_embedding", cfg->num_class_embeds, tdim);

    int prev = ch[0];
    for (int i = 0; i < n; i++) {
        int cout = ch[i];
        if (cfg->down_attn[i]) {
            TransformerSpec s = unet_cond_spec_down(cfg, i);
            for (int j = 0; j < L; j++) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                block_transformer2d_params(l, p, cout, &s);
            }
        }
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            block_resnet2d_params(l, p, j == 0 ? prev : cout, cout, tdim);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            block_params_conv2d(l, p, cout, cout, 3);
        }
        prev = cout;
    }

    int prev_out = ch[n - 1];
    for (int i = 0; i < n; i++) {
        int out = ch[n - 1 - i];
        int in = ch[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
        if (cfg->up_attn[i]) {
            TransformerSpec s = unet_cond_spec_up(cfg, i);
            for (int j = 0; j <= L; j++) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                block_transformer2d_params(l, p, out, &s);
            }
        }
        for (int j = 0; j <= L; j++) {
            int res_skip = (j == L) ? in : out;
            int res_in = (j == 0) ? prev_out : out;
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            block_resnet2d_params(l, p, res_in + res_skip, out, tdim);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            block_params_conv2d(l, p, out, out, 3);
        }
        prev_out = out;
    }

    int cm = ch[n - 1];
    if (cfg->mid_block_type == 0) { /* UNetMidBlock2DCrossAttn */
        TransformerSpec s = unet_cond_spec_mid(cfg);
        block_transformer2d_params(l, "mid_block.attentions.0", cm, &s);
        block_resnet2d_params(l, "mid_block.resnets.0", cm, cm, tdim);
        block_resnet2d_params(l, "mid_block.resnets.1", cm, cm, tdim);
    } else if (cfg->mid_block_type == 1) { /* UNetMidBlock2D(num_layers 0): one resnet */
        block_resnet2d_params(l, "mid_block.resnets.0", cm, cm, tdim);
    }

    block_params_norm(l, "conv_norm_out", ch[0]);
    block_params_conv2d(l, "conv_out", cfg->out_channels, ch[0], 3);
}
