/* test_config.c: UNet2DModel config.json parsing, validation and serialisation
 * (src/unet/config.c) against diffusers 0.42.1: the config.json that diffusers' save_config writes
 * for the Journey-TRAK model (unet2d.md 1.1) parses to unet_config_default, the
 * google/ddpm-cifar10-32 differences (1.2) are honoured, absent fields take the class defaults,
 * to_json round trips, and each refused input (one test per refused field kind, wrong types,
 * unknown fields, invalid JSON, missing lists and files, group and head counts that do not divide)
 * is an error naming the file and the field. */
#include "unet/config.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PATH "models/jt/config.json"

/* Exactly what diffusers 0.42.1 UNet2DModel(...JT...).save_config wrote. */
static const char *JT_JSON =
    "{\n"
    "  \"_class_name\": \"UNet2DModel\",\n"
    "  \"_diffusers_version\": \"0.42.1\",\n"
    "  \"act_fn\": \"silu\",\n"
    "  \"add_attention\": true,\n"
    "  \"attention_head_dim\": null,\n"
    "  \"attn_norm_num_groups\": null,\n"
    "  \"block_out_channels\": [\n    128,\n    256,\n    256,\n    256\n  ],\n"
    "  \"center_input_sample\": false,\n"
    "  \"class_embed_type\": null,\n"
    "  \"down_block_types\": [\n    \"DownBlock2D\",\n    \"AttnDownBlock2D\",\n"
    "    \"DownBlock2D\",\n    \"DownBlock2D\"\n  ],\n"
    "  \"downsample_padding\": 1,\n"
    "  \"downsample_type\": \"conv\",\n"
    "  \"dropout\": 0.0,\n"
    "  \"flip_sin_to_cos\": true,\n"
    "  \"freq_shift\": 0,\n"
    "  \"in_channels\": 3,\n"
    "  \"layers_per_block\": 2,\n"
    "  \"mid_block_scale_factor\": 1,\n"
    "  \"mid_block_type\": \"UNetMidBlock2D\",\n"
    "  \"norm_eps\": 1e-05,\n"
    "  \"norm_num_groups\": 32,\n"
    "  \"num_class_embeds\": null,\n"
    "  \"num_train_timesteps\": null,\n"
    "  \"out_channels\": 3,\n"
    "  \"resnet_time_scale_shift\": \"default\",\n"
    "  \"sample_size\": 32,\n"
    "  \"time_embedding_dim\": null,\n"
    "  \"time_embedding_type\": \"positional\",\n"
    "  \"up_block_types\": [\n    \"UpBlock2D\",\n    \"UpBlock2D\",\n    \"AttnUpBlock2D\",\n"
    "    \"UpBlock2D\"\n  ],\n"
    "  \"upsample_type\": \"conv\"\n"
    "}\n";

static void expect_same_config(const UNetConfig *a, const UNetConfig *b) {
    cr_assert_eq(a->sample_size, b->sample_size);
    cr_assert_eq(a->in_channels, b->in_channels);
    cr_assert_eq(a->out_channels, b->out_channels);
    cr_assert_eq(a->center_input_sample, b->center_input_sample);
    cr_assert_eq(a->time_embedding_dim, b->time_embedding_dim);
    cr_assert(a->freq_shift == b->freq_shift);
    cr_assert_eq(a->flip_sin_to_cos, b->flip_sin_to_cos);
    cr_assert_eq(a->n_levels, b->n_levels);
    for (int i = 0; i < a->n_levels; i++) {
        cr_assert_eq(a->block_out_channels[i], b->block_out_channels[i], "level %d", i);
        cr_assert_eq(a->down_attn[i], b->down_attn[i], "level %d", i);
        cr_assert_eq(a->up_attn[i], b->up_attn[i], "level %d", i);
    }
    cr_assert_eq(a->layers_per_block, b->layers_per_block);
    cr_assert(a->mid_block_scale_factor == b->mid_block_scale_factor);
    cr_assert_eq(a->downsample_padding, b->downsample_padding);
    cr_assert_eq(a->attention_head_dim, b->attention_head_dim);
    cr_assert_eq(a->norm_num_groups, b->norm_num_groups);
    cr_assert_eq(a->attn_norm_num_groups, b->attn_norm_num_groups);
    cr_assert(a->norm_eps == b->norm_eps, "norm_eps %.9g vs %.9g", (double)a->norm_eps,
              (double)b->norm_eps);
    cr_assert_eq(a->add_attention, b->add_attention);
    cr_assert_eq(a->num_train_timesteps, b->num_train_timesteps);
    cr_assert_eq(a->num_class_embeds, b->num_class_embeds);
}

