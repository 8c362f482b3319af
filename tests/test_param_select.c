/* test_param_select.c: per-example gradients over a named parameter subset (issue 13 item 5,
 * featurize --params; attrib/paramsel.h, nn/graph.h graph_run_select_params):
 *   - the pattern rule (whole dot-separated components), "all", refusals with one clear message;
 *   - on the tiny U-Net and on the UNet2DConditionModel fixture cond2_8x12 (8x12, a 7-token
 *     context): every selected per-example gradient equals the corresponding entries of the full
 *     per-example gradients bit for bit, with 1 and with 2 threads;
 *   - unselected ops are given no parameter gradient (the executor's count of nodes that compute
 *     one is exactly the selected attention nodes), and the selected backward is timed beside the
 *     full one (printed, not asserted: the machine is shared);
 *   - featurize --params: the store's rows are the projection of the selected gradients, the
 *     manifest records the patterns, the count and the fingerprint; a resume and a score with
 *     another selection are refused naming the field; a pattern that matches nothing is one clear
 *     error; a manifest without the field reads as "all". */
#include "attrib/featurize.h"
#include "attrib/outfn.h"
#include "attrib/paramsel.h"
#include "attrib/project.h"
#include "attrib/store.h"
#include "core/progress.h"
#include "diffusion/schedule.h"
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/copy_trajectory.h"
#include "helpers/model_unet.h"
#include "helpers/tiny_cond.h"
#include "helpers/tiny_unet.h"
#include "helpers/tmpdir.h"
#include "io/npy.h"
#include "model/model.h"
#include "nn/graph.h"
#include "unet/unet.h"
#include "unet/unet_internal.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(param_select, .init = test_tmp_setup, .fini = test_tmp_teardown, .timeout = 600);

/* ---- the rule ------------------------------------------------------------------------------ */

Test(param_select, patterns_match_whole_components) {
    const char *n = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    cr_assert(param_select_matches("attn2.to_k", n));
    cr_assert(param_select_matches("to_k", n));
    cr_assert(param_select_matches("weight", n));
    cr_assert(param_select_matches(n, n));
    cr_assert(param_select_matches("to_v,to_k", n));
    cr_assert(param_select_matches("all", n));
    cr_assert(!param_select_matches("attn", n));
    cr_assert(!param_select_matches("to_k.w", n));
    cr_assert(!param_select_matches("o_k", n));
    cr_assert(!param_select_matches("attn1.to_k", n));
    cr_assert(!param_select_matches("to_v", n));
}

static UNet *tiny_net(void) {
    UNetConfig cfg;
    test_tiny_unet_config(&cfg);
    UNet *net;
    JtError err;
    cr_assert(unet_create(&net, &cfg, &err) == JT_OK, "%s", err.msg);
    unet_init_params(net, 11);
    return net;
}

Test(param_select, refusals_are_one_clear_message) {
    UNet *net = tiny_net();
    const ParamLayout *l = unet_layout(net);
    ParamSelect s;
    JtError err;
    cr_assert(param_select_init(&s, l, "attn2.to_x", "the tiny model", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "'attn2.to_x' matches no parameter of the tiny model") != NULL, "%s",
              err.msg);
    cr_assert(strstr(err.msg, "'conv_in.weight'") != NULL, "lists names: %s", err.msg);
    cr_assert(s.compact == NULL && s.patterns == NULL);
    cr_assert(param_select_init(&s, l, "to_k,,to_v", "m", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "empty pattern") != NULL, "%s", err.msg);
    cr_assert(param_select_init(&s, l, "to_k,all", "m", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "'all' cannot be combined") != NULL, "%s", err.msg);
    /* one matching and one not: still refused, naming the one */
    cr_assert(param_select_init(&s, l, "to_k, nope", "m", &err) == JT_ERR);
    cr_assert(strstr(err.msg, "'nope'") != NULL, "%s", err.msg);
    /* all, and a canonical list */
    cr_assert(param_select_init(&s, l, NULL, "m", &err) == JT_OK);
    cr_assert(s.all && s.compact == NULL && s.count == unet_num_params(net));
    cr_assert_str_eq(s.patterns, "all");
    param_select_free(&s);
    cr_assert(param_select_init(&s, l, " to_k , to_v ", "m", &err) == JT_OK, "%s", err.msg);
    cr_assert_str_eq(s.patterns, "to_k,to_v");
    size_t want = 0;
    for (int i = 0; i < l->count; i++)
        if (strstr(l->entries[i].name, ".to_k.") || strstr(l->entries[i].name, ".to_v."))
            want += l->entries[i].numel;
    cr_assert(want > 0 && s.count == want, "count %zu, want %zu", s.count, want);
    param_select_free(&s);
    unet_free(net);
}

