/* test_vae.c: AutoencoderKL (src/vae) against diffusers' own (fixtures written by the reference
 * twin into tests/fixtures/vae/: a 3-level (16, 32, 32) 1-channel VAE with 4 latent channels and
 * randomised GroupNorm affines, B = 3 at 32x32): the moments, the posterior mean and clamped
 * log-variance, the posterior sample, the decoder output, the loss MSE + beta * KL, every
 * parameter gradient and three AdamW steps; the legacy attention names load to the same model;
 * the clamp passes no gradient outside [-30, 20] and the loss's input gradients agree with finite
 * differences; the config round trip and its refusals; and the CLI: train-vae resumes bit for bit
 * after a stop, encode's .npy + manifest, and bad inputs one clear line each with nothing left
 * behind. */
#include "core/config_fields.h"
#include "core/hash.h"
#include "data/dataset.h"
#include "helpers/cli_run.h"
#include "helpers/numcheck.h"
#include "helpers/tmpdir.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "nn/nn.h"
#include "vae/vae.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

typedef struct {
    Model *model;
    Vae *vae;
    StFile io;
    float *x, *moments, *mean, *logvar, *noise, *z, *dec;
    float beta, loss;
    int B, C, H, W, zc, zh, zw;
} Fixture;

static void fixture_load(Fixture *fx, const char *name) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/vae/%s", JTRAK_FIXTURES, name);
    JtError err;
    cr_assert(model_load(dir, &fx->model, &err) == JT_OK, "%s", err.msg);
    fx->vae = model_vae(fx->model);
    cr_assert_not_null(fx->vae, "%s is not loaded as an AutoencoderKL", dir);
    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    cr_assert(st_open(&fx->io, path, &err) == JT_OK, "%s", err.msg);
    fx->x = read_tensor(&fx->io, "x", NULL);
    fx->moments = read_tensor(&fx->io, "moments", NULL);
    fx->mean = read_tensor(&fx->io, "mean", NULL);
    fx->logvar = read_tensor(&fx->io, "logvar", NULL);
    fx->noise = read_tensor(&fx->io, "noise", NULL);
    fx->z = read_tensor(&fx->io, "z", NULL);
    fx->dec = read_tensor(&fx->io, "dec", NULL);
    float *b = read_tensor(&fx->io, "beta", NULL), *l = read_tensor(&fx->io, "loss", NULL);
    fx->beta = b[0];
    fx->loss = l[0];
    free(b), free(l);
    const StTensor *tx = &fx->io.tensors[st_find(&fx->io, "x")];
    const StTensor *tm = &fx->io.tensors[st_find(&fx->io, "mean")];
    fx->B = (int)tx->shape[0];
    fx->C = (int)tx->shape[1];
    fx->H = (int)tx->shape[2];
    fx->W = (int)tx->shape[3];
    fx->zc = (int)tm->shape[1];
    fx->zh = (int)tm->shape[2];
    fx->zw = (int)tm->shape[3];
}

static void fixture_free(Fixture *fx) {
    model_free(fx->model);
    st_close(&fx->io);
    free(fx->x), free(fx->moments), free(fx->mean), free(fx->logvar), free(fx->noise);
    free(fx->z), free(fx->dec);
}

static int verbose(void) {
    const char *v = getenv("JTRAK_TEST_VERBOSE");
    return v && *v && *v != '0';
}

static size_t nz_of(const Fixture *fx) {
    return (size_t)fx->B * fx->zc * fx->zh * fx->zw;
}
static size_t nx_of(const Fixture *fx) {
    return (size_t)fx->B * fx->C * fx->H * fx->W;
}

/* Encode, sample and decode of the fixture batch against diffusers. Float32 C against float32
 * torch differ by summation order only: ref/README.md measured float32 against float64 at 7.8e-7
 * (moments, mean, logvar), 1.1e-6 (z) and 3.1e-6 (dec, max |dec| 1.8), so about 10x that: atol
 * 1e-5 for the moments and latents, 3e-5 + 1e-4 relative for the decoder output. */
