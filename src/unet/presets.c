/* presets.c: the model configs shipped with jtrak (unet2d.md section 11), so that a user can train
 * without writing JSON: "fm-s" and "fm-xs" for Fashion-MNIST at its native 28x28, "t8" for 8x8;
 * UNet2DConditionModels "ldm-xs" (the latent demo, ldm.md 8.1) and "jt-coco" (the paper's COCO
 * U-Net, ldm.md 1.1).
 * configs/<name>.json holds the same configs as diffusers config.json files (a test checks they
 * agree). */
#include "unet/presets.h"

#include <string.h>

static void fm_pattern(UNetConfig *cfg, int c0, int c1, int c2) {
    unet_config_default(cfg);
    cfg->sample_size = 28;
    cfg->in_channels = cfg->out_channels = 1;
    cfg->n_levels = 3;
    const int ch[3] = {c0, c1, c2}, down_attn[3] = {0, 1, 0}, up_attn[3] = {0, 1, 0};
    for (int i = 0; i < 3; i++) {
        cfg->block_out_channels[i] = ch[i];
        cfg->down_attn[i] = down_attn[i];
        cfg->up_attn[i] = up_attn[i];
    }
    cfg->layers_per_block = 1;
    cfg->norm_num_groups = 8;
}

/* UNet2DConditionModel presets (ldm.md 1.1 and 8.1): diffusers' class defaults plus these. */
static void ldm_xs(UNetConfig *cfg) { /* the demo: 4x8x8 latents, MiniLM context (D 384) */
    unet_config_cond_default(cfg);
    cfg->sample_size = 8;
    cfg->n_levels = 2;
    cfg->block_out_channels[0] = 32, cfg->block_out_channels[1] = 64;
    cfg->down_attn[0] = 1, cfg->down_attn[1] = 0; /* CrossAttnDownBlock2D, DownBlock2D */
    cfg->up_attn[0] = 0, cfg->up_attn[1] = 1;     /* UpBlock2D, CrossAttnUpBlock2D */
    cfg->layers_per_block = 1;
    cfg->heads[0] = 4; /* attention_head_dim 4 = four heads in this class */
    cfg->cross_attention_dim = 384;
    cfg->norm_num_groups = 8;
}

static void jt_coco(UNetConfig *cfg) { /* Journey-TRAK's MS-COCO U-Net: 4x16x16, SD-2 text states */
    unet_config_cond_default(cfg);
    cfg->sample_size = 16;
    static const int ch[4] = {128, 256, 256, 256};
    for (int i = 0; i < 4; i++)
        cfg->block_out_channels[i] = ch[i];
    cfg->cross_attention_dim = 1024; /* eight heads, the class default */
}

int unet_config_preset(const char *name, UNetConfig *cfg) {
    if (strcmp(name, "ldm-xs") == 0) {
        ldm_xs(cfg);
        return 1;
    }
    if (strcmp(name, "jt-coco") == 0) {
        jt_coco(cfg);
        return 1;
    }
    if (strcmp(name, "fm-s") == 0) {
        fm_pattern(cfg, 32, 64, 64);
    } else if (strcmp(name, "fm-xs") == 0) {
        fm_pattern(cfg, 16, 32, 32);
    } else if (strcmp(name, "t8") == 0) {
        fm_pattern(cfg, 32, 64, 0);
        cfg->sample_size = 8;
        cfg->n_levels = 2;
        cfg->down_attn[0] = 0, cfg->down_attn[1] = 1;
        cfg->up_attn[0] = 1, cfg->up_attn[1] = 0;
    } else {
        return 0;
    }
    return 1;
}

const char *unet_config_preset_names(void) {
    return "fm-s, fm-xs, t8, ldm-xs, jt-coco";
}
