/* test_outfn.c: per-example gradients of the attribution output functions (src/attrib/outfn.h,
 * method.md 1.3, 1.4, 2.2): against Journey-TRAK's torch.func computation on diffusers' model
 * (fixture written by ref/make_attrib_fixtures.py); each example's slab bitwise equal to a batch of
 * one and independent of the thread count; the S draws sum; finite differences of f on a tiny
 * U-Net; the keyed draws (determinism, call order, prefixes) and the target keys. */
#include "attrib/outfn.h"
#include "core/rng.h"
#include "helpers/model_unet.h"
#include "helpers/numcheck.h"
#include "io/model_folder.h"
#include "io/safetensors.h"
#include "unet/unet.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A 2-level 8x8 one-channel U-Net with attention (about 20k parameters), as test_train_sample.c. */
static UNet *tiny_net(uint64_t seed) {
    UNetConfig cfg;
    unet_config_default(&cfg);
    cfg.sample_size = 8;
    cfg.in_channels = cfg.out_channels = 1;
    cfg.n_levels = 2;
    cfg.block_out_channels[0] = 8;
    cfg.block_out_channels[1] = 16;
    cfg.down_attn[0] = 0, cfg.down_attn[1] = 1;
    cfg.up_attn[0] = 1, cfg.up_attn[1] = 0;
    cfg.layers_per_block = 1;
    cfg.norm_num_groups = 4;
    UNet *net;
    JtError err;
    cr_assert(unet_create(&net, &cfg, &err) == JT_OK, "%s", err.msg);
    unet_init_params(net, seed);
    /* GroupNorm affines away from 1/0 (as the diffusers fixtures), so their gradients matter. */
    const ParamLayout *l = unet_layout(net);
    float *p = unet_params(net);
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        if (!strstr(e->name, "norm")) continue;
        int gamma = strstr(e->name, ".weight") != NULL;
        for (size_t k = 0; k < e->numel; k++)
            p[e->offset + k] = (gamma ? 1.0f : 0.0f) + 0.1f * rng_normal(99, (uint64_t)i, k);
    }
    return net;
}

static void default_sched(NoiseSchedule *s) {
    SchedConfig sc;
    sched_config_default(&sc);
    JtError err;
    cr_assert(sched_init(s, &sc, &err) == JT_OK, "%s", err.msg);
}

/* B images with values in [-1, 1] (keyed draws: the same for every caller). */
static float *images(int B, size_t D, uint64_t seed) {
    float *x = malloc((size_t)B * D * sizeof *x);
    rng_fill_uniform(x, (size_t)B * D, seed, 1, 0);
    for (size_t i = 0; i < (size_t)B * D; i++)
        x[i] = 2.0f * x[i] - 1.0f;
    return x;
}

/* Draws of examples 0..B-1 as training rows of model 0. */
static void draws(int B, int S, size_t D, int *t, float *eps) {
    for (int b = 0; b < B; b++)
        attrib_draws(11, 0, (uint64_t)b, S, 1000, -1, D, t + (size_t)b * S,
                     eps + (size_t)b * S * D);
}

static GradEngine *engine(const UNet *net, const NoiseSchedule *s, int batch) {
    GradEngine *g;
    JtError err;
    cr_assert(grad_engine_create(&g, net, s, batch, &err) == JT_OK, "%s", err.msg);
    cr_assert(grad_engine_bytes(g) > 0);
    return g;
}

/* ---- against torch.func on diffusers' UNet2DModel ------------------------------------------- */

static void *read_tensor(StFile *f, const char *name, int raw, size_t *numel) {
    int i = st_find(f, name);
    cr_assert(i >= 0, "fixture %s lacks tensor %s", f->path, name);
    size_t n = (size_t)f->tensors[i].numel;
    void *buf = malloc((n ? n : 1) * 4);
    JtError err;
    int rc = raw ? st_read_raw(f, i, buf, &err) : st_read_f32(f, i, buf, &err);
    cr_assert(rc == JT_OK, "%s", err.msg);
    if (numel) *numel = n;
    return buf;
}

