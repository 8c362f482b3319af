/* test_latents.c: latent stores as a training source (src/data/latents.c, issue 13 item 4). A
 * small store is written by hand in the test as `jtrak encode` writes one (FILE.npy float32
 * (N, 2z, h, w) = posterior mean | clamped logvar, FILE.npy.json), beside the uint8 .npy dataset it
 * claims to come from. Checked: the round trip (rows, labels and class names recovered from the
 * original dataset, the description and its reload); the draws (mean mode = scaling * mean exactly,
 * sample mode = the keyed formula of dataset.h recomputed here, identical across loads, different
 * across counters and rows); every malformed store refused with one message naming the file; the
 * model/data refusals (channels, size, flips, fit, a latent mode on pixels); training on latents
 * resumes bit for bit; grad_engine_run_x0s with a repeated x0 is grad_engine_run bit for bit;
 * featurize in both modes records the mode in the store's manifest. */
#include "attrib/featurize.h"
#include "attrib/outfn.h"
#include "attrib/store.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "diffusion/train.h"
#include "helpers/cli_run.h"
#include "helpers/tiny_unet.h"
#include "helpers/tmpdir.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "unet/unet.h"
#include "vae/vae.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image.h>

enum { N = 12, Z = 2, LH = 8, LW = 8, PER = Z * LH * LW };
static const float SCALING = 0.5f;

TestSuite(latents, .init = test_tmp_setup, .fini = test_tmp_teardown);

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_tmp, name);
    return buf[k];
}

