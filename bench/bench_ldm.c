/* bench_ldm.c: throughput of the latent, text-conditional networks for `make bench`, beside
 * ref/bench_torch_ldm.py (same configs, same JSON lines), with randomly initialised weights (the
 * cost does not depend on the values):
 *
 *   UNet2DConditionModel (configs/ldm-xs.json, configs/jt-coco.json):
 *     forward     images/s of unet_forward_ctx at --batch, one random context of --ctx-len tokens
 *                 x cross_attention_dim per image
 *     train_step  images/s of one training step: forward, MSE against fixed noise, backward summed
 *                 over the batch, AdamW
 *     featurize   rows/s of featurize's inner loop: per-example gradients of the noising loss for
 *                 all parameters (one draw per row: --S 1) and their sparse projection to k = 2048,
 *                 at --batch rows per chunk: what `jtrak featurize` spends per row and draw
 *     featurize_params  with --params PATTERNS (featurize --params, attrib/paramsel.h): the same
 *                 loop over the selected parameters only, timed interleaved with the all-parameter
 *                 loop (iteration by iteration, so that a loaded machine slows both alike); both
 *                 rows then carry grad_params (floats of one per-example gradient), grad_slab_mb
 *                 (the per-example gradient slab of the batch), featurize_mb (featurize_bytes,
 *                 the memory estimate `jtrak featurize` prints) and grad_ms_per_image (the
 *                 per-example gradients alone, without the projection)
 *   AutoencoderKL (configs/vae-fm.json):
 *     encode, decode  images/s of the forward passes (forward-only runs)
 *     train_step      images/s of one train-vae step (encode, posterior sample, decode, MSE + beta
 *                     KL, backward, AdamW)
 *
 * Each figure is batch / median seconds of --iters timed iterations after one warm-up; peak_rss_mb
 * is the process's peak so far (run one --what per process for its own figure).
 *
 * Run: bench_ldm CONFIG.json [--batch 64] [--iters 5] [--ctx-len 16] [--size S]
 *        [--what forward,train_step] [--params attn2.to_k,attn2.to_v] */
#include "attrib/featurize.h"
#include "attrib/outfn.h"
#include "attrib/paramsel.h"
#include "attrib/project.h"
#include "bench_common.h"
#include "core/progress.h"
#include "core/rng.h"
#include "diffusion/schedule.h"
#include "model/model_kind.h"
#include "nn/nn.h"
#include "unet/unet.h"
#include "vae/vae.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void print_row(const char *config, const char *what, int B, int S, size_t P, int iters,
                      double sec, int ctx_len) {
    double ips = B / sec;
    printf("{\"impl\":\"jtrak\",\"config\":\"%s\",\"what\":\"%s\",\"batch\":%d,\"size\":%d,"
           "\"threads\":%d,\"params\":%zu,\"iters\":%d,\"images_per_s\":%.3f,\"ms_per_image\":%.3f,"
           "\"peak_rss_mb\":%.1f,\"ctx_len\":%d}\n",
           config, what, B, S, omp_get_max_threads(), P, iters, ips, 1e3 * sec / B, bench_peak_rss_mb(),
           ctx_len);
    fflush(stdout);
}

static void die(const JtError *err) {
    fprintf(stderr, "bench_ldm: %s\n", err->msg);
    exit(1);
}

/* forward (mode 0) or training step (mode 1) of a U-Net with contexts: median seconds per batch */
static double time_unet(UNet *net, int mode, int B, int S, int L, int iters) {
    JtError err;
    UNetRun *run;
    if (unet_run_create_ctx(&run, net, B, S, S, L, mode ? UNET_RUN_TRAIN : UNET_RUN_FORWARD_ONLY,
                            &err))
        die(&err);
    const UNetConfig *cfg = unet_config(net);
    const size_t P = unet_num_params(net), D = (size_t)unet_cross_attention_dim(net);
    const size_t nx = (size_t)B * cfg->in_channels * S * S,
                 ny = (size_t)B * cfg->out_channels * S * S;
    float *x = xmalloc(nx * sizeof *x), *eps = xmalloc(ny * sizeof *eps);
    float *y = xmalloc(ny * sizeof *y), *dy = xmalloc(ny * sizeof *dy);
    float *t = xmalloc((size_t)B * sizeof *t), *ctx = xmalloc((size_t)B * L * D * sizeof *ctx);
    float *g = NULL, *m = NULL, *v = NULL;
    if (mode) g = xcalloc(P, sizeof *g), m = xcalloc(P, sizeof *m), v = xcalloc(P, sizeof *v);
    rng_fill_normal(x, nx, 1, 0, 0);
    rng_fill_normal(eps, ny, 1, 1, 0);
    rng_fill_normal(ctx, (size_t)B * L * D, 1, 2, 0);
    for (int b = 0; b < B; b++)
        t[b] = (float)((b * 997) % 1000);
    AdamWConfig opt = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f};
    double *ts = xmalloc((size_t)(iters + 1) * sizeof *ts);
    for (int it = 0; it <= iters; it++) { /* iteration 0 is the warm-up */
        double t0 = progress_now();
        unet_forward_ctx(net, run, B, y, x, t, NULL, ctx);
        if (mode) {
            memset(g, 0, P * sizeof *g);
            memset(dy, 0, ny * sizeof *dy);
            mse_backward(dy, y, eps, ny, 1.0f);
            unet_backward(net, run, B, g, 0, dy, NULL);
            adamw_step(unet_params(net), m, v, g, P, &opt, it + 1);
        }
        ts[it] = progress_now() - t0;
    }
    double med = bench_median(ts + 1, iters);
    unet_run_free(run);
    free(x), free(eps), free(y), free(dy), free(t), free(ctx), free(g), free(m), free(v), free(ts);
    return med;
}