/* Compares each parameter tensor of one example's slab with the same tolerance as test_unet.c's
 * gradients against diffusers: the twin measured float32-vs-float64 differences up to 4.4e-6 of a
 * tensor's largest entry (and vmap vs plain autograd up to 5.2e-6), so 1e-4 of the tensor's scale
 * plus 1e-6 of the whole slab's largest entry (the float32 floor: to_k.bias, whose true gradient is
 * 0) absolutely and 1e-3 relatively is ~20x the twin's own float32 noise. Returns the largest
 * per-tensor relative error (max |got - want| / max |want|, to_k.bias left out). */
static double compare_slab(const char *what, const ParamLayout *l, const float *got,
                           const float *want) {
    double global = 0, worst = 0;
    for (size_t k = 0; k < l->total; k++)
        global = fmax(global, fabs(want[k]));
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        double scale = 0, dmax = 0;
        for (size_t k = 0; k < e->numel; k++) {
            scale = fmax(scale, fabs(want[e->offset + k]));
            dmax = fmax(dmax, fabs(got[e->offset + k] - want[e->offset + k]));
        }
        if (!strstr(e->name, "to_k.bias") && scale > 0) worst = fmax(worst, dmax / scale);
        char key[300];
        snprintf(key, sizeof key, "%s: %s", what, e->name);
        expect_close(key, got + e->offset, want + e->offset, e->numel, 1e-4 * scale + 1e-6 * global,
                     1e-3);
    }
    return worst;
}