/* JT_JSON with field `key` replaced by the JSON text `value` (removed if value is NULL). */
static char *patched(const char *key, const char *value) {
    cJSON *root = cJSON_Parse(JT_JSON);
    cr_assert_not_null(root);
    if (value) {
        cJSON *v = cJSON_Parse(value);
        cr_assert_not_null(v, "bad test value %s", value);
        if (cJSON_GetObjectItemCaseSensitive(root, key))
            cJSON_ReplaceItemInObjectCaseSensitive(root, key, v);
        else
            cJSON_AddItemToObject(root, key, v);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

/* Parsing `text` must fail with "PATH: field 'field'" and `why` in the message. */
static void expect_refused_text(const char *text, const char *field, const char *why) {
    UNetConfig cfg;
    unet_config_default(&cfg);
    cfg.in_channels = -77; /* must be left alone on failure */
    JtError err = {{0}};
    cr_assert_eq(unet_config_parse(&cfg, text, PATH, &err), JT_ERR, "accepted: %s", text);
    cr_log_info("%s", err.msg);
    char want[160];
    snprintf(want, sizeof want, "%s: field '%s'", PATH, field);
    cr_assert(strstr(err.msg, want) != NULL, "error lacks \"%s\": %s", want, err.msg);
    if (why) cr_assert(strstr(err.msg, why) != NULL, "error lacks \"%s\": %s", why, err.msg);
    cr_assert_eq(cfg.in_channels, -77, "a failed parse changed the output");
}

static void expect_refused(const char *key, const char *value, const char *field, const char *why) {
    char *text = patched(key, value);
    expect_refused_text(text, field, why);
    free(text);
}

static void parse_ok(UNetConfig *cfg, const char *text) {
    JtError err = {{0}};
    cr_assert_eq(unet_config_parse(cfg, text, PATH, &err), JT_OK, "%s", err.msg);
}

/* ---- accepted configs ---- */

Test(config, diffusers_jt_config_parses_to_default) {
    UNetConfig got, want;
    parse_ok(&got, JT_JSON);
    unet_config_default(&want);
    expect_same_config(&got, &want);
    JtError err = {{0}};
    cr_assert_eq(unet_config_validate(&want, PATH, &err), JT_OK, "%s", err.msg);
}

/* unet2d.md 1.2: the four numerics fields that differ in google/ddpm-cifar10-32 */
Test(config, google_ddpm_cifar10_fields) {
    cJSON *root = cJSON_Parse(JT_JSON);
    cJSON_ReplaceItemInObject(root, "downsample_padding", cJSON_CreateNumber(0));
    cJSON_ReplaceItemInObject(root, "flip_sin_to_cos", cJSON_CreateFalse());
    cJSON_ReplaceItemInObject(root, "freq_shift", cJSON_CreateNumber(1));
    cJSON_ReplaceItemInObject(root, "norm_eps", cJSON_Parse("1e-06"));
    cJSON_ReplaceItemInObject(root, "_diffusers_version", cJSON_CreateString("0.0.4"));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    UNetConfig c;
    parse_ok(&c, text);
    free(text);
    cr_assert_eq(c.downsample_padding, 0);
    cr_assert_eq(c.flip_sin_to_cos, 0);
    cr_assert(c.freq_shift == 1.0f);
    cr_assert(c.norm_eps == 1e-6f);
}

/* Absent fields take UNet2DModel.__init__ defaults, as diffusers' from_config would. */
Test(config, absent_fields_take_class_defaults) {
    const char *text = "{\"block_out_channels\": [32, 64], \"down_block_types\": [\"DownBlock2D\","
                       " \"AttnDownBlock2D\"], \"up_block_types\": [\"AttnUpBlock2D\", "
                       "\"UpBlock2D\"], \"norm_num_groups\": 8}";
    UNetConfig c;
    parse_ok(&c, text);
    cr_assert_eq(c.sample_size, 0, "sample_size defaults to null");
    cr_assert_eq(c.attention_head_dim, 8, "the class default is 8, not null");
    cr_assert_eq(c.in_channels, 3);
    cr_assert_eq(c.out_channels, 3);
    cr_assert_eq(c.layers_per_block, 2);
    cr_assert_eq(c.flip_sin_to_cos, 1);
    cr_assert(c.freq_shift == 0.0f);
    cr_assert_eq(c.downsample_padding, 1);
    cr_assert(c.norm_eps == 1e-5f);
    cr_assert_eq(c.add_attention, 1);
    cr_assert_eq(c.n_levels, 2);
    cr_assert_eq(c.down_attn[1], 1);
    cr_assert_eq(c.up_attn[0], 1);
}

Test(config, accepted_variants) {
    UNetConfig c;
    char *t = patched("act_fn", "\"swish\"");
    parse_ok(&c, t);
    free(t);
    t = patched("_name_or_path", "\"/some/where\"");
    parse_ok(&c, t);
    free(t);
    t = patched("_class_name", NULL);
    parse_ok(&c, t);
    free(t);
    t = patched("attention_head_dim", "64");
    parse_ok(&c, t);
    cr_assert_eq(c.attention_head_dim, 64);
    free(t);
    t = patched("attn_norm_num_groups", "16");
    parse_ok(&c, t);
    cr_assert_eq(c.attn_norm_num_groups, 16);
    free(t);
    t = patched("num_train_timesteps", "1000");
    parse_ok(&c, t);
    cr_assert_eq(c.num_train_timesteps, 1000);
    free(t);
    t = patched("sample_size", "null");
    parse_ok(&c, t);
    cr_assert_eq(c.sample_size, 0);
    free(t);
    t = patched("dropout", "0");
    parse_ok(&c, t);
    free(t);
}

/* to_json writes diffusers' layout (sorted keys, every field, nulls) and parses back equal. */
Test(config, to_json_round_trip) {
    UNetConfig a;
    unet_config_default(&a);
    char *text = unet_config_to_json(&a);
    cr_assert_not_null(text);
    UNetConfig b;
    parse_ok(&b, text);
    expect_same_config(&a, &b);
    free(text);

    /* every non-default value, including the "null" encodings */
    UNetConfig c;
    memset(&c, 0, sizeof c);
    c.sample_size = 28;
    c.in_channels = 1;
    c.out_channels = 2;
    c.center_input_sample = 1;
    c.time_embedding_dim = 96;
    c.freq_shift = 1.0f;
    c.flip_sin_to_cos = 0;
    c.n_levels = 3;
    int ch[3] = {16, 32, 48}, da[3] = {1, 0, 1}, ua[3] = {0, 1, 1};
    for (int i = 0; i < 3; i++) {
        c.block_out_channels[i] = ch[i];
        c.down_attn[i] = da[i];
        c.up_attn[i] = ua[i];
    }
    c.layers_per_block = 3;
    c.mid_block_scale_factor = 0.7f;
    c.downsample_padding = 0;
    c.attention_head_dim = 8;
    c.norm_num_groups = 8;
    c.attn_norm_num_groups = 4;
    c.norm_eps = 1e-6f;
    c.add_attention = 0;
    c.num_train_timesteps = 1000;
    JtError err = {{0}};
    cr_assert_eq(unet_config_validate(&c, PATH, &err), JT_OK, "%s", err.msg);
    text = unet_config_to_json(&c);
    cr_assert(strstr(text, "\"norm_eps\": 1e-06") != NULL, "norm_eps not written short: %s", text);
    cr_assert(strstr(text, "\"mid_block_scale_factor\": 0.7") != NULL, "%s", text);
    cr_assert(strstr(text, "\"class_embed_type\": null") != NULL, "%s", text);
    cr_assert(strstr(text, "\"_class_name\": \"UNet2DModel\"") != NULL, "%s", text);
    cr_assert(strstr(text, "\"_diffusers_version\": \"0.42.1\"") != NULL, "%s", text);
    cr_assert(strchr(text, '\t') == NULL, "tabs left in the output");
    parse_ok(&b, text);
    expect_same_config(&c, &b);
    free(text);

    /* nulls */
    c.time_embedding_dim = 0;
    c.attention_head_dim = 0;
    c.attn_norm_num_groups = 0;
    c.num_train_timesteps = 0;
    c.sample_size = 0;
    text = unet_config_to_json(&c);
    cr_assert(strstr(text, "\"attention_head_dim\": null") != NULL, "%s", text);
    cr_assert(strstr(text, "\"sample_size\": null") != NULL, "%s", text);
    cr_assert(strstr(text, "\"num_class_embeds\": null") != NULL, "%s", text);
    parse_ok(&b, text);
    expect_same_config(&c, &b);
    free(text);
}

/* Class conditioning (diffusers num_class_embeds with class_embed_type null): parsed, and written
 * back by to_json. */
Test(config, num_class_embeds_round_trip) {
    UNetConfig c, b;
    char *text = patched("num_class_embeds", "11");
    parse_ok(&c, text);
    free(text);
    cr_assert_eq(c.num_class_embeds, 11);
    text = unet_config_to_json(&c);
    cr_assert(strstr(text, "\"num_class_embeds\": 11") != NULL, "%s", text);
    cr_assert(strstr(text, "\"class_embed_type\": null") != NULL, "%s", text);
    parse_ok(&b, text);
    expect_same_config(&c, &b);
    free(text);
    text = patched("num_class_embeds", "null");
    parse_ok(&c, text);
    free(text);
    cr_assert_eq(c.num_class_embeds, 0);
    text = patched("num_class_embeds", "100000"); /* the stated limit */
    parse_ok(&c, text);
    free(text);
    cr_assert_eq(c.num_class_embeds, 100000);
}

/* The JT config written by to_json has the keys in diffusers' sorted order. */
Test(config, to_json_key_order_matches_diffusers) {
    UNetConfig a;
    unet_config_default(&a);
    char *text = unet_config_to_json(&a);
    cJSON *mine = cJSON_Parse(text), *theirs = cJSON_Parse(JT_JSON);
    const cJSON *x = mine->child, *y = theirs->child;
    for (; x && y; x = x->next, y = y->next)
        cr_assert_str_eq(x->string, y->string);
    cr_assert(x == NULL && y == NULL, "different number of keys");
    cJSON_Delete(mine);
    cJSON_Delete(theirs);
    free(text);
}

Test(config, load_from_file) {
    char dir[] = "/tmp/jtrak_cfg_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    fputs(JT_JSON, fp);
    fclose(fp);
    UNetConfig c, d;
    JtError err = {{0}};
    cr_assert_eq(unet_config_load(&c, path, &err), JT_OK, "%s", err.msg);
    unet_config_default(&d);
    expect_same_config(&c, &d);
    unlink(path);
    cr_assert_eq(unet_config_load(&c, path, &err), JT_ERR);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "cannot open"), "%s", err.msg);
    rmdir(dir);
}

