/* config.c: the diffusers UNet2DModel config.json (see config.h). Follows the signature of
 * diffusers' UNet2DModel.__init__ (0.42.1, models/unets/unet_2d.py) and unet2d.md sections 1, 5
 * and 12. Parsing is strict: every field of UNet2DModel is read with its JSON type checked, a value
 * jtrak does not implement is refused (nothing is silently ignored), and an unknown field is an
 * error; keys starting with "_" are diffusers bookkeeping and are accepted. A field that is absent
 * takes the UNet2DModel class default (so attention_head_dim absent means 8, as in diffusers),
 * except the three level lists, which are required. All JSON goes through cJSON. */
#include "unet/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIFFUSERS_VERSION "0.42.1"

void unet_config_default(UNetConfig *cfg) {
    static const int ch[4] = {128, 256, 256, 256};
    static const int down_attn[4] = {0, 1, 0, 0}, up_attn[4] = {0, 0, 1, 0};
    memset(cfg, 0, sizeof *cfg);
    cfg->sample_size = 32;
    cfg->in_channels = 3;
    cfg->out_channels = 3;
    cfg->center_input_sample = 0;
    cfg->time_embedding_dim = 0;
    cfg->freq_shift = 0.0f;
    cfg->flip_sin_to_cos = 1;
    cfg->n_levels = 4;
    for (int i = 0; i < 4; i++) {
        cfg->block_out_channels[i] = ch[i];
        cfg->down_attn[i] = down_attn[i];
        cfg->up_attn[i] = up_attn[i];
    }
    cfg->layers_per_block = 2;
    cfg->mid_block_scale_factor = 1.0f;
    cfg->downsample_padding = 1;
    cfg->attention_head_dim = 0;
    cfg->norm_num_groups = 32;
    cfg->attn_norm_num_groups = 0;
    cfg->norm_eps = 1e-5f;
    cfg->add_attention = 1;
    cfg->num_train_timesteps = 0;
}

/* ---- JSON value helpers: each fills "PATH: field 'NAME': ..." on error ---- */

/* A short description of a JSON value for messages: "a string", "null", "1.5", ... */
static const char *describe(const cJSON *it, char *buf, size_t cap) {
    if (cJSON_IsNull(it)) return "null";
    if (cJSON_IsTrue(it)) return "true";
    if (cJSON_IsFalse(it)) return "false";
    if (cJSON_IsNumber(it)) {
        snprintf(buf, cap, "%.15g", it->valuedouble);
        return buf;
    }
    if (cJSON_IsString(it)) {
        snprintf(buf, cap, "the string \"%.60s\"", it->valuestring);
        return buf;
    }
    if (cJSON_IsArray(it)) return "a list";
    if (cJSON_IsObject(it)) return "an object";
    return "an invalid value";
}

/* An integer >= min; null allowed (-> 0) if allow_null. */
static int get_int(const cJSON *it, int min, int allow_null, int *out, const char *path,
                   const char *field, JtError *err) {
    char buf[96];
    if (allow_null && cJSON_IsNull(it)) {
        *out = 0;
        return JT_OK;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
        fabs(it->valuedouble) > 2147483647.0)
        return jt_fail(err, "%s: field '%s': expected an integer%s, got %s", path, field,
                       allow_null ? " or null" : "", describe(it, buf, sizeof buf));
    int v = (int)it->valuedouble;
    if (v < min)
        return jt_fail(err, "%s: field '%s': %d is out of range (must be >= %d)", path, field, v,
                       min);
    *out = v;
    return JT_OK;
}

static int get_bool(const cJSON *it, int *out, const char *path, const char *field, JtError *err) {
    char buf[96];
    if (!cJSON_IsBool(it))
        return jt_fail(err, "%s: field '%s': expected true or false, got %s", path, field,
                       describe(it, buf, sizeof buf));
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return JT_OK;
}

static int get_num(const cJSON *it, float *out, const char *path, const char *field, JtError *err) {
    char buf[96];
    if (!cJSON_IsNumber(it) || !isfinite((float)it->valuedouble))
        return jt_fail(err, "%s: field '%s': expected a number, got %s", path, field,
                       describe(it, buf, sizeof buf));
    *out = (float)it->valuedouble;
    return JT_OK;
}

