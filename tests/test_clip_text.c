/* test_clip_text.c: jtrak's CLIPTextModel (src/text/clip_text.h) against transformers 5.23.0's, on
 * the fixtures of ref/make_clip_fixtures.py (tests/fixtures/clip/clip2_quick, clip2_gelu: 2 layers,
 * width 32, 4 heads, MLP 37, vocabulary 1000, ids (3, 77) padded with the EOS id and with id 0):
 *  - last_hidden_state, pooler_output and clip_skip 1 of both fixtures (quick_gelu + legacy
 *    eos_token_id 2 + "text_model." names + position_ids; gelu + eos_token_id 999 + transformers 5
 *    names);
 *  - the two weight-name layouts load to bit-identical outputs; model_load reads the folder;
 *  - causality (tokens >= j do not change outputs < j, bit for bit) and thread-count independence;
 *  - one clear error each for a refused hidden_act, a missing tensor, a wrong shape, an unknown
 *    tensor and an id out of range;
 *  - `jtrak info` and `jtrak encode-text` on a fixture folder. */
#include "core/common.h"
#include "core/linalg.h"
#include "helpers/cli_run.h"
#include "helpers/numcheck.h"
#include "helpers/read_file.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "text/clip_text.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FIX JTRAK_FIXTURES "/clip/"
#define B 3
#define L 77
#define D 32

static void suite_init(void) {
    la_blas_single_threaded();
    test_tmp_setup();
}
TestSuite(clip_text, .init = suite_init, .fini = test_tmp_teardown);

typedef struct {
    int ids[B * L];
    float last[B * L * D], pooled[B * D], skip1[B * L * D];
} Io;

static void read_io(const char *name, Io *io) {
    char path[512];
    snprintf(path, sizeof path, FIX "%s/io.safetensors", name);
    StFile f;
    JtError err;
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    int i = st_find(&f, "ids");
    cr_assert(i >= 0 && f.tensors[i].dtype == ST_I64 && f.tensors[i].numel == B * L);
    int64_t ids[B * L];
    cr_assert_eq(st_read_raw(&f, i, ids, &err), JT_OK, "%s", err.msg);
    for (int k = 0; k < B * L; k++)
        io->ids[k] = (int)ids[k];
    static const char *const names[3] = {"last_hidden_state", "pooler_output", "clip_skip1"};
    float *dst[3] = {io->last, io->pooled, io->skip1};
    const size_t n[3] = {B * L * D, B * D, B * L * D};
    for (int k = 0; k < 3; k++) {
        i = st_find(&f, names[k]);
        cr_assert(i >= 0 && f.tensors[i].numel == n[k], "%s", names[k]);
        cr_assert_eq(st_read_f32(&f, i, dst[k], &err), JT_OK, "%s", err.msg);
    }
    st_close(&f);
}

static ClipText *load(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, FIX "%s", name);
    ClipText *net;
    JtError err;
    cr_assert_eq(clip_text_load(&net, dir, &err), JT_OK, "%s", err.msg);
    return net;
}

