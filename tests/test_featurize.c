/* test_featurize.c: the feature store and `featurize` end to end on a tiny 8x8 U-Net trained for a
 * few steps on 24 random images (k = 32, S = 2): the store round-trips (manifest fields, features,
 * kernel); a run stopped after 10 rows and resumed (with another batch size) writes bitwise the
 * same files as an uninterrupted one; an ensemble gets one projection per model; a store is refused
 * for another model, k, dataset or seed with a message naming the field; the kernel file is
 * kernel_invert of the stored features (and is recomputed when the kernel options change); every
 * projector kind is recorded in the manifest and `score` projects the targets with the store's kind
 * (a target that is a training row scores exactly as X A x^T), a manifest without the kind is
 * rademacher, a bad --projection is a usage error; the CLI under mpirun with 2 processes writes
 * the same features as 1 process (skipped without MPI). */
#include "attrib/featurize.h"
#include "attrib/kernel.h"
#include "attrib/store.h"
#include "core/linalg.h"
#include "diffusion/train.h"
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/copy_trajectory.h"
#include "helpers/model_unet.h"
#include "helpers/numcheck.h"
#include "helpers/tiny_unet.h"
#include "helpers/tmpdir.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "unet/unet.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { N_ROWS = 24, K = 32, S_DRAWS = 2 };

static char g_img[128], g_lab[128];

/* N_ROWS random 8x8 uint8 images with labels 0..2 as npy files; `limit` > 0 keeps the first rows.
 */
