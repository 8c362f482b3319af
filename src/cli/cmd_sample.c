/* cmd_sample.c: `jtrak sample --model DIR --out DIR` draws samples with DDPM (diffusers'
 * DDPMPipeline math) or DDIM and writes samples.png, trajectory.png (x̂_0 along the trajectory)
 * and trajectory.safetensors (every step's x_t, x̂_0 and sampler noise; see trajectory.h). A
 * class-conditional model samples the classes of --class, with classifier-free guidance when
 * --guidance is not 1. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "diffusion/trajectory.h"
#include "io/artifact.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/png.h"
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf(
        "usage: jtrak sample --model DIR --out DIR [options]\n"
        "  --n N            samples (default 16)\n"
        "  --sampler S      ddpm (default) or ddim\n"
        "  --steps N        sampler steps (default 1000 for ddpm, 50 for ddim)\n"
        "  --eta X          DDIM eta (default 0: deterministic)\n"
        "  --seed N         seed of x_T and of the sampler noise (default 0)\n"
        "  --noise FILE     start from x_T in FILE (.npy float32 (N,C,H,W)) instead of the seed\n"
        "  --batch B        U-Net batch (default 64)\n"
        "  --quiet          no progress line\n"
        "class-conditional models (num_class_embeds K: classes 0..K-2, null class K-1):\n"
        "  --class C        required: one class id for every sample, a comma list of one id\n"
        "                   per sample (its length sets --n), all (sample i gets class\n"
        "                   i mod K-1) or null (unconditional sampling)\n"
        "  --guidance W     classifier-free guidance eps_u + W (eps_c - eps_u); the default\n"
        "                   1 is the conditional eps alone (one network batch per step)\n");
}

/* Parses --class into a count and ids: "all" and "null" give count 0 and *kind 'a' / 'n', one id
 * count 1, a list its length. Returns 0, or 2 (usage error, printed). */
