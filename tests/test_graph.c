/* test_graph.c: the network executor (nn/graph.h) on a tiny hand-built graph with two inputs (an
 * image and class labels) and two outputs: forward-only and training runs give the same outputs
 * bit for bit and the forward-only run holds no gradient arena; backward matches finite
 * differences for the input and every parameter; per-example gradients equal single-example
 * passes and sum to the batch gradient; a NULL dout is a zero dout; skipping the input gradient
 * leaves the parameter gradients alone; results do not depend on the thread count; misuse
 * (backward on a forward-only run, an input not set) aborts. Also the shared blocks' parameter
 * registration (nn/blocks.h). */
#include "core/layout.h"
#include "core/rng.h"
#include "helpers/numcheck.h"
#include "nn/blocks.h"
#include "nn/graph.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

enum { CI = 2, CO = 4, HH = 4, WW = 5, K = 3, BMAX = 3 };

typedef struct {
    ParamLayout l;
    float *params;
    Graph g;
} Tiny;

/* out0 = silu(groupnorm(conv3x3(x) + emb[label])), 2 groups; out1 = emb[label] (CO,1,1) */
static void tiny_init(Tiny *t) {
    layout_init(&t->l);
    block_params_conv2d(&t->l, "conv", CO, CI, 3);
    block_params_embedding(&t->l, "emb", K, CO);
    block_params_norm(&t->l, "norm", CO);
    t->params = xmalloc(t->l.total * sizeof(float));
    layout_init_params(&t->l, t->params, 5);
    /* move the norm off its identity init so that its gradients are not special */
    const LayoutEntry *gw = &t->l.entries[layout_find(&t->l, "norm.weight")];
    for (size_t k = 0; k < 2 * (size_t)CO; k++)
        t->params[gw->offset + k] += 0.1f * (float)k - 0.3f;

    graph_init(&t->g, &t->l);
    int x = graph_input(&t->g, GRAPH_INPUT_IMAGE, CI, HH, WW);
    int h = graph_conv(&t->g, x, CO, 3, 1, CONV_PAD_SAME, "conv");
    int v = graph_embedding(&t->g, K, CO, "emb.weight");
    int y = graph_add_chvec(&t->g, h, v);
    int z = graph_groupnorm_silu(&t->g, y, 2, 1e-5f, "norm");
    cr_assert_eq(graph_output(&t->g, z), 0);
    cr_assert_eq(graph_output(&t->g, v), 1);
}

static void tiny_free(Tiny *t) {
    graph_free(&t->g);
    layout_free(&t->l);
    free(t->params);
}

static const size_t NX = (size_t)CI * HH * WW, NY = (size_t)CO * HH * WW;
static const int labels[BMAX] = {2, 0, 2};

static void inputs(float *x, float *dy0, float *dy1) {
    rng_fill_normal(x, BMAX * NX, 11, 0, 0);
    rng_fill_normal(dy0, BMAX * NY, 11, 1, 0);
    rng_fill_normal(dy1, BMAX * (size_t)CO, 11, 2, 0);
}

static GraphRun *run_new(const Tiny *t, int B, GraphRunMode mode) {
    GraphRun *r;
    JtError err;
    cr_assert(graph_run_create(&r, &t->g, B, mode, &err) == JT_OK, "%s", err.msg);
    return r;
}

static void forward(GraphRun *r, const Tiny *t, int B, const float *x, const int *lab) {
    graph_set_input(r, GRAPH_INPUT_IMAGE, B, x);
    graph_set_input(r, GRAPH_INPUT_LABELS, B, lab);
    graph_forward(r, t->params, B);
}

/* loss = sum(dy0 * out0) + sum(dy1 * out1), in double */
static double loss(GraphRun *r, const Tiny *t, int B, const float *x, const float *dy0,
                   const float *dy1) {
    float y0[BMAX * 80], y1[BMAX * CO];
    forward(r, t, B, x, labels);
    graph_get_output(r, 0, B, y0);
    graph_get_output(r, 1, B, y1);
    double s = 0;
    for (size_t k = 0; k < (size_t)B * NY; k++)
        s += (double)dy0[k] * y0[k];
    for (size_t k = 0; k < (size_t)B * CO; k++)
        s += (double)dy1[k] * y1[k];
    return s;
}

