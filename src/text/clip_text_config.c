/* clip_text_config.c: transformers' CLIPTextConfig as read from a config.json (see clip_text.h).
 * Follows the signature of transformers' CLIPTextConfig.__init__ (5.23.0,
 * models/clip/configuration_clip.py) and ldm.md 4.1: the fields the forward reads are a
 * core/config_fields.h table with their class defaults and jtrak's limits; hidden_act other than
 * quick_gelu / gelu is refused; dropout and initialisation fields are accepted (eval mode, loaded
 * weights) and ignored; transformers' bookkeeping keys are accepted. */
#include "text/clip_text.h"

#include "core/config_fields.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void clip_text_config_default(ClipTextConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->vocab_size = 49408;
    cfg->hidden_size = 512;
    cfg->intermediate_size = 2048;
    cfg->num_hidden_layers = 12;
    cfg->num_attention_heads = 8;
    cfg->max_position_embeddings = 77;
    cfg->hidden_act = CLIP_ACT_QUICK_GELU;
    cfg->layer_norm_eps = 1e-5f;
    cfg->pad_token_id = 1;
    cfg->bos_token_id = 49406;
    cfg->eos_token_id = 49407;
    cfg->projection_dim = 512;
}

#define OFF(f) offsetof(ClipTextConfig, f)
static const char *const ACTS[] = {"quick_gelu", "gelu", NULL};

/* clang-format off */
static const ConfigField FIELDS[] = {
    {.name = "vocab_size", .type = CF_INT, .offset = OFF(vocab_size),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = CLIP_TEXT_MAX_VOCAB,
     .refusal = "jtrak's limit is 1048576 tokens", .def_int = 49408},
    {.name = "hidden_size", .type = CF_INT, .offset = OFF(hidden_size),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = CLIP_TEXT_MAX_HIDDEN,
     .refusal = "jtrak's limit is 8192", .def_int = 512},
    {.name = "intermediate_size", .type = CF_INT, .offset = OFF(intermediate_size),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = CLIP_TEXT_MAX_INTERMEDIATE,
     .refusal = "jtrak's limit is 32768", .def_int = 2048},
    {.name = "num_hidden_layers", .type = CF_INT, .offset = OFF(num_hidden_layers),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = CLIP_TEXT_MAX_LAYERS,
     .refusal = "jtrak's limit is 64 layers", .def_int = 12},
    {.name = "num_attention_heads", .type = CF_INT, .offset = OFF(num_attention_heads),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = CLIP_TEXT_MAX_HEADS,
     .refusal = "jtrak's limit is 128 heads", .def_int = 8},
    {.name = "max_position_embeddings", .type = CF_INT, .offset = OFF(max_position_embeddings),
     .flags = CF_MIN | CF_IMPL, .min = 1, .impl_min = 1, .impl_max = CLIP_TEXT_MAX_POSITIONS,
     .refusal = "jtrak's limit is 4096 positions", .def_int = 77},
    {.name = "hidden_act", .type = CF_CHOICE, .offset = OFF(hidden_act), .choices = ACTS,
     .refusal = "jtrak implements hidden_act \"quick_gelu\" and \"gelu\"",
     .def_int = CLIP_ACT_QUICK_GELU},
    {.name = "layer_norm_eps", .type = CF_FLOAT, .offset = OFF(layer_norm_eps),
     .flags = CF_GT_MIN, .min = 0, .def_float = 1e-5},
    {.name = "bos_token_id", .type = CF_INT, .offset = OFF(bos_token_id), .flags = CF_NULLABLE,
     .def_int = 49406},
    {.name = "eos_token_id", .type = CF_INT, .offset = OFF(eos_token_id), .def_int = 49407},
    {.name = "pad_token_id", .type = CF_INT, .offset = OFF(pad_token_id), .flags = CF_NULLABLE,
     .def_int = 1},
    {.name = "projection_dim", .type = CF_INT, .offset = OFF(projection_dim),
     .flags = CF_MIN, .min = 1, .def_int = 512},
    /* eval mode: dropout is the identity; the weights are loaded, so the init scales do not matter */
    {.name = "attention_dropout", .type = CF_FLOAT, .offset = CF_NONE, .flags = CF_MIN | CF_MAX,
     .min = 0, .max = 1},
    {.name = "dropout", .type = CF_FLOAT, .offset = CF_NONE, .flags = CF_MIN | CF_MAX,
     .min = 0, .max = 1},
    {.name = "initializer_range", .type = CF_FLOAT, .offset = CF_NONE, .def_float = 0.02},
    {.name = "initializer_factor", .type = CF_FLOAT, .offset = CF_NONE, .def_float = 1.0},
};
/* clang-format on */
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

