/* test_model.c: the model class table and the loaded-model handle (src/model/): a config.json is
 * dispatched on its "_class_name" (absent: UNet2DModel; an unknown class and a known but
 * unsupported one each refused in one line naming the file and the class), the config-field
 * machinery refuses unknown fields, wrong JSON types and values out of range by name, the writer
 * is byte-identical to the writer before the table (goldens in tests/fixtures/model/to_json, one
 * per committed config and fixture), and the one fingerprint is cached at load, kept by a save and
 * reload, and changed by one weight. */
#include "core/config_fields.h"
#include "model/model.h"
#include "model/model_kind.h"

#include "helpers/tmpdir.h"
#include "io/model_folder.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TestSuite(model, .init = test_tmp_setup, .fini = test_tmp_teardown);

static char *read_all(const char *path) {
    char *text;
    JtError err = {{0}};
    cr_assert_eq(cf_read_file(path, &text, &err), JT_OK, "%s", err.msg);
    return text;
}

/* A folder under test_tmp holding config.json = text (and no weights). */
static const char *config_folder(const char *name, const char *text) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", test_tmp, name);
    cr_assert_eq(mkdir(dir, 0755), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
    return dir;
}

/* model_load of `text` must fail naming the config file and every string in `want`. */
static void expect_load_refused(const char *text, const char *const *want) {
    const char *dir = config_folder("m", text);
    Model *m = (Model *)1;
    JtError err = {{0}};
    cr_assert_eq(model_load(dir, &m, &err), JT_ERR, "accepted %s", text);
    cr_assert_null(m);
    cr_log_info("%s", err.msg);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert(strstr(err.msg, path) != NULL, "error lacks the file: %s", err.msg);
    for (int i = 0; want[i]; i++)
        cr_assert(strstr(err.msg, want[i]) != NULL, "error lacks \"%s\": %s", want[i], err.msg);
    cr_assert(strchr(err.msg, '\n') == NULL, "not one line: %s", err.msg);
}

