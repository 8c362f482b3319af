/* test_lds.c: the counterfactual commands at toy scale, through the CLI. `jtrak lds`: subset
 * models are trained once (a rerun trains and measures nothing), lds.json holds an LDS with its
 * interval and permuted control for every method and ground truth, and the noise ceiling; a folder
 * made with other subsets, score folders of another training set and targets from another model
 * are refused (the statistics themselves are checked against scipy in test_stats.c).
 * Held-out real images (the D-TRAK protocol's "val" targets): score takes them from a dataset
 * for the final-image methods, lds adds their ground truth to a finished folder without retraining
 * and evaluates real-target score folders against it; journey on real images, images of another
 * size or colour, a folder without (or with another) held-out set and scores from another store
 * are refused.
 * `jtrak counterfactual`: the top-k removed are the highest-scored rows, every removal kind
 * retrains and regenerates, bad steps and k are refused.
 * Under mpirun with 2 processes (skipped without MPI or mpirun): lds and counterfactual write the
 * same files and stdout as 1 process, a folder started by 1 process is finished by 2 without
 * retraining, and a process that fails makes both fail. */
#include "core/comm.h"
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_err[8192];

TestSuite(lds, .init = test_tmp_setup, .fini = test_tmp_teardown, .timeout = 300);

static int jtrak(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int jtrak(const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return cli_run(args, g_err, sizeof g_err);
}

/* 16 random 8x8 images in 2 classes, a tiny model trained on them, 2 samples, and its scores;
 * with cond, the model is class-conditional (--cond class) and the samples are guided, one per
 * class. */
static void prepare_model(int cond) {
    uint8_t pix[16 * 64];
    int64_t labels[16];
    for (int i = 0; i < 16 * 64; i++) pix[i] = (uint8_t)((i * 2654435761u) >> 23);
    for (int i = 0; i < 16; i++) labels[i] = i % 2;
    char p[256];
    size_t shape[3] = {16, 8, 8}, ls[1] = {16};
    JtError err;
    snprintf(p, sizeof p, "%s/img.npy", test_tmp);
    cr_assert(npy_write(p, NPY_U8, 3, shape, pix, &err) == JT_OK);
    snprintf(p, sizeof p, "%s/lab.npy", test_tmp);
    cr_assert(npy_write(p, NPY_I64, 1, ls, labels, &err) == JT_OK);
    const char *cfg = "{\"_class_name\":\"UNet2DModel\",\"sample_size\":8,\"in_channels\":1,"
                      "\"out_channels\":1,\"block_out_channels\":[8,16],\"layers_per_block\":1,"
                      "\"norm_num_groups\":4,\"down_block_types\":[\"DownBlock2D\",\"AttnDownBlock2D\"],"
                      "\"up_block_types\":[\"AttnUpBlock2D\",\"UpBlock2D\"],\"attention_head_dim\":null}";
    snprintf(p, sizeof p, "%s/cfg.json", test_tmp);
    FILE *f = fopen(p, "w");
    cr_assert(f && fputs(cfg, f) >= 0);
    fclose(f);
    const char *t = test_tmp;
    cr_assert_eq(jtrak("train --config %s/cfg.json --data npy:%s/img.npy,%s/lab.npy --batch 8 "
                       "--steps 12 --warmup 2 --out %s/m --quiet%s", t, t, t, t,
                       cond ? " --cond class --uncond-prob 0.25" : ""),
                 0, "%s", g_err);
    cr_assert_eq(jtrak("sample --model %s/m --out %s/s --n 2 --sampler ddim --steps 10 --quiet%s",
                       t, t, cond ? " --class 0,1 --guidance 2" : ""),
                 0, "%s", g_err);
    cr_assert_eq(jtrak("featurize --models %s/m --data npy:%s/img.npy,%s/lab.npy --out %s/f --S 2 "
                       "--k 8 --quiet", t, t, t, t), 0, "%s", g_err);
    cr_assert_eq(jtrak("score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/journey "
                       "--steps 500,0 --R 2 --quiet", t, t, t), 0, "%s", g_err);
}

static void prepare(void) { prepare_model(0); }

static const char *LDS_ARGS = "--K 4 --ceiling 2 --R-eval 3 --grid 2 --steps 500,0 --replicates 50 --quiet";

Test(lds, runs_once_and_reports_every_method) {
    prepare();
    const char *t = test_tmp;
    cr_assert_eq(jtrak("lds --model %s/m --trajectory %s/s/trajectory.safetensors --out %s/l "
                       "--scores %s/journey %s", t, t, t, t, LDS_ARGS), 0, "%s", g_err);
    char p[256];
    struct stat first, again;
    snprintf(p, sizeof p, "%s/l/gt/s3_r0.npy", t);
    cr_assert(stat(p, &first) == 0, "no ground truth for the last subset model");
    snprintf(p, sizeof p, "%s/l/gt/s1_r1.npy", t);
    cr_assert(stat(p, &first) == 0, "no ceiling model for subset 1");
    snprintf(p, sizeof p, "%s/l/masks.npy", t);
    NpyHeader h;
    void *mask;
    JtError err;
    cr_assert(npy_read_as(p, NPY_U8, &h, &mask, &err) == JT_OK);
    cr_assert(h.ndim == 2 && h.shape[0] == 4 && h.shape[1] == 16);
    for (int k = 0; k < 4; k++) { /* alpha 0.5 of 16 rows */
        int m = 0;
        for (int i = 0; i < 16; i++) m += ((uint8_t *)mask)[k * 16 + i];
        cr_expect_eq(m, 8, "subset %d holds %d rows", k, m);
    }
    free(mask);

    /* lds.json: journey at both steps and the class baseline at every ground truth. */
    snprintf(p, sizeof p, "%s/l/lds.json", t);
    JtError jerr;
    cJSON *j = json_load_file(p, &jerr);
    cr_assert(j, "%s", jerr.msg);
    int journey = 0, cls = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "lds")) {
        const char *m = cJSON_GetObjectItem(e, "method")->valuestring;
        journey += strcmp(m, "journey") == 0;
        cls += strcmp(m, "class") == 0;
        double lds = cJSON_GetObjectItem(e, "lds")->valuedouble;
        double lo = cJSON_GetObjectItem(e, "ci_lo")->valuedouble, hi = cJSON_GetObjectItem(e, "ci_hi")->valuedouble;
        cr_expect(lds >= -1 && lds <= 1 && lo <= hi, "%s: LDS %g [%g, %g]", m, lds, lo, hi);
        cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(e, "permuted")));
    }
    cr_expect_eq(journey, 2, "journey evaluated at %d steps, want 2", journey);
    cr_expect_eq(cls, 3, "class baseline at %d ground truths, want 3", cls);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "noise_ceiling")), 3);
    cJSON_Delete(j);

    /* A rerun trains and measures nothing again. */
    cr_assert_eq(jtrak("lds --model %s/m --trajectory %s/s/trajectory.safetensors --out %s/l "
                       "--scores %s/journey %s", t, t, t, t, LDS_ARGS), 0, "%s", g_err);
    snprintf(p, sizeof p, "%s/l/gt/s1_r1.npy", t);
    cr_assert(stat(p, &again) == 0);
    cr_expect(first.st_mtim.tv_sec == again.st_mtim.tv_sec && first.st_mtim.tv_nsec == again.st_mtim.tv_nsec,
              "the rerun measured a finished model again");

    /* Refusals: other subsets in the same folder; targets of another model; scores of another
     * training set. */
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/s/trajectory.safetensors --out %s/l "
                       "--alpha 0.25 %s", t, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "field 'alpha' differs"), "%s", g_err);
    cr_assert_eq(jtrak("train --config %s/cfg.json --data npy:%s/img.npy --batch 8 --steps 3 "
                       "--seed 5 --out %s/other --quiet", t, t, t), 0, "%s", g_err);
    cr_assert_eq(jtrak("sample --model %s/other --out %s/os --n 2 --sampler ddim --steps 10 --quiet",
                       t, t), 0, "%s", g_err);
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/os/trajectory.safetensors --out %s/l2 %s",
                       t, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "sampled from another model"), "%s", g_err);
    cr_assert_eq(jtrak("score --method pixel --data npy:%s/img.npy --limit 12 --trajectory "
                       "%s/s/trajectory.safetensors --out %s/px --steps 0 --quiet", t, t, t), 0,
                 "%s", g_err);
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/s/trajectory.safetensors --out %s/l "
                       "--scores %s/px %s", t, t, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "another training set"), "%s", g_err);
}

