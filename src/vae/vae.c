/* vae.c: the AutoencoderKL object (config, parameter slab) and its runs, a thin layer over the
 * network executor (nn/graph.h): a run builds the encoder graph for H x W images and the decoder
 * graph for their h x w latents (vae_graph.c) and a GraphRun of each for its batch capacity. The
 * posterior follows diffusers' DiagonalGaussianDistribution (models/autoencoders/vae.py): mean and
 * log-variance are the channel halves of the moments, logvar = clamp(logvar, -30, 20),
 * std = exp(0.5 logvar), var = exp(logvar), sample = mean + std * noise,
 * kl = 0.5 * sum over (C, H, W) of (mean^2 + var - 1 - logvar). The loss is
 * F.mse_loss(decode(sample), x) + beta * kl.mean(), and its backward runs torch's chain rule in
 * reverse through the same steps (a clamped entry passes no gradient, as torch.clamp). */
#include "nn/nn.h"
#include "vae/vae_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vae_create(Vae **out, const VaeConfig *cfg, JtError *err) {
    *out = NULL;
    if (vae_config_validate(cfg, "config", err) != JT_OK) return JT_ERR;
    Vae *v = xcalloc(1, sizeof *v);
    v->cfg = *cfg;
    layout_init(&v->layout);
    vae_register_params(cfg, &v->layout);
    char what[96];
    snprintf(what, sizeof what, "an AutoencoderKL of %zu parameters", v->layout.total);
    if (jt_check_memory(jt_sat_mul(v->layout.total, sizeof(float)), what, err) != JT_OK) {
        vae_free(v);
        return JT_ERR;
    }
    v->params = xcalloc(v->layout.total, sizeof(float));
    *out = v;
    return JT_OK;
}

void vae_free(Vae *v) {
    if (!v) return;
    layout_free(&v->layout);
    free(v->params);
    free(v);
}

const VaeConfig *vae_config(const Vae *v) {
    return &v->cfg;
}
const ParamLayout *vae_layout(const Vae *v) {
    return &v->layout;
}
size_t vae_num_params(const Vae *v) {
    return v->layout.total;
}
float *vae_params(Vae *v) {
    return v->params;
}
const float *vae_params_const(const Vae *v) {
    return v->params;
}

/* ---- runs ---- */

int vae_run_create(VaeRun **out, const Vae *v, int B, int H, int W, VaeRunMode mode, JtError *err) {
    *out = NULL;
    CHECK(mode == VAE_RUN_TRAIN || mode == VAE_RUN_FORWARD_ONLY, "run mode %d", (int)mode);
    if (B < 1) return jt_fail(err, "batch size %d: must be at least 1", B);
    if (vae_config_check_size(&v->cfg, H, W, "image size", err) != JT_OK) return JT_ERR;
    const int f = vae_config_factor(&v->cfg);
    VaeRun *r = xcalloc(1, sizeof *r);
    r->B = B;
    r->H = H;
    r->W = W;
    r->zc = v->cfg.latent_channels;
    r->zh = H / f;
    r->zw = W / f;
    r->mode = mode;
    vae_build_encoder(v, &r->enc, H, W);
    vae_build_decoder(v, &r->dec, r->zh, r->zw);
    const Tensor *mt = &r->enc.tensors[r->enc.outputs[0]];
    CHECK(mt->C == 2 * r->zc && mt->H == r->zh && mt->W == r->zw,
          "encoder output (%d,%d,%d) for latents (%d,%d,%d)", mt->C, mt->H, mt->W, 2 * r->zc, r->zh,
          r->zw);
    GraphRunMode gm = mode == VAE_RUN_TRAIN ? GRAPH_RUN_TRAIN : GRAPH_RUN_FORWARD_ONLY;
    const char *kind = mode == VAE_RUN_TRAIN ? "training" : "forward";
    JtError gerr;
    if (graph_run_create(&r->enc_run, &r->enc, B, gm, &gerr) != JT_OK) {
        vae_run_free(r);
        return jt_fail(err, "the encoder's %s batch of %d at %dx%d: %s", kind, B, H, W, gerr.msg);
    }
    if (graph_run_create(&r->dec_run, &r->dec, B, gm, &gerr) != JT_OK) {
        const int zh = r->zh, zw = r->zw;
        vae_run_free(r);
        return jt_fail(err, "the decoder's %s batch of %d latents of %dx%d: %s", kind, B, zh, zw,
                       gerr.msg);
    }
    const size_t nz = (size_t)B * r->zc * r->zh * r->zw;
    r->moments = xmalloc(2 * nz * sizeof(float));
    if (mode == VAE_RUN_TRAIN) {
        const size_t nx = (size_t)B * v->cfg.in_channels * H * W;
        const size_t ny = (size_t)B * v->cfg.out_channels * H * W;
        r->mean = xmalloc(nz * sizeof(float));
        r->logvar = xmalloc(nz * sizeof(float));
        r->noise = xmalloc(nz * sizeof(float));
        r->z = xmalloc(nz * sizeof(float));
        r->x = xmalloc(nx * sizeof(float));
        r->decoded = xmalloc(ny * sizeof(float));
    }
    *out = r;
    return JT_OK;
}

