/* graph.c: see graph.h. Building (tensors, nodes, the op helpers that look parameters up by
 * name), run allocation (activation, gradient and aux arenas for a batch capacity, per-thread and
 * gradient-slot scratch sized by the largest node), the forward pass and the backward pass. */
#include "nn/graph.h"

#include "core/fpenv.h"
#include "core/linalg.h"
#include "core/progress.h"

#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What each input kind is: a tensor in the activation arena, or a side buffer of the run. */
static const struct {
    const char *name;
    int is_tensor;
    size_t elem; /* bytes per value */
} input_kinds[GRAPH_INPUT_KINDS] = {
    [GRAPH_INPUT_IMAGE] = {"image", 1, sizeof(float)},
    [GRAPH_INPUT_TIMESTEP] = {"timestep", 0, sizeof(float)},
    [GRAPH_INPUT_LABELS] = {"labels", 0, sizeof(int)},
    [GRAPH_INPUT_CONTEXT] = {"context", 1, sizeof(float)},
};

void graph_init(Graph *g, const ParamLayout *layout) {
    memset(g, 0, sizeof *g);
    g->layout = layout;
    for (int k = 0; k < GRAPH_INPUT_KINDS; k++)
        g->inputs[k].tensor = -1;
}

void graph_free(Graph *g) {
    free(g->tensors);
    free(g->nodes);
    memset(g, 0, sizeof *g);
}

int graph_tensor(Graph *g, int C, int H, int W) {
    CHECK(C > 0 && H > 0 && W > 0, "tensor of shape (%d, %d, %d)", C, H, W);
    if (g->n_tensors == g->cap_tensors) {
        g->cap_tensors = g->cap_tensors ? 2 * g->cap_tensors : 128;
        g->tensors = xrealloc(g->tensors, (size_t)g->cap_tensors * sizeof *g->tensors);
    }
    Tensor *t = &g->tensors[g->n_tensors];
    t->C = C;
    t->H = H;
    t->W = W;
    t->off = g->act_floats;
    g->act_floats += (size_t)C * H * W;
    return g->n_tensors++;
}

Node *graph_node(Graph *g, NodeKind kind, int in0, int in1, int out) {
    CHECK(in0 < g->n_tensors && in1 < g->n_tensors && out >= 0 && out < g->n_tensors,
          "node %d: tensors %d %d -> %d of %d", (int)kind, in0, in1, out, g->n_tensors);
    if (g->n_nodes == g->cap_nodes) {
        g->cap_nodes = g->cap_nodes ? 2 * g->cap_nodes : 256;
        g->nodes = xrealloc(g->nodes, (size_t)g->cap_nodes * sizeof *g->nodes);
    }
    Node *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->in0 = in0;
    n->in1 = in1;
    n->out = out;
    n->scale = 1.0f;
    return n;
}

