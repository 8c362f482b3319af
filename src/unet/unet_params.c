/* unet_params.c: the parameter table of a UNet2DModel, registered in PyTorch's named_parameters()
 * order with diffusers' key names (unet2d.md section 6 and Appendix A) and PyTorch's default
 * initialisation (section 7) recorded in each entry (nn/blocks.h registers the modules and the
 * shared blocks; this file keeps UNet2DModel's own order). The graph builder (unet_graph.c) looks
 * tensors up by name. */
#include "nn/blocks.h"
#include "unet/unet_internal.h"

#include <stdio.h>

void unet_register_params(const UNetConfig *cfg, ParamLayout *l) {
    if (cfg->cond) {
        unet_register_params_cond(cfg, l);
        return;
    }
    const int n = cfg->n_levels, L = cfg->layers_per_block;
    const int *ch = cfg->block_out_channels;
    const int tdim = unet_time_embed_dim(cfg);
    char p[LAYOUT_NAME_MAX];

    block_params_conv2d(l, "conv_in", ch[0], cfg->in_channels, 3);
    block_params_linear(l, "time_embedding.linear_1", tdim, ch[0]);
    block_params_linear(l, "time_embedding.linear_2", tdim, tdim);
    /* nn.Embedding(num_class_embeds, time_embed_dim), registered right after time_embedding (as
     * named_parameters() lists it in diffusers 0.42.1) */
    if (cfg->num_class_embeds > 0)
        block_params_embedding(l, "class_embedding", cfg->num_class_embeds, tdim);

    /* PyTorch registers a block's attentions before its resnets, and up_blocks before mid_block. */
    int prev = ch[0];
    for (int i = 0; i < n; i++) {
        int cout = ch[i];
        if (cfg->down_attn[i])
            for (int j = 0; j < L; j++) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                block_attn_params(l, p, cout);
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
        if (cfg->up_attn[i])
            for (int j = 0; j <= L; j++) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                block_attn_params(l, p, out);
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
    if (cfg->add_attention) block_attn_params(l, "mid_block.attentions.0", cm);
    block_resnet2d_params(l, "mid_block.resnets.0", cm, cm, tdim);
    block_resnet2d_params(l, "mid_block.resnets.1", cm, cm, tdim);

    block_params_norm(l, "conv_norm_out", ch[0]);
    block_params_conv2d(l, "conv_out", cfg->out_channels, ch[0], 3);
}

void unet_init_params(UNet *net, uint64_t seed) {
    layout_init_params(&net->layout, net->params, seed);
}