Test(graph, forward_only_equals_training_and_holds_no_gradient_arena) {
    Tiny t;
    tiny_init(&t);
    float x[BMAX * 40], dy0[BMAX * 80], dy1[BMAX * CO];
    inputs(x, dy0, dy1);
    GraphRun *fr = run_new(&t, BMAX, GRAPH_RUN_FORWARD_ONLY),
             *tr = run_new(&t, BMAX, GRAPH_RUN_TRAIN);
    float a0[BMAX * 80], b0[BMAX * 80], a1[BMAX * CO], b1[BMAX * CO];
    forward(fr, &t, BMAX, x, labels);
    forward(tr, &t, BMAX, x, labels);
    graph_get_output(fr, 0, BMAX, a0);
    graph_get_output(tr, 0, BMAX, b0);
    graph_get_output(fr, 1, BMAX, a1);
    graph_get_output(tr, 1, BMAX, b1);
    cr_expect(memcmp(a0, b0, sizeof a0) == 0, "output 0 differs between the run modes");
    cr_expect(memcmp(a1, b1, sizeof a1) == 0, "output 1 differs between the run modes");
    /* out1 is the embedding row: a check that the labels input reached the op */
    const float *emb = t.params + t.l.entries[layout_find(&t.l, "emb.weight")].offset;
    for (int b = 0; b < BMAX; b++)
        cr_expect(memcmp(a1 + b * CO, emb + labels[b] * CO, CO * sizeof(float)) == 0, "row %d", b);
    size_t fb = graph_run_bytes(fr), tb = graph_run_bytes(tr);
    /* the training run also holds the gradient arena (as large as the activations) and the
     * gradient-slot scratch */
    cr_expect(tb >= fb + BMAX * t.g.act_floats * sizeof(float), "forward-only %zu, training %zu",
              fb, tb);
    graph_run_free(fr);
    graph_run_free(tr);
    tiny_free(&t);
}

Test(graph, backward_matches_finite_differences) {
    Tiny t;
    tiny_init(&t);
    float x[BMAX * 40], dy0[BMAX * 80], dy1[BMAX * CO], dx[BMAX * 40];
    inputs(x, dy0, dy1);
    GraphRun *r = run_new(&t, BMAX, GRAPH_RUN_TRAIN);
    float *g = xcalloc(t.l.total, sizeof(float));
    forward(r, &t, BMAX, x, labels);
    float *dinputs[GRAPH_INPUT_KINDS] = {0};
    dinputs[GRAPH_INPUT_IMAGE] = dx;
    const float *douts[2] = {dy0, dy1};
    graph_backward(r, t.params, BMAX, g, 0, douts, dinputs);

    /* central differences in float32 with a double-accumulated loss: step 1e-2 on O(1) values
     * leaves a truncation error ~1e-4 and a rounding error ~1e-7 |loss| / 1e-2 ~ 1e-4, so 3e-3
     * absolute plus 2% catches a missing term or a wrong factor, not rounding */
    const float h = 1e-2f;
    size_t n = t.l.total;
    double *fd = xmalloc((n > BMAX * NX ? n : BMAX * NX) * sizeof(double));
    double *an = xmalloc((n > BMAX * NX ? n : BMAX * NX) * sizeof(double));
    for (size_t k = 0; k < BMAX * NX; k++) {
        float s = x[k];
        x[k] = s + h;
        double lp = loss(r, &t, BMAX, x, dy0, dy1);
        x[k] = s - h;
        double lm = loss(r, &t, BMAX, x, dy0, dy1);
        x[k] = s;
        fd[k] = (lp - lm) / (2.0 * h);
        an[k] = dx[k];
    }
    expect_close_d("d loss / d image", an, fd, BMAX * NX, 3e-3, 2e-2);
    for (size_t k = 0; k < n; k++) {
        float s = t.params[k];
        t.params[k] = s + h;
        double lp = loss(r, &t, BMAX, x, dy0, dy1);
        t.params[k] = s - h;
        double lm = loss(r, &t, BMAX, x, dy0, dy1);
        t.params[k] = s;
        fd[k] = (lp - lm) / (2.0 * h);
        an[k] = g[k];
    }
    expect_close_d("d loss / d params", an, fd, n, 3e-3, 2e-2);
    /* label 1 is unused: its embedding row gets exactly zero gradient */
    const size_t eo = t.l.entries[layout_find(&t.l, "emb.weight")].offset;
    for (int c = 0; c < CO; c++)
        cr_expect(g[eo + CO + c] == 0.0f, "unused row has gradient %g", g[eo + CO + c]);
    free(fd);
    free(an);
    free(g);
    graph_run_free(r);
    tiny_free(&t);
}

