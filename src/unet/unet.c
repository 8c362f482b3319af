/* unet.c: the UNet2DModel / UNet2DConditionModel object (config, parameter slab) and its runs, a
 * thin layer over the network executor (nn/graph.h): a run builds the graph for its image size
 * and context length (unet_graph.c, unet_graph_cond.c) and a GraphRun for its batch capacity;
 * forward sets the image, timestep, label and context inputs. */
#include "unet/unet_internal.h"

#include <stdio.h>
#include <stdlib.h>

int unet_time_embed_dim(const UNetConfig *cfg) {
    return cfg->time_embedding_dim ? cfg->time_embedding_dim : 4 * cfg->block_out_channels[0];
}

int unet_create(UNet **out, const UNetConfig *cfg, JtError *err) {
    *out = NULL;
    if (unet_config_validate(cfg, "config", err) != JT_OK) return JT_ERR;
    UNet *net = xcalloc(1, sizeof *net);
    net->cfg = *cfg;
    layout_init(&net->layout);
    unet_register_params(cfg, &net->layout);
    /* the slab is checked against this machine before it is allocated (the config's stated
     * limits keep the count itself within a size_t) */
    char what[96];
    snprintf(what, sizeof what, "a U-Net of %zu parameters", net->layout.total);
    if (jt_check_memory(jt_sat_mul(net->layout.total, sizeof(float)), what, err) != JT_OK) {
        unet_free(net);
        return JT_ERR;
    }
    net->params = xcalloc(net->layout.total, sizeof(float));
    *out = net;
    return JT_OK;
}

void unet_free(UNet *net) {
    if (!net) return;
    layout_free(&net->layout);
    free(net->params);
    free(net);
}

const UNetConfig *unet_config(const UNet *net) {
    return &net->cfg;
}
const ParamLayout *unet_layout(const UNet *net) {
    return &net->layout;
}
size_t unet_num_params(const UNet *net) {
    return net->layout.total;
}
float *unet_params(UNet *net) {
    return net->params;
}
const float *unet_params_const(const UNet *net) {
    return net->params;
}
int unet_num_classes(const UNet *net) {
    return net->cfg.num_class_embeds;
}

int unet_cross_attention_dim(const UNet *net) {
    const UNetConfig *c = &net->cfg;
    if (!c->cond) return 0;
    int any = c->mid_block_type == 0;
    for (int i = 0; i < c->n_levels; i++)
        any |= c->down_attn[i] | c->up_attn[i];
    if (!any) return 0;
    return c->encoder_hid_dim > 0 ? c->encoder_hid_dim : c->cross_attention_dim;
}

int unet_run_create(UNetRun **out, const UNet *net, int B, int H, int W, UNetRunMode mode,
                    JtError *err) {
    return unet_run_create_ctx(out, net, B, H, W, 0, mode, err);
}

int unet_run_create_ctx(UNetRun **out, const UNet *net, int B, int H, int W, int ctx_len,
                        UNetRunMode mode, JtError *err) {
    *out = NULL;
    CHECK(mode == UNET_RUN_TRAIN || mode == UNET_RUN_FORWARD_ONLY, "run mode %d", (int)mode);
    int f = 1 << (net->cfg.n_levels - 1);
    if (B < 1) return jt_fail(err, "batch size %d: must be at least 1", B);
    const int D = unet_cross_attention_dim(net);
    if (D > 0 && ctx_len < 1)
        return jt_fail(err,
                       "context length %d: this UNet2DConditionModel cross-attends to a context "
                       "of at least 1 token of width %d",
                       ctx_len, D);
    if (D == 0 && ctx_len != 0)
        return jt_fail(err, "context length %d: this %s has no cross-attention (no context)",
                       ctx_len, net->cfg.cond ? "UNet2DConditionModel" : "UNet2DModel");
    if (ctx_len > UNET_MAX_CONTEXT_LEN)
        return jt_fail(err, "context length %d: jtrak supports at most %d tokens", ctx_len,
                       UNET_MAX_CONTEXT_LEN);
    if (H < 1 || W < 1 || H % f || W % f)
        return jt_fail(err,
                       "image size %dx%d: a %d-level U-Net needs height and width divisible by %d",
                       H, W, net->cfg.n_levels, f);
    UNetRun *r = xcalloc(1, sizeof *r);
    r->H = H;
    r->W = W;
    r->mode = mode;
    r->ctx_len = ctx_len;
    unet_build_graph(net, &r->graph, H, W, ctx_len);
    GraphRunMode gm = mode == UNET_RUN_TRAIN ? GRAPH_RUN_TRAIN : GRAPH_RUN_FORWARD_ONLY;
    JtError gerr;
    if (graph_run_create(&r->run, &r->graph, B, gm, &gerr) != JT_OK) {
        unet_run_free(r);
        return jt_fail(err, "a %s batch of %d at %dx%d: %s",
                       mode == UNET_RUN_TRAIN ? "training" : "forward", B, H, W, gerr.msg);
    }
    *out = r;
    return JT_OK;
}