Test(outfn_vs_torch_func, loss_and_sqnorm_on_fm3_12x12) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/unet/fm3_12x12", JTRAK_FIXTURES);
    snprintf(path, sizeof path, "%s/attrib/fm3_12x12_grads.safetensors", JTRAK_FIXTURES);
    UNet *net;
    StFile f;
    JtError err;
    cr_assert(test_load_unet(dir, &net, &err) == JT_OK, "%s", err.msg);
    cr_assert(st_open(&f, path, &err) == JT_OK, "%s", err.msg);
    const ParamLayout *l = unet_layout(net);
    const size_t P = unet_num_params(net);

    /* The twin flattens in named_parameters() order: it must be jtrak's layout order. */
    const char *names = st_metadata_get(&f, "param_names");
    cr_assert(names != NULL);
    char *copy = strdup(names), *save = NULL;
    int n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save), n++) {
        cr_assert(n < l->count, "fixture lists more than %d tensors", l->count);
        cr_assert_str_eq(tok, l->entries[n].name, "tensor %d: twin %s, layout %s", n, tok,
                         l->entries[n].name);
    }
    cr_assert_eq(n, l->count);
    free(copy);

    size_t nx, nt;
    float *x0 = read_tensor(&f, "x0", 0, &nx);
    int32_t *t32 = read_tensor(&f, "t", 1, &nt);
    float *eps = read_tensor(&f, "eps", 0, NULL);
    float *xt_want = read_tensor(&f, "x_t", 0, NULL);
    const StTensor *tx = &f.tensors[st_find(&f, "x0")];
    const int B = (int)tx->shape[0], S = (int)(nt / (size_t)B);
    const size_t D = nx / (size_t)B;
    cr_assert(f.tensors[st_find(&f, "t")].dtype == ST_I32);
    int *t = malloc(nt * sizeof *t);
    for (size_t i = 0; i < nt; i++)
        t[i] = t32[i];

    NoiseSchedule sched;
    default_sched(&sched);
    /* add_noise: float32 coefficients and op order as diffusers; values O(1). */
    float *xt = malloc((size_t)B * S * D * sizeof *xt);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            sched_add_noise(xt + ((size_t)b * S + s) * D, x0 + (size_t)b * D,
                            eps + ((size_t)b * S + s) * D, &t[b * S + s], 1, D, &sched);
    NumDiff dx =
        expect_close("x_t vs diffusers add_noise", xt, xt_want, (size_t)B * S * D, 1e-6, 1e-6);
    fprintf(stderr, "outfn vs torch.func: x_t max abs error %.2e\n", dx.max_abs);

    GradEngine *g = engine(net, &sched, B);
    float *grads = malloc((size_t)B * P * sizeof *grads);
    double values[8];
    cr_assert(B <= 8);

    /* loss: every example's full gradient */
    grad_engine_run(g, OUTFN_LOSS, B, S, x0, t, eps, grads, values);
    float *want = read_tensor(&f, "grad_loss", 0, NULL);
    float *vwant = read_tensor(&f, "value_loss", 0, NULL);
    double worst = 0;
    for (int b = 0; b < B; b++) {
        char what[64];
        snprintf(what, sizeof what, "loss grad, example %d", b);
        worst = fmax(worst, compare_slab(what, l, grads + (size_t)b * P, want + (size_t)b * P));
        float v = (float)values[b];
        /* f sums 2 per-example means of O(1) squares: float32 forward noise ~1e-7 (twin: 7e-8
         * f32 vs f64), plus the embedding's libm differences (~1e-5 in sin/cos at t = 999). */
        NumDiff dv = expect_close("loss value", &v, &vwant[b], 1, 1e-5, 1e-5);
        fprintf(stderr, "outfn vs torch.func: loss value %d: %.8f, abs error %.2e\n", b, v,
                dv.max_abs);
    }
    fprintf(stderr, "outfn vs torch.func: loss grads, max per-tensor relative error %.2e\n", worst);
    free(want), free(vwant);

    /* sqnorm: one example's full gradient, every example's per-tensor sums of squares */
    grad_engine_run(g, OUTFN_SQNORM, B, S, x0, t, eps, grads, values);
    const int full = atoi(st_metadata_get(&f, "sqnorm_full_example"));
    want = read_tensor(&f, "grad_sqnorm", 0, NULL);
    vwant = read_tensor(&f, "value_sqnorm", 0, NULL);
    worst = compare_slab("sqnorm grad", l, grads + (size_t)full * P, want);
    fprintf(stderr, "outfn vs torch.func: sqnorm grads, max per-tensor relative error %.2e\n",
            worst);
    float *sumsq_want = read_tensor(&f, "grad_sqnorm_sumsq", 0, NULL);
    float *sumsq = malloc((size_t)B * l->count * sizeof *sumsq);
    double sumsq_max = 0;
    for (int b = 0; b < B; b++) {
        float v = (float)values[b];
        NumDiff dv = expect_close("sqnorm value", &v, &vwant[b], 1, 1e-5, 1e-5); /* as loss */
        fprintf(stderr, "outfn vs torch.func: sqnorm value %d: %.8f, abs error %.2e\n", b, v,
                dv.max_abs);
        for (int i = 0; i < l->count; i++) {
            const LayoutEntry *e = &l->entries[i];
            double acc = 0;
            for (size_t k = 0; k < e->numel; k++) {
                double gk = grads[(size_t)b * P + e->offset + k];
                acc += gk * gk;
            }
            sumsq[b * l->count + i] = (float)acc;
            sumsq_max = fmax(sumsq_max, sumsq_want[b * l->count + i]);
        }
    }
    /* A sum of squares moves by about twice the gradient's relative error (1e-3 above, plus the
     * absolute floor squared: 1e-12 of the largest squared entry, ~1e-10 of the largest sum). */
    NumDiff ds = expect_close("sqnorm per-tensor sums of squares", sumsq, sumsq_want,
                              (size_t)B * l->count, 1e-9 * sumsq_max, 2e-3);
    fprintf(stderr, "outfn vs torch.func: sqnorm per-tensor sums of squares, max rel error %.2e\n",
            ds.max_rel);

    free(want), free(vwant), free(sumsq_want), free(sumsq);
    free(grads), free(x0), free(t32), free(t), free(eps), free(xt_want), free(xt);
    grad_engine_free(g);
    sched_free(&sched);
    st_close(&f);
    unet_free(net);
}