static void check_forward(const char *name, VaeRunMode mode) {
    Fixture fx = {0};
    fixture_load(&fx, name);
    JtError err;
    VaeRun *run;
    cr_assert(vae_run_create(&run, fx.vae, fx.B, fx.H, fx.W, mode, &err) == JT_OK, "%s", err.msg);
    int c, h, w;
    vae_run_latent_shape(run, &c, &h, &w);
    cr_assert(c == fx.zc && h == fx.zh && w == fx.zw, "latent (%d,%d,%d)", c, h, w);
    const size_t nz = nz_of(&fx), nx = nx_of(&fx);
    float *mom = malloc(2 * nz * sizeof(float)), *mean = malloc(nz * sizeof(float));
    float *lv = malloc(nz * sizeof(float)), *z = malloc(nz * sizeof(float));
    float *dec = malloc(nx * sizeof(float));
    vae_encode_moments(fx.vae, run, fx.B, fx.x, mom);
    NumDiff dm = expect_close("moments vs diffusers", mom, fx.moments, 2 * nz, 1e-5, 0);
    vae_encode(fx.vae, run, fx.B, fx.x, mean, lv);
    expect_close("mean vs diffusers", mean, fx.mean, nz, 1e-5, 0);
    expect_close("logvar vs diffusers", lv, fx.logvar, nz, 1e-5, 0);
    /* the sample from diffusers' own mean and logvar: one exp, one multiply-add per entry */
    vae_posterior_sample(z, fx.mean, fx.logvar, fx.noise, nz);
    expect_close("posterior sample vs diffusers", z, fx.z, nz, 1e-6, 1e-6);
    /* decode diffusers' z, so the decoder is checked on its own */
    vae_decode(fx.vae, run, fx.B, fx.z, dec);
    NumDiff dd = expect_close("decode vs diffusers", dec, fx.dec, nx, 3e-5, 1e-4);
    if (verbose())
        fprintf(stderr, "%s: moments max abs %.3g, decode max abs %.3g\n", name, dm.max_abs,
                dd.max_abs);
    free(mom), free(mean), free(lv), free(z), free(dec);
    vae_run_free(run);
    fixture_free(&fx);
}

Test(vae_vs_diffusers, forward) {
    check_forward("vae3_32", VAE_RUN_TRAIN);
}
Test(vae_vs_diffusers, forward_only_run) {
    check_forward("vae3_32", VAE_RUN_FORWARD_ONLY);
}
/* The same weights saved with the legacy attention names query/key/value/proj_attn (the original
 * SD VAE conversions): they load as the same model and give the same outputs. */
Test(vae_vs_diffusers, legacy_attention_names) {
    check_forward("vae_legacy", VAE_RUN_FORWARD_ONLY);
    Model *a, *b;
    JtError err;
    char da[512], db[512];
    snprintf(da, sizeof da, "%s/vae/vae3_32", JTRAK_FIXTURES);
    snprintf(db, sizeof db, "%s/vae/vae_legacy", JTRAK_FIXTURES);
    cr_assert(model_load(da, &a, &err) == JT_OK, "%s", err.msg);
    cr_assert(model_load(db, &b, &err) == JT_OK, "%s", err.msg);
    cr_expect_eq(model_fingerprint(a), model_fingerprint(b),
                 "the legacy-named weights load as another model");
    model_free(a), model_free(b);
}

static double loss_backward(Fixture *fx, VaeRun *run, float *g) {
    double loss = vae_loss(fx->vae, run, fx->B, fx->x, fx->noise, fx->beta, NULL, NULL, NULL);
    vae_loss_backward(fx->vae, run, g);
    return loss;
}

/* The loss, every parameter gradient and three AdamW steps (lr 1e-3, weight decay 0.01) against
 * diffusers + torch autograd + torch.optim.AdamW; the tolerances are test_unet.c's, for the same
 * reasons (float32 reordering through ~20 layers; to_k.bias's true gradient is zero). */
