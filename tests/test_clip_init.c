/* test_clip_init.c: `jtrak init` of a CLIPTextModel (text/clip_text_init.c):
 *  - per-tensor statistics of clip_text_init_params against transformers 5.23's
 *    CLIPPreTrainedModel._init_weights formulas (std and mean of every drawn tensor, constants
 *    exact), seeded and deterministic;
 *  - the folder round trip (model_save -> model_load: the same parameters bit for bit, the same
 *    config and fingerprint; transformers' config form and safetensors metadata);
 *  - the CLI: clip-tiny and a transformers config.json; the same command again is accepted,
 *    another seed over the folder refused; a refused initializer_factor, a refused hidden_act,
 *    an unknown config name and a missing --out.
 * (ref check, once: CLIPTextModel.from_pretrained loads such a folder with no missing or
 * unexpected keys, its save_pretrained writes the same model.safetensors bytes and the same
 * config, and its last_hidden_state matches `jtrak encode-text` to 1.5e-6.) */
#include "core/common.h"
#include "core/linalg.h"
#include "helpers/cli_run.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "text/clip_text.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char g_err[4096];

static void suite_init(void) {
    la_blas_single_threaded();
    test_tmp_setup();
}
TestSuite(clip_init, .init = suite_init, .fini = test_tmp_teardown);

static Model *fresh(const ClipTextConfig *cfg, uint64_t seed) {
    Model *m;
    JtError err;
    cr_assert_eq(model_create_kind(&m, model_kind_find(CLIP_TEXT_CLASS), cfg, &err), JT_OK, "%s",
                 err.msg);
    clip_text_init_params(model_text_encoder(m), seed);
    model_refresh_fingerprint(m);
    return m;
}

/* transformers' formulas written out again (D width, N layers, factor 1) */
static double want_std(const char *name, double D, double N) {
    if (strstr(name, "_embedding.")) return 0.02;
    if (strstr(name, "out_proj")) return 1 / sqrt(D);
    if (strstr(name, "fc1")) return 1 / sqrt(2 * D);
    return 1 / sqrt(D) / sqrt(2 * N); /* q, k, v, fc2 */
}

static void check_stats(const ClipTextConfig *cfg, uint64_t seed) {
    Model *m = fresh(cfg, seed);
    const ParamLayout *l = model_layout(m);
    const float *p = model_params(m);
    int drawn = 0;
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        const float *v = p + e->offset;
        int bias = strstr(e->name, ".bias") != NULL, norm = strstr(e->name, "layer_norm") != NULL;
        if (bias || norm) {
            float c = norm && !bias ? 1.0f : 0.0f;
            for (size_t k = 0; k < e->numel; k++)
                cr_assert(v[k] == c, "%s[%zu] = %g, want %g", e->name, k, v[k], c);
            cr_assert(clip_text_init_std(cfg, e->name) == 0.0);
            continue;
        }
        double s = 0, s2 = 0;
        for (size_t k = 0; k < e->numel; k++)
            s += v[k], s2 += (double)v[k] * v[k];
        double n = (double)e->numel, mean = s / n, sd = sqrt(s2 / n - mean * mean);
        double want = want_std(e->name, cfg->hidden_size, cfg->num_hidden_layers);
        cr_assert(fabs(clip_text_init_std(cfg, e->name) - want) < 1e-12 * want, "%s", e->name);
        /* Sampling error of n normal draws: std's relative standard error is 1/sqrt(2n), the
         * mean's is want/sqrt(n); 5 standard errors (a chance failure ~ 6e-7 per tensor with a
         * fixed seed it never changes). The smallest tensor (32x32) allows 11% on the std; the
         * nearest wrong rule (out_proj's scale for q: x2, fc1's for fc2: x1.41) is far outside. */
        cr_assert(fabs(sd / want - 1) < 5 / sqrt(2 * n), "%s: std %.5f, transformers' %.5f (n %zu)",
                  e->name, sd, want, e->numel);
        cr_assert(fabs(mean) < 5 * want / sqrt(n), "%s: mean %.5f (std %.5f, n %zu)", e->name, mean,
                  want, e->numel);
        drawn++;
    }
    /* 2 embeddings + 6 weights per layer */
    cr_assert_eq(drawn, 2 + 6 * cfg->num_hidden_layers);
    model_free(m);
}

