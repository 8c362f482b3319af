/* config.c: the diffusers UNet2DModel config.json (see config.h). Follows the signature of
 * diffusers' UNet2DModel.__init__ (0.42.1, models/unets/unet_2d.py) and unet2d.md sections 1, 5
 * and 12. The fields are a table (core/config_fields.h): each row names a UNet2DModel parameter,
 * its JSON type, where it lives in UNetConfig, its range, the values jtrak implements and the class
 * default (so attention_head_dim absent means 8, as in diffusers); the three level lists are
 * required. Parsing is strict (unknown fields, duplicates and wrong types are errors; "_" keys are
 * diffusers bookkeeping); the checks across fields are unet_config_validate. */
#include "unet/config.h"

#include "core/config_fields.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET_CLASS "UNet2DModel"

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

/* ---- the UNet2DModel fields ---- */

#define OFF(f) offsetof(UNetConfig, f)

static const char *const POSITIONAL[] = {"positional", NULL};
static const char *const DOWN_TYPES[] = {"DownBlock2D", "AttnDownBlock2D", NULL};
static const char *const UP_TYPES[] = {"UpBlock2D", "AttnUpBlock2D", NULL};
static const char *const MID_TYPES[] = {"UNetMidBlock2D", NULL};
static const char *const CONV[] = {"conv", NULL};
static const char *const ACT[] = {"silu", "swish", NULL};
static const char *const SHIFT[] = {"default", NULL};