Test(vae_vs_diffusers, loss_gradients_adamw) {
    Fixture fx = {0};
    fixture_load(&fx, "vae3_32");
    JtError err;
    VaeRun *run;
    cr_assert(vae_run_create(&run, fx.vae, fx.B, fx.H, fx.W, VAE_RUN_TRAIN, &err) == JT_OK, "%s",
              err.msg);
    const size_t P = vae_num_params(fx.vae);
    float *g = calloc(P, sizeof *g);
    double mse, kl;
    float lossf = (float)vae_loss(fx.vae, run, fx.B, fx.x, fx.noise, fx.beta, &mse, &kl, NULL);
    vae_loss_backward(fx.vae, run, g);
    /* the two parts and their sum (ref/README.md: kl, a sum of 256 terms ~ 14, atol 2e-5; loss and
     * recon 1e-6) */
    NumDiff dl = expect_close("loss vs diffusers", &lossf, &fx.loss, 1, 1e-6, 0);
    float *recon = read_tensor(&fx.io, "recon", NULL), *kl_b = read_tensor(&fx.io, "kl", NULL);
    float msef = (float)mse, klf = (float)kl, kl_want = 0;
    for (int b = 0; b < fx.B; b++)
        kl_want += kl_b[b] / (float)fx.B;
    expect_close("reconstruction MSE vs diffusers", &msef, recon, 1, 1e-6, 0);
    expect_close("batch-mean KL vs diffusers", &klf, &kl_want, 1, 2e-5, 0);
    free(recon), free(kl_b);
    const ParamLayout *l = vae_layout(fx.vae);
    double global_scale = 0, g_rel = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < l->count; i++) {
            const LayoutEntry *e = &l->entries[i];
            char key[300];
            snprintf(key, sizeof key, "grad.%s", e->name);
            float *want = read_tensor(&fx.io, key, NULL);
            double scale = 0;
            for (size_t k = 0; k < e->numel; k++)
                scale = fmax(scale, fabs(want[k]));
            if (pass == 0) {
                global_scale = fmax(global_scale, scale);
            } else {
                NumDiff dg = expect_close(key, g + e->offset, want, e->numel,
                                          1e-4 * scale + 1e-6 * global_scale, 1e-3);
                if (scale > 0 && !strstr(e->name, "to_k.bias"))
                    g_rel = fmax(g_rel, dg.max_abs / scale);
            }
            free(want);
        }
    if (verbose())
        fprintf(stderr, "vae3_32: loss abs %.3g; grads max tensor-relative %.3g\n", dl.max_abs,
                g_rel);

    float *m = calloc(P, sizeof *m), *v = calloc(P, sizeof *v);
    AdamWConfig opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f};
    for (int step = 1; step <= 3; step++) {
        if (step > 1) {
            memset(g, 0, P * sizeof *g);
            loss_backward(&fx, run, g);
        }
        adamw_step(vae_params(fx.vae), m, v, g, P, &opt, step);
    }
    /* After one step the reference gradients are stale; re-read them for the split below. */
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        char key[300];
        snprintf(key, sizeof key, "grad.%s", e->name);
        float *g_ref = read_tensor(&fx.io, key, NULL);
        snprintf(key, sizeof key, "adamw3.%s", e->name);
        float *want = read_tensor(&fx.io, key, NULL);
        const float *got = vae_params(fx.vae) + e->offset;
        double scale = 0;
        for (size_t k = 0; k < e->numel; k++)
            scale = fmax(scale, fabs(g_ref[k]));
        /* as test_unet.c: a weight whose gradient is below 1e-2 of its tensor's largest may move
         * by anything within the three steps' reach (3 lr); every other weight 1e-5 absolute,
         * 1e-4 relative */
        float *tg = malloc(e->numel * sizeof(float)), *tw = malloc(e->numel * sizeof(float));
        size_t nt = 0;
        for (size_t k = 0; k < e->numel; k++) {
            if (fabs(g_ref[k]) < 1e-2 * scale || fabs(g_ref[k]) < 1e-6 * global_scale) {
                cr_expect(fabs(got[k] - want[k]) <= 3.03 * opt.lr, "%s[%zu]: got %g want %g", key,
                          k, got[k], want[k]);
            } else {
                tg[nt] = got[k];
                tw[nt++] = want[k];
            }
        }
        expect_close(key, tg, tw, nt, 1e-5, 1e-4);
        free(tg), free(tw), free(want), free(g_ref);
    }
    free(g), free(m), free(v);
    vae_run_free(run);
    fixture_free(&fx);
}

/* ---- the clamp and the loss's gradients by finite differences ---- */

/* A logvar channel pushed beyond the clamp (quant_conv's bias for it +40: every raw entry > 20)
 * passes no gradient: its quant_conv weights and bias get exactly 0, as torch.clamp's backward
 * gives. The other gradients agree with central differences of the loss (in float32, h = 1e-2 on
 * O(0.1) parameters: 1e-2 relative covers the differences' truncation and rounding), with beta
 * large enough (0.05) that the KL and sampling terms matter. */