/* featurize's inner loop for B rows, one draw each: per-example gradients + sparse projection. */
static double time_featurize(UNet *net, int B, int S, int L, int iters) {
    JtError err;
    SchedConfig sc;
    sched_config_default(&sc);
    NoiseSchedule sched;
    if (sched_init(&sched, &sc, &err)) die(&err);
    GradEngine *ge;
    if (grad_engine_create_ctx(&ge, net, &sched, B, L, &err)) die(&err);
    const UNetConfig *cfg = unet_config(net);
    const size_t P = unet_num_params(net), D = (size_t)unet_cross_attention_dim(net);
    const size_t d = (size_t)cfg->in_channels * S * S;
    const int k = 2048;
    float *x0 = xmalloc((size_t)B * d * sizeof *x0), *eps = xmalloc((size_t)B * d * sizeof *eps);
    float *ctx = xmalloc((size_t)B * L * D * sizeof *ctx);
    float *grads = xmalloc((size_t)B * P * sizeof *grads), *X = xmalloc((size_t)B * k * sizeof *X);
    int *t = xmalloc((size_t)B * sizeof *t);
    rng_fill_normal(x0, (size_t)B * d, 1, 0, 0);
    rng_fill_normal(eps, (size_t)B * d, 1, 1, 0);
    rng_fill_normal(ctx, (size_t)B * L * D, 1, 2, 0);
    for (int b = 0; b < B; b++)
        t[b] = (b * 397) % 1000;
    Projector pr;
    proj_init(&pr, PROJ_SPARSE, 0, 0, P, k);
    const Cond cond = {.context = ctx};
    double *ts = xmalloc((size_t)(iters + 1) * sizeof *ts);
    for (int it = 0; it <= iters; it++) {
        double t0 = progress_now();
        grad_engine_run_cond(ge, OUTFN_LOSS, B, 1, x0, 0, t, eps, &cond, grads, NULL);
        proj_apply(&pr, grads, B, P, X);
        ts[it] = progress_now() - t0;
    }
    double med = bench_median(ts + 1, iters);
    proj_free(&pr);
    grad_engine_free(ge);
    sched_free(&sched);
    free(x0), free(eps), free(ctx), free(grads), free(X), free(t), free(ts);
    return med;
}

/* One featurize setup (engine over a selection, its gradient slab, its projector). */
typedef struct {
    GradEngine *ge;
    Projector pr;
    size_t P;
    float *grads, *X;
    double *ts, *tg, bytes; /* seconds per iteration: all, the gradients alone */
} FeatLoop;

static void feat_loop_init(FeatLoop *f, UNet *net, const NoiseSchedule *sched, const size_t *sel,
                           int B, int L, int k, int iters) {
    JtError err;
    if (grad_engine_create_ctx(&f->ge, net, sched, B, L, &err)) die(&err);
    grad_engine_select_params(f->ge, sel);
    f->P = grad_engine_grad_params(f->ge);
    proj_init(&f->pr, PROJ_SPARSE, 0, 0, f->P, k);
    f->grads = xmalloc((size_t)B * f->P * sizeof *f->grads);
    f->X = xmalloc((size_t)B * k * sizeof *f->X);
    f->ts = xmalloc((size_t)(iters + 1) * sizeof *f->ts);
    f->tg = xmalloc((size_t)(iters + 1) * sizeof *f->tg);
    const UNetConfig *cfg = unet_config(net);
    const size_t D = (size_t)cfg->in_channels * unet_config_height(cfg) * unet_config_width(cfg);
    const size_t LD = (size_t)L * (size_t)unet_cross_attention_dim(net);
    f->bytes = (double)featurize_bytes(grad_engine_bytes(f->ge), f->P, B, 1, D, 1, LD, k,
                                       proj_scratch_bytes(&f->pr, B));
}

