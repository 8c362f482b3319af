/* test_sd_pipeline.c: a Stable Diffusion pipeline folder written by diffusers 0.42.1 itself
 * (tests/fixtures/sd_pipeline/pipe, ref/make_pipeline_fixtures.py: tiny random CLIP text encoder,
 * UNet2DConditionModel, AutoencoderKL, DDIMScheduler with SD's settings, the small CLIP tokenizer)
 * run through jtrak's separate pieces, composed as StableDiffusionPipeline.__call__ composes them
 * (ldm.md 5): tokenize the prompts and "" (ids equal), encode (prompt_embeds,
 * negative_prompt_embeds), 3 guided DDIM steps (w = 3) from the fixture's latents (every step's
 * latents), decode latents / scaling_factor (before and after (x / 2 + 0.5).clamp(0, 1), and the
 * 8-bit image numpy_to_pil makes). Also: every component folder loads through model_load as the
 * class its config names; the scheduler refusals a pipeline folder can meet; an id the text
 * encoder cannot embed; `jtrak tokenize` on the pipeline's tokenizer. */
#include "core/common.h"
#include "core/linalg.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/fixture_npy.h"
#include "helpers/numcheck.h"
#include "helpers/tmpdir.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "text/clip_text.h"
#include "text/tokenizer.h"
#include "vae/vae.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX JTRAK_FIXTURES "/sd_pipeline"
#define PIPE FIX "/pipe"

/* The fixture's sizes: 2 prompts, 77 tokens of width 32, 4x8x8 latents, 3x16x16 images. */
enum { NB = 2, NL = 77, ND = 32, S = 3, LC = 4, LH = 8, LW = 8, IC = 3, IH = 16, IW = 16 };
enum { LAT = LC * LH * LW, IMGN = IC * IH * IW };

static const char *const PROMPTS[NB] = {
    "a photo of a cat",
    "a highly detailed photograph of an old wooden boat drifting on a calm misty lake at dawn with "
    "mountains behind it and birds flying overhead a highly detailed photograph of an old wooden "
    "boat drifting on a calm misty lake at dawn with mountains behind it and birds flying overhead "
    "a highly detailed photograph of an old wooden boat drifting on a calm misty lake at dawn with "
    "mountains behind it and birds flying overhead a highly detailed photograph of an old wooden "
    "boat drifting on a calm misty lake at dawn with mountains behind it and birds flying "
    "overhead"};

static void suite_init(void) {
    la_blas_single_threaded();
    test_tmp_setup();
}
TestSuite(sd_pipeline, .init = suite_init, .fini = test_tmp_teardown);

/* ---- the fixture ---- */

typedef struct {
    int ids[NB * NL], uncond_ids[NB * NL];
    float prompt_embeds[NB * NL * ND], negative_embeds[NB * NL * ND];
    float latents_in[NB * LAT];
    int timesteps[S];
    float step_latents[S * NB * LAT];
    float decoded[NB * IMGN]; /* (B, C, H, W), before the clamp */
    float image[NB * IMGN];   /* (B, H, W, C), the pipeline's "np" output */
    uint8_t image_u8[NB * IMGN];
} Expect;

static int find(const StFile *f, const char *name, StDtype dt, uint64_t numel) {
    int i = st_find(f, name);
    cr_assert(i >= 0, "expect.safetensors: no tensor %s", name);
    cr_assert(f->tensors[i].dtype == dt && f->tensors[i].numel == numel,
              "expect.safetensors: %s has dtype %s and %llu elements", name,
              st_dtype_name(f->tensors[i].dtype), (unsigned long long)f->tensors[i].numel);
    return i;
}

static void read_i64(StFile *f, const char *name, int *dst, size_t n) {
    int64_t *tmp = xmalloc(n * sizeof *tmp);
    JtError err;
    cr_assert_eq(st_read_raw(f, find(f, name, ST_I64, n), tmp, &err), JT_OK, "%s", err.msg);
    for (size_t k = 0; k < n; k++)
        dst[k] = (int)tmp[k];
    free(tmp);
}