Test(lds, counterfactual_retrains_regenerates_and_refuses) {
    prepare();
    const char *t = test_tmp;
    cr_assert_eq(jtrak("counterfactual --model %s/m --trajectory %s/s/trajectory.safetensors "
                       "--scores %s/journey --step 500 --k 2 --targets 1 --out %s/cf --quiet", t, t, t, t),
                 0, "%s", g_err);
    char p[256];
    snprintf(p, sizeof p, "%s/cf/counterfactual.json", t);
    JtError jerr;
    cJSON *j = json_load_file(p, &jerr);
    cr_assert(j, "%s", jerr.msg);
    const cJSON *tg = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "targets"), 0);
    static const char *const kinds[] = {"top-k", "random-k", "nearest-k"};
    for (int k = 0; k < 3; k++) {
        const cJSON *e = cJSON_GetObjectItem(tg, kinds[k]);
        cr_assert(e, "no %s entry", kinds[k]);
        cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(e, "removed_rows")), 2);
        double d = cJSON_GetObjectItem(e, "rmse_from_x_t")->valuedouble;
        /* Another training set changes the model, so the sample moves, but stays an image. */
        cr_expect(d > 0 && d < 2, "%s: RMSE %g", kinds[k], d);
    }
    /* The top-k removed are the two highest-scored rows at t = 500 for sample 1. */
    snprintf(p, sizeof p, "%s/journey/scores_t500.npy", t);
    NpyHeader h;
    void *sc;
    JtError err;
    cr_assert(npy_read_as(p, NPY_F32, &h, &sc, &err) == JT_OK);
    const float *s = sc;
    size_t best = 0, second = SIZE_MAX;
    for (size_t i = 1; i < h.shape[0]; i++)
        if (s[i * h.shape[1] + 1] > s[best * h.shape[1] + 1]) best = i;
    for (size_t i = 0; i < h.shape[0]; i++)
        if (i != best && (second == SIZE_MAX || s[i * h.shape[1] + 1] > s[second * h.shape[1] + 1]))
            second = i;
    const cJSON *rows = cJSON_GetObjectItem(cJSON_GetObjectItem(tg, "top-k"), "removed_rows");
    cr_expect_eq((size_t)cJSON_GetArrayItem(rows, 0)->valuedouble, best);
    cr_expect_eq((size_t)cJSON_GetArrayItem(rows, 1)->valuedouble, second);
    free(sc);
    cJSON_Delete(j);
    snprintf(p, sizeof p, "%s/cf/counterfactual.png", t);
    struct stat sb;
    cr_expect(stat(p, &sb) == 0);

    cr_expect_eq(jtrak("counterfactual --model %s/m --trajectory %s/s/trajectory.safetensors "
                       "--scores %s/journey --step 123 --out %s/cf2 --quiet", t, t, t, t), 1);
    cr_expect(strstr(g_err, "--step 123 is not in the trajectory"), "%s", g_err);
    cr_expect_eq(jtrak("counterfactual --model %s/m --trajectory %s/s/trajectory.safetensors "
                       "--scores %s/journey --step 500 --k 99 --out %s/cf3 --quiet", t, t, t, t), 1);
    cr_expect(strstr(g_err, "only 16 images"), "%s", g_err);
    snprintf(p, sizeof p, "%s/cf2", t);
    cr_expect(stat(p, &sb) != 0, "a refused run left its output folder");
}