/* ---- batch independence, thread independence, sums over draws -------------------------------- */

Test(outfn_batch, rows_equal_single_example_runs_bitwise) {
    UNet *net = tiny_net(5);
    NoiseSchedule sched;
    default_sched(&sched);
    enum { B = 5, S = 3 };
    const size_t D = 64, P = unet_num_params(net);
    float *x0 = images(B, D, 21), *eps = malloc((size_t)B * S * D * sizeof *eps);
    int t[B * S];
    draws(B, S, D, t, eps);
    t[0] = 0, t[1] = 999; /* both ends of the schedule */

    GradEngine *gB = engine(net, &sched, B + 2), *g1 = engine(net, &sched, 1);
    float *rows = malloc((size_t)B * P * sizeof *rows), *one = malloc(P * sizeof *one);
    for (int fi = 0; fi < 2; fi++) {
        OutFn f = fi ? OUTFN_SQNORM : OUTFN_LOSS;
        double values[B], v1;
        grad_engine_run(gB, f, B, S, x0, t, eps, rows, values); /* capacity 7, batch 5 */
        for (int b = 0; b < B; b++) {
            grad_engine_run(g1, f, 1, S, x0 + (size_t)b * D, t + b * S, eps + (size_t)b * S * D,
                            one, &v1);
            /* Every op loops over the batch and calls BLAS with one sample's shapes, and the
             * example stride writes each slab directly: identical arithmetic, so identical bits. */
            cr_expect(memcmp(rows + (size_t)b * P, one, P * sizeof *one) == 0,
                      "%s: example %d's slab differs from its batch-of-one run", outfn_name(f), b);
            cr_expect(values[b] == v1, "%s: example %d value %.17g vs %.17g", outfn_name(f), b,
                      values[b], v1);
            cr_expect(values[b] > 0);
        }
    }
    free(rows), free(one), free(x0), free(eps);
    grad_engine_free(gB), grad_engine_free(g1);
    sched_free(&sched);
    unet_free(net);
}

Test(outfn_batch, gradients_do_not_depend_on_thread_count) {
    UNet *net = tiny_net(6);
    NoiseSchedule sched;
    default_sched(&sched);
    enum { B = 4, S = 2 };
    const size_t D = 64, P = unet_num_params(net);
    float *x0 = images(B, D, 22), *eps = malloc((size_t)B * S * D * sizeof *eps);
    int t[B * S];
    draws(B, S, D, t, eps);
    float *g[2];
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        GradEngine *e = engine(net, &sched, B); /* the run sizes its scratch for the thread count */
        g[k] = malloc((size_t)B * P * sizeof *g[k]);
        grad_engine_run(e, OUTFN_LOSS, B, S, x0, t, eps, g[k], NULL);
        grad_engine_free(e);
    }
    omp_set_num_threads(2);
    cr_assert(memcmp(g[0], g[1], (size_t)B * P * sizeof(float)) == 0,
              "per-example gradients differ between 1 and 2 threads");
    free(g[0]), free(g[1]), free(x0), free(eps);
    sched_free(&sched);
    unet_free(net);
}

