/* config.c: the diffusers AutoencoderKL config.json (vae.h), following the signature of
 * AutoencoderKL.__init__ (diffusers 0.42.1, models/autoencoders/autoencoder_kl.py) and ldm.md
 * section 3: the fields are a table (core/config_fields.h) with the class defaults; what diffusers
 * accepts but jtrak does not implement is refused by the parser naming the field (the attention
 * encoder/decoder block types, shift_factor, latents_mean/latents_std, other activations). The
 * checks across fields are vae_config_validate. Also the shipped demo config "vae-fm". */
#include "vae/vae.h"

#include "core/config_fields.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vae_config_default(VaeConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->in_channels = cfg->out_channels = 3;
    cfg->n_levels = 1;
    cfg->block_out_channels[0] = 64;
    cfg->layers_per_block = 1;
    cfg->latent_channels = 4;
    cfg->norm_num_groups = 32;
    cfg->sample_size = 32;
    cfg->scaling_factor = 0.18215f;
    cfg->force_upcast = 1;
    cfg->use_quant_conv = cfg->use_post_quant_conv = cfg->mid_block_add_attention = 1;
}

int vae_config_preset(const char *name, VaeConfig *cfg) {
    if (strcmp(name, "vae-fm") != 0) return 0;
    vae_config_default(cfg);
    static const int ch[3] = {32, 64, 64};
    cfg->n_levels = 3;
    for (int i = 0; i < 3; i++)
        cfg->block_out_channels[i] = ch[i];
    cfg->in_channels = cfg->out_channels = 1;
    cfg->latent_channels = 4;
    cfg->norm_num_groups = 8;
    cfg->sample_size = 32;
    return 1;
}

const char *vae_config_preset_names(void) {
    return "vae-fm";
}

/* ---- the AutoencoderKL fields ---- */

#define OFF(f) offsetof(VaeConfig, f)

static const char *const DOWN_TYPES[] = {"DownEncoderBlock2D", NULL};
static const char *const UP_TYPES[] = {"UpDecoderBlock2D", NULL};
static const char *const ACT[] = {"silu", "swish", NULL};
static const int DEF_CH[1] = {64}, DEF_TYPE[1] = {0};

/* clang-format off */
static const ConfigField FIELDS[] = {
    {.name = "block_out_channels", .type = CF_INT_LIST, .offset = OFF(block_out_channels),
     .count_offset = OFF(n_levels), .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1,
     .impl_max = VAE_MAX_CHANNELS, .max_len = VAE_MAX_LEVELS,
     .refusal = "jtrak supports at most 16384 channels per level", .def_list = DEF_CH,
     .def_len = 1},
    {.name = "down_block_types", .type = CF_TYPE_LIST, .offset = OFF(down_types),
     .count_offset = OFF(n_levels), .flags = CF_SHARED_COUNT, .max_len = VAE_MAX_LEVELS,
     .choices = DOWN_TYPES, .refusal = "only \"DownEncoderBlock2D\" is implemented "
     "(AttnDownEncoderBlock2D is not)", .def_list = DEF_TYPE, .def_len = 1},
    {.name = "up_block_types", .type = CF_TYPE_LIST, .offset = OFF(up_types),
     .count_offset = OFF(n_levels), .flags = CF_SHARED_COUNT, .max_len = VAE_MAX_LEVELS,
     .choices = UP_TYPES, .refusal = "only \"UpDecoderBlock2D\" is implemented "
     "(AttnUpDecoderBlock2D is not)", .def_list = DEF_TYPE, .def_len = 1},
    {.name = "in_channels", .type = CF_INT, .offset = OFF(in_channels),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = VAE_MAX_IO_CHANNELS,
     .refusal = "jtrak supports at most 1024 image channels", .def_int = 3},
    {.name = "out_channels", .type = CF_INT, .offset = OFF(out_channels),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = VAE_MAX_IO_CHANNELS,
     .refusal = "jtrak supports at most 1024 image channels", .def_int = 3},
    {.name = "layers_per_block", .type = CF_INT, .offset = OFF(layers_per_block),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = VAE_MAX_LAYERS_PER_BLOCK,
     .refusal = "jtrak supports at most 32 layers per block", .def_int = 1},
    {.name = "act_fn", .type = CF_CHOICE, .offset = CF_NONE, .choices = ACT,
     .refusal = "only \"silu\" (or its alias \"swish\") is implemented"},
    {.name = "latent_channels", .type = CF_INT, .offset = OFF(latent_channels),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = VAE_MAX_LATENT_CHANNELS,
     .refusal = "jtrak supports at most 1024 latent channels", .def_int = 4},
    {.name = "norm_num_groups", .type = CF_INT, .offset = OFF(norm_num_groups), .flags = CF_MIN,
     .min = 1, .def_int = 32},
    {.name = "sample_size", .type = CF_INT_OR_PAIR, .offset = OFF(sample_size),
     .pair_offset = OFF(sample_h), .count_offset = OFF(sample_w), .flags = CF_MIN | CF_IMPL,
     .min = 1, .impl_min = 1, .impl_max = VAE_MAX_SAMPLE_SIZE,
     .refusal = "jtrak supports images of at most 8192 pixels a side", .def_int = 32},
    {.name = "scaling_factor", .type = CF_FLOAT, .offset = OFF(scaling_factor),
     .flags = CF_GT_MIN, .min = 0, .def_float = 0.18215},
    {.name = "shift_factor", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "a latent shift (SD3/Flux) is not implemented; only null"},
    {.name = "latents_mean", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "per-channel latent statistics are not implemented; only null"},
    {.name = "latents_std", .type = CF_NULL, .offset = CF_NONE,
     .refusal = "per-channel latent statistics are not implemented; only null"},
    {.name = "force_upcast", .type = CF_BOOL, .offset = OFF(force_upcast), .def_int = 1},
    {.name = "use_quant_conv", .type = CF_BOOL, .offset = OFF(use_quant_conv), .def_int = 1},
    {.name = "use_post_quant_conv", .type = CF_BOOL, .offset = OFF(use_post_quant_conv),
     .def_int = 1},
    {.name = "mid_block_add_attention", .type = CF_BOOL, .offset = OFF(mid_block_add_attention),
     .def_int = 1},
};
/* clang-format on */
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

