/* cmd_train.c: `jtrak train` trains a DDPM U-Net on a dataset and writes a diffusers model folder
 * (see diffusion/train.h for what the folder holds). Re-running the same command on the same
 * --out resumes a stopped run exactly. What the user leaves out of the recipe comes from the
 * measured recommendation (train.h: TRAIN_REC_*), and the "train:" line says which values it took.
 * A shipped config is an architecture: its sample_size is only a default, replaced by --size or by
 * the data's own size, and written to the model's config.json. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "diffusion/train.h"
#include "io/artifact.h"
#include "io/lock.h"
#include "model/pipeline.h"
#include "unet/presets.h"

#include <stdlib.h>

#include <stdio.h>
#include <string.h>

static void help(void) {
    printf(
        "usage: jtrak train --out DIR [options]\n\n"
        "model and schedule:\n"
        "  --config C           fm-xs (default), fm-s, t8, a config.json or a model folder\n"
        "  --size H[xW]         image size of the model (a shipped config takes the data's own\n"
        "                       size when this is not given; height and width must be multiples\n"
        "                       of 2^(levels-1): 4 for fm-xs and fm-s, 2 for t8)\n"
        "  --beta-schedule S    linear (default) or squaredcos_cap_v2\n"
        "  --scheduler-config F a diffusers scheduler_config.json instead\n"
        "  --clip-sample M      on or off: clip x̂_0 to [-1, 1] when sampling (recorded in the\n"
        "                       scheduler config; default on for images, off for latents, as\n"
        "                       Stable Diffusion pipelines and Journey-TRAK's COCO model)\n"
        "recipe (changes the result; a resumed run must use the same). The defaults are the\n"
        "recipe measured to give clean samples (make demo: 5,000 images, 1,500 steps of 64,\n"
        "lr 2e-3); the train: line shows what was used:\n"
        "  --steps N            optimiser steps (default: 20 passes over the data and at least\n"
        "                       96,000 images seen: ceil(max(20 * images, 96000) / batch), e.g.\n"
        "                       1,500 steps of 64 up to 4,800 images, 18,750 for 60,000)\n"
        "  --epochs E           or: passes over the data (steps = ceil(E * images / batch))\n"
        "  --batch B            images per step (default 64)\n"
        "  --lr X               peak learning rate (default 2e-3)\n"
        "  --warmup N           linear warmup steps (default 100)\n"
        "  --lr-schedule S      cosine (default) or constant\n"
        "  --weight-decay X     AdamW decoupled weight decay (default 1e-6)\n"
        "  --clip X             gradient-norm clipping, 0 = off (default 1)\n"
        "  --ema-max-decay X    EMA decay cap (default 0.9999)\n"
        "  --flip               random horizontal flips\n"
        "  --cond C             none (default); class: condition on the dataset's labels (the\n"
        "                       model gets num_class_embeds = classes + 1, the last being the\n"
        "                       null class of classifier-free guidance, unless its config has\n"
        "                       one); npy:FILE: text contexts (encoder hidden states) for a\n"
        "                       model with cross-attention, float32 (N, L, D) one per row,\n"
        "                       (N, K, L, D) K per row (each draw picks one), or a table (M, L, "
        "D)\n"
        "                       with --cond-index\n"
        "  --cond-index I       with a context table: labels (row i uses table row label[i]) or\n"
        "                       npy:FILE, an int (N,) of table rows\n"
        "  --uncond U           the unconditional context: row:R of the table or npy:FILE (L, D);\n"
        "                       needed for caption dropout\n"
        "  --uncond-prob P      probability each label becomes the null class, or each context\n"
        "                       the unconditional one (condition dropout; default 0.1)\n"
        "  --seed N             initialisation, data order, timesteps and noise (default 0)\n"
        "pipeline folder (OUT becomes one that StableDiffusionPipeline.from_pretrained loads;\n"
        "the U-Net and its training state are OUT/unet, written when the run completes):\n"
        "  --pipeline SRC       take the VAE, text encoder and tokenizer of the pipeline SRC\n"
        "  --vae DIR            the AutoencoderKL of the latents (replaces SRC's)\n"
        "  --text-encoder DIR   the CLIPTextModel of the contexts (replaces SRC's)\n"
        "  --tokenizer DIR      its CLIP tokenizer (replaces SRC's)\n"
        "run control:\n"
        "  --save-every N       save the resumable state every N steps (default 200)\n"
        "  --log-every N        log.jsonl line every N steps (default 50)\n"
        "  --stop-after N       stop after N steps of this invocation (state saved)\n"
        "  --quiet              no progress line\n\n");
    cli_data_help(stdout);
}

int cmd_train(int argc, char **argv) {
    Args a;
    args_init(&a, "train", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    TrainRecipe r;
    train_recipe_default(&r);
    TrainControl ctl = {0};
    const char *config = args_str(&a, "config", "fm-xs");
    const char *size = args_str(&a, "size", NULL);
    const char *beta = args_str(&a, "beta-schedule", NULL);
    const char *sched_file = args_str(&a, "scheduler-config", NULL);
    const char *clip = args_str(&a, "clip-sample", NULL);
    ctl.out_dir = args_str(&a, "out", NULL);
    int steps_given = args_str(&a, "steps", NULL) != NULL;
    int lr_given = args_str(&a, "lr", NULL) != NULL;
    int warmup_given = args_str(&a, "warmup", NULL) != NULL;
    r.lr = TRAIN_REC_LR;
    r.warmup = TRAIN_REC_WARMUP;
    r.steps = args_long(&a, "steps", r.steps, 1, 1L << 40);
    long epochs = args_long(&a, "epochs", 0, 1, 1L << 20);
    r.batch = (int)args_long(&a, "batch", r.batch, 1, 1 << 16);
    r.lr = args_double(&a, "lr", r.lr, 0, 10);
    r.warmup = args_long(&a, "warmup", r.warmup, 0, 1L << 40);
    const char *sched = args_str(&a, "lr-schedule", "cosine");
    r.weight_decay = args_double(&a, "weight-decay", r.weight_decay, 0, 10);
    r.clip_norm = args_double(&a, "clip", r.clip_norm, 0, 1e30);
    r.ema_max_decay = args_double(&a, "ema-max-decay", r.ema_max_decay, 0, 1);
    r.random_flip = args_flag(&a, "flip");
    r.seed = args_u64(&a, "seed", r.seed);
    const char *cond = args_str(&a, "cond", "none");
    ContextSpec cspec = {NULL, args_str(&a, "cond-index", NULL), args_str(&a, "uncond", NULL)};
    const int text_cond = strncmp(cond, "npy:", 4) == 0;
    if (text_cond) cspec.file = cond;
    int uncond_given = args_str(&a, "uncond-prob", NULL) != NULL;
    r.uncond_prob = args_double(&a, "uncond-prob", TRAIN_DEFAULT_UNCOND_PROB, 0, 1);
    ctl.save_every = args_long(&a, "save-every", 200, 0, 1L << 40);
    ctl.log_every = args_long(&a, "log-every", 50, 1, 1L << 40);
    ctl.stop_after = args_long(&a, "stop-after", 0, 0, 1L << 40);
    ctl.quiet = args_flag(&a, "quiet");
    const char *pipe_from = args_str(&a, "pipeline", NULL);
    PipelineSources psrc = {NULL, args_str(&a, "vae", NULL), args_str(&a, "text-encoder", NULL),
                            args_str(&a, "tokenizer", NULL), NULL};
    const int as_pipeline =
        pipe_from || psrc.vae_dir || psrc.text_encoder_dir || psrc.tokenizer_dir;

    JtError err;
    UNetConfig cfg;
    SchedConfig sc;
    sched_config_default(&sc);
    Dataset data = {0};
    int loaded_cfg = cli_model_config(config, &cfg, &err) == JT_OK;
    /* The model's size: --size, else a shipped config's default gives way to the data's own size
     * (unless --fit asks to bring the data to it), else the config file's. */
    UNetConfig probe;
    int preset = unet_config_preset(config, &probe);
    char size_what[64] = "";
    DatasetSpec sz;
    data_spec_init(&sz);
    JtError size_err;
    int size_rc = size ? data_spec_set(&sz, "size", size, &size_err) : JT_OK;
    if (size && size_rc == JT_OK && sz.height == 0)
        size_rc = jt_fail(&size_err, "--size %s: expected N or HxW", size);
    if (loaded_cfg && size && size_rc == JT_OK) {
        snprintf(size_what, sizeof size_what, "--size %s", size);
        unet_config_set_size(&cfg, sz.height, sz.width);
        loaded_cfg = unet_config_check_size(&cfg, sz.height, sz.width, size_what, &err) == JT_OK;
    } else if (loaded_cfg && preset && !args_str(&a, "fit", NULL)) {
        snprintf(size_what, sizeof size_what, "--config %s at the data's size", config);
        cfg.sample_size = cfg.sample_h = cfg.sample_w = 0; /* the data's own */
    }
    data_spec_free(&sz);
    /* a bad data option is a usage error (2), reported as itself */
    int drc = loaded_cfg && size_rc == JT_OK ? cli_load_dataset(&a, &cfg, &data, &err) : JT_ERR;
    int loaded_data = drc == JT_OK;
    if (!loaded_cfg || size_rc != JT_OK) cli_skip_dataset(&a);
    if (loaded_data && unet_config_height(&cfg) == 0) {
        if (!size_what[0]) snprintf(size_what, sizeof size_what, "%s (sample_size null)", config);
        unet_config_set_size(&cfg, data.h, data.w);
        loaded_data = unet_config_check_size(&cfg, data.h, data.w, size_what, &err) == JT_OK;
    }
    int rc = args_finish(&a);
    if (rc == 0 && size_rc != JT_OK) {
        fprintf(stderr, "jtrak train: %s\n", size_err.msg);
        rc = 2;
    }
    if (rc == 0 && !ctl.out_dir) {
        fprintf(stderr, "jtrak train: --out DIR is required (see 'jtrak train --help')\n");
        rc = 2;
    }
    if (rc == 0 && steps_given && epochs) {
        fprintf(stderr, "jtrak train: give --steps or --epochs, not both\n");
        rc = 2;
    }
    if (rc == 0 && clip && strcmp(clip, "on") != 0 && strcmp(clip, "off") != 0) {
        fprintf(stderr, "jtrak train: --clip-sample must be on or off, not '%s'\n", clip);
        rc = 2;
    }
    if (rc == 0 && strcmp(sched, "cosine") != 0 && strcmp(sched, "constant") != 0) {
        fprintf(stderr, "jtrak train: --lr-schedule must be cosine or constant, not '%s'\n", sched);
        rc = 2;
    }
    if (rc == 0 && strcmp(cond, "none") != 0 && strcmp(cond, "class") != 0 && !text_cond) {
        fprintf(stderr, "jtrak train: --cond must be none, class or npy:FILE, not '%s'\n", cond);
        rc = 2;
    }
    if (rc == 0 && uncond_given && strcmp(cond, "none") == 0) {
        fprintf(stderr, "jtrak train: --uncond-prob needs --cond class or npy:FILE (condition "
                        "dropout of a conditional model)\n");
        rc = 2;
    }
    if (rc == 0 && !text_cond && (cspec.index || cspec.uncond)) {
        fprintf(stderr, "jtrak train: --cond-index and --uncond go with --cond npy:FILE\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) {
        data_free(&data);
        return rc;
    }
    if (loaded_cfg && drc == 2) {
        fprintf(stderr, "jtrak train: %s\n", err.msg);
        return 2;
    }
    if (!loaded_cfg || !loaded_data) return cli_error("train", &err);
    r.lr_schedule = strcmp(sched, "cosine") == 0 ? LR_COSINE : LR_CONSTANT;
    r.cond = strcmp(cond, "class") == 0 ? TRAIN_COND_CLASS
             : text_cond                ? TRAIN_COND_CONTEXT
                                        : TRAIN_COND_NONE;
    if (r.cond == TRAIN_COND_NONE) r.uncond_prob = 0;
    /* A class-conditional model of the data's classes plus the null class, unless the config
     * (or model folder) already says how many; train_run checks that it holds them. */
    if (r.cond == TRAIN_COND_CLASS && cfg.num_class_embeds == 0 && data.n_classes > 0)
        cfg.num_class_embeds = data.n_classes + 1;
    if (epochs) r.steps = (long)((epochs * (long)data.n + r.batch - 1) / r.batch);
    if (!steps_given && !epochs) r.steps = train_recommended_steps(data.n, r.batch);
    if (sched_file && sched_config_load(&sc, sched_file, &err) != JT_OK) {
        data_free(&data);
        return cli_error("train", &err);
    }
    /* latents are not bounded to [-1, 1]: no x̂_0 clipping unless asked (ldm.md 1.4) */
    if (clip)
        sc.clip_sample = strcmp(clip, "on") == 0;
    else if (data.latent && !sched_file)
        sc.clip_sample = false;
    if (beta) {
        if (strcmp(beta, "linear") == 0) {
            sc.beta_schedule = SCHED_BETA_LINEAR;
        } else if (strcmp(beta, "squaredcos_cap_v2") == 0) {
            sc.beta_schedule = SCHED_BETA_SQUAREDCOS_CAP_V2;
        } else {
            fprintf(stderr, "jtrak train: --beta-schedule must be linear or squaredcos_cap_v2\n");
            data_free(&data);
            return 2;
        }
    }
    ContextSet ctx;
    if (text_cond) {
        if (context_load(&ctx, &cspec, &data, &err) != JT_OK) {
            data_free(&data);
            return cli_error("train", &err);
        }
        /* caption dropout needs the unconditional context: without one, no dropout unless the
         * user asked for it (then train_run refuses) */
        if (!ctx.uncond && !uncond_given) r.uncond_prob = 0;
        r.context_fingerprint = ctx.fingerprint;
    }
    if (!ctl.quiet) {
        /* which of the values came from the recommendation, e.g. "steps, lr, warmup" */
        char rec[64] = "";
        const char *names[3] = {"steps", "lr", "warmup"};
        const int took[3] = {!steps_given && !epochs, !lr_given, !warmup_given};
        for (int i = 0; i < 3; i++)
            if (took[i])
                snprintf(rec + strlen(rec), sizeof rec - strlen(rec), "%s%s", rec[0] ? ", " : "",
                         names[i]);
        fprintf(
            stderr,
            "train: %zu images (%s), %dx%d, %ld steps of %d, lr %g, warmup %ld, seed %llu%s%s%s "
            "-> %s\n",
            data.n, data.description, data.h, data.w, r.steps, r.batch, r.lr, r.warmup,
            (unsigned long long)r.seed, rec[0] ? " (recommended " : "", rec,
            rec[0] ? ": see --help)" : "", ctl.out_dir);
    }
    int stopped = 0;
    const char *out = ctl.out_dir;
    char *unet_out = as_pipeline ? path_join(out, "unet") : NULL;
    PipelineFolder base = {0};
    DirLock lock = {-1, NULL, 0};
    rc = JT_OK;
    if (as_pipeline) {
        /* the sources are checked against the model before any training (model/pipeline.h) */
        const ArtifactKind ok[] = {ARTIFACT_PIPELINE};
        if (pipe_from) rc = pipeline_open(pipe_from, &base, &err);
        if (!psrc.vae_dir) psrc.vae_dir = base.vae_dir;
        if (!psrc.text_encoder_dir) psrc.text_encoder_dir = base.text_encoder_dir;
        if (!psrc.tokenizer_dir) psrc.tokenizer_dir = base.tokenizer_dir;
        psrc.unet_dir = unet_out;
        psrc.scheduler = &sc;
        if (rc == JT_OK) rc = artifact_check_out(out, "--out", "a pipeline folder", ok, 1, &err);
        if (rc == JT_OK) rc = pipeline_check_sources(&psrc, &cfg, &err);
        if (rc == JT_OK) rc = dir_lock(&lock, out, "train", &err);
        ctl.out_dir = unet_out;
    }
    if (rc == JT_OK)
        rc = train_run_ctx(&cfg, &sc, &data, text_cond ? &ctx : NULL, &r, &ctl, &stopped, &err);
    /* the pipeline is written once the U-Net is final; model_index.json last */
    if (rc == JT_OK && as_pipeline && !stopped) rc = pipeline_write(&psrc, out, &err);
    dir_unlock(&lock);
    pipeline_close(&base);
    free(unet_out);
    data_free(&data);
    if (text_cond) context_free(&ctx);
    if (rc != JT_OK) return cli_error("train", &err);
    printf("%s\n", out);
    return stopped == 2 ? 130 : 0; /* 130: interrupted, as shells report SIGINT */
}
