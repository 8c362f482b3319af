/* blocks.c: see blocks.h. */
#include "nn/blocks.h"

#include <stdio.h>

static void add(ParamLayout *l, const char *prefix, const char *leaf, int ndim, const int *shape,
                LayoutInit init) {
    char name[LAYOUT_NAME_MAX];
    snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
    layout_add_init(l, name, ndim, shape, init);
}

void block_params_conv2d(ParamLayout *l, const char *prefix, int cout, int cin, int k) {
    const LayoutInit u = {LAYOUT_INIT_FAN_IN, (size_t)cin * k * k, 0.0f};
    add(l, prefix, "weight", 4, (const int[]){cout, cin, k, k}, u);
    add(l, prefix, "bias", 1, (const int[]){cout}, u);
}

void block_params_linear(ParamLayout *l, const char *prefix, int out, int in) {
    const LayoutInit u = {LAYOUT_INIT_FAN_IN, (size_t)in, 0.0f};
    add(l, prefix, "weight", 2, (const int[]){out, in}, u);
    add(l, prefix, "bias", 1, (const int[]){out}, u);
}

void block_params_norm(ParamLayout *l, const char *prefix, int c) {
    add(l, prefix, "weight", 1, (const int[]){c}, (LayoutInit){LAYOUT_INIT_ONES, 0, 0.0f});
    add(l, prefix, "bias", 1, (const int[]){c}, (LayoutInit){LAYOUT_INIT_ZEROS, 0, 0.0f});
}

void block_params_embedding(ParamLayout *l, const char *prefix, int K, int T) {
    add(l, prefix, "weight", 2, (const int[]){K, T}, (LayoutInit){LAYOUT_INIT_NORMAL, 0, 1.0f});
}

void block_resnet2d_params(ParamLayout *l, const char *prefix, int cin, int cout, int temb_dim) {
    char p[LAYOUT_NAME_MAX];
    snprintf(p, sizeof p, "%s.norm1", prefix);
    block_params_norm(l, p, cin);
    snprintf(p, sizeof p, "%s.conv1", prefix);
    block_params_conv2d(l, p, cout, cin, 3);
    if (temb_dim > 0) {
        snprintf(p, sizeof p, "%s.time_emb_proj", prefix);
        block_params_linear(l, p, cout, temb_dim);
    }
    snprintf(p, sizeof p, "%s.norm2", prefix);
    block_params_norm(l, p, cout);
    snprintf(p, sizeof p, "%s.conv2", prefix);
    block_params_conv2d(l, p, cout, cout, 3);
    if (cin != cout) {
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix);
        block_params_conv2d(l, p, cout, cin, 1);
    }
}

int block_resnet2d(Graph *g, int x, int temb_act, int cout, int groups, float eps,
                   float output_scale_factor, const char *prefix) {
    char p[LAYOUT_NAME_MAX];
    const int cin = g->tensors[x].C;
    snprintf(p, sizeof p, "%s.norm1", prefix);
    int h = graph_groupnorm_silu(g, x, groups, eps, p);
    snprintf(p, sizeof p, "%s.conv1", prefix);
    h = graph_conv(g, h, cout, 3, 1, CONV_PAD_SAME, p);
    if (temb_act >= 0) {
        snprintf(p, sizeof p, "%s.time_emb_proj", prefix);
        int tp = graph_linear(g, temb_act, cout, p);
        h = graph_add_chvec(g, h, tp);
    }
    snprintf(p, sizeof p, "%s.norm2", prefix);
    h = graph_groupnorm_silu(g, h, groups, eps, p);
    snprintf(p, sizeof p, "%s.conv2", prefix);
    h = graph_conv(g, h, cout, 3, 1, CONV_PAD_SAME, p);
    int shortcut = x;
    if (cin != cout) {
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix);
        shortcut = graph_conv(g, x, cout, 1, 1, CONV_PAD_SAME, p);
    }
    return graph_add(g, shortcut, h, 1.0f / output_scale_factor);
}

void block_attn_params(ParamLayout *l, const char *prefix, int c) {
    static const char *const leaves[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    char p[LAYOUT_NAME_MAX];
    snprintf(p, sizeof p, "%s.group_norm", prefix);
    block_params_norm(l, p, c);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s.%s", prefix, leaves[i]);
        block_params_linear(l, p, c, c);
    }
}

int block_attn(Graph *g, int x, int groups, float eps, int head_dim, float rescale_output_factor,
               const char *prefix) {
    char p[LAYOUT_NAME_MAX];
    const int C = g->tensors[x].C;
    snprintf(p, sizeof p, "%s.group_norm", prefix);
    int xn = graph_groupnorm(g, x, groups, eps, p);
    return graph_attention(g, xn, x, head_dim ? C / head_dim : 1, 1.0f / rescale_output_factor,
                           prefix);
}