static void feat_loop_free(FeatLoop *f) {
    proj_free(&f->pr);
    grad_engine_free(f->ge);
    free(f->grads), free(f->X), free(f->ts), free(f->tg);
}

static void print_feat_row(const char *config, const char *what, int B, int S, size_t P, int iters,
                           double sec, int ctx_len, const char *sel, const FeatLoop *f) {
    printf("{\"impl\":\"jtrak\",\"config\":\"%s\",\"what\":\"%s\",\"batch\":%d,\"size\":%d,"
           "\"threads\":%d,\"params\":%zu,\"iters\":%d,\"images_per_s\":%.3f,\"ms_per_image\":%.3f,"
           "\"peak_rss_mb\":%.1f,\"ctx_len\":%d,\"params_select\":\"%s\",\"grad_params\":%zu,"
           "\"grad_slab_mb\":%.1f,\"featurize_mb\":%.1f,\"grad_ms_per_image\":%.3f}\n",
           config, what, B, S, omp_get_max_threads(), P, iters, B / sec, 1e3 * sec / B,
           bench_peak_rss_mb(), ctx_len, sel, f->P, (double)B * f->P * sizeof(float) / (1 << 20),
           f->bytes / (1 << 20), 1e3 * bench_median(f->tg + 1, iters) / B);
}

/* featurize's inner loop over every parameter and over the selection `patterns`, interleaved. */
static void time_featurize_params(UNet *net, const char *name, int B, int S, int L, int iters,
                                  const char *patterns) {
    JtError err;
    ParamSelect sel;
    if (param_select_init(&sel, unet_layout(net), patterns, name, &err)) die(&err);
    SchedConfig sc;
    sched_config_default(&sc);
    NoiseSchedule sched;
    if (sched_init(&sched, &sc, &err)) die(&err);
    const UNetConfig *cfg = unet_config(net);
    const size_t D = (size_t)unet_cross_attention_dim(net);
    const size_t d = (size_t)cfg->in_channels * S * S;
    const int k = 2048;
    FeatLoop all, part;
    feat_loop_init(&all, net, &sched, NULL, B, L, k, iters);
    feat_loop_init(&part, net, &sched, sel.compact, B, L, k, iters);
    float *x0 = xmalloc((size_t)B * d * sizeof *x0), *eps = xmalloc((size_t)B * d * sizeof *eps);
    float *ctx = xmalloc((size_t)B * L * D * sizeof *ctx);
    int *t = xmalloc((size_t)B * sizeof *t);
    rng_fill_normal(x0, (size_t)B * d, 1, 0, 0);
    rng_fill_normal(eps, (size_t)B * d, 1, 1, 0);
    rng_fill_normal(ctx, (size_t)B * L * D, 1, 2, 0);
    for (int b = 0; b < B; b++)
        t[b] = (b * 397) % 1000;
    const Cond cond = {.context = ctx};
    for (int it = 0; it <= iters; it++) {
        FeatLoop *fs[2] = {&all, &part};
        for (int j = 0; j < 2; j++) {
            FeatLoop *f = fs[(it + j) % 2]; /* alternate which goes first */
            double t0 = progress_now();
            grad_engine_run_cond(f->ge, OUTFN_LOSS, B, 1, x0, 0, t, eps, &cond, f->grads, NULL);
            f->tg[it] = progress_now() - t0;
            proj_apply(&f->pr, f->grads, B, f->P, f->X);
            f->ts[it] = progress_now() - t0;
        }
    }
    const size_t P = unet_num_params(net);
    print_feat_row(name, "featurize", B, S, P, iters, bench_median(all.ts + 1, iters), L, "all",
                   &all);
    print_feat_row(name, "featurize_params", B, S, P, iters, bench_median(part.ts + 1, iters), L,
                   sel.patterns, &part);
    feat_loop_free(&all);
    feat_loop_free(&part);
    sched_free(&sched);
    param_select_free(&sel);
    free(x0), free(eps), free(ctx), free(t);
}

