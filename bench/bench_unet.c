/* bench_unet.c: U-Net throughput for `make bench`: images/s of the forward pass and of a training
 * step (forward + backward + AdamW) at a batch size, for a diffusers config.json. Prints one JSON
 * line per measurement, in the same format as ref/bench_torch.py so the two sit side by side. */
#include "core/rng.h"
#include "nn/nn.h"
#include "unet/unet.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_unet CONFIG.json [batch=64] [iters=5] [size=sample_size]\n");
        return 2;
    }
    int B = argc > 2 ? atoi(argv[2]) : 64;
    int iters = argc > 3 ? atoi(argv[3]) : 5;
    UNetConfig cfg;
    JtError err;
    UNet *net;
    if (unet_config_load(&cfg, argv[1], &err) || unet_create(&net, &cfg, &err)) {
        fprintf(stderr, "bench_unet: %s\n", err.msg);
        return 1;
    }
    int S = argc > 4 ? atoi(argv[4]) : cfg.sample_size;
    unet_init_params(net, 0);
    UNetRun *run;
    if (unet_run_create(&run, net, B, S, S, &err)) {
        fprintf(stderr, "bench_unet: %s\n", err.msg);
        return 1;
    }
    size_t P = unet_num_params(net);
    size_t nx = (size_t)B * cfg.in_channels * S * S, ny = (size_t)B * cfg.out_channels * S * S;
    float *x = malloc(nx * sizeof *x), *eps = malloc(ny * sizeof *eps), *y = malloc(ny * sizeof *y);
    float *dy = malloc(ny * sizeof *dy), *t = malloc((size_t)B * sizeof *t);
    float *g = calloc(P, sizeof *g), *m = calloc(P, sizeof *m), *v = calloc(P, sizeof *v);
    rng_fill_normal(x, nx, 1, 0, 0);
    rng_fill_normal(eps, ny, 1, 1, 0);
    for (int b = 0; b < B; b++) t[b] = (float)((b * 997) % 1000);
    AdamWConfig opt = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f};

    const char *what[2] = {"forward", "train_step"};
    for (int mode = 0; mode < 2; mode++) {
        double *ts = malloc((size_t)(iters + 1) * sizeof *ts);
        for (int it = 0; it <= iters; it++) { /* iteration 0 is the warm-up */
            double t0 = now_s();
            unet_forward(net, run, B, y, x, t);
            if (mode == 1) {
                memset(g, 0, P * sizeof *g);
                memset(dy, 0, ny * sizeof *dy);
                mse_backward(dy, y, eps, ny, 1.0f);
                unet_backward(net, run, B, g, 0, dy, NULL);
                adamw_step(unet_params(net), m, v, g, P, &opt, it + 1);
            }
            ts[it] = now_s() - t0;
        }
        qsort(ts + 1, (size_t)iters, sizeof *ts, cmp_double);
        double med = ts[1 + iters / 2];
        printf("{\"impl\":\"jtrak\",\"config\":\"%s\",\"what\":\"%s\",\"batch\":%d,\"size\":%d,"
               "\"threads\":%d,\"params\":%zu,\"images_per_s\":%.2f,\"ms_per_image\":%.3f,"
               "\"peak_rss_mb\":%.1f}\n",
               argv[1], what[mode], B, S, omp_get_max_threads(), P, B / med, 1e3 * med / B,
               peak_rss_mb());
        fflush(stdout);
        free(ts);
    }
    unet_run_free(run);
    unet_free(net);
    free(x), free(eps), free(y), free(dy), free(t), free(g), free(m), free(v);
    return 0;
}