Test(clip_init, statistics_follow_transformers_init_weights) {
    ClipTextConfig cfg;
    cr_assert(clip_text_config_preset("clip-tiny", &cfg));
    cr_assert(cfg.hidden_size == 32 && cfg.num_hidden_layers == 2 && cfg.num_attention_heads == 4 &&
              cfg.intermediate_size == 37 && cfg.vocab_size == 49408 &&
              cfg.max_position_embeddings == 77 && cfg.hidden_act == CLIP_ACT_QUICK_GELU);
    check_stats(&cfg, 0);
    /* another shape: the scales follow D and N (wider, deeper, gelu) */
    cfg.hidden_size = 64, cfg.num_hidden_layers = 3, cfg.intermediate_size = 128;
    cfg.vocab_size = 1000, cfg.bos_token_id = 998, cfg.eos_token_id = 999, cfg.pad_token_id = 0;
    cfg.hidden_act = CLIP_ACT_GELU;
    check_stats(&cfg, 7);
    cr_assert(!clip_text_config_preset("clip-large", &cfg));
}

Test(clip_init, seeded_and_deterministic) {
    ClipTextConfig cfg;
    clip_text_config_preset("clip-tiny", &cfg);
    Model *a = fresh(&cfg, 5), *b = fresh(&cfg, 5), *c = fresh(&cfg, 6);
    size_t n = model_layout(a)->total;
    cr_assert(memcmp(model_params(a), model_params(b), n * sizeof(float)) == 0);
    cr_assert(model_fingerprint(a) == model_fingerprint(b));
    cr_assert(memcmp(model_params(a), model_params(c), n * sizeof(float)) != 0);
    cr_assert(model_fingerprint(a) != model_fingerprint(c));
    model_free(a), model_free(b), model_free(c);
}