Test(vae_loss, clamp_and_finite_differences) {
    Fixture fx = {0};
    fixture_load(&fx, "vae3_32");
    JtError err;
    VaeRun *run;
    cr_assert(vae_run_create(&run, fx.vae, fx.B, fx.H, fx.W, VAE_RUN_TRAIN, &err) == JT_OK, "%s",
              err.msg);
    const ParamLayout *l = vae_layout(fx.vae);
    float *P = vae_params(fx.vae);
    const int zc = fx.zc;
    const size_t qb = l->entries[layout_find(l, "quant_conv.bias")].offset;
    const size_t qw = l->entries[layout_find(l, "quant_conv.weight")].offset;
    P[qb + zc] = 40.0f; /* logvar channel 0: clamped to 20 everywhere */
    const float beta = 0.05f;
    const size_t NP = vae_num_params(fx.vae);
    float *g = calloc(NP, sizeof *g);
    double mse, kl;
    vae_loss(fx.vae, run, fx.B, fx.x, fx.noise, beta, &mse, &kl, NULL);
    vae_loss_backward(fx.vae, run, g);
    cr_expect(g[qb + zc] == 0.0f, "clamped logvar channel: bias gradient %g", g[qb + zc]);
    for (int k = 0; k < 2 * zc; k++)
        cr_expect(g[qw + (size_t)zc * 2 * zc + k] == 0.0f, "clamped channel: weight %d grad %g", k,
                  g[qw + (size_t)zc * 2 * zc + k]);
    cr_expect(g[qb + zc + 1] != 0.0f, "an unclamped logvar channel has a gradient");

    const char *names[] = {"quant_conv.bias",
                           "quant_conv.bias",
                           "quant_conv.bias",
                           "post_quant_conv.bias",
                           "decoder.conv_out.bias",
                           "encoder.conv_in.bias",
                           "encoder.mid_block.attentions.0.to_v.bias"};
    const int idx[] = {0, zc + 1, zc + 2, 1, 0, 3, 5};
    for (size_t t = 0; t < sizeof idx / sizeof idx[0]; t++) {
        const size_t o = l->entries[layout_find(l, names[t])].offset + (size_t)idx[t];
        const float keep = P[o], h = 1e-2f;
        P[o] = keep + h;
        double lp = vae_loss(fx.vae, run, fx.B, fx.x, fx.noise, beta, NULL, NULL, NULL);
        P[o] = keep - h;
        double lm = vae_loss(fx.vae, run, fx.B, fx.x, fx.noise, beta, NULL, NULL, NULL);
        P[o] = keep;
        const float fd = (float)((lp - lm) / (2.0 * h));
        char what[160];
        snprintf(what, sizeof what, "d loss / d %s[%d] vs central differences", names[t], idx[t]);
        expect_close(what, &g[o], &fd, 1, 1e-5, 1e-2);
    }
    free(g);
    vae_run_free(run);
    fixture_free(&fx);
}

/* The posterior sample is mean + exp(0.5 logvar) * noise, entry by entry. */
Test(vae_loss, posterior_sample_formula) {
    const float mean[3] = {0.5f, -1.0f, 2.0f}, lv[3] = {0.0f, -30.0f, 20.0f};
    const float noise[3] = {1.0f, 2.0f, -0.5f};
    float z[3];
    vae_posterior_sample(z, mean, lv, noise, 3);
    for (int k = 0; k < 3; k++)
        cr_expect(z[k] == mean[k] + expf(0.5f * lv[k]) * noise[k], "entry %d: %g", k, z[k]);
}

/* ---- config ---- */

/* The shipped preset equals configs/vae-fm.json (the twin's, from diffusers), and every config
 * reads back as itself from its own config.json. */
Test(vae_config, preset_matches_shipped_file_and_round_trips) {
    VaeConfig p, f, back;
    JtError err;
    cr_assert(vae_config_preset("vae-fm", &p));
    cr_assert(vae_config_load(&f, JTRAK_SOURCE_DIR "/configs/vae-fm.json", &err) == JT_OK, "%s",
              err.msg);
    cr_expect(memcmp(&p, &f, sizeof p) == 0, "preset vae-fm differs from configs/vae-fm.json");
    Vae *v;
    cr_assert(vae_create(&v, &p, &err) == JT_OK, "%s", err.msg);
    cr_expect_eq(vae_num_params(v), 953413); /* diffusers' count (ref/README.md) */
    vae_free(v);
    VaeConfig odd = p;
    odd.use_quant_conv = 0;
    odd.mid_block_add_attention = 0;
    odd.scaling_factor = 1.1196444f;
    odd.sample_size = 0, odd.sample_h = 16, odd.sample_w = 24;
    const VaeConfig *cases[] = {&p, &odd};
    for (int i = 0; i < 2; i++) {
        char *text = vae_config_to_json(cases[i]);
        cr_assert(vae_config_parse(&back, text, "round-trip", &err) == JT_OK, "%s\n%s", err.msg,
                  text);
        cr_expect(memcmp(&back, cases[i], sizeof back) == 0, "case %d does not round-trip:\n%s", i,
                  text);
        free(text);
    }
}

/* One field of the vae-fm config replaced (or added) by `value`: refused with one line naming
 * the field and each of `want`. */