Test(outfn_draws, s_draws_sum_single_draw_gradients) {
    UNet *net = tiny_net(7);
    NoiseSchedule sched;
    default_sched(&sched);
    enum { B = 3, S = 4 };
    const size_t D = 64, P = unet_num_params(net);
    const ParamLayout *l = unet_layout(net);
    float *x0 = images(B, D, 23), *eps = malloc((size_t)B * S * D * sizeof *eps);
    int t[B * S];
    draws(B, S, D, t, eps);
    GradEngine *g = engine(net, &sched, B);
    float *all = malloc((size_t)B * P * sizeof *all), *part = malloc((size_t)B * P * sizeof *part);
    double *sum = calloc((size_t)B * P, sizeof *sum);
    double vall[B], vpart[B], vsum[B] = {0};
    for (int fi = 0; fi < 2; fi++) {
        OutFn f = fi ? OUTFN_SQNORM : OUTFN_LOSS;
        grad_engine_run(g, f, B, S, x0, t, eps, all, vall);
        memset(sum, 0, (size_t)B * P * sizeof *sum);
        memset(vsum, 0, sizeof vsum);
        float *eps1 = malloc((size_t)B * D * sizeof *eps1);
        for (int s = 0; s < S; s++) {
            int t1[B];
            for (int b = 0; b < B; b++) {
                t1[b] = t[b * S + s];
                memcpy(eps1 + (size_t)b * D, eps + ((size_t)b * S + s) * D, D * sizeof *eps1);
            }
            grad_engine_run(g, f, B, 1, x0, t1, eps1, part, vpart);
            for (size_t k = 0; k < (size_t)B * P; k++)
                sum[k] += part[k];
            for (int b = 0; b < B; b++)
                vsum[b] += vpart[b];
        }
        free(eps1);
        float *sumf = malloc((size_t)B * P * sizeof *sumf);
        for (size_t k = 0; k < (size_t)B * P; k++)
            sumf[k] = (float)sum[k];
        for (int b = 0; b < B; b++) {
            /* The engine adds each draw inside the ops (GEMMs with beta = 1), the reference adds
             * whole draws in double: the same terms in another order, float32 rounding only, so
             * 1e-6 of the tensor's largest entry (+1e-7 of the slab's, for the zero-gradient
             * to_k.bias) and 1e-5 relative. */
            double global = 0;
            for (size_t k = 0; k < P; k++)
                global = fmax(global, fabs(sumf[(size_t)b * P + k]));
            for (int i = 0; i < l->count; i++) {
                const LayoutEntry *e = &l->entries[i];
                const float *want = sumf + (size_t)b * P + e->offset;
                double scale = 0;
                for (size_t k = 0; k < e->numel; k++)
                    scale = fmax(scale, fabs(want[k]));
                expect_close(e->name, all + (size_t)b * P + e->offset, want, e->numel,
                             1e-6 * scale + 1e-7 * global, 1e-5);
            }
            /* the values are the same double sums of the same per-draw doubles */
            expect_close_d("value: S draws vs sum of single draws", &vall[b], &vsum[b], 1, 0,
                           1e-15);
        }
        free(sumf);
    }
    free(all), free(part), free(sum), free(x0), free(eps);
    grad_engine_free(g);
    sched_free(&sched);
    unet_free(net);
}

/* ---- finite differences --------------------------------------------------------------------- */

/* f of example 0 with the current parameters (one-example engine). */
static double f_value(GradEngine *g, OutFn f, int S, const float *x0, const int *t,
                      const float *eps, float *scratch) {
    double v;
    grad_engine_run(g, f, 1, S, x0, t, eps, scratch, &v);
    return v;
}