static void read_f32(StFile *f, const char *name, float *dst, size_t n) {
    JtError err;
    cr_assert_eq(st_read_raw(f, find(f, name, ST_F32, n), dst, &err), JT_OK, "%s", err.msg);
}

static Expect *read_expect(void) {
    Expect *e = xcalloc(1, sizeof *e);
    StFile f;
    JtError err;
    cr_assert_eq(st_open(&f, FIX "/expect.safetensors", &err), JT_OK, "%s", err.msg);
    read_i64(&f, "ids", e->ids, NB * NL);
    read_i64(&f, "uncond_ids", e->uncond_ids, NB * NL);
    read_i64(&f, "timesteps", e->timesteps, S);
    read_f32(&f, "prompt_embeds", e->prompt_embeds, NB * NL * ND);
    read_f32(&f, "negative_prompt_embeds", e->negative_embeds, NB * NL * ND);
    read_f32(&f, "latents_in", e->latents_in, NB * LAT);
    read_f32(&f, "step_latents", e->step_latents, S * NB * LAT);
    read_f32(&f, "decoded", e->decoded, NB * IMGN);
    read_f32(&f, "image", e->image, NB * IMGN);
    cr_assert_eq(st_read_raw(&f, find(&f, "image_u8", ST_U8, NB * IMGN), e->image_u8, &err), JT_OK,
                 "%s", err.msg);
    st_close(&f);
    return e;
}

