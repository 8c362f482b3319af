/* outfn.c: the model-output functions of attribution (method.md 1.3, 1.4) and their per-example
 * gradients (method.md 2.2, Journey-TRAK's torch.func.vmap(grad(...))), computed from batched
 * forward/backward passes of the denoiser (diffusion/denoiser.h: the one noising loss, each
 * example with its own conditioning) with one gradient slab per example (the example stride),
 * and the keyed random draws (timesteps and noise) of attribution.
 *
 * Per draw slot s the batch is x_t[b] = sqrt(abar) x0[b] + sqrt(1 - abar) eps[b, s] at t[b, s]
 * (diffusers' add_noise), one forward, d f / d eps_theta per example, one backward accumulating
 * into grads + b * P. Every op of the U-Net loops over the batch and calls BLAS once per sample
 * with the shapes of that sample alone, so example b's slab is bitwise what a batch of one
 * example gives (tests/test_outfn.c checks it). The S draws accumulate in the slabs: the sum over
 * draws is Journey-TRAK's in-place accumulation (method.md 1.3, 1.4: a sum, not a mean). */
#include "attrib/outfn.h"

#include "core/rng.h"
#include "diffusion/denoiser.h"
#include "nn/nn.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct GradEngine {
    const UNet *net;
    const NoiseSchedule *sched;
    int batch;
    int K;        /* num_class_embeds (0: unconditional) */
    size_t D_in;  /* in_channels * H * W: one image, one noise draw */
    size_t D_out; /* out_channels * H * W: eps_theta of one image (D of method.md) */
    size_t P;
    Denoiser *den; /* the network run, the noising and the loss (diffusion/denoiser.h) */
    int *ts;       /* (batch) the timesteps of one draw slot */
    float *es;     /* (batch, D_in) the noise of one draw slot, gathered contiguously */
    float *xs;     /* (batch, D_in) the clean images of one draw slot (grad_engine_run_x0s) */
    float *dout;   /* (batch, D_out) d f / d eps_theta (squared norm) */
    double *fv;    /* (batch) one slot's values */
};

const char *outfn_name(OutFn f) {
    switch (f) {
    case OUTFN_LOSS:
        return "loss";
    case OUTFN_SQNORM:
        return "sqnorm";
    }
    CHECK(0, "bad output function %d", (int)f);
}

int outfn_parse(const char *name, OutFn *f) {
    if (strcmp(name, "loss") == 0) {
        *f = OUTFN_LOSS;
        return 1;
    }
    if (strcmp(name, "sqnorm") == 0) {
        *f = OUTFN_SQNORM;
        return 1;
    }
    return 0;
}

int grad_engine_create(GradEngine **out, const UNet *net, const NoiseSchedule *sched, int batch,
                       JtError *err) {
    return grad_engine_create_ctx(out, net, sched, batch, 0, err);
}

int grad_engine_create_ctx(GradEngine **out, const UNet *net, const NoiseSchedule *sched, int batch,
                           int ctx_len, JtError *err) {
    *out = NULL;
    if (batch < 1) return jt_fail(err, "gradient batch %d: must be at least 1", batch);
    const UNetConfig *cfg = unet_config(net);
    GradEngine *g = xcalloc(1, sizeof *g);
    g->net = net;
    g->sched = sched;
    g->batch = batch;
    g->K = unet_num_classes(net);
    const int H = unet_config_height(cfg), W = unet_config_width(cfg);
    g->D_in = (size_t)cfg->in_channels * H * W;
    g->D_out = (size_t)cfg->out_channels * H * W;
    g->P = unet_num_params(net);
    if (denoiser_create_ctx(&g->den, net, sched, batch, H, W, ctx_len, DENOISER_TRAIN, err) !=
        JT_OK) {
        free(g);
        return JT_ERR;
    }
    g->ts = xmalloc((size_t)batch * sizeof(int));
    g->es = xmalloc((size_t)batch * g->D_in * sizeof(float));
    g->xs = xmalloc((size_t)batch * g->D_in * sizeof(float));
    g->dout = xmalloc((size_t)batch * g->D_out * sizeof(float));
    g->fv = xmalloc((size_t)batch * sizeof(double));
    *out = g;
    return JT_OK;
}

