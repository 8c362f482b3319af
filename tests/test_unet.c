/* test_unet.c: the whole U-Net against diffusers' own UNet2DModel (fixtures written by
 * ref/make_unet_fixtures.py): output, loss, every parameter gradient and three AdamW steps, for
 * configs that together cover one and several heads, both downsample paddings, flipped/unflipped
 * sinusoids with freq_shift 0/1, norm_eps 1e-5/1e-6, 3 and 4 levels, 1 and 3 channels, class
 * conditioning (num_class_embeds), plus legacy attention names and F16 weights. Also: per-example
 * gradients equal single-example backward passes and sum to the batch gradient, results do not
 * depend on the thread count, and a forward-only run gives a training run's output in fewer
 * bytes. */
#include "core/hash.h"
#include "helpers/model_unet.h"
#include "helpers/numcheck.h"
#include "io/model_folder.h"
#include "io/safetensors.h"
#include "nn/nn.h"
#include "unet/presets.h"
#include "unet/unet.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    UNet *net;
    StFile io;
    float *x, *t, *eps, *out, *loss_pe;
    int *labels; /* (B) class_labels of a class-conditional fixture, else NULL */
    float loss;
    int B, C, H, W, Co;
} Fixture;

static float *read_tensor(StFile *f, const char *name, size_t *numel) {
    int i = st_find(f, name);
    cr_assert(i >= 0, "fixture %s lacks tensor %s", f->path, name);
    size_t n = (size_t)f->tensors[i].numel;
    float *buf = malloc((n ? n : 1) * sizeof *buf);
    JtError err;
    cr_assert(st_read_f32(f, i, buf, &err) == JT_OK, "%s", err.msg);
    if (numel) *numel = n;
    return buf;
}

static void fixture_load(Fixture *fx, const char *name) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/unet/%s", JTRAK_FIXTURES, name);
    JtError err;
    cr_assert(test_load_unet(dir, &fx->net, &err) == JT_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    cr_assert(st_open(&fx->io, path, &err) == JT_OK, "%s", err.msg);
    fx->x = read_tensor(&fx->io, "x", NULL);
    fx->t = read_tensor(&fx->io, "t", NULL);
    fx->eps = read_tensor(&fx->io, "eps", NULL);
    fx->out = read_tensor(&fx->io, "out", NULL);
    const StTensor *tx = &fx->io.tensors[st_find(&fx->io, "x")];
    const StTensor *to = &fx->io.tensors[st_find(&fx->io, "out")];
    fx->B = (int)tx->shape[0];
    fx->C = (int)tx->shape[1];
    fx->H = (int)tx->shape[2];
    fx->W = (int)tx->shape[3];
    fx->Co = (int)to->shape[1];
    int li = st_find(&fx->io, "class_labels");
    cr_assert((li >= 0) == (unet_num_classes(fx->net) > 0),
              "%s: class_labels %s for num_class_embeds %d", name, li >= 0 ? "present" : "absent",
              unet_num_classes(fx->net));
    if (li >= 0) { /* int64 ids, as torch's nn.Embedding takes them */
        const StTensor *tl = &fx->io.tensors[li];
        cr_assert(tl->dtype == ST_I64 && tl->ndim == 1 && tl->shape[0] == fx->B,
                  "%s: class_labels must be I64 of shape (%d)", name, fx->B);
        int64_t *raw = malloc((size_t)fx->B * sizeof *raw);
        cr_assert(st_read_raw(&fx->io, li, raw, &err) == JT_OK, "%s", err.msg);
        fx->labels = malloc((size_t)fx->B * sizeof *fx->labels);
        for (int b = 0; b < fx->B; b++) {
            cr_assert(raw[b] >= 0 && raw[b] < unet_num_classes(fx->net), "label %lld",
                      (long long)raw[b]);
            fx->labels[b] = (int)raw[b];
        }
        free(raw);
    }
    if (st_find(&fx->io, "loss") >= 0) {
        float *l = read_tensor(&fx->io, "loss", NULL);
        fx->loss = l[0];
        free(l);
        fx->loss_pe = read_tensor(&fx->io, "loss_per_example", NULL);
    }
}

static void fixture_free(Fixture *fx) {
    unet_free(fx->net);
    st_close(&fx->io);
    free(fx->x), free(fx->t), free(fx->eps), free(fx->out), free(fx->loss_pe), free(fx->labels);
}