/* n random h x w images (c = 3: (n, h, w, 3) RGB) as an npy file in the scratch folder. */
/* A class-conditional model through both counterfactual commands: lds retrains its subset models
 * with the recorded recipe (the conditioning and condition dropout included) and evaluates each
 * target with its own class; counterfactual retrains and regenerates with the trajectory's labels
 * and guidance. */
Test(lds, class_conditional_model_end_to_end) {
    prepare_model(1);
    const char *t = test_tmp;
    cr_assert_eq(jtrak("lds --model %s/m --trajectory %s/s/trajectory.safetensors --scores "
                       "%s/journey --out %s/lds %s", t, t, t, t, LDS_ARGS),
                 0, "%s", g_err);
    /* a subset model has the conditional architecture and recipe of the model it stands for */
    char p[256];
    JtError err;
    snprintf(p, sizeof p, "%s/lds/models/s0_r0/config.json", t);
    cJSON *cfg = json_load_file(p, &err);
    cr_assert(cfg != NULL, "%s", err.msg);
    cr_expect_eq(cJSON_GetObjectItem(cfg, "num_class_embeds")->valueint, 3);
    cJSON_Delete(cfg);
    snprintf(p, sizeof p, "%s/lds/models/s0_r0/training.json", t);
    cJSON *tj = json_load_file(p, &err);
    cr_assert(tj != NULL, "%s", err.msg);
    const cJSON *recipe = cJSON_GetObjectItem(tj, "recipe");
    cr_expect_str_eq(cJSON_GetObjectItem(recipe, "cond")->valuestring, "class");
    cr_expect_float_eq(cJSON_GetObjectItem(recipe, "uncond_prob")->valuedouble, 0.25, 1e-12);
    cJSON_Delete(tj);
    snprintf(p, sizeof p, "%s/lds/lds.json", t);
    cr_expect(access(p, F_OK) == 0, "lds.json missing");

    cr_assert_eq(jtrak("counterfactual --model %s/m --trajectory %s/s/trajectory.safetensors "
                       "--scores %s/journey --step 500 --k 2 --targets 1 --out %s/cf --quiet",
                       t, t, t, t),
                 0, "%s", g_err);
    snprintf(p, sizeof p, "%s/cf/counterfactual.json", t);
    cr_expect(access(p, F_OK) == 0, "counterfactual.json missing");
}