/* ---- refused: invalid JSON, unknown fields, missing lists ---- */

Test(config, invalid_json) {
    UNetConfig c;
    JtError err = {{0}};
    cr_assert_eq(unet_config_parse(&c, "{\n  \"in_channels\": 3,\n  oops\n}", PATH, &err), JT_ERR);
    cr_assert(strstr(err.msg, PATH ": invalid JSON") && strstr(err.msg, "line 3"), "%s", err.msg);
    cr_assert_eq(unet_config_parse(&c, "[1, 2]", PATH, &err), JT_ERR);
    cr_assert(strstr(err.msg, PATH) && strstr(err.msg, "not a JSON object"), "%s", err.msg);
    cr_assert_eq(unet_config_parse(&c, "{} x", PATH, &err), JT_ERR);
    cr_assert(strstr(err.msg, PATH ": invalid JSON"), "%s", err.msg);
}

Test(config, unknown_field) {
    expect_refused("resnet_groups", "32", "resnet_groups", "unknown");
}
Test(config, duplicate_field) {
    expect_refused_text("{\"in_channels\": 3, \"in_channels\": 4}", "in_channels", "twice");
}
Test(config, wrong_class_name) {
    expect_refused("_class_name", "\"UNet2DConditionModel\"", "_class_name", "UNet2DModel");
}
Test(config, missing_block_out_channels) {
    expect_refused("block_out_channels", NULL, "block_out_channels", "missing");
}
Test(config, missing_down_block_types) {
    expect_refused("down_block_types", NULL, "down_block_types", "missing");
}
Test(config, missing_up_block_types) {
    expect_refused("up_block_types", NULL, "up_block_types", "missing");
}
Test(config, down_list_length_mismatch) {
    expect_refused("down_block_types", "[\"DownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]",
                   "down_block_types", "3 entries but block_out_channels has 4");
}
Test(config, up_list_length_mismatch) {
    expect_refused("up_block_types",
                   "[\"UpBlock2D\", \"UpBlock2D\", \"UpBlock2D\", \"UpBlock2D\", \"UpBlock2D\"]",
                   "up_block_types", "5 entries but block_out_channels has 4");
}
Test(config, too_many_levels) {
    expect_refused("block_out_channels", "[32, 32, 32, 32, 32, 32, 32, 32, 32]",
                   "block_out_channels", "more than the 8 supported");
}
Test(config, empty_level_list) {
    expect_refused("block_out_channels", "[]", "block_out_channels", "empty");
}