static void expect_refused(const char *field, const char *value, const char *const *want) {
    VaeConfig p;
    vae_config_preset("vae-fm", &p);
    char *text = vae_config_to_json(&p);
    void *root;
    JtError err;
    cr_assert(cf_json_parse(text, "x", &root, &err) == JT_OK);
    cJSON_DeleteItemFromObject(root, field);
    cJSON_AddItemToObject(root, field, cJSON_Parse(value));
    char *mod = cJSON_Print(root);
    cf_json_free(root);
    VaeConfig c;
    int rc = vae_config_parse(&c, mod, "vae/config.json", &err);
    cr_expect(rc == JT_ERR, "%s = %s accepted", field, value);
    if (rc == JT_ERR) {
        cr_expect(strchr(err.msg, '\n') == NULL, "message on several lines: %s", err.msg);
        cr_expect(strstr(err.msg, "vae/config.json") != NULL, "no file in: %s", err.msg);
        char quoted[96];
        snprintf(quoted, sizeof quoted, "'%s'", field);
        cr_expect(strstr(err.msg, quoted) != NULL, "no field %s in: %s", quoted, err.msg);
        for (int i = 0; want && want[i]; i++)
            cr_expect(strstr(err.msg, want[i]) != NULL, "'%s' not in: %s", want[i], err.msg);
    }
    free(mod), free(text);
}

Test(vae_config, refusals) {
    expect_refused("down_block_types",
                   "[\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\", \"DownEncoderBlock2D\"]",
                   (const char *const[]){"AttnDownEncoderBlock2D", "not supported", NULL});
    expect_refused("up_block_types",
                   "[\"AttnUpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]",
                   (const char *const[]){"AttnUpDecoderBlock2D", "not supported", NULL});
    expect_refused("shift_factor", "0.1159", (const char *const[]){"not supported", NULL});
    expect_refused("latents_mean", "[0.1, 0.2, 0.3, 0.4]",
                   (const char *const[]){"not supported", NULL});
    expect_refused("latents_std", "[1, 1, 1, 1]", (const char *const[]){"not supported", NULL});
    expect_refused("act_fn", "\"gelu\"", (const char *const[]){"\"gelu\"", "silu", NULL});
    expect_refused("use_tiling", "true", (const char *const[]){"unknown field", NULL});
    expect_refused("norm_num_groups", "6", (const char *const[]){"do not divide", NULL});
    expect_refused("up_block_types", "[\"UpDecoderBlock2D\"]",
                   (const char *const[]){"1 entries", "block_out_channels has 3", NULL});
    expect_refused("scaling_factor", "0", (const char *const[]){"out of range", NULL});
    expect_refused("latent_channels", "\"4\"", (const char *const[]){"expected an integer", NULL});
}

/* The size check names the factor and the nearest sizes that work. */
Test(vae_config, size_not_divisible) {
    VaeConfig p;
    vae_config_preset("vae-fm", &p);
    JtError err;
    cr_expect(vae_config_check_size(&p, 32, 28, "the data", &err) == JT_OK);
    cr_assert(vae_config_check_size(&p, 30, 30, "the data", &err) == JT_ERR);
    cr_expect(strstr(err.msg, "factor 4") && strstr(err.msg, "--size 28 or --size 32"), "%s",
              err.msg);
}

/* ---- the commands ---- */

TestSuite(vae_cli, .init = test_tmp_setup, .fini = test_tmp_teardown);

static char g_err[8192];
static char g_cfg[400];

/* A 2-level VAE (8, 16) at 16x16 (factor 2: 16x16 -> 2x8x8), small enough to train in seconds. */
static void write_tiny_config(void) {
    snprintf(g_cfg, sizeof g_cfg, "%s/tiny.json", test_tmp);
    FILE *f = fopen(g_cfg, "w");
    cr_assert_not_null(f);
    fputs("{\"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [8, 16],\n"
          " \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],\n"
          " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"],\n"
          " \"in_channels\": 1, \"out_channels\": 1, \"latent_channels\": 2,\n"
          " \"norm_num_groups\": 4, \"sample_size\": 16, \"layers_per_block\": 1}\n",
          f);
    fclose(f);
}

#define TINY_DATA "--data fashion-mnist --limit 32 --fit resize"
#define TINY_RECIPE "--steps 4 --batch 8 --beta 1e-3 --save-every 0 --quiet"

static void train_tiny(const char *out, const char *extra) {
    char args[2048];
    snprintf(args, sizeof args, "train-vae --config %s " TINY_DATA " " TINY_RECIPE " --out %s %s",
             g_cfg, out, extra ? extra : "");
    int rc = cli_run(args, g_err, sizeof g_err);
    cr_assert_eq(rc, 0, "jtrak %s: exit %d: %s", args, rc, g_err);
}