Test(outfn_fd, gradient_matches_central_differences) {
    UNet *net = tiny_net(8);
    NoiseSchedule sched;
    default_sched(&sched);
    enum { S = 2 };
    const size_t D = 64, P = unet_num_params(net);
    const ParamLayout *l = unet_layout(net);
    float *x0 = images(1, D, 24), *eps = malloc(S * D * sizeof *eps);
    int t[S];
    attrib_draws(3, 0, 0, S, 1000, -1, D, t, eps);
    t[1] = 40; /* a low-noise step: the network's input is mostly the image */
    GradEngine *g = engine(net, &sched, 1);
    float *grad = malloc(P * sizeof *grad), *scratch = malloc(P * sizeof *scratch);
    float *theta = unet_params(net);
    /* One parameter per kind of op: the largest-gradient element of each of these tensors. */
    static const char *tensors[] = {
        "conv_in.weight",
        "time_embedding.linear_1.weight",
        "down_blocks.0.resnets.0.norm1.weight",
        "down_blocks.1.attentions.0.to_q.weight",
        "down_blocks.1.attentions.0.to_v.bias",
        "mid_block.resnets.0.time_emb_proj.weight",
        "up_blocks.0.attentions.0.group_norm.bias",
        "up_blocks.1.resnets.0.conv_shortcut.weight",
        "conv_out.bias",
    };
    const int nt = (int)(sizeof tensors / sizeof *tensors);
    for (int fi = 0; fi < 2; fi++) {
        OutFn f = fi ? OUTFN_SQNORM : OUTFN_LOSS;
        grad_engine_run(g, f, 1, S, x0, t, eps, grad, NULL);
        float got[16], fd[16];
        for (int i = 0; i < nt; i++) {
            int ei = layout_find(l, tensors[i]);
            cr_assert(ei >= 0, "no tensor %s", tensors[i]);
            const LayoutEntry *e = &l->entries[ei];
            size_t best = e->offset;
            for (size_t k = e->offset; k < e->offset + e->numel; k++)
                if (fabsf(grad[k]) > fabsf(grad[best])) best = k;
            /* h = 1e-2: f is O(1) with float32 noise ~1e-7, so the difference quotient's noise is
             * ~1e-5; the h^2 truncation term (smooth net, parameters O(0.1-1)) is ~1e-5 too. */
            const float h = 1e-2f, keep = theta[best];
            theta[best] = keep + h;
            double fp = f_value(g, f, S, x0, t, eps, scratch);
            theta[best] = keep - h;
            double fm = f_value(g, f, S, x0, t, eps, scratch);
            theta[best] = keep;
            /* the step actually taken is the float difference (keep + h) - (keep - h) */
            double step = (double)(keep + h) - (double)(keep - h);
            got[i] = grad[best];
            fd[i] = (float)((fp - fm) / step);
            fprintf(stderr, "fd %-6s %-44s [%zu]: grad %+.6e  fd %+.6e  rel %.1e\n", outfn_name(f),
                    tensors[i], best - e->offset, got[i], fd[i],
                    fabs(got[i] - fd[i]) / fabs(fd[i]));
        }
        /* Measured: relative differences <= ~1e-4 (see the log lines above); 2e-3 relative plus
         * 1e-4 absolute leaves room for other CPUs' rounding, and still fails on any missing
         * factor, sign or term. */
        expect_close(outfn_name(f), got, fd, (size_t)nt, 1e-4, 2e-3);
    }
    free(grad), free(scratch), free(x0), free(eps);
    grad_engine_free(g);
    sched_free(&sched);
    unet_free(net);
}

/* ---- the draws and keys --------------------------------------------------------------------- */