static void write_images(const char *name, int n, int h, int w, int c, unsigned salt) {
    size_t count = (size_t)n * h * w * c;
    uint8_t *pix = malloc(count);
    for (size_t i = 0; i < count; i++) pix[i] = (uint8_t)(((i + salt) * 2246822519u) >> 24);
    char p[256];
    snprintf(p, sizeof p, "%s/%s", test_tmp, name);
    size_t shape[4] = {(size_t)n, (size_t)h, (size_t)w, (size_t)c};
    JtError err;
    cr_assert(npy_write(p, NPY_U8, c == 1 ? 3 : 4, shape, pix, &err) == JT_OK, "%s", err.msg);
    free(pix);
}

static cJSON *read_json(const char *sub) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    JtError err;
    cJSON *j = json_load_file(p, &err);
    cr_assert(j, "%s", err.msg);
    return j;
}

static struct timespec mtime_of(const char *sub) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    struct stat sb;
    cr_assert(stat(p, &sb) == 0, "no %s", p);
    return sb.st_mtim;
}

static int same_time(struct timespec a, struct timespec b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

Test(lds, heldout_images_added_to_a_finished_folder) {
    prepare();
    const char *t = test_tmp;
    write_images("held.npy", 3, 8, 8, 1, 11);
    const char *traj = "s/trajectory.safetensors";
    /* A finished folder without held-out images, as a benchmark leaves it. */
    cr_assert_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l %s", t, t, traj, t, LDS_ARGS),
                 0, "%s", g_err);
    static const char *const models[] = {"s0_r0", "s1_r0", "s2_r0", "s3_r0", "s0_r1", "s1_r1"};
    struct timespec w0[6], g0[6];
    for (int q = 0; q < 6; q++) {
        char sub[128];
        snprintf(sub, sizeof sub, "l/models/%s/diffusion_pytorch_model.safetensors", models[q]);
        w0[q] = mtime_of(sub);
        snprintf(sub, sizeof sub, "l/gt/%s.npy", models[q]);
        g0[q] = mtime_of(sub);
    }

    /* Real targets: trak and pixel on the images themselves; the manifest names the image set. */
    cr_assert_eq(jtrak("score --store %s/f --targets-data npy:%s/held.npy --method trak --R 2 "
                       "--out %s/trak-heldout --quiet", t, t, t), 0, "%s", g_err);
    cr_assert_eq(jtrak("score --store %s/f --targets-data npy:%s/held.npy --method pixel "
                       "--out %s/pixel-heldout --quiet", t, t, t), 0, "%s", g_err);
    char p[256];
    NpyHeader h;
    void *d;
    JtError err;
    snprintf(p, sizeof p, "%s/trak-heldout/scores_final.npy", t);
    cr_assert(npy_read_as(p, NPY_F32, &h, &d, &err) == JT_OK, "%s", err.msg);
    cr_expect(h.ndim == 2 && h.shape[0] == 16 && h.shape[1] == 3, "scores %zux%zu", h.shape[0], h.shape[1]);
    free(d);
    cJSON *man = read_json("trak-heldout/manifest.json");
    const cJSON *ts = cJSON_GetObjectItem(man, "target_set");
    cr_expect(ts && cJSON_GetObjectItem(ts, "fingerprint") && cJSON_GetObjectItem(ts, "n")->valueint == 3,
              "the manifest does not record the target images");
    cr_expect(!cJSON_GetObjectItem(man, "trajectory"));
    cJSON_Delete(man);

    /* Adding the held-out set: ground truths for every model, nothing retrained or remeasured. */
    char scores[768];
    snprintf(scores, sizeof scores, "%s/journey,%s/trak-heldout,%s/pixel-heldout", t, t, t);
    cr_assert_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --heldout-data npy:%s/held.npy "
                       "--scores %s %s", t, t, traj, t, t, scores, LDS_ARGS), 0, "%s", g_err);
    struct timespec h0[6];
    for (int q = 0; q < 6; q++) {
        char sub[128];
        snprintf(sub, sizeof sub, "l/models/%s/diffusion_pytorch_model.safetensors", models[q]);
        cr_expect(same_time(mtime_of(sub), w0[q]), "model %s was trained again", models[q]);
        snprintf(sub, sizeof sub, "l/gt/%s.npy", models[q]);
        cr_expect(same_time(mtime_of(sub), g0[q]), "the ground truth of %s was measured again", models[q]);
        snprintf(sub, sizeof sub, "l/gt-heldout/%s.npy", models[q]);
        h0[q] = mtime_of(sub);
        snprintf(p, sizeof p, "%s/%s", t, sub);
        cr_assert(npy_read_as(p, NPY_F64, &h, &d, &err) == JT_OK, "%s", err.msg);
        cr_expect(h.ndim == 2 && h.shape[0] == 1 && h.shape[1] == 3, "%s: %zux%zu", sub, h.shape[0],
                  h.shape[1]);
        for (int j = 0; j < 3; j++) {
            double v = ((double *)d)[j];
            cr_expect(isfinite(v) && v < 0, "%s[%d] = %g: a negated mean loss", sub, j, v);
        }
        free(d);
    }
    cJSON *j = read_json("l/lds.json");
    int held = 0, gen = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "lds")) {
        const char *m = cJSON_GetObjectItem(e, "method")->valuestring;
        const char *gt = cJSON_GetObjectItem(e, "ground_truth")->valuestring;
        if (strcmp(gt, "dtrak-heldout") == 0) {
            held++;
            cr_expect(strcmp(m, "journey") != 0, "journey scores of generated samples evaluated on "
                                                 "held-out images");
            cr_expect_eq(cJSON_GetObjectItem(e, "targets")->valueint, 3);
            double lds = cJSON_GetObjectItem(e, "lds")->valuedouble;
            cr_expect(lds >= -1 && lds <= 1, "%s: LDS %g", m, lds);
        } else {
            gen++;
            cr_expect(strstr(m, "heldout") == NULL, "%s evaluated on generated targets (%s)", m, gt);
        }
    }
    cr_expect_eq(held, 3, "%d methods on the held-out truth, want trak, pixel and class", held);
    cr_expect_eq(gen, 5, "%d entries on the generated truths, want journey x2 and class x3", gen);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "noise_ceiling")), 4);
    cJSON_Delete(j);
    struct stat sb;
    snprintf(p, sizeof p, "%s/l/lds-dtrak.png", t);
    cr_expect(stat(p, &sb) == 0 && sb.st_size > 100, "no lds-dtrak.png");

    /* A rerun measures nothing again. */
    cr_assert_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --heldout-data npy:%s/held.npy "
                       "%s", t, t, traj, t, t, LDS_ARGS), 0, "%s", g_err);
    for (int q = 0; q < 6; q++) {
        char sub[128];
        snprintf(sub, sizeof sub, "l/gt-heldout/%s.npy", models[q]);
        cr_expect(same_time(mtime_of(sub), h0[q]), "the held-out truth of %s was measured again",
                  models[q]);
    }

    /* Refusals. */
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --scores %s/trak-heldout %s", t,
                       t, traj, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "no held-out set"), "%s", g_err);
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --heldout-data npy:%s/held.npy "
                       "--heldout-limit 2 %s", t, t, traj, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "other images"), "%s", g_err);
    cr_assert_eq(jtrak("score --store %s/f --targets-data npy:%s/held.npy --targets-limit 2 "
                       "--method trak --R 2 --out %s/trak-two --quiet", t, t, t), 0, "%s", g_err);
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --heldout-data npy:%s/held.npy "
                       "--scores %s/trak-two %s", t, t, traj, t, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "other target images") && strstr(g_err, "held-out set"), "%s", g_err);
    cr_expect_eq(jtrak("score --store %s/f --targets-data npy:%s/held.npy --out %s/j-real --quiet", t,
                       t, t), 1);
    cr_expect(strstr(g_err, "method journey"), "%s", g_err);
    snprintf(p, sizeof p, "%s/j-real", t);
    cr_expect(stat(p, &sb) != 0, "a refused score left its output folder");
    write_images("big.npy", 3, 10, 10, 1, 5);
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --heldout-data npy:%s/big.npy "
                       "%s", t, t, traj, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "8x8") && strstr(g_err, "--heldout-fit"), "%s", g_err);
    write_images("rgb.npy", 3, 8, 8, 3, 7);
    cr_expect_eq(jtrak("score --store %s/f --targets-data npy:%s/rgb.npy --method trak --out %s/rgb "
                       "--quiet", t, t, t), 1);
    cr_expect(strstr(g_err, "--targets-color gray"), "%s", g_err);
}

