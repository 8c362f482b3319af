/* cmd_info.c: `jtrak info MODEL` describes a model (a shipped config name, a config.json or a model
 * folder): its class (from the model class table), architecture, parameter count, the memory a
 * training batch needs, and for a folder with weights the model fingerprint that every artifact
 * derived from it records. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/model_folder.h"
#include "model/model.h"
#include "unet/unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    Model *m = NULL;
    /* A folder with weights is loaded (and fingerprinted); otherwise the config alone. */
    struct stat sb;
    char *weights = path_join(spec, MODEL_WEIGHTS_FILE);
    char *tweights = path_join(spec, CLIP_TEXT_WEIGHTS_FILE); /* transformers' folders */
    int have_weights = stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode) &&
                       (stat(weights, &sb) == 0 || stat(tweights, &sb) == 0);
    free(weights);
    free(tweights);
    if (have_weights) {
        if (model_load(spec, &m, &err) != JT_OK) return cli_error("info", &err);
    } else {
        UNetConfig c;
        if (cli_model_config(spec, &c, &err) || model_create(&m, &c, &err))
            return cli_error("info", &err);
    }
    const ClipText *te = model_text_encoder_const(m);
    if (te) {
        const ClipTextConfig *tc = clip_text_config(te);
        const ParamLayout *tl = model_layout(m);
        char fp[17];
        printf("model: %s\nclass: %s\nfingerprint: %s\n", spec, model_kind(m)->class_name,
               model_fingerprint_hex(model_fingerprint(m), fp));
        printf("text encoder: %d layers, width %d, %d heads, MLP %d, %s, vocabulary %d, %d "
               "positions\n",
               tc->num_hidden_layers, tc->hidden_size, tc->num_attention_heads,
               tc->intermediate_size, tc->hidden_act == CLIP_ACT_GELU ? "gelu" : "quick_gelu",
               tc->vocab_size, tc->max_position_embeddings);
        printf("parameters: %zu in %d tensors (%.1f MB as float32)\n", tl->total, tl->count,
               4.0 * (double)tl->total / 1e6);
        model_free(m);
        return 0;
    }
    const UNet *net = model_unet_const(m);
    const UNetConfig cfg = *unet_config(net);
    const int H = unet_config_height(&cfg), W = unet_config_width(&cfg);
    UNetRun *run;
    if (unet_run_create(&run, net, B, H, W, UNET_RUN_TRAIN, &err)) {
        model_free(m);
        return cli_error("info", &err);
    }
    printf("model: %s\n", spec);
    printf("class: %s\n", model_kind(m)->class_name);
    if (have_weights) {
        char fp[17];
        printf("fingerprint: %s\n", model_fingerprint_hex(model_fingerprint(m), fp));
    } else {
        printf("fingerprint: none (a config without weights)\n");
    }
    printf("image: %d channel(s), %dx%d\n", cfg.in_channels, H, W);
    printf("levels:");
    for (int i = 0; i < cfg.n_levels; i++)
        printf(" %d%s", cfg.block_out_channels[i], cfg.down_attn[i] ? "+attn" : "");
    printf(" (layers per block %d, groups %d)\n", cfg.layers_per_block, cfg.norm_num_groups);
    if (cfg.num_class_embeds) printf("classes: %d (class-conditional)\n", cfg.num_class_embeds);
    const ParamLayout *l = model_layout(m);
    printf("parameters: %zu in %d tensors (%.1f MB as float32)\n", l->total, l->count,
           4.0 * (double)l->total / 1e6);
    printf("training memory at batch %d: %.1f MB (activations, gradients, scratch)\n", B,
           (double)unet_run_bytes(run) / 1e6);
    unet_run_free(run);
    model_free(m);
    return 0;
}