/* ---- selected gradients equal the full ones -------------------------------------------------- */

typedef struct {
    int B, S, L;
    size_t D;
    float *x0, *eps, *ctx;
    int *t;
} Inputs;

static void make_inputs(Inputs *in, const UNet *net, int B, int S, int L, int Dctx) {
    const UNetConfig *cfg = unet_config(net);
    in->B = B, in->S = S, in->L = L;
    in->D = (size_t)cfg->in_channels * unet_config_height(cfg) * unet_config_width(cfg);
    in->x0 = malloc((size_t)B * in->D * sizeof(float));
    in->eps = malloc((size_t)B * S * in->D * sizeof(float));
    in->t = malloc((size_t)B * S * sizeof(int));
    in->ctx = L > 0 ? malloc((size_t)B * L * Dctx * sizeof(float)) : NULL;
    for (size_t i = 0; i < (size_t)B * in->D; i++)
        in->x0[i] = (float)sin(0.3 * (double)i);
    for (size_t i = 0; i < (size_t)B * S * in->D; i++)
        in->eps[i] = (float)cos(0.7 * (double)i + 0.2);
    for (int i = 0; i < B * S; i++)
        in->t[i] = (37 * i + 11) % 1000;
    for (size_t i = 0; in->ctx && i < (size_t)B * L * Dctx; i++)
        in->ctx[i] = (float)sin(0.11 * (double)i + 1.0);
}

static void free_inputs(Inputs *in) {
    free(in->x0), free(in->eps), free(in->t), free(in->ctx);
}

/* Per-example gradients (B, P) of the loss over the selection (NULL: every parameter) with
 * `threads` threads; *P_out = the row length. */
static float *engine_grads(const UNet *net, const Inputs *in, const size_t *compact, int threads,
                           size_t *P_out) {
    omp_set_num_threads(threads);
    NoiseSchedule sched;
    SchedConfig sc;
    sched_config_default(&sc);
    JtError err;
    cr_assert(sched_init(&sched, &sc, &err) == JT_OK, "%s", err.msg);
    GradEngine *ge;
    cr_assert(grad_engine_create_ctx(&ge, net, &sched, in->B, in->L, &err) == JT_OK, "%s", err.msg);
    grad_engine_select_params(ge, compact);
    const size_t P = grad_engine_grad_params(ge);
    float *g = malloc((size_t)in->B * P * sizeof(float));
    const Cond cond = {.context = in->ctx};
    grad_engine_run_cond(ge, OUTFN_LOSS, in->B, in->S, in->x0, 0, in->t, in->eps, &cond, g, NULL);
    grad_engine_free(ge);
    sched_free(&sched);
    *P_out = P;
    return g;
}

