/* clip_text.c: transformers' CLIPTextModel forward (see clip_text.h; ldm.md 4.1; transformers
 * 5.23.0 models/clip/modeling_clip.py: CLIPTextEmbeddings, CLIPEncoderLayer, CLIPTextModel). The
 * token + position embedding lookup is done in C (the encoder is frozen, so nobody needs its
 * gradient) and fed to the graph as its (D, L, 1) image input; the encoder layers and
 * final_layer_norm run on the graph (nn/graph.h). */
#include "text/clip_text.h"

#include "core/config_fields.h"
#include "io/safetensors.h"
#include "nn/blocks.h"
#include "nn/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ClipText {
    ClipTextConfig cfg;
    ParamLayout layout;
    float *params;
    size_t tok_off, pos_off; /* embedding tables in the slab */
};

struct ClipTextRun {
    Graph graph;
    GraphRun *run;
    int B, L, skip;
    float *x;   /* (B, D, L) embeddings, channel-major */
    float *out; /* (B, D, L) one graph output */
};

static const char *const ATTN_NAMES[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};

/* named_parameters() order of transformers 5's CLIPTextModel */
static void register_params(ClipText *net) {
    const ClipTextConfig *c = &net->cfg;
    const int D = c->hidden_size, I = c->intermediate_size;
    ParamLayout *l = &net->layout;
    char p[LAYOUT_NAME_MAX];
    block_params_embedding(l, "embeddings.token_embedding", c->vocab_size, D);
    block_params_embedding(l, "embeddings.position_embedding", c->max_position_embeddings, D);
    for (int i = 0; i < c->num_hidden_layers; i++) {
        static const char *const order[4] = {"k_proj", "v_proj", "q_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            snprintf(p, sizeof p, "encoder.layers.%d.self_attn.%s", i, order[k]);
            block_params_linear(l, p, D, D);
        }
        snprintf(p, sizeof p, "encoder.layers.%d.layer_norm1", i);
        block_params_norm(l, p, D);
        snprintf(p, sizeof p, "encoder.layers.%d.mlp.fc1", i);
        block_params_linear(l, p, I, D);
        snprintf(p, sizeof p, "encoder.layers.%d.mlp.fc2", i);
        block_params_linear(l, p, D, I);
        snprintf(p, sizeof p, "encoder.layers.%d.layer_norm2", i);
        block_params_norm(l, p, D);
    }
    block_params_norm(l, "final_layer_norm", D);
}

int clip_text_create(ClipText **out, const ClipTextConfig *cfg, JtError *err) {
    *out = NULL;
    if (clip_text_config_validate(cfg, "config", err) != JT_OK) return JT_ERR;
    ClipText *net = xcalloc(1, sizeof *net);
    net->cfg = *cfg;
    layout_init(&net->layout);
    register_params(net);
    if (jt_check_memory(net->layout.total * sizeof(float), "the CLIP text encoder's parameters",
                        err) != JT_OK) {
        clip_text_free(net);
        return JT_ERR;
    }
    net->params = xcalloc(net->layout.total ? net->layout.total : 1, sizeof(float));
    net->tok_off =
        net->layout.entries[layout_find(&net->layout, "embeddings.token_embedding.weight")].offset;
    net->pos_off =
        net->layout.entries[layout_find(&net->layout, "embeddings.position_embedding.weight")]
            .offset;
    *out = net;
    return JT_OK;
}

void clip_text_free(ClipText *net) {
    if (!net) return;
    layout_free(&net->layout);
    free(net->params);
    free(net);
}

const ClipTextConfig *clip_text_config(const ClipText *net) {
    return &net->cfg;
}
const ParamLayout *clip_text_layout(const ClipText *net) {
    return &net->layout;
}
float *clip_text_params(ClipText *net) {
    return net->params;
}
const float *clip_text_params_const(const ClipText *net) {
    return net->params;
}
size_t clip_text_num_params(const ClipText *net) {
    return net->layout.total;
}

/* ---- weights ---- */

static int is_position_ids(const char *name) {
    return strcmp(name, "embeddings.position_ids") == 0 ||
           strcmp(name, "text_model.embeddings.position_ids") == 0;
}