/* Score folders from the store of another model (same data, another seed) are refused before
 * anything is trained, for real targets and generated ones. */
Test(lds, scores_from_another_store_refused_up_front) {
    prepare();
    const char *t = test_tmp;
    const char *traj = "s/trajectory.safetensors";
    write_images("held.npy", 3, 8, 8, 1, 11);
    cr_assert_eq(jtrak("train --config %s/cfg.json --data npy:%s/img.npy,%s/lab.npy --batch 8 "
                       "--steps 3 --warmup 1 --seed 9 --out %s/m2 --quiet", t, t, t, t), 0, "%s", g_err);
    cr_assert_eq(jtrak("featurize --models %s/m2 --data npy:%s/img.npy,%s/lab.npy --out %s/f2 --S 2 "
                       "--k 8 --quiet", t, t, t, t), 0, "%s", g_err);
    cr_assert_eq(jtrak("score --store %s/f2 --targets-data npy:%s/held.npy --method trak --R 2 "
                       "--out %s/trak-m2 --quiet", t, t, t), 0, "%s", g_err);
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --heldout-data npy:%s/held.npy "
                       "--scores %s/trak-m2 %s", t, t, traj, t, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "whose models do not include"), "%s", g_err);
    cr_assert_eq(jtrak("sample --model %s/m2 --out %s/s2 --n 2 --sampler ddim --steps 10 --quiet", t,
                       t), 0, "%s", g_err);
    cr_assert_eq(jtrak("score --store %s/f2 --trajectory %s/s2/trajectory.safetensors --method trak "
                       "--R 2 --out %s/trak-gen-m2 --quiet", t, t, t), 0, "%s", g_err);
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --scores %s/trak-gen-m2 %s", t,
                       t, traj, t, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "targets from another model"), "%s", g_err);
    char p[256];
    struct stat sb;
    snprintf(p, sizeof p, "%s/l", t);
    cr_expect(stat(p, &sb) != 0, "a refused lds left its output folder");
}

