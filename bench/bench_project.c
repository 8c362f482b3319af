/* bench_project.c: throughput of the random projection (attrib/project.h) for `make bench`: the
 * median seconds of proj_apply on a batch of B random gradient vectors of p entries, for each
 * projector kind, one JSON line per kind on stdout:
 *   {"impl":"jtrak","what":"project","kind":...,"p":...,"k":...,"batch":...,"threads":...,
 *    "iters":...,"seconds_per_batch":...,"images_per_s":...}
 * p defaults to the parameter count of the model config (configs/fm-xs.json, the size featurize
 * projects on the quick benchmarks); the entries' values do not change the cost.
 *
 * Run: bench_project [--config configs/fm-xs.json | --p N] [--k 2048] [--batch 16] [--iters 3]
 *                    [--kinds rademacher,sparse,hadamard] */
#include "bench_common.h"
#include "core/progress.h"
#include "attrib/project.h"
#include "core/rng.h"
#include "unet/unet.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(const char *msg) {
    fprintf(stderr,
            "bench_project: %s\nusage: bench_project [--config CONFIG.json | --p N] [--k K] "
            "[--batch B] [--iters N] [--kinds rademacher,sparse,hadamard]\n",
            msg);
    return 2;
}

int main(int argc, char **argv) {
    const char *config = "configs/fm-xs.json", *kinds = "rademacher,sparse,hadamard";
    long p_arg = 0, k = 2048, B = 16, iters = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage("every option takes a value");
        char *end = NULL;
        long n = strtol(v, &end, 10);
        int num_ok = *v && !*end && n >= 1;
        if (strcmp(a, "--config") == 0)
            config = v;
        else if (strcmp(a, "--kinds") == 0)
            kinds = v;
        else if (strcmp(a, "--p") == 0 && num_ok)
            p_arg = n;
        else if (strcmp(a, "--k") == 0 && num_ok && n <= (1L << 20))
            k = n;
        else if (strcmp(a, "--batch") == 0 && num_ok && n <= 4096)
            B = n;
        else if (strcmp(a, "--iters") == 0 && num_ok)
            iters = n;
        else
            return usage("unknown option or bad value");
        i++;
    }
    size_t p = (size_t)p_arg;
    if (!p) {
        JtError err;
        UNetConfig cfg;
        UNet *net;
        if (unet_config_load(&cfg, config, &err) || unet_create(&net, &cfg, &err)) {
            fprintf(stderr, "bench_project: %s (or give --p N)\n", err.msg);
            return 1;
        }
        p = unet_num_params(net);
        unet_free(net);
    }
    float *G = malloc((size_t)B * p * sizeof *G), *out = malloc((size_t)B * k * sizeof *out);
    double *ts = malloc((size_t)iters * sizeof *ts);
    if (!G || !out || !ts) {
        fprintf(stderr, "bench_project: out of memory for %ld x %zu floats\n", B, p);
        return 1;
    }
    rng_fill_normal(G, (size_t)B * p, 1, 0, 0);
    const ProjKind all[] = {PROJ_RADEMACHER, PROJ_SPARSE, PROJ_HADAMARD};
    for (size_t ki = 0; ki < sizeof all / sizeof all[0]; ki++) {
        const char *name = proj_kind_name(all[ki]);
        if (!bench_has_word(kinds, name)) continue;
        Projector pr;
        proj_init(&pr, all[ki], 0, 0, p, (int)k);
        proj_apply(&pr, G, (int)B, p, out); /* warm-up: pages, caches */
        for (long it = 0; it < iters; it++) {
            double t0 = progress_now();
            proj_apply(&pr, G, (int)B, p, out);
            ts[it] = progress_now() - t0;
        }
        proj_free(&pr);
        double sec = bench_median(ts, (int)iters);
        printf("{\"impl\":\"jtrak\",\"what\":\"project\",\"kind\":\"%s\",\"p\":%zu,\"k\":%ld,"
               "\"batch\":%ld,\"threads\":%d,\"iters\":%ld,\"seconds_per_batch\":%.6f,"
               "\"images_per_s\":%.2f}\n",
               name, p, k, B, omp_get_max_threads(), iters, sec, B / sec);
        fflush(stdout);
    }
    free(G), free(out), free(ts);
    return 0;
}