static Model *load(const char *dir, const char *cls) {
    Model *m;
    JtError err;
    cr_assert_eq(model_load(dir, &m, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(model_kind(m)->class_name, cls, "%s", dir);
    return m;
}

/* ---- tokenizer and text encoder ---- */

static void tokenize_all(const char *dir, const char *const *texts, int *ids, int *n_real,
                         int *truncated) {
    ClipTokenizer *tok;
    JtError err;
    cr_assert_eq(clip_tokenizer_load(&tok, dir, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_max_length(tok), NL);
    for (int b = 0; b < NB; b++)
        cr_assert_eq(clip_tokenize(tok, texts[b], 0, ids + b * NL, n_real + b, truncated + b, &err),
                     JT_OK, "%s", err.msg);
    clip_tokenizer_free(tok);
}

Test(sd_pipeline, tokenizer_ids_equal_transformers) {
    Expect *e = read_expect();
    int ids[NB * NL], n_real[NB], trunc[NB];
    /* the folder diffusers wrote (tokenizer.json: transformers 5's save) */
    tokenize_all(PIPE "/tokenizer", PROMPTS, ids, n_real, trunc);
    cr_assert(memcmp(ids, e->ids, sizeof ids) == 0, "prompt ids differ from CLIPTokenizer's");
    cr_assert(n_real[0] == 7 && !trunc[0] && n_real[1] == NL && trunc[1],
              "short prompt 7 real tokens, long one truncated (got %d %d, %d %d)", n_real[0],
              trunc[0], n_real[1], trunc[1]);
    const char *const empty[NB] = {"", ""};
    tokenize_all(PIPE "/tokenizer", empty, ids, n_real, trunc);
    cr_assert(memcmp(ids, e->uncond_ids, sizeof ids) == 0, "\"\" ids differ from CLIPTokenizer's");
    cr_assert(n_real[0] == 2, "\"\" is [bos, eos] then padding");
    /* the vocab.json + merges.txt folder it was loaded from gives the same ids */
    tokenize_all(JTRAK_FIXTURES "/tokenizer/clip_small", PROMPTS, ids, n_real, trunc);
    cr_assert(memcmp(ids, e->ids, sizeof ids) == 0);
    free(e);
}

/* Tolerance: as test_clip_text (the same CLIP code, measured there 1.9e-6 at outputs of |0.03|):
 * float32 with BLAS's summation order, the final layer norm scaling rounding by 1/std. */
#define EMB_ATOL 1e-5
#define EMB_RTOL 1e-5

static void encode(const ClipText *te, const int *ids, float *out) {
    ClipTextRun *r;
    JtError err;
    cr_assert_eq(clip_text_run_create(&r, te, NB, NL, 0, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_text_forward(te, r, NB, ids, out, NULL, &err), JT_OK, "%s", err.msg);
    clip_text_run_free(r);
}

Test(sd_pipeline, prompt_embeds_match_encode_prompt) {
    Expect *e = read_expect();
    Model *m = load(PIPE "/text_encoder", "CLIPTextModel");
    float *got = xmalloc(sizeof e->prompt_embeds);
    encode(model_text_encoder_const(m), e->ids, got);
    NumDiff a =
        expect_close("prompt_embeds", got, e->prompt_embeds, NB * NL * ND, EMB_ATOL, EMB_RTOL);
    encode(model_text_encoder_const(m), e->uncond_ids, got);
    NumDiff b = expect_close("negative_prompt_embeds", got, e->negative_embeds, NB * NL * ND,
                             EMB_ATOL, EMB_RTOL);
    fprintf(stderr, "sd_pipeline text encoder: max abs prompt %.2g, negative %.2g\n", a.max_abs,
            b.max_abs);
    free(got);
    model_free(m);
    free(e);
}

Test(sd_pipeline, id_outside_the_text_encoders_vocabulary_refused) {
    Expect *e = read_expect();
    Model *m = load(PIPE "/text_encoder", "CLIPTextModel");
    const ClipText *te = model_text_encoder_const(m);
    cr_assert_eq(clip_text_config(te)->vocab_size, 869);
    int ids[NB * NL];
    memcpy(ids, e->ids, sizeof ids);
    ids[NL + 3] = 869; /* what the real CLIP vocabulary (49408) would give this 869-token model */
    ClipTextRun *r;
    JtError err;
    float *out = xmalloc(sizeof e->prompt_embeds);
    cr_assert_eq(clip_text_run_create(&r, te, NB, NL, 0, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_text_forward(te, r, NB, ids, out, NULL, &err), JT_ERR);
    cr_assert(strstr(err.msg, "869") && strstr(err.msg, "prompt 1"), "%s", err.msg);
    clip_text_run_free(r);
    free(out);
    model_free(m);
    free(e);
}

/* ---- scheduler ---- */

Test(sd_pipeline, scheduler_config_is_sds_ddim) {
    SchedConfig sc;
    JtError err;
    cr_assert_eq(sched_config_load(&sc, PIPE "/scheduler/scheduler_config.json", &err), JT_OK, "%s",
                 err.msg);
    cr_assert(sc.beta_schedule == SCHED_BETA_SCALED_LINEAR && sc.beta_start == 0.00085 &&
              sc.beta_end == 0.012 && sc.num_train_timesteps == 1000);
    cr_assert(sc.steps_offset == 1 && !sc.clip_sample && !sc.set_alpha_to_one);
    cr_assert(sc.timestep_spacing == SCHED_SPACING_LEADING);
    NoiseSchedule s;
    cr_assert_eq(sched_init(&s, &sc, &err), JT_OK, "%s", err.msg);
    Expect *e = read_expect();
    int ts[S];
    cr_assert_eq(sched_set_timesteps(&s, S, ts, &err), JT_OK, "%s", err.msg);
    for (int k = 0; k < S; k++)
        cr_assert_eq(ts[k], e->timesteps[k], "timestep %d: %d, diffusers %d", k, ts[k],
                     e->timesteps[k]);
    /* leading spacing with steps_offset 1: the last DDIM step goes to 1 - 333 < 0, i.e. to
     * final_alpha_cumprod = alphas_cumprod[0] (set_alpha_to_one false) */
    cr_assert(ddim_prev_timestep(&s, ts[S - 1], S) < 0);
    cr_assert(s.final_alpha_cumprod == s.alphas_cumprod[0]);
    sched_free(&s);
    free(e);
}

/* A copy of the pipeline's scheduler_config.json with one field replaced, loaded. */
static int load_edited(const char *field, const char *value, JtError *err) {
    FILE *in = fopen(PIPE "/scheduler/scheduler_config.json", "r");
    cr_assert(in);
    char text[4096], out[4200];
    size_t n = fread(text, 1, sizeof text - 1, in);
    fclose(in);
    text[n] = 0;
    char key[64];
    snprintf(key, sizeof key, "\"%s\": ", field);
    char *at = strstr(text, key);
    cr_assert(at, "no field %s", field);
    char *end = strpbrk(at + strlen(key), ",\n");
    snprintf(out, sizeof out, "%.*s%s%s%s", (int)(at - text), text, key, value, end);
    char path[400];
    snprintf(path, sizeof path, "%s/scheduler_config.json", test_tmp);
    FILE *o = fopen(path, "w");
    cr_assert(o);
    fputs(out, o);
    fclose(o);
    SchedConfig sc;
    return sched_config_load(&sc, path, err);
}

/* What other SD folders carry and jtrak does not implement: each one line naming file and field. */
Test(sd_pipeline, scheduler_refusals_name_the_field) {
    static const char *const cases[][3] = {
        {"prediction_type", "\"v_prediction\"", "prediction_type"},
        {"thresholding", "true", "thresholding"},
        {"rescale_betas_zero_snr", "true", "rescale_betas_zero_snr"},
        {"trained_betas", "[0.1, 0.2]", "trained_betas"},
        {"timestep_spacing", "\"karras\"", "timestep_spacing"},
        {"beta_schedule", "\"sigmoid\"", "beta_schedule"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        JtError err;
        cr_assert_eq(load_edited(cases[k][0], cases[k][1], &err), JT_ERR, "%s", cases[k][0]);
        cr_assert(strstr(err.msg, "scheduler_config.json") && strstr(err.msg, cases[k][2]), "%s",
                  err.msg);
        cr_assert(strchr(err.msg, '\n') == NULL, "one line: %s", err.msg);
    }
    /* and the valid edit the pipeline's own fix-up would make is accepted */
    JtError err;
    cr_assert_eq(load_edited("clip_sample", "true", &err), JT_OK, "%s", err.msg);
}

/* ---- the whole run ---- */

/* Tolerance of the latents: float32 on both sides with other summation orders; the U-Net's eps
 * agrees with torch's to ~1e-6 (test_unet_cond); guidance multiplies an eps error by up to
 * |1 - w| + |w| = 5; a DDIM step multiplies the error of x_t by sqrt(abar_prev / abar_t) and of
 * eps by its direction coefficient; the latents grow to |9.9|. Measured max abs 7.2e-6 (2 threads,
 * loaded machine). 2e-4 abs + 2e-4 rel (~30x) leaves headroom for other CPUs and still fails on
 * every real difference; measured with diffusers on this pipeline, the latents move by: w 1
 * instead of 3: 1.1 after step 0; w 2.9: 0.056; negative prompt "a cat" instead of "": 0.24;
 * steps_offset 0: 0.080; set_alpha_to_one true: 0.031 (last step only). */
#define LAT_ATOL 2e-4
#define LAT_RTOL 2e-4
/* The decoder sees latents / 0.18215 (|z| up to ~54), its output is O(1): errors of the final
 * latents (above) times the decoder's gain plus its own float32 rounding. Measured max abs 1.2e-6
 * decoded, 6e-7 image (after / 2). 5e-4 abs + 1e-3 rel allows the latents' tolerance times a gain
 * of ~2. */
#define IMG_ATOL 5e-4
#define IMG_RTOL 1e-3

Test(sd_pipeline, guided_ddim_and_decode_match_the_pipeline) {
    Expect *e = read_expect();
    Model *te_m = load(PIPE "/text_encoder", "CLIPTextModel");
    Model *unet_m, *vae_m = load(PIPE "/vae", "AutoencoderKL");
    JtError err;
    cr_assert_eq(model_load_unet(PIPE "/unet", &unet_m, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(model_kind(unet_m)->class_name, "UNet2DConditionModel");
    const UNet *net = model_unet_const(unet_m);
    cr_assert_eq(unet_config(net)->cross_attention_dim,
                 clip_text_config(model_text_encoder_const(te_m))->hidden_size);

    /* contexts from jtrak's own tokenizer and text encoder, not the fixture's embeddings */
    int ids[NB * NL], uncond_ids[NB * NL], n_real[NB], trunc[NB];
    const char *const empty[NB] = {"", ""};
    tokenize_all(PIPE "/tokenizer", PROMPTS, ids, n_real, trunc);
    tokenize_all(PIPE "/tokenizer", empty, uncond_ids, n_real, trunc);
    float *ctx = xmalloc(sizeof e->prompt_embeds), *unc = xmalloc(sizeof e->negative_embeds);
    encode(model_text_encoder_const(te_m), ids, ctx);
    encode(model_text_encoder_const(te_m), uncond_ids, unc);
    /* StableDiffusionPipeline batches one negative row per prompt; both are "" here, so jtrak's
     * one shared unconditional row is exactly what diffusers fed */
    cr_assert(memcmp(unc, unc + NL * ND, NL * ND * sizeof(float)) == 0);

    NoiseSchedule sched;
    cr_assert_eq(sched_load(&sched, PIPE "/scheduler", &err), JT_OK, "%s", err.msg);
    /* init_noise_sigma is 1 for DDIM, scale_model_input the identity: x_T = the given latents */
    SampleOptions opt = {.sampler = SAMPLER_DDIM,
                         .steps = S,
                         .eta = 0.0f,
                         .n = NB,
                         .batch = NB,
                         .quiet = 1,
                         .guidance = 3.0f,
                         .context = ctx,
                         .uncond_context = unc,
                         .ctx_len = NL,
                         .ctx_dim = ND};
    Trajectory tr;
    cr_assert_eq(traj_sample(net, &sched, &opt, e->latents_in, &tr, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(tr.S, S);
    for (int k = 0; k < S; k++)
        cr_assert_eq(tr.timesteps[k], e->timesteps[k]);
    /* latents after step k: the input of step k + 1, the final sample after the last */
    float *after = xmalloc(S * NB * LAT * sizeof(float));
    for (int k = 0; k < S; k++)
        for (int b = 0; b < NB; b++)
            memcpy(after + (k * NB + b) * LAT,
                   k + 1 < S ? tr.x_t + ((size_t)b * S + k + 1) * LAT : tr.x_0 + b * LAT,
                   LAT * sizeof(float));
    double worst = 0;
    for (int k = 0; k < S; k++) {
        char what[64];
        snprintf(what, sizeof what, "latents after step %d (t=%d)", k, e->timesteps[k]);
        NumDiff d = expect_close(what, after + k * NB * LAT, e->step_latents + k * NB * LAT,
                                 NB * LAT, LAT_ATOL, LAT_RTOL);
        fprintf(stderr, "sd_pipeline %s: max abs %.2g (rel %.2g)\n", what, d.max_abs, d.max_rel);
        if (d.max_abs > worst) worst = d.max_abs;
    }

    /* decode(latents / scaling_factor), then the image processor's (x / 2 + 0.5).clamp(0, 1) */
    const Vae *vae = model_vae_const(vae_m);
    float sf = vae_config(vae)->scaling_factor;
    cr_assert_float_eq(sf, 0.18215f, 0.0f);
    float z[NB * LAT], dec[NB * IMGN], img[NB * IMGN];
    for (int i = 0; i < NB * LAT; i++)
        z[i] = tr.x_0[i] / sf;
    VaeRun *run;
    cr_assert_eq(vae_run_create(&run, vae, NB, IH, IW, VAE_RUN_FORWARD_ONLY, &err), JT_OK, "%s",
                 err.msg);
    vae_decode(vae, run, NB, z, dec);
    vae_run_free(run);
    NumDiff dd =
        expect_close("decoded (before the clamp)", dec, e->decoded, NB * IMGN, IMG_ATOL, IMG_RTOL);
    for (int b = 0; b < NB; b++)
        for (int c = 0; c < IC; c++)
            for (int p = 0; p < IH * IW; p++) {
                float v = dec[(b * IC + c) * IH * IW + p] / 2 + 0.5f;
                img[(b * IH * IW + p) * IC + c] = v < 0 ? 0 : v > 1 ? 1 : v; /* (B, H, W, C) */
            }
    NumDiff di = expect_close("image", img, e->image, NB * IMGN, IMG_ATOL, IMG_RTOL);
    /* 8-bit pixels as numpy_to_pil rounds them: equal except where the float image sits within
     * the error above of a rounding boundary (k + 0.5) / 255; at most one level off anywhere */
    int off = 0;
    for (int i = 0; i < NB * IMGN; i++) {
        int u = (int)nearbyintf(img[i] * 255.0f);
        int d = abs(u - e->image_u8[i]);
        cr_assert(d <= 1, "pixel %d: %d vs diffusers %d", i, u, e->image_u8[i]);
        off += d;
    }
    cr_assert(off <= 3, "%d of %d 8-bit values differ by one", off, NB * IMGN);
    fprintf(stderr,
            "sd_pipeline: latents max abs %.2g over %d steps; decoded max abs %.2g, image %.2g; "
            "%d 8-bit values off by one\n",
            worst, S, dd.max_abs, di.max_abs, off);

    /* the image.npy written for end-to-end CLI checks is the same image */
    NpyShape shp;
    float *npy = fixture_npy_f32(FIX "/image.npy", &shp);
    cr_assert(shp.ndim == 4 && shp.shape[0] == NB && shp.shape[1] == IH && shp.shape[2] == IW &&
              shp.shape[3] == IC);
    cr_assert(memcmp(npy, e->image, sizeof e->image) == 0);
    free(npy);

    traj_free(&tr);
    sched_free(&sched);
    free(after), free(ctx), free(unc);
    model_free(unet_m), model_free(vae_m), model_free(te_m);
    free(e);
}

/* ---- every component folder loads as its class; the others are refused as U-Nets ---- */

Test(sd_pipeline, component_folders_load_as_their_classes) {
    Model *m = load(PIPE "/vae", "AutoencoderKL");
    cr_assert_eq(vae_config_factor(vae_config(model_vae_const(m))), 2);
    model_free(m);
    m = load(PIPE "/unet", "UNet2DConditionModel");
    cr_assert(unet_config(model_unet_const(m))->cond);
    model_free(m);
    static const char *const not_unet[] = {PIPE "/vae", PIPE "/text_encoder"};
    for (int k = 0; k < 2; k++) {
        JtError err;
        cr_assert_eq(model_load_unet(not_unet[k], &m, &err), JT_ERR);
        cr_assert(m == NULL && strstr(err.msg, "needs a U-Net"), "%s", err.msg);
    }
}

/* ---- the CLI's tokenizer on the pipeline's tokenizer folder ---- */

Test(sd_pipeline, cli_tokenize_pipeline_tokenizer) {
    Expect *e = read_expect();
    char out[8192], err[2048];
    int rc = cli_run_out("tokenize --tokenizer " PIPE "/tokenizer \"a photo of a cat\"", out,
                         sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    /* all 77 ids on one line, space-separated */
    char want[NL * 8] = "";
    size_t k = 0;
    for (int i = 0; i < NL; i++)
        k +=
            (size_t)snprintf(want + k, sizeof want - k, "%d%c", e->ids[i], i + 1 < NL ? ' ' : '\n');
    cr_assert_str_eq(out, want);
    free(e);
}

/* ---- the CLI on the folder: `jtrak sample --model PIPE --prompts FILE` as a user types it ---- */

/* The pipeline folder itself as --model: its unet/, scheduler/ (SD's DDIM), text_encoder/,
 * tokenizer/ and vae/ are taken from model_index.json, the prompts tokenized and encoded in-process
 * with "" as the unconditional prompt, guided DDIM from the fixture's latents. The trajectory must
 * hold diffusers' prompt embeddings and every step's latents (the tolerances above), record the
 * prompts, and say once that the long prompt was truncated. */
Test(sd_pipeline, cli_sample_on_the_folder_matches_the_pipeline) {
    Expect *e = read_expect();
    char noise[400], prompts[400], out[400], args[1800], err[4096];
    snprintf(noise, sizeof noise, "%s/latents.npy", test_tmp);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", test_tmp);
    snprintf(out, sizeof out, "%s/T", test_tmp);
    const size_t shape[4] = {NB, LC, LH, LW};
    JtError jerr;
    cr_assert_eq(npy_write(noise, NPY_F32, 4, shape, e->latents_in, &jerr), JT_OK, "%s", jerr.msg);
    FILE *f = fopen(prompts, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n%s\n", PROMPTS[0], PROMPTS[1]);
    fclose(f);
    snprintf(args, sizeof args,
             "sample --model %s --prompts %s --guidance 3 --sampler ddim --steps %d --noise %s "
             "--out %s --quiet",
             PIPE, prompts, S, noise, out);
    cr_assert_eq(cli_run(args, err, sizeof err), 0, "jtrak %s: %s", args, err);
    const char *warn = strstr(err, "truncated");
    cr_assert(warn && !strstr(warn + 1, "truncated") && strstr(err, "prompt 1"),
              "the truncation of prompt 1 is said once: %s", err);

    char path[500];
    snprintf(path, sizeof path, "%s/trajectory.safetensors", out);
    Trajectory tr;
    cr_assert_eq(traj_load(&tr, path, &jerr), JT_OK, "%s", jerr.msg);
    cr_assert(tr.n == NB && tr.S == S && tr.ctx_len == NL && tr.ctx_dim == ND && tr.guidance == 3);
    for (int k = 0; k < S; k++)
        cr_assert_eq(tr.timesteps[k], e->timesteps[k]);
    cr_assert(tr.prompts && strcmp(tr.prompts[0], PROMPTS[0]) == 0 &&
              strcmp(tr.prompts[1], PROMPTS[1]) == 0);
    /* encode_prompt's embeddings within float32 rounding of a 2-layer encoder */
    expect_close("encoder_hidden_states", tr.context, e->prompt_embeds, NB * NL * ND, 1e-5, 1e-5);
    expect_close("uncond_context", tr.uncond_context, e->negative_embeds, NL * ND, 1e-5, 1e-5);
    for (int k = 0; k < S; k++)
        for (int b = 0; b < NB; b++) {
            const float *got =
                k + 1 < S ? tr.x_t + ((size_t)b * S + k + 1) * LAT : tr.x_0 + (size_t)b * LAT;
            char what[64];
            snprintf(what, sizeof what, "sample %d after step %d", b, k);
            expect_close(what, got, e->step_latents + ((size_t)k * NB + b) * LAT, LAT, LAT_ATOL,
                         LAT_RTOL);
        }
    /* the pipeline's vae/ decoded the PNGs without --vae */
    snprintf(path, sizeof path, "%s/samples.png", out);
    cr_assert_eq(access(path, F_OK), 0, "no %s", path);
    traj_free(&tr);
    free(e);
}

/* `jtrak encode-text --text ""`: the unconditional context a user passes as --uncond npy:FILE is
 * the pipeline's negative_prompt_embeds for "" (encode_prompt); --text excludes --ids and
 * --captions, needs --tokenizer, and a failed run leaves no file. */
Test(sd_pipeline, cli_encode_text_of_the_empty_prompt) {
    Expect *e = read_expect();
    char out[400], args[1600], err[4096];
    snprintf(out, sizeof out, "%s/empty.npy", test_tmp);
    snprintf(args, sizeof args,
             "encode-text --text '' --text-encoder %s/text_encoder --tokenizer %s/tokenizer "
             "--out %s",
             PIPE, PIPE, out);
    cr_assert_eq(cli_run(args, err, sizeof err), 0, "jtrak %s: %s", args, err);
    NpyShape shp;
    float *got = fixture_npy_f32(out, &shp);
    cr_assert(shp.ndim == 3 && shp.shape[0] == 1 && shp.shape[1] == NL && shp.shape[2] == ND);
    expect_close("encode-text --text ''", got, e->negative_embeds, NL * ND, 1e-5, 1e-5);
    free(got);
    free(e);

    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad.npy", test_tmp);
    cli_expect_failure(err, sizeof err, 2, "encode-text", (const char *const[]){"--text", NULL},
                       "encode-text --text '' --text-encoder %s/text_encoder --out %s", PIPE, bad);
    cli_expect_failure(err, sizeof err, 2, "encode-text", (const char *const[]){"one of", NULL},
                       "encode-text --text '' --ids x.npy --text-encoder %s/text_encoder "
                       "--tokenizer %s/tokenizer --out %s",
                       PIPE, PIPE, bad);
    /* a tokenizer folder that is not one: refused, nothing written */
    cli_expect_failure(err, sizeof err, 1, "encode-text", (const char *const[]){"vae", NULL},
                       "encode-text --text 'a cat' --text-encoder %s/text_encoder --tokenizer "
                       "%s/vae --out %s",
                       PIPE, PIPE, bad);
    char man[420];
    snprintf(man, sizeof man, "%s.json", bad);
    cr_assert(access(bad, F_OK) != 0 && access(man, F_OK) != 0, "a failed run left files");
}

/* An SD-1.x folder's PNDMScheduler: its config (the keys SD-1.5's scheduler_config.json has) is
 * read for the betas it shares with DDIM, and `sample --sampler ddim` of the folder gives the very
 * trajectory of the DDIM folder (the same betas, steps_offset and set_alpha_to_one). */
Test(sd_pipeline, pndm_scheduler_folder_samples_with_its_betas) {
    char pndm[400], cmd[1400], err[4096];
    snprintf(pndm, sizeof pndm, "%s/pndm", test_tmp);
    snprintf(cmd, sizeof cmd, "cp -r %s %s", PIPE, pndm);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    char path[500];
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", pndm);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"_class_name\": \"PNDMScheduler\", \"_diffusers_version\": \"0.6.0\", "
          "\"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, "
          "\"num_train_timesteps\": 1000, \"set_alpha_to_one\": false, \"skip_prk_steps\": true, "
          "\"steps_offset\": 1, \"trained_betas\": null, \"clip_sample\": false}\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "sed -i 's/\"DDIMScheduler\"/\"PNDMScheduler\"/' %s/model_index.json && grep -q "
             "PNDMScheduler %s/model_index.json",
             pndm, pndm);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    const char *models[2] = {PIPE, pndm};
    Trajectory tr[2];
    for (int i = 0; i < 2; i++) {
        char out[420], args[1400];
        snprintf(out, sizeof out, "%s/T%d", test_tmp, i);
        snprintf(args, sizeof args,
                 "sample --model %s --prompt 'a photo of a cat' --guidance 3 --sampler ddim "
                 "--steps %d --n 2 --out %s --quiet",
                 models[i], S, out);
        cr_assert_eq(cli_run(args, err, sizeof err), 0, "jtrak %s: %s", args, err);
        snprintf(path, sizeof path, "%s/trajectory.safetensors", out);
        JtError jerr;
        cr_assert_eq(traj_load(&tr[i], path, &jerr), JT_OK, "%s", jerr.msg);
    }
    for (int k = 0; k < S; k++)
        cr_assert_eq(tr[0].timesteps[k], tr[1].timesteps[k]);
    cr_assert(memcmp(tr[0].x_0, tr[1].x_0, (size_t)NB * LAT * sizeof(float)) == 0,
              "the PNDM folder's DDIM sample differs from the DDIM folder's");
    traj_free(&tr[0]), traj_free(&tr[1]);
}
