/* presets.c: the model configs shipped with jtrak (unet2d.md section 11), so that a user can train
 * without writing JSON: "fm-s" and "fm-xs" for Fashion-MNIST at its native 28x28, "t8" for 8x8.
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

int unet_config_preset(const char *name, UNetConfig *cfg) {
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

const char *unet_config_preset_names(void) { return "fm-s, fm-xs, t8"; }
