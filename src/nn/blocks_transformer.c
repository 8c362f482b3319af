/* blocks_transformer.c: diffusers' Transformer2DModel (continuous input, models/transformers/
 * transformer_2d.py) with its BasicTransformerBlocks (models/attention.py: self-attention,
 * cross-attention, GEGLU feed-forward, models/activations.py) as a block of the graph executor:
 * parameter registration in named_parameters() order and the wiring (see blocks.h, ldm.md 2.3-2.6).
 * Tokens are the H*W positions of the channel-major (C, H, W) tensor, so diffusers' Linear layers
 * over (B, N, C) tokens are token-wise linears (1x1 convolutions) here. */
#include "nn/blocks.h"

#include <stdio.h>

/* The three eps of ldm.md 2.8: the GroupNorm of Transformer2DModel is hard-coded 1e-6 whatever the
 * U-Net's norm_eps; the LayerNorms take Transformer2DModel's norm_eps default 1e-5. */
#define TRANSFORMER_GN_EPS 1e-6f
#define TRANSFORMER_LN_EPS 1e-5f

static const char *const ATTN_NAMES[4] = {"to_q", "to_k", "to_v", "to_out.0"};

/* "<prefix>.weight" (out, in) of an nn.Linear without bias */
static void params_linear_nobias(ParamLayout *l, const char *prefix, int out, int in) {
    char name[LAYOUT_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    layout_add_init(l, name, 2, (const int[]){out, in},
                    (LayoutInit){LAYOUT_INIT_FAN_IN, (size_t)in, 0.0f});
}

/* diffusers' Attention(query_dim c, cross_attention_dim kv, bias False, out_bias True) */
static void params_attention(ParamLayout *l, const char *prefix, int c, int kv) {
    char p[LAYOUT_NAME_MAX];
    snprintf(p, sizeof p, "%s.to_q", prefix);
    params_linear_nobias(l, p, c, c);
    snprintf(p, sizeof p, "%s.to_k", prefix);
    params_linear_nobias(l, p, c, kv);
    snprintf(p, sizeof p, "%s.to_v", prefix);
    params_linear_nobias(l, p, c, kv);
    snprintf(p, sizeof p, "%s.to_out.0", prefix);
    block_params_linear(l, p, c, c);
}

static void params_proj(ParamLayout *l, const char *prefix, int c, int linear) {
    if (linear)
        block_params_linear(l, prefix, c, c);
    else
        block_params_conv2d(l, prefix, c, c, 1);
}

void block_transformer2d_params(ParamLayout *l, const char *prefix, int c,
                                const TransformerSpec *s) {
    CHECK(s->heads >= 1 && c % s->heads == 0, "%s: %d heads do not divide %d channels", prefix,
          s->heads, c);
    CHECK(s->layers >= 1 && s->context_dim >= 1, "%s: layers %d, context width %d", prefix,
          s->layers, s->context_dim);
    char p[LAYOUT_NAME_MAX];
    snprintf(p, sizeof p, "%s.norm", prefix);
    block_params_norm(l, p, c);
    snprintf(p, sizeof p, "%s.proj_in", prefix);
    params_proj(l, p, c, s->linear_projection);
    for (int k = 0; k < s->layers; k++) {
        static const char *const norms[2] = {"norm1", "norm2"};
        for (int a = 0; a < 2; a++) {
            snprintf(p, sizeof p, "%s.transformer_blocks.%d.%s", prefix, k, norms[a]);
            block_params_norm(l, p, c);
            snprintf(p, sizeof p, "%s.transformer_blocks.%d.attn%d", prefix, k, a + 1);
            int kv = (a == 1 || s->only_cross_attention) ? s->context_dim : c;
            params_attention(l, p, c, kv);
        }
        snprintf(p, sizeof p, "%s.transformer_blocks.%d.norm3", prefix, k);
        block_params_norm(l, p, c);
        /* FeedForward(dim c, mult 4, activation "geglu"): GEGLU's proj c -> 2 * 4c, then 4c -> c */
        snprintf(p, sizeof p, "%s.transformer_blocks.%d.ff.net.0.proj", prefix, k);
        block_params_linear(l, p, 8 * c, c);
        snprintf(p, sizeof p, "%s.transformer_blocks.%d.ff.net.2", prefix, k);
        block_params_linear(l, p, c, 4 * c);
    }
    snprintf(p, sizeof p, "%s.proj_out", prefix);
    params_proj(l, p, c, s->linear_projection);
}

/* BasicTransformerBlock (norm_type "layer_norm", no ada norms, no positional embedding) */
static int basic_transformer_block(Graph *g, int y, int ctx, const TransformerSpec *s,
                                   const char *prefix) {
    char p[LAYOUT_NAME_MAX];
    const int C = g->tensors[y].C;
    for (int a = 0; a < 2; a++) {
        snprintf(p, sizeof p, "%s.norm%d", prefix, a + 1);
        int n = graph_layernorm(g, y, TRANSFORMER_LN_EPS, p);
        snprintf(p, sizeof p, "%s.attn%d", prefix, a + 1);
        int kv = (a == 1 || s->only_cross_attention) ? ctx : -1;
        int att = graph_mha(g, n, kv, s->heads, 0, p, ATTN_NAMES);
        y = graph_add(g, att, y, 1.0f); /* hidden_states = attn_output + hidden_states */
    }
    snprintf(p, sizeof p, "%s.norm3", prefix);
    int n = graph_layernorm(g, y, TRANSFORMER_LN_EPS, p);
    snprintf(p, sizeof p, "%s.ff.net.0.proj", prefix);
    int f = graph_token_linear(g, n, 8 * C, p);
    f = graph_geglu(g, f);
    snprintf(p, sizeof p, "%s.ff.net.2", prefix);
    f = graph_token_linear(g, f, C, p);
    return graph_add(g, f, y, 1.0f);
}

int block_transformer2d(Graph *g, int x, int ctx, int groups, const TransformerSpec *s,
                        const char *prefix) {
    char p[LAYOUT_NAME_MAX];
    const int C = g->tensors[x].C;
    CHECK(ctx >= 0 && g->tensors[ctx].C == s->context_dim, "%s: context of width %d, want %d",
          prefix, ctx >= 0 ? g->tensors[ctx].C : 0, s->context_dim);
    snprintf(p, sizeof p, "%s.norm", prefix);
    int y = graph_groupnorm(g, x, groups, TRANSFORMER_GN_EPS, p);
    /* proj_in: a 1x1 conv before the (B,C,H,W) -> (B,N,C) reshape, or a Linear after it: the same
     * token-wise product either way */
    snprintf(p, sizeof p, "%s.proj_in", prefix);
    y = graph_token_linear(g, y, C, p);
    for (int k = 0; k < s->layers; k++) {
        snprintf(p, sizeof p, "%s.transformer_blocks.%d", prefix, k);
        y = basic_transformer_block(g, y, ctx, s, p);
    }
    snprintf(p, sizeof p, "%s.proj_out", prefix);
    y = graph_token_linear(g, y, C, p);
    return graph_add(g, y, x, 1.0f); /* output = hidden_states + residual */
}