/* ---- refused: wrong JSON types ---- */

Test(config, int_field_given_a_string) {
    expect_refused("in_channels", "\"3\"", "in_channels", "expected an integer");
}
Test(config, int_field_given_a_fraction) {
    expect_refused("layers_per_block", "2.5", "layers_per_block", "expected an integer");
}
Test(config, int_field_given_null) {
    expect_refused("norm_num_groups", "null", "norm_num_groups", "expected an integer");
}
Test(config, bool_field_given_an_int) {
    expect_refused("flip_sin_to_cos", "1", "flip_sin_to_cos", "expected true or false");
}
Test(config, number_field_given_a_string) {
    expect_refused("norm_eps", "\"1e-5\"", "norm_eps", "expected a number");
}
Test(config, list_field_given_a_string) {
    expect_refused("block_out_channels", "\"128,256\"", "block_out_channels", "expected a list");
}
Test(config, block_types_entry_not_a_string) {
    expect_refused("down_block_types", "[\"DownBlock2D\", 1, \"DownBlock2D\", \"DownBlock2D\"]",
                   "down_block_types", "entry 1");
}
Test(config, channel_entry_not_an_int) {
    expect_refused("block_out_channels", "[128, 256, \"256\", 256]", "block_out_channels[2]",
                   "expected an integer");
}
Test(config, out_of_range_values) {
    expect_refused("in_channels", "0", "in_channels", "out of range");
    expect_refused("block_out_channels", "[128, -256, 256, 256]", "block_out_channels[1]",
                   "out of range");
    expect_refused("norm_eps", "0", "norm_eps", "out of range");
    expect_refused("attention_head_dim", "0", "attention_head_dim", "out of range");
}
/* diffusers accepts sample_size as [height, width]; to_json writes back what was read */
Test(config, sample_size_as_list) {
    UNetConfig c;
    char *t = patched("sample_size", "[16, 24]");
    parse_ok(&c, t);
    free(t);
    cr_assert_eq(c.sample_h, 16);
    cr_assert_eq(c.sample_w, 24);
    cr_assert_eq(c.sample_size, 0, "not square: no single sample_size");
    char *text = unet_config_to_json(&c);
    cr_assert(strstr(text, "\"sample_size\": [16, 24]") != NULL, "%s", text);
    free(text);
    t = patched("sample_size", "[32, 32]");
    parse_ok(&c, t);
    free(t);
    cr_assert_eq(c.sample_size, 32, "square: sample_size is the side");
    text = unet_config_to_json(&c);
    cr_assert(strstr(text, "\"sample_size\": [32, 32]") != NULL, "%s", text);
    free(text);
    t = patched("sample_size", "32");
    parse_ok(&c, t);
    free(t);
    cr_assert(c.sample_h == 0 && c.sample_w == 0);
    expect_refused("sample_size", "[32]", "sample_size", "[height, width]");
    expect_refused("sample_size", "[32, 0]", "sample_size[1]", "out of range");
    expect_refused("sample_size", "[32, \"a\"]", "sample_size[1]", "expected an integer");
    expect_refused("sample_size", "\"32\"", "sample_size", "expected an integer");
}