/* The original dataset: N 16x16 uint8 images, labels i % 3; its description and fingerprint. */
static void write_origin(char **desc, char fp[17]) {
    uint8_t pix[N * 256];
    int64_t labels[N];
    for (int i = 0; i < N * 256; i++)
        pix[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int i = 0; i < N; i++)
        labels[i] = i % 3;
    size_t shape[3] = {N, 16, 16}, lshape[1] = {N};
    JtError err;
    cr_assert(npy_write(tpath("images.npy"), NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(tpath("labels.npy"), NPY_I64, 1, lshape, labels, &err) == JT_OK, "%s",
              err.msg);
    char src[1200];
    snprintf(src, sizeof src, "npy:%s,%s", tpath("images.npy"), tpath("labels.npy"));
    DatasetSpec s;
    data_spec_init(&s);
    cr_assert(data_spec_set(&s, "data", src, &err) == JT_OK, "%s", err.msg);
    Dataset o;
    cr_assert(data_load(&s, &o, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&s);
    *desc = strdup(o.description);
    data_fingerprint_hex(&o, fp);
    data_free(&o);
}

/* mean and logvar of row i, element q (logvar in [-4, 0], inside the clamp) */
static float mean_at(int i, int q) {
    return sinf(0.37f * (float)(i * PER + q)) * 1.5f;
}
static float logvar_at(int i, int q) {
    return -4.0f + 4.0f * (float)((i * 7 + q * 13) % 17) / 16.0f;
}

typedef struct {
    const char *kind, *layout;
    int manifest_z;      /* latent_channels written in the manifest */
    int rows;            /* rows in the manifest */
    int nan_at;          /* element of the array set to NaN, -1 none */
    float logvar_value;  /* when non-zero: every logvar */
    int truncate;        /* bytes cut off the .npy */
    const char *data_fp; /* NULL: the origin's */
    const char *vae_fp;  /* NULL: 0123456789abcdef */
    int no_manifest;
} StoreOpts;

static StoreOpts good_opts(void) {
    StoreOpts o = {"jtrak-latents", "mean|logvar", Z, N, -1, 0.0f, 0, NULL, NULL, 0};
    return o;
}

/* test_tmp/NAME.npy and NAME.npy.json; returns the .npy path. */
static const char *write_store(const char *name, const StoreOpts *so) {
    char *desc;
    char fp[17];
    write_origin(&desc, fp);
    float *m = malloc((size_t)N * 2 * PER * sizeof *m);
    for (int i = 0; i < N; i++)
        for (int q = 0; q < PER; q++) {
            m[(size_t)i * 2 * PER + q] = mean_at(i, q);
            m[(size_t)i * 2 * PER + PER + q] =
                so->logvar_value ? so->logvar_value : logvar_at(i, q);
        }
    if (so->nan_at >= 0) m[so->nan_at] = NAN;
    static char npy[8][512];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(npy[k], sizeof npy[k], "%s/%s.npy", test_tmp, name);
    size_t shape[4] = {N, 2 * Z, LH, LW};
    JtError err;
    cr_assert(npy_write(npy[k], NPY_F32, 4, shape, m, &err) == JT_OK, "%s", err.msg);
    free(m);
    if (so->truncate) {
        FILE *f = fopen(npy[k], "r+b");
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fclose(f);
        cr_assert(truncate(npy[k], len - so->truncate) == 0);
    }
    if (!so->no_manifest) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", so->kind);
        cJSON_AddStringToObject(o, "vae_fingerprint", so->vae_fp ? so->vae_fp : "0123456789abcdef");
        cJSON_AddNumberToObject(o, "scaling_factor", SCALING);
        if (so->vae_fp) cJSON_AddStringToObject(o, "vae", tpath("vae"));
        cJSON_AddNumberToObject(o, "latent_channels", so->manifest_z);
        cJSON_AddNumberToObject(o, "latent_height", LH);
        cJSON_AddNumberToObject(o, "latent_width", LW);
        cJSON_AddNumberToObject(o, "rows", so->rows);
        cJSON *d = cJSON_AddObjectToObject(o, "dataset");
        cJSON_AddStringToObject(d, "spec", desc);
        cJSON_AddStringToObject(d, "fingerprint", so->data_fp ? so->data_fp : fp);
        cJSON_AddNumberToObject(d, "n", so->rows);
        cJSON_AddStringToObject(o, "layout", so->layout);
        char *text = cJSON_Print(o);
        char mp[600];
        snprintf(mp, sizeof mp, "%s.json", npy[k]);
        FILE *f = fopen(mp, "wb");
        cr_assert_not_null(f);
        fputs(text, f);
        fclose(f);
        free(text);
        cJSON_Delete(o);
    }
    free(desc);
    return npy[k];
}

/* Loads latents:PATH with extra key=value options (NULL-terminated pairs). */
static int load(const char *path, Dataset *ds, JtError *err, const char *const *kv) {
    DatasetSpec s;
    data_spec_init(&s);
    char src[600];
    snprintf(src, sizeof src, "latents:%s", path);
    int rc = data_spec_set(&s, "data", src, err);
    for (int i = 0; kv && kv[i] && rc == JT_OK; i += 2)
        rc = data_spec_set(&s, kv[i], kv[i + 1], err);
    if (rc == JT_OK) rc = data_load(&s, ds, err);
    data_spec_free(&s);
    return rc;
}

Test(latents, round_trip_and_draws) {
    StoreOpts so = good_opts();
    const char *p = write_store("lat", &so);
    Dataset a, b, m;
    JtError err;
    cr_assert(load(p, &a, &err, NULL) == JT_OK, "%s", err.msg);
    cr_assert(load(p, &b, &err, NULL) == JT_OK, "%s", err.msg);
    const char *mean_kv[] = {"latent", "mean", NULL};
    cr_assert(load(p, &m, &err, mean_kv) == JT_OK, "%s", err.msg);
    cr_assert_eq(a.n, N);
    cr_assert(a.c == Z && a.h == LH && a.w == LW);
    cr_assert_null(a.pixels);
    cr_assert_not_null(a.latent);
    /* labels and class names from the dataset the store was encoded from */
    cr_assert_not_null(a.latent->origin, "%s", a.latent->origin_note ? a.latent->origin_note : "");
    cr_assert_eq(a.n_classes, 3);
    for (int i = 0; i < N; i++)
        cr_assert_eq(a.labels[i], i % 3);
    cr_assert_str_eq(data_class_name(&a, 2), "2");
    cr_assert(strstr(a.description, "data=latents:/") != NULL, "%s", a.description);
    cr_assert(strstr(a.description, ";latent=sample") != NULL, "%s", a.description);
    cr_assert(strstr(m.description, ";latent=mean") != NULL, "%s", m.description);
    cr_assert(strstr(a.description, "channels=2") != NULL, "%s", a.description);
    cr_assert_str_eq(data_latent_mode_name(&a), "sample");
    cr_assert(data_draws_random(&a) && !data_draws_random(&m));
    cr_assert_eq(a.fingerprint, b.fingerprint);
    cr_assert_neq(a.fingerprint, m.fingerprint, "the mode is part of the fingerprint");

    /* the description reads back to the same dataset */
    DatasetSpec s;
    cr_assert(data_spec_parse(&s, a.description, &err) == JT_OK, "%s", err.msg);
    Dataset r;
    cr_assert(data_load(&s, &r, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&s);
    cr_assert_eq(r.fingerprint, a.fingerprint);
    cr_assert_str_eq(r.description, a.description);
    data_free(&r);
    /* a bare FILE.npy with its manifest beside it is a latent store */
    cr_assert(data_spec_set(&s, "data", p, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(s.kind, DATA_SRC_LATENTS);
    cr_assert(data_load(&s, &r, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&s);
    cr_assert_eq(r.fingerprint, a.fingerprint);
    data_free(&r);

    size_t rows[3] = {0, 5, 11};
    float got[3 * PER], got2[3 * PER], want[PER], n[PER];
    /* mean mode, data_batch_f32 and data_image_f32: scaling * mean exactly */
    data_batch_draw(&m, rows, NULL, 3, 1, 2, 3, got);
    for (int j = 0; j < 3; j++)
        for (int q = 0; q < PER; q++)
            cr_assert(got[j * PER + q] == SCALING * mean_at((int)rows[j], q));
    data_batch_f32(&a, rows, NULL, 3, got2);
    cr_assert(memcmp(got, got2, sizeof got) == 0);
    /* sample mode: the keyed formula of dataset.h */
    const uint64_t seed = 99, stream = rng_stream(RNG_TAG_TEST, 4, 5);
    data_batch_draw(&a, rows, NULL, 3, seed, stream, 7, got);
    for (int j = 0; j < 3; j++) {
        rng_fill_normal(n, PER, seed,
                        rng_stream(RNG_TAG_LATENT_SAMPLE,
                                   rng_stream(RNG_TAG_LATENT_SAMPLE, stream, 7), rows[j]),
                        0);
        for (int q = 0; q < PER; q++)
            want[q] = SCALING *
                      (mean_at((int)rows[j], q) + expf(0.5f * logvar_at((int)rows[j], q)) * n[q]);
        cr_assert(memcmp(got + j * PER, want, sizeof want) == 0, "row %zu: not the keyed sample",
                  rows[j]);
    }
    /* identical across loads, different across counters and rows */
    data_batch_draw(&b, rows, NULL, 3, seed, stream, 7, got2);
    cr_assert(memcmp(got, got2, sizeof got) == 0, "two loads drew differently");
    data_batch_draw(&a, rows, NULL, 3, seed, stream, 8, got2);
    for (int j = 0; j < 3; j++)
        cr_assert(memcmp(got + j * PER, got2 + j * PER, PER * sizeof(float)) != 0,
                  "counter 7 and 8 drew the same sample of row %zu", rows[j]);
    size_t same[2] = {4, 4}, other[2] = {4, 6};
    data_batch_draw(&a, same, NULL, 2, seed, stream, 1, got);
    cr_assert(memcmp(got, got + PER, PER * sizeof(float)) == 0, "one key, one sample");
    data_batch_draw(&a, other, NULL, 2, seed, stream, 1, got2);
    cr_assert(memcmp(got2, got2 + PER, PER * sizeof(float)) != 0);
    /* the sample spreads around the mean with the stored std: mean of (x/s - mean)/std ~ N(0,1) */
    double sum = 0, sq = 0;
    for (uint64_t c = 0; c < 200; c++) {
        data_batch_draw(&a, rows, NULL, 1, seed, stream, c, got);
        for (int q = 0; q < PER; q++) {
            double u = ((double)got[q] / SCALING - mean_at(0, q)) / exp(0.5 * logvar_at(0, q));
            sum += u, sq += u * u;
        }
    }
    double cnt = 200.0 * PER, mu = sum / cnt, var = sq / cnt - mu * mu;
    /* 25600 standard normals: the mean's sd is 0.006, the variance's about 0.009 */
    cr_assert(fabs(mu) < 0.03 && fabs(var - 1.0) < 0.05, "mean %g variance %g", mu, var);

    /* a subset keeps the rows' moments and draws them as the same rows of the subset */
    size_t sub_rows[2] = {3, 9};
    Dataset sub;
    cr_assert(data_subset(&m, sub_rows, 2, &sub, &err) == JT_OK, "%s", err.msg);
    cr_assert_not_null(sub.latent);
    cr_assert(sub.labels[0] == 0 && sub.labels[1] == 0 && sub.index[1] == 9);
    size_t z2[2] = {0, 1};
    data_batch_draw(&sub, z2, NULL, 2, 0, 0, 0, got);
    for (int q = 0; q < PER; q++)
        cr_assert(got[q] == SCALING * mean_at(3, q) && got[PER + q] == SCALING * mean_at(9, q));
    data_free(&sub);

    /* selection applies to the store's rows */
    const char *kv[] = {"classes", "1", "latent", "mean", NULL};
    Dataset c1;
    cr_assert(load(p, &c1, &err, kv) == JT_OK, "%s", err.msg);
    cr_assert_eq(c1.n, N / 3);
    cr_assert_eq(c1.index[1], 4);
    data_image_f32(&c1, 1, 0, got);
    for (int q = 0; q < PER; q++)
        cr_assert(got[q] == SCALING * mean_at(4, q));
    data_free(&c1);
    data_free(&a), data_free(&b), data_free(&m);
}

Test(latents, origin_gone_is_unlabelled) {
    StoreOpts so = good_opts();
    const char *p = write_store("lat", &so);
    cr_assert(unlink(tpath("images.npy")) == 0);
    Dataset a;
    JtError err;
    cr_assert(load(p, &a, &err, NULL) == JT_OK, "%s", err.msg);
    cr_assert_null(a.latent->origin);
    cr_assert_not_null(a.latent->origin_note);
    cr_assert(strstr(a.latent->origin_note, "images.npy") != NULL, "%s", a.latent->origin_note);
    cr_assert_eq(a.n_classes, 0);
    cr_assert_eq(a.labels[0], -1);
    data_free(&a);
}

/* Refused with one line naming `file` (a path suffix) and containing `word`; ds left empty. */
static void expect_refused(const char *p, const char *const *kv, const char *file,
                           const char *word) {
    Dataset ds;
    JtError err;
    memset(&err, 0, sizeof err);
    cr_assert(load(p, &ds, &err, kv) == JT_ERR, "%s was not refused (%s)", p, word);
    cr_assert(strstr(err.msg, file) != NULL, "message does not name %s: %s", file, err.msg);
    cr_assert(strstr(err.msg, word) != NULL, "message lacks '%s': %s", word, err.msg);
    cr_assert(strchr(err.msg, '\n') == NULL, "not one line: %s", err.msg);
    cr_assert(ds.n == 0 && ds.latent == NULL && ds.labels == NULL);
}

Test(latents, malformed_stores_refused) {
    StoreOpts so = good_opts();
    so.kind = "jtrak-features";
    expect_refused(write_store("kind", &so), NULL, "kind.npy.json", "'kind'");
    so = good_opts();
    so.layout = "logvar|mean";
    expect_refused(write_store("layout", &so), NULL, "layout.npy.json", "'layout'");
    so = good_opts();
    so.manifest_z = 3;
    expect_refused(write_store("shape", &so), NULL, "shape.npy", "latent_channels");
    so = good_opts();
    so.rows = N + 1;
    expect_refused(write_store("rows", &so), NULL, "rows.npy", "rows");
    so = good_opts();
    so.nan_at = 2 * PER * 5 + 3;
    expect_refused(write_store("nan", &so), NULL, "nan.npy", "row 5");
    so = good_opts();
    so.nan_at = 2 * PER * 2 + PER + 1;
    expect_refused(write_store("nanlv", &so), NULL, "nanlv.npy", "log-variance");
    so = good_opts();
    so.logvar_value = 25.0f;
    expect_refused(write_store("clamp", &so), NULL, "clamp.npy", "clamp");
    so = good_opts();
    so.truncate = 7;
    expect_refused(write_store("trunc", &so), NULL, "trunc.npy", "");
    so = good_opts();
    so.no_manifest = 1;
    expect_refused(write_store("nomani", &so), NULL, "nomani.npy.json", "missing");
    so = good_opts();
    so.data_fp = "0000000000000000";
    expect_refused(write_store("datafp", &so), NULL, "datafp.npy.json", "encode it again");
    /* a manifest that is not JSON */
    so = good_opts();
    const char *p = write_store("json", &so);
    char mp[600];
    snprintf(mp, sizeof mp, "%s.json", p);
    FILE *f = fopen(mp, "wb");
    fputs("{\"kind\": ", f);
    fclose(f);
    expect_refused(p, NULL, "json.npy.json", "JSON");
}

Test(latents, model_and_option_refusals) {
    StoreOpts so = good_opts();
    const char *p = write_store("lat", &so);
    const char *ch[] = {"channels", "3", NULL};
    expect_refused(p, ch, "lat.npy", "in_channels 3");
    const char *sz[] = {"size", "16", NULL};
    expect_refused(p, sz, "lat.npy", "16x16");
    const char *fl[] = {"flip", "random", NULL};
    expect_refused(p, fl, "lat.npy", "flipped");
    const char *fa[] = {"flip", "all", NULL};
    expect_refused(p, fa, "lat.npy", "flipped");
    const char *fi[] = {"fit", "pad", NULL};
    expect_refused(p, fi, "lat.npy", "--fit pad");
    /* a latent mode on a pixel source */
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    char src[600];
    snprintf(src, sizeof src, "npy:%s", tpath("images.npy"));
    cr_assert(data_spec_set(&s, "data", src, &err) == JT_OK);
    cr_assert(data_spec_set(&s, "latent", "mean", &err) == JT_OK);
    Dataset ds;
    cr_assert(data_load(&s, &ds, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "--latent mean") != NULL, "%s", err.msg);
    cr_assert(data_spec_set(&s, "latent", "median", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "sample or mean") != NULL, "%s", err.msg);
    data_spec_free(&s);
    /* the model's in_channels through the trainer's checks, and --flip in the recipe */
    Dataset a;
    cr_assert(load(p, &a, &err, NULL) == JT_OK, "%s", err.msg);
    UNetConfig cfg;
    test_tiny_unet_config(&cfg); /* in_channels 1 */
    SchedConfig sc;
    sched_config_default(&sc);
    TrainRecipe r;
    train_recipe_default(&r);
    r.batch = 4, r.steps = 2;
    TrainControl ctl = {tpath("m_ch"), 0, 2, 0, 1};
    int stopped;
    cr_assert(train_run(&cfg, &sc, &a, &r, &ctl, &stopped, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "in_channels is 1") != NULL, "%s", err.msg);
    cfg.in_channels = cfg.out_channels = Z;
    r.random_flip = 1;
    ctl.out_dir = tpath("m_flip");
    cr_assert(train_run(&cfg, &sc, &a, &r, &ctl, &stopped, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "cannot be flipped") != NULL, "%s", err.msg);
    data_free(&a);
}

/* Trains the tiny U-Net (in_channels Z) on the store for 6 steps into test_tmp/sub. */
static int train_latent(const char *store, const char *mode, const char *sub, long stop_after,
                        int *stopped, JtError *err) {
    const char *kv[] = {"latent", mode, NULL};
    Dataset ds;
    if (load(store, &ds, err, kv) != JT_OK) return JT_ERR;
    UNetConfig cfg;
    test_tiny_unet_config(&cfg);
    cfg.in_channels = cfg.out_channels = Z;
    SchedConfig sc;
    sched_config_default(&sc);
    TrainRecipe r;
    train_recipe_default(&r);
    r.batch = 4, r.steps = 6, r.lr = 1e-3, r.warmup = 2, r.seed = 7;
    TrainControl ctl = {tpath(sub), 0, 2, stop_after, 1};
    int rc = train_run(&cfg, &sc, &ds, &r, &ctl, stopped, err);
    data_free(&ds);
    return rc;
}

static float *read_state(const char *sub, size_t *n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s/train_state.safetensors", test_tmp, sub);
    StFile f;
    JtError err;
    cr_assert(st_open(&f, path, &err) == JT_OK, "%s", err.msg);
    size_t total = 0;
    for (int i = 0; i < f.n_tensors; i++)
        total += (size_t)f.tensors[i].numel;
    float *all = malloc(total * sizeof *all);
    size_t at = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        cr_assert(st_read_f32(&f, i, all + at, &err) == JT_OK, "%s", err.msg);
        at += (size_t)f.tensors[i].numel;
    }
    st_close(&f);
    *n = total;
    return all;
}

Test(latents, training_resumes_bit_for_bit) {
    StoreOpts so = good_opts();
    const char *p = write_store("lat", &so);
    JtError err;
    int stopped;
    cr_assert(train_latent(p, "sample", "full", 0, &stopped, &err) == JT_OK, "%s", err.msg);
    cr_assert(train_latent(p, "sample", "resumed", 2, &stopped, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(stopped, 1);
    cr_assert(train_latent(p, "sample", "resumed", 0, &stopped, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(stopped, 0);
    cr_assert(train_latent(p, "mean", "mean", 0, &stopped, &err) == JT_OK, "%s", err.msg);
    size_t na, nb, nc;
    float *a = read_state("full", &na), *b = read_state("resumed", &nb),
          *c = read_state("mean", &nc);
    cr_assert(na == nb && na == nc);
    cr_assert(memcmp(a, b, na * sizeof *a) == 0, "resumed latent run differs");
    cr_assert(memcmp(a, c, na * sizeof *a) != 0, "sample and mean training gave the same weights");
    free(a), free(b), free(c);
    /* the model's record names the mode (through the dataset description) */
    char rec[600];
    snprintf(rec, sizeof rec, "%s/full/training.json", test_tmp);
    FILE *f = fopen(rec, "rb");
    cr_assert_not_null(f);
    char text[16384];
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = 0;
    fclose(f);
    cr_assert(strstr(text, "latent=sample") != NULL, "training.json lacks the mode");
    /* a resume with the other mode is refused: other data */
    cr_assert(train_latent(p, "mean", "resumed", 0, &stopped, &err) != JT_OK);
}

Test(latents, per_draw_x0_matches_one_x0) {
    UNetConfig cfg;
    test_tiny_unet_config(&cfg);
    cfg.in_channels = cfg.out_channels = Z;
    JtError err;
    UNet *net;
    cr_assert(unet_create(&net, &cfg, &err) == JT_OK, "%s", err.msg);
    unet_init_params(net, 3);
    SchedConfig sc;
    sched_config_default(&sc);
    NoiseSchedule sched;
    cr_assert(sched_init(&sched, &sc, &err) == JT_OK, "%s", err.msg);
    GradEngine *g;
    cr_assert(grad_engine_create(&g, net, &sched, 2, &err) == JT_OK, "%s", err.msg);
    const size_t P = unet_num_params(net);
    enum { B = 2, S = 3 };
    float x0[B * PER], x0s[B * S * PER], eps[B * S * PER];
    int t[B * S];
    for (int b = 0; b < B; b++) {
        attrib_draws(1, 0, (uint64_t)b, S, sched.T, -1, PER, t + b * S, eps + b * S * PER);
        for (int q = 0; q < PER; q++)
            x0[b * PER + q] = mean_at(b, q);
        for (int s = 0; s < S; s++)
            memcpy(x0s + (b * S + s) * PER, x0 + b * PER, PER * sizeof(float));
    }
    float *g1 = malloc(B * P * sizeof(float)), *g2 = malloc(B * P * sizeof(float));
    double v1[B], v2[B];
    grad_engine_run(g, OUTFN_LOSS, B, S, x0, t, eps, NULL, g1, v1);
    grad_engine_run_x0s(g, OUTFN_LOSS, B, S, x0s, t, eps, NULL, g2, v2);
    cr_assert(memcmp(g1, g2, B * P * sizeof(float)) == 0 && v1[0] == v2[0] && v1[1] == v2[1]);
    /* another x0 at one draw changes that example only */
    x0s[(1 * S + 2) * PER + 5] += 1.0f;
    grad_engine_run_x0s(g, OUTFN_LOSS, B, S, x0s, t, eps, NULL, g2, v2);
    cr_assert(memcmp(g1, g2, P * sizeof(float)) == 0);
    cr_assert(memcmp(g1 + P, g2 + P, P * sizeof(float)) != 0);
    free(g1), free(g2);
    grad_engine_free(g);
    sched_free(&sched);
    unet_free(net);
}

static int featurize_latent_with(const char *store, const char *mode, const char *out, int batch,
                                 size_t stop_after, JtError *err) {
    const char *kv[] = {"latent", mode, NULL};
    Dataset ds;
    if (load(store, &ds, err, kv) != JT_OK) return JT_ERR;
    static char model[600], outp[600];
    snprintf(model, sizeof model, "%s/model", test_tmp);
    snprintf(outp, sizeof outp, "%s/%s", test_tmp, out);
    const char *dirs[1] = {model};
    FeaturizeOptions o;
    featurize_options_default(&o);
    o.model_dirs = dirs;
    o.n_models = 1;
    o.out_dir = outp;
    o.k = 16;
    o.S = 2;
    o.batch = batch;
    o.stop_after_rows = stop_after;
    o.kernel.auto_ridge = 1;
    o.quiet = 1;
    int rc = featurize_run(&o, &ds, err);
    data_free(&ds);
    return rc;
}

static int featurize_latent(const char *store, const char *mode, const char *out, JtError *err) {
    return featurize_latent_with(store, mode, out, 4, 0, err);
}

static float *features_of(const char *out, FeatureStore *st) {
    JtError err;
    cr_assert(store_open(st, tpath(out), &err) == JT_OK, "%s", err.msg);
    float *X = malloc(st->n * (size_t)st->k * sizeof *X);
    cr_assert(store_read_features(st, 0, 0, st->n, X, &err) == JT_OK, "%s", err.msg);
    for (size_t i = 0; i < st->n * (size_t)st->k; i++)
        cr_assert(isfinite(X[i]));
    return X;
}

Test(latents, featurize_records_the_mode) {
    StoreOpts so = good_opts();
    const char *p = write_store("lat", &so);
    JtError err;
    int stopped;
    cr_assert(train_latent(p, "sample", "model", 0, &stopped, &err) == JT_OK, "%s", err.msg);
    cr_assert(featurize_latent(p, "sample", "fs", &err) == JT_OK, "%s", err.msg);
    cr_assert(featurize_latent(p, "sample", "fs2", &err) == JT_OK, "%s", err.msg);
    cr_assert(featurize_latent(p, "mean", "fm", &err) == JT_OK, "%s", err.msg);
    /* stopped after 4 rows and resumed with another batch: the same posterior samples */
    cr_assert(featurize_latent_with(p, "sample", "fr", 4, 4, &err) == JT_OK, "%s", err.msg);
    cr_assert(featurize_latent_with(p, "sample", "fr", 5, 0, &err) == JT_OK, "%s", err.msg);
    FeatureStore a, b, m, r;
    float *xa = features_of("fs", &a), *xb = features_of("fs2", &b), *xm = features_of("fm", &m),
          *xr = features_of("fr", &r);
    cr_assert(strstr(a.data_spec, ";latent=sample") != NULL, "%s", a.data_spec);
    cr_assert(strstr(m.data_spec, ";latent=mean") != NULL, "%s", m.data_spec);
    cr_assert_neq(a.data_fingerprint, m.data_fingerprint);
    const size_t nk = a.n * (size_t)a.k;
    cr_assert(memcmp(xa, xb, nk * sizeof *xa) == 0, "two sample-mode runs differ");
    cr_assert(memcmp(xa, xr, nk * sizeof *xa) == 0, "the resumed sample-mode run differs");
    cr_assert(memcmp(xa, xm, nk * sizeof *xa) != 0, "sample and mean features are the same");
    /* a store of one mode refuses the data of the other */
    cr_assert(featurize_latent(p, "mean", "fs", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "dataset") != NULL, "%s", err.msg);
    free(xa), free(xb), free(xm), free(xr);
    store_close(&a), store_close(&b), store_close(&m), store_close(&r);
}

/* A random AutoencoderKL folder test_tmp/sub: 1 channel, two levels (factor 2: 16x16 <-> 8x8),
 * `zc` latent channels; its fingerprint into fp. */
static void make_vae(const char *sub, int zc, uint64_t seed, char fp[17]) {
    VaeConfig cfg;
    vae_config_default(&cfg);
    cfg.in_channels = cfg.out_channels = 1;
    cfg.n_levels = 2;
    cfg.block_out_channels[0] = cfg.block_out_channels[1] = 8;
    cfg.down_types[1] = cfg.up_types[1] = 0;
    cfg.layers_per_block = 1;
    cfg.latent_channels = zc;
    cfg.norm_num_groups = 4;
    cfg.sample_size = 16;
    cfg.scaling_factor = SCALING;
    Model *m;
    JtError err;
    cr_assert(model_create_kind(&m, model_kind_find(VAE_CLASS), &cfg, &err) == JT_OK, "%s",
              err.msg);
    vae_init_params(model_vae(m), seed);
    cr_assert(model_save(m, tpath(sub), &err) == JT_OK, "%s", err.msg);
    model_fingerprint_hex(model_fingerprint(m), fp);
    model_free(m);
}

static void jtrak_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void jtrak_ok(const char *fmt, ...) {
    char args[2048], e[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    cr_assert_eq(cli_run(args, e, sizeof e), 0, "jtrak %s: %s", args, e);
}

static char *slurp_text(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *t = malloc((size_t)n + 1);
    cr_assert_eq(fread(t, 1, (size_t)n, f), (size_t)n);
    t[n] = 0;
    fclose(f);
    return t;
}

/* RFC 4648 base64 of text up to the first non-alphabet character; returns bytes written. */
static size_t unbase64(const char *text, unsigned char *out) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        const char *q = strchr(A, *p);
        if (!q || *p == '\0') break;
        acc = acc << 6 | (uint32_t)(q - A);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

Test(latents, report_decodes_through_the_vae) {
    char vfp[17], ofp[17], zfp[17];
    make_vae("vae", Z, 5, vfp);
    make_vae("vae_other", Z, 6, ofp);
    make_vae("vae_z3", 3, 5, zfp);
    StoreOpts so = good_opts();
    so.vae_fp = vfp;
    const char *p = write_store("lat", &so);
    JtError err;
    int stopped;
    cr_assert(train_latent(p, "sample", "model", 0, &stopped, &err) == JT_OK, "%s", err.msg);
    jtrak_ok("sample --model %s/model --out %s/s --n 2 --sampler ddim --steps 10 --seed 3 --quiet",
             test_tmp, test_tmp);
    jtrak_ok("featurize --models %s/model --data latents:%s --out %s/f --S 2 --k 8 --batch 4 "
             "--quiet",
             test_tmp, p, test_tmp);
    jtrak_ok("score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/sc "
             "--steps 0:1000:500 --R 2 --topk 2 --quiet",
             test_tmp, test_tmp, test_tmp);
    char e[4096];
    /* without --vae, a VAE of other latents, another VAE: refused, nothing written */
    const char *w1[] = {"latents", "--vae", "the store names", NULL};
    cli_expect_failure(e, sizeof e, 1, "report", w1, "report --scores %s/sc", test_tmp);
    const char *w2[] = {"latent_channels 3", "in_channels", NULL};
    cli_expect_failure(e, sizeof e, 1, "report", w2, "report --scores %s/sc --vae %s/vae_z3",
                       test_tmp, test_tmp);
    const char *w3[] = {ofp, vfp, "another VAE", NULL};
    cli_expect_failure(e, sizeof e, 1, "report", w3, "report --scores %s/sc --vae %s/vae_other",
                       test_tmp, test_tmp);
    cr_assert(access(tpath("sc/report.html"), F_OK) != 0 &&
              access(tpath("sc/figure.png"), F_OK) != 0);
    /* the report through the VAE: decoded 16x16 gray images */
    jtrak_ok("report --scores %s/sc --vae %s/vae", test_tmp, test_tmp);
    char *html = slurp_text(tpath("sc/report.html"));
    cr_assert(strstr(html, "decoded by the VAE") != NULL);
    cr_assert(strstr(html, "their original images") != NULL);
    cr_assert(strstr(html, vfp) != NULL);
    int n_img = 0;
    unsigned char *png = malloc(strlen(html));
    for (const char *q = html; (q = strstr(q, "data:image/png;base64,")) != NULL; q++) {
        size_t len = unbase64(q + strlen("data:image/png;base64,"), png);
        int w, h, comp;
        cr_assert(stbi_info_from_memory(png, (int)len, &w, &h, &comp), "image %d", n_img);
        cr_assert(w == 16 && h == 16 && comp == 1,
                  "image %d is %dx%d x%d, not a decoded 16x16 gray", n_img, w, h, comp);
        n_img++;
    }
    /* 2 targets x (2 x̂_0 + final + 2 steps x 2 sides x top 2) at least, some rows shared */
    cr_assert(n_img >= 2 * 3 + 1, "%d images", n_img);
    free(png);
    free(html);
    int w, h, comp;
    cr_assert(stbi_info(tpath("sc/figure.png"), &w, &h, &comp));
}

/* The store `jtrak encode` writes (the vae branch's writer) loads as a latent source: its rows are
 * the in-process posterior of each image, its labels those of the encoded dataset. */
Test(latents, encoded_store_loads) {
    char vfp[17], *desc, dfp[17];
    make_vae("vae", Z, 5, vfp);
    write_origin(&desc, dfp);
    jtrak_ok("encode --vae %s/vae --data npy:%s,%s --out %s/enc.npy --batch 5 --quiet", test_tmp,
             tpath("images.npy"), tpath("labels.npy"), test_tmp);
    Dataset ds;
    JtError err;
    cr_assert(load(tpath("enc.npy"), &ds, &err, NULL) == JT_OK, "%s", err.msg);
    cr_assert(ds.n == N && ds.c == Z && ds.h == LH && ds.w == LW);
    cr_assert_not_null(ds.latent->origin);
    cr_assert_str_eq(ds.latent->origin->description, desc);
    for (int i = 0; i < N; i++)
        cr_assert_eq(ds.labels[i], i % 3);
    char h[17];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)ds.latent->vae_fingerprint);
    cr_assert_str_eq(h, vfp);
    /* the mean of row 3 is the encoder's, through the scaling factor */
    Model *m;
    cr_assert(model_load(tpath("vae"), &m, &err) == JT_OK, "%s", err.msg);
    VaeRun *run;
    cr_assert(vae_run_create(&run, model_vae(m), 1, 16, 16, VAE_RUN_FORWARD_ONLY, &err) == JT_OK,
              "%s", err.msg);
    float img[256], mean[PER], logvar[PER], got[PER];
    data_image_f32(ds.latent->origin, 3, 0, img);
    vae_encode(model_vae(m), run, 1, img, mean, logvar);
    data_latent_mean_f32(&ds, 3, got);
    for (int q = 0; q < PER; q++)
        cr_assert(got[q] == ds.latent->scaling_factor * mean[q], "element %d: %g vs %g", q,
                  (double)got[q], (double)(ds.latent->scaling_factor * mean[q]));
    vae_run_free(run);
    model_free(m);
    data_free(&ds);
    free(desc);
}
