/* cli_common.c: see cli_common.h. */
#include "cli/cli_common.h"

#include "io/model_folder.h"
#include "io/png.h"
#include "model/model_kind.h"
#include "model/pipeline.h"
#include "unet/presets.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_error(const char *cmd, const JtError *err) {
    fprintf(stderr, "jtrak %s: %s\n", cmd, err->msg);
    return 1;
}

int cli_model_config(const char *spec, UNetConfig *cfg, JtError *err) {
    if (unet_config_preset(spec, cfg)) return JT_OK;
    struct stat sb;
    if (stat(spec, &sb) != 0)
        return jt_fail(err,
                       "model config '%s': not a shipped config (%s) nor an existing file "
                       "or folder",
                       spec, unet_config_preset_names());
    char *dir = S_ISDIR(sb.st_mode) ? pipeline_model_dir(spec) : NULL; /* a pipeline: its unet/ */
    char *path = dir ? path_join(dir, MODEL_CONFIG_FILE) : xstrdup(spec);
    free(dir);
    const ModelKind *kind;
    void *c;
    int rc = model_kind_load_config(path, &kind, &c, err);
    if (rc == JT_OK && strcmp(kind->class_name, "UNet2DModel") != 0 &&
        strcmp(kind->class_name, "UNet2DConditionModel") != 0)
        rc = jt_fail(err, "%s: a %s; this command needs a UNet2DModel or UNet2DConditionModel",
                     path, kind->class_name);
    if (rc == JT_OK) *cfg = *(const UNetConfig *)c;
    free(c);
    free(path);
    return rc;
}

static const char *const DATA_KEYS[] = {"data", "classes", "limit", "indices",
                                        "fit",  "color",   "latent"};
enum { N_DATA_KEYS = sizeof DATA_KEYS / sizeof *DATA_KEYS };

void cli_skip_dataset(Args *a) {
    for (int i = 0; i < N_DATA_KEYS; i++)
        (void)args_str(a, DATA_KEYS[i], NULL);
}

int cli_load_dataset(Args *a, const UNetConfig *cfg, Dataset *ds, JtError *err) {
    DatasetSpec spec;
    data_spec_init(&spec);
    /* every option is read (marked used) before any is judged: a bad value is reported as
     * itself, not as the options after it left unread ("unexpected argument '--fit'") */
    const char *vals[N_DATA_KEYS];
    for (int i = 0; i < N_DATA_KEYS; i++)
        vals[i] = args_str(a, DATA_KEYS[i], NULL);
    int rc = JT_OK;
    for (int i = 0; i < N_DATA_KEYS && rc == JT_OK; i++)
        if (vals[i] && data_spec_set(&spec, DATA_KEYS[i], vals[i], err) != JT_OK) rc = 2;
    if (rc == JT_OK) {
        spec.height = unet_config_height(cfg);
        spec.width = unet_config_width(cfg);
        spec.channels = cfg->in_channels;
        rc = data_load(&spec, ds, err);
    }
    data_spec_free(&spec);
    return rc;
}

void cli_data_help(FILE *f) {
    fprintf(
        f,
        "data options:\n"
        "  --data SRC       fashion-mnist (default), fashion-mnist:test, mnist:DIR, idx:FILE,\n"
        "                   cifar10:DIR, folder:DIR (PNG/JPEG), npy:FILE (uint8 N,H,W[,C]),\n"
        "                   latents:FILE.npy (VAE posteriors written by jtrak encode),\n"
        "                   coco:ANNOTATIONS.json[,IMAGEDIR] (COCO captions_*.json),\n"
        "                   captions:FILE.csv|FILE.jsonl[,IMAGEDIR] (file,caption records)\n"
        "                   folder:DIR is DIR/*.png (unlabelled) or DIR/CLASS/*.png (labelled:\n"
        "                   the class sub-folders in sorted order are labels 0, 1, ...)\n"
        "  --classes LIST   keep only these labels or class names (e.g. 0,7 or sneaker,bag)\n"
        "  --limit N        keep the first N images (after the other filters)\n"
        "  --indices FILE   keep the source indices listed in FILE (one per line)\n"
        "  --fit MODE       none (default), pad, crop, resize, nearest: fit images to the model\n"
        "  --color MODE     auto (default), gray, rgb\n"
        "  --latent MODE    latents:FILE.npy (a store of jtrak encode) only: sample (default:\n"
        "                   a fresh posterior sample per draw, Journey-TRAK) or mean (D-TRAK)\n");
}

/* See cli_common.h: tile k of a row is x̂_0 at step round(k (S-1) / 9). */
int cli_write_trajectory_strip(const char *path, const Trajectory *tr, JtError *err) {
    return cli_write_trajectory_strip_vae(path, tr, NULL, err);
}

int cli_run_subcommand(int (*fn)(int, char **), const char *cmd, const char *const *args) {
    char *argv[64];
    int argc = 0;
    fprintf(stderr, "\ndemo: jtrak %s", cmd);
    for (; args[argc] && argc < 63; argc++) {
        argv[argc] = (char *)args[argc];
        fprintf(stderr, " %s", args[argc]);
    }
    fprintf(stderr, "\n");
    argv[argc] = NULL;
    return fn(argc, argv);
}

int cli_write_trajectory_strip_vae(const char *path, const Trajectory *tr, const char *vae_dir,
                                   JtError *err) {
    int rows = tr->n < 8 ? tr->n : 8, cols = tr->S < 10 ? tr->S : 10;
    size_t D = (size_t)tr->C * tr->H * tr->W;
    int n = rows * (cols + 1);
    float *tiles = xmalloc((size_t)n * D * sizeof(float));
    for (int i = 0; i < rows; i++) {
        for (int c = 0; c < cols; c++) {
            int k = cols > 1 ? (int)((long)c * (tr->S - 1) / (cols - 1)) : tr->S - 1;
            memcpy(tiles + ((size_t)i * (cols + 1) + c) * D,
                   tr->x0_hat + ((size_t)i * tr->S + k) * D, D * sizeof(float));
        }
        memcpy(tiles + ((size_t)i * (cols + 1) + cols) * D, tr->x_0 + (size_t)i * D,
               D * sizeof(float));
    }
    int C = tr->C, H = tr->H, W = tr->W, rc = JT_OK;
    if (vae_dir) {
        float *img = NULL;
        rc = cli_decode_latents(vae_dir, tiles, n, tr->C, tr->H, tr->W, &img, &C, &H, &W, err);
        free(tiles);
        tiles = img;
    }
    if (rc == JT_OK) rc = png_write_grid(path, tiles, n, C, H, W, cols + 1, err);
    free(tiles);
    return rc;
}