Test(graph, per_example_gradients_equal_single_passes_and_sum_to_the_batch) {
    Tiny t;
    tiny_init(&t);
    float x[BMAX * 40], dy0[BMAX * 80], dy1[BMAX * CO];
    inputs(x, dy0, dy1);
    const size_t P = t.l.total, stride = P + 7; /* a stride larger than P is allowed */
    GraphRun *r = run_new(&t, BMAX, GRAPH_RUN_TRAIN), *r1 = run_new(&t, 1, GRAPH_RUN_TRAIN);
    float *pe = xcalloc(BMAX * stride, sizeof(float)), *sum = xcalloc(P, sizeof(float));
    float *one = xcalloc(P, sizeof(float));
    forward(r, &t, BMAX, x, labels);
    const float *douts[2] = {dy0, dy1};
    graph_backward(r, t.params, BMAX, pe, stride, douts, NULL);
    forward(r, &t, BMAX, x, labels);
    graph_backward(r, t.params, BMAX, sum, 0, douts, NULL);
    double *acc = xcalloc(P, sizeof(double)), *sumd = xmalloc(P * sizeof(double));
    for (int b = 0; b < BMAX; b++) {
        memset(one, 0, P * sizeof(float));
        forward(r1, &t, 1, x + b * NX, labels + b);
        const float *d1[2] = {dy0 + b * NY, dy1 + b * CO};
        graph_backward(r1, t.params, 1, one, 0, d1, NULL);
        /* the same products per example; the summed path rounds through its gradient slot */
        expect_close("per-example vs single pass", pe + b * stride, one, P, 1e-6, 1e-5);
        for (size_t k = 0; k < P; k++)
            acc[k] += pe[b * stride + k];
        for (size_t k = P; k < stride; k++)
            cr_assert(pe[b * stride + k] == 0.0f, "padding written at example %d", b);
    }
    for (size_t k = 0; k < P; k++)
        sumd[k] = sum[k];
    /* float sums of 3 terms in different orders */
    expect_close_d("sum of per-example vs summed", sumd, acc, P, 1e-6, 1e-5);
    free(acc), free(sumd), free(pe), free(sum), free(one);
    graph_run_free(r);
    graph_run_free(r1);
    tiny_free(&t);
}

/* A NULL dout is a zero dout, and not asking for the input gradient changes nothing else. */
Test(graph, null_dout_is_zero_and_input_gradient_is_optional) {
    Tiny t;
    tiny_init(&t);
    float x[BMAX * 40], dy0[BMAX * 80], dy1[BMAX * CO], zeros[BMAX * CO] = {0}, dx[BMAX * 40];
    inputs(x, dy0, dy1);
    const size_t P = t.l.total;
    GraphRun *r = run_new(&t, BMAX, GRAPH_RUN_TRAIN);
    float *ga = xcalloc(P, sizeof(float)), *gb = xcalloc(P, sizeof(float));
    float *dinputs[GRAPH_INPUT_KINDS] = {0};
    dinputs[GRAPH_INPUT_IMAGE] = dx;
    forward(r, &t, BMAX, x, labels);
    graph_backward(r, t.params, BMAX, ga, 0, (const float *[]){dy0, NULL}, dinputs);
    forward(r, &t, BMAX, x, labels);
    graph_backward(r, t.params, BMAX, gb, 0, (const float *[]){dy0, zeros}, NULL);
    cr_expect(memcmp(ga, gb, P * sizeof(float)) == 0, "parameter gradients differ");
    graph_run_free(r);
    free(ga), free(gb);
    tiny_free(&t);
}

static void grads_at_threads(const Tiny *t, int threads, float *g, float *y) {
    omp_set_num_threads(threads);
    float x[BMAX * 40], dy0[BMAX * 80], dy1[BMAX * CO];
    inputs(x, dy0, dy1);
    GraphRun *r = run_new(t, BMAX, GRAPH_RUN_TRAIN);
    forward(r, t, BMAX, x, labels);
    graph_get_output(r, 0, BMAX, y);
    graph_backward(r, t->params, BMAX, g, 0, (const float *[]){dy0, dy1}, NULL);
    graph_run_free(r);
}