/* JTRAK_TEST_VERBOSE=1 prints the measured errors against diffusers. */
static int verbose(void) {
    const char *v = getenv("JTRAK_TEST_VERBOSE");
    return v && *v && *v != '0';
}

static size_t out_numel(const Fixture *fx) { return (size_t)fx->B * fx->Co * fx->H * fx->W; }

/* Forward + MSE loss + backward of the fixture batch; returns the loss, grads summed in g. */
static double forward_backward(Fixture *fx, UNetRun *run, float *g, float *y) {
    size_t n = out_numel(fx);
    float *dy = calloc(n, sizeof *dy);
    unet_forward(fx->net, run, fx->B, y, fx->x, fx->t, fx->labels);
    double loss = mse_forward(y, fx->eps, n);
    mse_backward(dy, y, fx->eps, n, 1.0f);
    unet_backward(fx->net, run, fx->B, g, 0, dy, NULL);
    free(dy);
    return loss;
}

static void check_against_diffusers(const char *name) {
    Fixture fx = {0};
    fixture_load(&fx, name);
    JtError err;
    UNetRun *run;
    cr_assert(unet_run_create(&run, fx.net, fx.B, fx.H, fx.W, UNET_RUN_TRAIN, &err) == JT_OK, "%s",
              err.msg);
    size_t P = unet_num_params(fx.net), n = out_numel(&fx);
    float *g = calloc(P, sizeof *g), *y = malloc(n * sizeof *y);
    double loss = forward_backward(&fx, run, g, y);

    /* unet2d.md section 7: float32 C vs float32 torch differ by summation order only; outputs are
     * O(1), so 1e-4 absolute and relative is the suggested bound (measured errors are ~1e-6). */
    NumDiff d_out = expect_close("output vs diffusers", y, fx.out, n, 1e-4, 1e-4);
    float lossf = (float)loss;
    NumDiff d_loss = expect_close("loss vs diffusers", &lossf, &fx.loss, 1, 1e-6, 1e-5);
    double g_abs = 0, g_rel = 0; /* worst over the gradient tensors, rel = max|diff| / max|want| */

    /* Every parameter gradient. Gradients are sums over many terms of both signs, so an absolute
     * floor relative to the tensor's own scale (1e-4 of its largest entry) absorbs cancellation;
     * 1e-3 relative covers float32 reordering through ~20 layers. */
    const ParamLayout *l = unet_layout(fx.net);
    double global_scale = 0; /* largest gradient entry of the whole model */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < l->count; i++) {
            const LayoutEntry *e = &l->entries[i];
            char key[300];
            snprintf(key, sizeof key, "grad.%s", e->name);
            float *want = read_tensor(&fx.io, key, NULL);
            double scale = 0;
            for (size_t k = 0; k < e->numel; k++) scale = fmax(scale, fabs(want[k]));
            if (pass == 0)
                global_scale = fmax(global_scale, scale);
            else { /* 1e-6 of the model's largest gradient: the float32 noise floor (to_k.bias) */
                NumDiff dg = expect_close(key, g + e->offset, want, e->numel,
                                          1e-4 * scale + 1e-6 * global_scale, 1e-3);
                g_abs = fmax(g_abs, dg.max_abs);
                if (scale > 0 && !strstr(e->name, "to_k.bias")) /* to_k.bias: pure noise */
                    g_rel = fmax(g_rel, dg.max_abs / scale);
                if (verbose() && strstr(e->name, "class_embedding"))
                    fprintf(stderr, "%s: %s max abs %.3g, rel to its largest %.3g\n", name, key,
                            dg.max_abs, dg.max_abs / scale);
            }
            free(want);
        }

    if (verbose())
        fprintf(stderr,
                "%s: out max abs %.3g rel %.3g; loss abs %.3g; grads max abs %.3g, max "
                "tensor-relative %.3g (but to_k.bias)\n",
                name, d_out.max_abs, d_out.max_rel, d_loss.max_abs, g_abs, g_rel);
    /* Three AdamW steps on the same batch, as torch.optim.AdamW(lr 1e-3, wd 0.01). */
    float *m = calloc(P, sizeof *m), *v = calloc(P, sizeof *v);
    AdamWConfig opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f};
    double a_abs = 0; /* worst over the weights held to the tight AdamW tolerance */
    for (int step = 1; step <= 3; step++) {
        if (step > 1) {
            memset(g, 0, P * sizeof *g);
            forward_backward(&fx, run, g, y);
        }
        adamw_step(unet_params(fx.net), m, v, g, P, &opt, step);
    }
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        char key[300];
        snprintf(key, sizeof key, "grad.%s", e->name);
        float *g_ref = read_tensor(&fx.io, key, NULL);
        snprintf(key, sizeof key, "adamw3.%s", e->name);
        float *want = read_tensor(&fx.io, key, NULL);
        const float *got = unet_params(fx.net) + e->offset;
        double scale = 0;
        for (size_t k = 0; k < e->numel; k++) scale = fmax(scale, fabs(g_ref[k]));
        /* Adam moves each weight by about lr * g / |g| per step, and a relative error e in the
         * gradients moves steps 2 and 3 by up to about lr e. The gradients above are held to 1e-4
         * of their tensor's largest entry, so an entry below 1e-2 of it may be 1% or more off and
         * its weight lr / 100 = 1e-5 or more (and at the float-noise level, e.g. to_k.bias, whose
         * true gradient is exactly zero since softmax ignores a per-row shift, either sign is
         * right): such weights must only stay within the 3 steps' reach of 3 lr (+1%). Every other
         * weight: 1e-5 absolute, 1e-4 relative. (With a cut at 1e-3, three weights of
         * multihead3_8x8 whose gradients are 1.1-2.5e-3 of their tensor's largest came out
         * 1.3-5.9e-5 off on the OpenBLAS build: within what the gradient tolerance allows.) */
        float *tight_got = malloc(e->numel * sizeof(float)), *tight_want = malloc(e->numel * sizeof(float));
        size_t n_tight = 0;
        for (size_t k = 0; k < e->numel; k++) {
            if (fabs(g_ref[k]) < 1e-2 * scale || fabs(g_ref[k]) < 1e-6 * global_scale) {
                cr_expect(fabs(got[k] - want[k]) <= 3.03 * opt.lr, "%s[%zu]: got %g want %g", key,
                          k, got[k], want[k]);
            } else {
                tight_got[n_tight] = got[k];
                tight_want[n_tight++] = want[k];
            }
        }
        NumDiff da = expect_close(key, tight_got, tight_want, n_tight, 1e-5, 1e-4);
        a_abs = fmax(a_abs, da.max_abs);
        free(tight_got), free(tight_want), free(want), free(g_ref);
    }
    if (verbose()) fprintf(stderr, "%s: adamw3 max abs (tight weights) %.3g\n", name, a_abs);
    free(g), free(y), free(m), free(v);
    unet_run_free(run);
    fixture_free(&fx);
}