static unsigned char *slurp(const char *dir, const char *name, size_t *n) {
    char *p = path_join(dir, name);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f, "%s missing", p);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*n + 1);
    cr_assert_eq(fread(buf, 1, *n, f), *n);
    fclose(f);
    free(p);
    return buf;
}

static void expect_same_file(const char *a, const char *b, const char *name) {
    size_t na, nb;
    unsigned char *x = slurp(a, name, &na), *y = slurp(b, name, &nb);
    cr_expect(na == nb && memcmp(x, y, na) == 0, "%s differs between %s and %s", name, a, b);
    free(x), free(y);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A run stopped after 2 of 4 steps and resumed by the same command ends with the same bytes as
 * one that was never stopped: weights, config (with its measured scaling factor), record, state. */
Test(vae_cli, train_vae_resumes_bit_for_bit) {
    write_tiny_config();
    char a[300], b[300], probe[400];
    snprintf(a, sizeof a, "%s/a", test_tmp);
    snprintf(b, sizeof b, "%s/b", test_tmp);
    train_tiny(a, NULL);
    train_tiny(b, "--stop-after 2");
    snprintf(probe, sizeof probe, "%s/config.json", b);
    cr_expect(!exists(probe), "a stopped run wrote its model folder already");
    snprintf(probe, sizeof probe, "%s/train_state.safetensors", b);
    cr_expect(exists(probe), "a stopped run left no state");
    train_tiny(b, NULL);
    expect_same_file(a, b, "diffusion_pytorch_model.safetensors");
    expect_same_file(a, b, "config.json");
    expect_same_file(a, b, "training.json");
    expect_same_file(a, b, "train_state.safetensors");
    /* the folder loads as an AutoencoderKL whose scaling factor is the measured one */
    Model *m;
    JtError err;
    cr_assert(model_load(a, &m, &err) == JT_OK, "%s", err.msg);
    cr_assert_not_null(model_vae(m));
    const float sf = vae_config(model_vae(m))->scaling_factor;
    cr_expect(sf != 0.18215f && sf > 0, "scaling_factor %g was not measured", sf);
    model_free(m);
    /* a changed recipe does not resume another run's state */
    snprintf(probe, sizeof probe,
             "train-vae --config %s " TINY_DATA " " TINY_RECIPE " --lr 1e-3 --out %s", g_cfg, a);
    cli_expect_failure(g_err, sizeof g_err, 1, "train-vae",
                       (const char *const[]){"another recipe", NULL}, "%s", probe);
}

/* encode writes (N, 2z, h, w) = the in-process posterior of the same rows, and a manifest with
 * the VAE's model fingerprint and the dataset's spec and selection fingerprint. */
Test(vae_cli, encode_npy_and_manifest) {
    write_tiny_config();
    char vdir[300], out[400], mpath[420];
    snprintf(vdir, sizeof vdir, "%s/vae", test_tmp);
    train_tiny(vdir, NULL);
    snprintf(out, sizeof out, "%s/lat.npy", test_tmp);
    char args[1200];
    snprintf(args, sizeof args,
             "encode --vae %s --data fashion-mnist --limit 10 --fit resize --batch 4 --quiet "
             "--out %s",
             vdir, out);
    int rc = cli_run(args, g_err, sizeof g_err);
    cr_assert_eq(rc, 0, "jtrak %s: exit %d: %s", args, rc, g_err);

    NpyHeader h;
    float *lat;
    JtError err;
    cr_assert(npy_read_as(out, NPY_F32, &h, (void **)&lat, &err) == JT_OK, "%s", err.msg);
    cr_assert(h.ndim == 4 && h.shape[0] == 10 && h.shape[1] == 4 && h.shape[2] == 8 &&
                  h.shape[3] == 8,
              "shape (%zu, %zu, %zu, %zu)", h.shape[0], h.shape[1], h.shape[2], h.shape[3]);

    Model *m;
    cr_assert(model_load(vdir, &m, &err) == JT_OK, "%s", err.msg);
    DatasetSpec spec;
    data_spec_init(&spec);
    cr_assert(data_spec_set(&spec, "limit", "10", &err) == JT_OK);
    cr_assert(data_spec_set(&spec, "fit", "resize", &err) == JT_OK);
    spec.height = spec.width = 16;
    spec.channels = 1;
    Dataset ds;
    cr_assert(data_load(&spec, &ds, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&spec);
    VaeRun *run;
    cr_assert(vae_run_create(&run, model_vae(m), 10, 16, 16, VAE_RUN_FORWARD_ONLY, &err) == JT_OK);
    float *x = data_images_f32(&ds), mean[10 * 2 * 64], lv[10 * 2 * 64];
    vae_encode(model_vae(m), run, 10, x, mean, lv);
    for (int b = 0; b < 10; b++) { /* the encoder's ops are per example: any batch, same bits */
        cr_expect(memcmp(lat + b * 256, mean + b * 128, 128 * sizeof(float)) == 0, "row %d mean",
                  b);
        cr_expect(memcmp(lat + b * 256 + 128, lv + b * 128, 128 * sizeof(float)) == 0,
                  "row %d logvar", b);
    }

    snprintf(mpath, sizeof mpath, "%s.json", out);
    char *text;
    cr_assert(cf_read_file(mpath, &text, &err) == JT_OK, "%s", err.msg);
    cJSON *o = cJSON_Parse(text);
    cr_assert_not_null(o, "%s is not JSON", mpath);
    char fp[17], dfp[17];
    model_fingerprint_hex(model_fingerprint(m), fp);
    data_fingerprint_hex(&ds, dfp);
    const cJSON *d = cJSON_GetObjectItem(o, "dataset");
    cr_expect_str_eq(cJSON_GetObjectItem(o, "kind")->valuestring, "jtrak-latents");
    cr_expect_str_eq(cJSON_GetObjectItem(o, "vae_fingerprint")->valuestring, fp);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "layout")->valuestring, "mean|logvar");
    cr_expect_eq(cJSON_GetObjectItem(o, "rows")->valueint, 10);
    cr_expect_eq(cJSON_GetObjectItem(o, "latent_channels")->valueint, 2);
    cr_expect_eq(cJSON_GetObjectItem(o, "latent_height")->valueint, 8);
    cr_expect_eq(cJSON_GetObjectItem(o, "latent_width")->valueint, 8);
    cr_expect_eq((float)cJSON_GetObjectItem(o, "scaling_factor")->valuedouble,
                 vae_config(model_vae(m))->scaling_factor);
    cr_expect_str_eq(cJSON_GetObjectItem(d, "fingerprint")->valuestring, dfp);
    cr_expect_str_eq(cJSON_GetObjectItem(d, "spec")->valuestring, ds.description);
    cJSON_Delete(o);
    free(text), free(x);
    vae_run_free(run);
    data_free(&ds);
    model_free(m);

    /* A killed run resumes: a partial file with rows 0-3 done (marked 7.0, so that recomputing
     * them would show) and its record; the same command continues at row 4 and ends with the
     * marked rows kept and every other row as the full run wrote it. */
    {
        char part[460], rec[480], out2[420];
        snprintf(out2, sizeof out2, "%s/lat2.npy", test_tmp);
        snprintf(part, sizeof part, "%s.partial", out2);
        snprintf(rec, sizeof rec, "%s.partial.json", out2);
        float *marked = malloc(10 * 256 * sizeof(float));
        memcpy(marked, lat, 10 * 256 * sizeof(float));
        for (int k = 0; k < 4 * 256; k++)
            marked[k] = 7.0f;
        for (int k = 4 * 256; k < 10 * 256; k++)
            marked[k] = 0.0f;
        const size_t shape[4] = {10, 4, 8, 8};
        cr_assert(npy_write(part, NPY_F32, 4, shape, marked, &err) == JT_OK, "%s", err.msg);
        char *mt;
        cr_assert(cf_read_file(mpath, &mt, &err) == JT_OK, "%s", err.msg);
        cJSON *r = cJSON_Parse(mt);
        cJSON_AddNumberToObject(r, "rows_done", 4);
        char *rt = cJSON_Print(r);
        FILE *f = fopen(rec, "w");
        fputs(rt, f);
        fclose(f);
        cJSON_Delete(r);
        free(rt), free(mt);
        char args2[1200];
        snprintf(args2, sizeof args2,
                 "encode --vae %s --data fashion-mnist --limit 10 --fit resize --batch 4 --out %s",
                 vdir, out2);
        cr_assert_eq(cli_run(args2, g_err, sizeof g_err), 0, "%s", g_err);
        cr_expect(strstr(g_err, "resuming") && strstr(g_err, "row 4/10"), "%s", g_err);
        float *lat2;
        cr_assert(npy_read_as(out2, NPY_F32, &h, (void **)&lat2, &err) == JT_OK, "%s", err.msg);
        cr_expect(lat2[0] == 7.0f && lat2[4 * 256 - 1] == 7.0f, "rows 0-3 were recomputed");
        cr_expect(memcmp(lat2 + 4 * 256, lat + 4 * 256, 6 * 256 * sizeof(float)) == 0,
                  "rows 4-9 differ from the uninterrupted run");
        cr_expect(!exists(part) && !exists(rec), "the partial files stayed");
        free(lat2), free(marked);
    }

    free(lat);
    /* info on the folder */
    char outbuf[4096];
    snprintf(args, sizeof args, "info %s", vdir);
    cr_assert_eq(cli_run_out(args, outbuf, sizeof outbuf, g_err, sizeof g_err), 0, "%s", g_err);
    cr_expect(strstr(outbuf, "class: AutoencoderKL") &&
                  strstr(outbuf, "latent: 2x8x8 (factor 2)") &&
                  strstr(outbuf, "scaling_factor: ") && strstr(outbuf, "parameters: "),
              "%s", outbuf);
}