void vae_run_free(VaeRun *r) {
    if (!r) return;
    graph_run_free(r->enc_run);
    graph_run_free(r->dec_run);
    graph_free(&r->enc);
    graph_free(&r->dec);
    free(r->moments), free(r->mean), free(r->logvar), free(r->noise), free(r->z), free(r->x);
    free(r->decoded);
    free(r);
}

size_t vae_run_bytes(const VaeRun *r) {
    const size_t nz = (size_t)r->B * r->zc * r->zh * r->zw;
    size_t own = 2 * nz;
    if (r->mode == VAE_RUN_TRAIN) {
        const Tensor *xin = &r->enc.tensors[r->enc.inputs[GRAPH_INPUT_IMAGE].tensor];
        const Tensor *yo = &r->dec.tensors[r->dec.outputs[0]];
        own += 4 * nz +
               (size_t)r->B * ((size_t)xin->C * xin->H * xin->W + (size_t)yo->C * yo->H * yo->W);
    }
    return graph_run_bytes(r->enc_run) + graph_run_bytes(r->dec_run) + own * sizeof(float);
}

int vae_run_capacity(const VaeRun *r) {
    return r->B;
}

void vae_run_latent_shape(const VaeRun *r, int *c, int *h, int *w) {
    *c = r->zc;
    *h = r->zh;
    *w = r->zw;
}

/* ---- encode / sample / decode ---- */

void vae_encode_moments(const Vae *v, VaeRun *r, int B, const float *x, float *moments) {
    CHECK(B >= 1 && B <= r->B, "batch %d exceeds the run's capacity %d", B, r->B);
    graph_set_input(r->enc_run, GRAPH_INPUT_IMAGE, B, x);
    graph_forward(r->enc_run, v->params, B);
    graph_get_output(r->enc_run, 0, B, moments);
}

/* mean and clamped logvar of example-major moments (B, 2z, hw) */
static void split_moments(float *mean, float *logvar, const float *moments, int B, size_t zhw) {
    for (int b = 0; b < B; b++) {
        const float *m = moments + (size_t)b * 2 * zhw;
        memcpy(mean + (size_t)b * zhw, m, zhw * sizeof(float));
        float *lv = logvar + (size_t)b * zhw;
        for (size_t k = 0; k < zhw; k++) {
            float s = m[zhw + k]; /* torch.clamp: NaN stays NaN */
            lv[k] = s < VAE_LOGVAR_MIN ? VAE_LOGVAR_MIN : s > VAE_LOGVAR_MAX ? VAE_LOGVAR_MAX : s;
        }
    }
}

void vae_encode(const Vae *v, VaeRun *r, int B, const float *x, float *mean, float *logvar) {
    vae_encode_moments(v, r, B, x, r->moments);
    split_moments(mean, logvar, r->moments, B, (size_t)r->zc * r->zh * r->zw);
}

void vae_posterior_sample(float *z, const float *mean, const float *logvar, const float *noise,
                          size_t n) {
    for (size_t k = 0; k < n; k++) {
        const float std = expf(0.5f * logvar[k]);
        z[k] = mean[k] + std * noise[k];
    }
}

void vae_decode(const Vae *v, VaeRun *r, int B, const float *z, float *out) {
    CHECK(B >= 1 && B <= r->B, "batch %d exceeds the run's capacity %d", B, r->B);
    graph_set_input(r->dec_run, GRAPH_INPUT_IMAGE, B, z);
    graph_forward(r->dec_run, v->params, B);
    graph_get_output(r->dec_run, 0, B, out);
}