/* The T8 config (configs/t8.json) with `key` set to the JSON text `value`. */
static char *t8_with(const char *key, const char *value) {
    char *t8 = read_all(JTRAK_SOURCE_DIR "/configs/t8.json");
    cJSON *root = cJSON_Parse(t8);
    free(t8);
    cJSON *v = cJSON_Parse(value);
    cr_assert_not_null(v, "bad test value %s", value);
    if (cJSON_GetObjectItemCaseSensitive(root, key))
        cJSON_ReplaceItemInObjectCaseSensitive(root, key, v);
    else
        cJSON_AddItemToObject(root, key, v);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

static void expect_t8_refused(const char *key, const char *value, const char *const *want) {
    char *text = t8_with(key, value);
    expect_load_refused(text, want);
    free(text);
}

/* ---- the class table ---- */

Test(model, table_rows) {
    const ModelKind *k = model_kind_find("UNet2DModel");
    cr_assert(k && k->supported && k->parse && k->to_json && k->create);
    k = model_kind_find("UNet2DConditionModel");
    cr_assert(k && k->supported && k->parse && k->to_json && k->create);
    static const char *const known[] = {"VQModel", "CLIPTextModelWithProjection", NULL};
    for (int i = 0; known[i]; i++) {
        k = model_kind_find(known[i]);
        cr_assert(k && !k->supported && k->refusal && !k->parse, "%s", known[i]);
    }
    cr_assert_null(model_kind_find("UNet3DConditionModel"));
    cr_assert_null(model_kind_find(NULL));
    k = model_kind_find("AutoencoderKL");
    cr_assert(k && k->supported && k->parse && k->to_json && k->create);
    k = model_kind_find("CLIPTextModel");
    cr_assert(k && k->supported && k->parse && k->to_json && k->create);
    cr_assert_str_eq(model_kind_supported_names(),
                     "UNet2DModel, UNet2DConditionModel, AutoencoderKL, CLIPTextModel");
}

Test(model, unknown_class_refused) {
    expect_t8_refused(
        "_class_name", "\"MyFancyNet\"",
        (const char *const[]){"'_class_name'", "\"MyFancyNet\"", "supported: UNet2DModel", NULL});
}

Test(model, known_unsupported_class_refused) {
    static const char *const classes[] = {"VQModel", "CLIPTextModelWithProjection", NULL};
    for (int i = 0; classes[i]; i++) {
        char value[64];
        snprintf(value, sizeof value, "\"%s\"", classes[i]);
        expect_t8_refused("_class_name", value,
                          (const char *const[]){classes[i], "is not supported yet",
                                                "jtrak supports UNet2DModel", NULL});
        test_rm_tree(test_tmp), mkdir(test_tmp, 0755);
    }
    /* transformers' configs name the class in "architectures" instead */
    expect_load_refused(
        "{\"architectures\": [\"CLIPTextModelWithProjection\"], \"hidden_size\": 768}",
        (const char *const[]){"CLIPTextModelWithProjection", "not supported yet", NULL});
}

Test(model, class_name_not_a_string) {
    expect_t8_refused("_class_name", "3", (const char *const[]){"'_class_name'", "string", NULL});
}

Test(model, unknown_field_refused) {
    expect_t8_refused(
        "cross_attention_dim", "768",
        (const char *const[]){"field 'cross_attention_dim'", "unknown field", "UNet2DModel", NULL});
}

Test(model, wrong_type_refused) {
    expect_t8_refused(
        "layers_per_block", "[1]",
        (const char *const[]){"field 'layers_per_block'", "expected an integer", "a list", NULL});
    test_rm_tree(test_tmp), mkdir(test_tmp, 0755);
    expect_t8_refused(
        "add_attention", "\"yes\"",
        (const char *const[]){"field 'add_attention'", "expected true or false", NULL});
}

Test(model, out_of_range_refused) {
    expect_t8_refused(
        "num_class_embeds", "100001",
        (const char *const[]){"field 'num_class_embeds'", "100001", "at most 100000", NULL});
    test_rm_tree(test_tmp), mkdir(test_tmp, 0755);
    expect_t8_refused(
        "out_channels", "0",
        (const char *const[]){"field 'out_channels'", "out of range (must be >= 1)", NULL});
}

Test(model, missing_weights_named) {
    char *t8 = read_all(JTRAK_SOURCE_DIR "/configs/t8.json");
    const char *dir = config_folder("m", t8);
    free(t8);
    Model *m;
    JtError err = {{0}};
    cr_assert_eq(model_load(dir, &m, &err), JT_ERR);
    cr_assert(strstr(err.msg, MODEL_WEIGHTS_FILE) && strstr(err.msg, "cannot open"), "%s", err.msg);
    cr_assert_eq(model_load(test_tmp, &m, &err), JT_ERR); /* no config.json */
    cr_assert(strstr(err.msg, "config.json") && strstr(err.msg, "cannot open"), "%s", err.msg);
}

/* ---- the writer: byte-identical to the writer before the table ---- */

Test(model, to_json_byte_identical_to_goldens) {
    static const char *const configs[] = {"fm-s", "fm-xs", "t8", NULL};
    static const char *const fixtures[] = {"fm3_12x12",
                                           "fm3_12x12_f16",
                                           "google4_16x16",
                                           "google4_16x16_legacy",
                                           "multihead3_8x8",
                                           "rect2_8x12",
                                           NULL};
    for (int pass = 0; pass < 2; pass++) {
        const char *const *names = pass ? fixtures : configs;
        for (int i = 0; names[i]; i++) {
            char src[512], golden[512];
            if (pass)
                snprintf(src, sizeof src, "%s/unet/%s/config.json", JTRAK_FIXTURES, names[i]);
            else
                snprintf(src, sizeof src, "%s/configs/%s.json", JTRAK_SOURCE_DIR, names[i]);
            snprintf(golden, sizeof golden, "%s/model/to_json/%s.json", JTRAK_FIXTURES, names[i]);
            const ModelKind *k;
            void *cfg;
            JtError err = {{0}};
            cr_assert_eq(model_kind_load_config(src, &k, &cfg, &err), JT_OK, "%s", err.msg);
            cr_assert_str_eq(k->class_name, "UNet2DModel");
            char *got = k->to_json(cfg), *want = read_all(golden);
            cr_assert_str_eq(got, want, "%s: to_json differs from %s", src, golden);
            free(got), free(want), free(cfg);
        }
    }
}

/* A config.json without "_class_name" is read as UNet2DModel (as before the table). */
Test(model, no_class_name_is_unet2d) {
    char *t8 = read_all(JTRAK_SOURCE_DIR "/configs/t8.json");
    cJSON *root = cJSON_Parse(t8);
    free(t8);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "_class_name");
    const ModelKind *k;
    JtError err = {{0}};
    cr_assert_eq(model_kind_of_config(root, "x/config.json", &k, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(k->class_name, "UNet2DModel");
    cJSON_Delete(root);
}

/* ---- the fingerprint ---- */

Test(model, fingerprint_cached_saved_and_changed) {
    Model *m;
    JtError err = {{0}};
    cr_assert_eq(model_load(JTRAK_FIXTURES "/unet/fm3_12x12", &m, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(model_kind(m)->class_name, "UNet2DModel");
    const uint64_t fp = model_fingerprint(m);
    cr_assert_eq(fp, model_fingerprint_of(model_unet(m)));
    char hex[17];
    cr_assert_eq(strlen(model_fingerprint_hex(fp, hex)), 16);

    char dir[512];
    snprintf(dir, sizeof dir, "%s/saved/fm3", test_tmp);
    cr_assert_eq(model_save(m, dir, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_fingerprint(m), fp, "a save of the same model changed the fingerprint");
    Model *back;
    cr_assert_eq(model_load(dir, &back, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_fingerprint(back), fp, "save + reload changed the fingerprint");

    /* one weight: the cached value stays until refreshed (or saved) */
    model_params(back)[17] += 1.0f;
    cr_assert_eq(model_fingerprint(back), fp);
    model_refresh_fingerprint(back);
    const uint64_t fp2 = model_fingerprint(back);
    cr_assert_neq(fp2, fp, "changing a weight kept the fingerprint");
    cr_assert_eq(fp2, model_fingerprint_of(model_unet(back)));
    cr_assert_eq(model_save(back, dir, &err), JT_OK, "%s", err.msg);
    model_free(back);
    cr_assert_eq(model_load(dir, &back, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_fingerprint(back), fp2);
    model_free(back);
    model_free(m);
}

Test(model, create_is_zero_unet) {
    UNetConfig c;
    JtError err = {{0}};
    cr_assert_eq(unet_config_load(&c, JTRAK_SOURCE_DIR "/configs/t8.json", &err), JT_OK, "%s",
                 err.msg);
    Model *m;
    cr_assert_eq(model_create(&m, &c, &err), JT_OK, "%s", err.msg);
    const ParamLayout *l = model_layout(m);
    for (size_t i = 0; i < l->total; i++)
        cr_assert(model_params(m)[i] == 0.0f);
    cr_assert_eq(model_unet_const(m), model_unet(m));
    cr_assert_eq(model_fingerprint(m), model_fingerprint_of(model_unet(m)));
    model_free(m);
    model_free(NULL);
}

/* ---- the field machinery beyond UNet2DModel: rows the next classes need ---- */

typedef struct {
    int n, ch[4], layers[4], n_layers, act, attn_type, flag;
    float scale;
} ToyConfig;

static const char *const ACTS[] = {"silu", "gelu", NULL};
static const char *const ATTN[] = {"default", "fused", NULL};
static const int TOY_CH[2] = {64, 128};
/* clang-format off */
static const ConfigField TOY[] = {
    {.name = "block_out_channels", .type = CF_INT_LIST, .offset = offsetof(ToyConfig, ch),
     .count_offset = offsetof(ToyConfig, n), .flags = CF_MIN, .min = 1, .max_len = 4,
     .def_list = TOY_CH, .def_len = 2},
    {.name = "transformer_layers_per_block", .type = CF_INT_OR_LIST,
     .offset = offsetof(ToyConfig, layers), .count_offset = offsetof(ToyConfig, n_layers),
     .flags = CF_MIN, .min = 1, .max_len = 4, .def_int = 1},
    {.name = "act_fn", .type = CF_CHOICE, .offset = offsetof(ToyConfig, act), .choices = ACTS},
    {.name = "attention_type", .type = CF_CHOICE, .offset = offsetof(ToyConfig, attn_type),
     .flags = CF_NULLABLE, .choices = ATTN, .def_int = -1},
    {.name = "scaling_factor", .type = CF_FLOAT, .offset = offsetof(ToyConfig, scale),
     .flags = CF_GT_MIN | CF_MAX, .min = 0, .max = 10, .def_float = 0.18215},
    {.name = "force_upcast", .type = CF_BOOL, .offset = offsetof(ToyConfig, flag), .def_int = 1},
};
/* clang-format on */
#define N_TOY ((int)(sizeof TOY / sizeof TOY[0]))

static int toy_parse(ToyConfig *c, const char *text, JtError *err) {
    void *root;
    cr_assert_eq(cf_json_parse(text, "toy.json", &root, err), JT_OK, "%s", err->msg);
    memset(c, 0, sizeof *c);
    cf_defaults(TOY, N_TOY, c);
    int rc = cf_parse(TOY, N_TOY, "ToyModel", root, c, NULL, "toy.json", err);
    cf_json_free(root);
    return rc;
}

Test(model, field_rows_for_the_next_classes) {
    ToyConfig c;
    JtError err = {{0}};
    cr_assert_eq(toy_parse(&c, "{}", &err), JT_OK, "%s", err.msg);
    cr_assert(c.n == 2 && c.ch[1] == 128 && c.n_layers == 0 && c.layers[0] == 1);
    cr_assert(c.attn_type == -1 && c.flag == 1 && c.scale == 0.18215f);
    char *text = cf_to_json(TOY, N_TOY, "ToyModel", &c);
    cr_assert(strstr(text, "\"attention_type\": null") &&
                  strstr(text, "\"scaling_factor\": 0.18215"),
              "%s", text);
    cr_assert(strstr(text, "\"transformer_layers_per_block\": 1\n"), "%s", text);
    ToyConfig d;
    cr_assert_eq(toy_parse(&d, text, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0, "round trip");
    free(text);

    cr_assert_eq(toy_parse(&c,
                           "{\"transformer_layers_per_block\": [1, 2, 10], \"attention_type\": "
                           "\"fused\", \"act_fn\": \"gelu\"}",
                           &err),
                 JT_OK, "%s", err.msg);
    cr_assert(c.n_layers == 3 && c.layers[2] == 10 && c.attn_type == 1 && c.act == 1);
    text = cf_to_json(TOY, N_TOY, "ToyModel", &c);
    cr_assert(strstr(text, "\"transformer_layers_per_block\": [1, 2, 10]"), "%s", text);
    free(text);

    cr_assert_eq(toy_parse(&c, "{\"scaling_factor\": 11}", &err), JT_ERR);
    cr_assert(strstr(err.msg, "toy.json: field 'scaling_factor': 11 is out of range (must be 0 to "
                              "10)"),
              "%s", err.msg);
    cr_assert_eq(toy_parse(&c, "{\"transformer_layers_per_block\": \"2\"}", &err), JT_ERR);
    cr_assert(strstr(err.msg, "expected an integer or a list"), "%s", err.msg);
    cr_assert_eq(toy_parse(&c, "{\"act_fn\": null}", &err), JT_ERR);
    cr_assert(strstr(err.msg, "null is not supported (silu or gelu)"), "%s", err.msg);
    cr_assert_eq(toy_parse(&c, "{\"a\": 1}", &err), JT_ERR);
    cr_assert(strstr(err.msg, "field 'a': unknown field (not a ToyModel parameter)"), "%s",
              err.msg);
    cr_assert_eq(toy_parse(&c, "{\"_anything\": [1], \"force_upcast\": false}", &err), JT_OK);
    cr_assert_eq(c.flag, 0);
}
