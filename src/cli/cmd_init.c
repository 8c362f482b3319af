/* cmd_init.c: `jtrak init --config C --out DIR` writes a diffusers model folder with PyTorch's
 * default initialisation (seeded), which diffusers' UNet2DModel.from_pretrained (or
 * UNet2DConditionModel.from_pretrained) loads. The config
 * is read through the model class table (model/model_kind.h). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/artifact.h"
#include "io/lock.h"
#include "model/model.h"

#include <stdio.h>

int cmd_init(int argc, char **argv) {
    Args a;
    args_init(&a, "init", argc, argv);
    if (args_flag(&a, "help")) {
        printf(
            "usage: jtrak init --config C --out DIR [--seed N]\n"
            "C is a shipped config (fm-s, fm-xs, t8, ldm-xs, jt-coco) or a diffusers config.json\n"
            "(UNet2DModel or UNet2DConditionModel).\n");
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
    Model *m;
    if (cli_model_config(config, &cfg, &err) || model_create(&m, &cfg, &err))
        return cli_error("init", &err);
    unet_init_params(model_unet(m), seed);
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
