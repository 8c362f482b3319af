/* config_cond.c: the diffusers UNet2DConditionModel config.json (ldm.md section 2.7), read into
 * the same UNetConfig as UNet2DModel with cond = 1. Follows the signature of diffusers'
 * UNet2DConditionModel.__init__ (0.42.1, models/unets/unet_2d_condition.py): every parameter is a
 * row of the table below (core/config_fields.h) with its class default; what jtrak implements is
 * parsed, what ldm.md 2.7 says to refuse is refused with one line naming the file, the field and
 * the value. The three level lists are required (diffusers always writes them). Traps kept in
 * mind: attention_head_dim is the NUMBER of heads in this class (diffusers issue #2011) and
 * num_attention_heads must be null; per-level lists are reversed for the up blocks. */
#include "unet/config.h"

#include "core/config_fields.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COND_CLASS "UNet2DConditionModel"

void unet_config_cond_default(UNetConfig *cfg) {
    static const int ch[4] = {320, 640, 1280, 1280};
    static const int down[4] = {1, 1, 1, 0}, up[4] = {0, 1, 1, 1};
    unet_config_default(cfg);
    cfg->cond = 1;
    cfg->sample_size = 0;
    cfg->in_channels = cfg->out_channels = 4;
    cfg->n_levels = 4;
    for (int i = 0; i < 4; i++) {
        cfg->block_out_channels[i] = ch[i];
        cfg->down_attn[i] = down[i];
        cfg->up_attn[i] = up[i];
    }
    cfg->layers_per_block = 2;
    cfg->add_attention = 0; /* UNet2DModel's mid attention: not used by this class */
    cfg->mid_block_type = 0;
    cfg->heads[0] = 8;
    cfg->n_heads = 0;
    cfg->cross_attention_dim = 1280;
    cfg->transformer_layers[0] = 1;
    cfg->n_transformer_layers = 0;
    cfg->addition_embed_type_num_heads = 64;
    cfg->encoder_hid_dim_type = -1;
}

/* ---- per-level values ---- */

static int level_value(const int *v, int n_list, int i) {
    return n_list ? v[i] : v[0];
}
int unet_config_heads_down(const UNetConfig *cfg, int i) {
    return level_value(cfg->heads, cfg->n_heads, i);
}
int unet_config_heads_up(const UNetConfig *cfg, int i) {
    return level_value(cfg->heads, cfg->n_heads, cfg->n_levels - 1 - i);
}
int unet_config_heads_mid(const UNetConfig *cfg) {
    return level_value(cfg->heads, cfg->n_heads, cfg->n_levels - 1);
}
int unet_config_tlayers_down(const UNetConfig *cfg, int i) {
    return level_value(cfg->transformer_layers, cfg->n_transformer_layers, i);
}
int unet_config_tlayers_up(const UNetConfig *cfg, int i) {
    return level_value(cfg->transformer_layers, cfg->n_transformer_layers, cfg->n_levels - 1 - i);
}
int unet_config_tlayers_mid(const UNetConfig *cfg) {
    return level_value(cfg->transformer_layers, cfg->n_transformer_layers, cfg->n_levels - 1);
}

/* ---- the UNet2DConditionModel fields ---- */

#define OFF(f) offsetof(UNetConfig, f)

static const char *const DOWN_TYPES[] = {"DownBlock2D", "CrossAttnDownBlock2D", NULL};
static const char *const UP_TYPES[] = {"UpBlock2D", "CrossAttnUpBlock2D", NULL};
static const char *const MID_TYPES[] = {"UNetMidBlock2DCrossAttn", "UNetMidBlock2D", NULL};
static const char *const POSITIONAL[] = {"positional", NULL};
static const char *const ACT[] = {"silu", "swish", NULL};
static const char *const SHIFT[] = {"default", NULL};
static const char *const DEFAULT[] = {"default", NULL};
static const char *const TEXT_PROJ[] = {"text_proj", NULL};

