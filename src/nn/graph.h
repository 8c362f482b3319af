/* graph.h: the network executor every jtrak network runs on (architecture.md, "Next shape"). A
 * Graph is a static list of nn ops (nn.h) over per-example tensors (C, H, W), built once for one
 * input size by a network's builder from the graph_* helpers below and the blocks of nn/blocks.h;
 * parameters live in one slab described by a ParamLayout, and each node holds the offsets of its
 * parameters in it. A GraphRun holds the arenas for a batch capacity and runs the graph: forward
 * (nodes in order) and backward (in reverse, each node accumulating into its inputs' gradients and
 * into the parameter gradients, summed over the batch or one slab per example).
 *
 * Every node writes a tensor of its own, so activations are never overwritten and backward can
 * accumulate into per-tensor gradients. Arena layout: tensor t of a run with capacity B occupies
 * floats [B*t.off, B*(t.off + C*H*W)) of the activation arena (and the same range of the gradient
 * arena), example b at B*t.off + b*C*H*W; a node's saved tensors (aux) likewise in the aux arena.
 *
 * Inputs are slots named by GraphInputKind, at most one of each kind per graph: a tensor input
 * (an image or latent) lives in the activation arena, carries a gradient and feeds any op; a side
 * input (timesteps, class ids) is a per-example buffer of the run read by the node kinds that
 * consume it (NODE_TIMESTEP, NODE_EMBED). A new kind of input is one enum entry plus its row in
 * graph.c's input table. Results do not depend on the thread count (nn.h). */
#ifndef JTRAK_GRAPH_H
#define JTRAK_GRAPH_H

#include "core/common.h"
#include "core/layout.h"
#include "nn/nn.h"

#include <stddef.h>

typedef enum {
    GRAPH_INPUT_IMAGE = 0, /* tensor (C, H, W): the network's image or latent input */
    GRAPH_INPUT_TIMESTEP,  /* side, one float per example (diffusers converts timesteps to float) */
    GRAPH_INPUT_LABELS,    /* side, one int per example: class ids */
    GRAPH_INPUT_CONTEXT,   /* tensor: encoder hidden states, declared channel-major as
                              graph_input(g, GRAPH_INPUT_CONTEXT, D, L, 1); graph_set_input takes
                              them token-major (B, L, D) (diffusers' encoder_hidden_states) and
                              stores them transposed; read by NODE_MHA (cross-attention) */
    GRAPH_INPUT_KINDS
} GraphInputKind;

typedef enum {
    NODE_CENTER,    /* out = 2 in - 1 (center_input_sample) */
    NODE_TIMESTEP,  /* sinusoidal embedding (T,1,1) of the GRAPH_INPUT_TIMESTEP values; no input */
    NODE_EMBED,     /* row of a (k, T) table for each GRAPH_INPUT_LABELS id: (T,1,1); no input */
    NODE_LINEAR,    /* per-example vector (C,1,1) -> (cout,1,1) */
    NODE_SILU,      /* elementwise */
    NODE_CONV,      /* conv2d */
    NODE_GROUPNORM, /* affine group norm */
    NODE_GN_SILU,   /* silu(groupnorm(in)) as one op (groupnorm_silu_forward) */
    NODE_ADD_CHVEC, /* in0 (C,H,W) + in1 (C,1,1) broadcast */
    NODE_ADD,       /* (in0 + in1) * scale */
    NODE_ATTN,      /* spatial self-attention: in0 = group-normed input, in1 = residual */
    NODE_UPSAMPLE,  /* nearest 2x */
    NODE_CONCAT,    /* [in0, in1] along channels */
    NODE_LAYERNORM, /* layer norm over the C channels of each of the H*W tokens */
    NODE_GELU,      /* elementwise GELU, exact erf form */
    /* elementwise quick GELU x * sigmoid(1.702 x) (CLIP): */
    NODE_QUICK_GELU,
    NODE_GEGLU, /* (2F,H,W) -> (F,H,W): a * gelu(g), [a | g] = channels [0,F) | [F,2F) */
    NODE_MHA    /* multi-head attention: queries from in0 (C,H,W), keys/values from in1
                   (in1 == in0: self-attention), no residual; p[] offsets, GRAPH_NO_PARAM for a
                   missing bias */
} NodeKind;

/* Node.p entry of a parameter the layout does not have (an attention projection without bias). */
#define GRAPH_NO_PARAM ((size_t)-1)

typedef struct {
    int C, H, W; /* per example */
    size_t off;  /* per-example float offset; times the run's capacity in the arenas */
} Tensor;

