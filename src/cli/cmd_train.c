/* cmd_train.c: `jtrak train` trains a DDPM U-Net on a dataset and writes a diffusers model folder
 * (see diffusion/train.h for what the folder holds). Re-running the same command on the same
 * --out resumes a stopped run exactly. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "diffusion/train.h"

#include <stdio.h>
#include <string.h>

static void help(void) {
    printf(
        "usage: jtrak train --out DIR [options]\n\n"
        "model and schedule:\n"
        "  --config C           fm-xs (default), fm-s, t8, a config.json or a model folder\n"
        "  --beta-schedule S    linear (default) or squaredcos_cap_v2\n"
        "  --scheduler-config F a diffusers scheduler_config.json instead\n"
        "recipe (changes the result; a resumed run must use the same):\n"
        "  --steps N            optimiser steps (default 1000)\n"
        "  --epochs E           or: passes over the data (steps = ceil(E * images / batch))\n"
        "  --batch B            images per step (default 64)\n"
        "  --lr X               peak learning rate (default 1e-4)\n"
        "  --warmup N           linear warmup steps (default 100)\n"
        "  --lr-schedule S      cosine (default) or constant\n"
        "  --weight-decay X     AdamW decoupled weight decay (default 1e-6)\n"
        "  --clip X             gradient-norm clipping, 0 = off (default 1)\n"
        "  --ema-max-decay X    EMA decay cap (default 0.9999)\n"
        "  --flip               random horizontal flips\n"
        "  --cond C             none (default) or class: condition on the dataset's labels;\n"
        "                       the model gets num_class_embeds = classes + 1 (the last is the\n"
        "                       null class of classifier-free guidance) unless its config has one\n"
        "  --uncond-prob P      with --cond class: probability each label is replaced by the\n"
        "                       null class (condition dropout; default 0.1)\n"
        "  --seed N             initialisation, data order, timesteps and noise (default 0)\n"
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
    const char *beta = args_str(&a, "beta-schedule", NULL);
    const char *sched_file = args_str(&a, "scheduler-config", NULL);
    ctl.out_dir = args_str(&a, "out", NULL);
    int steps_given = args_str(&a, "steps", NULL) != NULL;
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
    int uncond_given = args_str(&a, "uncond-prob", NULL) != NULL;
    r.uncond_prob = args_double(&a, "uncond-prob", TRAIN_DEFAULT_UNCOND_PROB, 0, 1);
    ctl.save_every = args_long(&a, "save-every", 200, 0, 1L << 40);
    ctl.log_every = args_long(&a, "log-every", 50, 1, 1L << 40);
    ctl.stop_after = args_long(&a, "stop-after", 0, 0, 1L << 40);
    ctl.quiet = args_flag(&a, "quiet");

    JtError err;
    UNetConfig cfg;
    SchedConfig sc;
    sched_config_default(&sc);
    Dataset data = {0};
    int loaded_cfg = cli_model_config(config, &cfg, &err) == JT_OK;
    int drc = cli_load_dataset(&a, loaded_cfg ? &cfg : NULL, &data, loaded_cfg ? &err : NULL);
    int loaded_data = drc == JT_OK;
    int rc = args_finish(&a);
    if (rc == 0 && !ctl.out_dir) {
        fprintf(stderr, "jtrak train: --out DIR is required (see 'jtrak train --help')\n");
        rc = 2;
    }
    if (rc == 0 && steps_given && epochs) {
        fprintf(stderr, "jtrak train: give --steps or --epochs, not both\n");
        rc = 2;
    }
    if (rc == 0 && strcmp(sched, "cosine") != 0 && strcmp(sched, "constant") != 0) {
        fprintf(stderr, "jtrak train: --lr-schedule must be cosine or constant, not '%s'\n", sched);
        rc = 2;
    }
    if (rc == 0 && strcmp(cond, "none") != 0 && strcmp(cond, "class") != 0) {
        fprintf(stderr, "jtrak train: --cond must be none or class, not '%s'\n", cond);
        rc = 2;
    }
    if (rc == 0 && uncond_given && strcmp(cond, "class") != 0) {
        fprintf(stderr, "jtrak train: --uncond-prob needs --cond class (condition dropout of a "
                        "class-conditional model)\n");
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
    r.cond = strcmp(cond, "class") == 0 ? TRAIN_COND_CLASS : TRAIN_COND_NONE;
    if (r.cond == TRAIN_COND_NONE) r.uncond_prob = 0;
    /* A class-conditional model of the data's classes plus the null class, unless the config
     * (or model folder) already says how many; train_run checks that it holds them. */
    if (r.cond == TRAIN_COND_CLASS && cfg.num_class_embeds == 0 && data.n_classes > 0)
        cfg.num_class_embeds = data.n_classes + 1;
    if (epochs) r.steps = (long)((epochs * (long)data.n + r.batch - 1) / r.batch);
    if (sched_file && sched_config_load(&sc, sched_file, &err) != JT_OK) {
        data_free(&data);
        return cli_error("train", &err);
    }
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
    if (!ctl.quiet)
        fprintf(stderr, "train: %zu images (%s), %ld steps of %d, lr %g, seed %llu -> %s\n", data.n,
                data.description, r.steps, r.batch, r.lr, (unsigned long long)r.seed, ctl.out_dir);
    int stopped = 0;
    rc = train_run(&cfg, &sc, &data, &r, &ctl, &stopped, &err);
    data_free(&data);
    if (rc != JT_OK) return cli_error("train", &err);
    printf("%s\n", ctl.out_dir);
    return stopped == 2 ? 130 : 0; /* 130: interrupted, as shells report SIGINT */
}
