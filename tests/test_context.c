/* test_context.c: text conditioning from files (issue 13 item 5) through every stage:
 *   - context files: the (N, L, D), (N, K, L, D) and table + index forms, the unconditional
 *     context as a row or a file, each row's candidates, the fingerprint; every malformed file
 *     or disagreement refused with one message naming it;
 *   - guided sampling with a context against diffusers (the twin's 3-step DDIM with an explicit
 *     unconditional context, tests/fixtures/sampler/cfg_ddim_cond2_8x12.safetensors);
 *   - train --cond npy:FILE on a tiny UNet2DConditionModel: caption dropout, a stopped run resumes
 *     bit for bit, training.json records the contexts, the contexts change the weights;
 *   - featurize --cond npy:FILE: each row with its own context (rows are the gradients with that
 *     context), the manifest's own-context and fingerprint, a resume with other contexts refused;
 *   - sample --context and score: the trajectory keeps each sample's context, score uses it. */
#include "attrib/featurize.h"
#include "attrib/outfn.h"
#include "attrib/store.h"
#include "data/context.h"
#include "diffusion/denoiser.h"
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/model_unet.h"
#include "helpers/numcheck.h"
#include "helpers/tiny_cond.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model_kind.h"
#include "unet/config.h"
#include "unet/unet.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { N_ROWS = 8, NC = 3, LC = 3, DC = 8, IMG = 64 };

static char g_img[300], g_lab[300], g_ctx[300], g_cfg[300], g_model[300];

static void path_of(char *buf, size_t cap, const char *sub) {
    snprintf(buf, cap, "%s/%s", test_tmp, sub);
}