typedef struct {
    NodeKind kind;
    int in0, in1, out;                 /* tensor ids, -1 for none */
    size_t w, b;                       /* parameter offsets (conv, linear, norm, embedding table) */
    size_t p[8];                       /* attention, mha: wq bq wk bk wv bv wo bo */
    int k, stride, pad, groups, heads; /* k: kernel size; NODE_EMBED: rows of the table */
    int flip;                          /* NODE_TIMESTEP: flip_sin_to_cos */
    int causal;                        /* NODE_MHA: causal mask (CLIP text encoder) */
    float eps, scale, shift;           /* shift: NODE_TIMESTEP's freq_shift */
    size_t aux; /* per-example offset in the aux arena: groupnorm mean/rstd, attention saves */
} Node;

typedef struct {
    int declared;
    int tensor;         /* tensor inputs: the tensor id; side inputs: -1 */
    size_t per_example; /* values per example */
} GraphInput;

#define GRAPH_MAX_OUTPUTS 8

typedef struct {
    const ParamLayout *layout; /* parameter names -> slab offsets, while building */
    Tensor *tensors;
    int n_tensors, cap_tensors;
    Node *nodes;
    int n_nodes, cap_nodes;
    size_t act_floats; /* per example, all tensors */
    size_t aux_floats; /* per example, all nodes' saved tensors */
    GraphInput inputs[GRAPH_INPUT_KINDS];
    int outputs[GRAPH_MAX_OUTPUTS]; /* tensor ids */
    int n_outputs;
} Graph;

/* ---- building -------------------------------------------------------------------------------- */
/* An empty graph over the parameters of `layout`, which must outlive the graph and its runs. */
void graph_init(Graph *g, const ParamLayout *layout);
void graph_free(Graph *g);
/* Declares input `kind` (once). Tensor kinds: a new (C, H, W) tensor, whose id is returned. Side
 * kinds: C*H*W values per example; returns -1. */
int graph_input(Graph *g, GraphInputKind kind, int C, int H, int W);
/* Marks tensor `t` as the next output (distinct tensors); returns its output index. */
int graph_output(Graph *g, int t);
/* Low level: a new tensor, a new node (scale 1, other fields zero; the pointer is valid until the
 * next graph_node call), the slab offset of the parameter named by the printf-style arguments (a
 * CHECK failure if the layout lacks it). */