/* A string that must be one of `allowed` (NULL-terminated); `what` explains the refusal. */
static int get_choice(const cJSON *it, const char *const *allowed, const char *what,
                      const char *path, const char *field, JtError *err) {
    char buf[96];
    if (!cJSON_IsString(it))
        return jt_fail(err, "%s: field '%s': expected a string, got %s", path, field,
                       describe(it, buf, sizeof buf));
    for (int i = 0; allowed[i]; i++)
        if (strcmp(it->valuestring, allowed[i]) == 0) return JT_OK;
    return jt_fail(err, "%s: field '%s': \"%s\" is not supported (%s)", path, field,
                   it->valuestring, what);
}

static int require_null(const cJSON *it, const char *what, const char *path, const char *field,
                        JtError *err) {
    char buf[96];
    if (!cJSON_IsNull(it))
        return jt_fail(err, "%s: field '%s': %s is not supported (%s)", path, field,
                       describe(it, buf, sizeof buf), what);
    return JT_OK;
}

/* A non-empty list of at most UNET_MAX_LEVELS entries; returns its length in *n. */
static int get_level_list(const cJSON *it, int *n, const char *path, const char *field,
                          JtError *err) {
    char buf[96];
    if (!cJSON_IsArray(it))
        return jt_fail(err, "%s: field '%s': expected a list, got %s", path, field,
                       describe(it, buf, sizeof buf));
    *n = cJSON_GetArraySize(it);
    if (*n == 0) return jt_fail(err, "%s: field '%s': the list is empty", path, field);
    if (*n > UNET_MAX_LEVELS)
        return jt_fail(err, "%s: field '%s': %d levels, more than the %d supported", path, field,
                       *n, UNET_MAX_LEVELS);
    return JT_OK;
}

/* down_block_types / up_block_types: each entry is the plain or the Attn block name. */
static int get_block_types(const cJSON *it, const char *plain, const char *attn, int *flags, int *n,
                           const char *path, const char *field, JtError *err) {
    char buf[96];
    if (get_level_list(it, n, path, field, err) != JT_OK) return JT_ERR;
    int i = 0;
    for (const cJSON *e = it->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e))
            return jt_fail(err, "%s: field '%s': entry %d: expected a string, got %s", path, field,
                           i, describe(e, buf, sizeof buf));
        if (strcmp(e->valuestring, plain) == 0)
            flags[i] = 0;
        else if (strcmp(e->valuestring, attn) == 0)
            flags[i] = 1;
        else
            return jt_fail(err, "%s: field '%s': entry %d \"%s\" is not supported (%s or %s)", path,
                           field, i, e->valuestring, plain, attn);
    }
    return JT_OK;
}

/* ---- parse ---- */

/* clang-format off */
static const char *const FIELDS[] = {
    "sample_size", "in_channels", "out_channels", "center_input_sample", "time_embedding_type",
    "time_embedding_dim", "freq_shift", "flip_sin_to_cos", "down_block_types", "mid_block_type",
    "up_block_types", "block_out_channels", "layers_per_block", "mid_block_scale_factor",
    "downsample_padding", "downsample_type", "upsample_type", "dropout", "act_fn",
    "attention_head_dim", "norm_num_groups", "attn_norm_num_groups", "norm_eps",
    "resnet_time_scale_shift", "add_attention", "class_embed_type", "num_class_embeds",
    "num_train_timesteps", NULL};
/* clang-format on */

