/* test_pipeline.c: diffusers pipeline folders (src/model/pipeline.h). A StableDiffusionPipeline is
 * assembled by the writer from fixture folders (the transformers CLIPTextModel clip2_quick, the
 * tokenizer clip_small, the diffusers AutoencoderKL vae3_32 and a UNet2DConditionModel made here
 * with cross_attention_dim 32); its opening, model_load (the U-Net's fingerprint), its schedule
 * (StableDiffusionPipeline's rewrite), the byte-for-byte copies, the DDPMPipeline of a UNet2DModel,
 * every refusal of a malformed folder (message checked) and of bad sources (nothing left behind),
 * and the CLI's `jtrak pipeline` / `jtrak info` on one. ref/check_pipeline.py loads what this
 * writer writes with diffusers' from_pretrained. */
#include "core/config_fields.h"
#include "helpers/cli_run.h"
#include "helpers/tiny_unet.h"
#include "helpers/tiny_cond.h"
#include "helpers/tmpdir.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "model/model.h"
#include "model/model_kind.h"
#include "model/pipeline.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX JTRAK_FIXTURES
#define VAE FIX "/vae/vae3_32"
#define TE FIX "/clip/clip2_quick"
#define TOK FIX "/tokenizer/clip_small"

TestSuite(pipeline, .init = test_tmp_setup, .fini = test_tmp_teardown);

static char g_err[4096];

/* test_tmp/name, in one of 64 rotating buffers (callers keep a path across fewer calls). */
static char *tmp(const char *name) {
    static char bufs[64][600];
    static int k;
    char *b = bufs[k++ % 64];
    snprintf(b, 600, "%s/%s", test_tmp, name);
    return b;
}

static char *slurp(const char *path) {
    char *text;
    JtError err = {{0}};
    cr_assert_eq(cf_read_file(path, &text, &err), JT_OK, "%s", err.msg);
    return text;
}

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    fclose(f);
}