size_t graph_param(const Graph *g, const char *fmt, ...) {
    char name[LAYOUT_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int i = layout_find(g->layout, name);
    CHECK(i >= 0, "graph needs parameter %s that the layout lacks", name);
    return g->layout->entries[i].offset;
}

int graph_input(Graph *g, GraphInputKind kind, int C, int H, int W) {
    CHECK(kind >= 0 && kind < GRAPH_INPUT_KINDS, "input kind %d", (int)kind);
    GraphInput *in = &g->inputs[kind];
    CHECK(!in->declared, "input %s declared twice", input_kinds[kind].name);
    in->declared = 1;
    in->per_example = (size_t)C * H * W;
    in->tensor = input_kinds[kind].is_tensor ? graph_tensor(g, C, H, W) : -1;
    return in->tensor;
}

int graph_output(Graph *g, int t) {
    CHECK(t >= 0 && t < g->n_tensors, "output tensor %d of %d", t, g->n_tensors);
    CHECK(g->n_outputs < GRAPH_MAX_OUTPUTS, "more than %d outputs", GRAPH_MAX_OUTPUTS);
    for (int i = 0; i < g->n_outputs; i++)
        CHECK(g->outputs[i] != t, "tensor %d is output %d already", t, i);
    g->outputs[g->n_outputs] = t;
    return g->n_outputs++;
}

/* ---- op helpers ----------------------------------------------------------------------------- */

int graph_conv(Graph *g, int in, int cout, int k, int stride, int pad, const char *prefix) {
    const Tensor *t = &g->tensors[in];
    Conv2dDims d = {1, t->C, cout, t->H, t->W, k, stride, pad};
    int out = graph_tensor(g, cout, conv2d_out_h(&d), conv2d_out_w(&d));
    Node *n = graph_node(g, NODE_CONV, in, -1, out);
    n->w = graph_param(g, "%s.weight", prefix);
    n->b = graph_param(g, "%s.bias", prefix);
    n->k = k;
    n->stride = stride;
    n->pad = pad;
    return out;
}

static int groupnorm_kind(Graph *g, NodeKind kind, int in, int groups, float eps,
                          const char *prefix) {
    const Tensor *t = &g->tensors[in];
    int out = graph_tensor(g, t->C, t->H, t->W);
    Node *n = graph_node(g, kind, in, -1, out);
    n->w = graph_param(g, "%s.weight", prefix);
    n->b = graph_param(g, "%s.bias", prefix);
    n->groups = groups;
    n->eps = eps;
    n->aux = g->aux_floats;
    g->aux_floats += 2 * (size_t)groups; /* mean, rstd */
    return out;
}

int graph_groupnorm(Graph *g, int in, int groups, float eps, const char *prefix) {
    return groupnorm_kind(g, NODE_GROUPNORM, in, groups, eps, prefix);
}

/* silu(groupnorm(in)): for a group norm whose output is never needed on its own */
int graph_groupnorm_silu(Graph *g, int in, int groups, float eps, const char *prefix) {
    return groupnorm_kind(g, NODE_GN_SILU, in, groups, eps, prefix);
}

int graph_linear(Graph *g, int in, int cout, const char *prefix) {
    const Tensor *t = &g->tensors[in];
    CHECK(t->H == 1 && t->W == 1, "linear on a (%d, %d, %d) tensor", t->C, t->H, t->W);
    int out = graph_tensor(g, cout, 1, 1);
    Node *n = graph_node(g, NODE_LINEAR, in, -1, out);
    n->w = graph_param(g, "%s.weight", prefix);
    n->b = graph_param(g, "%s.bias", prefix);
    return out;
}

int graph_unary(Graph *g, NodeKind kind, int in) {
    CHECK(kind == NODE_CENTER || kind == NODE_SILU || kind == NODE_GELU ||
              kind == NODE_QUICK_GELU || kind == NODE_UPSAMPLE,
          "node kind %d is not unary", (int)kind);
    const Tensor *t = &g->tensors[in];
    int f = kind == NODE_UPSAMPLE ? 2 : 1;
    int out = graph_tensor(g, t->C, f * t->H, f * t->W);
    graph_node(g, kind, in, -1, out);
    return out;
}

int graph_add(Graph *g, int a, int b, float scale) {
    const Tensor *ta = &g->tensors[a], *tb = &g->tensors[b];
    CHECK(ta->C == tb->C && ta->H == tb->H && ta->W == tb->W, "add of (%d,%d,%d) and (%d,%d,%d)",
          ta->C, ta->H, ta->W, tb->C, tb->H, tb->W);
    int out = graph_tensor(g, ta->C, ta->H, ta->W);
    graph_node(g, NODE_ADD, a, b, out)->scale = scale;
    return out;
}

int graph_add_chvec(Graph *g, int x, int v) {
    const Tensor *tx = &g->tensors[x], *tv = &g->tensors[v];
    CHECK(tv->C == tx->C && tv->H == 1 && tv->W == 1, "channel vector (%d,%d,%d) for %d channels",
          tv->C, tv->H, tv->W, tx->C);
    int out = graph_tensor(g, tx->C, tx->H, tx->W);
    graph_node(g, NODE_ADD_CHVEC, x, v, out);
    return out;
}

int graph_concat(Graph *g, int a, int b) {
    const Tensor *ta = &g->tensors[a], *tb = &g->tensors[b];
    CHECK(ta->H == tb->H && ta->W == tb->W, "concat of %dx%d and %dx%d", ta->H, ta->W, tb->H,
          tb->W);
    int out = graph_tensor(g, ta->C + tb->C, ta->H, ta->W);
    graph_node(g, NODE_CONCAT, a, b, out);
    return out;
}

int graph_attention(Graph *g, int xn, int residual, int heads, float scale, const char *prefix) {
    static const char *const leaves[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    const Tensor *t = &g->tensors[xn];
    const int C = t->C, H = t->H, W = t->W;
    CHECK(heads >= 1 && C % heads == 0, "%d heads for %d channels", heads, C);
    int out = graph_tensor(g, C, H, W);
    Node *n = graph_node(g, NODE_ATTN, xn, residual, out);
    for (int i = 0; i < 4; i++) {
        n->p[2 * i] = graph_param(g, "%s.%s.weight", prefix, leaves[i]);
        n->p[2 * i + 1] = graph_param(g, "%s.%s.bias", prefix, leaves[i]);
    }
    n->heads = heads;
    n->scale = scale;
    AttnDims d = {1, C, H * W, heads, scale};
    n->aux = g->aux_floats;
    g->aux_floats += attention_saved_floats(&d);
    return out;
}

int graph_layernorm(Graph *g, int in, float eps, const char *prefix) {
    const Tensor t = g->tensors[in]; /* a copy: graph_tensor may move the array */
    int out = graph_tensor(g, t.C, t.H, t.W);
    Node *n = graph_node(g, NODE_LAYERNORM, in, -1, out);
    n->w = graph_param(g, "%s.weight", prefix);
    n->b = graph_param(g, "%s.bias", prefix);
    n->eps = eps;
    n->aux = g->aux_floats;
    g->aux_floats += 2 * (size_t)t.H * t.W; /* mean, rstd of every token */
    return out;
}

int graph_geglu(Graph *g, int in) {
    const Tensor *t = &g->tensors[in];
    CHECK(t->C % 2 == 0, "geglu of %d channels (an even count is needed)", t->C);
    int out = graph_tensor(g, t->C / 2, t->H, t->W);
    graph_node(g, NODE_GEGLU, in, -1, out);
    return out;
}

/* The layout entry of parameter `name`, CHECKed to hold `numel` floats. */
static const LayoutEntry *param_entry(const Graph *g, const char *name, size_t numel) {
    int i = layout_find(g->layout, name);
    CHECK(i >= 0, "graph needs parameter %s that the layout lacks", name);
    const LayoutEntry *e = &g->layout->entries[i];
    CHECK(numel == 0 || e->numel == numel, "parameter %s has %zu values, the graph needs %zu", name,
          e->numel, numel);
    return e;
}

/* A token-wise Linear is a 1x1 convolution: (cout, cin) and (cout, cin, 1, 1) are the same data. */
int graph_token_linear(Graph *g, int in, int cout, const char *prefix) {
    const Tensor *t = &g->tensors[in];
    char name[LAYOUT_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const LayoutEntry *e = param_entry(g, name, (size_t)cout * t->C);
    CHECK((e->ndim == 2 || (e->ndim == 4 && e->shape[2] == 1 && e->shape[3] == 1)) &&
              e->shape[0] == cout && e->shape[1] == t->C,
          "token linear %s: weight of %d dims is not (%d, %d) or (%d, %d, 1, 1)", name, e->ndim,
          cout, t->C, cout, t->C);
    int out = graph_tensor(g, cout, t->H, t->W);
    Node *n = graph_node(g, NODE_CONV, in, -1, out);
    n->w = e->offset;
    snprintf(name, sizeof name, "%s.bias", prefix);
    n->b = param_entry(g, name, (size_t)cout)->offset;
    n->k = 1;
    n->stride = 1;
    n->pad = CONV_PAD_SAME;
    return out;
}

int graph_mha(Graph *g, int x, int ctx, int heads, int causal, const char *prefix,
              const char *const names[4]) {
    const int self = ctx < 0 || ctx == x;
    if (self) ctx = x;
    const Tensor *tx = &g->tensors[x], *tc = &g->tensors[ctx];
    const int Cq = tx->C, Ckv = tc->C, N = tx->H * tx->W, L = tc->H * tc->W;
    char name[LAYOUT_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s.weight", prefix, names[3]);
    const LayoutEntry *eo = param_entry(g, name, 0);
    CHECK(eo->ndim == 2 && eo->shape[0] == eo->shape[1],
          "attention %s: out projection %s is not a square matrix", prefix, name);
    const int C = eo->shape[0];
    CHECK(heads >= 1 && C % heads == 0, "attention %s: %d heads for %d channels", prefix, heads, C);
    CHECK(!causal || N == L, "attention %s: causal with %d queries and %d keys", prefix, N, L);
    const int cin[4] = {Cq, Ckv, Ckv, C};
    size_t off[8];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s.weight", prefix, names[i]);
        const LayoutEntry *e = param_entry(g, name, (size_t)C * cin[i]);
        CHECK(e->ndim == 2 && e->shape[0] == C && e->shape[1] == cin[i],
              "attention %s: %s is not (%d, %d)", prefix, name, C, cin[i]);
        off[2 * i] = e->offset;
        snprintf(name, sizeof name, "%s.%s.bias", prefix, names[i]);
        off[2 * i + 1] = layout_find(g->layout, name) >= 0 ? param_entry(g, name, (size_t)C)->offset
                                                           : GRAPH_NO_PARAM;
    }
    int out = graph_tensor(g, C, tx->H, tx->W);
    Node *n = graph_node(g, NODE_MHA, x, ctx, out);
    memcpy(n->p, off, sizeof off);
    n->heads = heads;
    n->causal = causal ? 1 : 0;
    MhaDims d = {1, Cq, Ckv, C, N, L, heads, n->causal};
    n->aux = g->aux_floats;
    g->aux_floats += mha_saved_floats(&d);
    return out;
}

int graph_timestep(Graph *g, int dim, int flip_sin_to_cos, float freq_shift) {
    if (!g->inputs[GRAPH_INPUT_TIMESTEP].declared) graph_input(g, GRAPH_INPUT_TIMESTEP, 1, 1, 1);
    int out = graph_tensor(g, dim, 1, 1);
    Node *n = graph_node(g, NODE_TIMESTEP, -1, -1, out);
    n->flip = flip_sin_to_cos;
    n->shift = freq_shift;
    return out;
}

int graph_embedding(Graph *g, int K, int T, const char *name) {
    if (!g->inputs[GRAPH_INPUT_LABELS].declared) graph_input(g, GRAPH_INPUT_LABELS, 1, 1, 1);
    int out = graph_tensor(g, T, 1, 1);
    Node *n = graph_node(g, NODE_EMBED, -1, -1, out);
    n->w = graph_param(g, "%s", name);
    n->k = K;
    return out;
}

/* ---- runs ----------------------------------------------------------------------------------- */

struct GraphRun {
    const Graph *g;
    int cap_B;
    GraphRunMode mode;
    float *act, *grad, *aux;       /* (cap_B * act_floats) x 2, (cap_B * aux_floats) */
    void *side[GRAPH_INPUT_KINDS]; /* side inputs: (cap_B * per_example) values */
    int set_B[GRAPH_INPUT_KINDS];  /* examples set since the last forward */
    OpCtx ctx;
    float *thread_buf, *grad_buf;
    int profile;
    double conv_s, other_s;
    /* graph_run_select_params: per layout entry its compact offset or GRAPH_NO_PARAM (NULL: every
     * parameter, at its slab offset), and the floats of one compact gradient slab */
    size_t *compact;
    size_t grad_floats;
    size_t param_grad_nodes; /* nodes of the last backward given a parameter gradient to compute */
};

/* Floats of parameters one node owns (for the batch-summed gradient buffer). */
static size_t node_param_floats(const Graph *g, const Node *n) {
    const Tensor *in = n->in0 >= 0 ? &g->tensors[n->in0] : NULL;
    const Tensor *out = &g->tensors[n->out];
    switch (n->kind) {
    case NODE_CONV:
        return (size_t)out->C * in->C * n->k * n->k + out->C;
    case NODE_LINEAR:
        return (size_t)out->C * in->C + out->C;
    case NODE_GROUPNORM: /* fall through */
    case NODE_GN_SILU:
        return 2 * (size_t)in->C;
    case NODE_ATTN:
        return 4 * ((size_t)in->C * in->C + in->C);
    case NODE_LAYERNORM:
        return 2 * (size_t)in->C;
    case NODE_MHA: { /* at most: every bias present */
        const size_t C = (size_t)out->C, Cq = (size_t)in->C, Ckv = (size_t)g->tensors[n->in1].C;
        return C * (Cq + 2 * Ckv + C) + 4 * C;
    }
    case NODE_EMBED:
        return (size_t)n->k * out->C;
    default:
        return 0;
    }
}

static MhaDims mha_dims(const Graph *g, const Node *n, int B) {
    const Tensor *tx = &g->tensors[n->in0], *tc = &g->tensors[n->in1];
    const int C = g->tensors[n->out].C;
    MhaDims d = {B, tx->C, tc->C, C, tx->H * tx->W, tc->H * tc->W, n->heads, n->causal};
    return d;
}

/* The eight parameter pointers of an attention node in the slab P (NULL for a missing bias). */
static void mha_params(const Node *n, const float *P, const float *w[8]) {
    for (int i = 0; i < 8; i++)
        w[i] = n->p[i] == GRAPH_NO_PARAM ? NULL : P + n->p[i];
}

static size_t node_scratch_floats(const Graph *g, const Node *n) {
    const Tensor *in = n->in0 >= 0 ? &g->tensors[n->in0] : NULL;
    const Tensor *out = &g->tensors[n->out];
    if (n->kind == NODE_CONV) {
        Conv2dDims d = {1, in->C, out->C, in->H, in->W, n->k, n->stride, n->pad};
        return conv2d_scratch_floats(&d);
    }
    if (n->kind == NODE_ATTN) {
        AttnDims d = {1, in->C, in->H * in->W, n->heads, n->scale};
        return attention_scratch_floats(&d);
    }
    if (n->kind == NODE_GN_SILU) {
        GroupNormDims d = {1, in->C, in->H * in->W, n->groups, n->eps};
        return groupnorm_silu_scratch_floats(&d);
    }
    if (n->kind == NODE_MHA) {
        MhaDims d = mha_dims(g, n, 1);
        return mha_scratch_floats(&d);
    }
    return 0;
}

int graph_run_create(GraphRun **out, const Graph *g, int B, GraphRunMode mode, JtError *err) {
    *out = NULL;
    CHECK(mode == GRAPH_RUN_TRAIN || mode == GRAPH_RUN_FORWARD_ONLY, "run mode %d", (int)mode);
    CHECK(g->n_outputs > 0, "graph without outputs");
    if (B < 1) return jt_fail(err, "batch size %d: must be at least 1", B);
    size_t scratch = 0, gradbuf = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        size_t s = node_scratch_floats(g, &g->nodes[i]);
        size_t p = node_param_floats(g, &g->nodes[i]);
        if (s > scratch) scratch = s;
        if (p > gradbuf) gradbuf = p;
    }
    /* Every arena, estimated with saturating arithmetic and checked against this machine
     * before any of it is allocated (graph_run_bytes is the same sum once allocated). */
    const int train = mode == GRAPH_RUN_TRAIN;
    const int nthreads = omp_get_max_threads();
    const size_t act = jt_sat_mul(g->act_floats, (size_t)B);
    const size_t aux = jt_sat_mul(g->aux_floats, (size_t)B);
    const size_t gslots = train ? grad_slots_floats(B, gradbuf) : 0;
    size_t floats = jt_sat_mul(act, train ? 2 : 1);
    floats = jt_sat_add(floats, aux);
    floats = jt_sat_add(floats, jt_sat_mul(scratch, (size_t)nthreads));
    floats = jt_sat_add(floats, gslots);
    size_t bytes = jt_sat_mul(floats, sizeof(float));
    for (int k = 0; k < GRAPH_INPUT_KINDS; k++)
        if (g->inputs[k].declared && !input_kinds[k].is_tensor)
            bytes = jt_sat_add(bytes, jt_sat_mul(jt_sat_mul((size_t)B, g->inputs[k].per_example),
                                                 input_kinds[k].elem));
    if (jt_check_memory(bytes,
                        train ? "the activation, gradient and scratch memory"
                              : "the activation and scratch memory",
                        err) != JT_OK)
        return JT_ERR;
    GraphRun *r = xcalloc(1, sizeof *r);
    r->g = g;
    r->cap_B = B;
    r->mode = mode;
    r->act = xmalloc(act * sizeof(float));
    r->grad = train ? xmalloc(act * sizeof(float)) : NULL;
    r->aux = xmalloc((aux ? aux : 1) * sizeof(float));
    for (int k = 0; k < GRAPH_INPUT_KINDS; k++)
        if (g->inputs[k].declared && !input_kinds[k].is_tensor)
            r->side[k] = xcalloc((size_t)B * g->inputs[k].per_example, input_kinds[k].elem);
    r->ctx.nthreads = nthreads;
    r->ctx.thread_floats = scratch;
    r->thread_buf = xmalloc((scratch * (size_t)r->ctx.nthreads + 1) * sizeof(float));
    r->ctx.thread_buf = r->thread_buf;
    /* at most NN_GRAD_SLOTS copies of the largest node's parameter gradients */
    gradbuf = gslots;
    r->grad_buf = train ? xmalloc((gradbuf + 1) * sizeof(float)) : NULL;
    r->ctx.grad_buf = r->grad_buf;
    r->ctx.grad_floats = gradbuf;
    r->grad_floats = g->layout->total;
    la_blas_single_threaded(); /* ops parallelise over the batch themselves */
    fpenv_flush_denormals();
    *out = r;
    return JT_OK;
}

void graph_run_free(GraphRun *r) {
    if (!r) return;
    free(r->act);
    free(r->grad);
    free(r->aux);
    for (int k = 0; k < GRAPH_INPUT_KINDS; k++)
        free(r->side[k]);
    free(r->thread_buf);
    free(r->grad_buf);
    free(r->compact);
    free(r);
}

size_t graph_compact_offsets(const ParamLayout *l, const unsigned char *keep, size_t *compact) {
    size_t off = 0;
    for (int i = 0; i < l->count; i++) {
        compact[i] = keep[i] ? off : GRAPH_NO_PARAM;
        if (keep[i]) off += l->entries[i].numel;
    }
    return off;
}

void graph_run_select_params(GraphRun *r, const size_t *compact) {
    const ParamLayout *l = r->g->layout;
    free(r->compact);
    r->compact = NULL;
    r->grad_floats = l->total;
    if (!compact) return;
    r->compact = xmalloc(((size_t)l->count + 1) * sizeof *r->compact);
    size_t total = 0;
    for (int i = 0; i < l->count; i++) {
        r->compact[i] = compact[i];
        if (compact[i] == GRAPH_NO_PARAM) continue;
        size_t end;
        CHECK(jt_add_size(compact[i], l->entries[i].numel, &end), "compact offset of %s overflows",
              l->entries[i].name);
        if (end > total) total = end;
    }
    r->grad_floats = total;
}

size_t graph_run_param_grad_nodes(const GraphRun *r) {
    return r->param_grad_nodes;
}

size_t graph_run_grad_floats(const GraphRun *r) {
    return r->grad_floats;
}

/* Where the gradient of the parameter at slab offset `off` (a node's w, b or p[i]) goes: that
 * offset without a selection; with one, its compact offset, or GRAPH_NO_PARAM when it is not
 * selected (or the node has no such parameter). Layout entries are in slab order (layout_add
 * appends), so a binary search finds the entry. */
static size_t grad_offset(const GraphRun *r, size_t off) {
    if (off == GRAPH_NO_PARAM || !r->compact) return off;
    const ParamLayout *l = r->g->layout;
    int lo = 0, hi = l->count - 1;
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (l->entries[mid].offset <= off)
            lo = mid;
        else
            hi = mid - 1;
    }
    CHECK(l->count > 0 && l->entries[lo].offset == off, "no parameter at slab offset %zu", off);
    return r->compact[lo];
}

/* The gradient pointer of that parameter in dparams, NULL when it is not computed. */
static float *param_grad(const GraphRun *r, float *dparams, size_t off) {
    const size_t g = grad_offset(r, off);
    return g == GRAPH_NO_PARAM ? NULL : dparams + g;
}

int graph_run_capacity(const GraphRun *r) {
    return r->cap_B;
}
GraphRunMode graph_run_mode(const GraphRun *r) {
    return r->mode;
}

size_t graph_run_bytes(const GraphRun *r) {
    const Graph *g = r->g;
    size_t B = (size_t)r->cap_B, arenas = r->mode == GRAPH_RUN_TRAIN ? 2 : 1, side = 0;
    for (int k = 0; k < GRAPH_INPUT_KINDS; k++)
        if (r->side[k]) side += B * g->inputs[k].per_example * input_kinds[k].elem;
    return sizeof(float) * (arenas * B * g->act_floats + B * g->aux_floats +
                            r->ctx.thread_floats * (size_t)r->ctx.nthreads + r->ctx.grad_floats) +
           side;
}

void graph_run_profile(GraphRun *r, int on) {
    r->profile = on;
    if (on) r->conv_s = r->other_s = 0.0;
}

void graph_run_profile_seconds(const GraphRun *r, double *conv_s, double *other_s) {
    *conv_s = r->conv_s;
    *other_s = r->other_s;
}

static void profile_add(GraphRun *r, const Node *n, double t0) {
    if (!r->profile) return;
    const double dt = progress_now() - t0;
    if (n->kind == NODE_CONV)
        r->conv_s += dt;
    else
        r->other_s += dt;
}

static size_t numel(const Tensor *t) {
    return (size_t)t->C * t->H * t->W;
}
static float *act(const GraphRun *r, int id) {
    return r->act + (size_t)r->cap_B * r->g->tensors[id].off;
}
static float *grad(const GraphRun *r, int id) {
    return r->grad + (size_t)r->cap_B * r->g->tensors[id].off;
}
static float *aux(const GraphRun *r, const Node *n) {
    return r->aux + (size_t)r->cap_B * n->aux;
}

void graph_set_input(GraphRun *r, GraphInputKind kind, int B, const void *data) {
    CHECK(kind >= 0 && kind < GRAPH_INPUT_KINDS, "input kind %d", (int)kind);
    const GraphInput *in = &r->g->inputs[kind];
    CHECK(in->declared, "the graph has no %s input", input_kinds[kind].name);
    CHECK(B >= 1 && B <= r->cap_B, "batch %d exceeds the run's capacity %d", B, r->cap_B);
    void *dst = input_kinds[kind].is_tensor ? (void *)act(r, in->tensor) : r->side[kind];
    if (kind == GRAPH_INPUT_CONTEXT) {
        /* (B, L, D) token-major in, (B, D, L) channel-major stored */
        const Tensor *t = &r->g->tensors[in->tensor];
        const int D = t->C, L = t->H * t->W;
        const float *src = data;
        float *o = dst;
        for (int b = 0; b < B; b++)
            for (int l = 0; l < L; l++)
                for (int ch = 0; ch < D; ch++)
                    o[((size_t)b * D + ch) * L + l] = src[((size_t)b * L + l) * D + ch];
    } else {
        memcpy(dst, data, (size_t)B * in->per_example * input_kinds[kind].elem);
    }
    r->set_B[kind] = B;
}

void graph_forward(GraphRun *r, const float *P, int B) {
    const Graph *g = r->g;
    CHECK(B >= 1 && B <= r->cap_B, "batch %d exceeds the run's capacity %d", B, r->cap_B);
    for (int k = 0; k < GRAPH_INPUT_KINDS; k++) {
        CHECK(!g->inputs[k].declared || r->set_B[k] >= B,
              "graph_forward of %d examples: input %s set for %d", B, input_kinds[k].name,
              r->set_B[k]);
        r->set_B[k] = 0; /* every forward sets its inputs anew */
    }
    const float *tsteps = r->side[GRAPH_INPUT_TIMESTEP];
    const int *labels = r->side[GRAPH_INPUT_LABELS];

    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        const Tensor *ti = n->in0 >= 0 ? &g->tensors[n->in0] : NULL;
        const Tensor *to = &g->tensors[n->out];
        float *o = act(r, n->out);
        const float *a = n->in0 >= 0 ? act(r, n->in0) : NULL;
        const float *b = n->in1 >= 0 ? act(r, n->in1) : NULL;
        size_t nel = (size_t)B * numel(to);
        const double t0 = r->profile ? progress_now() : 0.0;
        switch (n->kind) {
        case NODE_CENTER:
            for (size_t k = 0; k < nel; k++)
                o[k] = 2.0f * a[k] - 1.0f;
            break;
        case NODE_TIMESTEP:
            timestep_embedding(o, tsteps, B, to->C, n->flip, n->shift);
            break;
        case NODE_EMBED: {
            EmbeddingDims d = {B, n->k, to->C};
            embedding_forward(o, labels, P + n->w, &d);
            break;
        }
        case NODE_LINEAR: {
            LinearDims d = {B, ti->C, to->C};
            linear_forward(o, a, P + n->w, P + n->b, &d, &r->ctx);
            break;
        }
        case NODE_SILU:
            silu_forward(o, a, nel);
            break;
        case NODE_GELU:
            gelu_forward(o, a, nel);
            break;
        case NODE_QUICK_GELU:
            quick_gelu_forward(o, a, nel);
            break;
        case NODE_GEGLU:
            geglu_forward(o, a, B, to->C, to->H * to->W);
            break;
        case NODE_LAYERNORM: {
            LayerNormDims d = {B, ti->C, ti->H * ti->W, n->eps};
            float *mean = aux(r, n), *rstd = mean + (size_t)r->cap_B * d.N;
            layernorm_forward(o, mean, rstd, a, P + n->w, P + n->b, &d, &r->ctx);
            break;
        }
        case NODE_MHA: {
            MhaDims d = mha_dims(g, n, B);
            const float *w[8];
            mha_params(n, P, w);
            mha_forward(o, aux(r, n), a, b, w, &d, &r->ctx);
            break;
        }
        case NODE_CONV: {
            Conv2dDims d = {B, ti->C, to->C, ti->H, ti->W, n->k, n->stride, n->pad};
            conv2d_forward(o, a, P + n->w, P + n->b, &d, &r->ctx);
            break;
        }
        case NODE_GROUPNORM:
        case NODE_GN_SILU: {
            GroupNormDims d = {B, ti->C, ti->H * ti->W, n->groups, n->eps};
            float *mean = aux(r, n), *rstd = mean + (size_t)r->cap_B * n->groups;
            if (n->kind == NODE_GN_SILU)
                groupnorm_silu_forward(o, mean, rstd, a, P + n->w, P + n->b, &d, &r->ctx);
            else
                groupnorm_forward(o, mean, rstd, a, P + n->w, P + n->b, &d, &r->ctx);
            break;
        }
        case NODE_ADD_CHVEC:
            add_channel_vec_forward(o, a, b, B, to->C, to->H * to->W);
            break;
        case NODE_ADD:
            add_scaled_forward(o, a, b, n->scale, nel);
            break;
        case NODE_ATTN: {
            AttnDims d = {B, ti->C, ti->H * ti->W, n->heads, n->scale};
            const size_t *p = n->p;
            attention_forward(o, aux(r, n), a, b, P + p[0], P + p[1], P + p[2], P + p[3], P + p[4],
                              P + p[5], P + p[6], P + p[7], &d, &r->ctx);
            break;
        }
        case NODE_UPSAMPLE:
            upsample2x_forward(o, a, B, ti->C, ti->H, ti->W);
            break;
        case NODE_CONCAT: {
            const Tensor *t1 = &g->tensors[n->in1];
            concat_forward(o, a, b, B, ti->C, t1->C, ti->H * ti->W);
            break;
        }
        }
        profile_add(r, n, t0);
    }
}

