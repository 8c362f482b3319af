/* test_attribution.c: the attribution pipeline end to end at toy scale, through the CLI: a tiny
 * U-Net over-trained on 64 images generates near-copies of them, and Journey-TRAK must rank the
 * copied training image near the top; the score folder's files and the report; the refusals (a
 * trajectory from another model, a step not in the trajectory, an output function the store was not
 * built with). */
#include "attrib/featurize.h"
#include "attrib/score.h"
#include "diffusion/train.h"
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/model_unet.h"
#include "helpers/tiny_unet.h"
#include "helpers/tmpdir.h"
#include "io/model_folder.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { N_IMG = 8, SIDE = 8 };

/* The suite's tiny U-Net (tests/helpers/tiny_unet.h) at 16/32 channels: wider than the default
 * 8/16, as this test has always trained it. */
static void tiny_config(UNetConfig *cfg) {
    test_tiny_unet_config(cfg);
    cfg->block_out_channels[0] = 16;
    cfg->block_out_channels[1] = 32;
}

/* Eight distinct binary patterns: bars, blocks, a cross, a frame, a diagonal. */
static void make_images(uint8_t *pix) {
    for (int i = 0; i < N_IMG; i++)
        for (int y = 0; y < SIDE; y++)
            for (int x = 0; x < SIDE; x++) {
                int on;
                switch (i) {
                case 0: on = x < 3; break;
                case 1: on = y < 3; break;
                case 2: on = x >= 5; break;
                case 3: on = y >= 5; break;
                case 4: on = x == 3 || x == 4 || y == 3 || y == 4; break;
                case 5: on = x == 0 || y == 0 || x == 7 || y == 7; break;
                case 6: on = x == y || x == y + 1; break;
                default: on = x >= 2 && x < 6 && y >= 2 && y < 6; break;
                }
                pix[(i * SIDE + y) * SIDE + x] = on ? 255 : 0;
            }
}