int clip_text_load_weights(ClipText *net, const char *path, JtError *err) {
    static const char PREFIX[] = "text_model.";
    const size_t plen = sizeof PREFIX - 1;
    StFile f;
    if (st_open(&f, path, err) != JT_OK) return JT_ERR;
    const ParamLayout *l = &net->layout;
    int *src = xmalloc((size_t)(l->count ? l->count : 1) * sizeof *src);
    for (int i = 0; i < l->count; i++)
        src[i] = -1;
    int rc = JT_OK, prefixed = -1; /* -1: not seen yet */

    /* Resolve every tensor of the file before reading any data. */
    for (int j = 0; j < f.n_tensors && rc == JT_OK; j++) {
        const StTensor *t = &f.tensors[j];
        if (is_position_ids(t->name)) continue; /* a buffer (arange), not a parameter */
        int has = strncmp(t->name, PREFIX, plen) == 0;
        if (prefixed >= 0 && has != prefixed) {
            rc = jt_fail(err,
                         "%s: tensor '%s': names mix the \"text_model.\" prefix (transformers 4) "
                         "and no prefix (transformers 5)",
                         path, t->name);
            break;
        }
        prefixed = has;
        int i = layout_find(l, t->name + (has ? plen : 0));
        if (i < 0) {
            rc = jt_fail(err, "%s: tensor '%s': not a parameter of %s (unknown tensor)", path,
                         t->name, CLIP_TEXT_CLASS);
            break;
        }
        const LayoutEntry *e = &l->entries[i];
        int same = t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = t->shape[d] == e->shape[d];
        char es[96], fs[256];
        if (!same) {
            rc = jt_fail(err, "%s: tensor '%s': shape %s but the config needs %s", path, t->name,
                         st_shape_str(t->ndim, t->shape, fs, sizeof fs),
                         layout_shape_str(e, es, sizeof es));
        } else if (!st_dtype_is_float(t->dtype)) {
            rc = jt_fail(err, "%s: tensor '%s': dtype %s is not a float type (F32, F16, BF16, F64)",
                         path, t->name, st_dtype_name(t->dtype));
        }
        src[i] = j;
    }
    for (int i = 0; i < l->count && rc == JT_OK; i++)
        if (src[i] < 0) {
            char es[96];
            rc = jt_fail(err, "%s: tensor '%s%s': missing (the model needs it, shape %s)", path,
                         prefixed == 1 ? PREFIX : "", l->entries[i].name,
                         layout_shape_str(&l->entries[i], es, sizeof es));
        }
    /* Read into a scratch slab, so that a failure leaves the parameters unchanged. */
    float *slab = rc == JT_OK ? xmalloc((l->total ? l->total : 1) * sizeof *slab) : NULL;
    for (int i = 0; i < l->count && rc == JT_OK; i++) {
        const LayoutEntry *e = &l->entries[i];
        char what[2 * LAYOUT_NAME_MAX];
        snprintf(what, sizeof what, "tensor '%s'", f.tensors[src[i]].name);
        rc = st_read_f32(&f, src[i], slab + e->offset, err);
        if (rc == JT_OK) rc = jt_check_finite(slab + e->offset, e->numel, path, what, err);
    }
    if (rc == JT_OK) memcpy(net->params, slab, l->total * sizeof *slab);
    free(slab);
    free(src);
    st_close(&f);
    return rc;
}

int clip_text_load(ClipText **out, const char *dir, JtError *err) {
    *out = NULL;
    char *cfg_path = path_join(dir, "config.json");
    char *w_path = path_join(dir, CLIP_TEXT_WEIGHTS_FILE);
    char *text = NULL;
    void *root = NULL;
    ClipTextConfig cfg;
    ClipText *net = NULL;
    int rc = cf_read_file(cfg_path, &text, err);
    if (rc == JT_OK) rc = cf_json_parse(text, cfg_path, &root, err);
    if (rc == JT_OK) rc = clip_text_config_from_json(&cfg, root, cfg_path, err);
    if (rc == JT_OK) rc = clip_text_create(&net, &cfg, err);
    if (rc == JT_OK) rc = clip_text_load_weights(net, w_path, err);
    if (rc == JT_OK) {
        *out = net;
    } else {
        clip_text_free(net);
    }
    cf_json_free(root);
    free(text);
    free(cfg_path);
    free(w_path);
    return rc;
}

/* ---- forward ---- */

/* Encoder layers [0, n) on x (D, L, 1); returns the hidden state after them. */
static int build_layers(Graph *g, const ClipTextConfig *c, int x, int from, int to) {
    char p[LAYOUT_NAME_MAX];
    int h = x;
    const float eps = c->layer_norm_eps;
    const NodeKind act = c->hidden_act == CLIP_ACT_GELU ? NODE_GELU : NODE_QUICK_GELU;
    for (int i = from; i < to; i++) {
        snprintf(p, sizeof p, "encoder.layers.%d.layer_norm1", i);
        int n1 = graph_layernorm(g, h, eps, p);
        snprintf(p, sizeof p, "encoder.layers.%d.self_attn", i);
        int a = graph_mha(g, n1, -1, c->num_attention_heads, 1, p, ATTN_NAMES);
        h = graph_add(g, h, a, 1.0f);
        snprintf(p, sizeof p, "encoder.layers.%d.layer_norm2", i);
        int n2 = graph_layernorm(g, h, eps, p);
        snprintf(p, sizeof p, "encoder.layers.%d.mlp.fc1", i);
        int f1 = graph_token_linear(g, n2, c->intermediate_size, p);
        int f = graph_unary(g, act, f1);
        snprintf(p, sizeof p, "encoder.layers.%d.mlp.fc2", i);
        int f2 = graph_token_linear(g, f, c->hidden_size, p);
        h = graph_add(g, h, f2, 1.0f);
    }
    return h;
}