static int parse_class(const char *text, int **ids, int *count, char *kind) {
    *ids = NULL, *count = 0, *kind = 0;
    if (strcmp(text, "all") == 0 || strcmp(text, "null") == 0) {
        *kind = text[0];
        return 0;
    }
    int cap = 1;
    for (const char *c = text; *c; c++)
        cap += *c == ',';
    *ids = xmalloc((size_t)cap * sizeof(int));
    const char *p = text;
    for (int i = 0; i < cap; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end != ',' && *end != 0) || v < 0 || v > 1000000) {
            fprintf(stderr,
                    "jtrak sample: --class '%s': want a class id (0, 1, ...), a comma list "
                    "of ids, all or null\n",
                    text);
            free(*ids);
            *ids = NULL;
            return 2;
        }
        (*ids)[i] = (int)v;
        p = end + 1;
    }
    *count = cap;
    return 0;
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
    int n_given = args_str(&a, "n", NULL) != NULL;
    opt.n = (int)args_long(&a, "n", 16, 1, 1 << 20);
    const char *class_text = args_str(&a, "class", NULL);
    int guidance_given = args_str(&a, "guidance", NULL) != NULL;
    double guidance = args_double(&a, "guidance", 1.0, -1e6, 1e6);
    opt.steps = (int)args_long(&a, "steps", 0, 1, 100000);
    opt.eta = (float)args_double(&a, "eta", 0.0, 0.0, 1e6);
    opt.seed = args_u64(&a, "seed", 0);
    opt.batch = (int)args_long(&a, "batch", 64, 1, 1 << 16);
    opt.quiet = args_flag(&a, "quiet");
    int rc = args_finish(&a);
    if (rc == 0 && (!model || !out)) {
        fprintf(stderr,
                "jtrak sample: --model and --out are required (see 'jtrak sample --help')\n");
        rc = 2;
    }
    if (rc == 0 && strcmp(sampler, "ddpm") != 0 && strcmp(sampler, "ddim") != 0) {
        fprintf(stderr, "jtrak sample: --sampler must be ddpm or ddim, not '%s'\n", sampler);
        rc = 2;
    }
    int *ids = NULL, n_ids = 0;
    char class_kind = 0;
    if (rc == 0 && class_text) rc = parse_class(class_text, &ids, &n_ids, &class_kind);
    if (rc == 0 && n_ids > 1) {
        if (n_given && opt.n != n_ids) {
            fprintf(stderr,
                    "jtrak sample: --class lists %d classes but --n is %d (one class per "
                    "sample)\n",
                    n_ids, opt.n);
            rc = 2;
        }
        opt.n = n_ids;
    }
    if (rc == 0 && guidance_given && !class_text) {
        fprintf(stderr, "jtrak sample: --guidance needs --class (classifier-free guidance of a "
                        "class-conditional model)\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) {
        free(ids);
        return rc;
    }
    opt.sampler = strcmp(sampler, "ddim") == 0 ? SAMPLER_DDIM : SAMPLER_DDPM;
    if (opt.steps == 0) opt.steps = opt.sampler == SAMPLER_DDIM ? 50 : 1000;

    JtError err;
    /* A trajectory folder is sampled again in place (score folders record the trajectory's
     * fingerprint, so old scores are not paired with the new file); any other artifact is kept. */
    const ArtifactKind ok[] = {ARTIFACT_TRAJECTORY};
    if (artifact_check_out(out, "--out", "a trajectory folder", ok, 1, &err) != JT_OK) {
        free(ids);
        return cli_error("sample", &err);
    }
    Model *loaded;
    if (model_load_unet(model, &loaded, &err) != JT_OK) {
        free(ids);
        return cli_error("sample", &err);
    }
    UNet *net = model_unet(loaded);
    const UNetConfig *cfg = unet_config(net);
    const int K = unet_num_classes(net);
    if (K == 0 && class_text)
        rc = jt_fail(&err,
                     "--class %s: %s is unconditional (no num_class_embeds); sample it "
                     "without --class and --guidance",
                     class_text, model);
    else if (K > 0 && !class_text)
        rc = jt_fail(&err,
                     "%s is class-conditional (num_class_embeds %d: classes 0..%d, null "
                     "class %d): give --class C, a comma list (one per sample), all or null",
                     model, K, K - 2, K - 1);
    if (rc != JT_OK) {
        free(ids);
        model_free(loaded);
        return cli_error("sample", &err);
    }
    opt.guidance = (float)guidance;
    NoiseSchedule sched;
    SchedConfig sc;
    rc = sched_config_load_model(&sc, model, &err);
    if (rc == JT_OK) rc = sched_init(&sched, &sc, &err);
    if (rc != JT_OK) {
        free(ids);
        model_free(loaded);
        return cli_error("sample", &err);
    }
    float *x_T = NULL;
    if (noise) {
        NpyHeader h;
        void *data = NULL;
        rc = npy_read_as(noise, NPY_F32, &h, &data, &err);
        if (rc == JT_OK && (h.ndim != 4 || (int)h.shape[1] != cfg->in_channels ||
                            (int)h.shape[2] != unet_config_height(cfg) ||
                            (int)h.shape[3] != unet_config_width(cfg)))
            rc = jt_fail(&err, "%s: initial noise must be float32 (N,%d,%d,%d) for this model",
                         noise, cfg->in_channels, unet_config_height(cfg), unet_config_width(cfg));
        if (rc == JT_OK && n_ids > 1 && (int)h.shape[0] != n_ids)
            rc = jt_fail(&err, "%s: %d initial noises but --class lists %d classes", noise,
                         (int)h.shape[0], n_ids);
        if (rc == JT_OK) rc = jt_check_finite(data, h.count, noise, "the initial noise", &err);
        if (rc == JT_OK) opt.n = (int)h.shape[0];
        x_T = data;
    }
    /* One label per sample: the given ids, a single id for all, i mod classes, or the null class.
     */
    int *labels = NULL;
    if (rc == JT_OK && class_text) {
        labels = xmalloc((size_t)opt.n * sizeof(int));
        for (int i = 0; i < opt.n; i++)
            labels[i] = class_kind == 'a'   ? i % (K - 1 > 0 ? K - 1 : 1)
                        : class_kind == 'n' ? K - 1
                        : n_ids == 1        ? ids[0]
                                            : ids[i];
        opt.labels = labels;
    }
    Trajectory tr = {0};
    if (rc == JT_OK) rc = traj_sample(net, &sched, &opt, x_T, &tr, &err);
    if (rc == JT_OK) rc = model_mkdirs(out, &err);
    char *p = xmalloc(strlen(out) + 40);
    if (rc == JT_OK) {
        int cols = 1;
        while (cols * cols < tr.n)
            cols++;
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
    free(x_T), free(ids), free(labels);
    traj_free(&tr);
    sched_free(&sched);
    model_free(loaded);
    if (rc != JT_OK) return cli_error("sample", &err);
    printf("%s\n", out);
    return 0;
}