/* transformers' bookkeeping keys: not CLIPTextConfig parameters. "architectures" names the class
 * (model_kind.c dispatches on it); "model_type" must be CLIP's text model. */
static const char *const BOOKKEEPING[] = {"architectures", "transformers_version", "dtype",
                                          "torch_dtype", "model_type"};

int clip_text_config_from_json(ClipTextConfig *cfg, const void *root_, const char *path,
                               JtError *err) {
    const cJSON *root = root_;
    if (!path) path = "config.json";
    if (!cJSON_IsObject(root))
        return jt_fail(err, "%s: invalid config: the top level is not a JSON object", path);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt && !(cJSON_IsString(mt) && strcmp(mt->valuestring, "clip_text_model") == 0))
        return jt_fail(err, "%s: field 'model_type': expected \"clip_text_model\" for %s", path,
                       CLIP_TEXT_CLASS);
    cJSON *copy = cJSON_Duplicate(root, 1);
    CHECK(copy, "cJSON_Duplicate: out of memory");
    for (size_t i = 0; i < sizeof BOOKKEEPING / sizeof BOOKKEEPING[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(copy, BOOKKEEPING[i]);
    ClipTextConfig c;
    clip_text_config_default(&c);
    cf_defaults(FIELDS, N_FIELDS, &c);
    int rc = cf_parse(FIELDS, N_FIELDS, CLIP_TEXT_CLASS, copy, &c, NULL, path, err);
    cJSON_Delete(copy);
    if (rc == JT_OK) rc = clip_text_config_validate(&c, path, err);
    if (rc == JT_OK) *cfg = c;
    return rc;
}

int clip_text_config_validate(const ClipTextConfig *c, const char *path, JtError *err) {
    if (!path) path = "config";
    if (c->vocab_size < 1 || c->vocab_size > CLIP_TEXT_MAX_VOCAB)
        return jt_fail(err, "%s: field 'vocab_size': %d is outside 1..%d", path, c->vocab_size,
                       CLIP_TEXT_MAX_VOCAB);
    if (c->hidden_size < 1 || c->hidden_size > CLIP_TEXT_MAX_HIDDEN)
        return jt_fail(err, "%s: field 'hidden_size': %d is outside 1..%d", path, c->hidden_size,
                       CLIP_TEXT_MAX_HIDDEN);
    if (c->intermediate_size < 1 || c->intermediate_size > CLIP_TEXT_MAX_INTERMEDIATE)
        return jt_fail(err, "%s: field 'intermediate_size': %d is outside 1..%d", path,
                       c->intermediate_size, CLIP_TEXT_MAX_INTERMEDIATE);
    if (c->num_hidden_layers < 1 || c->num_hidden_layers > CLIP_TEXT_MAX_LAYERS)
        return jt_fail(err, "%s: field 'num_hidden_layers': %d is outside 1..%d", path,
                       c->num_hidden_layers, CLIP_TEXT_MAX_LAYERS);
    if (c->num_attention_heads < 1 || c->num_attention_heads > CLIP_TEXT_MAX_HEADS)
        return jt_fail(err, "%s: field 'num_attention_heads': %d is outside 1..%d", path,
                       c->num_attention_heads, CLIP_TEXT_MAX_HEADS);
    if (c->hidden_size % c->num_attention_heads)
        return jt_fail(err,
                       "%s: field 'num_attention_heads': %d heads do not divide hidden_size %d",
                       path, c->num_attention_heads, c->hidden_size);
    if (c->max_position_embeddings < 1 || c->max_position_embeddings > CLIP_TEXT_MAX_POSITIONS)
        return jt_fail(err, "%s: field 'max_position_embeddings': %d is outside 1..%d", path,
                       c->max_position_embeddings, CLIP_TEXT_MAX_POSITIONS);
    if (c->hidden_act != CLIP_ACT_QUICK_GELU && c->hidden_act != CLIP_ACT_GELU)
        return jt_fail(err, "%s: field 'hidden_act': not supported (quick_gelu or gelu)", path);
    if (!(c->layer_norm_eps > 0))
        return jt_fail(err, "%s: field 'layer_norm_eps': must be > 0", path);
    if (c->eos_token_id < 0 || c->eos_token_id >= c->vocab_size)
        return jt_fail(err,
                       "%s: field 'eos_token_id': %d is outside the vocabulary 0..%d (the pooled "
                       "output is read at the first EOS)",
                       path, c->eos_token_id, c->vocab_size - 1);
    return JT_OK;
}

char *clip_text_config_to_json(const ClipTextConfig *cfg) {
    return cf_to_json(FIELDS, N_FIELDS, CLIP_TEXT_CLASS, cfg);
}
