/* test_cond_attrib.c: class conditioning through attribution and evaluation (issue 12) on the tiny
 * 8x8 U-Net made class-conditional (num_class_embeds 4: classes 0..2 and the null class 3), with
 * random weights, on 12 labelled images:
 *   - the gradient engine: a batch of mixed labels gives bitwise each example's single-example
 *     gradient with its label; the label changes the gradient; the own label differs from the
 *     null class;
 *   - featurize: each store row is that row's projected gradient with its own label (own-class)
 *     or the null class (null-class); the manifest records the policy; a resume with the other
 *     policy, an unlabelled dataset, a label the model cannot hold, --cond on an unconditional
 *     model and an ensemble that disagrees on conditioning are refused in one line naming the
 *     field, before any store is created;
 *   - score: a conditional target is scored with its label (changing the label changes the
 *     scores), the manifest records the policy and the labels; conditional trajectory vs
 *     unconditional store, the reverse, and unlabelled real targets on a conditional store are
 *     one clear error each, with nothing written;
 *   - report: the HTML shows each target's class and the guidance scale;
 *   - lds: the ground truth of a conditional model uses each target's label;
 *   - trajectory files keep labels and guidance. */
#include "attrib/featurize.h"
#include "attrib/outfn.h"
#include "attrib/project.h"
#include "attrib/score.h"
#include "attrib/store.h"
#include "diffusion/trajectory.h"
#include "eval/lds_internal.h"
#include "helpers/cli_run.h"
#include "helpers/fixture_npy.h"
#include "helpers/tiny_unet.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "helpers/model_unet.h"
#include "io/npy.h"
#include "unet/unet.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { N_ROWS = 12, KC = 4, PK = 8, S_DRAWS = 1, D = 64 };

static char g_img[300], g_lab[300], g_lab_bad[300], g_cm[300], g_um[300];

static void path_of(char *buf, size_t cap, const char *sub) {
    snprintf(buf, cap, "%s/%s", test_tmp, sub);
}

