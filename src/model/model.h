/* model.h: a loaded model, whatever its class: a diffusers model folder (config.json +
 * diffusion_pytorch_model.safetensors) read through the class table (model_kind.h), and its one
 * fingerprint, computed once at load and after every save.
 *
 * The fingerprint of a model is FNV-1a 64 over its canonical config.json text (the class's
 * to_json) followed by its F32 parameters in layout order (model_fingerprint_of). Every artifact
 * derived from a model (trajectories, feature stores, LDS and counterfactual runs, training.json)
 * records it, so a changed model is caught. */
#ifndef JTRAK_MODEL_MODEL_H
#define JTRAK_MODEL_MODEL_H

#include "core/common.h"
#include "model/model_kind.h"
#include "text/clip_text.h"
#include "unet/unet.h"
#include "vae/vae.h"

#include <stdint.h>

typedef struct Model Model;

/* Reads dir/config.json, dispatches on its "_class_name", builds the network and fills its
 * parameters from dir/diffusion_pytorch_model.safetensors (or its .fp16 variant when only that
 * exists); computes the fingerprint. A pipeline folder (model_index.json, model/pipeline.h) is
 * opened and checked whole, and its unet/ is loaded. On error *out is NULL and err names the file
 * and the field, class or tensor. */
int model_load(const char *dir, Model **out, JtError *err);
/* model_load for the commands that run a diffusion U-Net: a folder of another class (an
 * AutoencoderKL, a CLIPTextModel) is refused with "DIR: holds a model of class C; this command
 * needs a U-Net", so
 * that model_unet() of the result is never NULL. */
int model_load_unet(const char *dir, Model **out, JtError *err);
/* Writes dir/config.json and dir/diffusion_pytorch_model.safetensors (F32) (a CLIPTextModel:
 * transformers' config.json and model.safetensors, kind->save), creating dir (and its
 * parents) if needed; each file atomically. Recomputes the fingerprint of what was written. */
int model_save(Model *m, const char *dir, JtError *err);
/* A fresh UNet2DModel (UNet2DConditionModel when cfg->cond) with zero parameters. */
int model_create(Model **out, const UNetConfig *cfg, JtError *err);
/* A fresh model of any supported class (cfg: that class's config struct), zero parameters. */
int model_create_kind(Model **out, const ModelKind *kind, const void *cfg, JtError *err);
void model_free(Model *m);

const ModelKind *model_kind(const Model *m);
/* The network of a UNet2DModel or UNet2DConditionModel (both a UNet); NULL for other classes. */
UNet *model_unet(Model *m);
const UNet *model_unet_const(const Model *m);
/* The network of an AutoencoderKL; NULL for other classes. */
Vae *model_vae(Model *m);
const Vae *model_vae_const(const Model *m);
/* The network of a CLIPTextModel; NULL for other classes. */
ClipText *model_text_encoder(Model *m);
const ClipText *model_text_encoder_const(const Model *m);
/* The parameter slab of any class. */
const ParamLayout *model_layout(const Model *m);
float *model_params(Model *m);

/* The cached fingerprint (of the last load, save or refresh). */
uint64_t model_fingerprint(const Model *m);
/* Recomputes it after the parameters changed in place. */
void model_refresh_fingerprint(Model *m);
/* The one definition: FNV-1a 64 over unet_config_to_json then the F32 parameters. */
uint64_t model_fingerprint_of(const UNet *net);
/* 16 lower-case hex digits into buf; returns buf. */
const char *model_fingerprint_hex(uint64_t fp, char buf[17]);

#endif
