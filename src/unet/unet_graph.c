/* unet_graph.c: builds the static op graph of UNet2DModel.forward for one image size (unet2d.md
 * sections 3-5): time embedding MLP, conv_in, down blocks (resnets, attentions, downsamplers)
 * pushing skips, the mid block, up blocks popping skips ([h, skip] concatenation), and the output
 * head. Every node writes a new tensor, so backward can accumulate into per-tensor gradients. */
#include "unet/unet_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int new_tensor(UNetRun *r, int C, int H, int W) {
    if (r->n_tensors == r->cap_tensors) {
        r->cap_tensors = r->cap_tensors ? 2 * r->cap_tensors : 128;
        r->tensors = xrealloc(r->tensors, (size_t)r->cap_tensors * sizeof *r->tensors);
    }
    Tensor *t = &r->tensors[r->n_tensors];
    t->C = C;
    t->H = H;
    t->W = W;
    t->off = r->act_floats;
    r->act_floats += (size_t)C * H * W;
    return r->n_tensors++;
}

static Node *new_node(UNetRun *r, NodeKind kind, int in0, int in1, int out) {
    if (r->n_nodes == r->cap_nodes) {
        r->cap_nodes = r->cap_nodes ? 2 * r->cap_nodes : 256;
        r->nodes = xrealloc(r->nodes, (size_t)r->cap_nodes * sizeof *r->nodes);
    }
    Node *n = &r->nodes[r->n_nodes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->in0 = in0;
    n->in1 = in1;
    n->out = out;
    n->scale = 1.0f;
    return n;
}

/* Offset of the parameter named by the printf-style arguments; it must exist in the layout. */
static size_t param(const UNet *net, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t param(const UNet *net, const char *fmt, ...) {
    char name[LAYOUT_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int i = layout_find(&net->layout, name);
    CHECK(i >= 0, "graph needs parameter %s that the layout lacks", name);
    return net->layout.entries[i].offset;
}

static int conv(const UNet *net, UNetRun *r, int in, int cout, int k, int stride, int pad,
                const char *prefix) {
    const Tensor *t = &r->tensors[in];
    Conv2dDims d = {1, t->C, cout, t->H, t->W, k, stride, pad};
    int out = new_tensor(r, cout, conv2d_out_h(&d), conv2d_out_w(&d));
    Node *n = new_node(r, NODE_CONV, in, -1, out);
    n->w = param(net, "%s.weight", prefix);
    n->b = param(net, "%s.bias", prefix);
    n->k = k;
    n->stride = stride;
    n->pad = pad;
    return out;
}

/* kind NODE_GROUPNORM, or NODE_GN_SILU for the group norm and the SiLU after it as one node */
static int groupnorm_kind(const UNet *net, UNetRun *r, NodeKind kind, int in, int groups,
                          const char *prefix) {
    const Tensor *t = &r->tensors[in];
    int out = new_tensor(r, t->C, t->H, t->W);
    Node *n = new_node(r, kind, in, -1, out);
    n->w = param(net, "%s.weight", prefix);
    n->b = param(net, "%s.bias", prefix);
    n->groups = groups;
    n->eps = net->cfg.norm_eps;
    n->aux = r->aux_per_sample;
    r->aux_per_sample += 2 * (size_t)groups;
    return out;
}

static int groupnorm(const UNet *net, UNetRun *r, int in, int groups, const char *prefix) {
    return groupnorm_kind(net, r, NODE_GROUPNORM, in, groups, prefix);
}

/* silu(groupnorm(in)): the group norm's output is never needed on its own */
static int groupnorm_silu(const UNet *net, UNetRun *r, int in, int groups, const char *prefix) {
    return groupnorm_kind(net, r, NODE_GN_SILU, in, groups, prefix);
}

static int unary(UNetRun *r, NodeKind kind, int in) {
    const Tensor *t = &r->tensors[in];
    int f = kind == NODE_UPSAMPLE ? 2 : 1;
    int out = new_tensor(r, t->C, f * t->H, f * t->W);
    new_node(r, kind, in, -1, out);
    return out;
}

static int linear(const UNet *net, UNetRun *r, int in, int cout, const char *prefix) {
    int out = new_tensor(r, cout, 1, 1);
    Node *n = new_node(r, NODE_LINEAR, in, -1, out);
    n->w = param(net, "%s.weight", prefix);
    n->b = param(net, "%s.bias", prefix);
    return out;
}

/* ResnetBlock2D with time_embedding_norm "default" (unet2d.md 4.1). */
static int resnet(const UNet *net, UNetRun *r, int x, int emb_act, int cout, float out_scale,
                  const char *prefix) {
    char p[LAYOUT_NAME_MAX];
    const int G = net->cfg.norm_num_groups;
    const Tensor *tx = &r->tensors[x];
    int cin = tx->C;

    snprintf(p, sizeof p, "%s.norm1", prefix);
    int h = groupnorm_silu(net, r, x, G, p);
    snprintf(p, sizeof p, "%s.conv1", prefix);
    h = conv(net, r, h, cout, 3, 1, CONV_PAD_SAME, p);
    snprintf(p, sizeof p, "%s.time_emb_proj", prefix);
    int tp = linear(net, r, emb_act, cout, p);
    const Tensor *th = &r->tensors[h];
    int h2 = new_tensor(r, cout, th->H, th->W);
    new_node(r, NODE_ADD_CHVEC, h, tp, h2);
    snprintf(p, sizeof p, "%s.norm2", prefix);
    h = groupnorm_silu(net, r, h2, G, p);
    snprintf(p, sizeof p, "%s.conv2", prefix);
    h = conv(net, r, h, cout, 3, 1, CONV_PAD_SAME, p);
    int shortcut = x;
    if (cin != cout) {
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix);
        shortcut = conv(net, r, x, cout, 1, 1, CONV_PAD_SAME, p);
    }
    const Tensor *to = &r->tensors[h];
    int out = new_tensor(r, cout, to->H, to->W);
    Node *n = new_node(r, NODE_ADD, shortcut, h, out);
    n->scale = 1.0f / out_scale;
    return out;
}

/* Attention with _from_deprecated_attn_block (unet2d.md 4.2). */
static int attention(const UNet *net, UNetRun *r, int x, int groups, float rescale,
                     const char *prefix) {
    static const char *const leaves[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    char p[LAYOUT_NAME_MAX];
    const Tensor *t = &r->tensors[x];
    int C = t->C;
    snprintf(p, sizeof p, "%s.group_norm", prefix);
    int xn = groupnorm(net, r, x, groups, p);
    int out = new_tensor(r, C, t->H, t->W);
    Node *n = new_node(r, NODE_ATTN, xn, x, out);
    for (int i = 0; i < 4; i++) {
        n->p[2 * i] = param(net, "%s.%s.weight", prefix, leaves[i]);
        n->p[2 * i + 1] = param(net, "%s.%s.bias", prefix, leaves[i]);
    }
    int hd = net->cfg.attention_head_dim;
    n->heads = hd ? C / hd : 1;
    n->scale = 1.0f / rescale;
    AttnDims d = {1, C, t->H * t->W, n->heads, n->scale};
    n->aux = r->aux_per_sample;
    r->aux_per_sample += attention_saved_floats(&d);
    return out;
}

void unet_build_graph(const UNet *net, UNetRun *r) {
    const UNetConfig *cfg = &net->cfg;
    const int nl = cfg->n_levels, L = cfg->layers_per_block;
    const int *ch = cfg->block_out_channels;
    const int tdim = unet_time_embed_dim(cfg);
    char p[LAYOUT_NAME_MAX];

    r->input = new_tensor(r, cfg->in_channels, r->H, r->W);
    int x = r->input;
    if (cfg->center_input_sample) x = unary(r, NODE_CENTER, x);

    int temb = new_tensor(r, ch[0], 1, 1);
    new_node(r, NODE_TIMESTEP, -1, -1, temb);
    int e = linear(net, r, temb, tdim, "time_embedding.linear_1");
    e = unary(r, NODE_SILU, e);
    e = linear(net, r, e, tdim, "time_embedding.linear_2");
    if (cfg->num_class_embeds > 0) { /* emb = emb + class_embedding(class_labels) */
        int cemb = new_tensor(r, tdim, 1, 1);
        Node *n = new_node(r, NODE_EMBED, -1, -1, cemb);
        n->w = param(net, "class_embedding.weight");
        n->k = cfg->num_class_embeds;
        int sum = new_tensor(r, tdim, 1, 1);
        new_node(r, NODE_ADD, e, cemb, sum);
        e = sum;
    }
    int emb_act = unary(r, NODE_SILU, e); /* every resnet applies SiLU to emb: do it once */

    int h = conv(net, r, x, ch[0], 3, 1, CONV_PAD_SAME, "conv_in");
    int skips[4 * UNET_MAX_LEVELS * 8];
    int n_skips = 0;
    skips[n_skips++] = h;

    for (int i = 0; i < nl; i++) {
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            h = resnet(net, r, h, emb_act, ch[i], 1.0f, p);
            if (cfg->down_attn[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                h = attention(net, r, h, cfg->norm_num_groups, 1.0f, p);
            }
            CHECK(n_skips < (int)(sizeof skips / sizeof *skips), "too many skips");
            skips[n_skips++] = h;
        }
        if (i < nl - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            h = conv(net, r, h, ch[i], 3, 2,
                     cfg->downsample_padding == 0 ? CONV_PAD_RB : CONV_PAD_SAME, p);
            skips[n_skips++] = h;
        }
    }

    const float msf = cfg->mid_block_scale_factor;
    h = resnet(net, r, h, emb_act, ch[nl - 1], msf, "mid_block.resnets.0");
    if (cfg->add_attention) {
        int ag = cfg->attn_norm_num_groups ? cfg->attn_norm_num_groups : cfg->norm_num_groups;
        h = attention(net, r, h, ag, msf, "mid_block.attentions.0");
    }
    h = resnet(net, r, h, emb_act, ch[nl - 1], msf, "mid_block.resnets.1");

    for (int i = 0; i < nl; i++) {
        int out = ch[nl - 1 - i];
        for (int j = 0; j <= L; j++) {
            CHECK(n_skips > 0, "skip stack underflow");
            int s = skips[--n_skips];
            const Tensor *th = &r->tensors[h], *ts = &r->tensors[s];
            CHECK(th->H == ts->H && th->W == ts->W, "skip size mismatch %dx%d vs %dx%d", th->H,
                  th->W, ts->H, ts->W);
            int cat = new_tensor(r, th->C + ts->C, th->H, th->W);
            new_node(r, NODE_CONCAT, h, s, cat);
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            h = resnet(net, r, cat, emb_act, out, 1.0f, p);
            if (cfg->up_attn[i]) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                h = attention(net, r, h, cfg->norm_num_groups, 1.0f, p);
            }
        }
        if (i < nl - 1) {
            h = unary(r, NODE_UPSAMPLE, h);
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            h = conv(net, r, h, out, 3, 1, CONV_PAD_SAME, p);
        }
    }
    CHECK(n_skips == 0, "%d skips left over", n_skips);

    h = groupnorm_silu(net, r, h, cfg->norm_num_groups, "conv_norm_out");
    r->output = conv(net, r, h, cfg->out_channels, 3, 1, CONV_PAD_SAME, "conv_out");
}