/* Every selected tensor's rows equal the full rows at its slab offset, bit for bit. */
static void expect_selected_equal(const ParamLayout *l, const ParamSelect *s, const float *full,
                                  const float *sel, int B, const char *what) {
    size_t checked = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < l->count; i++) {
            if (s->compact[i] == GRAPH_NO_PARAM) continue;
            const LayoutEntry *e = &l->entries[i];
            const float *a = full + (size_t)b * l->total + e->offset;
            const float *c = sel + (size_t)b * s->count + s->compact[i];
            cr_assert(memcmp(a, c, e->numel * sizeof(float)) == 0,
                      "%s: example %d, %s differs from the full gradient", what, b, e->name);
            checked += e->numel;
        }
    cr_assert(checked == (size_t)B * s->count, "%s: checked %zu of %zu", what, checked,
              (size_t)B * s->count);
    /* and they are not all zero (the check compares something) */
    double norm = 0;
    for (size_t j = 0; j < (size_t)B * s->count; j++)
        norm += fabs(sel[j]);
    cr_assert(norm > 0, "%s: the selected gradients are all zero", what);
}

static void check_selections(const UNet *net, const Inputs *in, const char *const *patterns,
                             int n_patterns, const char *model) {
    const ParamLayout *l = unet_layout(net);
    size_t P;
    float *full1 = engine_grads(net, in, NULL, 1, &P);
    cr_assert(P == unet_num_params(net));
    float *full2 = engine_grads(net, in, NULL, 2, &P);
    cr_assert(memcmp(full1, full2, (size_t)in->B * P * sizeof(float)) == 0,
              "%s: full gradients depend on the thread count", model);
    for (int k = 0; k < n_patterns; k++) {
        ParamSelect s;
        JtError err;
        cr_assert(param_select_init(&s, l, patterns[k], model, &err) == JT_OK, "%s", err.msg);
        for (int th = 1; th <= 2; th++) {
            size_t Ps;
            float *sel = engine_grads(net, in, s.compact, th, &Ps);
            cr_assert(Ps == s.count, "%s --params %s: row of %zu, want %zu", model, patterns[k], Ps,
                      s.count);
            char what[200];
            snprintf(what, sizeof what, "%s --params %s, %d thread(s)", model, patterns[k], th);
            expect_selected_equal(l, &s, full1, sel, in->B, what);
            free(sel);
        }
        fprintf(stderr, "%s --params %s: %zu of %zu parameters, bitwise equal (1, 2 threads)\n",
                model, patterns[k], s.count, unet_num_params(net));
        param_select_free(&s);
    }
    omp_set_num_threads(2);
    free(full1), free(full2);
}

Test(param_select, tiny_unet_selected_gradients_are_the_full_ones) {
    UNet *net = tiny_net();
    Inputs in;
    make_inputs(&in, net, 3, 2, 0, 0);
    static const char *const pats[] = {"to_k,to_v",      "conv_in",
                                       "time_embedding", "down_blocks.0.resnets.0.norm1",
                                       "up_blocks,bias", "conv_out,to_out"};
    check_selections(net, &in, pats, 6, "tiny U-Net");
    free_inputs(&in);
    unet_free(net);
}

/* The UNet2DConditionModel fixture at its 8x12 input size. */
static UNet *cond_net(void) {
    return test_load_cond2_8x12();
}

enum { CTX_L = 7 };

Test(param_select, cond_unet_selected_gradients_are_the_full_ones) {
    UNet *net = cond_net();
    Inputs in;
    make_inputs(&in, net, 2, 2, CTX_L, unet_cross_attention_dim(net));
    static const char *const pats[] = {"attn2.to_k,attn2.to_v", "attn1",
                                       "proj_in,proj_out",      "transformer_blocks.0.ff",
                                       "norm1,norm2,norm3",     "conv_in,time_embedding"};
    check_selections(net, &in, pats, 6, "UNet2DConditionModel cond2_8x12");
    free_inputs(&in);
    unet_free(net);
}

/* ---- frozen ops do no weight-gradient work ----------------------------------------------------
 */