/* last_hidden (B, L, D) and pooled (B, D) for ids with the given skip */
static void encode(const ClipText *net, const int *ids, int skip, float *last, float *pooled) {
    ClipTextRun *r;
    JtError err;
    cr_assert_eq(clip_text_run_create(&r, net, B, L, skip, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_text_forward(net, r, B, ids, last, pooled, &err), JT_OK, "%s", err.msg);
    clip_text_run_free(r);
}

/* ---- against transformers ---- */

/* Tolerance: float32 with another summation order than torch's (BLAS GEMMs, softmax, layer-norm
 * statistics). Measured max abs error over both fixtures: last_hidden_state 1.7e-6, pooled 1.4e-6,
 * clip_skip 1 1.9e-6, at outputs of |0.01|..|0.03|: the residual stream is small (token and
 * position embeddings ~ N(0, 0.02^2)) and the final layer norm multiplies its rounding by
 * 1/std ~ 50. 1e-5 abs (5x the measured) + 1e-5 rel; the smallest real errors measured in the twin
 * are far larger: quick_gelu for gelu moves outputs by 3.3e-2, one LayerNorm bias zeroed by
 * 1.2e-1. */
#define ATOL 1e-5
#define RTOL 1e-5

static void fixture_case(const char *name) {
    Io *io = xmalloc(sizeof *io);
    read_io(name, io);
    ClipText *net = load(name);
    float *last = xmalloc(sizeof io->last), *pooled = xmalloc(sizeof io->pooled);
    float *skip = xmalloc(sizeof io->skip1);
    encode(net, io->ids, 0, last, pooled);
    char what[128];
    snprintf(what, sizeof what, "%s last_hidden_state", name);
    NumDiff a = expect_close(what, last, io->last, B * L * D, ATOL, RTOL);
    snprintf(what, sizeof what, "%s pooler_output", name);
    NumDiff p = expect_close(what, pooled, io->pooled, B * D, ATOL, RTOL);
    encode(net, io->ids, 1, skip, NULL);
    snprintf(what, sizeof what, "%s clip_skip 1", name);
    NumDiff s = expect_close(what, skip, io->skip1, B * L * D, ATOL, RTOL);
    fprintf(stderr,
            "%s: max abs (rel) last %.2g (%.2g) at |%.2f|, pooled %.2g (%.2g), skip1 %.2g (%.2g) "
            "at |%.2f|\n",
            name, a.max_abs, a.max_rel, fabsf(io->last[a.worst]), p.max_abs, p.max_rel, s.max_abs,
            s.max_rel, fabsf(io->skip1[s.worst]));
    /* the skip is a different state (not the last one) */
    int differ = 0;
    for (size_t k = 0; k < B * L * D; k++)
        differ |= skip[k] != last[k];
    cr_assert(differ, "%s: the clip_skip state equals last_hidden_state", name);
    free(last);
    free(pooled);
    free(skip);
    clip_text_free(net);
    free(io);
}

Test(clip_text, quick_gelu_prefixed_matches_transformers) {
    fixture_case("clip2_quick");
}

Test(clip_text, gelu_matches_transformers) {
    fixture_case("clip2_gelu");
}

Test(clip_text, pool_position_conventions) {
    Io *io = xmalloc(sizeof *io);
    read_io("clip2_quick", io);
    ClipTextConfig c;
    clip_text_config_default(&c);
    c.vocab_size = 1000;
    c.eos_token_id = 2; /* legacy: argmax of the ids */
    static const int first_eos[B] = {11, 6, 76};
    for (int b = 0; b < B; b++)
        cr_assert_eq(clip_text_pool_position(&c, io->ids + b * L, L), first_eos[b]);
    c.eos_token_id = 999;
    for (int b = 0; b < B; b++)
        cr_assert_eq(clip_text_pool_position(&c, io->ids + b * L, L), first_eos[b]);
    int none[4] = {5, 7, 3, 1};
    cr_assert_eq(clip_text_pool_position(&c, none, 4), 0); /* torch's argmax of all-false */
    c.eos_token_id = 2;
    cr_assert_eq(clip_text_pool_position(&c, none, 4), 1);
    free(io);
}

/* ---- layouts, model table ---- */

Test(clip_text, both_name_layouts_load_identically) {
    Io *io = xmalloc(sizeof *io);
    read_io("clip2_quick", io);
    ClipText *a = load("clip2_quick"); /* text_model. prefix + position_ids */
    /* the same parameters written as transformers 5 names them (exactly the layout) */
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", test_tmp);
    JtError err;
    cr_assert_eq(model_slab_save(path, clip_text_layout(a), clip_text_params(a), &err), JT_OK);
    ClipText *b;
    cr_assert_eq(clip_text_create(&b, clip_text_config(a), &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_text_load_weights(b, path, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(
        memcmp(clip_text_params(a), clip_text_params(b), clip_text_num_params(a) * sizeof(float)),
        0);
    float *la = xmalloc(sizeof io->last), *lb = xmalloc(sizeof io->last);
    float pa[B * D], pb[B * D];
    encode(a, io->ids, 0, la, pa);
    encode(b, io->ids, 0, lb, pb);
    cr_assert_eq(memcmp(la, lb, sizeof io->last), 0);
    cr_assert_eq(memcmp(pa, pb, sizeof pa), 0);
    free(la);
    free(lb);
    clip_text_free(a);
    clip_text_free(b);
    free(io);
}

Test(clip_text, model_table_loads_the_folder) {
    Model *m;
    JtError err;
    cr_assert_eq(model_load(FIX "clip2_gelu", &m, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(model_kind(m)->class_name, "CLIPTextModel");
    cr_assert_null(model_unet(m));
    const ClipText *t = model_text_encoder_const(m);
    cr_assert_not_null(t);
    cr_assert_eq(clip_text_config(t)->hidden_act, CLIP_ACT_GELU);
    cr_assert_eq(model_layout(m)->total, 48106); /* transformers' count (make_clip_fixtures.py) */
    cr_assert_eq(model_layout(m)->count, 36);
    /* saved as transformers' folder (clip_text_save), it loads back as the same model */
    char dir[400];
    snprintf(dir, sizeof dir, "%s/saved", test_tmp);
    cr_assert_eq(model_save(m, dir, &err), JT_OK, "%s", err.msg);
    Model *back;
    cr_assert_eq(model_load(dir, &back, &err), JT_OK, "%s", err.msg);
    cr_assert(model_fingerprint(back) == model_fingerprint(m));
    model_free(back);
    model_free(m);
}

/* ---- properties ---- */

Test(clip_text, causal) {
    Io *io = xmalloc(sizeof *io);
    read_io("clip2_gelu", io);
    ClipText *net = load("clip2_gelu");
    float *a = xmalloc(sizeof io->last), *b = xmalloc(sizeof io->last);
    encode(net, io->ids, 0, a, NULL);
    const int j = 20;
    int ids2[B * L];
    memcpy(ids2, io->ids, sizeof ids2);
    for (int e = 0; e < B; e++)
        for (int l = j; l < L; l++)
            ids2[e * L + l] = (ids2[e * L + l] * 7 + 13 + l) % 1000;
    encode(net, ids2, 0, b, NULL);
    int later = 0;
    for (int e = 0; e < B; e++) {
        cr_assert_eq(memcmp(a + (size_t)e * L * D, b + (size_t)e * L * D, (size_t)j * D * 4), 0,
                     "prompt %d: outputs before token %d changed", e, j);
        for (int k = j * D; k < L * D; k++)
            later |= a[e * L * D + k] != b[e * L * D + k];
    }
    cr_assert(later, "changing tokens >= %d changed no output at all", j);
    free(a);
    free(b);
    clip_text_free(net);
    free(io);
}

Test(clip_text, thread_count_independent) {
    Io *io = xmalloc(sizeof *io);
    read_io("clip2_quick", io);
    ClipText *net = load("clip2_quick");
    float *a = xmalloc(sizeof io->last), *b = xmalloc(sizeof io->last);
    float pa[B * D], pb[B * D];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    encode(net, io->ids, 0, a, pa);
    omp_set_num_threads(3);
    encode(net, io->ids, 0, b, pb);
    omp_set_num_threads(saved);
    cr_assert_eq(memcmp(a, b, sizeof io->last), 0);
    cr_assert_eq(memcmp(pa, pb, sizeof pa), 0);
    free(a);
    free(b);
    clip_text_free(net);
    free(io);
}

/* ---- bad input: one clear message each ---- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_msg(const char *msg, const char *const *want) {
    cr_assert_null(strchr(msg, '\n'), "not one line: %s", msg);
    for (int i = 0; want[i]; i++)
        cr_assert(strstr(msg, want[i]), "'%s' not in: %s", want[i], msg);
}

Test(clip_text, refused_hidden_act) {
    char *text = test_read_file(FIX "clip2_gelu/config.json", NULL);
    char *p = strstr(text, "\"gelu\"");
    cr_assert_not_null(p);
    char edited[8192];
    snprintf(edited, sizeof edited, "%.*s\"relu\"%s", (int)(p - text), text, p + 6);
    free(text);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", test_tmp);
    write_file(path, edited);
    ClipText *net = (ClipText *)1;
    JtError err;
    cr_assert_eq(clip_text_load(&net, test_tmp, &err), JT_ERR);
    cr_assert_null(net);
    expect_msg(err.msg, (const char *const[]){"config.json", "'hidden_act'", "\"relu\"",
                                              "quick_gelu", NULL});
}

Test(clip_text, refused_unknown_config_field) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", test_tmp);
    write_file(path, "{\"architectures\": [\"CLIPTextModel\"], \"hidden_size\": 32, "
                     "\"num_attention_heads\": 4, \"rope_theta\": 10000}");
    ClipText *net;
    JtError err;
    cr_assert_eq(clip_text_load(&net, test_tmp, &err), JT_ERR);
    expect_msg(err.msg, (const char *const[]){"config.json", "rope_theta", NULL});
    write_file(path, "{\"hidden_size\": 30, \"num_attention_heads\": 4}");
    cr_assert_eq(clip_text_load(&net, test_tmp, &err), JT_ERR);
    expect_msg(err.msg, (const char *const[]){"'num_attention_heads'", "divide", NULL});
}

/* The quick fixture's parameters written under transformers 5 names, with entry `drop` left out
 * (-1: none) and entry `reshape` written with a wrong first dimension (-1: none), plus an extra
 * tensor when `extra`. */
static void write_weights(const ClipText *net, const char *path, int drop, int reshape, int extra) {
    const ParamLayout *l = clip_text_layout(net);
    StWriter w;
    st_writer_init(&w);
    static float junk[4];
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        if (i == drop) continue;
        int shape[LAYOUT_MAX_DIMS];
        memcpy(shape, e->shape, sizeof shape);
        if (i == reshape) shape[0] -= 1;
        st_writer_add_f32_dims(&w, e->name, ST_F32, e->ndim, shape,
                               clip_text_params_const(net) + e->offset);
    }
    if (extra) st_writer_add_f32_dims(&w, "text_projection.weight", ST_F32, 1, (int[]){4}, junk);
    JtError err;
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
}

static void expect_weights_refused(int drop, int reshape, int extra, const char *const *want) {
    ClipText *src = load("clip2_quick");
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", test_tmp);
    write_weights(src, path, drop, reshape, extra);
    ClipText *net;
    JtError err;
    cr_assert_eq(clip_text_create(&net, clip_text_config(src), &err), JT_OK);
    cr_assert_eq(clip_text_load_weights(net, path, &err), JT_ERR);
    expect_msg(err.msg, want);
    /* nothing half-loaded: the parameters are still the zeros of clip_text_create */
    for (size_t k = 0; k < clip_text_num_params(net); k++)
        cr_assert_eq(clip_text_params(net)[k], 0.0f, "parameter %zu changed", k);
    clip_text_free(net);
    clip_text_free(src);
}

Test(clip_text, missing_tensor) {
    ClipText *src = load("clip2_quick");
    int i = layout_find(clip_text_layout(src), "final_layer_norm.bias");
    clip_text_free(src);
    expect_weights_refused(
        i, -1, 0,
        (const char *const[]){"bad.safetensors", "'final_layer_norm.bias'", "missing", NULL});
}

Test(clip_text, wrong_shape) {
    ClipText *src = load("clip2_quick");
    int i = layout_find(clip_text_layout(src), "encoder.layers.1.mlp.fc1.weight");
    clip_text_free(src);
    expect_weights_refused(
        -1, i, 0,
        (const char *const[]){"'encoder.layers.1.mlp.fc1.weight'", "[36,32]", "[37,32]", NULL});
}

Test(clip_text, unknown_tensor) {
    expect_weights_refused(-1, -1, 1,
                           (const char *const[]){"'text_projection.weight'", "unknown", NULL});
}

Test(clip_text, id_out_of_range) {
    Io *io = xmalloc(sizeof *io);
    read_io("clip2_quick", io);
    ClipText *net = load("clip2_quick");
    ClipTextRun *r;
    JtError err;
    cr_assert_eq(clip_text_run_create(&r, net, B, L, 0, &err), JT_OK);
    io->ids[1 * L + 9] = 1000;
    float *last = xmalloc(sizeof io->last);
    memset(last, 0, sizeof io->last);
    cr_assert_eq(clip_text_forward(net, r, B, io->ids, last, NULL, &err), JT_ERR);
    expect_msg(err.msg, (const char *const[]){"prompt 1", "position 9", "1000", "0..999", NULL});
    for (size_t k = 0; k < B * L * D; k++)
        cr_assert_eq(last[k], 0.0f); /* nothing written */
    io->ids[1 * L + 9] = -1;
    cr_assert_eq(clip_text_forward(net, r, B, io->ids, last, NULL, &err), JT_ERR);
    expect_msg(err.msg, (const char *const[]){"position 9", "-1", NULL});
    /* run sizes */
    ClipTextRun *bad;
    cr_assert_eq(clip_text_run_create(&bad, net, 1, 78, 0, &err), JT_ERR);
    expect_msg(err.msg, (const char *const[]){"78 tokens", "max_position_embeddings", NULL});
    cr_assert_eq(clip_text_run_create(&bad, net, 1, L, 2, &err), JT_ERR);
    expect_msg(err.msg, (const char *const[]){"clip skip 2", "0 to 1", NULL});
    clip_text_run_free(r);
    free(last);
    clip_text_free(net);
    free(io);
}

/* ---- CLI ---- */

static char g_out[8192], g_err[8192];

Test(clip_text, cli_info) {
    int st = cli_run_out("info " FIX "clip2_quick", g_out, sizeof g_out, g_err, sizeof g_err);
    cr_assert_eq(st, 0, "%s", g_err);
    static const char *const want[] = {"class: CLIPTextModel",
                                       "2 layers",
                                       "width 32",
                                       "quick_gelu",
                                       "parameters: 48106 in 36 tensors",
                                       "fingerprint: ",
                                       NULL};
    for (int i = 0; want[i]; i++)
        cr_assert(strstr(g_out, want[i]), "'%s' not in: %s", want[i], g_out);
}

/* A config without weights, of any class jtrak reads: the clip-tiny preset, a CLIPTextModel
 * config.json and an AutoencoderKL config.json are described (no fingerprint), not refused as
 * "not a U-Net". */
Test(clip_text, cli_info_of_configs) {
    static const struct {
        const char *spec, *want[3];
    } cases[] = {
        {"clip-tiny", {"class: CLIPTextModel", "parameters: 1597162 in 36 tensors", "vocabulary 49408"}},
        {FIX "clip2_quick/config.json", {"class: CLIPTextModel", "parameters: 48106", "quick_gelu"}},
        {JTRAK_FIXTURES "/vae/vae3_32/config.json", {"class: AutoencoderKL", "latent: 4x8x8", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[600];
        snprintf(args, sizeof args, "info %s", cases[i].spec);
        int st = cli_run_out(args, g_out, sizeof g_out, g_err, sizeof g_err);
        cr_assert_eq(st, 0, "jtrak %s: %s", args, g_err);
        cr_assert(strstr(g_out, "fingerprint: none (a config without weights)"), "%s", g_out);
        for (int k = 0; k < 3 && cases[i].want[k]; k++)
            cr_assert(strstr(g_out, cases[i].want[k]), "'%s' not in: %s", cases[i].want[k], g_out);
    }
}

static void write_ids(const char *path, NpyDtype dt, const int *ids) {
    size_t shape[2] = {B, L};
    JtError err;
    if (dt == NPY_I64) {
        int64_t v[B * L];
        for (int k = 0; k < B * L; k++)
            v[k] = ids[k];
        cr_assert_eq(npy_write(path, dt, 2, shape, v, &err), JT_OK, "%s", err.msg);
    } else {
        cr_assert_eq(npy_write(path, dt, 2, shape, ids, &err), JT_OK, "%s", err.msg);
    }
}

Test(clip_text, cli_encode_text) {
    Io *io = xmalloc(sizeof *io);
    read_io("clip2_quick", io);
    static const NpyDtype dts[2] = {NPY_I32, NPY_I64};
    for (int s = 0; s < 2; s++) {
        char ids[512], out[512];
        snprintf(ids, sizeof ids, "%s/ids%d.npy", test_tmp, s);
        snprintf(out, sizeof out, "%s/ctx%d.npy", test_tmp, s);
        write_ids(ids, dts[s], io->ids);
        char cmd[1600];
        snprintf(cmd, sizeof cmd,
                 "encode-text --text-encoder " FIX "clip2_quick --ids %s --out %s%s", ids, out,
                 s ? " --clip-skip 1 --batch 2" : "");
        int st = cli_run_out(cmd, g_out, sizeof g_out, g_err, sizeof g_err);
        cr_assert_eq(st, 0, "%s", g_err);
        NpyHeader h;
        float *ctx;
        JtError err;
        cr_assert_eq(npy_read_as(out, NPY_F32, &h, (void **)&ctx, &err), JT_OK, "%s", err.msg);
        cr_assert(h.ndim == 3 && h.shape[0] == B && h.shape[1] == L && h.shape[2] == D);
        expect_close("encode-text", ctx, s ? io->skip1 : io->last, B * L * D, ATOL, RTOL);
        free(ctx);
        char man[600];
        snprintf(man, sizeof man, "%s.json", out);
        cJSON *mj = json_load_file(man, &err);
        cr_assert_not_null(mj, "%s", err.msg);
        Model *m;
        cr_assert_eq(model_load(FIX "clip2_quick", &m, &err), JT_OK);
        char fp[17];
        cr_assert_str_eq(json_str(mj, "text_encoder_fingerprint"),
                         model_fingerprint_hex(model_fingerprint(m), fp));
        model_free(m);
        cr_assert_eq(cJSON_GetObjectItem(mj, "clip_skip")->valuedouble, s);
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(mj, "shape")), 3);
        cr_assert_not_null(json_str(mj, "ids_fnv1a64"));
        cJSON_Delete(mj);
    }
    /* an id out of range: one line, exit 1, no output and no manifest left behind */
    io->ids[2 * L + 5] = 5000;
    char ids[512], out[600];
    snprintf(ids, sizeof ids, "%s/bad.npy", test_tmp);
    snprintf(out, sizeof out, "%s/bad_ctx.npy", test_tmp);
    write_ids(ids, NPY_I64, io->ids);
    cli_expect_failure(g_err, sizeof g_err, 1, "encode-text",
                       (const char *const[]){"prompt 2", "position 5", "5000", NULL},
                       "encode-text --text-encoder " FIX "clip2_quick --ids %s --out %s", ids, out);
    struct stat sb;
    cr_assert_neq(stat(out, &sb), 0, "output left behind");
    strcat(out, ".json");
    cr_assert_neq(stat(out, &sb), 0, "manifest left behind");
    /* float ids are refused */
    size_t shape[2] = {1, 2};
    float f[2] = {1, 2};
    JtError err;
    cr_assert_eq(npy_write(ids, NPY_F32, 2, shape, f, &err), JT_OK);
    cli_expect_failure(g_err, sizeof g_err, 1, "encode-text",
                       (const char *const[]){"bad.npy", "int32 or int64", NULL},
                       "encode-text --text-encoder " FIX "clip2_quick --ids %s --out %s", ids, out);
    free(io);
}

Test(clip_text, cli_unet_commands_refuse_a_text_encoder) {
    cli_expect_failure(g_err, sizeof g_err, 1, "sample",
                       (const char *const[]){"clip2_quick", "CLIPTextModel", "UNet2DModel", NULL},
                       "sample --model " FIX "clip2_quick --out %s/s --n 1", test_tmp);
}

Test(clip_text, cli_encode_text_refuses_a_unet_folder) {
    char ids[512];
    snprintf(ids, sizeof ids, "%s/ids.npy", test_tmp);
    int v[2] = {1, 2};
    size_t shape[2] = {1, 2};
    JtError err;
    cr_assert_eq(npy_write(ids, NPY_I32, 2, shape, v, &err), JT_OK);
    cli_expect_failure(
        g_err, sizeof g_err, 1, "encode-text",
        (const char *const[]){"fm3_12x12", "UNet2DModel", "not a CLIPTextModel", NULL},
        "encode-text --text-encoder " JTRAK_FIXTURES "/unet/fm3_12x12 --ids %s --out %s/o.npy", ids,
        test_tmp);
}