/* ---- refused: unsupported values, one per field kind ---- */

Test(config, time_embedding_type_fourier) {
    expect_refused("time_embedding_type", "\"fourier\"", "time_embedding_type", "not supported");
}
Test(config, mid_block_type_null) {
    expect_refused("mid_block_type", "null", "mid_block_type", "not supported");
}
Test(config, mid_block_type_other) {
    expect_refused("mid_block_type", "\"UNetMidBlock2DCrossAttn\"", "mid_block_type",
                   "not supported");
}
Test(config, down_block_type_unsupported) {
    expect_refused("down_block_types",
                   "[\"DownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]",
                   "down_block_types", "\"CrossAttnDownBlock2D\" is not supported");
}
Test(config, up_block_type_unsupported) {
    expect_refused("up_block_types",
                   "[\"UpBlock2D\", \"UpBlock2D\", \"AttnSkipUpBlock2D\", \"UpBlock2D\"]",
                   "up_block_types", "\"AttnSkipUpBlock2D\" is not supported");
}
Test(config, downsample_padding_two) {
    expect_refused("downsample_padding", "2", "downsample_padding", "not supported");
}
Test(config, downsample_type_resnet) {
    expect_refused("downsample_type", "\"resnet\"", "downsample_type", "not supported");
}
Test(config, upsample_type_resnet) {
    expect_refused("upsample_type", "\"resnet\"", "upsample_type", "not supported");
}
Test(config, dropout_nonzero) {
    expect_refused("dropout", "0.1", "dropout", "dropout is not implemented");
}
Test(config, act_fn_gelu) {
    expect_refused("act_fn", "\"gelu\"", "act_fn", "not supported");
}
Test(config, resnet_time_scale_shift) {
    expect_refused("resnet_time_scale_shift", "\"scale_shift\"", "resnet_time_scale_shift",
                   "not supported");
}
/* The refusal names the types diffusers has and the one jtrak implements. */
Test(config, class_embed_type) {
    expect_refused("class_embed_type", "\"timestep\"", "class_embed_type",
                   "\"timestep\" is not supported (only null, with num_class_embeds, is "
                   "implemented)");
}
/* num_class_embeds: null (0) is unconditional, 1..100000 classes; to_json writes it back */
Test(config, num_class_embeds) {
    UNetConfig c;
    char *t = patched("num_class_embeds", "10");
    parse_ok(&c, t);
    free(t);
    cr_assert_eq(c.num_class_embeds, 10);
    char *text = unet_config_to_json(&c);
    cr_assert(strstr(text, "\"num_class_embeds\": 10") != NULL, "%s", text);
    free(text);
    parse_ok(&c, JT_JSON);
    cr_assert_eq(c.num_class_embeds, 0);
    expect_refused("num_class_embeds", "0", "num_class_embeds", "out of range (must be >= 1)");
    expect_refused("num_class_embeds", "100001", "num_class_embeds", "at most 100000");
    expect_refused("num_class_embeds", "\"10\"", "num_class_embeds", "expected an integer");
}

