/* model_kind.c: see model_kind.h. The UNet2DModel and UNet2DConditionModel rows wrap unet/
 * (config.h, config_cond.c, unet.h: one network type, the config says which class), the
 * AutoencoderKL row vae/ (vae.h); the rows
 * marked unsupported are the networks of the latent-diffusion system (ldm.md section 2.7) that
 * jtrak will implement next, known so that a folder holding one is refused by name rather than
 * as a UNet2DModel with unknown fields. */
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

/* ---- UNet2DModel hooks ---- */

static int unet2d_parse(void *cfg, const void *root, const char *path, JtError *err) {
    return unet_config_from_json(cfg, root, path, err);
}
static int unet2d_validate(const void *cfg, const char *path, JtError *err) {
    return unet_config_validate(cfg, path, err);
}
static char *unet2d_to_json(const void *cfg) {
    return unet_config_to_json(cfg);
}
static int unet2d_create(void **net, const void *cfg, JtError *err) {
    UNet *u = NULL;
    int rc = unet_create(&u, cfg, err);
    *net = u;
    return rc;
}
static void unet2d_destroy(void *net) {
    unet_free(net);
}
static const void *unet2d_config(const void *net) {
    return unet_config(net);
}
static const ParamLayout *unet2d_layout(const void *net) {
    return unet_layout(net);
}
static float *unet2d_params(void *net) {
    return unet_params(net);
}

/* ---- UNet2DConditionModel hooks (the network is the same UNet type, cfg.cond = 1) ---- */

static int unet2d_cond_parse(void *cfg, const void *root, const char *path, JtError *err) {
    return unet_config_cond_from_json(cfg, root, path, err);
}

/* ---- AutoencoderKL hooks ---- */

static int vae_kind_parse(void *cfg, const void *root, const char *path, JtError *err) {
    return vae_config_from_json(cfg, root, path, err);
}
static int vae_kind_validate(const void *cfg, const char *path, JtError *err) {
    return vae_config_validate(cfg, path, err);
}
static char *vae_kind_to_json(const void *cfg) {
    return vae_config_to_json(cfg);
}
static int vae_kind_create(void **net, const void *cfg, JtError *err) {
    Vae *v = NULL;
    int rc = vae_create(&v, cfg, err);
    *net = v;
    return rc;
}
static void vae_kind_destroy(void *net) {
    vae_free(net);
}
static const void *vae_kind_config(const void *net) {
    return vae_config(net);
}
static const ParamLayout *vae_kind_layout(const void *net) {
    return vae_layout(net);
}
static float *vae_kind_params(void *net) {
    return vae_params(net);
}

/* ---- CLIPTextModel hooks ---- */

static int clip_parse(void *cfg, const void *root, const char *path, JtError *err) {
    return clip_text_config_from_json(cfg, root, path, err);
}
static int clip_validate(const void *cfg, const char *path, JtError *err) {
    return clip_text_config_validate(cfg, path, err);
}
static char *clip_to_json(const void *cfg) {
    return clip_text_config_to_json(cfg);
}
static int clip_create(void **net, const void *cfg, JtError *err) {
    ClipText *t = NULL;
    int rc = clip_text_create(&t, cfg, err);
    *net = t;
    return rc;
}
static void clip_destroy(void *net) {
    clip_text_free(net);
}
static const void *clip_config(const void *net) {
    return clip_text_config(net);
}
static const ParamLayout *clip_layout(const void *net) {
    return clip_text_layout(net);
}
static float *clip_params(void *net) {
    return clip_text_params(net);
}
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
     .parse = unet2d_parse,
     .validate = unet2d_validate,
     .to_json = unet2d_to_json,
     .create = unet2d_create,
     .destroy = unet2d_destroy,
     .config = unet2d_config,
     .layout = unet2d_layout,
     .params = unet2d_params},
    {.class_name = "UNet2DConditionModel",
     .summary = "diffusers' text-conditioned 2D UNet with cross-attention (Stable Diffusion)",
     .supported = 1,
     .config_size = sizeof(UNetConfig),
     .parse = unet2d_cond_parse,
     .validate = unet2d_validate,
     .to_json = unet2d_to_json,
     .create = unet2d_create,
     .destroy = unet2d_destroy,
     .config = unet2d_config,
     .layout = unet2d_layout,
     .params = unet2d_params},
    {.class_name = VAE_CLASS,
     .summary = "diffusers' KL autoencoder (the latent-diffusion VAE)",
     .supported = 1,
     .config_size = sizeof(VaeConfig),
     .parse = vae_kind_parse,
     .validate = vae_kind_validate,
     .to_json = vae_kind_to_json,
     .create = vae_kind_create,
     .destroy = vae_kind_destroy,
     .config = vae_kind_config,
     .layout = vae_kind_layout,
     .params = vae_kind_params},
    UNSUPPORTED("VQModel", "diffusers' VQ autoencoder (CompVis latent diffusion)",
                "the vector-quantised autoencoder"),
    {.class_name = CLIP_TEXT_CLASS,
     .summary = "transformers' CLIP text encoder (Stable Diffusion's text_encoder), forward only",
     .supported = 1,
     .config_size = sizeof(ClipTextConfig),
     .parse = clip_parse,
     .validate = clip_validate,
     .to_json = clip_to_json,
     .create = clip_create,
     .destroy = clip_destroy,
     .config = clip_config,
     .layout = clip_layout,
     .params = clip_params,
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