static void tiny_data(Dataset *ds, size_t limit) {
    DatasetSpec spec;
    data_spec_init(&spec);
    char src[300];
    JtError err;
    snprintf(src, sizeof src, "npy:%s,%s", g_img, g_lab);
    cr_assert(data_spec_set(&spec, "data", src, &err) == JT_OK, "%s", err.msg);
    if (limit) {
        char l[32];
        snprintf(l, sizeof l, "%zu", limit);
        cr_assert(data_spec_set(&spec, "limit", l, &err) == JT_OK, "%s", err.msg);
    }
    cr_assert(data_load(&spec, ds, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&spec);
}

static void path_of(char *buf, size_t cap, const char *sub) {
    snprintf(buf, cap, "%s/%s", test_tmp, sub);
}

/* Trains the tiny model for 4 steps with `seed` into test_tmp/sub. */
static void train_tiny(const char *sub, uint64_t seed) {
    UNetConfig cfg;
    test_tiny_unet_config(&cfg);
    SchedConfig sc;
    sched_config_default(&sc);
    TrainRecipe r;
    train_recipe_default(&r);
    r.batch = 4, r.steps = 4, r.lr = 1e-3, r.warmup = 1, r.seed = seed;
    Dataset ds = {0};
    tiny_data(&ds, 0);
    char out[200];
    path_of(out, sizeof out, sub);
    TrainControl ctl = {out, 0, 10, 0, 1};
    JtError err;
    int stopped;
    cr_assert(train_run(&cfg, &sc, &ds, &r, &ctl, &stopped, &err) == JT_OK, "%s", err.msg);
    data_free(&ds);
}

/* The scratch folder, the tiny dataset as npy files, and model m0 trained on it. */
static void setup(void) {
    test_tmp_setup();
    uint8_t pix[N_ROWS * 64];
    int64_t labels[N_ROWS];
    for (int i = 0; i < N_ROWS * 64; i++)
        pix[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int i = 0; i < N_ROWS; i++)
        labels[i] = i % 3;
    snprintf(g_img, sizeof g_img, "%s/images.npy", test_tmp);
    snprintf(g_lab, sizeof g_lab, "%s/labels.npy", test_tmp);
    size_t shape[3] = {N_ROWS, 8, 8}, lshape[1] = {N_ROWS};
    JtError err;
    cr_assert(npy_write(g_img, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(g_lab, NPY_I64, 1, lshape, labels, &err) == JT_OK, "%s", err.msg);
    train_tiny("m0", 7);
}

TestSuite(featurize, .init = setup, .fini = test_tmp_teardown);

/* Featurize options for the tiny runs: n = 24 < k = 32, so X^T X is singular: auto ridge. */
static const char *g_dirs[4];
static void tiny_options(FeaturizeOptions *o, const char *out, int n_models, int *stopped) {
    static char dirs[4][200], outp[200];
    featurize_options_default(o);
    for (int m = 0; m < n_models; m++)
        g_dirs[m] = dirs[m];
    path_of(outp, sizeof outp, out);
    o->model_dirs = g_dirs;
    o->n_models = n_models;
    o->out_dir = outp;
    o->k = K;
    o->S = S_DRAWS;
    o->batch = 4;
    o->kernel.auto_ridge = 1;
    o->quiet = 1;
    o->stopped = stopped;
    path_of(dirs[0], sizeof dirs[0], "m0");
    for (int m = 1; m < n_models; m++)
        strcpy(dirs[m], dirs[0]);
}

static int run(const FeaturizeOptions *o, size_t limit, JtError *err) {
    Dataset ds = {0};
    tiny_data(&ds, limit);
    int rc = featurize_run(o, &ds, err);
    data_free(&ds);
    return rc;
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    cr_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Byte equality of STORE_A/model_m/name and STORE_B/model_m/name. */
static void expect_same_file(const char *a, const char *b, int m, const char *name) {
    char pa[300], pb[300];
    snprintf(pa, sizeof pa, "%s/%s/model_%d/%s", test_tmp, a, m, name);
    snprintf(pb, sizeof pb, "%s/%s/model_%d/%s", test_tmp, b, m, name);
    size_t la, lb;
    unsigned char *x = slurp(pa, &la), *y = slurp(pb, &lb);
    cr_expect(la == lb && memcmp(x, y, la) == 0, "%s and %s differ", pa, pb);
    free(x), free(y);
}

static float *all_features(const FeatureStore *st, int m) {
    float *X = malloc(st->n * (size_t)st->k * sizeof *X);
    JtError err;
    cr_assert(store_read_features(st, m, 0, st->n, X, &err) == JT_OK, "%s", err.msg);
    return X;
}

Test(featurize, store_round_trip) {
    FeaturizeOptions o;
    int stopped = -1;
    tiny_options(&o, "store", 1, &stopped);
    o.proj_seed = 5;
    o.draw_seed = 0x8000000000000001ULL; /* a seed JSON numbers could not hold */
    JtError err;
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(stopped, 0);

    FeatureStore st;
    char dir[200];
    path_of(dir, sizeof dir, "store");
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    UNet *net;
    cr_assert(test_load_unet(g_dirs[0], &net, &err) == JT_OK, "%s", err.msg);
    Dataset ds = {0};
    tiny_data(&ds, 0);
    cr_expect_eq(st.n_models, 1);
    cr_expect_eq(st.n, N_ROWS);
    cr_expect_eq(st.k, K);
    cr_expect_eq(st.S, S_DRAWS);
    cr_expect_eq(st.outfn, OUTFN_LOSS);
    cr_expect_eq(st.proj_kind, PROJ_RADEMACHER);
    cr_expect_eq(st.proj_seed, 5);
    cr_expect_eq(st.draw_seed, 0x8000000000000001ULL);
    cr_expect_eq(st.model_fingerprints[0], model_fingerprint_of(net));
    cr_expect_eq(st.model_params[0], unet_num_params(net));
    cr_expect_eq(st.data_fingerprint, ds.fingerprint);
    cr_expect_str_eq(st.data_spec, ds.description);
    cr_expect(st.model_paths[0][0] == '/', "model path not absolute: %s", st.model_paths[0]);
    cr_expect(st.finalized && st.featurized[0] && st.model_finalized[0]);
    cr_expect(st.kernel.auto_ridge && st.kernel.rescale && st.kernel.lambda == 0);
    cr_expect(st.kernel_info[0].ridge_added && st.kernel_info[0].lambda_used > 0,
              "n < k: a ridge must have been added (lambda_used %g)",
              st.kernel_info[0].lambda_used);

    uint8_t mask[N_ROWS];
    size_t done;
    cr_assert(store_rows_done(&st, 0, mask, &done, &err) == JT_OK, "%s", err.msg);
    cr_expect_eq(done, N_ROWS);
    float *X = all_features(&st, 0);
    for (int i = 0; i < N_ROWS; i++) {
        double sq = 0;
        for (int j = 0; j < K; j++)
            sq += (double)X[i * K + j] * X[i * K + j];
        cr_expect(sq > 0 && sq < 1e30, "row %d: squared norm %g", i, sq);
    }
    float part[5 * K]; /* rows 7..11 read alone are the same rows */
    cr_assert(store_read_features(&st, 0, 7, 5, part, &err) == JT_OK, "%s", err.msg);
    cr_expect(memcmp(part, X + 7 * K, sizeof part) == 0);
    cr_expect(store_read_features(&st, 0, 20, 5, part, &err) == JT_ERR, "rows past n accepted");
    float *A = malloc(K * K * sizeof *A);
    cr_assert(store_read_kernel(&st, 0, A, &err) == JT_OK, "%s", err.msg);
    double mean_abs = 0;
    for (int i = 0; i < K * K; i++)
        mean_abs += fabs(A[i]);
    mean_abs /= K * K;
    /* TRAK's rescaling makes the mean |A| one; float32 rounding of 1024 entries, hence 1e-5. */
    cr_expect(fabs(mean_abs - 1.0) < 1e-5, "mean |A| = %.9g after rescaling", mean_abs);

    /* Re-opened, the same fingerprint; a store written from a store reads back the same. */
    uint64_t fp = store_fingerprint(&st);
    FeatureStore st2;
    cr_assert(store_open(&st2, dir, &err) == JT_OK, "%s", err.msg);
    cr_expect_eq(store_fingerprint(&st2), fp);
    store_close(&st2);
    free(X), free(A);
    store_close(&st);
    store_close(&st); /* idempotent */
    unet_free(net);
    data_free(&ds);
}

Test(featurize, open_refuses_a_broken_manifest) {
    FeaturizeOptions o;
    int stopped;
    tiny_options(&o, "store", 1, &stopped);
    o.stop_after_rows = 4;
    JtError err;
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(stopped, 1);
    char dir[200], mp[260];
    path_of(dir, sizeof dir, "store");
    snprintf(mp, sizeof mp, "%s/manifest.json", dir);
    size_t len;
    char *text = (char *)slurp(mp, &len);
    text = realloc(text, len + 1);
    text[len] = 0;
    /* Not finalized: no kernel to read. */
    FeatureStore st;
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    cr_expect(!st.finalized && !st.featurized[0]);
    float A[K * K];
    cr_expect(store_read_kernel(&st, 0, A, &err) == JT_ERR);
    cr_expect(strstr(err.msg, "not finalized") != NULL, "%s", err.msg);
    store_close(&st);
    /* "k": 32 -> "k": "x" */
    char *k = strstr(text, "\"k\":");
    cr_assert(k != NULL);
    char *broken = malloc(len + 16);
    size_t pre = (size_t)(k - text) + 4;
    memcpy(broken, text, pre);
    strcpy(broken + pre, "\t\"x\"");
    strcat(broken, strchr(k, ','));
    FILE *f = fopen(mp, "w");
    fputs(broken, f);
    fclose(f);
    cr_expect(store_open(&st, dir, &err) == JT_ERR);
    cr_expect(strstr(err.msg, "manifest.json") && strstr(err.msg, "'k'"), "%s", err.msg);
    store_close(&st);
    /* A features file of the wrong shape. */
    f = fopen(mp, "w");
    fputs(text, f);
    fclose(f);
    char fp[260];
    snprintf(fp, sizeof fp, "%s/model_0/features.npy", dir);
    float zeros[N_ROWS * 16] = {0};
    size_t shape[2] = {N_ROWS, 16};
    cr_assert(npy_write(fp, NPY_F32, 2, shape, zeros, &err) == JT_OK, "%s", err.msg);
    cr_expect(store_open(&st, dir, &err) == JT_ERR);
    cr_expect(strstr(err.msg, "features.npy") && strstr(err.msg, "(24, 32)"), "%s", err.msg);
    free(text), free(broken);
}

Test(featurize, resumed_run_equals_uninterrupted_run) {
    FeaturizeOptions o;
    int stopped;
    JtError err;
    tiny_options(&o, "full", 1, &stopped);
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(stopped, 0);

    /* Stopped after 10 rows (whole batches of 4: 12 rows), then resumed with batches of 5. */
    tiny_options(&o, "resumed", 1, &stopped);
    o.stop_after_rows = 10;
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(stopped, 1);
    FeatureStore st;
    char dir[200];
    path_of(dir, sizeof dir, "resumed");
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    uint8_t mask[N_ROWS];
    size_t done;
    cr_assert(store_rows_done(&st, 0, mask, &done, &err) == JT_OK, "%s", err.msg);
    cr_expect_eq(done, 12);
    for (int i = 0; i < N_ROWS; i++)
        cr_expect_eq(mask[i], i < 12, "done[%d] = %d", i, mask[i]);
    cr_expect(!st.featurized[0] && !st.finalized);
    store_close(&st);

    o.stop_after_rows = 0;
    o.batch = 5;
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(stopped, 0);
    expect_same_file("full", "resumed", 0, "features.npy");
    expect_same_file("full", "resumed", 0, "done.npy");
    expect_same_file("full", "resumed", 0, "kernel.npy");

    /* A finished store: nothing to do, nothing changes. */
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    expect_same_file("full", "resumed", 0, "kernel.npy");
}

/* A run stopped after its last row (before kernel.npy) and resumed computes the kernel with no
 * grad engine built: LAPACK's threading used to be whatever OpenBLAS defaulted to there (several
 * threads; dpotrf/dpotri round differently with 1 and 2), so kernel.npy differed from an
 * uninterrupted run's. Through the CLI, each process with OpenBLAS allowed 4 threads (ctest's
 * OPENBLAS_NUM_THREADS=1 would hide the difference). */
Test(featurize, resumed_at_the_kernel_equals_uninterrupted_run) {
    char args[1200], err[8192], img_src[300];
    setenv("OPENBLAS_NUM_THREADS", "4", 1);
    snprintf(img_src, sizeof img_src, "npy:%s,%s", g_img, g_lab);
    /* k 64: at k 32 OpenBLAS happened to round the same with 1 and 4 threads */
    const char *common = "--k 64 --S 2 --batch 4 --auto-ridge --quiet";
    snprintf(args, sizeof args, "featurize --models %s/m0 --out %s/full --data %s %s", test_tmp,
             test_tmp, img_src, common);
    int rc = cli_run(args, err, sizeof err);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s/resumed --data %s %s --stop-after-rows %d",
             test_tmp, test_tmp, img_src, common, N_ROWS);
    rc = cli_run(args, err, sizeof err);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    char kp[300];
    snprintf(kp, sizeof kp, "%s/resumed/model_0/kernel.npy", test_tmp);
    struct stat sb;
    cr_assert(stat(kp, &sb) != 0, "the stopped run wrote %s", kp);
    snprintf(args, sizeof args, "featurize --models %s/m0 --out %s/resumed --data %s %s", test_tmp,
             test_tmp, img_src, common);
    rc = cli_run(args, err, sizeof err);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    expect_same_file("full", "resumed", 0, "features.npy");
    expect_same_file("full", "resumed", 0, "kernel.npy");
}

/* A store, training or LDS folder in use by another process is refused naming its PID; once free,
 * the same command runs. A refused run into a new folder leaves nothing. */
Test(featurize, folder_in_use_is_refused_naming_the_pid) {
    char args[1200], err[8192], img_src[300], dir[300];
    snprintf(img_src, sizeof img_src, "npy:%s,%s", g_img, g_lab);
    snprintf(dir, sizeof dir, "%s/busy", test_tmp);
    DirLock lock;
    JtError jerr;
    cr_assert(dir_lock(&lock, dir, "featurize", &jerr) == JT_OK, "%s", jerr.msg);
    DirLock again;
    cr_expect(dir_lock(&again, dir, "featurize", &jerr) == JT_ERR); /* flock: per open file */
    char want[64];
    snprintf(want, sizeof want, "in use by PID %ld", (long)getpid());
    cr_expect(strstr(jerr.msg, dir) && strstr(jerr.msg, want), "%s", jerr.msg);
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s --data %s --k 32 --S 2 --auto-ridge --quiet",
             test_tmp, dir, img_src);
    int rc = cli_run(args, err, sizeof err);
    cr_expect_eq(rc, 1, "exit %d: %s", rc, err);
    cr_expect(strstr(err, dir) && strstr(err, want) && strstr(err, "featurize"), "%s", err);
    snprintf(args, sizeof args,
             "train --config %s/m0 --data %s --steps 2 --batch 4 --warmup 1 --out %s --quiet",
             test_tmp, img_src, dir);
    rc = cli_run(args, err, sizeof err);
    cr_expect_eq(rc, 1, "exit %d: %s", rc, err);
    cr_expect(strstr(err, want), "%s", err);
    dir_unlock(&lock);
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s --data %s --k 32 --S 2 --auto-ridge --quiet",
             test_tmp, dir, img_src);
    rc = cli_run(args, err, sizeof err);
    cr_expect_eq(rc, 0, "exit %d: %s", rc, err);
    /* A folder dir_lock made and nothing filled is removed on unlock (a run refused after
     * taking the lock leaves nothing); one that has files stays. */
    snprintf(dir, sizeof dir, "%s/fresh", test_tmp);
    cr_assert(dir_lock(&lock, dir, "lds", &jerr) == JT_OK, "%s", jerr.msg);
    dir_unlock(&lock);
    struct stat sb;
    cr_expect(stat(dir, &sb) != 0, "dir_unlock left %s", dir);
    snprintf(dir, sizeof dir, "%s/busy/manifest.json", test_tmp);
    cr_expect(stat(dir, &sb) == 0, "the store is gone");
}