static void load_data(Dataset *ds) {
    uint8_t pix[N_IMG * SIDE * SIDE];
    make_images(pix);
    char path[200], src[300];
    snprintf(path, sizeof path, "%s/images.npy", test_tmp);
    size_t shape[3] = {N_IMG, SIDE, SIDE};
    JtError err;
    cr_assert(npy_write(path, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    DatasetSpec spec;
    data_spec_init(&spec);
    snprintf(src, sizeof src, "npy:%s", path);
    cr_assert(data_spec_set(&spec, "data", src, &err) == JT_OK, "%s", err.msg);
    cr_assert(data_load(&spec, ds, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&spec);
}

static void train_model(const char *sub, uint64_t seed, long steps) {
    UNetConfig cfg;
    tiny_config(&cfg);
    SchedConfig sc;
    sched_config_default(&sc);
    Dataset ds = {0};
    load_data(&ds);
    TrainRecipe r;
    train_recipe_default(&r);
    r.batch = N_IMG;
    r.steps = steps;
    r.lr = 3e-3;
    r.warmup = 20;
    r.ema_max_decay = 0.99;
    r.seed = seed;
    char out[200];
    snprintf(out, sizeof out, "%s/%s", test_tmp, sub);
    TrainControl ctl = {out, 0, 1000, 0, 1};
    int stopped;
    JtError err;
    cr_assert(train_run(&cfg, &sc, &ds, &r, &ctl, &stopped, &err) == JT_OK, "%s", err.msg);
    data_free(&ds);
}

static void sample_model(const char *model_sub, const char *traj_name, int n) {
    char path[200];
    snprintf(path, sizeof path, "%s/%s", test_tmp, model_sub);
    UNet *net;
    JtError err;
    cr_assert(test_load_unet(path, &net, &err) == JT_OK, "%s", err.msg);
    NoiseSchedule sched;
    SchedConfig sc;
    sched_config_default(&sc);
    cr_assert(sched_init(&sched, &sc, &err) == JT_OK);
    SampleOptions opt = {.sampler = SAMPLER_DDIM, .steps = 50, .eta = 0.0f, .seed = 11, .n = n, .batch = n, .quiet = 1, .labels = NULL, .guidance = 1.0f};
    Trajectory tr;
    cr_assert(traj_sample(net, &sched, &opt, NULL, &tr, &err) == JT_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/%s", test_tmp, traj_name);
    cr_assert(traj_save(&tr, path, &err) == JT_OK, "%s", err.msg);
    traj_free(&tr);
    sched_free(&sched);
    unet_free(net);
}

static void featurize_model(const char *model_sub, const char *store_sub, OutFn fn) {
    Dataset ds = {0};
    load_data(&ds);
    char model[200], store[200];
    snprintf(model, sizeof model, "%s/%s", test_tmp, model_sub);
    snprintf(store, sizeof store, "%s/%s", test_tmp, store_sub);
    const char *dirs[1] = {model};
    FeaturizeOptions o;
    featurize_options_default(&o);
    o.model_dirs = dirs;
    o.n_models = 1;
    o.out_dir = store;
    o.k = 32;
    o.S = 8;
    o.outfn = fn;
    o.batch = 4;
    o.kernel.auto_ridge = 1; /* 8 rows < k = 32: X^T X is singular by construction */
    o.quiet = 1;
    JtError err;
    cr_assert(featurize_run(&o, &ds, &err) == JT_OK, "%s", err.msg);
    data_free(&ds);
}

/* The memorisation test trains 3000 steps: about 90 s in a release build on 2 busy cores, several
 * times that under AddressSanitizer or a loaded machine. The limit only catches a hang. */
TestSuite(attribution, .init = test_tmp_setup, .fini = test_tmp_teardown, .timeout = 1200);

/* Reads scores (n, N) of one step. */
static float *read_scores(const char *dir, const char *name, size_t *n, size_t *N) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s/%s", test_tmp, dir, name);
    NpyHeader h;
    void *data;
    JtError err;
    cr_assert(npy_read_as(path, NPY_F32, &h, &data, &err) == JT_OK, "%s", err.msg);
    cr_assert(h.ndim == 2);
    *n = h.shape[0];
    *N = h.shape[1];
    return data;
}

/* Runs jtrak with printf-style arguments and asserts success. */
static void jtrak_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void jtrak_ok(const char *fmt, ...) {
    char args[2048], err_text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    cr_assert_eq(cli_run(args, err_text, sizeof err_text), 0, "jtrak %s: %s", args, err_text);
}

/* A 2-level 8x8 U-Net over-trained on 64 Fashion-MNIST images (resized to 8x8) draws near-copies
 * of them; Journey-TRAK (as published: denoising loss, independent draws) must rank the copied
 * image near the top. Measured on this setup (see README, "What the attributions are worth"): the
 * copy is in the top 5 of 64 for 5 of 8 samples at t = 600, and less often at t = 0; by chance it
 * would be for 8% of them (at least 4 of 8 by chance: p < 0.003). */
Test(attribution, memorised_samples_rank_the_image_they_copy_near_the_top) {
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &sb) != 0)
        cr_skip_test("Debian's dataset-fashion-mnist is not installed");
    const char *cfg = "{\"_class_name\":\"UNet2DModel\",\"sample_size\":8,\"in_channels\":1,"
                      "\"out_channels\":1,\"block_out_channels\":[16,32],\"layers_per_block\":1,"
                      "\"norm_num_groups\":4,\"down_block_types\":[\"DownBlock2D\",\"AttnDownBlock2D\"],"
                      "\"up_block_types\":[\"AttnUpBlock2D\",\"UpBlock2D\"],\"attention_head_dim\":null}";
    char path[300];
    snprintf(path, sizeof path, "%s/cfg.json", test_tmp);
    FILE *f = fopen(path, "w");
    cr_assert(f && fputs(cfg, f) >= 0);
    fclose(f);
    const char *data = "--data fashion-mnist --limit 64 --fit resize";
    jtrak_ok("train --config %s/cfg.json %s --batch 16 --steps 3000 --lr 3e-3 --warmup 50 "
             "--ema-max-decay 0.995 --seed 1 --out %s/m --quiet", test_tmp, data, test_tmp);
    jtrak_ok("sample --model %s/m --out %s/s --n 8 --sampler ddim --steps 50 --seed 11 --quiet",
             test_tmp, test_tmp);
    jtrak_ok("featurize --models %s/m %s --out %s/f --S 32 --k 32 --batch 16 --quiet", test_tmp,
             data, test_tmp);
    jtrak_ok("score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/j "
             "--steps 600,200,0 --R 32 --quiet", test_tmp, test_tmp, test_tmp);
    /* Which image each sample copies: pixel cosine similarity of the final sample. */
    jtrak_ok("score --method pixel %s --size 8 --trajectory %s/s/trajectory.safetensors "
             "--out %s/p --steps 0 --quiet", data, test_tmp, test_tmp);
    size_t n, N;
    float *pix = read_scores("p", "scores_t0.npy", &n, &N);
    cr_assert(n == 64 && N == 8);
    size_t copy[8];
    for (size_t j = 0; j < N; j++) {
        copy[j] = 0;
        for (size_t i = 1; i < n; i++)
            if (pix[i * N + j] > pix[copy[j] * N + j]) copy[j] = i;
        cr_assert(pix[copy[j] * N + j] > 0.9, "sample %zu is no near-copy (cosine %.3f)", j,
                  pix[copy[j] * N + j]);
    }
    free(pix);
    static const char *const steps[] = {"scores_t600.npy", "scores_t200.npy", "scores_t0.npy"};
    int top5[3] = {0, 0, 0};
    for (int s = 0; s < 3; s++) {
        float *sc = read_scores("j", steps[s], &n, &N);
        for (size_t j = 0; j < N; j++) {
            size_t above = 0;
            for (size_t i = 0; i < n; i++) above += sc[i * N + j] > sc[copy[j] * N + j];
            top5[s] += above < 5;
        }
        free(sc);
    }
    cr_log_info("copied image in the top 5 of 64: %d/8 at t=600, %d/8 at t=200, %d/8 at t=0",
                top5[0], top5[1], top5[2]);
    cr_expect(top5[0] >= 4, "at t=600 the copied image is in the top 5 for only %d of 8 samples",
              top5[0]);
}

Test(attribution, score_folder_report_and_refusals) {
    train_model("m", 1, 30);
    train_model("other", 2, 5);
    sample_model("m", "traj.safetensors", 3);
    sample_model("other", "other.safetensors", 2);
    featurize_model("m", "store", OUTFN_LOSS);

    /* journey over all steps of a range, through the CLI, then the report. */
    char args[1024], err_text[4096];
    snprintf(args, sizeof args,
             "score --store %s/store --trajectory %s/traj.safetensors --out %s/sc --steps 0:1000:200 "
             "--R 4 --topk 2 --quiet",
             test_tmp, test_tmp, test_tmp);
    cr_assert_eq(cli_run(args, err_text, sizeof err_text), 0, "%s", err_text);
    static const int steps[] = {800, 600, 400, 200, 0};
    for (int s = 0; s < 5; s++) {
        char name[64];
        snprintf(name, sizeof name, "scores_t%d.npy", steps[s]);
        size_t n, N;
        float *sc = read_scores("sc", name, &n, &N);
        cr_expect(n == N_IMG && N == 3, "%s: %zux%zu", name, n, N);
        free(sc);
    }
    snprintf(args, sizeof args, "report --scores %s/sc", test_tmp);
    cr_assert_eq(cli_run(args, err_text, sizeof err_text), 0, "%s", err_text);
    struct stat sb;
    char path[300];
    snprintf(path, sizeof path, "%s/sc/report.html", test_tmp);
    cr_expect(stat(path, &sb) == 0 && sb.st_size > 1000);
    snprintf(path, sizeof path, "%s/sc/figure.png", test_tmp);
    cr_expect(stat(path, &sb) == 0 && sb.st_size > 100);

    /* trak and pixel work on the same inputs; top-k only writes no matrix. */
    snprintf(args, sizeof args,
             "score --store %s/store --trajectory %s/traj.safetensors --out %s/tk --method trak "
             "--R 4 --topk 2 --topk-only --quiet",
             test_tmp, test_tmp, test_tmp);
    cr_assert_eq(cli_run(args, err_text, sizeof err_text), 0, "%s", err_text);
    snprintf(path, sizeof path, "%s/tk/scores_final.npy", test_tmp);
    cr_expect(stat(path, &sb) != 0, "top-k only mode wrote a dense matrix");
    snprintf(path, sizeof path, "%s/tk/topk.json", test_tmp);
    cr_expect(stat(path, &sb) == 0);

    /* A trajectory whose first timestep lies past the model's schedule (T = 1000). */
    {
        Trajectory tr;
        JtError e;
        snprintf(path, sizeof path, "%s/traj.safetensors", test_tmp);
        cr_assert(traj_load(&tr, path, &e) == JT_OK, "%s", e.msg);
        tr.timesteps[0] = 1000;
        snprintf(path, sizeof path, "%s/late.safetensors", test_tmp);
        cr_assert(traj_save(&tr, path, &e) == JT_OK, "%s", e.msg);
        traj_free(&tr);
    }

    /* Refusals, each with one line naming the problem and no output folder. */
    struct {
        const char *extra, *traj, *want;
    } bad[] = {
        {"--steps 1234", "traj", "step 1234 is not in the trajectory"},
        {"", "late", "late.safetensors: tensor 'timesteps': step 0 is t=1000 but the schedule of"},
        {"", "other", "not one of the store's"},
        {"--method dtrak", "traj", "output function 'loss'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(args, sizeof args,
                 "score --store %s/store --trajectory %s/%s.safetensors --out %s/bad%zu %s --quiet",
                 test_tmp, test_tmp, bad[i].traj, test_tmp, i, bad[i].extra);
        cr_expect_eq(cli_run(args, err_text, sizeof err_text), 1, "%s", err_text);
        cr_expect(strstr(err_text, bad[i].want) != NULL, "want '%s' in: %s", bad[i].want, err_text);
        snprintf(path, sizeof path, "%s/bad%zu", test_tmp, i);
        cr_expect(stat(path, &sb) != 0, "a refused score left %s behind", path);
        cr_expect(strchr(err_text, '\n') == err_text + strlen(err_text) - 1, "%s", err_text);
    }

    /* The trajectory re-sampled in place (another x_T): report refuses to pair it with the scores,
     * naming both files; nothing is written. */
    {
        Trajectory tr;
        JtError e;
        snprintf(path, sizeof path, "%s/traj.safetensors", test_tmp);
        cr_assert(traj_load(&tr, path, &e) == JT_OK, "%s", e.msg);
        tr.x_T[0] += 0.5f;
        cr_assert(traj_save(&tr, path, &e) == JT_OK, "%s", e.msg);
        traj_free(&tr);
    }
    snprintf(args, sizeof args, "report --scores %s/sc --out %s/sc/again.html", test_tmp, test_tmp);
    cr_expect_eq(cli_run(args, err_text, sizeof err_text), 1, "%s", err_text);
    cr_expect(strstr(err_text, "traj.safetensors") && strstr(err_text, "sc/manifest.json") &&
                  strstr(err_text, "re-sampled or replaced"),
              "%s", err_text);
    snprintf(path, sizeof path, "%s/sc/again.html", test_tmp);
    cr_expect(stat(path, &sb) != 0, "a refused report wrote %s", path);
}
