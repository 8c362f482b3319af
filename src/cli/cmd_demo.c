/* cmd_demo.c: `jtrak demo`, the main job on the embedded default: train a small U-Net (fm-xs) on
 * Debian's Fashion-MNIST, then sample from it with DDPM, keeping the full trajectories. Re-running
 * it resumes an interrupted training. What it did and where it wrote goes to stdout. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "diffusion/train.h"
#include "diffusion/trajectory.h"
#include "io/model_folder.h"
#include "core/progress.h"
#include "unet/presets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_demo(int argc, char **argv) {
    Args a;
    args_init(&a, "demo", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak demo [--out DIR] [--steps N] [--samples N] [--quick]\n"
               "Trains fm-xs on Fashion-MNIST (/usr/share/datasets/fashion-mnist) and samples\n"
               "from it. --quick: a few steps on 256 images (a smoke test, not a useful model).\n");
        args_free(&a);
        return 0;
    }
    const char *out = args_str(&a, "out", "out/demo");
    int quick = args_flag(&a, "quick");
    TrainRecipe r;
    train_recipe_default(&r);
    r.lr = 2e-3; /* a small model trained briefly: a high peak rate, cosine-decayed */
    r.warmup = 100;
    r.batch = 64;
    r.steps = args_long(&a, "steps", quick ? 4 : 2000, 1, 1L << 40);
    if (quick) r.warmup = 1;
    int n_samples = (int)args_long(&a, "samples", 16, 1, 4096);
    int rc = args_finish(&a);
    args_free(&a);
    if (rc) return rc;

    JtError err;
    UNetConfig cfg;
    unet_config_preset("fm-xs", &cfg);
    DatasetSpec spec;
    data_spec_init(&spec);
    spec.height = spec.width = cfg.sample_size;
    spec.channels = 1;
    if (quick) spec.limit = 256;
    Dataset data = {0};
    rc = data_load(&spec, &data, &err);
    data_spec_free(&spec);
    if (rc != JT_OK) return cli_error("demo", &err);

    char *model_dir = xmalloc(strlen(out) + 32), *sample_dir = xmalloc(strlen(out) + 32);
    sprintf(model_dir, "%s/model", out);
    sprintf(sample_dir, "%s/samples", out);
    fprintf(stderr, "demo: training fm-xs on %zu Fashion-MNIST images for %ld steps of %d -> %s\n",
            data.n, r.steps, r.batch, model_dir);
    SchedConfig sc;
    sched_config_default(&sc);
    TrainControl ctl = {model_dir, 200, 50, 0, 0};
    int stopped = 0;
    double t0 = progress_now();
    rc = train_run(&cfg, &sc, &data, &r, &ctl, &stopped, &err);
    double t_train = progress_now() - t0;
    data_free(&data);
    UNet *net = NULL;
    NoiseSchedule sched;
    Trajectory tr = {0};
    int have_sched = 0;
    if (rc == JT_OK && stopped) rc = jt_fail(&err, "interrupted; run the same command to resume");
    if (rc == JT_OK) rc = model_load(model_dir, &net, &err);
    if (rc == JT_OK && (rc = sched_init(&sched, &sc, &err)) == JT_OK) have_sched = 1;
    SampleOptions opt = {SAMPLER_DDPM, quick ? 20 : 1000, 0.0f, 0, n_samples, 64, 0};
    if (rc == JT_OK) {
        fprintf(stderr, "demo: sampling %d images with DDPM (%d steps) -> %s\n", n_samples,
                opt.steps, sample_dir);
        rc = traj_sample(net, &sched, &opt, NULL, &tr, &err);
    }
    char *p = xmalloc(strlen(out) + 64);
    if (rc == JT_OK) rc = model_mkdirs(sample_dir, &err);
    if (rc == JT_OK) {
        int cols = 1;
        while (cols * cols < tr.n) cols++;
        sprintf(p, "%s/samples.png", sample_dir);
        rc = cli_write_grid(p, tr.x_0, tr.n, tr.C, tr.H, tr.W, cols, &err);
    }
    if (rc == JT_OK) {
        sprintf(p, "%s/trajectory.png", sample_dir);
        rc = cli_write_trajectory_strip(p, &tr, &err);
    }
    if (rc == JT_OK) {
        sprintf(p, "%s/trajectory.safetensors", sample_dir);
        rc = traj_save(&tr, p, &err);
    }
    if (rc == JT_OK) {
        printf("demo: trained %s (fm-xs, %ld steps, %.0f s this run; log %s/log.jsonl)\n",
               model_dir, r.steps, t_train, model_dir);
        printf("demo: %d samples in %s/samples.png, trajectories in %s\n", tr.n, sample_dir, p);
        printf("demo: attribution (featurize, score, report) is not implemented yet\n");
    }
    free(p), free(model_dir), free(sample_dir);
    traj_free(&tr);
    if (have_sched) sched_free(&sched);
    unet_free(net);
    return rc == JT_OK ? 0 : cli_error("demo", &err);
}