/* ---- the loss ---- */

double vae_loss(const Vae *v, VaeRun *r, int B, const float *x, const float *noise, float beta,
                double *mse, double *kl, float *dec) {
    CHECK(r->mode == VAE_RUN_TRAIN, "vae_loss on a forward-only run (VAE_RUN_FORWARD_ONLY)");
    CHECK(B >= 1 && B <= r->B, "batch %d exceeds the run's capacity %d", B, r->B);
    CHECK(v->cfg.in_channels == v->cfg.out_channels,
          "vae_loss: out_channels %d differs from in_channels %d", v->cfg.out_channels,
          v->cfg.in_channels);
    const size_t zhw = (size_t)r->zc * r->zh * r->zw, nz = (size_t)B * zhw;
    const size_t nx = (size_t)B * v->cfg.in_channels * r->H * r->W;
    memcpy(r->x, x, nx * sizeof(float));
    memcpy(r->noise, noise, nz * sizeof(float));
    vae_encode_moments(v, r, B, r->x, r->moments);
    split_moments(r->mean, r->logvar, r->moments, B, zhw);
    vae_posterior_sample(r->z, r->mean, r->logvar, r->noise, nz);
    vae_decode(v, r, B, r->z, r->decoded);
    if (dec) memcpy(dec, r->decoded, nx * sizeof(float));
    const double rec = mse_forward(r->decoded, r->x, nx);
    double kl_sum = 0; /* sum over the batch of KL_b, in double */
    for (size_t k = 0; k < nz; k++) {
        const double m = r->mean[k], lv = r->logvar[k];
        kl_sum += 0.5 * (m * m + (double)expf(r->logvar[k]) - 1.0 - lv);
    }
    const double kl_mean = kl_sum / B;
    r->loss_B = B;
    r->beta = beta;
    if (mse) *mse = rec;
    if (kl) *kl = kl_mean;
    return rec + (double)beta * kl_mean;
}

void vae_loss_backward(const Vae *v, VaeRun *r, float *dparams) {
    CHECK(r->mode == VAE_RUN_TRAIN, "vae_loss_backward on a forward-only run");
    const int B = r->loss_B;
    CHECK(B >= 1, "vae_loss_backward without a vae_loss");
    const size_t zhw = (size_t)r->zc * r->zh * r->zw, nz = (size_t)B * zhw;
    const size_t nx = (size_t)B * v->cfg.in_channels * r->H * r->W;
    float *ddec = xcalloc(nx, sizeof(float)), *dz = xmalloc(nz * sizeof(float));
    float *dmom = xmalloc(2 * nz * sizeof(float));
    mse_backward(ddec, r->decoded, r->x, nx, 1.0f);
    const float *douts[1] = {ddec};
    float *dinputs[GRAPH_INPUT_KINDS] = {0};
    dinputs[GRAPH_INPUT_IMAGE] = dz;
    graph_backward(r->dec_run, v->params, B, dparams, 0, douts, dinputs);

    /* d(beta * mean_b KL_b) / d(each term of KL_b's sum) = 0.5 * beta / B */
    const float g = 0.5f * (r->beta / (float)B);
    for (int b = 0; b < B; b++)
        for (size_t k = 0; k < zhw; k++) {
            const size_t i = (size_t)b * zhw + k;
            const float m = r->mean[i], lv = r->logvar[i];
            const float raw = r->moments[(size_t)b * 2 * zhw + zhw + k];
            /* z = mean + std * noise: dmean = dz; dstd = dz * noise, std = exp(0.5 lv) */
            float dm = dz[i] + g * (2.0f * m);
            float dlv = 0.5f * (dz[i] * r->noise[i] * expf(0.5f * lv)) + g * expf(lv) - g;
            if (!(raw >= VAE_LOGVAR_MIN && raw <= VAE_LOGVAR_MAX)) dlv = 0.0f;
            dmom[(size_t)b * 2 * zhw + k] = dm;
            dmom[(size_t)b * 2 * zhw + zhw + k] = dlv;
        }
    const float *denc[1] = {dmom};
    graph_backward(r->enc_run, v->params, B, dparams, 0, denc, NULL);
    free(ddec), free(dz), free(dmom);
}