/* clang-format off */
static const ConfigField FIELDS[] = {
    {.name = "block_out_channels", .type = CF_INT_LIST, .offset = OFF(block_out_channels),
     .count_offset = OFF(n_levels), .flags = CF_REQUIRED | CF_MIN | CF_IMPL, .min = 1,
     .impl_min = 1, .impl_max = UNET_MAX_CHANNELS, .max_len = UNET_MAX_LEVELS,
     .refusal = "jtrak supports at most 16384 channels per level"},
    {.name = "down_block_types", .type = CF_TYPE_LIST, .offset = OFF(down_attn),
     .count_offset = OFF(n_levels), .flags = CF_REQUIRED | CF_SHARED_COUNT,
     .max_len = UNET_MAX_LEVELS, .choices = DOWN_TYPES,
     .refusal = "only DownBlock2D and CrossAttnDownBlock2D are implemented"},
    {.name = "up_block_types", .type = CF_TYPE_LIST, .offset = OFF(up_attn),
     .count_offset = OFF(n_levels), .flags = CF_REQUIRED | CF_SHARED_COUNT,
     .max_len = UNET_MAX_LEVELS, .choices = UP_TYPES,
     .refusal = "only UpBlock2D and CrossAttnUpBlock2D are implemented"},
    {.name = "mid_block_type", .type = CF_CHOICE, .offset = OFF(mid_block_type),
     .flags = CF_NULLABLE, .choices = MID_TYPES,
     .refusal = "only UNetMidBlock2DCrossAttn, UNetMidBlock2D or null is implemented"},
    {.name = "sample_size", .type = CF_INT_OR_PAIR, .offset = OFF(sample_size),
     .pair_offset = OFF(sample_h), .count_offset = OFF(sample_w),
     .flags = CF_NULLABLE | CF_MIN | CF_IMPL, .min = 1, .impl_min = 1,
     .impl_max = UNET_MAX_SAMPLE_SIZE, .refusal = "jtrak supports images of at most 8192 pixels "
     "a side"},
    {.name = "in_channels", .type = CF_INT, .offset = OFF(in_channels),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = UNET_MAX_IO_CHANNELS,
     .refusal = "jtrak supports at most 1024 image channels", .def_int = 4},
    {.name = "out_channels", .type = CF_INT, .offset = OFF(out_channels),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = UNET_MAX_IO_CHANNELS,
     .refusal = "jtrak supports at most 1024 image channels", .def_int = 4},
    {.name = "center_input_sample", .type = CF_BOOL, .offset = OFF(center_input_sample)},
    {.name = "flip_sin_to_cos", .type = CF_BOOL, .offset = OFF(flip_sin_to_cos), .def_int = 1},
    {.name = "freq_shift", .type = CF_FLOAT, .offset = OFF(freq_shift)},
    {.name = "only_cross_attention", .type = CF_BOOL, .offset = OFF(only_cross_attention)},
    {.name = "layers_per_block", .type = CF_INT, .offset = OFF(layers_per_block),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = UNET_MAX_LAYERS_PER_BLOCK,
     .refusal = "jtrak supports at most 32 layers per block", .def_int = 2},
    {.name = "downsample_padding", .type = CF_INT, .offset = OFF(downsample_padding),
     .flags = CF_MIN | CF_IMPL, .min = 0, .impl_min = 0, .impl_max = 1, .refusal = "0 or 1",
     .def_int = 1},
    {.name = "mid_block_scale_factor", .type = CF_FLOAT, .offset = OFF(mid_block_scale_factor),
     .def_float = 1.0},
    {.name = "dropout", .type = CF_FLOAT, .offset = CF_NONE, .flags = CF_IMPL, .impl_min = 0,
     .impl_max = 0, .refusal = "dropout is not implemented; only 0.0"},
    {.name = "act_fn", .type = CF_CHOICE, .offset = CF_NONE, .choices = ACT,
     .refusal = "only \"silu\" (or its alias \"swish\") is implemented"},
    {.name = "norm_num_groups", .type = CF_INT, .offset = OFF(norm_num_groups), .flags = CF_MIN,
     .min = 1, .def_int = 32},
    {.name = "norm_eps", .type = CF_FLOAT, .offset = OFF(norm_eps), .flags = CF_GT_MIN, .min = 0,
     .def_float = 1e-5},
    {.name = "cross_attention_dim", .type = CF_INT, .offset = OFF(cross_attention_dim),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = UNET_MAX_CHANNELS,
     .refusal = "jtrak supports a context width of at most 16384", .def_int = 1280},
    {.name = "transformer_layers_per_block", .type = CF_INT_OR_LIST,
     .offset = OFF(transformer_layers), .count_offset = OFF(n_transformer_layers),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = UNET_MAX_TRANSFORMER_LAYERS,
     .max_len = UNET_MAX_LEVELS, .refusal = "jtrak supports at most 64 transformer blocks",
     .def_int = 1},
    {.name = "reverse_transformer_layers_per_block", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented: the up blocks use the reversed "
     "transformer_layers_per_block"},
    {.name = "encoder_hid_dim", .type = CF_INT, .offset = OFF(encoder_hid_dim),
     .flags = CF_NULLABLE | CF_MIN | CF_IMPL, .min = 1, .impl_min = 1,
     .impl_max = UNET_MAX_CHANNELS, .refusal = "jtrak supports a context width of at most 16384"},
    {.name = "encoder_hid_dim_type", .type = CF_CHOICE, .offset = OFF(encoder_hid_dim_type),
     .flags = CF_NULLABLE, .choices = TEXT_PROJ, .def_int = -1,
     .refusal = "only \"text_proj\" or null is implemented (image projections are not)"},
    {.name = "attention_head_dim", .type = CF_INT_OR_LIST, .offset = OFF(heads),
     .count_offset = OFF(n_heads), .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1,
     .impl_max = UNET_MAX_CHANNELS, .max_len = UNET_MAX_LEVELS,
     .refusal = "at most 16384 heads", .def_int = 8},
    {.name = "num_attention_heads", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented: diffusers' UNet2DConditionModel raises on it; its "
     "attention_head_dim is the number of heads"},
    {.name = "dual_cross_attention", .type = CF_BOOL, .offset = CF_NONE},
    {.name = "use_linear_projection", .type = CF_BOOL, .offset = OFF(use_linear_projection)},
    {.name = "class_embed_type", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null, with num_class_embeds, is implemented"},
    {.name = "addition_embed_type", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented (SDXL's added conditioning is not)"},
    {.name = "addition_time_embed_dim", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented (SDXL's added conditioning is not)"},
    {.name = "num_class_embeds", .type = CF_INT, .offset = OFF(num_class_embeds),
     .flags = CF_NULLABLE | CF_MIN | CF_IMPL, .min = 1, .impl_min = 1,
     .impl_max = UNET_MAX_CLASS_EMBEDS, .refusal = "jtrak supports at most 100000 classes"},
    {.name = "upcast_attention", .type = CF_BOOL, .offset = OFF(upcast_attention)},
    {.name = "resnet_time_scale_shift", .type = CF_CHOICE, .offset = CF_NONE, .choices = SHIFT,
     .refusal = "only \"default\" is implemented"},
    {.name = "resnet_skip_time_act", .type = CF_BOOL, .offset = CF_NONE},
    {.name = "resnet_out_scale_factor", .type = CF_FLOAT, .offset = CF_NONE, .flags = CF_IMPL,
     .impl_min = 1, .impl_max = 1, .refusal = "only 1.0 is implemented", .def_float = 1.0},
    {.name = "time_embedding_type", .type = CF_CHOICE, .offset = CF_NONE, .choices = POSITIONAL,
     .refusal = "only \"positional\" is implemented"},
    {.name = "time_embedding_dim", .type = CF_INT, .offset = OFF(time_embedding_dim),
     .flags = CF_NULLABLE | CF_MIN | CF_IMPL, .min = 0, .impl_min = 0,
     .impl_max = UNET_MAX_TIME_EMBED_DIM, .refusal = "jtrak supports at most 65536"},
    {.name = "time_embedding_act_fn", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented"},
    {.name = "timestep_post_act", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented"},
    {.name = "time_cond_proj_dim", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented (LCM's guidance embedding is not)"},
    {.name = "conv_in_kernel", .type = CF_INT, .offset = CF_NONE, .flags = CF_MIN | CF_IMPL,
     .min = 1, .impl_min = 3, .impl_max = 3, .refusal = "only 3 is implemented", .def_int = 3},
    {.name = "conv_out_kernel", .type = CF_INT, .offset = CF_NONE, .flags = CF_MIN | CF_IMPL,
     .min = 1, .impl_min = 3, .impl_max = 3, .refusal = "only 3 is implemented", .def_int = 3},
    {.name = "projection_class_embeddings_input_dim", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented (projection class embeddings are not)"},
    {.name = "attention_type", .type = CF_CHOICE, .offset = CF_NONE, .choices = DEFAULT,
     .refusal = "only \"default\" is implemented (GLIGEN's gated attention is not)"},
    {.name = "class_embeddings_concat", .type = CF_BOOL, .offset = CF_NONE},
    {.name = "mid_block_only_cross_attention", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented"},
    {.name = "cross_attention_norm", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "only null is implemented"},
    {.name = "addition_embed_type_num_heads", .type = CF_INT,
     .offset = OFF(addition_embed_type_num_heads), .flags = CF_MIN, .min = 1, .def_int = 64},
};
/* clang-format on */
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

/* Booleans diffusers accepts whose true jtrak does not implement (the table can only say which
 * JSON type they have), and fields that may be lists in diffusers but only scalars here. */
static const struct {
    const char *name, *why;
} REFUSED_TRUE[] = {
    {"dual_cross_attention", "only false is implemented (dual transformers are not)"},
    {"resnet_skip_time_act", "only false is implemented"},
    {"class_embeddings_concat", "only false is implemented (the class embedding is added)"},
};
static const struct {
    const char *name, *why;
} REFUSED_LIST[] = {
    {"only_cross_attention", "only one true or false for every block is implemented"},
    {"cross_attention_dim", "only one integer for every block is implemented"},
    {"layers_per_block", "only one integer for every level is implemented"},
};

static int refuse_by_hand(const cJSON *root, const char *path, JtError *err) {
    for (size_t i = 0; i < sizeof REFUSED_TRUE / sizeof *REFUSED_TRUE; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, REFUSED_TRUE[i].name);
        if (cJSON_IsTrue(it))
            return jt_fail(err, "%s: field '%s': true is not supported (%s)", path,
                           REFUSED_TRUE[i].name, REFUSED_TRUE[i].why);
    }
    for (size_t i = 0; i < sizeof REFUSED_LIST / sizeof *REFUSED_LIST; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, REFUSED_LIST[i].name);
        if (cJSON_IsArray(it))
            return jt_fail(err, "%s: field '%s': a per-level list is not supported (%s)", path,
                           REFUSED_LIST[i].name, REFUSED_LIST[i].why);
    }
    return JT_OK;
}

/* ---- parse ---- */

int unet_config_cond_from_json(UNetConfig *cfg, const void *root_, const char *path, JtError *err) {
    const cJSON *root = root_;
    if (!path) path = "config.json";
    if (!cJSON_IsObject(root))
        return jt_fail(err, "%s: invalid config: the top level is not a JSON object", path);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (!cJSON_IsString(cls) || strcmp(cls->valuestring, COND_CLASS) != 0)
        return jt_fail(err, "%s: field '_class_name': expected \"" COND_CLASS "\"", path);
    UNetConfig c;
    unet_config_cond_default(&c);
    cf_defaults(FIELDS, N_FIELDS, &c);
    CfSeen seen;
    if (refuse_by_hand(root, path, err) != JT_OK) return JT_ERR;
    if (cf_parse(FIELDS, N_FIELDS, COND_CLASS, root, &c, &seen, path, err) != JT_OK) return JT_ERR;
    static const char *const per_level[] = {"down_block_types", "up_block_types"};
    for (int k = 0; k < 2; k++) {
        int i = cf_find(FIELDS, N_FIELDS, per_level[k]);
        if (seen.count[i] != c.n_levels)
            return jt_fail(err, "%s: field '%s': %d entries but block_out_channels has %d", path,
                           per_level[k], seen.count[i], c.n_levels);
    }
    /* diffusers' _set_encoder_hid_proj: the dim alone means "text_proj" (and it registers that
     * to the config); the type alone raises */
    if (c.encoder_hid_dim > 0 && c.encoder_hid_dim_type < 0) c.encoder_hid_dim_type = 0;
    if (c.encoder_hid_dim == 0 && c.encoder_hid_dim_type >= 0)
        return jt_fail(err, "%s: field 'encoder_hid_dim_type': \"text_proj\" needs encoder_hid_dim",
                       path);
    if (unet_config_cond_validate(&c, path, err) != JT_OK) return JT_ERR;
    *cfg = c;
    return JT_OK;
}

/* ---- validate ---- */

int unet_config_cond_validate(const UNetConfig *cfg, const char *path, JtError *err) {
    if (!path) path = "config";
    CHECK(cfg->cond, "unet_config_cond_validate on a UNet2DModel config");
    const int n = cfg->n_levels;
    const int *ch = cfg->block_out_channels;
    /* The resnets, samplers, group counts and level limits are UNet2DModel's: check them as one
     * (the transformers' GroupNorm normalises the same channel counts as the resnets' norm2). */
    UNetConfig plain = *cfg;
    plain.cond = 0;
    plain.add_attention = 0;
    plain.attention_head_dim = 0;
    if (n >= 1 && n <= UNET_MAX_LEVELS)
        for (int i = 0; i < n; i++) {
            if (cfg->down_attn[i] != 0 && cfg->down_attn[i] != 1)
                return jt_fail(err, "%s: field 'down_block_types': entry %d is not a block type",
                               path, i);
            if (cfg->up_attn[i] != 0 && cfg->up_attn[i] != 1)
                return jt_fail(err, "%s: field 'up_block_types': entry %d is not a block type",
                               path, i);
            plain.down_attn[i] = plain.up_attn[i] = 0;
        }
    if (unet_config_validate(&plain, path, err) != JT_OK) return JT_ERR;
    if (cfg->add_attention)
        return jt_fail(err, "%s: add_attention is a UNet2DModel field (not of " COND_CLASS ")",
                       path);
    if (cfg->mid_block_type < -1 || cfg->mid_block_type > 1)
        return jt_fail(err, "%s: field 'mid_block_type': %d is not a block type", path,
                       cfg->mid_block_type);
    if (cfg->encoder_hid_dim < 0 || cfg->encoder_hid_dim > UNET_MAX_CHANNELS ||
        (cfg->encoder_hid_dim > 0) != (cfg->encoder_hid_dim_type == 0))
        return jt_fail(err,
                       "%s: fields 'encoder_hid_dim' (%d) and 'encoder_hid_dim_type': only a "
                       "width of 1 to %d with \"text_proj\", or null and null",
                       path, cfg->encoder_hid_dim, UNET_MAX_CHANNELS);
    if (cfg->cross_attention_dim < 1 || cfg->cross_attention_dim > UNET_MAX_CHANNELS)
        return jt_fail(err, "%s: field 'cross_attention_dim': %d is out of range (1 to %d)", path,
                       cfg->cross_attention_dim, UNET_MAX_CHANNELS);
    /* Per-level lists: as many entries as levels (diffusers raises otherwise). */
    const struct {
        const char *field;
        int len;
        const int *v;
        int max;
    } lists[] = {{"attention_head_dim", cfg->n_heads, cfg->heads, UNET_MAX_CHANNELS},
                 {"transformer_layers_per_block", cfg->n_transformer_layers,
                  cfg->transformer_layers, UNET_MAX_TRANSFORMER_LAYERS}};
    for (int k = 0; k < 2; k++) {
        if (lists[k].len != 0 && lists[k].len != n)
            return jt_fail(err, "%s: field '%s': %d entries but block_out_channels has %d", path,
                           lists[k].field, lists[k].len, n);
        for (int i = 0; i < (lists[k].len ? n : 1); i++)
            if (lists[k].v[i] < 1 || lists[k].v[i] > lists[k].max)
                return jt_fail(err, "%s: field '%s': %d is out of range (1 to %d)", path,
                               lists[k].field, lists[k].v[i], lists[k].max);
    }
    /* Heads split a block's channels contiguously: C % heads == 0 (diffusers would silently
     * build an inner width heads * (C / heads) < C). */
    char where[96];
    for (int i = 0; i <= 2 * n; i++) {
        int C, h, on;
        if (i < n) {
            C = ch[i], h = unet_config_heads_down(cfg, i), on = cfg->down_attn[i];
            snprintf(where, sizeof where, "down_blocks.%d.attentions", i);
        } else if (i < 2 * n) {
            int u = i - n;
            C = ch[n - 1 - u], h = unet_config_heads_up(cfg, u), on = cfg->up_attn[u];
            snprintf(where, sizeof where, "up_blocks.%d.attentions", u);
        } else {
            C = ch[n - 1], h = unet_config_heads_mid(cfg), on = cfg->mid_block_type == 0;
            snprintf(where, sizeof where, "mid_block.attentions");
        }
        if (on && C % h)
            return jt_fail(err,
                           "%s: field 'attention_head_dim': %d heads do not divide the %d "
                           "channels of %s (in " COND_CLASS " attention_head_dim is the number "
                           "of heads)",
                           path, h, C, where);
    }
    return JT_OK;
}

/* ---- serialise ---- */

char *unet_config_cond_to_json(const UNetConfig *cfg) {
    return cf_to_json(FIELDS, N_FIELDS, COND_CLASS, cfg);
}