Test(unet_vs_diffusers, fm3_12x12) { check_against_diffusers("fm3_12x12"); }
Test(unet_vs_diffusers, google4_16x16) { check_against_diffusers("google4_16x16"); }
Test(unet_vs_diffusers, multihead3_8x8) { check_against_diffusers("multihead3_8x8"); }
Test(unet_vs_diffusers, rect2_8x12) { check_against_diffusers("rect2_8x12"); }
Test(unet_vs_diffusers, cls_fm3_12x12) {
    check_against_diffusers("cls_fm3_12x12");
}
Test(unet_vs_diffusers, cls_rect2_8x12) {
    check_against_diffusers("cls_rect2_8x12");
}

static void check_forward_only(const char *name) {
    Fixture fx = {0};
    fixture_load(&fx, name);
    JtError err;
    UNetRun *run;
    cr_assert(unet_run_create(&run, fx.net, fx.B, fx.H, fx.W, UNET_RUN_FORWARD_ONLY, &err) == JT_OK,
              "%s", err.msg);
    size_t n = out_numel(&fx);
    float *y = malloc(n * sizeof *y);
    unet_forward(fx.net, run, fx.B, y, fx.x, fx.t, fx.labels);
    expect_close("output vs diffusers", y, fx.out, n, 1e-4, 1e-4); /* as above */
    free(y);
    unet_run_free(run);
    fixture_free(&fx);
}

Test(unet_vs_diffusers, legacy_attention_names) { check_forward_only("google4_16x16_legacy"); }
Test(unet_vs_diffusers, f16_weights) { check_forward_only("fm3_12x12_f16"); }

/* Per-example gradients: one slab per example equals a B=1 backward of that example alone, and
 * the slabs sum to the batch-summed gradient. */
