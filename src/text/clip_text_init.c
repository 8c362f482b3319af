/* clip_text_init.c: a fresh CLIPTextModel as transformers makes one, and its folder as
 * transformers' save_pretrained writes it (see clip_text.h, "init and save").
 *
 * The initialisation follows transformers 5.23.0's CLIPPreTrainedModel._init_weights
 * (models/clip/modeling_clip.py) on top of PreTrainedModel._init_weights (every Linear: normal
 * weight, zero bias; LayerNorm: weight 1, bias 0). With factor = initializer_factor (1.0), D the
 * width and N the number of layers, the std of each weight is
 *   token / position embedding   0.02 factor
 *   q_proj, k_proj, v_proj       D^-1/2 (2N)^-1/2 factor
 *   out_proj                     D^-1/2 factor
 *   fc1                          (2D)^-1/2 factor
 *   fc2                          D^-1/2 (2N)^-1/2 factor
 * (checked with the twin: a CLIPTextModel of the clip-tiny shape has these stds). The normal
 * draws are jtrak's Philox streams keyed by (seed, tensor index), as layout_init_params: the
 * distribution is transformers', the values are not torch's. */
#include "core/rng.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "io/safetensors.h"
#include "text/clip_text.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIP_INIT_TRANSFORMERS_VERSION "5.23.0"

int clip_text_config_preset(const char *name, ClipTextConfig *cfg) {
    if (!name || strcmp(name, "clip-tiny") != 0) return 0;
    clip_text_config_default(cfg); /* vocabulary 49408, 77 positions, quick_gelu, the token ids */
    cfg->hidden_size = 32;
    cfg->intermediate_size = 37;
    cfg->num_hidden_layers = 2;
    cfg->num_attention_heads = 4;
    return 1;
}

const char *clip_text_config_preset_names(void) {
    return "clip-tiny";
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The std of a weight by its transformers name (0: not drawn, see the caller), *ones for the
 * LayerNorm weights. */
static double init_std(const char *name, const ClipTextConfig *c, int *ones) {
    const double D = c->hidden_size, N = c->num_hidden_layers;
    *ones = 0;
    if (ends_with(name, ".bias")) return 0;
    if (strstr(name, "layer_norm")) { /* layer_norm1, layer_norm2, final_layer_norm */
        *ones = 1;
        return 0;
    }
    if (strstr(name, "_embedding.")) return 0.02;
    if (strstr(name, ".q_proj.") || strstr(name, ".k_proj.") || strstr(name, ".v_proj.") ||
        strstr(name, ".fc2."))
        return 1.0 / sqrt(D) / sqrt(2.0 * N);
    if (strstr(name, ".out_proj.")) return 1.0 / sqrt(D);
    if (strstr(name, ".fc1.")) return 1.0 / sqrt(2.0 * D);
    return -1;
}

double clip_text_init_std(const ClipTextConfig *cfg, const char *name) {
    int ones;
    double s = init_std(name, cfg, &ones);
    return ones ? 0 : s;
}

void clip_text_init_params(ClipText *net, uint64_t seed) {
    const ParamLayout *l = clip_text_layout(net);
    const ClipTextConfig *c = clip_text_config(net);
    float *slab = clip_text_params(net);
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        float *p = slab + e->offset;
        int ones;
        double std = init_std(e->name, c, &ones);
        CHECK(std >= 0, "clip_text_init_params: no initialisation rule for tensor %s", e->name);
        if (std == 0) {
            for (size_t k = 0; k < e->numel; k++)
                p[k] = ones ? 1.0f : 0.0f;
            continue;
        }
        rng_fill_normal(p, e->numel, seed, rng_stream(RNG_TAG_INIT, (uint64_t)i, 0), 0);
        /* torch's normal_(std=s) scales a standard draw by s in float32 */
        const float s = (float)std;
        for (size_t k = 0; k < e->numel; k++)
            p[k] *= s;
    }
}

char *clip_text_config_to_transformers_json(const ClipTextConfig *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(CLIP_TEXT_CLASS));
    /* keys in sorted order, as transformers' to_json_string (sort_keys=True) writes them */
    /* transformers 5 validates field types strictly: a float field written as "1" (an int) is
     * refused, so the float fields are written with a decimal point */
    cJSON_AddRawToObject(o, "attention_dropout", "0.0");
    cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    cJSON_AddStringToObject(o, "dtype", "float32");
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddStringToObject(o, "hidden_act",
                            c->hidden_act == CLIP_ACT_GELU ? "gelu" : "quick_gelu");
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddRawToObject(o, "initializer_factor", "1.0");
    cJSON_AddRawToObject(o, "initializer_range", "0.02");
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    /* float32 eps printed as the shortest decimal that reads back to the same float */
    char eps[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(eps, sizeof eps, "%.*g", prec, (double)c->layer_norm_eps);
        if (strtof(eps, NULL) == c->layer_norm_eps) break;
    }
    if (!strpbrk(eps, ".eEni")) strcat(eps, ".0"); /* "1" -> "1.0" (inf/nan cannot occur) */
    cJSON_AddRawToObject(o, "layer_norm_eps", eps);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "pad_token_id", c->pad_token_id);
    cJSON_AddNumberToObject(o, "projection_dim", c->projection_dim);
    cJSON_AddStringToObject(o, "transformers_version", CLIP_INIT_TRANSFORMERS_VERSION);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    char *out = json_print_indent2(o);
    cJSON_Delete(o);
    return out;
}

int clip_text_save(const ClipText *net, const char *dir, JtError *err) {
    if (model_mkdirs(dir, err) != JT_OK) return JT_ERR;
    char wpath[4096], cpath[4096];
    snprintf(wpath, sizeof wpath, "%s/%s", dir, CLIP_TEXT_WEIGHTS_FILE);
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    const ParamLayout *l = clip_text_layout(net);
    const float *slab = clip_text_params_const(net);
    StWriter w;
    st_writer_init(&w);
    /* transformers refuses a safetensors file whose "format" is not one of its frameworks */
    st_writer_set_metadata(&w, "format", "pt");
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        st_writer_add_f32_dims(&w, e->name, ST_F32, e->ndim, e->shape, slab + e->offset);
    }
    int rc = st_writer_write(&w, wpath, err);
    st_writer_free(&w);
    if (rc == JT_OK) {
        char *json = clip_text_config_to_transformers_json(clip_text_config(net));
        rc = atomic_file_write(cpath, json, strlen(json), err);
        free(json);
    }
    return rc;
}
