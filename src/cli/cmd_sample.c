/* cmd_sample.c: `jtrak sample --model DIR --out DIR` draws samples with DDPM (diffusers'
 * DDPMPipeline math) or DDIM and writes samples.png, trajectory.png (x̂_0 along the trajectory)
 * and trajectory.safetensors (every step's x_t, x̂_0 and sampler noise; see trajectory.h). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "diffusion/trajectory.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/png.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: jtrak sample --model DIR --out DIR [options]\n"
           "  --n N            samples (default 16)\n"
           "  --sampler S      ddpm (default) or ddim\n"
           "  --steps N        sampler steps (default 1000 for ddpm, 50 for ddim)\n"
           "  --eta X          DDIM eta (default 0: deterministic)\n"
           "  --seed N         seed of x_T and of the sampler noise (default 0)\n"
           "  --noise FILE     start from x_T in FILE (.npy float32 (N,C,H,W)) instead of the seed\n"
           "  --batch B        U-Net batch (default 64)\n"
           "  --quiet          no progress line\n");
}

int cmd_sample(int argc, char **argv) {
    Args a;
    args_init(&a, "sample", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    const char *model = args_str(&a, "model", NULL), *out = args_str(&a, "out", NULL);
    const char *sampler = args_str(&a, "sampler", "ddpm"), *noise = args_str(&a, "noise", NULL);
    SampleOptions opt = {0};
    opt.n = (int)args_long(&a, "n", 16, 1, 1 << 20);
    opt.steps = (int)args_long(&a, "steps", 0, 1, 100000);
    opt.eta = (float)args_double(&a, "eta", 0.0, 0.0, 1e6);
    opt.seed = args_u64(&a, "seed", 0);
    opt.batch = (int)args_long(&a, "batch", 64, 1, 1 << 16);
    opt.quiet = args_flag(&a, "quiet");
    int rc = args_finish(&a);
    if (rc == 0 && (!model || !out)) {
        fprintf(stderr, "jtrak sample: --model and --out are required (see 'jtrak sample --help')\n");
        rc = 2;
    }
    if (rc == 0 && strcmp(sampler, "ddpm") != 0 && strcmp(sampler, "ddim") != 0) {
        fprintf(stderr, "jtrak sample: --sampler must be ddpm or ddim, not '%s'\n", sampler);
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;
    opt.sampler = strcmp(sampler, "ddim") == 0 ? SAMPLER_DDIM : SAMPLER_DDPM;
    if (opt.steps == 0) opt.steps = opt.sampler == SAMPLER_DDIM ? 50 : 1000;

    JtError err;
    Model *loaded;
    if (model_load(model, &loaded, &err) != JT_OK) return cli_error("sample", &err);
    UNet *net = model_unet(loaded);
    const UNetConfig *cfg = unet_config(net);
    NoiseSchedule sched;
    SchedConfig sc;
    rc = sched_config_load_model(&sc, model, &err);
    if (rc == JT_OK) rc = sched_init(&sched, &sc, &err);
    if (rc != JT_OK) {
        model_free(loaded);
        return cli_error("sample", &err);
    }
    float *x_T = NULL;
    if (noise) {
        NpyHeader h;
        void *data = NULL;
        rc = npy_read_as(noise, NPY_F32, &h, &data, &err);
        if (rc == JT_OK && (h.ndim != 4 || (int)h.shape[1] != cfg->in_channels ||
                            (int)h.shape[2] != cfg->sample_size || (int)h.shape[3] != cfg->sample_size))
            rc = jt_fail(&err, "%s: initial noise must be float32 (N,%d,%d,%d) for this model", noise,
                         cfg->in_channels, cfg->sample_size, cfg->sample_size);
        if (rc == JT_OK) opt.n = (int)h.shape[0];
        x_T = data;
    }
    Trajectory tr = {0};
    if (rc == JT_OK) rc = traj_sample(net, &sched, &opt, x_T, &tr, &err);
    if (rc == JT_OK) rc = model_mkdirs(out, &err);
    char *p = xmalloc(strlen(out) + 40);
    if (rc == JT_OK) {
        int cols = 1;
        while (cols * cols < tr.n) cols++;
        sprintf(p, "%s/samples.png", out);
        rc = png_write_grid(p, tr.x_0, tr.n, tr.C, tr.H, tr.W, cols, &err);
    }
    if (rc == JT_OK) {
        sprintf(p, "%s/trajectory.png", out);
        rc = cli_write_trajectory_strip(p, &tr, &err);
    }
    if (rc == JT_OK) {
        sprintf(p, "%s/trajectory.safetensors", out);
        rc = traj_save(&tr, p, &err);
    }
    free(p);
    free(x_T);
    traj_free(&tr);
    sched_free(&sched);
    model_free(loaded);
    if (rc != JT_OK) return cli_error("sample", &err);
    printf("%s\n", out);
    return 0;
}
