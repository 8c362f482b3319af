/* cmd_init.c: `jtrak init --config C --out DIR` writes a diffusers model folder with PyTorch's
 * default initialisation (seeded), which diffusers' UNet2DModel.from_pretrained loads. The config
 * is read through the model class table (model/model_kind.h). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "model/model.h"

#include <stdio.h>

int cmd_init(int argc, char **argv) {
    Args a;
    args_init(&a, "init", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak init --config C --out DIR [--seed N]\n"
               "C is a shipped config (fm-s, fm-xs, t8) or a diffusers config.json.\n");
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
    rc = model_save(m, out, &err);
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