int graph_tensor(Graph *g, int C, int H, int W);
Node *graph_node(Graph *g, NodeKind kind, int in0, int in1, int out);
size_t graph_param(const Graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The ops, each returning its output tensor. `prefix` names the module whose "<prefix>.weight"
 * and "<prefix>.bias" (attention: "<prefix>.to_q.weight" ... "<prefix>.to_out.0.bias") hold the
 * parameters. */
int graph_conv(Graph *g, int in, int cout, int k, int stride, int pad /* CONV_PAD_* */,
               const char *prefix);
int graph_groupnorm(Graph *g, int in, int groups, float eps, const char *prefix);
int graph_groupnorm_silu(Graph *g, int in, int groups, float eps, const char *prefix);
int graph_linear(Graph *g, int in /* (C,1,1) */, int cout, const char *prefix);
/* kind: NODE_CENTER, NODE_SILU, NODE_GELU, NODE_QUICK_GELU or NODE_UPSAMPLE */
int graph_unary(Graph *g, NodeKind kind, int in);
int graph_add(Graph *g, int a, int b, float scale); /* (a + b) * scale */
int graph_add_chvec(Graph *g, int x /* (C,H,W) */, int v /* (C,1,1) */);
int graph_concat(Graph *g, int a, int b);
/* Self-attention over xn's H*W tokens with `heads` heads, plus residual, times scale. */
int graph_attention(Graph *g, int xn, int residual, int heads, float scale, const char *prefix);
/* Layer norm over the C channels of each token of a (C,H,W) tensor: "<prefix>.weight",
 * "<prefix>.bias" (C). */
int graph_layernorm(Graph *g, int in, float eps, const char *prefix);
/* GEGLU: (2F,H,W) -> (F,H,W). */
int graph_geglu(Graph *g, int in);
/* Token-wise Linear (a 1x1 convolution with bias) on a (cin,H,W) tensor: "<prefix>.weight" may be
 * registered as (cout, cin) [nn.Linear] or (cout, cin, 1, 1) [1x1 Conv2d], same data;
 * "<prefix>.bias" (cout). */
int graph_token_linear(Graph *g, int in, int cout, const char *prefix);
/* Multi-head attention (nn.h mha_forward) of x's H*W tokens over ctx's tokens (a tensor id, or -1
 * for self-attention on x), `heads` heads, causal mask or not. names: the q, k, v and out
 * projections under prefix, e.g. {"to_q","to_k","to_v","to_out.0"} (diffusers) or
 * {"q_proj","k_proj","v_proj","out_proj"} (CLIP); "<prefix>.<name>.weight" is required,
 * "<prefix>.<name>.bias" is used when the layout has it. C is the out projection's width; the
 * output is (C, H, W) of x. No residual. */
int graph_mha(Graph *g, int x, int ctx, int heads, int causal, const char *prefix,
              const char *const names[4]);
/* Sinusoidal embedding (dim,1,1) of the timestep input (declared here if it is not yet). */
int graph_timestep(Graph *g, int dim, int flip_sin_to_cos, float freq_shift);
/* Rows of the (K, T) table `name` (a full parameter name) for the labels input (declared here if
 * it is not yet). */
int graph_embedding(Graph *g, int K, int T, const char *name);

/* ---- running --------------------------------------------------------------------------------- */
/* GRAPH_RUN_FORWARD_ONLY: no gradient arena and no gradient scratch; graph_backward on it is a
 * CHECK failure. */
typedef enum { GRAPH_RUN_TRAIN = 0, GRAPH_RUN_FORWARD_ONLY = 1 } GraphRunMode;
typedef struct GraphRun GraphRun;

/* Arenas and scratch for batches of up to B examples of g (which must outlive the run). Returns
 * JT_ERR with a message when the sizes overflow. */
int graph_run_create(GraphRun **out, const Graph *g, int B, GraphRunMode mode, JtError *err);
void graph_run_free(GraphRun *r);
int graph_run_capacity(const GraphRun *r);
GraphRunMode graph_run_mode(const GraphRun *r);
/* Bytes held by the run (arenas, input buffers, scratch). */
size_t graph_run_bytes(const GraphRun *r);
/* While on, forward and backward add the wall time of their convolution nodes and of their other
 * nodes to two counters (on = 1 also zeroes them). */
void graph_run_profile(GraphRun *r, int on);
void graph_run_profile_seconds(const GraphRun *r, double *conv_s, double *other_s);

/* ---- parameter-gradient selection (per-example gradients over a named parameter subset:
 * architecture.md "Next shape"; a 57M-parameter model's full per-example gradients do not fit).
 * compact: one entry per layout entry (g->layout->entries order): that tensor's float offset in
 * the compact gradient slab, or GRAPH_NO_PARAM to leave it out; NULL selects every parameter at
 * its slab offset (the default). Selected ranges must not overlap (graph_compact_offsets packs
 * them in layout order). The array is copied. After it, graph_backward's dparams is the compact
 * slab: graph_run_grad_floats(r) floats (summed) or one slab of that many per example (example
 * stride >= it); only selected tensors' gradients are written there. Activation gradients still
 * flow through every node; an op whose parameters are all left out runs no weight-gradient GEMM
 * (nn.h: a NULL parameter gradient is skipped). Every gradient that is written is bitwise the
 * one an unselected run writes at the tensor's slab offset, at any thread count. */
void graph_run_select_params(GraphRun *r, const size_t *compact);
/* Nodes of the last graph_backward that were given a parameter gradient to compute (the others,
 * all of whose parameters are left out, ran no weight-gradient work): for tests and benchmarks. */
size_t graph_run_param_grad_nodes(const GraphRun *r);
/* Floats of one parameter-gradient slab of the run: the selected count, or the layout's total. */
size_t graph_run_grad_floats(const GraphRun *r);
/* compact (l->count) for the entries with keep[i] != 0, packed in layout order; returns their
 * total float count. */
size_t graph_compact_offsets(const ParamLayout *l, const unsigned char *keep, size_t *compact);

/* Copies the first B examples of input `kind` (float, or int for GRAPH_INPUT_LABELS) into the run.
 * Every declared input must be set (for at least the forward's B) before each graph_forward.
 * GRAPH_INPUT_CONTEXT declared as (D, L, 1) takes data token-major (B, L, D), as diffusers'
 * encoder_hidden_states, and stores it transposed to the channel-major (B, D, L) the ops read. */
void graph_set_input(GraphRun *r, GraphInputKind kind, int B, const void *data);
/* Runs the graph on the first B examples (B <= capacity) with the parameter slab. */
void graph_forward(GraphRun *r, const float *params, int B);
/* Copies output i of the last forward, (B, C, H, W), to dst. */
void graph_get_output(const GraphRun *r, int i, int B, float *dst);
/* Backward of the last forward (same params and B): accumulates (+=) parameter gradients into
 * dparams, summed over the batch (example_stride 0) or example b's at dparams + b*example_stride
 * (example_stride >= graph_run_grad_floats: the layout's total, or the selection's count with
 * graph_run_select_params, whose compact offsets dparams then follows). douts[i]: d(loss)/d(output
 * i), (B, C, H, W), NULL for zero. dinputs (may be NULL): indexed by GraphInputKind; a non-NULL
 * entry for a tensor input gets that input's gradient written (overwritten); the input gradients of
 * NULL entries are skipped where the op allows (the first operand of a node; both operands of
 * NODE_MHA). The context's gradient, when asked for, is channel-major (B, D, L) like its tensor. */
void graph_backward(GraphRun *r, const float *params, int B, float *dparams, size_t example_stride,
                    const float *const *douts, float *const *dinputs);

#endif
