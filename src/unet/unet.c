/* unet.c: the UNet2DModel object (config, parameter slab) and its runs: allocation of the
 * activation, gradient and saved-tensor arenas for a batch capacity, the forward pass (graph nodes
 * in order) and the backward pass (in reverse, each node accumulating into its inputs' gradients,
 * parameter gradients summed over the batch or one slab per example). */
#include "unet/unet_internal.h"

#include "core/fpenv.h"
#include "core/linalg.h"
#include "core/progress.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

int unet_time_embed_dim(const UNetConfig *cfg) {
    return cfg->time_embedding_dim ? cfg->time_embedding_dim : 4 * cfg->block_out_channels[0];
}

int unet_create(UNet **out, const UNetConfig *cfg, JtError *err) {
    *out = NULL;
    if (unet_config_validate(cfg, "config", err) != JT_OK) return JT_ERR;
    /* the class embedding (num_class_embeds) is being added on another branch; until then the
     * config reads it but the network refuses it rather than ignore it */
    if (cfg->num_class_embeds)
        return jt_fail(err,
                       "config: field 'num_class_embeds': %d: class conditioning is not "
                       "implemented in this build (only null)",
                       cfg->num_class_embeds);
    UNet *net = xcalloc(1, sizeof *net);
    net->cfg = *cfg;
    layout_init(&net->layout);
    unet_register_params(cfg, &net->layout);
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

const UNetConfig *unet_config(const UNet *net) { return &net->cfg; }
const ParamLayout *unet_layout(const UNet *net) { return &net->layout; }
size_t unet_num_params(const UNet *net) { return net->layout.total; }
float *unet_params(UNet *net) { return net->params; }
const float *unet_params_const(const UNet *net) { return net->params; }

/* Floats of parameters one node owns (for the batch-summed gradient buffer). */
static size_t node_param_floats(const UNet *net, const UNetRun *r, const Node *n) {
    const Tensor *in = n->in0 >= 0 ? &r->tensors[n->in0] : NULL;
    const Tensor *out = &r->tensors[n->out];
    switch (n->kind) {
    case NODE_CONV: return (size_t)out->C * in->C * n->k * n->k + out->C;
    case NODE_LINEAR: return (size_t)out->C * in->C + out->C;
    case NODE_GROUPNORM: /* fall through */
    case NODE_GN_SILU: return 2 * (size_t)in->C;
    case NODE_ATTN: return 4 * ((size_t)in->C * in->C + in->C);
    default: return 0;
    }
}

static size_t node_scratch_floats(const UNetRun *r, const Node *n) {
    const Tensor *in = n->in0 >= 0 ? &r->tensors[n->in0] : NULL;
    const Tensor *out = &r->tensors[n->out];
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
    return 0;
}

int unet_run_create(UNetRun **out, const UNet *net, int B, int H, int W, JtError *err) {
    *out = NULL;
    int f = 1 << (net->cfg.n_levels - 1);
    if (B < 1) return jt_fail(err, "batch size %d: must be at least 1", B);
    if (H < 1 || W < 1 || H % f || W % f)
        return jt_fail(err,
                       "image size %dx%d: a %d-level U-Net needs height and width divisible by %d",
                       H, W, net->cfg.n_levels, f);
    UNetRun *r = xcalloc(1, sizeof *r);
    r->cap_B = B;
    r->H = H;
    r->W = W;
    unet_build_graph(net, r);

    size_t scratch = 0, gradbuf = 0;
    for (int i = 0; i < r->n_nodes; i++) {
        size_t s = node_scratch_floats(r, &r->nodes[i]);
        size_t g = node_param_floats(net, r, &r->nodes[i]);
        if (s > scratch) scratch = s;
        if (g > gradbuf) gradbuf = g;
    }
    size_t act, aux;
    if (!jt_mul_size(r->act_floats, (size_t)B, &act) ||
        !jt_mul_size(r->aux_per_sample, (size_t)B, &aux)) {
        unet_run_free(r);
        return jt_fail(err, "batch %d of %dx%d images: activation memory overflows", B, H, W);
    }
    gradbuf = grad_slots_floats(B, gradbuf); /* at most NN_GRAD_SLOTS copies of the largest op's */
    r->act = xmalloc(act * sizeof(float));
    r->grad = xmalloc(act * sizeof(float));
    r->aux = xmalloc((aux ? aux : 1) * sizeof(float));
    r->t = xcalloc((size_t)B, sizeof(float));
    r->ctx.nthreads = omp_get_max_threads();
    r->ctx.thread_floats = scratch;
    r->thread_buf = xmalloc((scratch * (size_t)r->ctx.nthreads + 1) * sizeof(float));
    r->ctx.thread_buf = r->thread_buf;
    r->grad_buf = xmalloc((gradbuf + 1) * sizeof(float));
    r->ctx.grad_buf = r->grad_buf;
    r->ctx.grad_floats = gradbuf;
    la_blas_single_threaded(); /* ops parallelise over the batch themselves */
    fpenv_flush_denormals();
    *out = r;
    return JT_OK;
}

void unet_run_free(UNetRun *r) {
    if (!r) return;
    free(r->tensors);
    free(r->nodes);
    free(r->act);
    free(r->grad);
    free(r->aux);
    free(r->t);
    free(r->thread_buf);
    free(r->grad_buf);
    free(r);
}

size_t unet_run_bytes(const UNetRun *r) {
    size_t B = (size_t)r->cap_B;
    return sizeof(float) * (2 * B * r->act_floats + B * r->aux_per_sample + B +
                            r->ctx.thread_floats * (size_t)r->ctx.nthreads + r->ctx.grad_floats);
}

void unet_run_profile(UNetRun *r, int on) {
    r->profile = on;
    if (on) r->conv_s = r->other_s = 0.0;
}

void unet_run_profile_seconds(const UNetRun *r, double *conv_s, double *other_s) {
    *conv_s = r->conv_s;
    *other_s = r->other_s;
}

static void profile_add(UNetRun *r, const Node *n, double t0) {
    if (!r->profile) return;
    const double dt = progress_now() - t0;
    if (n->kind == NODE_CONV)
        r->conv_s += dt;
    else
        r->other_s += dt;
}

static float *act(const UNetRun *r, int id) { return r->act + (size_t)r->cap_B * r->tensors[id].off; }
static float *grad(const UNetRun *r, int id) {
    return r->grad + (size_t)r->cap_B * r->tensors[id].off;
}
static float *aux(const UNetRun *r, const Node *n) { return r->aux + (size_t)r->cap_B * n->aux; }

void unet_forward(const UNet *net, UNetRun *r, int B, float *out, const float *x, const float *t) {
    CHECK(B >= 1 && B <= r->cap_B, "batch %d exceeds the run's capacity %d", B, r->cap_B);
    const UNetConfig *cfg = &net->cfg;
    const float *P = net->params;
    const Tensor *tin = &r->tensors[r->input];
    memcpy(act(r, r->input), x, sizeof(float) * (size_t)B * tin->C * tin->H * tin->W);
    memcpy(r->t, t, sizeof(float) * (size_t)B);

    for (int i = 0; i < r->n_nodes; i++) {
        const Node *n = &r->nodes[i];
        const Tensor *ti = n->in0 >= 0 ? &r->tensors[n->in0] : NULL;
        const Tensor *to = &r->tensors[n->out];
        float *o = act(r, n->out);
        const float *a = n->in0 >= 0 ? act(r, n->in0) : NULL;
        const float *b = n->in1 >= 0 ? act(r, n->in1) : NULL;
        size_t numel = (size_t)B * to->C * to->H * to->W;
        const double t0 = r->profile ? progress_now() : 0.0;
        switch (n->kind) {
        case NODE_CENTER:
            for (size_t k = 0; k < numel; k++) o[k] = 2.0f * a[k] - 1.0f;
            break;
        case NODE_TIMESTEP:
            timestep_embedding(o, r->t, B, to->C, cfg->flip_sin_to_cos, cfg->freq_shift);
            break;
        case NODE_LINEAR: {
            LinearDims d = {B, ti->C, to->C};
            linear_forward(o, a, P + n->w, P + n->b, &d, &r->ctx);
            break;
        }
        case NODE_SILU: silu_forward(o, a, numel); break;
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
        case NODE_ADD_CHVEC: add_channel_vec_forward(o, a, b, B, to->C, to->H * to->W); break;
        case NODE_ADD: add_scaled_forward(o, a, b, n->scale, numel); break;
        case NODE_ATTN: {
            AttnDims d = {B, ti->C, ti->H * ti->W, n->heads, n->scale};
            const size_t *p = n->p;
            attention_forward(o, aux(r, n), a, b, P + p[0], P + p[1], P + p[2], P + p[3],
                              P + p[4], P + p[5], P + p[6], P + p[7], &d, &r->ctx);
            break;
        }
        case NODE_UPSAMPLE: upsample2x_forward(o, a, B, ti->C, ti->H, ti->W); break;
        case NODE_CONCAT: {
            const Tensor *t1 = &r->tensors[n->in1];
            concat_forward(o, a, b, B, ti->C, t1->C, ti->H * ti->W);
            break;
        }
        }
        profile_add(r, n, t0);
    }
    const Tensor *tout = &r->tensors[r->output];
    memcpy(out, act(r, r->output), sizeof(float) * (size_t)B * tout->C * tout->H * tout->W);
}

void unet_backward(const UNet *net, UNetRun *r, int B, float *dparams, size_t example_stride,
                   const float *dout, float *dx) {
    CHECK(B >= 1 && B <= r->cap_B, "batch %d exceeds the run's capacity %d", B, r->cap_B);
    CHECK(example_stride == 0 || example_stride >= net->layout.total,
          "example stride %zu is smaller than the parameter count %zu", example_stride,
          net->layout.total);
    const float *P = net->params;
    r->ctx.example_stride = example_stride;
    /* The gradient arena starts at zero (backward ops accumulate); zeroed on every thread. */
    const size_t n_grad = (size_t)r->cap_B * r->act_floats, chunk = (size_t)1 << 18;
#pragma omp parallel for schedule(static)
    for (size_t c0 = 0; c0 < n_grad; c0 += chunk)
        memset(r->grad + c0, 0, sizeof(float) * (n_grad - c0 < chunk ? n_grad - c0 : chunk));
    const Tensor *tout = &r->tensors[r->output];
    memcpy(grad(r, r->output), dout, sizeof(float) * (size_t)B * tout->C * tout->H * tout->W);

    for (int i = r->n_nodes - 1; i >= 0; i--) {
        const Node *n = &r->nodes[i];
        const Tensor *ti = n->in0 >= 0 ? &r->tensors[n->in0] : NULL;
        const Tensor *to = &r->tensors[n->out];
        const float *go = grad(r, n->out);
        /* The network input's gradient is only computed when the caller asks for it. */
        float *ga = n->in0 >= 0 && (n->in0 != r->input || dx) ? grad(r, n->in0) : NULL;
        float *gb = n->in1 >= 0 ? grad(r, n->in1) : NULL;
        const float *a = n->in0 >= 0 ? act(r, n->in0) : NULL;
        size_t numel = (size_t)B * to->C * to->H * to->W;
        const double t0 = r->profile ? progress_now() : 0.0;
        switch (n->kind) {
        case NODE_CENTER:
            if (ga)
                for (size_t k = 0; k < numel; k++) ga[k] += 2.0f * go[k];
            break;
        case NODE_TIMESTEP: break;
        case NODE_LINEAR: {
            LinearDims d = {B, ti->C, to->C};
            linear_backward(ga, dparams + n->w, dparams + n->b, go, a, P + n->w, &d, &r->ctx);
            break;
        }
        case NODE_SILU:
            if (ga) silu_backward(ga, go, a, numel);
            break;
        case NODE_CONV: {
            Conv2dDims d = {B, ti->C, to->C, ti->H, ti->W, n->k, n->stride, n->pad};
            conv2d_backward(ga, dparams + n->w, dparams + n->b, go, a, P + n->w, &d, &r->ctx);
            break;
        }
        case NODE_GROUPNORM:
        case NODE_GN_SILU: {
            GroupNormDims d = {B, ti->C, ti->H * ti->W, n->groups, n->eps};
            float *mean = aux(r, n), *rstd = mean + (size_t)r->cap_B * n->groups;
            if (n->kind == NODE_GN_SILU)
                groupnorm_silu_backward(ga, dparams + n->w, dparams + n->b, go, a, mean, rstd,
                                        P + n->w, P + n->b, &d, &r->ctx);
            else
                groupnorm_backward(ga, dparams + n->w, dparams + n->b, go, a, mean, rstd, P + n->w,
                                   &d, &r->ctx);
            break;
        }
        case NODE_ADD_CHVEC: add_channel_vec_backward(ga, gb, go, B, to->C, to->H * to->W); break;
        case NODE_ADD: add_scaled_backward(ga, gb, go, n->scale, numel); break;
        case NODE_ATTN: {
            AttnDims d = {B, ti->C, ti->H * ti->W, n->heads, n->scale};
            const size_t *p = n->p;
            float *const dp[8] = {dparams + p[0], dparams + p[1], dparams + p[2], dparams + p[3],
                                  dparams + p[4], dparams + p[5], dparams + p[6], dparams + p[7]};
            attention_backward(ga, gb, dp, go, a, aux(r, n), P + p[0], P + p[2], P + p[4],
                               P + p[6], &d, &r->ctx);
            break;
        }
        case NODE_UPSAMPLE:
            if (ga) upsample2x_backward(ga, go, B, ti->C, ti->H, ti->W);
            break;
        case NODE_CONCAT: {
            const Tensor *t1 = &r->tensors[n->in1];
            concat_backward(ga, gb, go, B, ti->C, t1->C, ti->H * ti->W);
            break;
        }
        }
        profile_add(r, n, t0);
    }
    if (dx) {
        const Tensor *tin = &r->tensors[r->input];
        memcpy(dx, grad(r, r->input), sizeof(float) * (size_t)B * tin->C * tin->H * tin->W);
    }
}
