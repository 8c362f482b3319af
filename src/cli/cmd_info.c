/* cmd_info.c: `jtrak info MODEL` describes a model (a shipped config name, a config.json or a model
 * folder): its architecture, parameter count and the memory a training batch needs. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/model_folder.h"
#include "unet/unet.h"

#include <stdio.h>
#include <string.h>

int cmd_info(int argc, char **argv) {
    Args a;
    args_init(&a, "info", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak info MODEL [--batch B]\n"
               "MODEL is a shipped config (fm-s, fm-xs, t8), a config.json or a model folder.\n");
        args_free(&a);
        return 0;
    }
    int B = (int)args_long(&a, "batch", 64, 1, 1 << 20);
    const char *spec = args_positional(&a, 0);
    int rc = args_finish(&a);
    if (rc == 0 && !spec) {
        fprintf(stderr, "jtrak info: missing MODEL (see 'jtrak info --help')\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;

    JtError err;
    UNetConfig cfg;
    UNet *net;
    UNetRun *run;
    if (cli_model_config(spec, &cfg, &err) || unet_create(&net, &cfg, &err)) return cli_error("info", &err);
    if (unet_run_create(&run, net, B, cfg.sample_size, cfg.sample_size, UNET_RUN_TRAIN, &err)) {
        unet_free(net);
        return cli_error("info", &err);
    }
    printf("model: %s\n", spec);
    printf("image: %d channel(s), %dx%d\n", cfg.in_channels, cfg.sample_size, cfg.sample_size);
    printf("levels:");
    for (int i = 0; i < cfg.n_levels; i++)
        printf(" %d%s", cfg.block_out_channels[i], cfg.down_attn[i] ? "+attn" : "");
    printf(" (layers per block %d, groups %d)\n", cfg.layers_per_block, cfg.norm_num_groups);
    const ParamLayout *l = unet_layout(net);
    printf("parameters: %zu in %d tensors (%.1f MB as float32)\n", l->total, l->count,
           4.0 * (double)l->total / 1e6);
    printf("training memory at batch %d: %.1f MB (activations, gradients, scratch)\n", B,
           (double)unet_run_bytes(run) / 1e6);
    unet_run_free(run);
    unet_free(net);
    return 0;
}