Test(graph, results_do_not_depend_on_the_thread_count) {
    Tiny t;
    tiny_init(&t);
    const size_t P = t.l.total;
    float *g1 = xcalloc(P, sizeof(float)), *g3 = xcalloc(P, sizeof(float));
    float y1[BMAX * 80], y3[BMAX * 80];
    int saved = omp_get_max_threads();
    grads_at_threads(&t, 1, g1, y1);
    grads_at_threads(&t, 3, g3, y3);
    omp_set_num_threads(saved);
    cr_expect(memcmp(y1, y3, sizeof y1) == 0, "outputs depend on the thread count");
    cr_expect(memcmp(g1, g3, P * sizeof(float)) == 0, "gradients depend on the thread count");
    free(g1), free(g3);
    tiny_free(&t);
}

Test(graph, backward_on_a_forward_only_run_aborts, .signal = SIGABRT) {
    Tiny t;
    tiny_init(&t);
    float x[BMAX * 40], dy0[BMAX * 80], dy1[BMAX * CO];
    inputs(x, dy0, dy1);
    GraphRun *r = run_new(&t, BMAX, GRAPH_RUN_FORWARD_ONLY);
    float *g = xcalloc(t.l.total, sizeof(float));
    forward(r, &t, BMAX, x, labels);
    graph_backward(r, t.params, BMAX, g, 0, (const float *[]){dy0, dy1}, NULL);
}

/* Every forward sets its inputs anew: a stale labels buffer is not silently reused. */
Test(graph, forward_with_an_input_not_set_aborts, .signal = SIGABRT) {
    Tiny t;
    tiny_init(&t);
    float x[BMAX * 40], dy0[BMAX * 80], dy1[BMAX * CO];
    inputs(x, dy0, dy1);
    GraphRun *r = run_new(&t, BMAX, GRAPH_RUN_FORWARD_ONLY);
    forward(r, &t, BMAX, x, labels);
    graph_set_input(r, GRAPH_INPUT_IMAGE, BMAX, x);
    graph_forward(r, t.params, BMAX);
}

/* The shared blocks register diffusers' names in named_parameters() order with torch's inits. */
Test(blocks, registration_names_order_and_init) {
    ParamLayout l;
    layout_init(&l);
    block_resnet2d_params(&l, "r", 8, 16, 32);
    block_attn_params(&l, "a", 16);
    static const char *const want[] = {"r.norm1.weight",         "r.norm1.bias",
                                       "r.conv1.weight",         "r.conv1.bias",
                                       "r.time_emb_proj.weight", "r.time_emb_proj.bias",
                                       "r.norm2.weight",         "r.norm2.bias",
                                       "r.conv2.weight",         "r.conv2.bias",
                                       "r.conv_shortcut.weight", "r.conv_shortcut.bias",
                                       "a.group_norm.weight",    "a.group_norm.bias",
                                       "a.to_q.weight",          "a.to_q.bias",
                                       "a.to_k.weight",          "a.to_k.bias",
                                       "a.to_v.weight",          "a.to_v.bias",
                                       "a.to_out.0.weight",      "a.to_out.0.bias"};
    const int n = (int)(sizeof want / sizeof *want);
    cr_assert_eq(l.count, n);
    for (int i = 0; i < n; i++)
        cr_expect_str_eq(l.entries[i].name, want[i]);
    cr_expect_eq(l.entries[0].init.kind, LAYOUT_INIT_ONES);
    cr_expect_eq(l.entries[1].init.kind, LAYOUT_INIT_ZEROS);
    /* conv1 (16, 8, 3, 3): fan-in 72 for the weight and its bias; time_emb_proj: 32; shortcut 8 */
    cr_expect(l.entries[2].init.kind == LAYOUT_INIT_FAN_IN && l.entries[2].init.fan_in == 72);
    cr_expect(l.entries[3].init.kind == LAYOUT_INIT_FAN_IN && l.entries[3].init.fan_in == 72);
    cr_expect_eq(l.entries[5].init.fan_in, 32);
    cr_expect_eq(l.entries[11].init.fan_in, 8);
    cr_expect_eq(l.entries[21].init.fan_in, 16);
    layout_free(&l);
}
