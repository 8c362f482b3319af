/* cmd_train_vae.c: `jtrak train-vae` trains a diffusers AutoencoderKL on a dataset (loss MSE +
 * beta * KL, AdamW; vae/vae_train.h) and writes a model folder that AutoencoderKL.from_pretrained
 * loads, with scaling_factor = 1 / std of the training set's posterior means (SD's recipe).
 * Re-running the same command on the same --out resumes a stopped run exactly. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/model_folder.h"
#include "model/model_kind.h"
#include "unet/config.h"
#include "vae/vae_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void help(void) {
    printf("usage: jtrak train-vae --out DIR [options]\n\n"
           "model:\n"
           "  --preset P         vae-fm (default): the demo VAE (32,64,64), 1 channel, 4 latent\n"
           "                     channels, factor 4 (32x32 -> 4x8x8)\n"
           "  --config C         or an AutoencoderKL config.json or model folder\n"
           "  --size H[xW]       image size (default: the config's sample_size); height and width\n"
           "                     must be multiples of the factor 2^(levels-1)\n"
           "recipe (changes the result; a resumed run must use the same):\n"
           "  --steps N          optimiser steps (default %ld)\n"
           "  --batch B          images per step (default 64)\n"
           "  --lr X             peak learning rate (default 2e-3; linear warmup, cosine decay)\n"
           "  --warmup N         warmup steps (default 50)\n"
           "  --beta X           weight of the KL term (default %g)\n"
           "  --weight-decay X   AdamW weight decay (default 0)\n"
           "  --clip X           gradient-norm clipping, 0 = off (default 1)\n"
           "  --seed N           initialisation, data order and sampling noise (default 0)\n"
           "run control:\n"
           "  --save-every N     save the resumable state every N steps (default 100)\n"
           "  --log-every N      log.jsonl line every N steps (default 25)\n"
           "  --stop-after N     stop after N steps of this invocation (state saved)\n"
           "  --quiet            no progress line\n\n",
           VAE_REC_STEPS, VAE_REC_BETA);
    cli_data_help(stdout);
}

/* A VAE config: a shipped name, a config.json or a model folder holding an AutoencoderKL. */
static int vae_config_of(const char *spec, VaeConfig *cfg, JtError *err) {
    if (vae_config_preset(spec, cfg)) return JT_OK;
    struct stat sb;
    if (stat(spec, &sb) != 0)
        return jt_fail(err,
                       "VAE config '%s': not a shipped config (%s) nor an existing file or folder",
                       spec, vae_config_preset_names());
    char *path = S_ISDIR(sb.st_mode) ? path_join(spec, MODEL_CONFIG_FILE) : xstrdup(spec);
    const ModelKind *kind;
    void *c;
    int rc = model_kind_load_config(path, &kind, &c, err);
    if (rc == JT_OK && strcmp(kind->class_name, VAE_CLASS) != 0)
        rc = jt_fail(err, "%s: a %s; train-vae needs an " VAE_CLASS, path, kind->class_name);
    if (rc == JT_OK) *cfg = *(const VaeConfig *)c;
    free(c);
    free(path);
    return rc;
}

/* The data options sized for an image of H x W and C channels (cli_load_dataset reads the size
 * and channels from a U-Net config). */
static int load_data(Args *a, int H, int W, int C, Dataset *ds, JtError *err) {
    UNetConfig shape;
    unet_config_default(&shape);
    unet_config_set_size(&shape, H, W);
    shape.in_channels = C;
    return cli_load_dataset(a, &shape, ds, err);
}

int cmd_train_vae(int argc, char **argv) {
    Args a;
    args_init(&a, "train-vae", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    VaeRecipe r;
    vae_recipe_default(&r);
    VaeTrainControl ctl = {0};
    const char *preset = args_str(&a, "preset", NULL);
    const char *config = args_str(&a, "config", NULL);
    const char *size = args_str(&a, "size", NULL);
    ctl.out_dir = args_str(&a, "out", NULL);
    r.steps = args_long(&a, "steps", r.steps, 1, 1L << 40);
    r.batch = (int)args_long(&a, "batch", r.batch, 1, 1 << 16);
    r.lr = args_double(&a, "lr", r.lr, 0, 10);
    r.warmup = args_long(&a, "warmup", r.warmup, 0, 1L << 40);
    r.kl_beta = args_double(&a, "beta", r.kl_beta, 0, 1e6);
    r.weight_decay = args_double(&a, "weight-decay", r.weight_decay, 0, 10);
    r.clip_norm = args_double(&a, "clip", r.clip_norm, 0, 1e30);
    r.seed = args_u64(&a, "seed", r.seed);
    ctl.save_every = args_long(&a, "save-every", 100, 0, 1L << 40);
    ctl.log_every = args_long(&a, "log-every", 25, 1, 1L << 40);
    ctl.stop_after = args_long(&a, "stop-after", 0, 0, 1L << 40);
    ctl.quiet = args_flag(&a, "quiet");

    JtError err;
    VaeConfig cfg;
    int usage = 0, loaded = 0, drc = JT_ERR;
    Dataset data = {0};
    if (preset && config) {
        fprintf(stderr, "jtrak train-vae: give --preset or --config, not both\n");
        usage = 1;
    } else {
        loaded = vae_config_of(config ? config : preset ? preset : "vae-fm", &cfg, &err) == JT_OK;
    }
    int H = 0, W = 0;
    if (loaded && size) {
        DatasetSpec sz;
        data_spec_init(&sz);
        JtError serr;
        if (data_spec_set(&sz, "size", size, &serr) != JT_OK || sz.height == 0) {
            fprintf(stderr, "jtrak train-vae: --size %s: expected N or HxW\n", size);
            usage = 1;
        }
        H = sz.height, W = sz.width;
        data_spec_free(&sz);
        if (!usage) {
            char what[64];
            snprintf(what, sizeof what, "--size %s", size);
            loaded = vae_config_check_size(&cfg, H, W, what, &err) == JT_OK;
        }
    } else if (loaded) {
        H = vae_config_height(&cfg), W = vae_config_width(&cfg);
    }
    if (loaded && !usage)
        drc = load_data(&a, H, W, cfg.in_channels, &data, &err);
    else
        cli_skip_dataset(&a);
    int rc = args_finish(&a);
    if (rc == 0 && usage) rc = 2;
    if (rc == 0 && !ctl.out_dir) {
        fprintf(stderr, "jtrak train-vae: --out DIR is required (see 'jtrak train-vae --help')\n");
        rc = 2;
    }
    args_free(&a);
    if (rc == 0 && loaded && drc == 2) {
        fprintf(stderr, "jtrak train-vae: %s\n", err.msg);
        rc = 2;
    }
    if (rc) {
        data_free(&data);
        return rc;
    }
    if (!loaded || drc != JT_OK) return cli_error("train-vae", &err);
    if (!ctl.quiet)
        fprintf(stderr,
                "train-vae: %zu images (%s), %dx%d, %ld steps of %d, lr %g, warmup %ld, beta %g, "
                "seed %llu -> %s\n",
                data.n, data.description, data.h, data.w, r.steps, r.batch, r.lr, r.warmup,
                r.kl_beta, (unsigned long long)r.seed, ctl.out_dir);
    int stopped = 0;
    rc = vae_train_run(&cfg, &data, &r, &ctl, &stopped, &err);
    data_free(&data);
    if (rc != JT_OK) return cli_error("train-vae", &err);
    printf("%s\n", ctl.out_dir);
    return stopped == 2 ? 130 : 0;
}
