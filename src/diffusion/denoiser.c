/* denoiser.c: see denoiser.h. The network run, the noised inputs and the last output live here so
 * that train, attribution and LDS share one definition of "add noise, run the network, compare". */
#include "diffusion/denoiser.h"

#include "nn/nn.h"

#include <stdlib.h>
#include <string.h>

struct Denoiser {
    const UNet *net;
    const NoiseSchedule *sched;
    DenoiserMode mode;
    int capacity, H, W;
    int K;       /* num_class_embeds, 0 when unconditional */
    int L, Dctx; /* context tokens and width (cross_attention_dim); 0, 0 without cross-attention */
    size_t D_in, D_out;
    UNetRun *run;
    float *xt;             /* (capacity, D_in) noised inputs; guidance: the doubled batch */
    float *tf;             /* (capacity) timesteps as float */
    float *out;            /* (capacity, D_out) eps_hat */
    float *dout;           /* (capacity, D_out) d loss / d eps_hat */
    int *labels;           /* (capacity) guidance: [null; labels] */
    float *ctx;            /* (capacity, L, Dctx) guidance: [uncond; contexts], or NULL */
    const float *last_eps; /* the noise of the last denoiser_loss (caller's buffer) */
    int last_B;
};

int denoiser_create(Denoiser **out, const UNet *net, const NoiseSchedule *sched, int capacity,
                    int H, int W, DenoiserMode mode, JtError *err) {
    return denoiser_create_ctx(out, net, sched, capacity, H, W, 0, mode, err);
}

int denoiser_create_ctx(Denoiser **out, const UNet *net, const NoiseSchedule *sched, int capacity,
                        int H, int W, int ctx_len, DenoiserMode mode, JtError *err) {
    *out = NULL;
    if (capacity < 1) return jt_fail(err, "network batch %d: must be at least 1", capacity);
    const UNetConfig *cfg = unet_config(net);
    Denoiser *d = xcalloc(1, sizeof *d);
    d->net = net;
    d->sched = sched;
    d->mode = mode;
    d->capacity = capacity;
    d->H = H;
    d->W = W;
    d->K = unet_num_classes(net);
    d->Dctx = unet_cross_attention_dim(net);
    d->L = d->Dctx > 0 ? ctx_len : 0;
    d->D_in = (size_t)cfg->in_channels * H * W;
    d->D_out = (size_t)cfg->out_channels * H * W;
    UNetRunMode rm = mode == DENOISER_TRAIN ? UNET_RUN_TRAIN : UNET_RUN_FORWARD_ONLY;
    if (unet_run_create_ctx(&d->run, net, capacity, H, W, ctx_len, rm, err) != JT_OK) {
        free(d);
        return JT_ERR;
    }
    const size_t B = (size_t)capacity;
    d->xt = xmalloc(B * d->D_in * sizeof(float));
    d->tf = xmalloc(B * sizeof(float));
    d->out = xmalloc(B * d->D_out * sizeof(float));
    d->dout = mode == DENOISER_TRAIN ? xmalloc(B * d->D_out * sizeof(float)) : NULL;
    d->labels = xmalloc(B * sizeof(int));
    d->ctx = d->L > 0 ? xmalloc(B * (size_t)d->L * d->Dctx * sizeof(float)) : NULL;
    *out = d;
    return JT_OK;
}

void denoiser_free(Denoiser *d) {
    if (!d) return;
    unet_run_free(d->run);
    free(d->xt);
    free(d->tf);
    free(d->out);
    free(d->dout);
    free(d->labels);
    free(d->ctx);
    free(d);
}

size_t denoiser_bytes(const Denoiser *d) {
    const size_t B = (size_t)d->capacity;
    return sizeof *d + unet_run_bytes(d->run) +
           sizeof(float) *
               (B * d->D_in + B + B * d->D_out * (d->dout ? 2 : 1) + B * (size_t)d->L * d->Dctx) +
           B * sizeof(int);
}

const UNet *denoiser_net(const Denoiser *d) {
    return d->net;
}
int denoiser_capacity(const Denoiser *d) {
    return d->capacity;
}
int denoiser_num_classes(const Denoiser *d) {
    return d->K > 0 ? d->K - 1 : 0;
}
int denoiser_null_class(const Denoiser *d) {
    return d->K > 0 ? d->K - 1 : -1;
}
int denoiser_context_len(const Denoiser *d) {
    return d->L;
}
int denoiser_context_dim(const Denoiser *d) {
    return d->Dctx;
}

int denoiser_check_label(const Denoiser *d, int label, const char *what, JtError *err) {
    if (d->K == 0)
        return jt_fail(err,
                       "%s: class %d given, but the model is unconditional (no num_class_embeds)",
                       what, label);
    if (label < 0 || label >= d->K)
        return jt_fail(err,
                       "%s: class %d is out of range: the model has classes 0..%d and the null "
                       "class %d",
                       what, label, d->K - 2, d->K - 1);
    return JT_OK;
}

static const int *cond_labels(const Denoiser *d, int B, const Cond *cond) {
    const int *labels = cond ? cond->labels : NULL;
    CHECK((labels != NULL) == (d->K > 0), "labels %s for a%s model", labels ? "given" : "missing",
          d->K > 0 ? " class-conditional" : "n unconditional");
    for (int b = 0; labels && b < B; b++)
        CHECK(labels[b] >= 0 && labels[b] < d->K, "label %d of example %d outside 0..%d", labels[b],
              b, d->K - 1);
    return labels;
}

static const float *cond_context(const Denoiser *d, const Cond *cond) {
    const float *ctx = cond ? cond->context : NULL;
    CHECK((ctx != NULL) == (d->L > 0), "context %s for a model %s cross-attention",
          ctx ? "given" : "missing", d->L > 0 ? "with" : "without");
    return ctx;
}

