/* cmd_init.c: `jtrak init --config C --out DIR` writes a diffusers model folder with PyTorch's
 * default initialisation (seeded), which diffusers' UNet2DModel.from_pretrained (or
 * UNet2DConditionModel.from_pretrained) loads. The config
 * is read through the model class table (model/model_kind.h). A CLIPTextModel config (the
 * clip-tiny preset or a transformers config.json) gives a transformers folder with
 * transformers' _init_weights distribution instead (text/clip_text.h). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/artifact.h"
#include "io/jsonfile.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "model/model.h"
#include "unet/presets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* *clip = 1 and cfg filled when spec is the clip-tiny preset or a CLIPTextModel config.json (a
 * file, or a folder holding one); *clip = 0 for anything else (a U-Net config, read later). */
static int text_encoder_config(const char *spec, ClipTextConfig *cfg, int *clip, JtError *err) {
    *clip = clip_text_config_preset(spec, cfg);
    struct stat sb;
    if (*clip || unet_config_preset(spec, &(UNetConfig){0})) return JT_OK;
    if (stat(spec, &sb) != 0)
        return jt_fail(err,
                       "model config '%s': not a shipped config (%s, %s) nor an existing file "
                       "or folder",
                       spec, unet_config_preset_names(), clip_text_config_preset_names());
    char *path = S_ISDIR(sb.st_mode) ? path_join(spec, MODEL_CONFIG_FILE) : xstrdup(spec);
    cJSON *root = json_load_file(path, err);
    const ModelKind *kind = NULL;
    int rc = root ? model_kind_of_config(root, path, &kind, err) : JT_ERR;
    if (rc == JT_OK && strcmp(kind->class_name, CLIP_TEXT_CLASS) == 0) {
        rc = clip_text_config_from_json(cfg, root, path, err);
        /* the init scales of transformers depend on initializer_factor; jtrak draws factor 1 */
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "initializer_factor");
        if (rc == JT_OK && f && (!cJSON_IsNumber(f) || f->valuedouble != 1.0))
            rc = jt_fail(err,
                         "%s: field \"initializer_factor\": jtrak init draws transformers' "
                         "initialisation with factor 1 only",
                         path);
        *clip = rc == JT_OK;
    }
    cJSON_Delete(root);
    free(path);
    return rc;
}

int cmd_init(int argc, char **argv) {
    Args a;
    args_init(&a, "init", argc, argv);
    if (args_flag(&a, "help")) {
        printf(
            "usage: jtrak init --config C --out DIR [--seed N]\n"
            "C is a shipped config (fm-s, fm-xs, t8, ldm-xs, jt-coco) or a diffusers config.json\n"
            "(UNet2DModel or UNet2DConditionModel): a diffusers folder, PyTorch's default init.\n"
            "C = clip-tiny or a transformers config.json of a CLIPTextModel: a transformers "
            "folder\n"
            "(config.json + model.safetensors) with transformers' CLIP initialisation.\n");
        args_free(&a);
        return 0;
    }
    const char *config = args_str(&a, "config", NULL), *out = args_str(&a, "out", NULL);
    uint64_t seed = args_u64(&a, "seed", 0);
    int rc = args_finish(&a);
    if (rc == 0 && (!config || !out)) {
        fprintf(stderr, "jtrak init: --config and --out are required\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;
    JtError err;
    UNetConfig cfg;
    ClipTextConfig text_cfg;
    int clip;
    Model *m;
    if (text_encoder_config(config, &text_cfg, &clip, &err)) return cli_error("init", &err);
    if (clip) {
        if (model_create_kind(&m, model_kind_find(CLIP_TEXT_CLASS), &text_cfg, &err))
            return cli_error("init", &err);
        clip_text_init_params(model_text_encoder(m), seed);
        model_refresh_fingerprint(m);
    } else {
        if (cli_model_config(config, &cfg, &err) || model_create(&m, &cfg, &err))
            return cli_error("init", &err);
        unet_init_params(model_unet(m), seed);
        /* the fingerprint of what will be written, compared with a folder already there */
        model_refresh_fingerprint(m);
    }
    /* A model folder is replaced only by the same model (the same command again): init would
     * otherwise throw away a trained or downloaded model; other artifacts are refused. */
    const ArtifactKind ok[] = {ARTIFACT_MODEL};
    rc = artifact_check_out(out, "--out", "a model folder", ok, 1, &err);
    /* held while the folder is checked and written: two inits never write one (io/lock.h) */
    DirLock lock = {-1, NULL, 0};
    if (rc == JT_OK) rc = dir_lock(&lock, out, "init", &err);
    if (rc == JT_OK && artifact_kind(out, NULL, 0) == ARTIFACT_MODEL) {
        Model *had = NULL;
        rc = model_load(out, &had, &err);
        if (rc == JT_OK && model_fingerprint(had) != model_fingerprint(m)) {
            char fa[17], fb[17];
            rc = jt_fail(&err,
                         "%s: --out holds another model (fingerprint %s; this one's is %s): init "
                         "would replace it; give a new or empty --out",
                         out, model_fingerprint_hex(model_fingerprint(had), fa),
                         model_fingerprint_hex(model_fingerprint(m), fb));
        }
        model_free(had);
    }
    if (rc) {
        model_free(m);
        dir_unlock(&lock);
        return cli_error("init", &err);
    }
    rc = model_save(m, out, &err);
    dir_unlock(&lock);
    size_t P = model_layout(m)->total;
    char fp[17];
    model_fingerprint_hex(model_fingerprint(m), fp);
    model_free(m);
    if (rc) return cli_error("init", &err);
    printf("%s\n", out);
    fprintf(stderr, "init: wrote %s (%zu parameters, seed %llu, fingerprint %s)\n", out, P,
            (unsigned long long)seed, fp);
    return 0;
}