int clip_text_run_create(ClipTextRun **out, const ClipText *net, int B, int L, int skip,
                         JtError *err) {
    *out = NULL;
    const ClipTextConfig *c = &net->cfg;
    const int n = c->num_hidden_layers, D = c->hidden_size;
    if (B < 1) return jt_fail(err, "batch size %d: must be at least 1", B);
    if (L < 1 || L > c->max_position_embeddings)
        return jt_fail(
            err, "%d tokens per prompt: the text encoder takes 1 to %d (max_position_embeddings)",
            L, c->max_position_embeddings);
    if (skip < 0 || skip >= n)
        return jt_fail(err, "clip skip %d: must be 0 to %d for a %d-layer text encoder", skip,
                       n - 1, n);
    ClipTextRun *r = xcalloc(1, sizeof *r);
    r->B = B;
    r->L = L;
    r->skip = skip;
    graph_init(&r->graph, &net->layout);
    int x = graph_input(&r->graph, GRAPH_INPUT_IMAGE, D, L, 1);
    int mid = build_layers(&r->graph, c, x, 0, n - skip);
    int last = skip ? build_layers(&r->graph, c, mid, n - skip, n) : mid;
    /* output 0: last_hidden_state (pooler_output reads it); output 1 with a skip: the clip_skip
     * state, final_layer_norm applied to hidden_states[-(skip+1)] */
    graph_output(&r->graph,
                 graph_layernorm(&r->graph, last, c->layer_norm_eps, "final_layer_norm"));
    if (skip)
        graph_output(&r->graph,
                     graph_layernorm(&r->graph, mid, c->layer_norm_eps, "final_layer_norm"));
    JtError gerr;
    if (graph_run_create(&r->run, &r->graph, B, GRAPH_RUN_FORWARD_ONLY, &gerr) != JT_OK) {
        clip_text_run_free(r);
        return jt_fail(err, "a text-encoder batch of %d prompts of %d tokens: %s", B, L, gerr.msg);
    }
    r->x = xmalloc((size_t)B * D * L * sizeof *r->x);
    r->out = xmalloc((size_t)B * D * L * sizeof *r->out);
    *out = r;
    return JT_OK;
}

void clip_text_run_free(ClipTextRun *r) {
    if (!r) return;
    graph_run_free(r->run);
    graph_free(&r->graph);
    free(r->x);
    free(r->out);
    free(r);
}

int clip_text_run_capacity(const ClipTextRun *r) {
    return r->B;
}
int clip_text_run_tokens(const ClipTextRun *r) {
    return r->L;
}

int clip_text_pool_position(const ClipTextConfig *cfg, const int *ids, int L) {
    int best = 0;
    if (cfg->eos_token_id == 2) { /* legacy configs: the EOS is the largest id (first of ties) */
        for (int l = 1; l < L; l++)
            if (ids[l] > ids[best]) best = l;
        return best;
    }
    for (int l = 0; l < L; l++)
        if (ids[l] == cfg->eos_token_id) return l;
    return 0;
}

/* (D, L) channel-major -> (L, D) token-major, one example */
static void to_token_major(float *dst, const float *src, int D, int L) {
    for (int l = 0; l < L; l++)
        for (int d = 0; d < D; d++)
            dst[(size_t)l * D + d] = src[(size_t)d * L + l];
}

int clip_text_forward(const ClipText *net, ClipTextRun *r, int B, const int *ids,
                      float *last_hidden, float *pooled, JtError *err) {
    CHECK(B >= 1 && B <= r->B, "clip_text_forward: batch %d exceeds the run's capacity %d", B,
          r->B);
    const ClipTextConfig *c = &net->cfg;
    const int D = c->hidden_size, L = r->L, V = c->vocab_size;
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            int id = ids[(size_t)b * L + l];
            if (id < 0 || id >= V)
                return jt_fail(err,
                               "token ids: prompt %d, position %d: id %d is outside the "
                               "vocabulary 0..%d",
                               b, l, id, V - 1);
        }
    const float *tok = net->params + net->tok_off, *pos = net->params + net->pos_off;
    for (int b = 0; b < B; b++) {
        float *xb = r->x + (size_t)b * D * L;
        for (int l = 0; l < L; l++) {
            const float *te = tok + (size_t)ids[(size_t)b * L + l] * D, *pe = pos + (size_t)l * D;
            for (int d = 0; d < D; d++)
                xb[(size_t)d * L + l] = te[d] + pe[d];
        }
    }
    graph_set_input(r->run, GRAPH_INPUT_IMAGE, B, r->x);
    graph_forward(r->run, net->params, B);
    if (pooled) {
        graph_get_output(r->run, 0, B, r->out);
        for (int b = 0; b < B; b++) {
            int p = clip_text_pool_position(c, ids + (size_t)b * L, L);
            const float *ob = r->out + (size_t)b * D * L;
            for (int d = 0; d < D; d++)
                pooled[(size_t)b * D + d] = ob[(size_t)d * L + p];
        }
    }
    if (last_hidden) {
        graph_get_output(r->run, r->skip ? 1 : 0, B, r->out);
        for (int b = 0; b < B; b++)
            to_token_major(last_hidden + (size_t)b * L * D, r->out + (size_t)b * D * L, D, L);
    }
    return JT_OK;
}
