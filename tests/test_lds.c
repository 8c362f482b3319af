/* test_lds.c: the counterfactual commands at toy scale, through the CLI. `jtrak lds`: subset
 * models are trained once (a rerun trains and measures nothing), lds.json holds an LDS with its
 * interval and permuted control for every method and ground truth, and the noise ceiling; a folder
 * made with other subsets, score folders of another training set and targets from another model
 * are refused (the statistics themselves are checked against scipy in test_stats.c).
 * `jtrak counterfactual`: the top-k removed are the highest-scored rows, every removal kind
 * retrains and regenerates, bad steps and k are refused. */
#include "helpers/tmpdir.h"
#include "helpers/cli_run.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* 16 random 8x8 images in 2 classes, a tiny model trained on them, 2 samples, and its scores. */
static void prepare(void) {
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
                       "--steps 12 --warmup 2 --out %s/m --quiet", t, t, t, t), 0, "%s", g_err);
    cr_assert_eq(jtrak("sample --model %s/m --out %s/s --n 2 --sampler ddim --steps 10 --quiet", t,
                       t), 0, "%s", g_err);
    cr_assert_eq(jtrak("featurize --models %s/m --data npy:%s/img.npy,%s/lab.npy --out %s/f --S 2 "
                       "--k 8 --quiet", t, t, t, t), 0, "%s", g_err);
    cr_assert_eq(jtrak("score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/journey "
                       "--steps 500,0 --R 2 --quiet", t, t, t), 0, "%s", g_err);
}

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
    FILE *f = fopen(p, "r");
    cr_assert(f);
    char buf[65536];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    cr_assert(j, "lds.json is not JSON");
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
    FILE *f = fopen(p, "r");
    cr_assert(f);
    char buf[16384];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    cr_assert(j);
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