void grad_engine_free(GradEngine *g) {
    if (!g) return;
    denoiser_free(g->den);
    free(g->ts);
    free(g->es);
    free(g->xs);
    free(g->dout);
    free(g->fv);
    free(g);
}

size_t grad_engine_bytes(const GradEngine *g) {
    size_t B = (size_t)g->batch;
    return sizeof *g + denoiser_bytes(g->den) +
           B * (sizeof(int) + sizeof(double) + sizeof(float) * (2 * g->D_in + g->D_out));
}

void grad_engine_select_params(GradEngine *g, const size_t *compact) {
    denoiser_select_params(g->den, compact);
    g->P = denoiser_grad_params(g->den);
}

size_t grad_engine_grad_params(const GradEngine *g) {
    return g->P;
}

int grad_engine_num_classes(const GradEngine *g) {
    return g->K;
}

/* x0 (B, C, H, W) when per_draw is 0, (B, S, C, H, W) when it is 1. */
static void engine_run(GradEngine *g, OutFn f, int B, int S, const float *x0_in, int per_draw,
                       const int *t, const float *eps, const Cond *cond, float *grads,
                       double *values) {
    CHECK(B >= 1 && B <= g->batch, "batch %d outside 1..%d", B, g->batch);
    CHECK(S >= 1, "%d draws", S);
    CHECK(f == OUTFN_LOSS || f == OUTFN_SQNORM, "bad output function %d", (int)f);
    /* The loss compares eps_theta with the noise that was added: same shape needed. */
    CHECK(f != OUTFN_LOSS || g->D_in == g->D_out,
          "the denoising loss needs in_channels == out_channels (%zu vs %zu values per image)",
          g->D_in, g->D_out);
    const size_t D_in = g->D_in, D = g->D_out, P = g->P;
    const int T = g->sched->T;

    /* Zero the B slabs, one example per iteration (B * P floats: parallel over examples). */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        memset(grads + (size_t)b * P, 0, P * sizeof(float));
    if (values)
        for (int b = 0; b < B; b++)
            values[b] = 0.0;

    /* The loss's backward is torch's mse_loss backward of each example's mean, (pred - target) *
     * (2 / D) (denoiser_loss_backward, LOSS_PER_EXAMPLE); for mean(eps_theta^2) it is (1 / D) *
     * (2 * eps_theta), the same float as eps_theta * (2 / D) since 2 * x and 2 / D = 2 * (1 / D)
     * are exact scalings by two. */
    const float norm = (float)(2.0 / (double)D);
    for (int s = 0; s < S; s++) {
        for (int b = 0; b < B; b++) {
            const int ts = t[(size_t)b * S + s];
            CHECK(ts >= 0 && ts < T, "timestep %d of example %d, draw %d outside 0..%d", ts, b, s,
                  T - 1);
            g->ts[b] = ts;
            memcpy(g->es + (size_t)b * D_in, eps + ((size_t)b * S + s) * D_in,
                   D_in * sizeof(float));
            if (per_draw)
                memcpy(g->xs + (size_t)b * D_in, x0_in + ((size_t)b * S + s) * D_in,
                       D_in * sizeof(float));
        }
        const float *x0 = per_draw ? g->xs : x0_in;
        if (f == OUTFN_LOSS) {
            denoiser_loss(g->den, B, x0, g->ts, g->es, cond, g->fv);
            denoiser_loss_backward(g->den, B, LOSS_PER_EXAMPLE, grads, P);
        } else {
            const float *y = denoiser_noised_eps(g->den, B, x0, g->ts, g->es, cond);
            for (int b = 0; b < B; b++) {
                const float *yb = y + (size_t)b * D;
                float *dy = g->dout + (size_t)b * D;
                double fv = 0.0;
                for (size_t i = 0; i < D; i++) {
                    fv += (double)yb[i] * (double)yb[i];
                    dy[i] = yb[i] * norm;
                }
                g->fv[b] = fv / (double)D;
            }
            denoiser_backward(g->den, B, g->dout, grads, P);
        }
        if (values)
            for (int b = 0; b < B; b++)
                values[b] += g->fv[b];
    }
}

