/* tiny_unet.c: see tiny_unet.h. */
#include "helpers/tiny_unet.h"

void test_tiny_unet_config(UNetConfig *cfg) {
    unet_config_default(cfg);
    cfg->sample_size = 8;
    cfg->in_channels = cfg->out_channels = 1;
    cfg->n_levels = 2;
    cfg->block_out_channels[0] = 8;
    cfg->block_out_channels[1] = 16;
    cfg->down_attn[0] = 0, cfg->down_attn[1] = 1;
    cfg->up_attn[0] = 1, cfg->up_attn[1] = 0;
    cfg->layers_per_block = 1;
    cfg->norm_num_groups = 4;
}