void denoiser_eps(Denoiser *d, int B, float *eps, const float *x_t, const float *t,
                  const Cond *cond) {
    CHECK(B >= 1 && B <= d->capacity, "batch %d outside 1..%d", B, d->capacity);
    unet_forward_ctx(d->net, d->run, B, eps, x_t, t, cond_labels(d, B, cond),
                     cond_context(d, cond));
}

void denoiser_eps_guided(Denoiser *d, int B, float *eps, const float *x_t, const float *t,
                         const Cond *cond, float w) {
    CHECK(d->K > 0 || d->L > 0, "guidance needs a conditional model");
    CHECK(B >= 1 && 2 * B <= d->capacity, "guided batch %d needs capacity %d, have %d", B, 2 * B,
          d->capacity);
    const int *labels = cond_labels(d, B, cond);
    const float *ctx = cond_context(d, cond);
    if (ctx) {
        CHECK(cond->uncond_context != NULL, "guidance needs the unconditional context");
        const size_t LD = (size_t)d->L * d->Dctx;
        for (int b = 0; b < B; b++)
            memcpy(d->ctx + (size_t)b * LD, cond->uncond_context, LD * sizeof(float));
        memcpy(d->ctx + (size_t)B * LD, ctx, (size_t)B * LD * sizeof(float));
    }
    const size_t nD = (size_t)B * d->D_in;
    memcpy(d->xt, x_t, nD * sizeof(float));
    memcpy(d->xt + nD, x_t, nD * sizeof(float));
    for (int b = 0; b < B; b++) {
        if (labels) {
            d->labels[b] = d->K - 1;
            d->labels[B + b] = labels[b];
        }
        d->tf[b] = d->tf[B + b] = t[b];
    }
    unet_forward_ctx(d->net, d->run, 2 * B, d->out, d->xt, d->tf, labels ? d->labels : NULL,
                     ctx ? d->ctx : NULL);
    const size_t nO = (size_t)B * d->D_out;
    const float *eu = d->out, *ec = d->out + nO;
    for (size_t i = 0; i < nO; i++)
        eps[i] = eu[i] + w * (ec[i] - eu[i]);
}

const float *denoiser_noised_eps(Denoiser *d, int B, const float *x0, const int *t,
                                 const float *eps, const Cond *cond) {
    CHECK(d->sched != NULL, "the noising loss needs the noise schedule");
    CHECK(B >= 1 && B <= d->capacity, "batch %d outside 1..%d", B, d->capacity);
    const int T = d->sched->T;
    for (int b = 0; b < B; b++) {
        CHECK(t[b] >= 0 && t[b] < T, "timestep %d of example %d outside 0..%d", t[b], b, T - 1);
        d->tf[b] = (float)t[b];
    }
    sched_add_noise(d->xt, x0, eps, t, (size_t)B, d->D_in, d->sched);
    unet_forward_ctx(d->net, d->run, B, d->out, d->xt, d->tf, cond_labels(d, B, cond),
                     cond_context(d, cond));
    d->last_eps = NULL; /* no loss to differentiate until denoiser_loss sets it */
    d->last_B = B;
    return d->out;
}

double denoiser_loss(Denoiser *d, int B, const float *x0, const int *t, const float *eps,
                     const Cond *cond, double *per_example) {
    /* The loss compares eps_hat with the noise that was added: same shape needed. */
    CHECK(d->D_in == d->D_out, "the noising loss needs in_channels == out_channels (%zu vs %zu)",
          d->D_in, d->D_out);
    denoiser_noised_eps(d, B, x0, t, eps, cond);
    d->last_eps = eps;
    const size_t D = d->D_out;
    if (per_example)
        for (int b = 0; b < B; b++)
            per_example[b] = mse_forward(d->out + (size_t)b * D, eps + (size_t)b * D, D);
    return mse_forward(d->out, eps, (size_t)B * D);
}

const float *denoiser_last_eps(const Denoiser *d) {
    return d->out;
}

void denoiser_loss_backward(Denoiser *d, int B, LossReduction reduction, float *dparams,
                            size_t example_stride) {
    CHECK(d->mode == DENOISER_TRAIN, "backward on a forward-only denoiser");
    CHECK(d->last_eps && B == d->last_B, "backward of batch %d after a loss of batch %d", B,
          d->last_B);
    const size_t D = d->D_out, n = (size_t)B * D;
    const float *y = d->out, *e = d->last_eps;
    if (reduction == LOSS_BATCH_MEAN) {
        CHECK(example_stride == 0, "a batch-mean gradient is summed (example stride 0)");
        memset(d->dout, 0, n * sizeof(float));
        mse_backward(d->dout, y, e, n, 1.0f);
    } else {
        /* torch's mse_loss backward of one example's mean: (pred - target) * (2 / D) */
        const float norm = (float)(2.0 / (double)D);
        for (size_t i = 0; i < n; i++)
            d->dout[i] = (y[i] - e[i]) * norm;
    }
    unet_backward(d->net, d->run, B, dparams, example_stride, d->dout, NULL);
}

void denoiser_backward(Denoiser *d, int B, const float *dout, float *dparams,
                       size_t example_stride) {
    CHECK(d->mode == DENOISER_TRAIN, "backward on a forward-only denoiser");
    unet_backward(d->net, d->run, B, dparams, example_stride, dout, NULL);
}

void denoiser_select_params(Denoiser *d, const size_t *compact) {
    CHECK(d->mode == DENOISER_TRAIN, "parameter selection on a forward-only denoiser");
    unet_run_select_params(d->run, compact);
}

size_t denoiser_grad_params(const Denoiser *d) {
    return d->mode == DENOISER_TRAIN ? unet_run_grad_params(d->run) : 0;
}