static void check_per_example(const char *name) {
    Fixture fx = {0};
    fixture_load(&fx, name);
    JtError err;
    UNetRun *run, *run1;
    cr_assert(unet_run_create(&run, fx.net, fx.B, fx.H, fx.W, UNET_RUN_TRAIN, &err) == JT_OK, "%s",
              err.msg);
    cr_assert(unet_run_create(&run1, fx.net, 1, fx.H, fx.W, UNET_RUN_TRAIN, &err) == JT_OK, "%s",
              err.msg);
    size_t P = unet_num_params(fx.net), n = out_numel(&fx), per = n / (size_t)fx.B;
    size_t per_in = (size_t)fx.C * fx.H * fx.W;
    float *y = malloc(n * sizeof *y), *dy = calloc(n, sizeof *dy);
    float *gpe = calloc(P * (size_t)fx.B, sizeof *gpe), *gsum = calloc(P, sizeof *gsum);

    unet_forward(fx.net, run, fx.B, y, fx.x, fx.t, fx.labels);
    /* Per-example loss: the mean over that example's elements (what attribution differentiates). */
    for (int b = 0; b < fx.B; b++) {
        double lb = mse_forward(y + b * per, fx.eps + b * per, per);
        float lbf = (float)lb;
        expect_close("per-example loss vs diffusers", &lbf, &fx.loss_pe[b], 1, 1e-6, 1e-5);
        mse_backward(dy + b * per, y + b * per, fx.eps + b * per, per, 1.0f);
    }
    unet_backward(fx.net, run, fx.B, gpe, P, dy, NULL);
    unet_forward(fx.net, run, fx.B, y, fx.x, fx.t, fx.labels);
    unet_backward(fx.net, run, fx.B, gsum, 0, dy, NULL);

    float *g1 = calloc(P, sizeof *g1), *y1 = malloc(per * sizeof *y1), *acc = calloc(P, sizeof *acc);
    for (int b = 0; b < fx.B; b++) {
        memset(g1, 0, P * sizeof *g1);
        unet_forward(fx.net, run1, 1, y1, fx.x + b * per_in, fx.t + b,
                     fx.labels ? fx.labels + b : NULL);
        unet_backward(fx.net, run1, 1, g1, 0, dy + b * per, NULL);
        /* Same ops on the same sample: only BLAS blocking can differ, so 1e-6 relative. */
        expect_close("per-example slab vs single-example backward", gpe + b * P, g1, P, 1e-9, 1e-6);
        for (size_t k = 0; k < P; k++) acc[k] += gpe[b * P + k];
    }
    /* Summation order differs (per-example slabs added here vs inside the ops). */
    expect_close("sum of per-example slabs vs batch gradient", acc, gsum, P, 1e-7, 1e-5);
    free(y), free(dy), free(gpe), free(gsum), free(g1), free(y1), free(acc);
    unet_run_free(run);
    unet_run_free(run1);
    fixture_free(&fx);
}

Test(unet_per_example, equals_single_example_passes) {
    check_per_example("multihead3_8x8");
}
/* labels 1, 1, 3: examples 0 and 1 write the same class_embedding row, each in its own slab */
Test(unet_per_example, class_conditional) {
    check_per_example("cls_rect2_8x12");
}

/* A forward-only run computes the training run's output bit for bit, without the gradient arena
 * and the gradient slots. */
static void check_forward_only_run(const char *name) {
    Fixture fx = {0};
    fixture_load(&fx, name);
    JtError err;
    UNetRun *tr, *fo;
    cr_assert(unet_run_create(&tr, fx.net, fx.B, fx.H, fx.W, UNET_RUN_TRAIN, &err) == JT_OK, "%s",
              err.msg);
    cr_assert(unet_run_create(&fo, fx.net, fx.B, fx.H, fx.W, UNET_RUN_FORWARD_ONLY, &err) == JT_OK,
              "%s", err.msg);
    size_t n = out_numel(&fx);
    float *y0 = malloc(n * sizeof *y0), *y1 = malloc(n * sizeof *y1);
    unet_forward(fx.net, tr, fx.B, y0, fx.x, fx.t, fx.labels);
    unet_forward(fx.net, fo, fx.B, y1, fx.x, fx.t, fx.labels);
    cr_expect(memcmp(y0, y1, n * sizeof *y0) == 0, "%s: forward-only output differs", name);
    size_t bt = unet_run_bytes(tr), bf = unet_run_bytes(fo);
    cr_expect(bf < bt, "%s: forward-only run %zu bytes, training run %zu", name, bf, bt);
    free(y0), free(y1);
    unet_run_free(tr);
    unet_run_free(fo);
    fixture_free(&fx);
}
Test(unet_run, forward_only_equals_training_run) {
    check_forward_only_run("google4_16x16");
    check_forward_only_run("cls_fm3_12x12");
}