/* text with the first `from` replaced by `to` (malloc'd); the test fails when from is absent. */
static char *replace(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' not in the text", from);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

/* A UNet2DConditionModel folder (cond2_8x12's architecture at 8x8) of context width xdim and
 * in/out channels ch, seeded weights. */
static const char *make_unet(const char *name, int xdim, int ch) {
    const char *dir = tmp(name);
    test_write_tiny_cond_model(tmp("ucfg.json"), dir, ch, 0, xdim);
    return dir;
}

/* The good pipeline: written by pipeline_write from the fixtures into test_tmp/P. */
static const char *good_pipeline(SchedConfig *sc) {
    static SchedConfig def;
    sched_config_default(&def);
    PipelineSources s = {make_unet("unet_src", 32, 4), VAE, TE, TOK, sc ? sc : &def};
    JtError err = {{0}};
    static char out[600];
    snprintf(out, sizeof out, "%s/P", test_tmp);
    cr_assert_eq(pipeline_write(&s, out, &err), JT_OK, "%s", err.msg);
    return out;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void expect_same_bytes(const char *a, const char *b) {
    char *x = slurp(a), *y = slurp(b); /* the configs; weights compared by size and bytes below */
    cr_assert_str_eq(x, y, "%s differs from %s", a, b);
    free(x), free(y);
}

static void expect_same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    cr_assert(f && g, "%s / %s", a, b);
    int c1, c2;
    size_t n = 0;
    do {
        c1 = fgetc(f), c2 = fgetc(g);
        cr_assert_eq(c1, c2, "%s and %s differ at byte %zu", a, b, n);
        n++;
    } while (c1 != EOF);
    fclose(f), fclose(g);
}

/* err must be one line holding every string of want (NULL-terminated). */
static void expect_msg(int rc, const JtError *err, const char *const *want) {
    cr_assert_eq(rc, JT_ERR, "accepted");
    cr_assert_null(strchr(err->msg, '\n'), "message spans lines: %s", err->msg);
    for (; *want; want++)
        cr_assert(strstr(err->msg, *want) != NULL, "message lacks \"%s\": %s", *want, err->msg);
}

/* Opening dir fails with every string of want, and so does model_load (it opens the folder). */
static void expect_open_refused(const char *dir, const char *const *want) {
    PipelineFolder p;
    JtError err = {{0}};
    expect_msg(pipeline_open(dir, &p, &err), &err, want);
    cr_assert_null(p.dir, "pipeline_open left fields set on error");
    Model *m;
    JtError e2 = {{0}};
    expect_msg(model_load(dir, &m, &e2), &e2, want);
    cr_assert_null(m);
}

/* model_index.json of dir with `from` replaced by `to`. */
static void edit_index(const char *dir, const char *from, const char *to) {
    char path[700];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    char *t = slurp(path), *u = replace(t, from, to);
    spit(path, u);
    free(t), free(u);
}

Test(pipeline, opens_what_the_writer_wrote) {
    const char *P = good_pipeline(NULL);
    PipelineFolder p;
    JtError err = {{0}};
    cr_assert_eq(pipeline_open(P, &p, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(p.class_name, "StableDiffusionPipeline");
    cr_assert_str_eq(p.scheduler_class, "DDPMScheduler");
    cr_assert_str_eq(p.unet_dir, tmp("P/unet"));
    cr_assert_str_eq(p.vae_dir, tmp("P/vae"));
    cr_assert_str_eq(p.text_encoder_dir, tmp("P/text_encoder"));
    cr_assert_str_eq(p.tokenizer_dir, tmp("P/tokenizer"));
    cr_assert_str_eq(p.scheduler_dir, tmp("P/scheduler"));
    pipeline_close(&p);
    cr_assert_eq(pipeline_is_folder(P), 1);
    cr_assert_eq(pipeline_is_folder(tmp("unet_src")), 0);
    /* the components are byte-for-byte copies */
    expect_same_bytes(tmp("unet_src/config.json"), tmp("P/unet/config.json"));
    expect_same_file(tmp("unet_src/diffusion_pytorch_model.safetensors"),
                     tmp("P/unet/diffusion_pytorch_model.safetensors"));
    expect_same_file(TE "/model.safetensors", tmp("P/text_encoder/model.safetensors"));
    expect_same_file(TE "/config.json", tmp("P/text_encoder/config.json"));
    expect_same_file(VAE "/diffusion_pytorch_model.safetensors",
                     tmp("P/vae/diffusion_pytorch_model.safetensors"));
    expect_same_file(TOK "/vocab.json", tmp("P/tokenizer/vocab.json"));
    expect_same_file(TOK "/merges.txt", tmp("P/tokenizer/merges.txt"));
    /* the fixtures' extra files (io.safetensors) are not components' files */
    cr_assert_eq(file_exists(tmp("P/vae/io.safetensors")), 0);
    /* model_index.json: what StableDiffusionPipeline.save_pretrained writes */
    char *text = slurp(tmp("P/model_index.json"));
    cJSON *o = cJSON_Parse(text);
    cr_assert_not_null(o);
    const char *want[][3] = {{"unet", "diffusers", "UNet2DConditionModel"},
                             {"vae", "diffusers", "AutoencoderKL"},
                             {"text_encoder", "transformers", "CLIPTextModel"},
                             {"tokenizer", "transformers", "CLIPTokenizer"},
                             {"scheduler", "diffusers", "DDPMScheduler"}};
    for (int i = 0; i < 5; i++) {
        const cJSON *a = cJSON_GetObjectItem(o, want[i][0]);
        cr_assert(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 2, "%s", want[i][0]);
        cr_assert_str_eq(cJSON_GetArrayItem(a, 0)->valuestring, want[i][1]);
        cr_assert_str_eq(cJSON_GetArrayItem(a, 1)->valuestring, want[i][2]);
    }
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "safety_checker"), 0)));
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(o, "requires_safety_checker")));
    cJSON_Delete(o);
    free(text);
}

