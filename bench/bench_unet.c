/* bench_unet.c: U-Net throughput for `make bench`, for a diffusers config.json, with randomly
 * initialised weights (the cost does not depend on the values):
 *
 *   forward     images/s of unet_forward at --batch
 *   train_step  images/s of one training step at --batch: forward, MSE against fixed noise,
 *               backward summed over the batch, AdamW
 *   sample      U-Net evaluations/s of the real sampler loop (traj_sample: DDIM, eta 0,
 *               --sample-steps steps, trajectories kept as `jtrak sample` keeps them) for each of
 *               --sample-batches (n = batch samples, so every step is one U-Net call)
 *
 * Each figure is batch / median seconds of --iters timed iterations after one warm-up. FLOPs
 * follow unet/unet_flops.h (2 x multiply-adds of convs, linears and attention products; backward =
 * 2 x forward; elementwise work not counted): flops_per_image is the forward count for forward and
 * sample, 3 x forward for a training step; gflops = images_per_s x flops_per_image. peak_rss_mb
 * is the process's peak so far: run one --what per process for a figure of its own (scripts/
 * bench.sh does). One JSON line per measurement on stdout, in the format of ref/bench_torch.py.
 * A training step also reports the convolutions alone (conv_s_per_step: mean seconds of the conv
 * nodes per step, conv_share of the step, conv_gflops: their FLOPs over that time).
 * --flops prints only the FLOP count (and parameter count) and runs nothing.
 * --class-embeds K makes the config class-conditional (num_class_embeds K, the config named
 * "<config>-clsK" in the rows): every iteration draws the batch's labels in 0..K-1 (the null
 * class included, as condition dropout feeds it), as ref/bench_torch.py --class-embeds does;
 * sampling gives sample i the class i mod (K - 1), guidance 1.
 *
 * Run: bench_unet CONFIG.json [--batch 64] [--iters 5] [--size S]
 *        [--what forward,train_step,sample] [--sample-batches 16,64] [--sample-steps 10]
 *        [--class-embeds K] [--flops] */
#include "bench_common.h"
#include "core/progress.h"
#include "core/rng.h"
#include "diffusion/schedule.h"
#include "diffusion/trajectory.h"
#include "nn/nn.h"
#include "unet/unet.h"
#include "unet/unet_flops.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void print_row(const char *config, const char *what, int B, int S, size_t P, int iters,
                      double sec, double flops, const char *extra) {
    double ips = B / sec;
    printf("{\"impl\":\"jtrak\",\"config\":\"%s\",\"what\":\"%s\",\"batch\":%d,\"size\":%d,"
           "\"threads\":%d,\"params\":%zu,\"iters\":%d,\"images_per_s\":%.2f,\"ms_per_image\":%.3f,"
           "\"flops_per_image\":%.0f,\"gflops\":%.3f,\"peak_rss_mb\":%.1f%s}\n",
           config, what, B, S, omp_get_max_threads(), P, iters, ips, 1e3 * sec / B, flops,
           ips * flops / 1e9, bench_peak_rss_mb(), extra);
    fflush(stdout);
}

/* forward (mode 0) or training step (mode 1): median seconds per batch; *conv_s (may be NULL):
 * mean seconds per batch spent in the convolution nodes over the timed iterations. */