static int exists(const char *sub) {
    char p[400];
    path_of(p, sizeof p, sub);
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void save_model(const char *sub, int num_class_embeds, uint64_t seed, char *out) {
    UNetConfig cfg;
    test_tiny_unet_config(&cfg);
    cfg.num_class_embeds = num_class_embeds;
    UNet *net;
    JtError err;
    cr_assert(unet_create(&net, &cfg, &err) == JT_OK, "%s", err.msg);
    unet_init_params(net, seed);
    path_of(out, 300, sub);
    cr_assert(test_save_unet(net, out, &err) == JT_OK, "%s", err.msg);
    unet_free(net);
}

static void setup(void) {
    test_tmp_setup();
    uint8_t pix[N_ROWS * D];
    int64_t labels[N_ROWS], bad[N_ROWS];
    for (int i = 0; i < N_ROWS * D; i++)
        pix[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int i = 0; i < N_ROWS; i++)
        labels[i] = i % 3, bad[i] = i == 5 ? 3 : i % 3; /* row 5: class 3 = the null class */
    path_of(g_img, sizeof g_img, "images.npy");
    path_of(g_lab, sizeof g_lab, "labels.npy");
    path_of(g_lab_bad, sizeof g_lab_bad, "labels_bad.npy");
    size_t shape[3] = {N_ROWS, 8, 8}, lshape[1] = {N_ROWS};
    JtError err;
    cr_assert(npy_write(g_img, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(g_lab, NPY_I64, 1, lshape, labels, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(g_lab_bad, NPY_I64, 1, lshape, bad, &err) == JT_OK, "%s", err.msg);
    save_model("cm", KC, 11, g_cm);
    save_model("um", 0, 11, g_um);
}

TestSuite(cond, .init = setup, .fini = test_tmp_teardown);

static void load_data(Dataset *ds, const char *labels) {
    DatasetSpec spec;
    data_spec_init(&spec);
    char src[700];
    JtError err;
    if (labels)
        snprintf(src, sizeof src, "npy:%s,%s", g_img, labels);
    else
        snprintf(src, sizeof src, "npy:%s", g_img);
    cr_assert(data_spec_set(&spec, "data", src, &err) == JT_OK, "%s", err.msg);
    cr_assert(data_load(&spec, ds, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&spec);
}

static UNet *load_model(const char *dir, NoiseSchedule *sched) {
    UNet *net;
    JtError err;
    cr_assert(test_load_unet(dir, &net, &err) == JT_OK, "%s", err.msg);
    SchedConfig sc;
    cr_assert(sched_config_load_model(&sc, dir, &err) == JT_OK, "%s", err.msg);
    cr_assert(sched_init(sched, &sc, &err) == JT_OK, "%s", err.msg);
    return net;
}

/* grads (B, P) of the loss for B images of ds with the given labels and draws of rows 0..B-1. */
static float *engine_grads(const UNet *net, const NoiseSchedule *sched, const Dataset *ds, int B,
                           const size_t *rows, const int *labels, int cap) {
    const size_t P = unet_num_params(net);
    GradEngine *g;
    JtError err;
    cr_assert(grad_engine_create(&g, net, sched, cap, &err) == JT_OK, "%s", err.msg);
    float *x0 = malloc((size_t)B * D * sizeof(float)), *eps = malloc((size_t)B * 2 * D * 4);
    int *t = malloc((size_t)B * 2 * sizeof(int));
    data_batch_f32(ds, rows, NULL, (size_t)B, x0);
    for (int b = 0; b < B; b++)
        attrib_draws(0, 0, rows[b], 2, sched->T, -1, D, t + 2 * b, eps + (size_t)b * 2 * D);
    float *grads = malloc((size_t)B * P * sizeof(float));
    grad_engine_run(g, OUTFN_LOSS, B, 2, x0, t, eps, labels, grads, NULL);
    grad_engine_free(g);
    free(x0), free(eps), free(t);
    return grads;
}

Test(cond, engine_rows_use_their_own_label) {
    NoiseSchedule sched;
    UNet *net = load_model(g_cm, &sched);
    Dataset ds = {0};
    load_data(&ds, g_lab);
    const size_t P = unet_num_params(net), rows[4] = {0, 1, 2, 3};
    const int labels[4] = {0, 1, 2, 3}; /* 3: the null class */
    float *all = engine_grads(net, &sched, &ds, 4, rows, labels, 4);
    for (int b = 0; b < 4; b++) {
        float *one = engine_grads(net, &sched, &ds, 1, rows + b, labels + b, 1);
        /* Every op loops over the batch with one sample's shapes: bitwise equal. */
        cr_assert(memcmp(one, all + (size_t)b * P, P * sizeof(float)) == 0,
                  "example %d of a mixed-label batch differs from its single-example gradient", b);
        int other = (labels[b] + 1) % KC;
        float *diff = engine_grads(net, &sched, &ds, 1, rows + b, &other, 1);
        cr_assert(memcmp(one, diff, P * sizeof(float)) != 0,
                  "example %d: label %d and label %d give the same gradient", b, labels[b], other);
        free(one), free(diff);
    }
    free(all);
    data_free(&ds);
    unet_free(net);
    sched_free(&sched);
}

static void feat_options(FeaturizeOptions *o, const char **dirs, int M, const char *out,
                         FeaturizeCond cond) {
    static char outp[300];
    featurize_options_default(o);
    path_of(outp, sizeof outp, out);
    o->model_dirs = dirs;
    o->n_models = M;
    o->out_dir = outp;
    o->k = PK;
    o->S = S_DRAWS;
    o->batch = 4;
    o->kernel.auto_ridge = 1;
    o->quiet = 1;
    o->cond = cond;
}

static int featurize(const char *const *dirs, int M, const char *out, FeaturizeCond cond,
                     const char *labels, JtError *err) {
    FeaturizeOptions o;
    feat_options(&o, (const char **)dirs, M, out, cond);
    Dataset ds = {0};
    load_data(&ds, labels);
    int rc = featurize_run(&o, &ds, err);
    data_free(&ds);
    return rc;
}

/* Row i of the store equals the single-example projected gradient with label `label(i)`. */
static void check_rows(const char *store, int null_class) {
    char dir[300];
    path_of(dir, sizeof dir, store);
    FeatureStore st;
    JtError err;
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(st.cond, null_class ? COND_NULL_CLASS : COND_OWN_CLASS);
    NoiseSchedule sched;
    UNet *net = load_model(g_cm, &sched);
    Dataset ds = {0};
    load_data(&ds, g_lab);
    const size_t P = unet_num_params(net);
    GradEngine *g;
    cr_assert(grad_engine_create(&g, net, &sched, 1, &err) == JT_OK, "%s", err.msg);
    Projector pr;
    proj_init(&pr, st.proj_kind, st.proj_seed, 0, P, PK);
    float X[N_ROWS * PK], x0[D], eps[S_DRAWS * D], *grad = malloc(P * sizeof(float)), row[PK];
    int t[S_DRAWS];
    cr_assert(store_read_features(&st, 0, 0, N_ROWS, X, &err) == JT_OK, "%s", err.msg);
    for (size_t i = 0; i < N_ROWS; i++) {
        data_batch_f32(&ds, &i, NULL, 1, x0);
        attrib_draws(0, 0, i, S_DRAWS, sched.T, -1, D, t, eps);
        int label = null_class ? KC - 1 : ds.labels[i];
        grad_engine_run(g, OUTFN_LOSS, 1, S_DRAWS, x0, t, eps, &label, grad, NULL);
        proj_apply(&pr, grad, 1, P, row);
        /* the row is computed in a batch of 4 and its gradient is batch-invariant (bitwise); the
         * projection of one row does not depend on the others */
        cr_assert(memcmp(row, X + i * PK, sizeof row) == 0,
                  "store %s row %zu is not the single-example features with class %d", store, i,
                  label);
    }
    proj_free(&pr);
    free(grad);
    grad_engine_free(g);
    data_free(&ds);
    unet_free(net);
    sched_free(&sched);
    store_close(&st);
}

Test(cond, featurize_own_and_null_class) {
    const char *dirs[1] = {g_cm};
    JtError err;
    cr_assert(featurize(dirs, 1, "own", FEATURIZE_COND_DEFAULT, g_lab, &err) == JT_OK, "%s",
              err.msg);
    cr_assert(featurize(dirs, 1, "null", FEATURIZE_COND_NULL, g_lab, &err) == JT_OK, "%s", err.msg);
    check_rows("own", 0);
    check_rows("null", 1);
    char p[400];
    path_of(p, sizeof p, "own/model_0/features.npy");
    float *a = fixture_npy_f32(p, NULL);
    path_of(p, sizeof p, "null/model_0/features.npy");
    float *b = fixture_npy_f32(p, NULL);
    for (int i = 0; i < N_ROWS; i++)
        cr_assert(memcmp(a + i * PK, b + i * PK, PK * sizeof(float)) != 0,
                  "row %d: own-class and null-class features are equal", i);
    free(a), free(b);
    path_of(p, sizeof p, "own/manifest.json");
    cJSON *m = json_load_file(p, &err);
    cr_assert(m != NULL, "%s", err.msg);
    cr_assert_str_eq(json_str(m, "conditioning"), "own-class");
    cJSON_Delete(m);
    /* a resume with the other policy is refused, naming the field and what to do */
    cr_assert(featurize(dirs, 1, "own", FEATURIZE_COND_NULL, g_lab, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "conditioning is own-class") && strstr(err.msg, "null-class") &&
                  strstr(err.msg, "--out"),
              "%s", err.msg);
    /* an unconditional store's manifest says none */
    const char *udirs[1] = {g_um};
    cr_assert(featurize(udirs, 1, "unc", FEATURIZE_COND_DEFAULT, g_lab, &err) == JT_OK, "%s",
              err.msg);
    path_of(p, sizeof p, "unc/manifest.json");
    m = json_load_file(p, &err);
    cr_assert_str_eq(json_str(m, "conditioning"), "none");
    cJSON_Delete(m);
}

Test(cond, featurize_refusals_before_any_work) {
    JtError err;
    const char *c1[1] = {g_cm}, *u1[1] = {g_um}, *mixed[2] = {g_cm, g_um};
    cr_assert(featurize(c1, 1, "s1", FEATURIZE_COND_DEFAULT, NULL, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "has no labels") && strstr(err.msg, "--cond null"), "%s", err.msg);
    cr_assert(!exists("s1"), "a refused featurize left its store behind");
    /* unlabelled data is fine with the null class */
    cr_assert(featurize(c1, 1, "s1n", FEATURIZE_COND_NULL, NULL, &err) == JT_OK, "%s", err.msg);
    cr_assert(featurize(c1, 1, "s2", FEATURIZE_COND_OWN, g_lab_bad, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "row 5 has label 3") && strstr(err.msg, "classes 0..2"), "%s",
              err.msg);
    cr_assert(!exists("s2"));
    cr_assert(featurize(u1, 1, "s3", FEATURIZE_COND_NULL, g_lab, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "--cond null") && strstr(err.msg, "unconditional"), "%s", err.msg);
    cr_assert(!exists("s3"));
    cr_assert(featurize(mixed, 2, "s4", FEATURIZE_COND_DEFAULT, g_lab, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "num_class_embeds") && strstr(err.msg, "ensemble"), "%s", err.msg);
    cr_assert(!exists("s4"));
    /* the CLI: one line, exit 1 (2 for a bad --cond value) */
    char cmd[2000], e[4096];
    snprintf(cmd, sizeof cmd, "featurize --models %s --out %s/s5 --data npy:%s --k 8 --S 1 --quiet",
             g_cm, test_tmp, g_img);
    cr_assert_eq(cli_run(cmd, e, sizeof e), 1, "%s", e);
    cr_assert(strstr(e, "has no labels") && strchr(e, '\n') == e + strlen(e) - 1, "%s", e);
    cr_assert(!exists("s5"));
    snprintf(cmd, sizeof cmd,
             "featurize --models %s --out %s/s6 --data npy:%s,%s --cond maybe --k 8 --quiet", g_cm,
             test_tmp, g_img, g_lab);
    cr_assert_eq(cli_run(cmd, e, sizeof e), 2, "%s", e);
    cr_assert(strstr(e, "--cond must be own, null or npy:FILE"), "%s", e);
    cr_assert(!exists("s6"));
}

/* A hand-made trajectory of 2 samples, steps 500 and 100, from the model in dir. */
static void make_traj(const char *dir, const int *labels, float guidance, const char *out) {
    NoiseSchedule sched;
    UNet *net = load_model(dir, &sched);
    Trajectory tr;
    memset(&tr, 0, sizeof tr);
    tr.n = 2, tr.S = 2, tr.C = 1, tr.H = tr.W = 8;
    tr.sampler = SAMPLER_DDIM;
    tr.num_inference_steps = 2;
    tr.model_fingerprint = model_fingerprint_of(net);
    tr.timesteps = malloc(2 * sizeof(int));
    tr.timesteps[0] = 500, tr.timesteps[1] = 100;
    const size_t nD = 2 * D, nSD = 2 * nD;
    tr.x_T = calloc(nD, 4), tr.x_0 = calloc(nD, 4);
    tr.x_t = calloc(nSD, 4), tr.x0_hat = calloc(nSD, 4), tr.noise = calloc(nSD, 4);
    for (size_t i = 0; i < nSD; i++)
        tr.x0_hat[i] = (float)((int)((i * 2654435761u) >> 24) - 128) / 128.0f;
    for (size_t i = 0; i < nD; i++)
        tr.x_0[i] = tr.x0_hat[i];
    if (labels) {
        tr.labels = malloc(2 * sizeof(int));
        tr.labels[0] = labels[0], tr.labels[1] = labels[1];
    }
    tr.guidance = guidance;
    char p[400];
    path_of(p, sizeof p, out);
    JtError err;
    cr_assert(traj_save(&tr, p, &err) == JT_OK, "%s", err.msg);
    traj_free(&tr);
    unet_free(net);
    sched_free(&sched);
}

static int score(const char *store, const char *traj, const DatasetSpec *targets, const char *out,
                 JtError *err) {
    char sp[300], tp[300], op[300];
    path_of(sp, sizeof sp, store);
    path_of(tp, sizeof tp, traj ? traj : "");
    path_of(op, sizeof op, out);
    ScoreOptions o;
    score_options_default(&o);
    o.store_dir = sp;
    o.traj_path = traj ? tp : NULL;
    o.target_data = targets;
    o.method = targets ? METHOD_TRAK : METHOD_JOURNEY;
    o.out_dir = op;
    o.R = 2;
    o.topk = 3;
    o.batch = 2;
    o.quiet = 1;
    return score_run(&o, NULL, err);
}

Test(cond, score_uses_the_targets_labels) {
    const char *c1[1] = {g_cm}, *u1[1] = {g_um};
    JtError err;
    cr_assert(featurize(c1, 1, "own", FEATURIZE_COND_DEFAULT, g_lab, &err) == JT_OK, "%s", err.msg);
    cr_assert(featurize(u1, 1, "unc", FEATURIZE_COND_DEFAULT, g_lab, &err) == JT_OK, "%s", err.msg);
    const int la[2] = {0, 2}, lb[2] = {0, 1};
    make_traj(g_cm, la, 2.5f, "ta.safetensors");
    make_traj(g_cm, lb, 2.5f, "tb.safetensors");
    make_traj(g_um, NULL, 0, "tu.safetensors");
    /* trajectory files keep labels and guidance */
    Trajectory tr;
    char p[400];
    path_of(p, sizeof p, "ta.safetensors");
    cr_assert(traj_load(&tr, p, &err) == JT_OK, "%s", err.msg);
    cr_assert(tr.labels && tr.labels[0] == 0 && tr.labels[1] == 2 && tr.guidance == 2.5f);
    traj_free(&tr);
    path_of(p, sizeof p, "tu.safetensors");
    cr_assert(traj_load(&tr, p, &err) == JT_OK, "%s", err.msg);
    cr_assert(tr.labels == NULL);
    traj_free(&tr);

    cr_assert(score("own", "ta.safetensors", NULL, "sa", &err) == JT_OK, "%s", err.msg);
    cr_assert(score("own", "tb.safetensors", NULL, "sb", &err) == JT_OK, "%s", err.msg);
    path_of(p, sizeof p, "sa/scores_t500.npy");
    float *a = fixture_npy_f32(p, NULL);
    path_of(p, sizeof p, "sb/scores_t500.npy");
    float *b = fixture_npy_f32(p, NULL);
    /* (n, N): target 0 has class 0 in both, target 1 class 2 vs 1 */
    int same0 = 1, same1 = 1;
    for (int i = 0; i < N_ROWS; i++)
        same0 &= a[i * 2] == b[i * 2], same1 &= a[i * 2 + 1] == b[i * 2 + 1];
    cr_assert(same0, "target 0 kept its label but its scores changed");
    cr_assert(!same1, "target 1's label changed but its scores did not");
    free(a), free(b);
    path_of(p, sizeof p, "sa/manifest.json");
    cJSON *m = json_load_file(p, &err);
    cr_assert(m != NULL, "%s", err.msg);
    cr_assert_str_eq(json_str(m, "conditioning"), "own-class");
    const cJSON *tl = cJSON_GetObjectItem(m, "target_labels");
    cr_assert(cJSON_GetArraySize(tl) == 2 && cJSON_GetArrayItem(tl, 1)->valueint == 2);
    cJSON_Delete(m);

    /* mismatches: one clear error, nothing written */
    cr_assert(score("unc", "ta.safetensors", NULL, "x1", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "class-conditional") && strstr(err.msg, "unconditional"), "%s",
              err.msg);
    cr_assert(!exists("x1"));
    char cmd[2000], e[4096];
    snprintf(cmd, sizeof cmd,
             "score --store %s/own --trajectory %s/tu.safetensors --out %s/x2 "
             "--R 2 --quiet",
             test_tmp, test_tmp, test_tmp);
    cr_assert_eq(cli_run(cmd, e, sizeof e), 1, "%s", e);
    cr_assert(strstr(e, "not class-conditional") && strchr(e, '\n') == e + strlen(e) - 1, "%s", e);
    cr_assert(!exists("x2"));
    /* real targets: unlabelled on a conditional store */
    DatasetSpec ts;
    data_spec_init(&ts);
    char src[400];
    snprintf(src, sizeof src, "npy:%s", g_img);
    cr_assert(data_spec_set(&ts, "data", src, &err) == JT_OK, "%s", err.msg);
    cr_assert(score("own", NULL, &ts, "x3", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "--targets-data") && strstr(err.msg, "no labels"), "%s", err.msg);
    cr_assert(!exists("x3"));
    data_spec_free(&ts);
    data_spec_init(&ts);
    snprintf(src, sizeof src, "npy:%s,%s", g_img, g_lab);
    cr_assert(data_spec_set(&ts, "data", src, &err) == JT_OK, "%s", err.msg);
    cr_assert(score("own", NULL, &ts, "x4", &err) == JT_OK, "%s", err.msg);
    data_spec_free(&ts);

    /* report: the class and the guidance of each target */
    snprintf(cmd, sizeof cmd, "report --scores %s/sa", test_tmp);
    cr_assert_eq(cli_run(cmd, e, sizeof e), 0, "%s", e);
    path_of(p, sizeof p, "sa/report.html");
    FILE *f = fopen(p, "rb");
    cr_assert(f != NULL);
    static char html[1 << 20];
    size_t got = fread(html, 1, sizeof html - 1, f);
    html[got] = 0;
    fclose(f);
    cr_assert(strstr(html, "(sample 0), class 0, guidance 2.5</h2>"), "no class in the HTML");
    cr_assert(strstr(html, "(sample 1), class 2, guidance 2.5</h2>"), "no class in the HTML");
    cr_assert(exists("sa/figure.png"));
}

Test(cond, lds_ground_truth_uses_each_targets_label) {
    make_traj(g_cm, (const int[]){0, 2}, 1.0f, "ta.safetensors");
    make_traj(g_cm, (const int[]){0, 1}, 1.0f, "tb.safetensors");
    LdsOptions o;
    lds_options_default(&o);
    o.R_eval = 3, o.grid = 2;
    double gt[2][3 * 2];
    const char *names[2] = {"ta.safetensors", "tb.safetensors"};
    for (int v = 0; v < 2; v++) {
        LdsInputs in;
        memset(&in, 0, sizeof in);
        JtError err;
        char p[400];
        path_of(p, sizeof p, names[v]);
        cr_assert(traj_load(&in.tr, p, &err) == JT_OK, "%s", err.msg);
        cr_assert(sched_config_load_model(&in.mr.sched, g_cm, &err) == JT_OK, "%s", err.msg);
        load_data(&in.mr.data, g_lab);
        int kidx[2] = {0, 1};
        in.kidx = kidx, in.n_steps = 2;
        cr_assert(lds_ground_truth(&o, &in, g_cm, 0, gt[v], &err) == JT_OK, "%s", err.msg);
        data_free(&in.mr.data);
        traj_free(&in.tr);
    }
    for (int row = 0; row < 3; row++) {
        cr_assert(gt[0][row * 2] == gt[1][row * 2], "target 0 kept its label, gt changed");
        cr_assert(gt[0][row * 2 + 1] != gt[1][row * 2 + 1], "target 1's label changed, gt did not");
    }
}