static int parse_field(UNetConfig *cfg, const cJSON *it, const char *k, int *n_down, int *n_up,
                       const char *path, JtError *err) {
    static const char *const positional[] = {"positional", NULL};
    static const char *const mid[] = {"UNetMidBlock2D", NULL};
    static const char *const conv[] = {"conv", NULL};
    static const char *const act[] = {"silu", "swish", NULL};
    static const char *const shift[] = {"default", NULL};
    char buf[96];

    if (!strcmp(k, "sample_size")) {
        if (cJSON_IsArray(it))
            return jt_fail(err,
                           "%s: field 'sample_size': a [height, width] list is not "
                           "supported (use one integer)",
                           path);
        return get_int(it, 1, 1, &cfg->sample_size, path, k, err);
    }
    if (!strcmp(k, "in_channels")) return get_int(it, 1, 0, &cfg->in_channels, path, k, err);
    if (!strcmp(k, "out_channels")) return get_int(it, 1, 0, &cfg->out_channels, path, k, err);
    if (!strcmp(k, "center_input_sample"))
        return get_bool(it, &cfg->center_input_sample, path, k, err);
    if (!strcmp(k, "time_embedding_type"))
        return get_choice(it, positional, "only \"positional\" is implemented", path, k, err);
    if (!strcmp(k, "time_embedding_dim"))
        return get_int(it, 0, 1, &cfg->time_embedding_dim, path, k, err);
    if (!strcmp(k, "freq_shift")) return get_num(it, &cfg->freq_shift, path, k, err);
    if (!strcmp(k, "flip_sin_to_cos")) return get_bool(it, &cfg->flip_sin_to_cos, path, k, err);
    if (!strcmp(k, "down_block_types"))
        return get_block_types(it, "DownBlock2D", "AttnDownBlock2D", cfg->down_attn, n_down, path,
                               k, err);
    if (!strcmp(k, "up_block_types"))
        return get_block_types(it, "UpBlock2D", "AttnUpBlock2D", cfg->up_attn, n_up, path, k, err);
    if (!strcmp(k, "mid_block_type")) {
        if (cJSON_IsNull(it))
            return jt_fail(err,
                           "%s: field 'mid_block_type': null (no mid block) is not "
                           "supported (only \"UNetMidBlock2D\")",
                           path);
        return get_choice(it, mid, "only \"UNetMidBlock2D\" is implemented", path, k, err);
    }
    if (!strcmp(k, "block_out_channels")) {
        if (get_level_list(it, &cfg->n_levels, path, k, err) != JT_OK) return JT_ERR;
        int i = 0;
        for (const cJSON *e = it->child; e; e = e->next, i++) {
            char name[64];
            snprintf(name, sizeof name, "block_out_channels[%d]", i);
            if (get_int(e, 1, 0, &cfg->block_out_channels[i], path, name, err) != JT_OK)
                return JT_ERR;
        }
        return JT_OK;
    }
    if (!strcmp(k, "layers_per_block"))
        return get_int(it, 1, 0, &cfg->layers_per_block, path, k, err);
    if (!strcmp(k, "mid_block_scale_factor"))
        return get_num(it, &cfg->mid_block_scale_factor, path, k, err);
    if (!strcmp(k, "downsample_padding")) {
        if (get_int(it, 0, 0, &cfg->downsample_padding, path, k, err) != JT_OK) return JT_ERR;
        if (cfg->downsample_padding > 1)
            return jt_fail(err, "%s: field 'downsample_padding': %d is not supported (0 or 1)",
                           path, cfg->downsample_padding);
        return JT_OK;
    }
    if (!strcmp(k, "downsample_type") || !strcmp(k, "upsample_type"))
        return get_choice(it, conv, "only \"conv\" is implemented", path, k, err);
    if (!strcmp(k, "dropout")) {
        float p;
        if (get_num(it, &p, path, k, err) != JT_OK) return JT_ERR;
        if (p != 0.0f)
            return jt_fail(err, "%s: field 'dropout': %s: dropout is not implemented (only 0.0)",
                           path, describe(it, buf, sizeof buf));
        return JT_OK;
    }
    if (!strcmp(k, "act_fn"))
        return get_choice(it, act, "only \"silu\" (or its alias \"swish\") is implemented", path, k,
                          err);
    if (!strcmp(k, "attention_head_dim"))
        return get_int(it, 1, 1, &cfg->attention_head_dim, path, k, err);
    if (!strcmp(k, "norm_num_groups"))
        return get_int(it, 1, 0, &cfg->norm_num_groups, path, k, err);
    if (!strcmp(k, "attn_norm_num_groups"))
        return get_int(it, 1, 1, &cfg->attn_norm_num_groups, path, k, err);
    if (!strcmp(k, "norm_eps")) {
        if (get_num(it, &cfg->norm_eps, path, k, err) != JT_OK) return JT_ERR;
        if (!(cfg->norm_eps > 0))
            return jt_fail(err, "%s: field 'norm_eps': %s is out of range (must be > 0)", path,
                           describe(it, buf, sizeof buf));
        return JT_OK;
    }
    if (!strcmp(k, "resnet_time_scale_shift"))
        return get_choice(it, shift, "only \"default\" is implemented", path, k, err);
    if (!strcmp(k, "add_attention")) return get_bool(it, &cfg->add_attention, path, k, err);
    if (!strcmp(k, "class_embed_type"))
        return require_null(it,
                            "diffusers has null, \"timestep\" and \"identity\"; only null is "
                            "implemented: with num_class_embeds set, an nn.Embedding of the class "
                            "labels",
                            path, k, err);
    if (!strcmp(k, "num_class_embeds")) {
        if (get_int(it, 1, 1, &cfg->num_class_embeds, path, k, err) != JT_OK) return JT_ERR;
        if (cfg->num_class_embeds > UNET_MAX_CLASS_EMBEDS)
            return jt_fail(err, "%s: field 'num_class_embeds': %d is out of range (at most %d)",
                           path, cfg->num_class_embeds, UNET_MAX_CLASS_EMBEDS);
        return JT_OK;
    }
    if (!strcmp(k, "num_train_timesteps"))
        return get_int(it, 1, 1, &cfg->num_train_timesteps, path, k, err);
    CHECK(0, "field %s is in FIELDS but has no parser", k);
    return JT_ERR;
}