/* Rewrites the trajectory file in place with x_T[0] moved (as a re-sample would) or, with
 * late_t > 0, its first timestep set to late_t. */
static void rewrite_trajectory(const char *sub, int late_t) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    Trajectory tr;
    JtError err;
    cr_assert(traj_load(&tr, p, &err) == JT_OK, "%s", err.msg);
    if (late_t > 0)
        tr.timesteps[0] = late_t;
    else
        tr.x_T[0] += 0.5f;
    cr_assert(traj_save(&tr, p, &err) == JT_OK, "%s", err.msg);
    traj_free(&tr);
}

/* lds and counterfactual refuse scores of a trajectory that was re-sampled in place since (its
 * fingerprint differs from the one the score folder records), naming both files, and a
 * trajectory whose timesteps the model's schedule (T = 1000) does not have; no output folder. */
Test(lds, changed_or_foreign_trajectory_refused) {
    prepare();
    const char *t = test_tmp;
    const char *traj = "s/trajectory.safetensors";
    char p[256];
    struct stat sb;
    rewrite_trajectory(traj, 0);
    cr_expect_eq(jtrak("lds --model %s/m --trajectory %s/%s --out %s/l --scores %s/journey %s", t,
                       t, traj, t, t, LDS_ARGS),
                 1);
    cr_expect(strstr(g_err, "trajectory.safetensors") && strstr(g_err, "journey/manifest.json") &&
                  strstr(g_err, "re-sampled or replaced"),
              "%s", g_err);
    cr_expect_eq(
        jtrak("counterfactual --model %s/m --trajectory %s/%s --scores %s/journey --step 500 "
              "--k 2 --targets 1 --out %s/cf --quiet",
              t, t, traj, t, t),
        1);
    cr_expect(strstr(g_err, "trajectory.safetensors") && strstr(g_err, "journey/manifest.json") &&
                  strstr(g_err, "re-sampled or replaced"),
              "%s", g_err);
    rewrite_trajectory(traj, 1000);
    cr_expect_eq(
        jtrak("lds --model %s/m --trajectory %s/%s --out %s/l %s", t, t, traj, t, LDS_ARGS), 1);
    cr_expect(strstr(g_err, "step 0 is t=1000 but the schedule of"), "%s", g_err);
    cr_expect_eq(
        jtrak("counterfactual --model %s/m --trajectory %s/%s --scores %s/journey --step 500 "
              "--k 2 --targets 1 --out %s/cf --quiet",
              t, t, traj, t, t),
        1);
    cr_expect(strstr(g_err, "step 0 is t=1000 but the schedule of"), "%s", g_err);
    snprintf(p, sizeof p, "%s/l", t);
    cr_expect(stat(p, &sb) != 0, "a refused lds left its output folder");
    snprintf(p, sizeof p, "%s/cf", t);
    cr_expect(stat(p, &sb) != 0, "a refused counterfactual left its output folder");
}