/* ---- parse ---- */

int vae_config_from_json(VaeConfig *cfg, const void *root_, const char *path, JtError *err) {
    const cJSON *root = root_;
    if (!path) path = "config.json";
    if (!cJSON_IsObject(root))
        return jt_fail(err, "%s: invalid config: the top level is not a JSON object", path);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (cls && (!cJSON_IsString(cls) || strcmp(cls->valuestring, VAE_CLASS) != 0))
        return jt_fail(err, "%s: field '_class_name': not \"" VAE_CLASS "\"", path);
    VaeConfig c;
    vae_config_default(&c);
    cf_defaults(FIELDS, N_FIELDS, &c);
    CfSeen seen;
    if (cf_parse(FIELDS, N_FIELDS, VAE_CLASS, root, &c, &seen, path, err) != JT_OK) return JT_ERR;
    static const char *const per_level[] = {"down_block_types", "up_block_types"};
    for (int k = 0; k < 2; k++) {
        int i = cf_find(FIELDS, N_FIELDS, per_level[k]);
        int count = seen.present[i] ? seen.count[i] : 1; /* absent: the one-entry default */
        if (count != c.n_levels)
            return jt_fail(err, "%s: field '%s': %d entries but block_out_channels has %d", path,
                           per_level[k], count, c.n_levels);
    }
    if (vae_config_validate(&c, path, err) != JT_OK) return JT_ERR;
    *cfg = c;
    return JT_OK;
}

int vae_config_parse(VaeConfig *cfg, const char *json_text, const char *path, JtError *err) {
    if (!path) path = "config.json";
    void *root;
    if (cf_json_parse(json_text, path, &root, err) != JT_OK) return JT_ERR;
    int rc = vae_config_from_json(cfg, root, path, err);
    cf_json_free(root);
    return rc;
}

int vae_config_load(VaeConfig *cfg, const char *path, JtError *err) {
    char *text;
    if (cf_read_file(path, &text, err) != JT_OK) return JT_ERR;
    int rc = vae_config_parse(cfg, text, path, err);
    free(text);
    return rc;
}

/* ---- validate ---- */

