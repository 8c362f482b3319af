/* model_kind.h: the model classes jtrak knows, one table keyed by config.json's "_class_name"
 * (git's command table applied to models). Each row says what the class is, whether jtrak
 * implements it, and the hooks that read, check, write and build it; a class that is known but not
 * implemented yet is refused with one clear line naming the file and the class. A config.json
 * without "_class_name" is read as UNet2DModel (jtrak's own folders always write it). */
#ifndef JTRAK_MODEL_MODEL_KIND_H
#define JTRAK_MODEL_MODEL_KIND_H

#include "core/common.h"
#include "core/layout.h"

#include <stddef.h>

typedef struct ModelKind {
    const char *class_name; /* config.json "_class_name", as diffusers / transformers spell it */
    const char *summary;
    int supported;
    const char *refusal; /* unsupported rows: what is missing */
    /* Hooks (NULL for unsupported rows). The config is an opaque struct of config_size bytes;
     * the network an opaque handle (UNet * for UNet2DModel). */
    size_t config_size;
    int (*parse)(void *cfg, const void *root /* const cJSON * */, const char *path,
                 JtError *err); /* strict, and validates */
    int (*validate)(const void *cfg, const char *path, JtError *err);
    char *(*to_json)(const void *cfg);                        /* config.json text, malloc'd */
    int (*create)(void **net, const void *cfg, JtError *err); /* zero parameters */
    void (*destroy)(void *net);
    const void *(*config)(const void *net);
    const ParamLayout *(*layout)(const void *net);
    float *(*params)(void *net); /* (layout->total) */
    /* The weights file of a folder (NULL: diffusion_pytorch_model.safetensors) and how it is read
     * (NULL: model_slab_load, names exactly the layout's); transformers' classes differ in both. */
    const char *weights_file;
    int (*load_weights)(void *net, const char *path, JtError *err);
    /* Writes the folder dir (existing) in the class's own layout (NULL: config.json from
     * to_json + diffusion_pytorch_model.safetensors; with load_weights but no save: read-only). */
    int (*save)(const void *net, const char *dir, JtError *err);
} ModelKind;

/* The row for class_name (supported or not), or NULL. */
const ModelKind *model_kind_find(const char *class_name);
/* The row a parsed config.json (root: const cJSON *) names: "_class_name" (absent: UNet2DModel).
 * An unknown class is refused naming the file and listing the supported ones; a known but
 * unsupported one is refused naming the file, the class and what jtrak supports. */
int model_kind_of_config(const void *root, const char *path, const ModelKind **out, JtError *err);
/* Reads a config.json file through the table: *kind is its class, *cfg a malloc'd config struct of
 * that class (kind->config_size bytes, parsed and validated; the caller frees it). */
int model_kind_load_config(const char *path, const ModelKind **kind, void **cfg, JtError *err);
/* "UNet2DModel" (the supported classes, ", "-separated), for messages. */
const char *model_kind_supported_names(void);
/* Every row, for listings: *n rows. */
const ModelKind *model_kinds(int *n);

#endif
