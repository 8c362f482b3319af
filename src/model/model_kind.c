/* model_kind.c: see model_kind.h. The UNet2DModel and UNet2DConditionModel rows wrap unet/
 * (config.h, config_cond.c, unet.h: one network type, the config says which class), the
 * AutoencoderKL row vae/ (vae.h), the CLIPTextModel row text/ (clip_text.h); the rows marked
 * unsupported (VQModel, CLIPTextModelWithProjection) are known so that a folder holding one is
 * refused by name rather than as a UNet2DModel with unknown fields. */
#include "model/model_kind.h"

#include "core/config_fields.h"
#include "text/clip_text.h"
#include "unet/config.h"
#include "unet/unet.h"
#include "vae/vae.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A row's hooks take and give void pointers; each network module has a typed API. NETWORK_HOOKS
 * writes the adapters P_parse, P_validate, P_to_json, P_create, P_destroy, P_config, P_layout and
 * P_params from a module's functions (calling a function through a pointer of another type would
 * be undefined behaviour, so the adapters are real functions). */
#define NETWORK_HOOKS(P, Net, from_json, validate_fn, to_json_fn, create_fn, free_fn, config_fn,   \
                      layout_fn, params_fn)                                                        \
    static int P##_parse(void *cfg, const void *root, const char *path, JtError *err) {            \
        return from_json(cfg, root, path, err);                                                    \
    }                                                                                              \
    static int P##_validate(const void *cfg, const char *path, JtError *err) {                     \
        return validate_fn(cfg, path, err);                                                        \
    }                                                                                              \
    static char *P##_to_json(const void *cfg) {                                                    \
        return to_json_fn(cfg);                                                                    \
    }                                                                                              \
    static int P##_create(void **net, const void *cfg, JtError *err) {                             \
        Net *n = NULL;                                                                             \
        int rc = create_fn(&n, cfg, err);                                                          \
        *net = n;                                                                                  \
        return rc;                                                                                 \
    }                                                                                              \
    static void P##_destroy(void *net) {                                                           \
        free_fn(net);                                                                              \
    }                                                                                              \
    static const void *P##_config(const void *net) {                                               \
        return config_fn(net);                                                                     \
    }                                                                                              \
    static const ParamLayout *P##_layout(const void *net) {                                        \
        return layout_fn(net);                                                                     \
    }                                                                                              \
    static float *P##_params(void *net) {                                                          \
        return params_fn(net);                                                                     \
    }

/* The designated initialisers of a row's hooks, with the parse hook given apart. */
#define NETWORK_ROW_HOOKS(P, parse_fn)                                                             \
    .parse = parse_fn, .validate = P##_validate, .to_json = P##_to_json, .create = P##_create,     \
    .destroy = P##_destroy, .config = P##_config, .layout = P##_layout, .params = P##_params

NETWORK_HOOKS(unet2d, UNet, unet_config_from_json, unet_config_validate, unet_config_to_json,
              unet_create, unet_free, unet_config, unet_layout, unet_params)
/* UNet2DConditionModel: the same UNet type (cfg.cond = 1), its own config fields */
static int unet2d_cond_parse(void *cfg, const void *root, const char *path, JtError *err) {
    return unet_config_cond_from_json(cfg, root, path, err);
}
NETWORK_HOOKS(vae_kind, Vae, vae_config_from_json, vae_config_validate, vae_config_to_json,
              vae_create, vae_free, vae_config, vae_layout, vae_params)
NETWORK_HOOKS(clip, ClipText, clip_text_config_from_json, clip_text_config_validate,
              clip_text_config_to_json, clip_text_create, clip_text_free, clip_text_config,
              clip_text_layout, clip_text_params)
static int clip_load_weights(void *net, const char *path, JtError *err) {
    return clip_text_load_weights(net, path, err);
}
static int clip_save(const void *net, const char *dir, JtError *err) {
    return clip_text_save(net, dir, err);
}

#define UNSUPPORTED(cls, what, why)                                                                \
    { .class_name = cls, .summary = what, .refusal = why }