int vae_config_validate(const VaeConfig *cfg, const char *path, JtError *err) {
    if (!path) path = "config";
    const int n = cfg->n_levels, G = cfg->norm_num_groups;
    if (n < 1 || n > VAE_MAX_LEVELS)
        return jt_fail(err, "%s: field 'block_out_channels': %d levels (1 to %d supported)", path,
                       n, VAE_MAX_LEVELS);
    struct {
        const char *field;
        int value, min, max;
    } ranges[] = {
        {"in_channels", cfg->in_channels, 1, VAE_MAX_IO_CHANNELS},
        {"out_channels", cfg->out_channels, 1, VAE_MAX_IO_CHANNELS},
        {"latent_channels", cfg->latent_channels, 1, VAE_MAX_LATENT_CHANNELS},
        {"layers_per_block", cfg->layers_per_block, 1, VAE_MAX_LAYERS_PER_BLOCK},
        {"norm_num_groups", G, 1, VAE_MAX_CHANNELS},
        {"sample_size", cfg->sample_size, 0, VAE_MAX_SAMPLE_SIZE},
        {"sample_size", cfg->sample_h, 0, VAE_MAX_SAMPLE_SIZE},
        {"sample_size", cfg->sample_w, 0, VAE_MAX_SAMPLE_SIZE},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        if (ranges[i].value < ranges[i].min)
            return jt_fail(err, "%s: field '%s': %d is out of range (must be >= %d)", path,
                           ranges[i].field, ranges[i].value, ranges[i].min);
        if (ranges[i].value > ranges[i].max)
            return jt_fail(err, "%s: field '%s': %d is not supported (jtrak supports at most %d)",
                           path, ranges[i].field, ranges[i].value, ranges[i].max);
    }
    if (vae_config_height(cfg) == 0)
        return jt_fail(err, "%s: field 'sample_size': must be >= 1", path);
    for (int i = 0; i < n; i++) {
        const int c = cfg->block_out_channels[i];
        if (c < 1 || c > VAE_MAX_CHANNELS)
            return jt_fail(err, "%s: field 'block_out_channels': entry %d is %d (1 to %d)", path, i,
                           c, VAE_MAX_CHANNELS);
        if (cfg->down_types[i] != 0 || cfg->up_types[i] != 0)
            return jt_fail(err, "%s: field '%s': entry %d is not a supported block type", path,
                           cfg->down_types[i] ? "down_block_types" : "up_block_types", i);
        /* every GroupNorm of the encoder and decoder normalises a block_out_channels width (the
         * resnets' inputs and outputs, the mid attention, both conv_norm_outs) */
        if (c % G)
            return jt_fail(err,
                           "%s: field 'norm_num_groups': %d groups do not divide the %d channels "
                           "of block_out_channels[%d]",
                           path, G, c, i);
    }
    if (!(cfg->scaling_factor > 0) || !isfinite(cfg->scaling_factor))
        return jt_fail(err, "%s: field 'scaling_factor': %g is out of range (must be > 0)", path,
                       (double)cfg->scaling_factor);
    return JT_OK;
}

/* ---- geometry ---- */

int vae_config_factor(const VaeConfig *cfg) {
    return 1 << (cfg->n_levels > 0 ? cfg->n_levels - 1 : 0);
}
int vae_config_height(const VaeConfig *cfg) {
    return cfg->sample_h ? cfg->sample_h : cfg->sample_size;
}
int vae_config_width(const VaeConfig *cfg) {
    return cfg->sample_w ? cfg->sample_w : cfg->sample_size;
}

int vae_config_check_size(const VaeConfig *cfg, int height, int width, const char *what,
                          JtError *err) {
    const int f = vae_config_factor(cfg);
    if (height >= f && width >= f && height % f == 0 && width % f == 0) return JT_OK;
    int hl = height / f * f, wl = width / f * f;
    int hu = (height + f - 1) / f * f, wu = (width + f - 1) / f * f;
    if (hl < f) hl = f;
    if (wl < f) wl = f;
    char lo[32], hi[32], alt[48] = "";
    snprintf(lo, sizeof lo, hl == wl ? "%d" : "%dx%d", hl, wl);
    snprintf(hi, sizeof hi, hu == wu ? "%d" : "%dx%d", hu, wu);
    if (strcmp(lo, hi) != 0) snprintf(alt, sizeof alt, " or --size %s", hi);
    return jt_fail(err,
                   "%s: %dx%d images do not fit a %d-level AutoencoderKL, whose height and width "
                   "must be multiples of its factor %d (e.g. --size %s%s with --fit pad, crop or "
                   "resize)",
                   what, height, width, cfg->n_levels, f, lo, alt);
}

/* ---- serialise ---- */

char *vae_config_to_json(const VaeConfig *cfg) {
    return cf_to_json(FIELDS, N_FIELDS, VAE_CLASS, cfg);
}