/* A row marked done but all zeros (never written, or zero-filled under the run) does not pass
 * into a finished store: finalize refuses, marks it not done, and the same command recomputes it,
 * giving the uninterrupted run's files. */
Test(featurize, zero_row_marked_done_is_not_finalized) {
    FeaturizeOptions o;
    int stopped;
    JtError err;
    tiny_options(&o, "full", 1, &stopped);
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    tiny_options(&o, "hole", 1, &stopped);
    o.stop_after_rows = N_ROWS;
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(stopped, 1);
    char fp[300];
    snprintf(fp, sizeof fp, "%s/hole/model_0/features.npy", test_tmp);
    NpyFile f;
    cr_assert(npy_open(&f, fp, 1, &err) == JT_OK, "%s", err.msg);
    float zeros[K] = {0};
    cr_assert(npy_write_rows(&f, 5, 1, zeros, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_close(&f, &err) == JT_OK);
    o.stop_after_rows = 0;
    cr_expect(run(&o, 0, &err) == JT_ERR, "a store with a zero row was finalized");
    cr_expect(strstr(err.msg, "features.npy") && strstr(err.msg, "all zeros") &&
                  strstr(err.msg, "row 5"),
              "%s", err.msg);
    FeatureStore st;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/hole", test_tmp);
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    uint8_t mask[N_ROWS];
    size_t done;
    cr_assert(store_rows_done(&st, 0, mask, &done, &err) == JT_OK);
    cr_expect(done == N_ROWS - 1 && mask[5] == 0 && !st.finalized, "done %zu", done);
    store_close(&st);
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    expect_same_file("full", "hole", 0, "features.npy");
    expect_same_file("full", "hole", 0, "kernel.npy");
}

/* Every command that writes a folder refuses one that holds another kind of artifact, naming it;
 * what was there is unchanged. */
Test(featurize, outputs_never_overwrite_another_artifact) {
    char args[1200], err[8192], img_src[300];
    snprintf(img_src, sizeof img_src, "npy:%s,%s", g_img, g_lab);
    const char *t = test_tmp;
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s/st --data %s --k 32 --S 2 --auto-ridge --quiet", t,
             t, img_src);
    cr_assert_eq(cli_run(args, err, sizeof err), 0, "%s", err);
    char mp[300];
    snprintf(mp, sizeof mp, "%s/st/manifest.json", t);
    size_t len0;
    unsigned char *before = slurp(mp, &len0);
    struct {
        const char *args, *want;
    } cases[] = {
        {"score --store %s/st --trajectory %s/none.safetensors --out %s/st --quiet",
         "holds a feature store (manifest.json, format jtrak-features-v1), not a score folder"},
        {"sample --model %s/m0 --out %s/st --n 1 --steps 2 --sampler ddim --quiet%.0s",
         "holds a feature store"},
        {"init --config %s/m0 --out %s/st%.0s", "holds a feature store"},
        {"train --config %s/m0 --data IMG --steps 2 --batch 4 --out %s/st --quiet%.0s",
         "holds a feature store"},
        {"sample --model %s/m0 --out %s/m0 --n 1 --steps 2 --sampler ddim --quiet%.0s",
         "holds a training folder (training.json), not a trajectory folder"},
        {"score --store %s/st --trajectory %s/none.safetensors --out %s/m0 --quiet",
         "holds a training folder"},
        {"init --config %s/m0 --out %s/m0%.0s", "holds a training folder"},
        {"report --scores %s/st --out %s/m0/report.html%.0s", "holds a training folder"},
        {"report --scores %s/st --out %s/st/manifest.json%.0s", "holds a feature store"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char fmt[600], *p;
        snprintf(fmt, sizeof fmt, "%s", cases[i].args);
        if ((p = strstr(fmt, "IMG")) != NULL) { /* the data: spliced in as text */
            char tail[600];
            snprintf(tail, sizeof tail, "%s", p + 3);
            snprintf(p, sizeof fmt - (size_t)(p - fmt), "%s%s", img_src, tail);
        }
        snprintf(args, sizeof args, fmt, t, t, t);
        int rc = cli_run(args, err, sizeof err);
        cr_expect_eq(rc, 1, "%s: exit %d: %s", args, rc, err);
        cr_expect(strstr(err, cases[i].want) && strchr(err, '\n') == err + strlen(err) - 1,
                  "%s: want '%s' in: %s", args, cases[i].want, err);
    }
    size_t len1;
    unsigned char *after = slurp(mp, &len1);
    cr_expect(len0 == len1 && memcmp(before, after, len0) == 0, "the store's manifest changed");
    free(before), free(after);
    struct stat sb;
    snprintf(mp, sizeof mp, "%s/m0/trajectory.safetensors", t);
    cr_expect(stat(mp, &sb) != 0, "sample wrote into the model folder");
}

Test(featurize, ensemble_gets_one_projection_per_model) {
    FeaturizeOptions o;
    int stopped;
    JtError err;
    tiny_options(&o, "single", 1, &stopped);
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    /* The same weights twice: only the model id (draws and projection) differs. */
    tiny_options(&o, "pair", 2, &stopped);
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    expect_same_file("single", "pair", 0, "features.npy");
    FeatureStore st;
    char dir[200];
    path_of(dir, sizeof dir, "pair");
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    cr_expect_eq(st.n_models, 2);
    cr_expect(st.finalized);
    cr_expect_eq(st.model_fingerprints[0], st.model_fingerprints[1]);
    float *X0 = all_features(&st, 0), *X1 = all_features(&st, 1);
    size_t same = 0;
    for (size_t i = 0; i < (size_t)N_ROWS * K; i++)
        same += X0[i] == X1[i];
    cr_expect(same < 8, "models 0 and 1 share %zu of %d feature values", same, N_ROWS * K);
    float *A0 = malloc(K * K * sizeof *A0), *A1 = malloc(K * K * sizeof *A1);
    cr_assert(store_read_kernel(&st, 0, A0, &err) == JT_OK, "%s", err.msg);
    cr_assert(store_read_kernel(&st, 1, A1, &err) == JT_OK, "%s", err.msg);
    cr_expect(memcmp(A0, A1, K * K * sizeof *A0) != 0, "the two kernels are equal");
    free(X0), free(X1), free(A0), free(A1);
    store_close(&st);
}

/* A store of 4 rows of m0 (k 32, seed 0), then `o` changed by the caller must be refused. */
static void expect_refused(FeaturizeOptions *o, size_t limit, const char *const *want) {
    JtError err;
    cr_assert(run(o, limit, &err) == JT_ERR, "a mismatched store was accepted");
    for (int i = 0; want[i]; i++)
        cr_expect(strstr(err.msg, want[i]) != NULL, "message lacks '%s': %s", want[i], err.msg);
}

static void started_store(FeaturizeOptions *o, int *stopped) {
    tiny_options(o, "store", 1, stopped);
    o->stop_after_rows = 4;
    JtError err;
    cr_assert(run(o, 0, &err) == JT_OK, "%s", err.msg);
    o->stop_after_rows = 0;
}

Test(featurize, refuses_another_model) {
    FeaturizeOptions o;
    int stopped;
    started_store(&o, &stopped);
    train_tiny("m1", 8);
    char other[200];
    path_of(other, sizeof other, "m1");
    g_dirs[0] = other;
    expect_refused(
        &o, 0,
        (const char *const[]){"manifest.json", "models[0].fingerprint", "m1", "--out", NULL});
}

Test(featurize, refuses_another_k) {
    FeaturizeOptions o;
    int stopped;
    started_store(&o, &stopped);
    o.k = 16;
    expect_refused(&o, 0,
                   (const char *const[]){"manifest.json", "k is 32 but --k 16", "--out", NULL});
}

Test(featurize, refuses_another_dataset) {
    FeaturizeOptions o;
    int stopped;
    started_store(&o, &stopped);
    expect_refused(&o, 20,
                   (const char *const[]){"manifest.json", "dataset.fingerprint", "limit=20", NULL});
}

Test(featurize, refuses_another_seed) {
    FeaturizeOptions o;
    int stopped;
    started_store(&o, &stopped);
    o.draw_seed = 3;
    expect_refused(&o, 0,
                   (const char *const[]){"manifest.json", "draw_seed is 0 but --seed 3", NULL});
    o.draw_seed = 0;
    o.proj_seed = 9;
    expect_refused(&o, 0, (const char *const[]){"projector.seed is 0 but --proj-seed 9", NULL});
    o.proj_seed = 0;
    o.S = 3;
    expect_refused(&o, 0, (const char *const[]){"S is 2 but --S 3", NULL});
    o.S = S_DRAWS;
    o.outfn = OUTFN_SQNORM;
    expect_refused(&o, 0,
                   (const char *const[]){"output_function is loss but --output sqnorm", NULL});
}

/* Rows of two SGEMM kernels differ by rounding (~1e-6): a store started with one is not resumed
 * with the other (and stores made before the field was kept are not checked). */
Test(featurize, refuses_another_sgemm_kernel) {
    if (la_sgemm_select("avx512") != 0) cr_skip("one SGEMM kernel in this build");
    FeaturizeOptions o;
    int stopped;
    started_store(&o, &stopped);
    cr_assert_eq(la_sgemm_select("openblas"), 0);
    expect_refused(&o, 0,
                   (const char *const[]){"manifest.json", "sgemm_kernel is avx512",
                                         "computes with openblas", "JTRAK_SGEMM=avx512", NULL});
    /* an older manifest without the field is resumed */
    char mp[260];
    snprintf(mp, sizeof mp, "%s/store/manifest.json", test_tmp);
    size_t len;
    char *text = (char *)slurp(mp, &len);
    text = realloc(text, len + 1);
    text[len] = 0;
    char *field = strstr(text, "\"sgemm_kernel\"");
    cr_assert(field != NULL, "the manifest does not record the kernel: %s", text);
    char *line_start = field;
    while (line_start > text && line_start[-1] != '\n')
        line_start--;
    memmove(line_start, strchr(field, '\n') + 1, strlen(strchr(field, '\n') + 1) + 1);
    FILE *f = fopen(mp, "w");
    fputs(text, f);
    fclose(f);
    JtError err;
    cr_expect(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    la_sgemm_select("auto");
    free(text);
}

Test(featurize, refuses_a_model_that_does_not_fit_the_data) {
    UNetConfig cfg;
    test_tiny_unet_config(&cfg);
    cfg.sample_size = 16;
    UNet *net;
    JtError err;
    cr_assert(unet_create(&net, &cfg, &err) == JT_OK, "%s", err.msg);
    unet_init_params(net, 1);
    char dir[200];
    path_of(dir, sizeof dir, "m16");
    cr_assert(test_save_unet(net, dir, &err) == JT_OK, "%s", err.msg);
    unet_free(net);
    FeaturizeOptions o;
    int stopped;
    tiny_options(&o, "store", 1, &stopped);
    g_dirs[0] = dir;
    cr_assert(run(&o, 0, &err) == JT_ERR);
    cr_expect(strstr(err.msg, "m16/config.json") && strstr(err.msg, "sample_size 16") &&
                  strstr(err.msg, "1x8x8"),
              "%s", err.msg);
    char sp[260];
    path_of(sp, sizeof sp, "store");
    struct stat sb;
    cr_expect(stat(sp, &sb) != 0, "a store was created for a model that does not fit");
}

Test(featurize, kernel_is_kernel_invert_of_the_features) {
    FeaturizeOptions o;
    int stopped;
    JtError err;
    tiny_options(&o, "store", 1, &stopped);
    cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    char dir[200];
    path_of(dir, sizeof dir, "store");
    for (int pass = 0; pass < 2; pass++) {
        FeatureStore st;
        cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
        float *X = all_features(&st, 0);
        Gram g;
        gram_init(&g, K);
        gram_add(&g, X, N_ROWS);
        float *want = malloc(K * K * sizeof *want), *got = malloc(K * K * sizeof *got);
        KernelInfo info;
        cr_assert(kernel_invert(&g, &o.kernel, want, &info, &err) == JT_OK, "%s", err.msg);
        cr_assert(store_read_kernel(&st, 0, got, &err) == JT_OK, "%s", err.msg);
        /* Bitwise: the Gram sums every element in row order however the rows are split
         * (kernel.c), and the same doubles go through the same factorisation. */
        cr_expect(memcmp(want, got, K * K * sizeof *got) == 0,
                  "pass %d: kernel.npy differs from "
                  "kernel_invert of the stored features",
                  pass);
        cr_expect(st.kernel_info[0].lambda_used == info.lambda_used,
                  "pass %d: lambda_used %.17g in the manifest, %.17g", pass,
                  st.kernel_info[0].lambda_used, info.lambda_used);
        cr_expect_eq(st.kernel_info[0].ridge_added, info.ridge_added);
        cr_expect_eq(st.kernel_info[0].rescale_divisor, info.rescale_divisor);
        cr_expect_eq(st.kernel.lambda, o.kernel.lambda);
        cr_expect_eq(st.kernel.rescale, o.kernel.rescale);
        gram_free(&g);
        free(X), free(want), free(got);
        store_close(&st);
        /* Other kernel options on the finished store: the kernel is recomputed from the features.
         */
        o.kernel.lambda = 0.5;
        o.kernel.auto_ridge = 0;
        o.kernel.rescale = 0;
        cr_assert(run(&o, 0, &err) == JT_OK, "%s", err.msg);
    }
}

Test(featurize, cli_errors_and_warning) {
    char err[8192], args[1200], img_src[300];
    snprintf(img_src, sizeof img_src, "npy:%s,%s", g_img, g_lab);
    int rc = cli_run("featurize --out /tmp/nowhere", err, sizeof err);
    cr_expect_eq(rc, 2, "missing --models: exit %d: %s", rc, err);
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s/s --data %s --k 32 --S 2 "
             "--auto-ridge --quiet --stop-after-rows 4",
             test_tmp, test_tmp, img_src);
    rc = cli_run(args, err, sizeof err);
    cr_expect_eq(rc, 0, "exit %d: %s", rc, err);
    cr_expect(err[0] == 0, "stderr not empty with --quiet and matching data: %s", err);
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s/s --data %s --k 16 --S 2 "
             "--quiet",
             test_tmp, test_tmp, img_src);
    rc = cli_run(args, err, sizeof err);
    cr_expect_eq(rc, 1, "exit %d: %s", rc, err);
    cr_expect(strncmp(err, "jtrak featurize: ", 17) == 0 && strstr(err, "k is 32 but --k 16") &&
                  strchr(err, '\n') == err + strlen(err) - 1,
              "%s", err);
    /* Other data than the model's training.json names: a warning, not an error. */
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s/s10 --data %s --limit 10 --k 32 "
             "--S 2 --auto-ridge --quiet",
             test_tmp, test_tmp, img_src);
    rc = cli_run(args, err, sizeof err);
    cr_expect_eq(rc, 0, "exit %d: %s", rc, err);
    cr_expect(strstr(err, "warning") && strstr(err, "training.json"), "%s", err);
    /* Not a store and not empty: refused, nothing written into it. */
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s/m0 --data %s --k 32 --S 2 "
             "--auto-ridge --quiet",
             test_tmp, test_tmp, img_src);
    rc = cli_run(args, err, sizeof err);
    cr_expect_eq(rc, 1, "exit %d: %s", rc, err);
    cr_expect(strstr(err, "not a feature store"), "%s", err);
}