/* unet_init_params: class_embedding.weight is N(0, 1) (nn.Embedding's reset_parameters), the other
 * tensors keep the fan-in uniform; the class table does not move the unconditional draws of the
 * tensors before it. */
Test(unet_init, class_embedding_is_standard_normal) {
    UNetConfig cfg;
    cr_assert(unet_config_preset("fm-xs", &cfg));
    UNet *plain, *cls;
    JtError err;
    cr_assert(unet_create(&plain, &cfg, &err) == JT_OK, "%s", err.msg);
    cfg.num_class_embeds = 200; /* 200 x 64 = 12800 draws */
    cr_assert(unet_create(&cls, &cfg, &err) == JT_OK, "%s", err.msg);
    unet_init_params(plain, 7);
    unet_init_params(cls, 7);
    const ParamLayout *l = unet_layout(cls);
    int ci = layout_find(l, "class_embedding.weight");
    cr_assert(ci == 6, "class_embedding.weight is tensor %d (diffusers: 6)", ci);
    const LayoutEntry *e = &l->entries[ci];
    cr_assert(e->shape[0] == 200 && e->shape[1] == 64);
    double s = 0, s2 = 0, mx = 0;
    const float *w = unet_params(cls) + e->offset;
    for (size_t k = 0; k < e->numel; k++)
        s += w[k], s2 += (double)w[k] * w[k], mx = fmax(mx, fabs(w[k]));
    double mean = s / e->numel, var = s2 / e->numel - mean * mean;
    /* 12800 N(0,1) draws: the mean's standard error is 0.009 and the variance's 0.0125, so 5
     * standard errors; a uniform U(-1/8, 1/8) (the fan-in rule at 64) has variance 0.005 */
    cr_expect(fabs(mean) < 0.045 && fabs(var - 1.0) < 0.0625, "mean %g variance %g", mean, var);
    cr_expect(mx > 3.0, "largest |w| %g: a normal sample of 12800 exceeds 3", mx);
    /* the tensors before it are drawn from the same streams as in the unconditional model */
    const size_t before = e->offset;
    cr_expect(memcmp(unet_params(plain), unet_params(cls), before * sizeof(float)) == 0,
              "time_embedding/conv_in draws changed");
    unet_free(plain);
    unet_free(cls);
}

/* Initial weights are a pinned function of (config, seed): the expected FNV-1a 64 hashes of the
 * whole slab after unet_init_params(net, 0) were computed by the code as it stood at commit fd110d6
 * (init still guessed from tensor names), before the init kind moved into the layout, with
 * hash_fnv1a(HASH_FNV_OFFSET, params, num_params * 4) on this x86-64 build. A change to any draw,
 * its stream, its bound or the registration order changes the hash. */
static uint64_t init_hash(const UNetConfig *cfg) {
    UNet *net;
    JtError err;
    cr_assert(unet_create(&net, cfg, &err) == JT_OK, "%s", err.msg);
    unet_init_params(net, 0);
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, unet_params_const(net),
                            unet_num_params(net) * sizeof(float));
    unet_free(net);
    return h;
}

Test(unet_init, initial_weights_are_bitwise_pinned) {
    UNetConfig cfg;
    cr_assert(unet_config_preset("fm-xs", &cfg));
    cr_expect(init_hash(&cfg) == 0xde3482712b3af03bULL, "fm-xs: 0x%016llx",
              (unsigned long long)init_hash(&cfg));
    cfg.num_class_embeds = 10;
    cr_expect(init_hash(&cfg) == 0x9eed26cee529df12ULL, "fm-xs + 10 classes: 0x%016llx",
              (unsigned long long)init_hash(&cfg));
    /* t8 with two layers per block, three classes and the other numerics knobs moved */
    cr_assert(unet_config_preset("t8", &cfg));
    cfg.center_input_sample = 1;
    cfg.attention_head_dim = 16;
    cfg.downsample_padding = 0;
    cfg.mid_block_scale_factor = 1.414f;
    cfg.attn_norm_num_groups = 4;
    cfg.layers_per_block = 2;
    cfg.num_class_embeds = 3;
    cfg.freq_shift = 1.0f;
    cfg.flip_sin_to_cos = 0;
    cr_expect(init_hash(&cfg) == 0xd424fd9272b766bbULL, "t8 variant: 0x%016llx",
              (unsigned long long)init_hash(&cfg));
}