/* The three required level lists come first: a config missing several names the first. */
/* clang-format off */
static const ConfigField FIELDS[] = {
    {.name = "block_out_channels", .type = CF_INT_LIST, .offset = OFF(block_out_channels),
     .count_offset = OFF(n_levels), .flags = CF_REQUIRED | CF_MIN | CF_IMPL, .min = 1,
     .impl_min = 1, .impl_max = UNET_MAX_CHANNELS, .max_len = UNET_MAX_LEVELS,
     .refusal = "jtrak supports at most 16384 channels per level"},
    {.name = "down_block_types", .type = CF_TYPE_LIST, .offset = OFF(down_attn),
     .count_offset = OFF(n_levels), .flags = CF_REQUIRED | CF_SHARED_COUNT,
     .max_len = UNET_MAX_LEVELS, .choices = DOWN_TYPES},
    {.name = "up_block_types", .type = CF_TYPE_LIST, .offset = OFF(up_attn),
     .count_offset = OFF(n_levels), .flags = CF_REQUIRED | CF_SHARED_COUNT,
     .max_len = UNET_MAX_LEVELS, .choices = UP_TYPES},
    {.name = "sample_size", .type = CF_INT_OR_PAIR, .offset = OFF(sample_size),
     .pair_offset = OFF(sample_h), .count_offset = OFF(sample_w),
     .flags = CF_NULLABLE | CF_MIN | CF_IMPL, .min = 1, .impl_min = 1,
     .impl_max = UNET_MAX_SAMPLE_SIZE, .refusal = "jtrak supports images of at most 8192 pixels "
     "a side"},
    {.name = "in_channels", .type = CF_INT, .offset = OFF(in_channels),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = UNET_MAX_IO_CHANNELS,
     .refusal = "jtrak supports at most 1024 image channels", .def_int = 3},
    {.name = "out_channels", .type = CF_INT, .offset = OFF(out_channels),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = UNET_MAX_IO_CHANNELS,
     .refusal = "jtrak supports at most 1024 image channels", .def_int = 3},
    {.name = "center_input_sample", .type = CF_BOOL, .offset = OFF(center_input_sample)},
    {.name = "time_embedding_type", .type = CF_CHOICE, .offset = CF_NONE, .choices = POSITIONAL,
     .refusal = "only \"positional\" is implemented"},
    {.name = "time_embedding_dim", .type = CF_INT, .offset = OFF(time_embedding_dim),
     .flags = CF_NULLABLE | CF_MIN | CF_IMPL, .min = 0, .impl_min = 0,
     .impl_max = UNET_MAX_TIME_EMBED_DIM, .refusal = "jtrak supports at most 65536"},
    {.name = "freq_shift", .type = CF_FLOAT, .offset = OFF(freq_shift)},
    {.name = "flip_sin_to_cos", .type = CF_BOOL, .offset = OFF(flip_sin_to_cos), .def_int = 1},
    {.name = "mid_block_type", .type = CF_CHOICE, .offset = CF_NONE, .choices = MID_TYPES,
     .refusal = "only \"UNetMidBlock2D\" is implemented"},
    {.name = "layers_per_block", .type = CF_INT, .offset = OFF(layers_per_block),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = UNET_MAX_LAYERS_PER_BLOCK,
     .refusal = "jtrak supports at most 32 layers per block", .def_int = 2},
    {.name = "mid_block_scale_factor", .type = CF_FLOAT, .offset = OFF(mid_block_scale_factor),
     .def_float = 1.0},
    {.name = "downsample_padding", .type = CF_INT, .offset = OFF(downsample_padding),
     .flags = CF_MIN | CF_IMPL, .min = 0, .impl_min = 0, .impl_max = 1, .refusal = "0 or 1",
     .def_int = 1},
    {.name = "downsample_type", .type = CF_CHOICE, .offset = CF_NONE, .choices = CONV,
     .refusal = "only \"conv\" is implemented"},
    {.name = "upsample_type", .type = CF_CHOICE, .offset = CF_NONE, .choices = CONV,
     .refusal = "only \"conv\" is implemented"},
    {.name = "dropout", .type = CF_FLOAT, .offset = CF_NONE, .flags = CF_IMPL, .impl_min = 0,
     .impl_max = 0, .refusal = "dropout is not implemented; only 0.0"},
    {.name = "act_fn", .type = CF_CHOICE, .offset = CF_NONE, .choices = ACT,
     .refusal = "only \"silu\" (or its alias \"swish\") is implemented"},
    {.name = "attention_head_dim", .type = CF_INT, .offset = OFF(attention_head_dim),
     .flags = CF_NULLABLE | CF_MIN, .min = 1, .def_int = 8},
    {.name = "norm_num_groups", .type = CF_INT, .offset = OFF(norm_num_groups), .flags = CF_MIN,
     .min = 1, .def_int = 32},
    {.name = "attn_norm_num_groups", .type = CF_INT, .offset = OFF(attn_norm_num_groups),
     .flags = CF_NULLABLE | CF_MIN, .min = 1},
    {.name = "norm_eps", .type = CF_FLOAT, .offset = OFF(norm_eps), .flags = CF_GT_MIN, .min = 0,
     .def_float = 1e-5},
    {.name = "resnet_time_scale_shift", .type = CF_CHOICE, .offset = CF_NONE, .choices = SHIFT,
     .refusal = "only \"default\" is implemented"},
    {.name = "add_attention", .type = CF_BOOL, .offset = OFF(add_attention), .def_int = 1},
    {.name = "class_embed_type", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null, with num_class_embeds, is implemented"},
    {.name = "num_class_embeds", .type = CF_INT, .offset = OFF(num_class_embeds),
     .flags = CF_NULLABLE | CF_MIN | CF_IMPL, .min = 1, .impl_min = 1,
     .impl_max = UNET_MAX_CLASS_EMBEDS, .refusal = "jtrak supports at most 100000 classes"},
    {.name = "num_train_timesteps", .type = CF_INT, .offset = OFF(num_train_timesteps),
     .flags = CF_NULLABLE | CF_MIN, .min = 1},
};
/* clang-format on */
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

/* ---- parse ---- */

int unet_config_from_json(UNetConfig *cfg, const void *root_, const char *path, JtError *err) {
    const cJSON *root = root_;
    if (!path) path = "config.json";
    if (!cJSON_IsObject(root))
        return jt_fail(err, "%s: invalid config: the top level is not a JSON object", path);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (cls && !cJSON_IsString(cls))
        return jt_fail(err, "%s: field '_class_name': expected a string (the model class)", path);
    if (cls && strcmp(cls->valuestring, UNET_CLASS) != 0)
        return jt_fail(
            err, "%s: field '_class_name': \"%.80s\" is not supported (only \"" UNET_CLASS "\")",
            path, cls->valuestring);

    /* Start from the UNet2DModel class defaults (the rows' defaults; unet2d.md 1.1) over the JT
     * config, whose level lists fill the entries past n_levels (as they always have: configs
     * compare equal with memcmp after a round trip). */
    UNetConfig c;
    unet_config_default(&c);
    cf_defaults(FIELDS, N_FIELDS, &c);
    CfSeen seen;
    if (cf_parse(FIELDS, N_FIELDS, UNET_CLASS, root, &c, &seen, path, err) != JT_OK) return JT_ERR;
    static const char *const per_level[] = {"down_block_types", "up_block_types"};
    for (int k = 0; k < 2; k++) {
        int i = cf_find(FIELDS, N_FIELDS, per_level[k]);
        if (seen.count[i] != c.n_levels)
            return jt_fail(err, "%s: field '%s': %d entries but block_out_channels has %d", path,
                           per_level[k], seen.count[i], c.n_levels);
    }
    if (unet_config_validate(&c, path, err) != JT_OK) return JT_ERR;
    *cfg = c;
    return JT_OK;
}

int unet_config_parse(UNetConfig *cfg, const char *json_text, const char *path, JtError *err) {
    if (!path) path = "config.json";
    void *root;
    if (cf_json_parse(json_text, path, &root, err) != JT_OK) return JT_ERR;
    int rc = unet_config_from_json(cfg, root, path, err);
    cf_json_free(root);
    return rc;
}

int unet_config_load(UNetConfig *cfg, const char *path, JtError *err) {
    char *text;
    if (cf_read_file(path, &text, err) != JT_OK) return JT_ERR;
    int rc = unet_config_parse(cfg, text, path, err);
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
    if (cfg->cond) return unet_config_cond_validate(cfg, path, err);
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
        if (ch[i] > UNET_MAX_CHANNELS)
            return jt_fail(err,
                           "%s: field 'block_out_channels': entry %d is %d (jtrak supports at "
                           "most %d channels per level)",
                           path, i, ch[i], UNET_MAX_CHANNELS);
        if (cfg->down_attn[i] != 0 && cfg->down_attn[i] != 1)
            return jt_fail(err, "%s: field 'down_block_types': entry %d is not a block type", path,
                           i);
        if (cfg->up_attn[i] != 0 && cfg->up_attn[i] != 1)
            return jt_fail(err, "%s: field 'up_block_types': entry %d is not a block type", path,
                           i);
    }
    struct {
        const char *field;
        int value, min, max; /* max: the stated limit (config.h), INT_MAX for none */
    } mins[] = {
        {"sample_size", cfg->sample_size, 0, UNET_MAX_SAMPLE_SIZE},
        {"in_channels", cfg->in_channels, 1, UNET_MAX_IO_CHANNELS},
        {"out_channels", cfg->out_channels, 1, UNET_MAX_IO_CHANNELS},
        {"time_embedding_dim", cfg->time_embedding_dim, 0, UNET_MAX_TIME_EMBED_DIM},
        {"layers_per_block", L, 1, UNET_MAX_LAYERS_PER_BLOCK},
        {"downsample_padding", cfg->downsample_padding, 0, INT_MAX},
        {"attention_head_dim", cfg->attention_head_dim, 0, INT_MAX},
        {"norm_num_groups", G, 1, INT_MAX},
        {"attn_norm_num_groups", cfg->attn_norm_num_groups, 0, INT_MAX},
        {"num_train_timesteps", cfg->num_train_timesteps, 0, INT_MAX},
        {"num_class_embeds", cfg->num_class_embeds, 0, INT_MAX},
        {"sample_size", cfg->sample_h, 0, UNET_MAX_SAMPLE_SIZE},
        {"sample_size", cfg->sample_w, 0, UNET_MAX_SAMPLE_SIZE},
    };
    for (size_t i = 0; i < sizeof mins / sizeof mins[0]; i++) {
        if (mins[i].value < mins[i].min)
            return jt_fail(err, "%s: field '%s': %d is out of range (must be >= %d)", path,
                           mins[i].field, mins[i].value, mins[i].min);
        if (mins[i].value > mins[i].max)
            return jt_fail(err, "%s: field '%s': %d is not supported (jtrak supports at most %d)",
                           path, mins[i].field, mins[i].value, mins[i].max);
    }
    if (cfg->downsample_padding > 1)
        return jt_fail(err, "%s: field 'downsample_padding': %d is not supported (0 or 1)", path,
                       cfg->downsample_padding);
    if (cfg->num_class_embeds > UNET_MAX_CLASS_EMBEDS)
        return jt_fail(err,
                       "%s: field 'num_class_embeds': %d is not supported (jtrak supports at most "
                       "%d classes)",
                       path, cfg->num_class_embeds, UNET_MAX_CLASS_EMBEDS);
    if ((cfg->sample_h > 0) != (cfg->sample_w > 0))
        return jt_fail(err, "%s: field 'sample_size': [%d, %d]: height and width must both be >= 1",
                       path, cfg->sample_h, cfg->sample_w);
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

/* ---- geometry ---- */

int unet_config_height(const UNetConfig *cfg) {
    return cfg->sample_h ? cfg->sample_h : cfg->sample_size;
}

int unet_config_width(const UNetConfig *cfg) {
    return cfg->sample_w ? cfg->sample_w : cfg->sample_size;
}

void unet_config_set_size(UNetConfig *cfg, int height, int width) {
    if (unet_config_height(cfg) == height && unet_config_width(cfg) == width) return;
    if (height == width) {
        cfg->sample_size = height;
        cfg->sample_h = cfg->sample_w = 0;
    } else {
        cfg->sample_size = 0; /* not square: no single side (as the parser reads [h, w]) */
        cfg->sample_h = height;
        cfg->sample_w = width;
    }
}

int unet_config_size_divisor(const UNetConfig *cfg) {
    return 1 << (cfg->n_levels > 0 ? cfg->n_levels - 1 : 0);
}

int unet_config_check_size(const UNetConfig *cfg, int height, int width, const char *what,
                           JtError *err) {
    const int f = unet_config_size_divisor(cfg);
    if (height >= f && width >= f && height % f == 0 && width % f == 0) return JT_OK;
    /* the nearest sizes that work below and above, side by side */
    int hl = height / f * f, wl = width / f * f;
    int hu = (height + f - 1) / f * f, wu = (width + f - 1) / f * f;
    if (hl < f) hl = f;
    if (wl < f) wl = f;
    if (hu < f) hu = f;
    if (wu < f) wu = f;
    char lo[32], hi[32], alt[48] = "";
    snprintf(lo, sizeof lo, hl == wl ? "%d" : "%dx%d", hl, wl);
    snprintf(hi, sizeof hi, hu == wu ? "%d" : "%dx%d", hu, wu);
    if (strcmp(lo, hi) != 0) snprintf(alt, sizeof alt, " or --size %s", hi);
    return jt_fail(err,
                   "%s: %dx%d images do not fit a %d-level U-Net, whose height and width must be "
                   "multiples of %d (e.g. --size %s%s with --fit resize, pad or crop)",
                   what, height, width, cfg->n_levels, f, lo, alt);
}

/* ---- serialise ---- */

char *unet_config_to_json(const UNetConfig *cfg) {
    if (cfg->cond) return unet_config_cond_to_json(cfg);
    return cf_to_json(FIELDS, N_FIELDS, UNET_CLASS, cfg);
}