static double time_steps(UNet *net, int mode, int B, int S, int iters, double *conv_s) {
    JtError err;
    UNetRun *run;
    if (unet_run_create(&run, net, B, S, S, mode == 1 ? UNET_RUN_TRAIN : UNET_RUN_FORWARD_ONLY,
                        &err)) {
        fprintf(stderr, "bench_unet: %s\n", err.msg);
        exit(1);
    }
    const UNetConfig *cfg = unet_config(net);
    size_t P = unet_num_params(net);
    size_t nx = (size_t)B * cfg->in_channels * S * S, ny = (size_t)B * cfg->out_channels * S * S;
    float *x = xmalloc(nx * sizeof *x), *eps = xmalloc(ny * sizeof *eps);
    float *y = xmalloc(ny * sizeof *y), *dy = xmalloc(ny * sizeof *dy);
    float *t = xmalloc((size_t)B * sizeof *t);
    const int K = unet_num_classes(net);
    int *labels = K > 0 ? xmalloc((size_t)B * sizeof *labels) : NULL;
    float *g = NULL, *m = NULL, *v = NULL;
    if (mode == 1) g = xcalloc(P, sizeof *g), m = xcalloc(P, sizeof *m), v = xcalloc(P, sizeof *v);
    rng_fill_normal(x, nx, 1, 0, 0);
    rng_fill_normal(eps, ny, 1, 1, 0);
    for (int b = 0; b < B; b++)
        t[b] = (float)((b * 997) % 1000);
    AdamWConfig opt = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f};
    double *ts = xmalloc((size_t)(iters + 1) * sizeof *ts);
    for (int it = 0; it <= iters; it++) { /* iteration 0 is the warm-up */
        if (it == 1) unet_run_profile(run, 1);
        double t0 = progress_now();
        for (int b = 0; labels && b < B; b++) /* drawn per batch, inside the timing */
            labels[b] = (int)rng_randint(1, rng_stream(RNG_TAG_TEST, (uint64_t)it, 2), (uint64_t)b,
                                         (uint32_t)K);
        unet_forward(net, run, B, y, x, t, labels);
        if (mode == 1) {
            memset(g, 0, P * sizeof *g);
            memset(dy, 0, ny * sizeof *dy);
            mse_backward(dy, y, eps, ny, 1.0f);
            unet_backward(net, run, B, g, 0, dy, NULL);
            adamw_step(unet_params(net), m, v, g, P, &opt, it + 1);
        }
        ts[it] = progress_now() - t0;
    }
    double med = bench_median(ts + 1, iters);
    if (conv_s) {
        double other_s;
        unet_run_profile_seconds(run, conv_s, &other_s);
        *conv_s /= iters;
    }
    unet_run_free(run);
    free(x), free(eps), free(y), free(dy), free(t), free(g), free(m), free(v), free(ts);
    free(labels);
    return med;
}

/* The sampler loop for n = B samples of `steps` DDIM steps: median seconds per run. */
static double time_sampler(const UNet *net, const NoiseSchedule *sched, int B, int steps,
                           int iters) {
    SampleOptions so = {.sampler = SAMPLER_DDIM,
                        .steps = steps,
                        .eta = 0.0f,
                        .seed = 0,
                        .n = B,
                        .batch = B,
                        .quiet = 1,
                        .guidance = 1.0f};
    const int K = unet_num_classes(net);
    int *labels = NULL;
    if (K > 0) {
        labels = xmalloc((size_t)B * sizeof *labels);
        for (int i = 0; i < B; i++)
            labels[i] = K > 1 ? i % (K - 1) : 0;
        so.labels = labels;
    }
    double *ts = xmalloc((size_t)(iters + 1) * sizeof *ts);
    JtError err;
    for (int it = 0; it <= iters; it++) {
        Trajectory tr;
        double t0 = progress_now();
        if (traj_sample(net, sched, &so, NULL, &tr, &err) != JT_OK) {
            fprintf(stderr, "bench_unet: %s\n", err.msg);
            exit(1);
        }
        ts[it] = progress_now() - t0;
        traj_free(&tr);
    }
    double med = bench_median(ts + 1, iters);
    free(ts), free(labels);
    return med;
}