/* STORE/manifest.json as a NUL-terminated string (malloc'd). */
static char *read_manifest(const char *store) {
    char mp[300];
    snprintf(mp, sizeof mp, "%s/%s/manifest.json", test_tmp, store);
    size_t len;
    char *text = (char *)slurp(mp, &len);
    text = realloc(text, len + 1);
    text[len] = 0;
    return text;
}

static void write_manifest(const char *store, const char *text) {
    char mp[300];
    snprintf(mp, sizeof mp, "%s/%s/manifest.json", test_tmp, store);
    FILE *f = fopen(mp, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* text with the first `from` replaced by `to` (malloc'd); `from` must occur. */
static char *replace_once(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    cr_assert(at != NULL, "'%s' not in the manifest", from);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    size_t pre = (size_t)(at - text);
    memcpy(out, text, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

/* k = 16 < n = 24 rows: X^T X is regular, A well conditioned. (With n < k, A is ~1/lambda off the
 * rows' span, and float rounding of x_i^T A x_j cancels catastrophically.) */
enum { N_COPIES = 6, K_SC = 16 };

/* A trajectory of model m0 whose final samples are training rows 0..N_COPIES-1 (the same floats
 * featurize gives the U-Net). */
static void write_copy_trajectory(const char *path) {
    Dataset ds = {0};
    tiny_data(&ds, 0);
    char m0[200];
    path_of(m0, sizeof m0, "m0");
    test_write_copy_trajectory(path, m0, &ds, N_COPIES);
    data_free(&ds);
}

/* `jtrak score --method trak` of the copy trajectory against STORE into test_tmp/out; the dense
 * scores (N_ROWS, N_COPIES), malloc'd. */
static float *score_copies(const char *store, const char *out) {
    char args[1200], err[8192];
    snprintf(args, sizeof args,
             "score --store %s/%s --trajectory %s/copies.safetensors --out %s/%s --method trak "
             "--R %d --seed 0 --quiet",
             test_tmp, store, test_tmp, test_tmp, out, S_DRAWS);
    int rc = cli_run(args, err, sizeof err);
    cr_assert_eq(rc, 0, "score %s: exit %d: %s", store, rc, err);
    char path[300];
    snprintf(path, sizeof path, "%s/%s/scores_final.npy", test_tmp, out);
    NpyHeader h;
    void *data;
    JtError e;
    cr_assert(npy_read_as(path, NPY_F32, &h, &data, &e) == JT_OK, "%s", e.msg);
    cr_assert(h.ndim == 2 && h.shape[0] == N_ROWS && h.shape[1] == N_COPIES, "%s: shape", path);
    return data;
}

/* What score must give when the targets are training rows 0..N_COPIES-1 under shared draws with
 * the featurize seed and R = S: their projected gradients are the stored rows, so
 * tau[i][j] = x_i^T A x_j (one model). */
static void expected_copy_scores(const char *store, float *want, double *amax) {
    char dir[200];
    path_of(dir, sizeof dir, store);
    FeatureStore st;
    JtError err;
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    float *X = all_features(&st, 0), *A = malloc(K_SC * K_SC * sizeof *A);
    cr_assert(store_read_kernel(&st, 0, A, &err) == JT_OK, "%s", err.msg);
    *amax = 0;
    for (int i = 0; i < N_ROWS; i++)
        for (int j = 0; j < N_COPIES; j++) {
            double s = 0;
            for (int a = 0; a < K_SC; a++)
                for (int b = 0; b < K_SC; b++)
                    s += (double)X[i * K_SC + a] * A[a * K_SC + b] * X[j * K_SC + b];
            want[i * N_COPIES + j] = (float)s;
            *amax = fmax(*amax, fabs(s));
        }
    free(X), free(A);
    store_close(&st);
}

Test(featurize, every_projection_is_recorded_and_scored_with_its_own_matrix) {
    char img_src[300], args[1200], err[8192], path[300];
    snprintf(img_src, sizeof img_src, "npy:%s,%s", g_img, g_lab);
    snprintf(path, sizeof path, "%s/copies.safetensors", test_tmp);
    write_copy_trajectory(path);
    const ProjKind kinds[] = {PROJ_RADEMACHER, PROJ_SPARSE, PROJ_HADAMARD};
    float want[N_ROWS * N_COPIES];
    for (int ki = 0; ki < 3; ki++) {
        const char *name = proj_kind_name(kinds[ki]);
        char store[32], out[32];
        snprintf(store, sizeof store, "st_%s", name);
        snprintf(out, sizeof out, "sc_%s", name);
        snprintf(args, sizeof args,
                 "featurize --models %s/m0 --out %s/%s --data %s --k %d --S %d --draws shared "
                 "--projection %s --auto-ridge --quiet",
                 test_tmp, test_tmp, store, img_src, K_SC, S_DRAWS, name);
        int rc = cli_run(args, err, sizeof err);
        cr_assert_eq(rc, 0, "featurize --projection %s: exit %d: %s", name, rc, err);
        /* The manifest names the kind, and the store opens with it. */
        char *text = read_manifest(store), quoted[40];
        snprintf(quoted, sizeof quoted, "\"%s\"", name);
        cr_expect(strstr(text, quoted) != NULL, "manifest lacks %s: %s", quoted, text);
        FeatureStore st;
        char dir[200];
        path_of(dir, sizeof dir, store);
        JtError e;
        cr_assert(store_open(&st, dir, &e) == JT_OK, "%s", e.msg);
        cr_expect_eq(st.proj_kind, kinds[ki], "%s: store opens as %s", name,
                     proj_kind_name(st.proj_kind));
        store_close(&st);
        /* Scoring projects the targets with the store's kind: a target that is training row j
         * scores x_i^T A x_j. float32 features, kernel and tile products (32-term sums) against a
         * double loop: ~1e-6 relative; 1e-4 of the largest score. Another projector would make
         * the targets' features unrelated to the rows': errors of the order of the scores. */
        float *got = score_copies(store, out);
        double amax;
        expected_copy_scores(store, want, &amax);
        char what[64];
        snprintf(what, sizeof what, "%s: scores of copies of training rows", name);
        NumDiff d = expect_close(what, got, want, N_ROWS * N_COPIES, 1e-4 * amax, 0);
        fprintf(stderr, "featurize: %s, max error %.2e of max |score| %.2e\n", what, d.max_abs,
                amax);
        free(got);
        /* Resuming with another kind is refused, naming both. */
        snprintf(args, sizeof args,
                 "featurize --models %s/m0 --out %s/%s --data %s --k %d --S %d --draws shared "
                 "--projection %s --quiet",
                 test_tmp, test_tmp, store, img_src, K_SC, S_DRAWS,
                 proj_kind_name(kinds[(ki + 1) % 3]));
        rc = cli_run(args, err, sizeof err);
        char msg[120];
        snprintf(msg, sizeof msg, "projector.kind is %s but --projection %s", name,
                 proj_kind_name(kinds[(ki + 1) % 3]));
        cr_expect(rc == 1 && strstr(err, msg), "exit %d, wanted '%s': %s", rc, msg, err);
        free(text);
    }

    /* The sparse store relabelled hadamard: score follows the manifest, and its targets no longer
     * match the rows (this is what the check above would see if score ignored the kind). */
    char *text = read_manifest("st_sparse");
    char *relabelled = replace_once(text, "\"sparse\"", "\"hadamard\"");
    write_manifest("st_sparse", relabelled);
    float *got = score_copies("st_sparse", "sc_relabelled");
    double amax;
    expected_copy_scores("st_sparse", want, &amax);
    double worst = 0;
    for (int i = 0; i < N_ROWS * N_COPIES; i++)
        worst = fmax(worst, fabs(got[i] - want[i]));
    cr_expect(worst > 1e-2 * amax, "relabelled store: scores still match (max error %g of %g)",
              worst, amax);
    free(got), free(relabelled);
    write_manifest("st_sparse", text);
    free(text);

    /* A manifest without the kind (a store from before there were kinds) is rademacher; an
     * unknown kind is refused naming the field. */
    text = read_manifest("st_rademacher");
    char *no_kind = replace_once(text, "\"kind\":", "\"kind_of_old\":");
    write_manifest("st_rademacher", no_kind);
    FeatureStore st;
    char dir[200];
    path_of(dir, sizeof dir, "st_rademacher");
    JtError e;
    cr_assert(store_open(&st, dir, &e) == JT_OK, "%s", e.msg);
    cr_expect_eq(st.proj_kind, PROJ_RADEMACHER);
    store_close(&st);
    char *bad = replace_once(text, "\"rademacher\"", "\"gaussian\"");
    write_manifest("st_rademacher", bad);
    cr_expect(store_open(&st, dir, &e) == JT_ERR, "a manifest with kind gaussian was accepted");
    cr_expect(strstr(e.msg, "manifest.json") && strstr(e.msg, "projector.kind") &&
                  strstr(e.msg, "gaussian"),
              "%s", e.msg);
    free(text), free(no_kind), free(bad);
}

Test(featurize, bad_projection_is_a_usage_error) {
    char err[8192], args[1200], img_src[300];
    snprintf(img_src, sizeof img_src, "npy:%s,%s", g_img, g_lab);
    snprintf(args, sizeof args,
             "featurize --models %s/m0 --out %s/s --data %s --k 32 --S 2 --projection gaussian "
             "--quiet",
             test_tmp, test_tmp, img_src);
    int rc = cli_run(args, err, sizeof err);
    cr_expect_eq(rc, 2, "exit %d: %s", rc, err);
    cr_expect(strncmp(err, "jtrak featurize: ", 17) == 0 && strstr(err, "--projection") &&
                  strstr(err, "'gaussian'") && strchr(err, '\n') == err + strlen(err) - 1,
              "%s", err);
    char out[300];
    path_of(out, sizeof out, "s");
    struct stat sb;
    cr_expect(stat(out, &sb) != 0, "a store was created for a bad --projection");
    /* --help names the option and its kinds */
    FILE *f = popen(JTRAK_CLI " featurize --help", "r");
    cr_assert(f != NULL);
    char help[8192];
    size_t n = fread(help, 1, sizeof help - 1, f);
    help[n] = 0;
    cr_expect_eq(pclose(f), 0);
    cr_expect(strstr(help, "--projection") && strstr(help, "sparse") && strstr(help, "hadamard"),
              "%s", help);
}

Test(featurize, mpi_two_processes_equal_one) {
#ifndef JTRAK_MPI
    cr_skip("jtrak was built without MPI");
#else
    if (system("command -v mpirun >/dev/null 2>&1") != 0) cr_skip("mpirun is not installed");
    train_tiny("m1", 8);
    char img_src[300], common[1200], cmd[2000], err[8192];
    snprintf(img_src, sizeof img_src, "npy:%s,%s", g_img, g_lab);
    snprintf(common, sizeof common,
             "featurize --models %s/m0,%s/m1 --data %s --k 32 --S 2 "
             "--batch 3 --auto-ridge --quiet",
             test_tmp, test_tmp, img_src);
    snprintf(cmd, sizeof cmd, "%s --out %s/one", common, test_tmp);
    int rc = cli_run(cmd, err, sizeof err);
    cr_assert_eq(rc, 0, "1 process: exit %d: %s", rc, err);
    /* One thread per process, leak checks off (OpenMPI's own allocations under ASan). */
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 mpirun "
             "--allow-run-as-root --oversubscribe -np 2 %s %s --out %s/two >%s/mpi.log 2>&1",
             JTRAK_CLI, common, test_tmp, test_tmp);
    rc = system(cmd);
    char log[300];
    snprintf(log, sizeof log, "%s/mpi.log", test_tmp);
    size_t len = 0;
    char *out = (char *)slurp(log, &len);
    out = realloc(out, len + 1);
    out[len] = 0;
    cr_assert_eq(rc, 0, "mpirun -np 2: status %d: %s", rc, out);
    free(out);
    for (int m = 0; m < 2; m++) {
        expect_same_file("one", "two", m, "features.npy");
        expect_same_file("one", "two", m, "done.npy");
        expect_same_file("one", "two", m, "kernel.npy");
    }
#endif
}