/* ---- refused: group and head counts (unet2d.md section 5 channel arithmetic) ---- */

Test(config, groups_do_not_divide_a_level) {
    expect_refused("norm_num_groups", "48", "norm_num_groups", "do not divide the 128 channels");
}

/* Every up-block concatenation is a sum of two level widths, so a group count that divides every
 * level divides every concatenation too; validate still checks them (section 5), and the first
 * failure is reported at the level where it occurs. */
Test(config, groups_do_not_divide_a_deeper_level) {
    expect_refused("block_out_channels", "[128, 256, 256, 240]", "norm_num_groups",
                   "do not divide the 240 channels of down_blocks.3");
}

Test(config, groups_divide_every_concatenation_of_small_configs) {
    /* unet2d.md section 11: FM-S (32, 64, 64) and T8 (32, 64) with 8 groups */
    UNetConfig c;
    unet_config_default(&c);
    c.n_levels = 3;
    c.block_out_channels[0] = 32;
    c.block_out_channels[1] = 64;
    c.block_out_channels[2] = 64;
    c.norm_num_groups = 8;
    c.layers_per_block = 1;
    JtError err = {{0}};
    cr_assert_eq(unet_config_validate(&c, PATH, &err), JT_OK, "%s", err.msg);
    c.n_levels = 2;
    cr_assert_eq(unet_config_validate(&c, PATH, &err), JT_OK, "%s", err.msg);
}