/* encode (mode 0), decode (1) or a train-vae step (2): median seconds per batch */
static double time_vae(Vae *vae, int mode, int B, int S, int iters) {
    JtError err;
    VaeRun *run;
    if (vae_run_create(&run, vae, B, S, S, mode == 2 ? VAE_RUN_TRAIN : VAE_RUN_FORWARD_ONLY, &err))
        die(&err);
    int zc, zh, zw;
    vae_run_latent_shape(run, &zc, &zh, &zw);
    const VaeConfig *cfg = vae_config(vae);
    const size_t nx = (size_t)B * cfg->in_channels * S * S, nz = (size_t)B * zc * zh * zw;
    const size_t P = vae_layout(vae)->total;
    float *x = xmalloc(nx * sizeof *x), *z = xmalloc(nz * sizeof *z),
          *z2 = xmalloc(nz * sizeof *z2);
    float *y = xmalloc((size_t)B * cfg->out_channels * S * S * sizeof *y);
    float *g = NULL, *m = NULL, *v = NULL;
    if (mode == 2) g = xcalloc(P, sizeof *g), m = xcalloc(P, sizeof *m), v = xcalloc(P, sizeof *v);
    rng_fill_normal(x, nx, 1, 0, 0);
    rng_fill_normal(z, nz, 1, 1, 0);
    AdamWConfig opt = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f};
    double *ts = xmalloc((size_t)(iters + 1) * sizeof *ts);
    for (int it = 0; it <= iters; it++) {
        double t0 = progress_now();
        if (mode == 0) {
            vae_encode(vae, run, B, x, z, z2);
        } else if (mode == 1) {
            vae_decode(vae, run, B, z, y);
        } else {
            vae_loss(vae, run, B, x, z, 1e-3f, NULL, NULL, NULL);
            memset(g, 0, P * sizeof *g);
            vae_loss_backward(vae, run, g);
            adamw_step(vae_params(vae), m, v, g, P, &opt, it + 1);
        }
        ts[it] = progress_now() - t0;
    }
    double med = bench_median(ts + 1, iters);
    vae_run_free(run);
    free(x), free(z), free(z2), free(y), free(g), free(m), free(v), free(ts);
    return med;
}

/* "configs/ldm-xs.json" -> "ldm-xs" */
static const char *config_name(const char *path, char *buf, size_t cap) {
    const char *base = strrchr(path, '/');
    snprintf(buf, cap, "%s", base ? base + 1 : path);
    char *dot = strstr(buf, ".json");
    if (dot) *dot = 0;
    return buf;
}

int main(int argc, char **argv) {
    const char *usage = "usage: bench_ldm CONFIG.json [--batch 64] [--iters 5] [--ctx-len 16] "
                        "[--size S] [--what forward,train_step,featurize|encode,decode,train_step] "
                        "[--params PATTERNS]\n";
    if (argc < 2 || argv[1][0] == '-') {
        fputs(usage, stderr);
        return 2;
    }
    const char *path = argv[1], *what = NULL, *params = NULL;
    int B = 64, iters = 5, L = 16, S = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fputs(usage, stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--batch") == 0)
            B = atoi(val);
        else if (strcmp(a, "--iters") == 0)
            iters = atoi(val);
        else if (strcmp(a, "--ctx-len") == 0)
            L = atoi(val);
        else if (strcmp(a, "--size") == 0)
            S = atoi(val);
        else if (strcmp(a, "--what") == 0)
            what = val;
        else if (strcmp(a, "--params") == 0)
            params = val;
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (B < 1 || iters < 1 || L < 1 || S < 0) {
        fprintf(stderr, "bench_ldm: --batch, --iters and --ctx-len must be at least 1\n");
        return 2;
    }
    JtError err;
    const ModelKind *kind;
    void *cfg = NULL;
    if (model_kind_load_config(path, &kind, &cfg, &err)) die(&err);
    char name[128];
    config_name(path, name, sizeof name);
    if (strcmp(kind->class_name, "AutoencoderKL") == 0) {
        Vae *vae;
        if (vae_create(&vae, cfg, &err)) die(&err);
        vae_init_params(vae, 0);
        if (!S) S = vae_config_height(cfg);
        static const char *const whats[] = {"encode", "decode", "train_step"};
        for (int mode = 0; mode < 3; mode++)
            if (bench_has_word(what ? what : "encode,decode", whats[mode]))
                print_row(name, whats[mode], B, S, vae_layout(vae)->total, iters,
                          time_vae(vae, mode, B, S, iters), 0);
        vae_free(vae);
    } else {
        UNet *net;
        if (unet_create(&net, cfg, &err)) die(&err);
        if (unet_cross_attention_dim(net) == 0) {
            fprintf(stderr, "bench_ldm: %s has no cross-attention: use bench_unet\n", path);
            return 2;
        }
        unet_init_params(net, 0);
        if (!S) S = unet_config_height(cfg);
        const size_t P = unet_num_params(net);
        const char *w = what ? what : "forward,train_step";
        if (bench_has_word(w, "forward"))
            print_row(name, "forward", B, S, P, iters, time_unet(net, 0, B, S, L, iters), L);
        if (bench_has_word(w, "train_step"))
            print_row(name, "train_step", B, S, P, iters, time_unet(net, 1, B, S, L, iters), L);
        if (bench_has_word(w, "featurize") && params)
            time_featurize_params(net, name, B, S, L, iters, params);
        else if (bench_has_word(w, "featurize"))
            print_row(name, "featurize", B, S, P, iters, time_featurize(net, B, S, L, iters), L);
        unet_free(net);
    }
    free(cfg);
    return 0;
}