int unet_config_parse(UNetConfig *cfg, const char *json_text, const char *path, JtError *err) {
    if (!path) path = "config.json";
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json_text, &end, 1);
    if (!root) {
        int line = 1, col = 1;
        for (const char *p = json_text; end && p < end && *p; p++) {
            if (*p == '\n')
                line++, col = 1;
            else
                col++;
        }
        return jt_fail(err, "%s: invalid JSON (error at line %d, column %d)", path, line, col);
    }
    int rc = JT_OK;
    if (!cJSON_IsObject(root)) {
        rc = jt_fail(err, "%s: invalid config: the top level is not a JSON object", path);
        goto done;
    }

    /* Start from the UNet2DModel class defaults: unet_config_default (unet2d.md 1.1) except the
     * two fields where JT sets a non-default value. */
    UNetConfig c;
    unet_config_default(&c);
    c.sample_size = 0;
    c.attention_head_dim = 8;
    int n_down = 0, n_up = 0, have_down = 0, have_up = 0, have_ch = 0;

    for (const cJSON *it = root->child; it && rc == JT_OK; it = it->next) {
        const char *k = it->string;
        for (const cJSON *p = root->child; p != it; p = p->next)
            if (strcmp(p->string, k) == 0) {
                rc = jt_fail(err, "%s: field '%s': appears twice", path, k);
                break;
            }
        if (rc != JT_OK) break;
        if (k[0] == '_') {
            if (strcmp(k, "_class_name") == 0 &&
                (!cJSON_IsString(it) || strcmp(it->valuestring, "UNet2DModel") != 0)) {
                char buf[96];
                rc = jt_fail(err,
                             "%s: field '_class_name': %s is not supported (only "
                             "\"UNet2DModel\")",
                             path, describe(it, buf, sizeof buf));
            }
            continue;
        }
        int known = 0;
        for (int i = 0; FIELDS[i] && !known; i++)
            known = strcmp(FIELDS[i], k) == 0;
        if (!known) {
            rc = jt_fail(err, "%s: field '%s': unknown field (not a UNet2DModel parameter)", path,
                         k);
            break;
        }
        have_down |= !strcmp(k, "down_block_types");
        have_up |= !strcmp(k, "up_block_types");
        have_ch |= !strcmp(k, "block_out_channels");
        rc = parse_field(&c, it, k, &n_down, &n_up, path, err);
    }
    if (rc != JT_OK) goto done;

    if (!have_ch) {
        rc = jt_fail(err, "%s: field 'block_out_channels': missing (a required list)", path);
    } else if (!have_down) {
        rc = jt_fail(err, "%s: field 'down_block_types': missing (a required list)", path);
    } else if (!have_up) {
        rc = jt_fail(err, "%s: field 'up_block_types': missing (a required list)", path);
    } else if (n_down != c.n_levels) {
        rc = jt_fail(err, "%s: field 'down_block_types': %d entries but block_out_channels has %d",
                     path, n_down, c.n_levels);
    } else if (n_up != c.n_levels) {
        rc = jt_fail(err, "%s: field 'up_block_types': %d entries but block_out_channels has %d",
                     path, n_up, c.n_levels);
    }
    if (rc == JT_OK) rc = unet_config_validate(&c, path, err);
    if (rc == JT_OK) *cfg = c;