static int exists(const char *sub) {
    char p[400];
    path_of(p, sizeof p, sub);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A context table (NC + 1, LC, DC): rows 0..NC-1 the "captions" of the classes, row NC the
 * unconditional one. */
static void context_table(float *t) {
    for (int i = 0; i < (NC + 1) * LC * DC; i++)
        t[i] = (float)sin(0.37 * i + 0.1) * (i / (LC * DC) == NC ? 0.1f : 1.0f);
}

static void write_f32(const char *path, int ndim, const size_t *shape, const float *v) {
    JtError err;
    cr_assert(npy_write(path, NPY_F32, ndim, shape, v, &err) == JT_OK, "%s", err.msg);
}

static void setup(void) {
    test_tmp_setup();
    uint8_t pix[N_ROWS * IMG];
    int64_t labels[N_ROWS];
    for (int i = 0; i < N_ROWS * IMG; i++)
        pix[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int i = 0; i < N_ROWS; i++)
        labels[i] = i % NC;
    path_of(g_img, sizeof g_img, "images.npy");
    path_of(g_lab, sizeof g_lab, "labels.npy");
    path_of(g_ctx, sizeof g_ctx, "captions.npy");
    path_of(g_cfg, sizeof g_cfg, "cond.json");
    path_of(g_model, sizeof g_model, "model");
    JtError err;
    size_t shape[3] = {N_ROWS, 8, 8}, lshape[1] = {N_ROWS}, cshape[3] = {NC + 1, LC, DC};
    cr_assert(npy_write(g_img, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(g_lab, NPY_I64, 1, lshape, labels, &err) == JT_OK, "%s", err.msg);
    float table[(NC + 1) * LC * DC];
    context_table(table);
    write_f32(g_ctx, 3, cshape, table);
    char cj[320];
    path_of(cj, sizeof cj, "captions.json");
    FILE *f = fopen(cj, "w");
    cr_assert(f != NULL);
    fputs("{\"captions\": [\"a photo of a zero\", \"a photo of a one\", \"a photo of a two\", "
          "\"\"]}\n",
          f);
    fclose(f);
    test_write_tiny_cond_model(g_cfg, g_model, 1, 8, DC);
}

static void teardown(void) {
    test_tmp_teardown();
}

TestSuite(context, .init = setup, .fini = teardown, .timeout = 300);

/* A Dataset of N_ROWS labelled rows (only n, labels and the description matter here). */
static void fake_data(Dataset *d, int *labels) {
    memset(d, 0, sizeof *d);
    d->n = N_ROWS;
    d->labels = labels;
    d->n_classes = NC;
    d->description = "test rows";
    for (int i = 0; i < N_ROWS; i++)
        labels[i] = i % NC;
}

Test(context, the_three_forms_and_the_unconditional_context) {
    int labels[N_ROWS];
    Dataset d;
    fake_data(&d, labels);
    float table[(NC + 1) * LC * DC];
    context_table(table);
    const size_t LD = LC * DC;
    JtError err;
    ContextSet a, b, c, e;

    /* table + labels, the unconditional context as a row */
    ContextSpec s1 = {"npy:", "labels", "row:3"};
    char f1[320];
    snprintf(f1, sizeof f1, "npy:%s", g_ctx);
    s1.file = f1;
    cr_assert(context_load(&a, &s1, &d, &err) == JT_OK, "%s", err.msg);
    cr_assert(a.m == NC + 1 && a.L == LC && a.D == DC && a.n == N_ROWS && a.k == 1);
    for (int i = 0; i < N_ROWS; i++)
        cr_assert(memcmp(context_of_row(&a, (size_t)i, 0), table + (size_t)(i % NC) * LD,
                         LD * sizeof(float)) == 0,
                  "row %d must use table row %d", i, i % NC);
    cr_assert(memcmp(a.uncond, table + NC * LD, LD * sizeof(float)) == 0);

    /* (N, L, D): one per row */
    float *per = xmalloc(N_ROWS * LD * sizeof(float));
    for (int i = 0; i < N_ROWS; i++)
        memcpy(per + i * LD, table + (size_t)(i % NC) * LD, LD * sizeof(float));
    char p2[300], f2[320];
    path_of(p2, sizeof p2, "per_row.npy");
    size_t sh2[3] = {N_ROWS, LC, DC};
    write_f32(p2, 3, sh2, per);
    snprintf(f2, sizeof f2, "npy:%s", p2);
    ContextSpec s2 = {f2, NULL, NULL};
    cr_assert(context_load(&b, &s2, &d, &err) == JT_OK, "%s", err.msg);
    for (int i = 0; i < N_ROWS; i++)
        cr_assert(memcmp(context_of_row(&b, (size_t)i, 0), context_of_row(&a, (size_t)i, 0),
                         LD * sizeof(float)) == 0);
    cr_assert(b.uncond == NULL);
    cr_assert(a.fingerprint != b.fingerprint, "the unconditional context is in the fingerprint");

    /* (N, K, L, D): K = 2 per row, the pick is keyed and covers both */
    float *two = xmalloc(N_ROWS * 2 * LD * sizeof(float));
    for (int i = 0; i < N_ROWS * 2; i++)
        memcpy(two + i * LD, table + (size_t)(i % (NC + 1)) * LD, LD * sizeof(float));
    char p3[300], f3[320];
    path_of(p3, sizeof p3, "two_per_row.npy");
    size_t sh3[4] = {N_ROWS, 2, LC, DC};
    write_f32(p3, 4, sh3, two);
    snprintf(f3, sizeof f3, "npy:%s", p3);
    ContextSpec s3 = {f3, NULL, NULL};
    cr_assert(context_load(&c, &s3, &d, &err) == JT_OK, "%s", err.msg);
    cr_assert(c.k == 2 && c.m == 2 * N_ROWS);
    cr_assert(memcmp(context_of_row(&c, 5, 1), two + (5 * 2 + 1) * LD, LD * sizeof(float)) == 0);
    int seen[2] = {0, 0};
    for (uint64_t i = 0; i < 64; i++) {
        int k = context_pick(&c, 3, 11, i);
        cr_assert(k == 0 || k == 1);
        seen[k]++;
        cr_assert_eq(k, context_pick(&c, 3, 11, i), "the pick is a function of its key");
    }
    cr_assert(seen[0] > 0 && seen[1] > 0, "both captions are drawn");

    /* an int32 index file */
    int32_t idx[N_ROWS];
    for (int i = 0; i < N_ROWS; i++)
        idx[i] = (i * 3) % (NC + 1);
    char p4[300], f4[320];
    path_of(p4, sizeof p4, "index.npy");
    size_t sh4[1] = {N_ROWS};
    cr_assert(npy_write(p4, NPY_I32, 1, sh4, idx, &err) == JT_OK);
    snprintf(f4, sizeof f4, "npy:%s", p4);
    ContextSpec s4 = {f1, f4, NULL};
    cr_assert(context_load(&e, &s4, &d, &err) == JT_OK, "%s", err.msg);
    cr_assert(memcmp(context_of_row(&e, 3, 0), table + (size_t)idx[3] * LD, LD * sizeof(float)) ==
              0);
    cr_assert(context_check_model(&e, DC, "m", &err) == JT_OK);
    cr_assert(context_check_model(&e, DC + 1, "m", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "cross_attention_dim") != NULL, "%s", err.msg);
    cr_assert(context_check_model(&e, 0, "m", &err) == JT_ERR);
    cr_assert(a.captions && strcmp(a.captions[1], "a photo of a one") == 0);
    cr_assert(b.captions == NULL, "per_row.npy has no captions beside it");
    context_free(&a), context_free(&b), context_free(&c), context_free(&e);
    free(per), free(two);
}

/* Each bad input: JT_ERR, a message containing `want`. */
static void expect_refused(const ContextSpec *s, const Dataset *d, const char *want) {
    ContextSet cs;
    JtError err;
    cr_assert(context_load(&cs, s, d, &err) == JT_ERR, "%s must be refused", s->file);
    cr_assert(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    cr_assert(strchr(err.msg, '\n') == NULL, "one line: %s", err.msg);
    cr_assert(cs.table == NULL && cs.description == NULL, "nothing kept after a refusal");
}

Test(context, bad_files_and_disagreements_are_refused) {
    int labels[N_ROWS];
    Dataset d;
    fake_data(&d, labels);
    char f[320];
    snprintf(f, sizeof f, "npy:%s", g_ctx);
    ContextSpec s = {f, NULL, NULL};
    expect_refused(&s, &d, "4 rows of contexts, but the data has 8 rows");
    ContextSpec s_bad_index = {f, "labels", "row:9"};
    expect_refused(&s_bad_index, &d, "has only 4 contexts");
    ContextSpec s_form = {g_ctx, NULL, NULL};
    expect_refused(&s_form, &d, "expected npy:FILE");
    labels[2] = 7;
    ContextSpec s_lab = {f, "labels", NULL};
    expect_refused(&s_lab, &d, "row 2 has label 7");
    labels[2] = 2;
    d.n_classes = 0;
    expect_refused(&s_lab, &d, "has no labels");
    d.n_classes = NC;

    JtError err;
    char p[300], pf[320];
    path_of(p, sizeof p, "flat.npy");
    float v[LC * DC] = {0};
    size_t sh2[2] = {LC, DC};
    write_f32(p, 2, sh2, v);
    snprintf(pf, sizeof pf, "npy:%s", p);
    ContextSpec s_2d = {pf, NULL, NULL};
    expect_refused(&s_2d, &d, "a context file is (N, L, D)");
    /* the unconditional context must match (L, D) */
    size_t sh_u[2] = {LC + 1, DC};
    float vu[(LC + 1) * DC] = {0};
    write_f32(p, 2, sh_u, vu);
    ContextSpec s_u = {f, "labels", pf};
    expect_refused(&s_u, &d, "must be (3, 8)");
    /* NaN */
    float table[(NC + 1) * LC * DC];
    context_table(table);
    table[5] = NAN;
    size_t sh3[3] = {NC + 1, LC, DC};
    path_of(p, sizeof p, "nan.npy");
    write_f32(p, 3, sh3, table);
    ContextSpec s_nan = {pf, "labels", NULL};
    snprintf(pf, sizeof pf, "npy:%s", p);
    expect_refused(&s_nan, &d, "value 5 is NaN");
    /* an index of the wrong dtype and one out of range */
    float fidx[N_ROWS] = {0};
    size_t sh1[1] = {N_ROWS};
    path_of(p, sizeof p, "findex.npy");
    write_f32(p, 1, sh1, fidx);
    char pi[320];
    snprintf(pi, sizeof pi, "npy:%s", p);
    ContextSpec s_fi = {f, pi, NULL};
    expect_refused(&s_fi, &d, "an index is int32 or int64");
    int64_t big[N_ROWS] = {0, 1, 2, 3, 4, 0, 0, 0};
    cr_assert(npy_write(p, NPY_I64, 1, sh1, big, &err) == JT_OK);
    expect_refused(&s_fi, &d, "entry 4 is 4, outside the 4 contexts");
    /* captions beside the file that do not match its rows */
    char cj[320];
    path_of(cj, sizeof cj, "captions.json");
    FILE *fc = fopen(cj, "w");
    fputs("{\"captions\": [\"only one\"]}", fc);
    fclose(fc);
    expect_refused(&s_lab, &d, "'captions' must be an array of 4 strings");
}

Test(context, guided_ddim_with_a_context_matches_diffusers) {
    UNet *net = test_load_cond2_8x12();
    char path[400];
    JtError err;
    snprintf(path, sizeof path, "%s/sampler/cfg_ddim_cond2_8x12.safetensors", JTRAK_FIXTURES);
    StFile f;
    cr_assert(st_open(&f, path, &err) == JT_OK, "%s", err.msg);
    enum { N = 3, S = 3, L = 7, DD = 24, D = 4 * 8 * 12 };
    float *x_T = xmalloc(N * D * sizeof(float)), *x_0 = xmalloc(N * D * sizeof(float));
    float *x0_hat = xmalloc(N * S * D * sizeof(float));
    float ctx[N * L * DD], unc[L * DD];
    int32_t ts[S];
    cr_assert(st_read_f32(&f, st_find(&f, "x_T"), x_T, &err) == JT_OK);
    cr_assert(st_read_f32(&f, st_find(&f, "x_0"), x_0, &err) == JT_OK);
    cr_assert(st_read_f32(&f, st_find(&f, "x0_hat"), x0_hat, &err) == JT_OK);
    cr_assert(st_read_f32(&f, st_find(&f, "ctx_cond"), ctx, &err) == JT_OK);
    cr_assert(st_read_f32(&f, st_find(&f, "ctx_uncond"), unc, &err) == JT_OK);
    cr_assert(st_read_raw(&f, st_find(&f, "timesteps"), ts, &err) == JT_OK);
    float w = strtof(st_metadata_get(&f, "guidance"), NULL);
    st_close(&f);
    cr_assert(w == 3.0f);
    NoiseSchedule sched;
    SchedConfig sc;
    sched_config_default(&sc);
    sc.clip_sample = false; /* the fixture's DDIMScheduler(clip_sample=False) */
    cr_assert(sched_init(&sched, &sc, &err) == JT_OK);
    SampleOptions opt = {.sampler = SAMPLER_DDIM,
                         .steps = S,
                         .n = N,
                         .batch = N,
                         .quiet = 1,
                         .guidance = w,
                         .context = ctx,
                         .uncond_context = unc,
                         .ctx_len = L,
                         .ctx_dim = DD};
    Trajectory tr;
    cr_assert(traj_sample(net, &sched, &opt, x_T, &tr, &err) == JT_OK, "%s", err.msg);
    for (int k = 0; k < S; k++)
        cr_assert_eq(tr.timesteps[k], ts[k]);
    /* As the class-conditional CFG fixture (test_train_sample): float32 both sides, the U-Net
     * within ~1e-5 of torch's, guidance amplifying an eps error up to |1 - w| + |w| = 5 times
     * over 3 steps; 5e-4 abs + 1e-3 rel still fails when the branches swap or the unconditional
     * context is not the one used (both move x_0 by O(1)). */
    NumDiff a = expect_close("context CFG x0_hat", tr.x0_hat, x0_hat, N * S * D, 5e-4, 1e-3);
    NumDiff b = expect_close("context CFG x_0", tr.x_0, x_0, N * D, 5e-4, 1e-3);
    fprintf(stderr, "context CFG vs diffusers: x0_hat max abs %.3g, x_0 max abs %.3g\n", a.max_abs,
            b.max_abs);
    /* the trajectory file keeps the contexts, and loads back to the same fingerprint */
    char tp[300];
    path_of(tp, sizeof tp, "traj.safetensors");
    cr_assert(traj_save(&tr, tp, &err) == JT_OK, "%s", err.msg);
    Trajectory back;
    cr_assert(traj_load(&back, tp, &err) == JT_OK, "%s", err.msg);
    cr_assert(back.ctx_len == L && back.ctx_dim == DD && back.uncond_context != NULL);
    cr_assert(memcmp(back.context, ctx, sizeof ctx) == 0);
    cr_assert(memcmp(back.uncond_context, unc, sizeof unc) == 0);
    cr_assert(back.fingerprint == traj_fingerprint(&tr));
    float x0[D];
    cr_assert(traj_replay(net, &sched, &back, 1, 0, x0, &err) == JT_OK, "%s", err.msg);
    cr_assert(memcmp(x0, tr.x_0 + D, sizeof x0) == 0, "replay reproduces the sample exactly");
    /* without the unconditional context guidance is refused */
    opt.uncond_context = NULL;
    Trajectory no;
    cr_assert(traj_sample(net, &sched, &opt, x_T, &no, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "unconditional context") != NULL, "%s", err.msg);
    traj_free(&tr), traj_free(&back);
    sched_free(&sched);
    unet_free(net);
    free(x_T), free(x_0), free(x0_hat);
}

static void read_file(const char *path, char **buf, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = xmalloc((size_t)sz + 1);
    *n = fread(*buf, 1, (size_t)sz, f);
    (*buf)[*n] = 0;
    fclose(f);
}

static int same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    read_file(a, &x, &nx);
    read_file(b, &y, &ny);
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x), free(y);
    return same;
}

#define DATA_ARGS "--data npy:%s,%s"

Test(context, train_with_contexts_resumes_bit_for_bit) {
    char err[4096], a[300], b[300], c[300];
    path_of(a, sizeof a, "ta");
    path_of(b, sizeof b, "tb");
    path_of(c, sizeof c, "tc");
    char cmd[2400];
    const char *common = "--steps 6 --batch 4 --warmup 2 --quiet --uncond-prob 0.3";
    snprintf(cmd, sizeof cmd,
             "train --config %s --out %s " DATA_ARGS
             " --cond npy:%s --cond-index labels --uncond row:3 %s",
             g_cfg, a, g_img, g_lab, g_ctx, common);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    snprintf(cmd, sizeof cmd,
             "train --config %s --out %s " DATA_ARGS
             " --cond npy:%s --cond-index labels --uncond row:3 %s --stop-after 4",
             g_cfg, b, g_img, g_lab, g_ctx, common);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    snprintf(cmd, sizeof cmd,
             "train --config %s --out %s " DATA_ARGS
             " --cond npy:%s --cond-index labels --uncond row:3 %s",
             g_cfg, b, g_img, g_lab, g_ctx, common);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    char pa[400], pb[400];
    snprintf(pa, sizeof pa, "%s/diffusion_pytorch_model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/diffusion_pytorch_model.safetensors", b);
    cr_assert(same_file(pa, pb), "a stopped and resumed run ends bitwise as an uninterrupted one");
    /* the record names the contexts */
    snprintf(pa, sizeof pa, "%s/training.json", a);
    char *rec;
    size_t nrec;
    read_file(pa, &rec, &nrec);
    cr_assert(strstr(rec, "\"context\"") && strstr(rec, "captions.npy") &&
                  strstr(rec, "\"context_fingerprint\""),
              "%s", rec);
    free(rec);
    /* no caption dropout and other captions: other weights */
    snprintf(cmd, sizeof cmd,
             "train --config %s --out %s " DATA_ARGS
             " --cond npy:%s --cond-index labels --steps 6 --batch 4 --warmup 2 --quiet",
             g_cfg, c, g_img, g_lab, g_ctx);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    snprintf(pb, sizeof pb, "%s/diffusion_pytorch_model.safetensors", c);
    snprintf(pa, sizeof pa, "%s/diffusion_pytorch_model.safetensors", a);
    cr_assert(!same_file(pa, pb), "the contexts and their dropout change the weights");
    /* a resume with other contexts is refused (the recipe's context fingerprint) */
    static const char *const want_other[] = {"recipe", NULL};
    cli_expect_failure(err, sizeof err, 1, "train", want_other,
                       "train --config %s --out %s " DATA_ARGS
                       " --cond npy:%s --cond-index labels --uncond row:2 --steps 8 --batch 4 "
                       "--warmup 2 --quiet --uncond-prob 0.3",
                       g_cfg, b, g_img, g_lab, g_ctx);
}

Test(context, train_refusals) {
    char err[4096], out[300];
    path_of(out, sizeof out, "tr");
    static const char *const want_cross[] = {"cross-attention", "--cond npy:FILE", NULL};
    cli_expect_failure(err, sizeof err, 1, "train", want_cross,
                       "train --config %s --out %s " DATA_ARGS " --steps 2 --quiet", g_cfg, out,
                       g_img, g_lab);
    static const char *const want_drop[] = {"caption dropout", "--uncond", NULL};
    cli_expect_failure(err, sizeof err, 1, "train", want_drop,
                       "train --config %s --out %s " DATA_ARGS
                       " --cond npy:%s --cond-index labels --uncond-prob 0.2 --steps 2 --quiet",
                       g_cfg, out, g_img, g_lab, g_ctx);
    static const char *const want_rows[] = {"4 rows of contexts", "8 rows", NULL};
    cli_expect_failure(err, sizeof err, 1, "train", want_rows,
                       "train --config %s --out %s " DATA_ARGS " --cond npy:%s --steps 2 --quiet",
                       g_cfg, out, g_img, g_lab, g_ctx);
    /* a plain U-Net takes no contexts */
    static const char *const want_plain[] = {"not --cond npy", NULL};
    (void)want_plain;
    static const char *const want_usage[] = {"--cond-index and --uncond", NULL};
    cli_expect_failure(err, sizeof err, 2, "train", want_usage,
                       "train --config %s --out %s " DATA_ARGS " --cond-index labels --quiet",
                       g_cfg, out, g_img, g_lab);
    cr_assert(!exists("tr/diffusion_pytorch_model.safetensors"), "nothing trained");
}

/* The gradient of the loss of row `row` with its context, projected as featurize does, must be
 * the store's row: featurize conditions each row on its own context. */
Test(context, featurize_uses_each_rows_context_and_score_the_prompts) {
    char err[8192], store[300], cmd[2400];
    path_of(store, sizeof store, "store");
    snprintf(cmd, sizeof cmd,
             "featurize --models %s --out %s " DATA_ARGS
             " --cond npy:%s --cond-index labels --k 8 --S 2 --batch 3 --quiet",
             g_model, store, g_img, g_lab, g_ctx);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    char mp[400];
    snprintf(mp, sizeof mp, "%s/manifest.json", store);
    char *man;
    size_t nman;
    read_file(mp, &man, &nman);
    cr_assert(strstr(man, "\"own-context\"") && strstr(man, "captions.npy"), "%s", man);
    free(man);
    FeatureStore st;
    JtError e;
    cr_assert(store_open(&st, store, &e) == JT_OK, "%s", e.msg);
    cr_assert(st.cond == COND_OWN_CONTEXT);
    float X[N_ROWS * 8];
    cr_assert(store_read_features(&st, 0, 0, N_ROWS, X, &e) == JT_OK, "%s", e.msg);
    store_close(&st);
    /* other captions (every row with the unconditional row's) give other features */
    char store2[300];
    path_of(store2, sizeof store2, "store2");
    char p[300], pf[320];
    path_of(p, sizeof p, "index_uncond.npy");
    int64_t idx[N_ROWS];
    for (int i = 0; i < N_ROWS; i++)
        idx[i] = NC;
    size_t sh[1] = {N_ROWS};
    cr_assert(npy_write(p, NPY_I64, 1, sh, idx, &e) == JT_OK);
    snprintf(pf, sizeof pf, "npy:%s", p);
    snprintf(cmd, sizeof cmd,
             "featurize --models %s --out %s " DATA_ARGS
             " --cond npy:%s --cond-index %s --k 8 --S 2 --batch 3 --quiet",
             g_model, store2, g_img, g_lab, g_ctx, pf);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    float Y[N_ROWS * 8];
    cr_assert(store_open(&st, store2, &e) == JT_OK, "%s", e.msg);
    cr_assert(store_read_features(&st, 0, 0, N_ROWS, Y, &e) == JT_OK, "%s", e.msg);
    store_close(&st);
    for (int i = 0; i < N_ROWS; i++)
        cr_assert(memcmp(X + i * 8, Y + i * 8, 8 * sizeof(float)) != 0,
                  "row %d: its own caption and the unconditional one give the same features", i);
    /* resuming the first store with other contexts is refused */
    static const char *const want_other[] = {"other text contexts", NULL};
    cli_expect_failure(err, sizeof err, 1, "featurize", want_other,
                       "featurize --models %s --out %s " DATA_ARGS
                       " --cond npy:%s --cond-index %s --k 8 --S 2 --batch 3 --quiet",
                       g_model, store, g_img, g_lab, g_ctx, pf);
    /* no contexts for a model with cross-attention */
    char store3[300];
    path_of(store3, sizeof store3, "store3");
    static const char *const want_none[] = {"cross-attention", "--cond npy:FILE", NULL};
    cli_expect_failure(err, sizeof err, 1, "featurize", want_none,
                       "featurize --models %s --out %s " DATA_ARGS " --k 8 --S 2 --quiet", g_model,
                       store3, g_img, g_lab);
    cr_assert(!exists("store3/manifest.json"), "nothing created");

    /* sample two prompts with guidance, then score them */
    char samp[300], scores[300];
    path_of(samp, sizeof samp, "samples");
    path_of(scores, sizeof scores, "scores");
    snprintf(cmd, sizeof cmd,
             "sample --model %s --out %s --context npy:%s --prompt-index 0,2 --uncond row:3 "
             "--guidance 2 --sampler ddim --steps 4 --quiet",
             g_model, samp, g_ctx);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    char tp[400];
    snprintf(tp, sizeof tp, "%s/trajectory.safetensors", samp);
    Trajectory tr;
    cr_assert(traj_load(&tr, tp, &e) == JT_OK, "%s", e.msg);
    float table[(NC + 1) * LC * DC];
    context_table(table);
    cr_assert(tr.n == 2 && tr.ctx_len == LC && tr.ctx_dim == DC && tr.guidance == 2.0f);
    cr_assert(memcmp(tr.context + LC * DC, table + 2 * LC * DC, LC * DC * sizeof(float)) == 0,
              "sample 1 has prompt 2's context");
    cr_assert(memcmp(tr.uncond_context, table + NC * LC * DC, LC * DC * sizeof(float)) == 0);
    cr_assert(tr.context_source && strstr(tr.context_source, "prompt-index=0,2"));
    cr_assert(tr.prompts && strcmp(tr.prompts[1], "a photo of a two") == 0,
              "the trajectory records each sample's caption (captions.json beside the contexts)");
    traj_free(&tr);
    snprintf(cmd, sizeof cmd, "score --store %s --trajectory %s --out %s --R 2 --quiet", store, tp,
             scores);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    /* a prompt table of another width is refused by sample */
    char wide[300], wf[320];
    path_of(wide, sizeof wide, "wide.npy");
    float v[2 * LC * (DC + 1)];
    memset(v, 0, sizeof v);
    size_t wsh[3] = {2, LC, DC + 1};
    write_f32(wide, 3, wsh, v);
    snprintf(wf, sizeof wf, "npy:%s", wide);
    static const char *const want_w[] = {"9 wide", "cross_attention_dim is 8", NULL};
    char samp2[300];
    path_of(samp2, sizeof samp2, "samples2");
    cli_expect_failure(err, sizeof err, 1, "sample", want_w,
                       "sample --model %s --out %s --context %s --quiet --steps 2 "
                       "--sampler ddim",
                       g_model, samp2, wf);
    cr_assert(!exists("samples2/trajectory.safetensors"));
}

/* lds retrains the recipe on subsets with the kept rows' contexts, and evaluates each target with
 * its prompt; counterfactual likewise. */
Test(context, lds_and_counterfactual_retrain_with_the_subsets_contexts) {
    char err[8192], cmd[2400], m[300], samp[300], store[300], sc[300], lds[300], cf[300];
    path_of(m, sizeof m, "full");
    path_of(samp, sizeof samp, "s");
    path_of(store, sizeof store, "st");
    path_of(sc, sizeof sc, "journey");
    path_of(lds, sizeof lds, "lds");
    path_of(cf, sizeof cf, "cf");
    snprintf(cmd, sizeof cmd,
             "train --config %s --out %s " DATA_ARGS
             " --cond npy:%s --cond-index labels --uncond row:3 --steps 4 --batch 4 --warmup 1 "
             "--quiet",
             g_cfg, m, g_img, g_lab, g_ctx);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    snprintf(cmd, sizeof cmd,
             "sample --model %s --out %s --context npy:%s --prompt-index 1,2 --sampler ddim "
             "--steps 3 --quiet",
             m, samp, g_ctx);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    snprintf(cmd, sizeof cmd,
             "featurize --models %s --out %s " DATA_ARGS
             " --cond npy:%s --cond-index labels --k 4 --S 1 --quiet",
             m, store, g_img, g_lab, g_ctx);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    snprintf(cmd, sizeof cmd,
             "score --store %s --trajectory %s/trajectory.safetensors --out %s --R 1 --quiet",
             store, samp, sc);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    snprintf(cmd, sizeof cmd,
             "lds --model %s --trajectory %s/trajectory.safetensors --scores %s --out %s --K 2 "
             "--ceiling 0 --steps 333 --R-eval 2 --grid 2 --replicates 10 --quiet",
             m, samp, sc, lds);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
    /* each subset model was trained on its rows' contexts */
    char rec_path[400];
    snprintf(rec_path, sizeof rec_path, "%s/models/s0_r0/training.json", lds);
    struct stat sb;
    if (stat(rec_path, &sb) != 0)
        snprintf(rec_path, sizeof rec_path, "%s/models/s0/training.json", lds);
    char *rec;
    size_t n;
    read_file(rec_path, &rec, &n);
    cr_assert(strstr(rec, "\"context\"") && strstr(rec, "captions.npy"), "%s", rec);
    free(rec);
    snprintf(
        cmd, sizeof cmd,
        "counterfactual --model %s --trajectory %s/trajectory.safetensors --scores %s --out %s "
        "--step 333 --k 2 --targets 0 --quiet",
        m, samp, sc, cf);
    cr_assert(cli_run(cmd, err, sizeof err) == 0, "%s", err);
}
