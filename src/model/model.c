/* model.c: see model.h. Follows diffusers' ModelMixin.save_pretrained / from_pretrained for a
 * non-sharded safetensors checkpoint; the tensor reading (legacy names, dtypes, shapes) is
 * io/model_folder.c's slab I/O. */
#include "model/model.h"

#include "core/hash.h"
#include "io/model_folder.h"
#include "model/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Model {
    const ModelKind *kind;
    void *net; /* UNet * for UNet2DModel, Vae * for AutoencoderKL */
    uint64_t fingerprint;
};

static uint64_t fingerprint_parts(const char *config_json, const float *params, size_t n) {
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, config_json, strlen(config_json));
    return hash_fnv1a(h, params, n * sizeof *params);
}

uint64_t model_fingerprint_of(const UNet *net) {
    char *cfg = unet_config_to_json(unet_config(net));
    uint64_t h = fingerprint_parts(cfg, unet_params_const(net), unet_num_params(net));
    free(cfg);
    return h;
}

const char *model_fingerprint_hex(uint64_t fp, char buf[17]) {
    snprintf(buf, 17, "%016llx", (unsigned long long)fp);
    return buf;
}

void model_refresh_fingerprint(Model *m) {
    const ModelKind *k = m->kind;
    char *cfg = k->to_json(k->config(m->net));
    m->fingerprint = fingerprint_parts(cfg, k->params(m->net), k->layout(m->net)->total);
    free(cfg);
}

uint64_t model_fingerprint(const Model *m) {
    return m->fingerprint;
}
const ModelKind *model_kind(const Model *m) {
    return m->kind;
}

UNet *model_unet(Model *m) {
    return strcmp(m->kind->class_name, "UNet2DModel") == 0 ||
                   strcmp(m->kind->class_name, "UNet2DConditionModel") == 0
               ? m->net
               : NULL;
}
const UNet *model_unet_const(const Model *m) {
    return model_unet((Model *)m);
}
Vae *model_vae(Model *m) {
    return strcmp(m->kind->class_name, VAE_CLASS) == 0 ? m->net : NULL;
}
const Vae *model_vae_const(const Model *m) {
    return model_vae((Model *)m);
}
ClipText *model_text_encoder(Model *m) {
    return strcmp(m->kind->class_name, CLIP_TEXT_CLASS) == 0 ? m->net : NULL;
}
const ClipText *model_text_encoder_const(const Model *m) {
    return model_text_encoder((Model *)m);
}
const ParamLayout *model_layout(const Model *m) {
    return m->kind->layout(m->net);
}
float *model_params(Model *m) {
    return m->kind->params(m->net);
}

void model_free(Model *m) {
    if (!m) return;
    if (m->net) m->kind->destroy(m->net);
    free(m);
}

static Model *wrap(const ModelKind *k, void *net) {
    Model *m = xcalloc(1, sizeof *m);
    m->kind = k;
    m->net = net;
    model_refresh_fingerprint(m);
    return m;
}

int model_create(Model **out, const UNetConfig *cfg, JtError *err) {
    return model_create_kind(out, model_kind_find(cfg->cond ? "UNet2DConditionModel" : "UNet2DModel"),
                             cfg, err);
}

int model_create_kind(Model **out, const ModelKind *k, const void *cfg, JtError *err) {
    *out = NULL;
    CHECK(k && k->supported, "model_create_kind of an unsupported class");
    void *net;
    if (k->create(&net, cfg, err) != JT_OK) return JT_ERR;
    *out = wrap(k, net);
    return JT_OK;
}

int model_load(const char *dir, Model **out, JtError *err) {
    *out = NULL;
    /* a pipeline folder (model_index.json) is its U-Net, once the whole folder checks out */
    if (pipeline_is_folder(dir)) {
        PipelineFolder p;
        if (pipeline_open(dir, &p, err) != JT_OK) return JT_ERR;
        int rc = model_load(p.unet_dir, out, err);
        pipeline_close(&p);
        return rc;
    }
    char *cfg_path = path_join(dir, MODEL_CONFIG_FILE);
    char *w_path = NULL;
    void *cfg = NULL, *net = NULL;
    const ModelKind *k = NULL;
    int rc = model_kind_load_config(cfg_path, &k, &cfg, err);
    if (rc == JT_OK) rc = k->create(&net, cfg, err);
    if (rc == JT_OK) {
        w_path =
            model_folder_weights_path(dir, k->weights_file ? k->weights_file : MODEL_WEIGHTS_FILE);
        rc = k->load_weights ? k->load_weights(net, w_path, err)
                             : model_slab_load(w_path, k->layout(net), k->params(net), err);
    }
    if (rc == JT_OK) {
        *out = wrap(k, net);
    } else if (net) {
        k->destroy(net);
    }
    free(cfg);
    free(cfg_path);
    free(w_path);
    return rc;
}

int model_load_unet(const char *dir, Model **out, JtError *err) {
    if (model_load(dir, out, err) != JT_OK) return JT_ERR;
    if (model_unet(*out)) return JT_OK;
    jt_fail(err,
            "%s: holds a model of class %s; this command needs a U-Net (UNet2DModel or "
            "UNet2DConditionModel)",
            dir, (*out)->kind->class_name);
    model_free(*out);
    *out = NULL;
    return JT_ERR;
}

int model_save(Model *m, const char *dir, JtError *err) {
    const ModelKind *k = m->kind;
    if (k->load_weights && !k->save)
        return jt_fail(err, "%s: saving a %s folder is not implemented (jtrak only reads them)",
                       dir, k->class_name);
    if (model_mkdirs(dir, err) != JT_OK) return JT_ERR;
    if (k->save) { /* a transformers folder (CLIPTextModel): its own file names and config form */
        int rc = k->save(m->net, dir, err);
        model_refresh_fingerprint(m);
        return rc;
    }
    char *cfg_path = path_join(dir, MODEL_CONFIG_FILE);
    char *w_path = path_join(dir, MODEL_WEIGHTS_FILE);
    int rc = model_slab_save(w_path, k->layout(m->net), k->params(m->net), err);
    if (rc == JT_OK) {
        char *json = k->to_json(k->config(m->net));
        rc = atomic_file_write(cfg_path, json, strlen(json), err);
        free(json);
    }
    /* F32 on disk: the written bytes are the parameters in memory */
    model_refresh_fingerprint(m);
    free(cfg_path);
    free(w_path);
    return rc;
}