done:
    cJSON_Delete(root);
    return rc;
}

int unet_config_load(UNetConfig *cfg, const char *path, JtError *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return jt_fail(err, "%s: cannot open: %s", path, strerror(errno));
    enum { MAX_CONFIG = 1 << 20 };
    char *text = xmalloc(MAX_CONFIG + 1);
    size_t n = fread(text, 1, MAX_CONFIG + 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    int rc;
    if (bad)
        rc = jt_fail(err, "%s: read error", path);
    else if (n > MAX_CONFIG)
        rc = jt_fail(err, "%s: too large for a config file (over %d bytes)", path, MAX_CONFIG);
    else if (memchr(text, 0, n))
        rc = jt_fail(err, "%s: invalid JSON (contains a NUL byte)", path);
    else {
        text[n] = 0;
        rc = unet_config_parse(cfg, text, path, err);
    }
    free(text);
    return rc;
}

/* ---- validate ---- */

static int check_groups(int groups, int channels, const char *field, const char *where,
                        const char *path, JtError *err) {
    if (channels % groups == 0) return JT_OK;
    return jt_fail(err, "%s: field '%s': %d groups do not divide the %d channels of %s", path,
                   field, groups, channels, where);
}

int unet_config_validate(const UNetConfig *cfg, const char *path, JtError *err) {
    if (!path) path = "config";
    const int n = cfg->n_levels, L = cfg->layers_per_block, G = cfg->norm_num_groups;
    const int *ch = cfg->block_out_channels;
    char where[160];

    if (n < 1 || n > UNET_MAX_LEVELS)
        return jt_fail(err, "%s: field 'block_out_channels': %d levels (1 to %d supported)", path,
                       n, UNET_MAX_LEVELS);
    for (int i = 0; i < n; i++) {
        if (ch[i] < 1)
            return jt_fail(err, "%s: field 'block_out_channels': entry %d is %d (must be >= 1)",
                           path, i, ch[i]);
        if (cfg->down_attn[i] != 0 && cfg->down_attn[i] != 1)
            return jt_fail(err, "%s: field 'down_block_types': entry %d is not a block type", path,
                           i);
        if (cfg->up_attn[i] != 0 && cfg->up_attn[i] != 1)
            return jt_fail(err, "%s: field 'up_block_types': entry %d is not a block type", path,
                           i);
    }
    struct {
        const char *field;
        int value, min;
    } mins[] = {
        {"sample_size", cfg->sample_size, 0},
        {"in_channels", cfg->in_channels, 1},
        {"out_channels", cfg->out_channels, 1},
        {"time_embedding_dim", cfg->time_embedding_dim, 0},
        {"layers_per_block", L, 1},
        {"downsample_padding", cfg->downsample_padding, 0},
        {"attention_head_dim", cfg->attention_head_dim, 0},
        {"norm_num_groups", G, 1},
        {"attn_norm_num_groups", cfg->attn_norm_num_groups, 0},
        {"num_train_timesteps", cfg->num_train_timesteps, 0},
        {"num_class_embeds", cfg->num_class_embeds, 0},
    };
    for (size_t i = 0; i < sizeof mins / sizeof mins[0]; i++)
        if (mins[i].value < mins[i].min)
            return jt_fail(err, "%s: field '%s': %d is out of range (must be >= %d)", path,
                           mins[i].field, mins[i].value, mins[i].min);
    if (cfg->downsample_padding > 1)
        return jt_fail(err, "%s: field 'downsample_padding': %d is not supported (0 or 1)", path,
                       cfg->downsample_padding);
    if (cfg->num_class_embeds > UNET_MAX_CLASS_EMBEDS)
        return jt_fail(err, "%s: field 'num_class_embeds': %d is out of range (at most %d)", path,
                       cfg->num_class_embeds, UNET_MAX_CLASS_EMBEDS);
    if (!(cfg->norm_eps > 0) || !isfinite(cfg->norm_eps))
        return jt_fail(err, "%s: field 'norm_eps': %g is out of range (must be > 0)", path,
                       (double)cfg->norm_eps);
    if (!isfinite(cfg->freq_shift) || !isfinite(cfg->mid_block_scale_factor))
        return jt_fail(err, "%s: field '%s': not a finite number", path,
                       isfinite(cfg->freq_shift) ? "mid_block_scale_factor" : "freq_shift");
    /* Timesteps divides by (half - freq_shift) with half = block_out_channels[0] / 2 */
    if ((float)(ch[0] / 2) == cfg->freq_shift)
        return jt_fail(err,
                       "%s: field 'freq_shift': %g equals half of block_out_channels[0] "
                       "(%d): the sinusoid frequencies would divide by zero",
                       path, (double)cfg->freq_shift, ch[0]);

    /* GroupNorm: every normalised channel count, including the up-block concatenations
     * (unet2d.md section 5). */
    if (check_groups(G, ch[0], "norm_num_groups", "conv_norm_out", path, err)) return JT_ERR;
    for (int i = 0; i < n; i++) {
        int cin = i == 0 ? ch[0] : ch[i - 1];
        for (int j = 0; j < L; j++) {
            snprintf(where, sizeof where, "down_blocks.%d.resnets.%d.norm1", i, j);
            if (check_groups(G, j == 0 ? cin : ch[i], "norm_num_groups", where, path, err))
                return JT_ERR;
        }
        snprintf(where, sizeof where, "down_blocks.%d (resnets.norm2%s)", i,
                 cfg->down_attn[i] ? ", attentions.group_norm" : "");
        if (check_groups(G, ch[i], "norm_num_groups", where, path, err)) return JT_ERR;
    }
    if (check_groups(G, ch[n - 1], "norm_num_groups", "mid_block.resnets", path, err))
        return JT_ERR;
    if (cfg->add_attention) {
        int ag = cfg->attn_norm_num_groups ? cfg->attn_norm_num_groups : G;
        if (check_groups(ag, ch[n - 1],
                         cfg->attn_norm_num_groups ? "attn_norm_num_groups" : "norm_num_groups",
                         "mid_block.attentions.0.group_norm", path, err))
            return JT_ERR;
    }
    for (int i = 0; i < n; i++) {
        int out = ch[n - 1 - i], prev = i == 0 ? ch[n - 1] : ch[n - i];
        int in = ch[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
        for (int j = 0; j <= L; j++) {
            int a = j == 0 ? prev : out, b = j == L ? in : out;
            if ((a + b) % G) {
                snprintf(where, sizeof where,
                         "up_blocks.%d.resnets.%d.norm1 (%d + %d concatenated)", i, j, a, b);
                return check_groups(G, a + b, "norm_num_groups", where, path, err);
            }
        }
        snprintf(where, sizeof where, "up_blocks.%d (resnets.norm2%s)", i,
                 cfg->up_attn[i] ? ", attentions.group_norm" : "");
        if (check_groups(G, out, "norm_num_groups", where, path, err)) return JT_ERR;
    }

    /* attention_head_dim: heads = C / head_dim must be exact in every attention block */
    int hd = cfg->attention_head_dim;
    if (hd > 0) {
        for (int i = 0; i < n; i++) {
            int cd = ch[i], cu = ch[n - 1 - i];
            if (cfg->down_attn[i] && cd % hd)
                return jt_fail(err,
                               "%s: field 'attention_head_dim': %d does not divide the %d "
                               "channels of down_blocks.%d.attentions",
                               path, hd, cd, i);
            if (cfg->up_attn[i] && cu % hd)
                return jt_fail(err,
                               "%s: field 'attention_head_dim': %d does not divide the %d "
                               "channels of up_blocks.%d.attentions",
                               path, hd, cu, i);
        }
        if (cfg->add_attention && ch[n - 1] % hd)
            return jt_fail(err,
                           "%s: field 'attention_head_dim': %d does not divide the %d "
                           "channels of mid_block.attentions.0",
                           path, hd, ch[n - 1]);
    }
    return JT_OK;
}

/* ---- serialise ---- */

/* The shortest decimal that reads back as the same float, as a double (so that cJSON prints
 * 1e-05 rather than 9.99999974737875e-06, and Python reads the intended value). */
static double short_double(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

static void add_int_or_null(cJSON *o, const char *k, int v) {
    if (v)
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void add_types(cJSON *o, const char *k, const int *flags, int n, const char *plain,
                      const char *attn) {
    cJSON *a = cJSON_AddArrayToObject(o, k);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(flags[i] ? attn : plain));
}

char *unet_config_to_json(const UNetConfig *cfg) {
    /* keys in sorted order, as diffusers' to_json_string (sort_keys=True) writes them */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "UNet2DModel");
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddBoolToObject(o, "add_attention", cfg->add_attention);
    add_int_or_null(o, "attention_head_dim", cfg->attention_head_dim);
    add_int_or_null(o, "attn_norm_num_groups", cfg->attn_norm_num_groups);
    cJSON *ch = cJSON_AddArrayToObject(o, "block_out_channels");
    for (int i = 0; i < cfg->n_levels; i++)
        cJSON_AddItemToArray(ch, cJSON_CreateNumber(cfg->block_out_channels[i]));
    cJSON_AddBoolToObject(o, "center_input_sample", cfg->center_input_sample);
    cJSON_AddNullToObject(o, "class_embed_type");
    add_types(o, "down_block_types", cfg->down_attn, cfg->n_levels, "DownBlock2D",
              "AttnDownBlock2D");
    cJSON_AddNumberToObject(o, "downsample_padding", cfg->downsample_padding);
    cJSON_AddStringToObject(o, "downsample_type", "conv");
    cJSON_AddNumberToObject(o, "dropout", 0.0);
    cJSON_AddBoolToObject(o, "flip_sin_to_cos", cfg->flip_sin_to_cos);
    cJSON_AddNumberToObject(o, "freq_shift", short_double(cfg->freq_shift));
    cJSON_AddNumberToObject(o, "in_channels", cfg->in_channels);
    cJSON_AddNumberToObject(o, "layers_per_block", cfg->layers_per_block);
    cJSON_AddNumberToObject(o, "mid_block_scale_factor", short_double(cfg->mid_block_scale_factor));
    cJSON_AddStringToObject(o, "mid_block_type", "UNetMidBlock2D");
    cJSON_AddNumberToObject(o, "norm_eps", short_double(cfg->norm_eps));
    cJSON_AddNumberToObject(o, "norm_num_groups", cfg->norm_num_groups);
    add_int_or_null(o, "num_class_embeds", cfg->num_class_embeds);
    add_int_or_null(o, "num_train_timesteps", cfg->num_train_timesteps);
    cJSON_AddNumberToObject(o, "out_channels", cfg->out_channels);
    cJSON_AddStringToObject(o, "resnet_time_scale_shift", "default");
    add_int_or_null(o, "sample_size", cfg->sample_size);
    add_int_or_null(o, "time_embedding_dim", cfg->time_embedding_dim);
    cJSON_AddStringToObject(o, "time_embedding_type", "positional");
    add_types(o, "up_block_types", cfg->up_attn, cfg->n_levels, "UpBlock2D", "AttnUpBlock2D");
    cJSON_AddStringToObject(o, "upsample_type", "conv");

    char *text = cJSON_Print(o);
    CHECK(text != NULL, "cJSON_Print failed");
    cJSON_Delete(o);
    /* cJSON indents with tabs and puts a tab after ':'; strings escape their own tabs, so every
     * raw tab is layout: two spaces per indent level, one space after a colon (as json.dumps with
     * indent=2 writes). */
    size_t n = strlen(text), k = 0;
    char *out = xmalloc(2 * n + 2);
    int line_start = 1;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (c == '\t') {
            if (line_start) {
                out[k++] = ' ';
                out[k++] = ' ';
            } else {
                out[k++] = ' ';
            }
            continue;
        }
        line_start = c == '\n';
        out[k++] = c;
    }
    out[k++] = '\n';
    out[k] = 0;
    free(text);
    return out;
}