void grad_engine_run(GradEngine *g, OutFn f, int B, int S, const float *x0, const int *t,
                     const float *eps, const int *labels, float *grads, double *values) {
    const Cond cond = {.labels = labels};
    engine_run(g, f, B, S, x0, 0, t, eps, &cond, grads, values);
}

void grad_engine_run_x0s(GradEngine *g, OutFn f, int B, int S, const float *x0s, const int *t,
                         const float *eps, const int *labels, float *grads, double *values) {
    const Cond cond = {.labels = labels};
    engine_run(g, f, B, S, x0s, 1, t, eps, &cond, grads, values);
}

void grad_engine_run_cond(GradEngine *g, OutFn f, int B, int S, const float *x0, int x0_per_draw,
                          const int *t, const float *eps, const Cond *cond, float *grads,
                          double *values) {
    engine_run(g, f, B, S, x0, x0_per_draw, t, eps, cond, grads, values);
}

/* ---- the draws ----------------------------------------------------------------------------
 * One attribution stream per (model, item, slot), all under RNG_TAG_ATTRIB_NOISE:
 *   rng_stream(RNG_TAG_ATTRIB_NOISE, a = item, b = (uint32 model_id) << 32 | slot)
 * with slot = s (0 <= s < 2^32 - 1) for the noise of draw s (index = element 0..D-1, through
 * rng_fill_normal) and slot = 0xffffffff for the timesteps (index = s, through rng_randint).
 * Distinct (model_id, item, slot) are distinct (a, b) pairs, and rng_stream is a bijection of
 * (a, b) before its truncation to 64 bits, so streams coincide only by a 64-bit chance (rng.h).
 * A draw depends only on (seed, model_id, item, s) (and D, T): not on S, the batch, the threads
 * or the order of calls; the first S draws of S' > S draws are the S draws. */
#define ATTRIB_SLOT_TIMESTEPS 0xffffffffu

static uint64_t attrib_stream(int model_id, uint64_t item, uint32_t slot) {
    return rng_stream(RNG_TAG_ATTRIB_NOISE, item, ((uint64_t)(uint32_t)model_id << 32) | slot);
}

void attrib_draws(uint64_t seed, int model_id, uint64_t item, int S, int T, int t_fixed, size_t D,
                  int *t, float *eps) {
    CHECK(model_id >= 0, "model id %d", model_id);
    CHECK(S >= 1 && (uint64_t)S < ATTRIB_SLOT_TIMESTEPS, "%d draws", S);
    CHECK(T >= 1, "T = %d", T);
    CHECK(t_fixed < T, "fixed timestep %d outside 0..%d", t_fixed, T - 1);
    const uint64_t ts = attrib_stream(model_id, item, ATTRIB_SLOT_TIMESTEPS);
    for (int s = 0; s < S; s++) {
        t[s] = t_fixed >= 0 ? t_fixed : (int)rng_randint(seed, ts, (uint64_t)s, (uint32_t)T);
        rng_fill_normal(eps + (size_t)s * D, D, seed, attrib_stream(model_id, item, (uint32_t)s),
                        0);
    }
}

/* Bit 62 set (training rows are < 2^62), sample in bits 24..55, timestep in bits 0..23. */
uint64_t attrib_target_key(int sample, int timestep) {
    CHECK(sample >= 0, "target sample %d", sample);
    CHECK(timestep >= 0 && timestep < (1 << 24), "target timestep %d outside 0..2^24-1", timestep);
    return ((uint64_t)1 << 62) | ((uint64_t)(uint32_t)sample << 24) | (uint64_t)timestep;
}