static double backward_seconds(const UNet *net, UNetRun *run, int B, float *g, size_t stride,
                               const float *dout, int reps) {
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        memset(g, 0, (size_t)B * stride * sizeof(float));
        const double t0 = progress_now();
        unet_backward(net, run, B, g, stride, dout, NULL);
        const double dt = progress_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

Test(param_select, unselected_ops_get_no_parameter_gradient) {
    UNet *net = cond_net();
    const ParamLayout *l = unet_layout(net);
    const UNetConfig *cfg = unet_config(net);
    const int B = 2, H = 8, W = 12, Dx = unet_cross_attention_dim(net);
    JtError err;
    UNetRun *run;
    cr_assert(unet_run_create_ctx(&run, net, B, H, W, CTX_L, UNET_RUN_TRAIN, &err) == JT_OK, "%s",
              err.msg);
    Inputs in;
    make_inputs(&in, net, B, 1, CTX_L, Dx);
    const size_t Dout = (size_t)cfg->out_channels * H * W;
    float *out = malloc((size_t)B * Dout * sizeof(float)), tt[2] = {10, 500};
    unet_forward_ctx(net, run, B, out, in.x0, tt, NULL, in.ctx);
    for (size_t i = 0; i < (size_t)B * Dout; i++)
        out[i] = (float)sin(1.3 * (double)i) * 1e-2f; /* d loss / d eps_hat */
    const size_t P = unet_num_params(net);
    float *g = malloc((size_t)B * P * sizeof(float));

    double t_full = backward_seconds(net, run, B, g, P, out, 5);
    const size_t nodes_full = graph_run_param_grad_nodes(run->run);

    ParamSelect s;
    cr_assert(param_select_init(&s, l, "attn2.to_k,attn2.to_v", "cond2_8x12", &err) == JT_OK);
    unet_run_select_params(run, s.compact);
    cr_assert(unet_run_grad_params(run) == s.count);
    double t_sel = backward_seconds(net, run, B, g, s.count, out, 5);
    const size_t nodes_sel = graph_run_param_grad_nodes(run->run);
    /* exactly the cross-attention nodes (one per transformer block: its to_k and to_v) */
    size_t attn2 = 0;
    for (int i = 0; i < l->count; i++)
        attn2 += strstr(l->entries[i].name, ".attn2.to_k.weight") != NULL;
    cr_assert(attn2 > 0 && nodes_sel == attn2, "%zu nodes computed parameter gradients, want %zu",
              nodes_sel, attn2);
    cr_assert(nodes_full > 10 * attn2, "full backward: %zu nodes", nodes_full);
    fprintf(stderr,
            "cond2_8x12 backward of %d: all %zu parameters (%zu nodes with parameter gradients) "
            "%.2f ms, attn2.to_k,attn2.to_v %zu parameters (%zu nodes) %.2f ms (x%.2f)\n",
            B, P, nodes_full, t_full * 1e3, s.count, nodes_sel, t_sel * 1e3, t_full / t_sel);
    /* back to all: the run is the same as one never selected */
    unet_run_select_params(run, NULL);
    cr_assert(unet_run_grad_params(run) == P);
    param_select_free(&s);
    free(out), free(g);
    free_inputs(&in);
    unet_run_free(run);
    unet_free(net);
}

/* The batch-summed mode (example stride 0, training's) over a selection: the same floats as the
 * full summed gradient's entries (its slot reduction is per tensor). */
Test(param_select, summed_gradients_over_a_selection_are_the_full_ones) {
    UNet *net = tiny_net();
    const ParamLayout *l = unet_layout(net);
    const int B = 5, H = 8, W = 8;
    JtError err;
    UNetRun *run;
    cr_assert(unet_run_create(&run, net, B, H, W, UNET_RUN_TRAIN, &err) == JT_OK, "%s", err.msg);
    Inputs in;
    make_inputs(&in, net, B, 1, 0, 0);
    float *out = malloc((size_t)B * in.D * sizeof(float)), tt[5] = {1, 50, 300, 700, 999};
    unet_forward(net, run, B, out, in.x0, tt, NULL);
    for (size_t i = 0; i < (size_t)B * in.D; i++)
        out[i] = (float)sin(0.9 * (double)i) * 1e-2f;
    const size_t P = unet_num_params(net);
    float *full = calloc(P, sizeof(float));
    unet_backward(net, run, B, full, 0, out, NULL);
    ParamSelect s;
    cr_assert(param_select_init(&s, l, "to_q,norm1,conv_out", "tiny", &err) == JT_OK);
    unet_run_select_params(run, s.compact);
    float *sel = calloc(s.count, sizeof(float));
    unet_backward(net, run, B, sel, 0, out, NULL);
    expect_selected_equal(l, &s, full, sel, 1, "summed, to_q,norm1,conv_out");
    param_select_free(&s);
    free(out), free(full), free(sel);
    free_inputs(&in);
    unet_run_free(run);
    unet_free(net);
}

/* ---- featurize --params ---------------------------------------------------------------------- */

enum { N_ROWS = 6, KF = 4, SF = 2 };

static char g_data[400], g_model[300];

static void featurize_setup(void) {
    char img[300], lab[300];
    snprintf(img, sizeof img, "%s/images.npy", test_tmp);
    snprintf(lab, sizeof lab, "%s/labels.npy", test_tmp);
    uint8_t pix[N_ROWS * 64];
    int64_t labels[N_ROWS];
    for (int i = 0; i < N_ROWS * 64; i++)
        pix[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int i = 0; i < N_ROWS; i++)
        labels[i] = i % 3;
    size_t shape[3] = {N_ROWS, 8, 8}, lshape[1] = {N_ROWS};
    JtError err;
    cr_assert(npy_write(img, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(lab, NPY_I64, 1, lshape, labels, &err) == JT_OK, "%s", err.msg);
    snprintf(g_data, sizeof g_data, "npy:%s,%s", img, lab);
    snprintf(g_model, sizeof g_model, "%s/m0", test_tmp);
    UNet *net = tiny_net();
    cr_assert(test_save_unet(net, g_model, &err) == JT_OK, "%s", err.msg);
    unet_free(net);
}

static void load_data(Dataset *ds) {
    DatasetSpec spec;
    data_spec_init(&spec);
    JtError err;
    cr_assert(data_spec_set(&spec, "data", g_data, &err) == JT_OK, "%s", err.msg);
    cr_assert(data_load(&spec, ds, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&spec);
}

static int featurize(const char *store, const char *params, size_t stop, JtError *err) {
    static const char *dirs[1];
    dirs[0] = g_model;
    char out[300];
    snprintf(out, sizeof out, "%s/%s", test_tmp, store);
    FeaturizeOptions o;
    featurize_options_default(&o);
    o.model_dirs = dirs;
    o.n_models = 1;
    o.out_dir = out;
    o.k = KF;
    o.S = SF;
    o.batch = 4;
    o.params = params;
    o.stop_after_rows = stop;
    o.quiet = 1;
    int stopped = 0;
    o.stopped = &stopped;
    Dataset ds = {0};
    load_data(&ds);
    int rc = featurize_run(&o, &ds, err);
    data_free(&ds);
    return rc;
}

Test(param_select, featurize_rows_are_the_projection_of_the_selected_gradients) {
    featurize_setup();
    JtError err;
    const char *pats = "to_k,to_v";
    cr_assert(featurize("sel", pats, 0, &err) == JT_OK, "%s", err.msg);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/sel", test_tmp);
    FeatureStore st;
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    cr_assert(st.finalized);
    cr_assert_str_eq(st.grad_params, pats);
    cr_assert(!store_grad_params_all(&st));

    UNet *net;
    cr_assert(test_load_unet(g_model, &net, &err) == JT_OK, "%s", err.msg);
    ParamSelect s;
    cr_assert(param_select_init(&s, unet_layout(net), pats, "m0", &err) == JT_OK);
    cr_assert(st.model_grad_params[0] == s.count && st.model_grad_fingerprints[0] == s.fingerprint);
    cr_assert(st.model_params[0] == unet_num_params(net));

    /* the rows again: the same draws, the selected gradients, the store's projection */
    Dataset ds = {0};
    load_data(&ds);
    const size_t D = 64;
    Inputs in = {.B = N_ROWS, .S = SF, .L = 0, .D = D};
    in.x0 = malloc(N_ROWS * D * sizeof(float));
    in.eps = malloc(N_ROWS * SF * D * sizeof(float));
    in.t = malloc(N_ROWS * SF * sizeof(int));
    size_t rows[N_ROWS];
    for (int i = 0; i < N_ROWS; i++)
        rows[i] = (size_t)i;
    data_batch_draw(&ds, rows, NULL, N_ROWS, 0, 0, 0, in.x0);
    for (int i = 0; i < N_ROWS; i++)
        attrib_draws(0, 0, (uint64_t)i, SF, 1000, -1, D, in.t + i * SF, in.eps + i * SF * D);
    size_t P;
    float *g = engine_grads(net, &in, s.compact, 2, &P);
    cr_assert(P == s.count);
    Projector pr;
    proj_init(&pr, st.proj_kind, st.proj_seed, 0, P, KF);
    float *X = malloc(N_ROWS * KF * sizeof(float)), *Xs = malloc(N_ROWS * KF * sizeof(float));
    proj_apply(&pr, g, N_ROWS, P, X);
    cr_assert(store_read_features(&st, 0, 0, N_ROWS, Xs, &err) == JT_OK, "%s", err.msg);
    /* gradients and projections are batch-invariant (featurize.h): the same floats */
    cr_assert(memcmp(X, Xs, N_ROWS * KF * sizeof(float)) == 0,
              "the stored rows are not the projection of the selected gradients");
    proj_free(&pr);
    store_close(&st);

    /* the manifest says it, in its own words */
    char mp[400];
    snprintf(mp, sizeof mp, "%s/manifest.json", dir);
    FILE *f = fopen(mp, "r");
    cr_assert(f != NULL);
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    cr_assert(strstr(text, "\"gradient_params\":\t\"to_k,to_v\"") != NULL ||
                  strstr(text, "\"gradient_params\": \"to_k,to_v\"") != NULL,
              "%s", text);
    char want[64];
    snprintf(want, sizeof want, "%zu", s.count);
    cr_assert(strstr(text, "\"grad_params\"") != NULL && strstr(text, want) != NULL, "%s", text);
    cr_assert(strstr(text, "\"grad_params_fingerprint\"") != NULL, "%s", text);

    /* an all-parameter store of the same data differs and records "all" */
    cr_assert(featurize("all", NULL, 0, &err) == JT_OK, "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/all", test_tmp);
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    cr_assert_str_eq(st.grad_params, "all");
    cr_assert(st.model_grad_params[0] == unet_num_params(net));
    cr_assert(store_read_features(&st, 0, 0, N_ROWS, Xs, &err) == JT_OK, "%s", err.msg);
    cr_assert(memcmp(X, Xs, N_ROWS * KF * sizeof(float)) != 0);
    store_close(&st);

    param_select_free(&s);
    free(X), free(Xs), free(g);
    free_inputs(&in);
    data_free(&ds);
    unet_free(net);
}

Test(param_select, resume_with_another_selection_is_refused) {
    featurize_setup();
    JtError err;
    cr_assert(featurize("st", "to_k,to_v", 4, &err) == JT_OK, "%s", err.msg);
    cr_assert(featurize("st", "to_k", 0, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "gradient_params is 'to_k,to_v' but --params 'to_k' was given") !=
                  NULL,
              "%s", err.msg);
    cr_assert(featurize("st", NULL, 0, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "gradient_params is 'to_k,to_v' but --params 'all'") != NULL, "%s",
              err.msg);
    /* the same selection spelled with spaces resumes */
    cr_assert(featurize("st", " to_k , to_v", 0, &err) == JT_OK, "%s", err.msg);
    /* an all store refuses a selection */
    cr_assert(featurize("all", NULL, 4, &err) == JT_OK, "%s", err.msg);
    cr_assert(featurize("all", "conv_in", 0, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "gradient_params is 'all' but --params 'conv_in'") != NULL, "%s",
              err.msg);
    /* a pattern that matches nothing: one clear error, nothing created */
    cr_assert(featurize("none", "attn2.to_k", 0, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "'attn2.to_k' matches no parameter of") != NULL, "%s", err.msg);
    char p[400];
    snprintf(p, sizeof p, "%s/none/manifest.json", test_tmp);
    FILE *f = fopen(p, "r");
    cr_assert(f == NULL, "a store was created for a selection that matches nothing");
}

Test(param_select, cli_help_and_a_bad_pattern) {
    featurize_setup();
    char args[1200], err[8192];
    int rc = cli_run("featurize --help", err, sizeof err);
    cr_assert_eq(rc, 0);
    snprintf(args, sizeof args,
             "featurize --models %s --out %s/c --data %s --k 4 --S 1 --params to_q,bogus --quiet",
             g_model, test_tmp, g_data);
    rc = cli_run(args, err, sizeof err);
    cr_assert_eq(rc, 1, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "'bogus' matches no parameter") != NULL, "%s", err);
}

/* A store whose model changed selection under it (the fingerprint of the selected names) is
 * refused by score, naming the field; a manifest without gradient_params reads as "all". */
Test(param_select, store_field_checks) {
    featurize_setup();
    JtError err;
    cr_assert(featurize("st", "to_k,to_v", 0, &err) == JT_OK, "%s", err.msg);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/st", test_tmp);
    FeatureStore st;
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    cr_assert(store_check_grad_params(&st, 0, st.model_grad_params[0],
                                      st.model_grad_fingerprints[0], &err) == JT_OK);
    cr_assert(store_check_grad_params(&st, 0, st.model_grad_params[0] + 1,
                                      st.model_grad_fingerprints[0], &err) == JT_ERR);
    cr_assert(strstr(err.msg, "models[0].grad_params") != NULL, "%s", err.msg);
    cr_assert(store_check_grad_params(&st, 0, st.model_grad_params[0],
                                      st.model_grad_fingerprints[0] ^ 1, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "grad_params_fingerprint") != NULL, "%s", err.msg);
    store_close(&st);
    /* an older store: no gradient_params field */
    cr_assert(featurize("old", NULL, 0, &err) == JT_OK, "%s", err.msg);
    char mp[400];
    snprintf(mp, sizeof mp, "%s/old/manifest.json", test_tmp);
    FILE *f = fopen(mp, "r");
    char text[8192], out[8192];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    char *at = strstr(text, "\"gradient_params\"");
    cr_assert(at != NULL);
    char *end = strchr(at, ',');
    cr_assert(end != NULL);
    snprintf(out, sizeof out, "%.*s%s", (int)(at - text), text, end + 1);
    f = fopen(mp, "w");
    fputs(out, f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/old", test_tmp);
    cr_assert(store_open(&st, dir, &err) == JT_OK, "%s", err.msg);
    cr_assert_str_eq(st.grad_params, "all");
    cr_assert(store_grad_params_all(&st) && st.model_grad_params[0] == st.model_params[0]);
    store_close(&st);
    cr_assert(featurize("old", NULL, 0, &err) == JT_OK, "an older store resumes as all: %s",
              err.msg);
}

/* ---- score with the store's selection ---------------------------------------------------------
 */

enum { N_COPIES = 3 };

/* A trajectory of m0 whose final samples are training rows 0..N_COPIES-1. */
static void write_copy_trajectory(const char *path) {
    Dataset ds = {0};
    load_data(&ds);
    test_write_copy_trajectory(path, g_model, &ds, N_COPIES);
    data_free(&ds);
}

/* With shared draws and R = S, a target that is training row j projects to the stored x_j, so
 * tau[i][j] = x_i^T A x_j: score's target gradients are over the store's selection (with all
 * parameters they would project to other vectors). A store whose model selects other names under
 * the same patterns is refused naming the field. */
Test(param_select, score_uses_the_store_selection) {
    featurize_setup();
    char args[1600], err[8192];
    snprintf(args, sizeof args,
             "featurize --models %s --out %s/st --data %s --k %d --S %d --draws shared "
             "--params to_k,to_v --auto-ridge --quiet",
             g_model, test_tmp, g_data, KF, SF);
    int rc = cli_run(args, err, sizeof err);
    cr_assert_eq(rc, 0, "featurize: exit %d: %s", rc, err);
    char traj[300];
    snprintf(traj, sizeof traj, "%s/copies.safetensors", test_tmp);
    write_copy_trajectory(traj);
    snprintf(args, sizeof args,
             "score --store %s/st --trajectory %s --out %s/sc --method trak --R %d --seed 0 "
             "--quiet",
             test_tmp, traj, test_tmp, SF);
    rc = cli_run(args, err, sizeof err);
    cr_assert_eq(rc, 0, "score: exit %d: %s", rc, err);
    char path[400];
    snprintf(path, sizeof path, "%s/sc/scores_final.npy", test_tmp);
    NpyHeader h;
    void *data;
    JtError e;
    cr_assert(npy_read_as(path, NPY_F32, &h, &data, &e) == JT_OK, "%s", e.msg);
    cr_assert(h.ndim == 2 && h.shape[0] == N_ROWS && h.shape[1] == N_COPIES);
    const float *got = data;
    FeatureStore st;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/st", test_tmp);
    cr_assert(store_open(&st, dir, &e) == JT_OK, "%s", e.msg);
    float X[N_ROWS * KF], A[KF * KF];
    cr_assert(store_read_features(&st, 0, 0, N_ROWS, X, &e) == JT_OK, "%s", e.msg);
    cr_assert(store_read_kernel(&st, 0, A, &e) == JT_OK, "%s", e.msg);
    store_close(&st);
    double amax = 0, worst = 0;
    for (int i = 0; i < N_ROWS; i++)
        for (int j = 0; j < N_COPIES; j++) {
            double s = 0;
            for (int a = 0; a < KF; a++)
                for (int b = 0; b < KF; b++)
                    s += (double)X[i * KF + a] * A[a * KF + b] * X[j * KF + b];
            amax = fmax(amax, fabs(s));
            worst = fmax(worst, fabs(s - got[i * N_COPIES + j]));
        }
    /* float32 projections and kernel products (as test_featurize's copies check): 1e-4 of the
     * largest score; gradients over all parameters would give unrelated scores */
    cr_assert(amax > 0 && worst <= 1e-4 * amax, "scores off by %g of %g", worst, amax);
    free(data);

    /* the manifest's fingerprint of the selected names no longer matches the model's */
    char mp[400], text[8192];
    snprintf(mp, sizeof mp, "%s/st/manifest.json", test_tmp);
    FILE *f = fopen(mp, "r");
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    char *at = strstr(text, "\"grad_params_fingerprint\"");
    cr_assert(at != NULL);
    char *q = strchr(at + 26, '"'); /* the value's opening quote */
    cr_assert(q != NULL);
    q[1] = q[1] == '0' ? '1' : '0';
    f = fopen(mp, "w");
    fputs(text, f);
    fclose(f);
    snprintf(args, sizeof args,
             "score --store %s/st --trajectory %s --out %s/sc2 --method trak --R %d --seed 0 "
             "--quiet",
             test_tmp, traj, test_tmp, SF);
    rc = cli_run(args, err, sizeof err);
    cr_assert_eq(rc, 1, "score: exit %d: %s", rc, err);
    cr_assert(strstr(err, "grad_params_fingerprint differs") != NULL, "%s", err);
}
