/* cmd_encode.c: `jtrak encode --vae DIR --data SRC --out FILE.npy` writes the posterior moments
 * of every selected image under an AutoencoderKL: FILE.npy float32 (N, 2z, h, w), mean then
 * clamped log-variance, and its manifest FILE.npy.json with the VAE's fingerprint and the
 * dataset's spec and selection fingerprint (vae/latents.h). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "model/model.h"
#include "unet/config.h"
#include "vae/latents.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: jtrak encode --vae DIR --out FILE.npy [options]\n\n"
           "  --vae DIR          an AutoencoderKL model folder (e.g. from jtrak train-vae)\n"
           "  --out FILE.npy     float32 (N, 2 x latent_channels, h, w): posterior mean, then the\n"
           "                     clamped log-variance (unscaled); FILE.npy.json is its manifest\n"
           "  --size H[xW]       image size to encode at (default: the VAE's sample_size; a\n"
           "                     multiple of its factor)\n"
           "  --batch B          images per forward (default 64)\n"
           "  --quiet            no progress line\n\n");
    cli_data_help(stdout);
}

int cmd_encode(int argc, char **argv) {
    Args a;
    args_init(&a, "encode", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    const char *vae_dir = args_str(&a, "vae", NULL);
    const char *out = args_str(&a, "out", NULL);
    const char *size = args_str(&a, "size", NULL);
    int batch = (int)args_long(&a, "batch", 64, 1, 1 << 16);
    int quiet = args_flag(&a, "quiet");
    JtError err;
    Model *m = NULL;
    Dataset data = {0};
    int usage = 0, ok = 0, drc = JT_ERR;
    if (!vae_dir || !out) {
        fprintf(stderr, "jtrak encode: --vae DIR and --out FILE.npy are required (see 'jtrak "
                        "encode --help')\n");
        usage = 1;
    } else if (model_load(vae_dir, &m, &err) == JT_OK) {
        ok = model_vae(m) != NULL;
        if (!ok)
            jt_fail(&err, "--vae %s: a %s folder, not an " VAE_CLASS, vae_dir,
                    model_kind(m)->class_name);
    }
    int H = 0, W = 0;
    if (ok) {
        const VaeConfig *cfg = vae_config(model_vae(m));
        H = vae_config_height(cfg), W = vae_config_width(cfg);
        if (size) {
            DatasetSpec sz;
            data_spec_init(&sz);
            JtError serr;
            if (data_spec_set(&sz, "size", size, &serr) != JT_OK || sz.height == 0) {
                fprintf(stderr, "jtrak encode: --size %s: expected N or HxW\n", size);
                usage = 1;
            }
            H = sz.height, W = sz.width;
            data_spec_free(&sz);
            char what[64];
            snprintf(what, sizeof what, "--size %s", size);
            if (!usage) ok = vae_config_check_size(cfg, H, W, what, &err) == JT_OK;
        }
    }
    if (ok && !usage) {
        UNetConfig shape; /* cli_load_dataset sizes the data from a U-Net config */
        unet_config_default(&shape);
        unet_config_set_size(&shape, H, W);
        shape.in_channels = vae_config(model_vae(m))->in_channels;
        drc = cli_load_dataset(&a, &shape, &data, &err);
    } else {
        cli_skip_dataset(&a);
    }
    int rc = args_finish(&a);
    if (rc == 0 && usage) rc = 2;
    if (rc == 0 && ok && drc == 2) {
        fprintf(stderr, "jtrak encode: %s\n", err.msg);
        rc = 2;
    }
    args_free(&a);
    if (rc == 0 && (!ok || drc != JT_OK)) rc = cli_error("encode", &err);
    if (rc == 0 && !quiet)
        fprintf(stderr, "encode: %zu images (%s), %dx%d, with %s -> %s\n", data.n, data.description,
                data.h, data.w, vae_dir, out);
    if (rc == 0 && vae_write_latents(model_vae(m), model_fingerprint(m), vae_dir, &data, batch, out,
                                     quiet, &err) != JT_OK)
        rc = cli_error("encode", &err);
    if (rc == 0) printf("%s\n", out);
    data_free(&data);
    model_free(m);
    return rc;
}