Test(pipeline, model_load_gives_the_unet) {
    const char *P = good_pipeline(NULL);
    Model *a, *b;
    JtError err = {{0}};
    cr_assert_eq(model_load_unet(P, &a, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_load(tmp("unet_src"), &b, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_fingerprint(a), model_fingerprint(b));
    cr_assert_str_eq(model_kind(a)->class_name, "UNet2DConditionModel");
    model_free(a), model_free(b);
    char *d = pipeline_model_dir(P);
    cr_assert_str_eq(d, tmp("P/unet"));
    free(d);
    d = pipeline_model_dir(tmp("unet_src"));
    cr_assert_str_eq(d, tmp("unet_src"));
    free(d);
}

/* StableDiffusionPipeline.__init__ sets steps_offset 1 and clip_sample false (diffusers 0.42.1);
 * the writer writes it so, and a folder whose file says otherwise is read so. */
Test(pipeline, schedule_as_the_pipeline_loads_it) {
    SchedConfig sc;
    sched_config_default(&sc);
    sc.beta_end = 0.012;
    const char *P = good_pipeline(&sc);
    SchedConfig got;
    JtError err = {{0}};
    cr_assert_eq(sched_config_load_model(&got, P, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(got.steps_offset, 1);
    cr_assert_eq(got.clip_sample, false);
    cr_assert_eq(got.beta_end, 0.012, "the training's betas are kept");
    /* a hand-written file with steps_offset 0 and clip_sample true is rewritten on reading */
    cr_assert_eq(sched_config_save(&sc, tmp("P/scheduler/scheduler_config.json"), &err), JT_OK);
    cr_assert_eq(sched_config_load(&got, tmp("P/scheduler"), &err), JT_OK, "%s", err.msg);
    cr_assert_eq(got.steps_offset, 0);
    cr_assert_eq(sched_config_load_model(&got, P, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(got.steps_offset, 1);
    cr_assert_eq(got.clip_sample, false);
}

/* A UNet2DModel makes a DDPMPipeline (unet + scheduler), whose schedule is not rewritten. */
Test(pipeline, ddpm_pipeline_of_a_pixel_unet) {
    UNetConfig c;
    test_tiny_unet_config(&c);
    Model *m;
    JtError err = {{0}};
    cr_assert_eq(model_create(&m, &c, &err), JT_OK, "%s", err.msg);
    unet_init_params(model_unet(m), 3);
    cr_assert_eq(model_save(m, tmp("pix"), &err), JT_OK, "%s", err.msg);
    SchedConfig sc;
    sched_config_default(&sc);
    PipelineSources s = {tmp("pix"), NULL, NULL, NULL, &sc};
    cr_assert_eq(pipeline_write(&s, tmp("D"), &err), JT_OK, "%s", err.msg);
    PipelineFolder p;
    cr_assert_eq(pipeline_open(tmp("D"), &p, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(p.class_name, "DDPMPipeline");
    cr_assert_null(p.vae_dir);
    cr_assert_null(p.text_encoder_dir);
    pipeline_close(&p);
    SchedConfig got;
    cr_assert_eq(sched_config_load_model(&got, tmp("D"), &err), JT_OK, "%s", err.msg);
    cr_assert_eq(got.clip_sample, true);
    cr_assert_eq(got.steps_offset, 0);
    char *text = slurp(tmp("D/model_index.json"));
    cr_assert_null(strstr(text, "vae"), "%s", text);
    free(text);
    Model *l;
    cr_assert_eq(model_load(tmp("D"), &l, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_fingerprint(l), model_fingerprint(m));
    model_free(l), model_free(m);
    /* a pixel U-Net with a VAE is not a pipeline jtrak writes */
    PipelineSources bad = {tmp("pix"), VAE, NULL, NULL, &sc};
    expect_msg(pipeline_write(&bad, tmp("D2"), &err), &err,
               (const char *const[]){"UNet2DModel", "DDPMPipeline", "UNet2DConditionModel", NULL});
    cr_assert_eq(file_exists(tmp("D2")), 0);
}

/* Hub folders may hold only the fp16 variant: read (F16 is converted to float32). */
Test(pipeline, fp16_variant_weights) {
    const char *P = good_pipeline(NULL);
    Model *a, *b;
    JtError err = {{0}};
    cr_assert_eq(model_load(tmp("P/vae"), &a, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(rename(tmp("P/vae/diffusion_pytorch_model.safetensors"),
                        tmp("P/vae/diffusion_pytorch_model.fp16.safetensors")),
                 0);
    PipelineFolder p;
    cr_assert_eq(pipeline_open(P, &p, &err), JT_OK, "%s", err.msg);
    pipeline_close(&p);
    cr_assert_eq(model_load(tmp("P/vae"), &b, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_fingerprint(a), model_fingerprint(b));
    model_free(a), model_free(b);
    unlink(tmp("P/vae/diffusion_pytorch_model.fp16.safetensors"));
    expect_open_refused(P, (const char *const[]){"lists vae (diffusers AutoencoderKL)",
                                                 "P/vae/diffusion_pytorch_model.safetensors is "
                                                 "missing",
                                                 NULL});
}

Test(pipeline, refuses_a_malformed_model_index) {
    const char *P = good_pipeline(NULL);
    const char *idx = tmp("P/model_index.json");
    char *good = slurp(idx);
    static const struct {
        const char *from, *to;
        const char *want[3];
    } cases[] = {
        {"\"_class_name\":", "\"_klass\":", {"field '_class_name' missing", NULL}},
        {"\"StableDiffusionPipeline\"", "7", {"'_class_name': expected a string", NULL}},
        {"StableDiffusionPipeline",
         "StableDiffusionXLPipeline",
         {"StableDiffusionXLPipeline is not supported", "StableDiffusionPipeline, DDPMPipeline"}},
        {"StableDiffusionPipeline",
         "StableDiffusion3Pipeline",
         {"StableDiffusion3Pipeline is not supported", NULL}},
        {"\"vae\":", "\"_vae\":", {"field 'vae' missing", "[null, null] when absent"}},
        {"[\"diffusers\", \"AutoencoderKL\"]",
         "[\"diffusers\"]",
         {"field 'vae': expected [library, class]", NULL}},
        {"[\"diffusers\", \"AutoencoderKL\"]",
         "[\"diffusers\", \"VQModel\"]",
         {"field 'vae': [\"diffusers\", \"VQModel\"] is not supported", "AutoencoderKL"}},
        {"[\"transformers\", \"CLIPTextModel\"]",
         "[\"diffusers\", \"CLIPTextModel\"]",
         {"field 'text_encoder'", "transformers CLIPTextModel"}},
        {"[\"diffusers\", \"UNet2DConditionModel\"]",
         "[null, null]",
         {"field 'unet' is [null, null]", NULL}},
        {"[\"diffusers\", \"UNet2DConditionModel\"]",
         "[\"diffusers\", \"UNet2DModel\"]",
         {"a StableDiffusionPipeline holds a UNet2DConditionModel, not a UNet2DModel", NULL}},
        {"[\"diffusers\", \"DDPMScheduler\"]",
         "[\"diffusers\", \"EulerDiscreteScheduler\"]",
         {"field 'scheduler'", "DDPMScheduler or DDIMScheduler"}},
        {"\"vae\":",
         "\"text_encoder_2\": [\"transformers\", \"CLIPTextModel\"], \"vae\":",
         {"field 'text_encoder_2': not a component of StableDiffusionPipeline", NULL}},
        {"{", "[", {"model_index.json", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        spit(idx, good);
        edit_index(P, cases[i].from, cases[i].to);
        expect_open_refused(P, cases[i].want);
    }
    /* safety_checker and feature_extractor are ignored, whatever they name */
    spit(idx, good);
    edit_index(P, "\"safety_checker\":\t[null, null]",
               "\"safety_checker\": [\"stable_diffusion\", \"StableDiffusionSafetyChecker\"]");
    PipelineFolder p;
    JtError err = {{0}};
    cr_assert_eq(pipeline_open(P, &p, &err), JT_OK, "%s", err.msg);
    pipeline_close(&p);
    free(good);
}

Test(pipeline, refuses_a_missing_component) {
    const char *P = good_pipeline(NULL);
    cr_assert_eq(unlink(tmp("P/text_encoder/config.json")), 0);
    expect_open_refused(P, (const char *const[]){"model_index.json lists text_encoder "
                                                 "(transformers CLIPTextModel) but",
                                                 "P/text_encoder/config.json is missing", NULL});
    test_rm_tree(tmp("P/text_encoder"));
    expect_open_refused(
        P, (const char *const[]){"lists text_encoder", "P/text_encoder/ is missing", NULL});
    cr_assert_eq(unlink(tmp("P/tokenizer/merges.txt")), 0);
    edit_index(P, "[\"transformers\", \"CLIPTextModel\"]", "[null, null]");
    expect_open_refused(P, (const char *const[]){"lists tokenizer (transformers CLIPTokenizer)",
                                                 "P/tokenizer/merges.txt is missing", NULL});
    test_rm_tree(tmp("P/scheduler"));
    edit_index(P, "[\"transformers\", \"CLIPTokenizer\"]", "[null, null]");
    expect_open_refused(P,
                        (const char *const[]){"lists scheduler", "P/scheduler/ is missing", NULL});
}

/* A component folder holding its own model_index.json (e.g. unet -> .) is refused. */
Test(pipeline, refuses_a_nested_pipeline) {
    const char *P = good_pipeline(NULL);
    char *idx = slurp(tmp("P/model_index.json"));
    spit(tmp("P/unet/model_index.json"), idx);
    free(idx);
    expect_open_refused(P, (const char *const[]){"P/unet/ holds a model_index.json", NULL});
}

Test(pipeline, refuses_mismatched_components) {
    const char *P = good_pipeline(NULL);
    /* a U-Net of context width 24 under a text encoder of width 32 */
    JtError err = {{0}};
    Model *m;
    cr_assert_eq(model_load(make_unet("u24", 24, 4), &m, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_save(m, tmp("P/unet"), &err), JT_OK, "%s", err.msg);
    model_free(m);
    expect_open_refused(P, (const char *const[]){"P/text_encoder/config.json: hidden_size is 32",
                                                 "P/unet/config.json has cross_attention_dim 24",
                                                 NULL});
    /* a U-Net of 3 channels under a VAE of 4 latent channels */
    cr_assert_eq(model_load(make_unet("u3", 32, 3), &m, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_save(m, tmp("P/unet"), &err), JT_OK, "%s", err.msg);
    model_free(m);
    expect_open_refused(
        P, (const char *const[]){"P/vae/config.json: latent_channels is 4", "in_channels 3", NULL});
    /* a tokenizer longer than the text encoder's positions */
    cr_assert_eq(model_load(tmp("u3/../unet_src"), &m, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_save(m, tmp("P/unet"), &err), JT_OK, "%s", err.msg);
    model_free(m);
    char *tc = slurp(tmp("P/tokenizer/tokenizer_config.json"));
    char *t2 = replace(tc, "\"model_max_length\": 77", "\"model_max_length\": 100");
    spit(tmp("P/tokenizer/tokenizer_config.json"), t2);
    free(tc), free(t2);
    expect_open_refused(
        P, (const char *const[]){"model_max_length is 100", "max_position_embeddings 77", NULL});
}

/* Bad sources: refused before anything is written, and nothing is left behind. */
Test(pipeline, writer_refuses_bad_sources) {
    SchedConfig sc;
    sched_config_default(&sc);
    JtError err = {{0}};
    char out[600];
    snprintf(out, sizeof out, "%s/W", test_tmp);
    PipelineSources s = {make_unet("u24", 24, 4), VAE, TE, TOK, &sc};
    expect_msg(pipeline_write(&s, out, &err), &err,
               (const char *const[]){"clip2_quick/config.json: hidden_size is 32",
                                     "cross_attention_dim 24", NULL});
    cr_assert_eq(file_exists(out), 0, "a refused write left %s", out);
    PipelineSources s3 = {make_unet("u3", 32, 3), VAE, NULL, NULL, &sc};
    expect_msg(pipeline_write(&s3, out, &err), &err,
               (const char *const[]){"latent_channels is 4", "in_channels 3", NULL});
    cr_assert_eq(file_exists(out), 0);
    const char *P = good_pipeline(NULL);
    PipelineSources sp = {P, NULL, NULL, NULL, &sc};
    expect_msg(pipeline_write(&sp, out, &err), &err,
               (const char *const[]){"a pipeline folder, not a unet folder", NULL});
    PipelineSources st = {tmp("unet_src"), VAE, TE, FIX "/clip", &sc};
    expect_msg(pipeline_write(&st, out, &err), &err,
               (const char *const[]){"vocab.json: missing", "tokenizer", NULL});
    cr_assert_eq(file_exists(out), 0);
}

/* A write that fails midway (scheduler/ cannot be made: a file has that name) removes what it
 * wrote and leaves no model_index.json. */
Test(pipeline, failed_write_leaves_nothing) {
    SchedConfig sc;
    sched_config_default(&sc);
    JtError err = {{0}};
    const char *out = tmp("W");
    cr_assert_eq(mkdir(out, 0755), 0);
    spit(tmp("W/scheduler"), "not a folder");
    PipelineSources s = {make_unet("unet_src", 32, 4), VAE, TE, TOK, &sc};
    expect_msg(pipeline_write(&s, out, &err), &err,
               (const char *const[]){"W/scheduler", "cannot create folder", NULL});
    cr_assert_eq(file_exists(tmp("W/model_index.json")), 0);
    cr_assert_eq(file_exists(tmp("W/unet")), 0);
    cr_assert_eq(file_exists(tmp("W/vae")), 0);
    cr_assert_eq(file_exists(tmp("W/tokenizer")), 0);
    cr_assert_eq(file_exists(tmp("W/scheduler")), 1, "a file that was there before is kept");
}

Test(pipeline, cli_pipeline_and_info) {
    make_unet("unet_src", 32, 4);
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd,
             "pipeline --unet %s --vae " VAE " --text-encoder " TE " --tokenizer " TOK " --out %s",
             tmp("unet_src"), tmp("C"));
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(cmd, sizeof cmd, "info %s", tmp("C"));
    cr_assert_eq(cli_run_out(cmd, out, sizeof out, g_err, sizeof g_err), 0, "%s", g_err);
    const char *want[] = {"pipeline: ",
                          "(StableDiffusionPipeline)",
                          "vae: ",
                          "AutoencoderKL",
                          "text_encoder: ",
                          "width 32",
                          "tokenizer: ",
                          "model_max_length 77",
                          "steps_offset 1, clip_sample false",
                          "class: UNet2DConditionModel",
                          "fingerprint: "};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert(strstr(out, want[i]) != NULL, "info lacks \"%s\":\n%s", want[i], out);
    /* usage errors exit 2, bad input 1 with one line, and nothing is left behind */
    cli_expect_failure(g_err, sizeof g_err, 2, "pipeline", (const char *const[]){"--unet", NULL},
                       "pipeline --out %s", tmp("X"));
    make_unet("u24", 24, 4);
    cli_expect_failure(g_err, sizeof g_err, 1, "pipeline",
                       (const char *const[]){"hidden_size is 32", "cross_attention_dim 24", NULL},
                       "pipeline --unet %s --text-encoder " TE " --out %s", tmp("u24"), tmp("X"));
    cr_assert_eq(file_exists(tmp("X")), 0, "a refused jtrak pipeline left its --out");
    /* a folder of other files (here a copy of the text encoder's) is not written into */
    snprintf(cmd, sizeof cmd, "%s/te_copy", test_tmp);
    cr_assert_eq(mkdir(cmd, 0755), 0);
    spit(tmp("te_copy/config.json"), "{}");
    cli_expect_failure(g_err, sizeof g_err, 1, "pipeline",
                       (const char *const[]){"holds other files", "not a pipeline folder", NULL},
                       "pipeline --unet %s --out %s", tmp("unet_src"), tmp("te_copy"));
    cr_assert_eq(file_exists(tmp("te_copy/model_index.json")), 0);
    snprintf(cmd, sizeof cmd, "pipeline --unet %s --out %s", tmp("unet_src"), tmp("unet_src"));
    cli_expect_failure(g_err, sizeof g_err, 1, "pipeline",
                       (const char *const[]){"holds a model folder", NULL}, "%s", cmd);
}

/* train --pipeline: the sources are checked against the model before any training, and a refused
 * run leaves no --out behind. */
Test(pipeline, train_refuses_bad_sources_before_training) {
    uint8_t pix[4 * 64];
    for (int i = 0; i < 4 * 64; i++)
        pix[i] = (uint8_t)(i * 37);
    size_t shape[3] = {4, 8, 8};
    JtError err = {{0}};
    cr_assert_eq(npy_write(tmp("img.npy"), NPY_U8, 3, shape, pix, &err), JT_OK, "%s", err.msg);
    cli_expect_failure(g_err, sizeof g_err, 1, "train",
                       (const char *const[]){"UNet2DModel", "has no VAE", NULL},
                       "train --data npy:%s --config t8 --steps 1 --vae " VAE " --out %s --quiet",
                       tmp("img.npy"), tmp("T"));
    cr_assert_eq(file_exists(tmp("T")), 0, "a refused train --pipeline left its --out");
    cli_expect_failure(g_err, sizeof g_err, 1, "train",
                       (const char *const[]){"model_index.json", "cannot open", NULL},
                       "train --data npy:%s --config t8 --steps 1 --pipeline %s --out %s --quiet",
                       tmp("img.npy"), tmp("nowhere"), tmp("T"));
    cr_assert_eq(file_exists(tmp("T")), 0);
}