void graph_get_output(const GraphRun *r, int i, int B, float *dst) {
    const Graph *g = r->g;
    CHECK(i >= 0 && i < g->n_outputs, "output %d of %d", i, g->n_outputs);
    CHECK(B >= 1 && B <= r->cap_B, "batch %d exceeds the run's capacity %d", B, r->cap_B);
    memcpy(dst, act(r, g->outputs[i]),
           sizeof(float) * (size_t)B * numel(&g->tensors[g->outputs[i]]));
}

/* Does node n have a parameter whose gradient this run computes? */
static int node_has_param_grad(const GraphRun *r, const Node *n) {
    switch (n->kind) {
    case NODE_EMBED:
        return grad_offset(r, n->w) != GRAPH_NO_PARAM;
    case NODE_LINEAR:
    case NODE_CONV:
    case NODE_GROUPNORM:
    case NODE_GN_SILU:
    case NODE_LAYERNORM:
        return grad_offset(r, n->w) != GRAPH_NO_PARAM || grad_offset(r, n->b) != GRAPH_NO_PARAM;
    case NODE_ATTN:
    case NODE_MHA:
        for (int k = 0; k < 8; k++)
            if (grad_offset(r, n->p[k]) != GRAPH_NO_PARAM) return 1;
        return 0;
    default:
        return 0;
    }
}