Test(unet_threads, gradients_do_not_depend_on_thread_count) {
    Fixture fx = {0};
    fixture_load(&fx, "google4_16x16");
    JtError err;
    UNetRun *run;
    size_t P = unet_num_params(fx.net), n = out_numel(&fx);
    float *g[2], *y = malloc(n * sizeof *y);
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        cr_assert(unet_run_create(&run, fx.net, fx.B, fx.H, fx.W, UNET_RUN_TRAIN, &err) == JT_OK,
                  "%s", err.msg);
        g[k] = calloc(P, sizeof *g[k]);
        forward_backward(&fx, run, g[k], y);
        unet_run_free(run);
    }
    omp_set_num_threads(2);
    cr_assert(memcmp(g[0], g[1], P * sizeof(float)) == 0,
              "gradients differ between 1 and 2 threads");
    free(g[0]), free(g[1]), free(y);
    fixture_free(&fx);
}

Test(unet_layout, parameter_counts_and_presets_match_diffusers_configs) {
    /* Counts from instantiating the real classes (unet2d.md section 11). */
    static const struct {
        const char *file, *preset;
        size_t params;
    } cases[] = {{"configs/fm-s.json", "fm-s", 1112801}, {"configs/fm-xs.json", "fm-xs", 280177},
                 {"configs/t8.json", "t8", 701345}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", JTRAK_SOURCE_DIR, cases[i].file);
        UNetConfig cfg;
        UNet *net;
        JtError err;
        cr_assert(unet_config_load(&cfg, path, &err) == JT_OK, "%s", err.msg);
        cr_assert(unet_create(&net, &cfg, &err) == JT_OK, "%s", err.msg);
        cr_expect_eq(unet_num_params(net), cases[i].params, "%s: %zu parameters, want %zu",
                     cases[i].file, unet_num_params(net), cases[i].params);
        unet_free(net);
        /* The shipped config of that name is the same model as the JSON file. */
        UNetConfig preset;
        cr_assert(unet_config_preset(cases[i].preset, &preset));
        char *a = unet_config_to_json(&cfg), *b = unet_config_to_json(&preset);
        cr_expect_str_eq(a, b, "preset %s differs from %s", cases[i].preset, cases[i].file);
        free(a), free(b);
    }
}

Test(unet_run, refuses_sizes_the_levels_cannot_halve) {
    Fixture fx = {0};
    fixture_load(&fx, "google4_16x16"); /* 4 levels: sizes must be divisible by 8 */
    UNetRun *run = NULL;
    JtError err;
    cr_assert(unet_run_create(&run, fx.net, 2, 12, 16, UNET_RUN_TRAIN, &err) == JT_ERR);
    cr_assert(run == NULL);
    cr_assert(strstr(err.msg, "12x16") && strstr(err.msg, "divisible by 8"), "%s", err.msg);
    fixture_free(&fx);
}

/* make bench's split of a step's time (unet_run_profile): both counters grow while on and stand
 * still while off, and timing the nodes does not change the gradients. */
Test(unet_run, profile_splits_time_without_changing_results) {
    Fixture fx = {0};
    fixture_load(&fx, "google4_16x16");
    JtError err;
    UNetRun *run;
    cr_assert(unet_run_create(&run, fx.net, fx.B, fx.H, fx.W, UNET_RUN_TRAIN, &err) == JT_OK, "%s",
              err.msg);
    size_t P = unet_num_params(fx.net), n = out_numel(&fx);
    float *g0 = calloc(P, sizeof *g0), *g1 = calloc(P, sizeof *g1), *y = malloc(n * sizeof *y);
    forward_backward(&fx, run, g0, y);
    double conv_s, other_s;
    unet_run_profile(run, 1);
    forward_backward(&fx, run, g1, y);
    unet_run_profile_seconds(run, &conv_s, &other_s);
    cr_expect(conv_s > 0 && other_s > 0, "conv %g s, other %g s", conv_s, other_s);
    cr_expect(memcmp(g0, g1, P * sizeof(float)) == 0, "profiling changed the gradients");
    unet_run_profile(run, 0);
    forward_backward(&fx, run, g1, y);
    double conv2, other2;
    unet_run_profile_seconds(run, &conv2, &other2);
    cr_expect(conv2 == conv_s && other2 == other_s, "counters moved while profiling was off");
    free(g0), free(g1), free(y);
    unet_run_free(run);
    fixture_free(&fx);
}