void unet_run_free(UNetRun *r) {
    if (!r) return;
    graph_run_free(r->run);
    graph_free(&r->graph);
    free(r);
}

size_t unet_run_bytes(const UNetRun *r) {
    return graph_run_bytes(r->run);
}
void unet_run_profile(UNetRun *r, int on) {
    graph_run_profile(r->run, on);
}
void unet_run_profile_seconds(const UNetRun *r, double *conv_s, double *other_s) {
    graph_run_profile_seconds(r->run, conv_s, other_s);
}

void unet_forward(const UNet *net, UNetRun *r, int B, float *out, const float *x, const float *t,
                  const int *labels) {
    unet_forward_ctx(net, r, B, out, x, t, labels, NULL);
}

void unet_forward_ctx(const UNet *net, UNetRun *r, int B, float *out, const float *x,
                      const float *t, const int *labels, const float *context) {
    const int cap = graph_run_capacity(r->run);
    CHECK(B >= 1 && B <= cap, "batch %d exceeds the run's capacity %d", B, cap);
    const int K = net->cfg.num_class_embeds;
    CHECK((labels != NULL) == (K > 0),
          "unet_forward: class labels %s for a model with num_class_embeds %d",
          labels ? "given" : "missing", K);
    for (int b = 0; labels && b < B; b++)
        CHECK(labels[b] >= 0 && labels[b] < K,
              "unet_forward: label %d of example %d is outside 0..%d", labels[b], b, K - 1);
    graph_set_input(r->run, GRAPH_INPUT_IMAGE, B, x);
    graph_set_input(r->run, GRAPH_INPUT_TIMESTEP, B, t);
    if (labels) graph_set_input(r->run, GRAPH_INPUT_LABELS, B, labels);
    CHECK((context != NULL) == (r->ctx_len > 0),
          "unet_forward: context %s for a run with context length %d",
          context ? "given" : "missing", r->ctx_len);
    if (context) graph_set_input(r->run, GRAPH_INPUT_CONTEXT, B, context);
    graph_forward(r->run, net->params, B);
    graph_get_output(r->run, 0, B, out);
}

void unet_backward(const UNet *net, UNetRun *r, int B, float *dparams, size_t example_stride,
                   const float *dout, float *dx) {
    CHECK(r->mode == UNET_RUN_TRAIN, "unet_backward on a forward-only run (UNET_RUN_FORWARD_ONLY)");
    float *dinputs[GRAPH_INPUT_KINDS] = {0};
    dinputs[GRAPH_INPUT_IMAGE] = dx;
    graph_backward(r->run, net->params, B, dparams, example_stride, &dout, dinputs);
}

void unet_run_select_params(UNetRun *r, const size_t *compact) {
    CHECK(r->mode == UNET_RUN_TRAIN, "unet_run_select_params on a forward-only run");
    graph_run_select_params(r->run, compact);
}

size_t unet_run_grad_params(const UNetRun *r) {
    return graph_run_grad_floats(r->run);
}