/* ---- under mpirun ------------------------------------------------------------------------ */

/* Two processes, one thread each; leak checks off (OpenMPI's own allocations under ASan). */
#define MPIRUN2                                                                                    \
    "OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe "    \
    "-np 2 "

/* Runs `<launcher>jtrak <args>` through the shell (launcher "" for one process, or MPIRUN2):
 * stdout into <scratch>/<tag>.out, every process's stderr into g_err. Returns the exit status, -1
 * if it did not exit normally. */
static int run_as(const char *launcher, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int run_as(const char *launcher, const char *tag, const char *fmt, ...) {
    char args[2048], cmd[4096], errp[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(errp, sizeof errp, "%s/%s.err", test_tmp, tag);
    snprintf(cmd, sizeof cmd, "%s%s %s >%s/%s.out 2>%s", launcher, JTRAK_CLI, args, test_tmp, tag,
             errp);
    int status = system(cmd);
    FILE *f = fopen(errp, "r");
    size_t got = f ? fread(g_err, 1, sizeof g_err - 1, f) : 0;
    g_err[got] = 0;
    if (f) fclose(f);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The bytes of <scratch>/<sub> (NULL if it cannot be read). */
static unsigned char *slurp(const char *sub, size_t *len) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(b, 1, n > 0 ? (size_t)n : 0, f);
    fclose(f);
    return b;
}

/* <scratch>/<pa> and <scratch>/<pb> exist and hold the same bytes. */
static void expect_same_bytes(const char *pa, const char *pb) {
    size_t la = 0, lb = 0;
    unsigned char *x = slurp(pa, &la), *y = slurp(pb, &lb);
    cr_expect(x && y && la == lb && memcmp(x, y, la) == 0, "%s and %s differ (or are missing)", pa,
              pb);
    free(x), free(y);
}

/* <scratch>/<a>/<name> and <scratch>/<b>/<name> exist and hold the same bytes. */
static void expect_same_file(const char *a, const char *b, const char *name) {
    char pa[300], pb[300];
    snprintf(pa, sizeof pa, "%s/%s", a, name);
    snprintf(pb, sizeof pb, "%s/%s", b, name);
    expect_same_bytes(pa, pb);
}

/* The subset models shared between 2 processes give bitwise the models, ground truths (generated
 * and held-out), lds.json, plots and table of 1 process; so does a folder that 1 process started
 * (--stop-after-models 1) and 2 finished, without measuring the finished model again. */
Test(lds, mpi_two_processes_equal_one) {
    if (!comm_built()) cr_skip("jtrak was built without MPI");
    if (system("command -v mpirun >/dev/null 2>&1") != 0) cr_skip("mpirun is not installed");
    prepare();
    write_images("held.npy", 3, 8, 8, 1, 11);
    const char *t = test_tmp;
    char common[1024];
    snprintf(common, sizeof common,
             "lds --model %s/m --trajectory %s/s/trajectory.safetensors --scores %s/journey "
             "--heldout-data npy:%s/held.npy %s",
             t, t, t, t, LDS_ARGS);
    cr_assert_eq(run_as("", "one", "%s --out %s/one", common, t), 0, "1 process: %s", g_err);
    cr_assert_eq(run_as(MPIRUN2, "two", "%s --out %s/two", common, t), 0, "mpirun -np 2: %s",
                 g_err);
    cr_assert_eq(run_as("", "res1", "%s --out %s/res --stop-after-models 1", common, t), 0, "%s",
                 g_err);
    char p[300];
    struct stat sb;
    snprintf(p, sizeof p, "%s/res/lds.json", t);
    cr_assert(stat(p, &sb) != 0, "a stopped run evaluated");
    snprintf(p, sizeof p, "%s/res/gt/s1_r0.npy", t);
    cr_assert(stat(p, &sb) != 0, "--stop-after-models 1 measured a second model");
    struct timespec first = mtime_of("res/gt/s0_r0.npy");
    cr_assert_eq(run_as(MPIRUN2, "res2", "%s --out %s/res", common, t), 0,
                 "mpirun -np 2 resuming: %s", g_err);
    cr_expect(same_time(first, mtime_of("res/gt/s0_r0.npy")),
              "the resumed run measured a finished model again");

    /* K 4 with 1 replica, then the 2 ceiling replicas. */
    static const char *const models[] = {"s0_r0", "s1_r0", "s2_r0", "s3_r0", "s0_r1", "s1_r1"};
    static const char *const runs[] = {"two", "res"};
    for (int r = 0; r < 2; r++) {
        char name[128];
        for (int q = 0; q < 6; q++) {
            snprintf(name, sizeof name, "gt/%s.npy", models[q]);
            expect_same_file("one", runs[r], name);
            snprintf(name, sizeof name, "gt-heldout/%s.npy", models[q]);
            expect_same_file("one", runs[r], name);
            snprintf(name, sizeof name, "models/%s/diffusion_pytorch_model.safetensors", models[q]);
            expect_same_file("one", runs[r], name);
        }
        expect_same_file("one", runs[r], "masks.npy");
        expect_same_file("one", runs[r], "lds.json");
        expect_same_file("one", runs[r], "lds.png");
        expect_same_file("one", runs[r], "lds-dtrak.png");
    }
    /* Rank 0 alone prints the table. */
    expect_same_bytes("one.out", "two.out");
    expect_same_bytes("one.out", "res2.out");

    /* A process that fails fails both: rank 1's model folder (s1_r0) is a file. Rank 1 says why,
     * rank 0 that another process failed, and nothing is evaluated. */
    snprintf(p, sizeof p, "%s/bad/models", t);
    JtError err;
    cr_assert(model_mkdirs(p, &err) == JT_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/bad/models/s1_r0", t);
    FILE *f = fopen(p, "w");
    cr_assert(f != NULL);
    fclose(f);
    cr_expect_neq(run_as(MPIRUN2, "bad", "%s --out %s/bad", common, t), 0);
    cr_expect(strstr(g_err, "bad/models/s1_r0: exists and is not a folder") &&
                  strstr(g_err, "bad: another process failed on its subset models"),
              "%s", g_err);
    snprintf(p, sizeof p, "%s/bad/lds.json", t);
    cr_expect(stat(p, &sb) != 0, "lds.json written although a process failed");
}

/* The retrained models shared between 2 processes: the same models, counterfactual.json, figure
 * and table as 1 process. */
Test(lds, counterfactual_mpi_two_processes_equal_one) {
    if (!comm_built()) cr_skip("jtrak was built without MPI");
    if (system("command -v mpirun >/dev/null 2>&1") != 0) cr_skip("mpirun is not installed");
    prepare();
    const char *t = test_tmp;
    char common[1024];
    /* 2 targets x 3 kinds: each process trains models of both targets. */
    snprintf(common, sizeof common,
             "counterfactual --model %s/m --trajectory %s/s/trajectory.safetensors --scores "
             "%s/journey --step 500 --k 2 --targets 0,1 --quiet",
             t, t, t);
    cr_assert_eq(run_as("", "one", "%s --out %s/one", common, t), 0, "1 process: %s", g_err);
    cr_assert_eq(run_as(MPIRUN2, "two", "%s --out %s/two", common, t), 0, "mpirun -np 2: %s",
                 g_err);
    static const char *const kinds[] = {"topk", "random", "nearest"};
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < 3; k++) {
            char name[128];
            snprintf(name, sizeof name, "models/s%d_%s/diffusion_pytorch_model.safetensors", j,
                     kinds[k]);
            expect_same_file("one", "two", name);
        }
    expect_same_file("one", "two", "counterfactual.json");
    expect_same_file("one", "two", "counterfactual.png");
    expect_same_bytes("one.out", "two.out");
}