Test(clip_init, save_load_round_trip) {
    ClipTextConfig cfg;
    clip_text_config_preset("clip-tiny", &cfg);
    cfg.hidden_act = CLIP_ACT_GELU;
    cfg.layer_norm_eps = 1e-6f;
    Model *m = fresh(&cfg, 11);
    uint64_t fp = model_fingerprint(m);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/deep/te", test_tmp); /* parents are created */
    JtError err;
    cr_assert_eq(model_save(m, dir, &err), JT_OK, "%s", err.msg);
    cr_assert(model_fingerprint(m) == fp, "saving F32 does not change the model");
    Model *back;
    cr_assert_eq(model_load(dir, &back, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(model_kind(back)->class_name, CLIP_TEXT_CLASS);
    cr_assert(model_fingerprint(back) == fp);
    cr_assert(memcmp(model_params(back), model_params(m), model_layout(m)->total * 4) == 0);
    const ClipTextConfig *bc = clip_text_config(model_text_encoder(back));
    cr_assert(bc->hidden_act == CLIP_ACT_GELU && bc->layer_norm_eps == 1e-6f &&
              bc->vocab_size == 49408 && bc->eos_token_id == 49407);
    model_free(back);
    /* transformers' form: the class in "architectures", model_type, float fields as floats
     * (transformers 5 refuses "initializer_factor": 1) */
    char path[500];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *o = json_load_file(path, &err);
    cr_assert(o, "%s", err.msg);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(o, "architectures");
    cr_assert(cJSON_IsArray(arch) && cJSON_GetArraySize(arch) == 1 &&
              strcmp(arch->child->valuestring, CLIP_TEXT_CLASS) == 0);
    cr_assert_str_eq(json_str(o, "model_type"), "clip_text_model");
    cr_assert(cJSON_GetObjectItemCaseSensitive(o, "_class_name") == NULL);
    cJSON_Delete(o);
    FILE *f = fopen(path, "r");
    char text[4096];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    cr_assert(strstr(text, "\"initializer_factor\": 1.0,") &&
                  strstr(text, "\"layer_norm_eps\": 1e-06,"),
              "%s", text);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    StFile st;
    cr_assert_eq(st_open(&st, path, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(st_metadata_get(&st, "format"), "pt");
    cr_assert(st_find(&st, "embeddings.token_embedding.weight") >= 0);
    cr_assert(st_find(&st, "final_layer_norm.bias") >= 0);
    cr_assert_eq(st.n_tensors, model_layout(m)->count);
    st_close(&st);
    model_free(m);
}

/* ---- CLI ---- */

Test(clip_init, cli_init_text_encoder) {
    char args[1200], out[400];
    snprintf(out, sizeof out, "%s/te", test_tmp);
    snprintf(args, sizeof args, "init --config clip-tiny --seed 3 --out %s", out);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    JtError err;
    Model *m;
    cr_assert_eq(model_load(out, &m, &err), JT_OK, "%s", err.msg);
    ClipTextConfig cfg;
    clip_text_config_preset("clip-tiny", &cfg);
    Model *want = fresh(&cfg, 3);
    cr_assert(model_fingerprint(m) == model_fingerprint(want), "the CLI writes the seed's model");
    model_free(m), model_free(want);
    /* the same command again: accepted (the same model); another seed would replace it */
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    cli_expect_failure(g_err, sizeof g_err, 1, "init",
                       (const char *const[]){"holds another model", "--out", NULL},
                       "init --config clip-tiny --seed 4 --out %s", out);
    /* a transformers config.json (the gelu fixture's: vocabulary 1000, eos 999) */
    snprintf(args, sizeof args,
             "init --config " JTRAK_FIXTURES "/clip/clip2_gelu/config.json --out %s/g", test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(out, sizeof out, "%s/g", test_tmp);
    cr_assert_eq(model_load(out, &m, &err), JT_OK, "%s", err.msg);
    const ClipTextConfig *gc = clip_text_config(model_text_encoder(m));
    cr_assert(gc->vocab_size == 1000 && gc->eos_token_id == 999 && gc->hidden_act == CLIP_ACT_GELU);
    model_free(m);
    /* a folder as --config works too (its config.json) */
    snprintf(args, sizeof args, "init --config %s --out %s/g2", out, test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

Test(clip_init, cli_refusals) {
    char cfgp[400], outp[400];
    snprintf(outp, sizeof outp, "%s/o", test_tmp);
    snprintf(cfgp, sizeof cfgp, "%s/factor.json", test_tmp);
    write_text(cfgp, "{\"architectures\": [\"CLIPTextModel\"], \"hidden_size\": 32, "
                     "\"num_attention_heads\": 4, \"initializer_factor\": 2.0}");
    cli_expect_failure(g_err, sizeof g_err, 1, "init",
                       (const char *const[]){"factor.json", "initializer_factor", "factor 1", NULL},
                       "init --config %s --out %s", cfgp, outp);
    snprintf(cfgp, sizeof cfgp, "%s/act.json", test_tmp);
    write_text(cfgp, "{\"architectures\": [\"CLIPTextModel\"], \"hidden_act\": \"relu\"}");
    cli_expect_failure(g_err, sizeof g_err, 1, "init",
                       (const char *const[]){"act.json", "hidden_act", "relu", NULL},
                       "init --config %s --out %s", cfgp, outp);
    cli_expect_failure(g_err, sizeof g_err, 1, "init",
                       (const char *const[]){"clip-huge", "clip-tiny", "fm-s", NULL},
                       "init --config clip-huge --out %s", outp);
    cli_expect_failure(g_err, sizeof g_err, 2, "init", (const char *const[]){"--out", NULL},
                       "init --config clip-tiny");
    struct stat sb;
    cr_assert(stat(outp, &sb) != 0, "a refused init left its output folder");
}

/* The replace check around both kinds of folder: the same U-Net init again is accepted (its
 * fingerprint is taken after the draws), and a transformers folder is a model folder that
 * another init does not overwrite. */
Test(clip_init, cli_replace_check_both_kinds) {
    char args[1200];
    snprintf(args, sizeof args, "init --config t8 --out %s/u", test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(args, sizeof args, "init --config clip-tiny --out %s/te", test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    cli_expect_failure(g_err, sizeof g_err, 1, "init",
                       (const char *const[]){"holds another model", NULL},
                       "init --config t8 --out %s/te", test_tmp);
}