int main(int argc, char **argv) {
    const char *usage = "usage: bench_unet CONFIG.json [--batch 64] [--iters 5] [--size S] "
                        "[--what forward,train_step,sample] [--sample-batches 16,64] "
                        "[--sample-steps 10] [--class-embeds K] [--flops]\n";
    if (argc < 2 || argv[1][0] == '-') {
        fputs(usage, stderr);
        return 2;
    }
    const char *config = argv[1], *what = "forward,train_step", *sample_batches = "16,64";
    int B = 64, iters = 5, S = 0, sample_steps = 10, flops_only = 0, class_embeds = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--flops") == 0) {
            flops_only = 1;
            continue;
        }
        if (!val) {
            fputs(usage, stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--batch") == 0)
            B = atoi(val);
        else if (strcmp(a, "--iters") == 0)
            iters = atoi(val);
        else if (strcmp(a, "--size") == 0)
            S = atoi(val);
        else if (strcmp(a, "--what") == 0)
            what = val;
        else if (strcmp(a, "--sample-batches") == 0)
            sample_batches = val;
        else if (strcmp(a, "--sample-steps") == 0)
            sample_steps = atoi(val);
        else if (strcmp(a, "--class-embeds") == 0)
            class_embeds = atoi(val);
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (B < 1 || iters < 1 || sample_steps < 1 || class_embeds < 0) {
        fprintf(stderr, "bench_unet: --batch, --iters and --sample-steps must be at least 1, "
                        "--class-embeds at least 0\n");
        return 2;
    }
    int sample_batch_list[16];
    const int n_sample_batches =
        bench_int_list(sample_batches, sample_batch_list, 16, "bench_unet", "--sample-batches");
    if (n_sample_batches < 0) return 2;
    UNetConfig cfg;
    JtError err;
    UNet *net;
    int bad = unet_config_load(&cfg, config, &err);
    if (!bad && class_embeds > 0) cfg.num_class_embeds = class_embeds;
    if (bad || unet_create(&net, &cfg, &err)) {
        fprintf(stderr, "bench_unet: %s\n", err.msg);
        return 1;
    }
    /* The rows' config name: the variant gets its own (scripts/bench_report.py keys on it). */
    char name[512];
    size_t len = strlen(config);
    if (len > 5 && strcmp(config + len - 5, ".json") == 0) len -= 5;
    if (class_embeds > 0)
        snprintf(name, sizeof name, "%.*s-cls%d", (int)len, config, class_embeds);
    else
        snprintf(name, sizeof name, "%s", config);
    config = name;
    if (S == 0) S = cfg.sample_size;
    size_t P = unet_num_params(net);
    UNetFlops fd;
    double fwd = unet_forward_flops_detail(net, S, S, &fd);
    if (fwd < 0) {
        fprintf(stderr, "bench_unet: image size %d does not suit a %d-level U-Net\n", S,
                cfg.n_levels);
        return 1;
    }
    if (flops_only) {
        printf(
            "{\"impl\":\"jtrak\",\"config\":\"%s\",\"what\":\"flops\",\"size\":%d,\"params\":%zu,"
            "\"forward_flops\":%.0f,\"train_flops\":%.0f,\"conv\":%.0f,\"linear\":%.0f,"
            "\"attn_proj\":%.0f,\"attn_matmul\":%.0f}\n",
            config, S, P, fwd, unet_train_flops(net, S, S), fd.conv, fd.linear, fd.attn_proj,
            fd.attn_matmul);
        unet_free(net);
        return 0;
    }
    unet_init_params(net, 0);

    if (bench_has_word(what, "forward"))
        print_row(config, "forward", B, S, P, iters, time_steps(net, 0, B, S, iters, NULL), fwd,
                  "");
    if (bench_has_word(what, "train_step")) {
        /* The convolutions alone: their FLOPs (forward + input and weight gradients) over the
         * time the step spent in them, for the convolution-heavy part beside the SGEMM peak. */
        double conv_s;
        const double sec = time_steps(net, 1, B, S, iters, &conv_s);
        UNetFlops split;
        unet_forward_flops_detail(net, S, S, &split);
        const double conv_flops = (1.0 + UNET_BACKWARD_FLOPS_FACTOR) * split.conv * B;
        char extra[160];
        snprintf(extra, sizeof extra,
                 ",\"conv_s_per_step\":%.5f,\"conv_share\":%.3f,\"conv_gflops\":%.3f", conv_s,
                 conv_s / sec, conv_flops / conv_s / 1e9);
        print_row(config, "train_step", B, S, P, iters, sec, unet_train_flops(net, S, S), extra);
    }
    if (bench_has_word(what, "sample")) {
        if (S != cfg.sample_size) {
            fprintf(stderr, "bench_unet: the sampler makes sample_size images; drop --size\n");
            return 2;
        }
        SchedConfig sc;
        NoiseSchedule sched;
        sched_config_default(&sc);
        if (sched_init(&sched, &sc, &err) != JT_OK) {
            fprintf(stderr, "bench_unet: %s\n", err.msg);
            return 1;
        }
        char extra[128];
        for (int q = 0; q < n_sample_batches; q++) {
            const int sb = sample_batch_list[q];
            double sec = time_sampler(net, &sched, sb, sample_steps, iters) / sample_steps;
            snprintf(extra, sizeof extra, ",\"sampler\":\"ddim\",\"steps\":%d", sample_steps);
            /* images_per_s here = U-Net evaluations (image-steps) per second */
            print_row(config, "sample", sb, S, P, iters, sec, fwd, extra);
        }
        sched_free(&sched);
    }
    unet_free(net);
    return 0;
}