/* Bad inputs: one line each, exit 1, and no output file or folder left behind. */
Test(vae_cli, bad_inputs) {
    write_tiny_config();
    char vdir[300], out[400], empty[300], unet[400];
    snprintf(vdir, sizeof vdir, "%s/vae", test_tmp);
    train_tiny(vdir, NULL);
    snprintf(out, sizeof out, "%s/lat.npy", test_tmp);
    snprintf(empty, sizeof empty, "%s/empty", test_tmp);
    mkdir(empty, 0755);
    snprintf(unet, sizeof unet, "%s/unet/fm3_12x12", JTRAK_FIXTURES);
    cli_expect_failure(g_err, sizeof g_err, 1, "encode",
                       (const char *const[]){"not an AutoencoderKL", "UNet2DModel", NULL},
                       "encode --vae %s --data fashion-mnist --limit 4 --out %s", unet, out);
    cr_expect(!exists(out), "a refused encode left %s", out);
    cli_expect_failure(g_err, sizeof g_err, 1, "encode", (const char *const[]){"config.json", NULL},
                       "encode --vae %s --data fashion-mnist --limit 4 --out %s", empty, out);
    cli_expect_failure(g_err, sizeof g_err, 1, "encode",
                       (const char *const[]){"15x15", "factor 2", "--size 14 or --size 16", NULL},
                       "encode --vae %s --data fashion-mnist --limit 4 --fit resize --size 15 "
                       "--out %s",
                       vdir, out);
    cr_expect(!exists(out), "a refused encode left %s", out);
    char mpath[420];
    snprintf(mpath, sizeof mpath, "%s.json", out);
    cr_expect(!exists(mpath), "a refused encode left %s", mpath);

    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad", test_tmp);
    char copy[300];
    snprintf(copy, sizeof copy, "%s/vae-copy", test_tmp);
    mkdir(copy, 0755);
    static const char *const files[] = {"config.json", "diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        size_t n;
        unsigned char *buf = slurp(vdir, files[i], &n);
        char *p = path_join(copy, files[i]);
        FILE *f = fopen(p, "wb");
        cr_assert(f && fwrite(buf, 1, n, f) == n);
        fclose(f);
        free(p), free(buf);
    }
    cli_expect_failure(
        g_err, sizeof g_err, 1, "train-vae", (const char *const[]){"15x15", "factor 2", NULL},
        "train-vae --config %s " TINY_DATA " --size 15 --quiet --out %s", g_cfg, bad);
    cr_expect(!exists(bad), "a refused train-vae left %s", bad);
    cli_expect_failure(g_err, sizeof g_err, 1, "train-vae",
                       (const char *const[]){"UNet2DModel", "needs an AutoencoderKL", NULL},
                       "train-vae --config %s " TINY_DATA " --quiet --out %s", unet, bad);
    cr_expect(!exists(bad), "a refused train-vae left %s", bad);
    /* a VAE folder given to a command that runs a U-Net is refused, not dereferenced */
    char samples[300];
    snprintf(samples, sizeof samples, "%s/samples", test_tmp);
    cli_expect_failure(g_err, sizeof g_err, 1, "sample",
                       (const char *const[]){"class AutoencoderKL", "needs a U-Net", NULL},
                       "sample --model %s --out %s --n 1 --steps 2", vdir, samples);
    cr_expect(!exists(samples), "a refused sample left %s", samples);
    /* a model folder as --out is another artifact: not overwritten */
    cli_expect_failure(
        g_err, sizeof g_err, 1, "train-vae", (const char *const[]){"a model folder", NULL},
        "train-vae --config %s " TINY_DATA " " TINY_RECIPE " --out %s/vae-copy", g_cfg, test_tmp);
}