Test(config, head_dim_does_not_divide_attention_channels) {
    expect_refused("attention_head_dim", "96", "attention_head_dim",
                   "does not divide the 256 channels of down_blocks.1.attentions");
}
Test(config, head_dim_checked_in_mid_block) {
    char *t = patched("block_out_channels", "[128, 256, 256, 320]");
    cJSON *root = cJSON_Parse(t);
    free(t);
    cJSON_ReplaceItemInObject(root, "attention_head_dim", cJSON_CreateNumber(128));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    expect_refused_text(text, "attention_head_dim", "mid_block.attentions.0");
    free(text);
}
Test(config, attn_groups_do_not_divide_mid_channels) {
    expect_refused("attn_norm_num_groups", "48", "attn_norm_num_groups",
                   "mid_block.attentions.0.group_norm");
}
Test(config, validate_rejects_bad_struct) {
    UNetConfig c;
    unet_config_default(&c);
    c.n_levels = UNET_MAX_LEVELS + 1;
    JtError err = {{0}};
    cr_assert_eq(unet_config_validate(&c, PATH, &err), JT_ERR);
    cr_assert(strstr(err.msg, PATH ": field 'block_out_channels'"), "%s", err.msg);
    unet_config_default(&c);
    c.downsample_padding = 3;
    cr_assert_eq(unet_config_validate(&c, PATH, &err), JT_ERR);
    cr_assert(strstr(err.msg, "field 'downsample_padding'"), "%s", err.msg);
    unet_config_default(&c);
    c.freq_shift = 64; /* half of 128: the sinusoid denominator would be 0 */
    cr_assert_eq(unet_config_validate(&c, PATH, &err), JT_ERR);
    cr_assert(strstr(err.msg, "field 'freq_shift'"), "%s", err.msg);
}