/* Is tensor t an input whose gradient the caller did not ask for? */
static int unwanted_input(const Graph *g, int t, float *const *dinputs) {
    for (int k = 0; k < GRAPH_INPUT_KINDS; k++)
        if (g->inputs[k].declared && g->inputs[k].tensor == t) return !dinputs || !dinputs[k];
    return 0;
}

void graph_backward(GraphRun *r, const float *P, int B, float *dparams, size_t example_stride,
                    const float *const *douts, float *const *dinputs) {
    const Graph *g = r->g;
    CHECK(B >= 1 && B <= r->cap_B, "batch %d exceeds the run's capacity %d", B, r->cap_B);
    CHECK(r->mode == GRAPH_RUN_TRAIN, "graph_backward on a forward-only run");
    CHECK(example_stride == 0 || example_stride >= r->grad_floats,
          "example stride %zu is smaller than the gradient slab %zu", example_stride,
          r->grad_floats);
    r->ctx.example_stride = example_stride;
    r->param_grad_nodes = 0;
    /* The gradient arena starts at zero (backward ops accumulate); zeroed on every thread. */
    const size_t n_grad = (size_t)r->cap_B * g->act_floats, chunk = (size_t)1 << 18;
#pragma omp parallel for schedule(static)
    for (size_t c0 = 0; c0 < n_grad; c0 += chunk)
        memset(r->grad + c0, 0, sizeof(float) * (n_grad - c0 < chunk ? n_grad - c0 : chunk));
    for (int i = 0; i < g->n_outputs; i++) /* outputs are distinct tensors (graph_output) */
        if (douts && douts[i])
            memcpy(grad(r, g->outputs[i]), douts[i],
                   sizeof(float) * (size_t)B * numel(&g->tensors[g->outputs[i]]));
    const int *labels = r->side[GRAPH_INPUT_LABELS];

    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const Node *n = &g->nodes[i];
        const Tensor *ti = n->in0 >= 0 ? &g->tensors[n->in0] : NULL;
        const Tensor *to = &g->tensors[n->out];
        const float *go = grad(r, n->out);
        /* An input's gradient is only computed when the caller asks for it. */
        float *ga = n->in0 >= 0 && !unwanted_input(g, n->in0, dinputs) ? grad(r, n->in0) : NULL;
        float *gb = n->in1 >= 0 ? grad(r, n->in1) : NULL;
        const float *a = n->in0 >= 0 ? act(r, n->in0) : NULL;
        size_t nel = (size_t)B * numel(to);
        const double t0 = r->profile ? progress_now() : 0.0;
        r->param_grad_nodes += node_has_param_grad(r, n);
        switch (n->kind) {
        case NODE_CENTER:
            if (ga)
                for (size_t k = 0; k < nel; k++)
                    ga[k] += 2.0f * go[k];
            break;
        case NODE_TIMESTEP:
            break;
        case NODE_EMBED: {
            EmbeddingDims d = {B, n->k, to->C};
            embedding_backward(param_grad(r, dparams, n->w), go, labels, &d, &r->ctx);
            break;
        }
        case NODE_LINEAR: {
            LinearDims d = {B, ti->C, to->C};
            linear_backward(ga, param_grad(r, dparams, n->w), param_grad(r, dparams, n->b), go, a,
                            P + n->w, &d, &r->ctx);
            break;
        }
        case NODE_SILU:
            if (ga) silu_backward(ga, go, a, nel);
            break;
        case NODE_GELU:
            if (ga) gelu_backward(ga, go, a, nel);
            break;
        case NODE_QUICK_GELU:
            if (ga) quick_gelu_backward(ga, go, a, nel);
            break;
        case NODE_GEGLU:
            if (ga) geglu_backward(ga, go, a, B, to->C, to->H * to->W);
            break;
        case NODE_LAYERNORM: {
            LayerNormDims d = {B, ti->C, ti->H * ti->W, n->eps};
            float *mean = aux(r, n), *rstd = mean + (size_t)r->cap_B * d.N;
            layernorm_backward(ga, param_grad(r, dparams, n->w), param_grad(r, dparams, n->b), go,
                               a, mean, rstd, P + n->w, &d, &r->ctx);
            break;
        }
        case NODE_MHA: {
            /* both operands skip their gradient when unwanted (the context input's usually is);
             * self-attention (in1 == in0) accumulates both sides into in0's gradient */
            MhaDims d = mha_dims(g, n, B);
            const float *w[8];
            float *dw[8];
            mha_params(n, P, w);
            for (int k = 0; k < 8; k++)
                dw[k] = param_grad(r, dparams, n->p[k]);
            float *gc = !unwanted_input(g, n->in1, dinputs) ? grad(r, n->in1) : NULL;
            mha_backward(ga, gc, dw, go, a, act(r, n->in1), aux(r, n), w, &d, &r->ctx);
            break;
        }
        case NODE_CONV: {
            Conv2dDims d = {B, ti->C, to->C, ti->H, ti->W, n->k, n->stride, n->pad};
            conv2d_backward(ga, param_grad(r, dparams, n->w), param_grad(r, dparams, n->b), go, a,
                            P + n->w, &d, &r->ctx);
            break;
        }
        case NODE_GROUPNORM:
        case NODE_GN_SILU: {
            GroupNormDims d = {B, ti->C, ti->H * ti->W, n->groups, n->eps};
            float *mean = aux(r, n), *rstd = mean + (size_t)r->cap_B * n->groups;
            if (n->kind == NODE_GN_SILU)
                groupnorm_silu_backward(ga, param_grad(r, dparams, n->w),
                                        param_grad(r, dparams, n->b), go, a, mean, rstd, P + n->w,
                                        P + n->b, &d, &r->ctx);
            else
                groupnorm_backward(ga, param_grad(r, dparams, n->w), param_grad(r, dparams, n->b),
                                   go, a, mean, rstd, P + n->w, &d, &r->ctx);
            break;
        }
        case NODE_ADD_CHVEC:
            add_channel_vec_backward(ga, gb, go, B, to->C, to->H * to->W);
            break;
        case NODE_ADD:
            add_scaled_backward(ga, gb, go, n->scale, nel);
            break;
        case NODE_ATTN: {
            AttnDims d = {B, ti->C, ti->H * ti->W, n->heads, n->scale};
            const size_t *p = n->p;
            float *dp[8];
            for (int k = 0; k < 8; k++)
                dp[k] = param_grad(r, dparams, p[k]);
            attention_backward(ga, gb, dp, go, a, aux(r, n), P + p[0], P + p[2], P + p[4], P + p[6],
                               &d, &r->ctx);
            break;
        }
        case NODE_UPSAMPLE:
            if (ga) upsample2x_backward(ga, go, B, ti->C, ti->H, ti->W);
            break;
        case NODE_CONCAT: {
            const Tensor *t1 = &g->tensors[n->in1];
            concat_backward(ga, gb, go, B, ti->C, t1->C, ti->H * ti->W);
            break;
        }
        }
        profile_add(r, n, t0);
    }
    for (int k = 0; dinputs && k < GRAPH_INPUT_KINDS; k++)
        if (dinputs[k] && g->inputs[k].declared && g->inputs[k].tensor >= 0)
            memcpy(dinputs[k], grad(r, g->inputs[k].tensor),
                   sizeof(float) * (size_t)B * g->inputs[k].per_example);
}