Test(outfn_draws, keyed_deterministic_and_call_order_free) {
    enum { N = 10, S = 4 };
    const size_t D = 144;
    int t_fwd[N][S], t_rev[N][S];
    float *e_fwd = malloc(N * S * D * sizeof(float)), *e_rev = malloc(N * S * D * sizeof(float));
    for (int i = 0; i < N; i++)
        attrib_draws(42, 3, (uint64_t)i, S, 1000, -1, D, t_fwd[i], e_fwd + (size_t)i * S * D);
    for (int i = N - 1; i >= 0; i--)
        attrib_draws(42, 3, (uint64_t)i, S, 1000, -1, D, t_rev[i], e_rev + (size_t)i * S * D);
    cr_assert(memcmp(t_fwd, t_rev, sizeof t_fwd) == 0);
    cr_assert(memcmp(e_fwd, e_rev, N * S * D * sizeof(float)) == 0);

    /* fewer draws: a prefix of more draws */
    int t2[2];
    float e2[2 * 144];
    attrib_draws(42, 3, 7, 2, 1000, -1, D, t2, e2);
    cr_assert(t2[0] == t_fwd[7][0] && t2[1] == t_fwd[7][1]);
    cr_assert(memcmp(e2, e_fwd + 7 * S * D, sizeof e2) == 0);

    /* another model, item or seed: other draws; draws within an item differ from each other */
    attrib_draws(42, 4, 7, 2, 1000, -1, D, t2, e2);
    cr_assert(memcmp(e2, e_fwd + 7 * S * D, D * sizeof(float)) != 0);
    attrib_draws(43, 3, 7, 2, 1000, -1, D, t2, e2);
    cr_assert(memcmp(e2, e_fwd + 7 * S * D, D * sizeof(float)) != 0);
    cr_assert(memcmp(e_fwd + 6 * S * D, e_fwd + 7 * S * D, D * sizeof(float)) != 0);
    cr_assert(memcmp(e_fwd, e_fwd + D, D * sizeof(float)) != 0);

    /* fixed timestep (targets) */
    int tf[S];
    float *ef = malloc(S * D * sizeof(float));
    attrib_draws(42, 3, attrib_target_key(5, 300), S, 1000, 300, D, tf, ef);
    for (int s = 0; s < S; s++)
        cr_assert_eq(tf[s], 300);
    free(ef);

    /* the laws: timesteps uniform on 0..T-1, noise standard normal */
    enum { M = 2000 };
    int tm[M];
    float *em = malloc((size_t)M * 8 * sizeof(float));
    double tsum = 0, esum = 0, esq = 0;
    int tmin = 1 << 30, tmax = -1;
    for (int i = 0; i < M / 4; i++)
        attrib_draws(1, 0, (uint64_t)i, 4, 1000, -1, 8, tm + 4 * i, em + (size_t)i * 32);
    for (int i = 0; i < M; i++) {
        tsum += tm[i];
        tmin = tm[i] < tmin ? tm[i] : tmin;
        tmax = tm[i] > tmax ? tm[i] : tmax;
    }
    for (int i = 0; i < M * 4; i++)
        esum += em[i], esq += (double)em[i] * em[i];
    cr_assert(tmin >= 0 && tmax <= 999 && tmin < 10 && tmax > 989, "t in %d..%d", tmin, tmax);
    /* mean 499.5, sd 288.7 / sqrt(2000) = 6.5: 5 sd */
    cr_assert(fabs(tsum / M - 499.5) < 33, "mean timestep %g", tsum / M);
    /* 8000 normals: mean sd 0.011, variance sd 0.016: 5 sd */
    cr_assert(fabs(esum / (M * 4)) < 0.06 && fabs(esq / (M * 4) - 1) < 0.08, "mean %g, var %g",
              esum / (M * 4), esq / (M * 4));
    free(em), free(e_fwd), free(e_rev);
}

Test(outfn_draws, target_keys_never_collide_with_training_rows) {
    uint64_t k = attrib_target_key(0, 0);
    cr_assert(k >= ((uint64_t)1 << 62)); /* every training row is below 2^62 */
    cr_assert_neq(attrib_target_key(1, 0), attrib_target_key(0, 1));
    cr_assert_neq(attrib_target_key(0, 999), attrib_target_key(1, 999));
    cr_assert_neq(attrib_target_key(2147483647, 16777215), attrib_target_key(2147483646, 16777215));
    /* (sample, step) -> key is injective on its range */
    for (int s = 0; s < 50; s++)
        for (int t = 0; t < 1000; t += 37)
            cr_assert_eq(attrib_target_key(s, t),
                         ((uint64_t)1 << 62) | ((uint64_t)s << 24) | (uint64_t)t);
}

Test(outfn_names, round_trip) {
    OutFn f;
    cr_assert(outfn_parse("loss", &f) && f == OUTFN_LOSS);
    cr_assert(outfn_parse("sqnorm", &f) && f == OUTFN_SQNORM);
    cr_assert(!outfn_parse("square", &f));
    cr_assert_str_eq(outfn_name(OUTFN_LOSS), "loss");
    cr_assert_str_eq(outfn_name(OUTFN_SQNORM), "sqnorm");
}