static const ModelKind KINDS[] = {
    {.class_name = "UNet2DModel",
     .summary = "diffusers' unconditional (or class-conditional) 2D UNet (DDPM)",
     .supported = 1,
     .config_size = sizeof(UNetConfig),
     NETWORK_ROW_HOOKS(unet2d, unet2d_parse)},
    {.class_name = "UNet2DConditionModel",
     .summary = "diffusers' text-conditioned 2D UNet with cross-attention (Stable Diffusion)",
     .supported = 1,
     .config_size = sizeof(UNetConfig),
     NETWORK_ROW_HOOKS(unet2d, unet2d_cond_parse)},
    {.class_name = VAE_CLASS,
     .summary = "diffusers' KL autoencoder (the latent-diffusion VAE)",
     .supported = 1,
     .config_size = sizeof(VaeConfig),
     NETWORK_ROW_HOOKS(vae_kind, vae_kind_parse)},
    UNSUPPORTED("VQModel", "diffusers' VQ autoencoder (CompVis latent diffusion)",
                "the vector-quantised autoencoder"),
    {.class_name = CLIP_TEXT_CLASS,
     .summary = "transformers' CLIP text encoder (Stable Diffusion's text_encoder), forward only",
     .supported = 1,
     .config_size = sizeof(ClipTextConfig),
     NETWORK_ROW_HOOKS(clip, clip_parse),
     .weights_file = CLIP_TEXT_WEIGHTS_FILE,
     .load_weights = clip_load_weights,
     .save = clip_save},
    UNSUPPORTED("CLIPTextModelWithProjection",
                "transformers' CLIP text encoder with projection (SDXL's text_encoder_2)",
                "the CLIP text encoder (ldm.md 2.7)"),
};
#define N_KINDS ((int)(sizeof KINDS / sizeof KINDS[0]))

const ModelKind *model_kinds(int *n) {
    *n = N_KINDS;
    return KINDS;
}

const ModelKind *model_kind_find(const char *class_name) {
    for (int i = 0; class_name && i < N_KINDS; i++)
        if (strcmp(KINDS[i].class_name, class_name) == 0) return &KINDS[i];
    return NULL;
}

const char *model_kind_supported_names(void) {
    static char buf[256];
    if (buf[0]) return buf;
    size_t k = 0;
    for (int i = 0; i < N_KINDS; i++)
        if (KINDS[i].supported)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", k ? ", " : "",
                                  KINDS[i].class_name);
    return buf;
}

int model_kind_of_config(const void *root_, const char *path, const ModelKind **out, JtError *err) {
    const cJSON *root = root_;
    *out = NULL;
    if (!cJSON_IsObject(root))
        return jt_fail(err, "%s: invalid config: the top level is not a JSON object", path);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    const char *field = "_class_name";
    if (!cls) {
        /* transformers' config.json (CLIPTextModel) names its class in "architectures" */
        const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
        if (cJSON_IsArray(arch) && cJSON_GetArraySize(arch) == 1 && cJSON_IsString(arch->child)) {
            cls = arch->child;
            field = "architectures";
        }
    }
    if (!cls) { /* jtrak's own folders always write it; diffusers' too since 0.1 */
        *out = model_kind_find("UNet2DModel");
        return JT_OK;
    }
    if (!cJSON_IsString(cls))
        return jt_fail(err, "%s: field '%s': expected a string (the model class)", path, field);
    const ModelKind *k = model_kind_find(cls->valuestring);
    if (!k)
        return jt_fail(err,
                       "%s: field '%s': \"%.80s\" is not a model class jtrak knows (supported: %s)",
                       path, field, cls->valuestring, model_kind_supported_names());
    if (!k->supported)
        return jt_fail(err,
                       "%s: %s is not supported yet (jtrak supports %s; %s is not implemented)",
                       path, k->class_name, model_kind_supported_names(), k->refusal);
    *out = k;
    return JT_OK;
}

int model_kind_load_config(const char *path, const ModelKind **kind, void **cfg, JtError *err) {
    *kind = NULL;
    *cfg = NULL;
    char *text = NULL;
    void *root = NULL, *c = NULL;
    const ModelKind *k = NULL;
    int rc = cf_read_file(path, &text, err);
    if (rc == JT_OK) rc = cf_json_parse(text, path, &root, err);
    if (rc == JT_OK) rc = model_kind_of_config(root, path, &k, err);
    if (rc == JT_OK) {
        c = xcalloc(1, k->config_size);
        rc = k->parse(c, root, path, err);
    }
    if (rc == JT_OK) {
        *kind = k;
        *cfg = c;
    } else {
        free(c);
    }
    cf_json_free(root);
    free(text);
    return rc;
}
