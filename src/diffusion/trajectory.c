/* trajectory.c: see trajectory.h. Sampler noise for sample i at step k is drawn from the stream
 * (RNG_TAG_SAMPLE_NOISE, i, k) and x_T from (RNG_TAG_SAMPLE_INIT, i, 0), so a sample's trajectory
 * does not depend on how many other samples were drawn with it or on the batch size. The network
 * runs through a forward-only Denoiser (denoiser_eps, or denoiser_eps_guided under guidance). */
#include "diffusion/trajectory.h"

#include "core/hash.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/context.h"
#include "diffusion/denoiser.h"
#include "diffusion/sampler.h"
#include "io/safetensors.h"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *traj_sampler_name(SamplerKind k) {
    return k == SAMPLER_DDIM ? "ddim" : "ddpm";
}

void traj_free(Trajectory *tr) {
    free(tr->timesteps), free(tr->x_T), free(tr->x_t), free(tr->x0_hat), free(tr->noise);
    free(tr->x_0), free(tr->labels), free(tr->context), free(tr->uncond_context);
    free(tr->context_source);
    for (int i = 0; tr->prompts && i < tr->n; i++)
        free(tr->prompts[i]);
    free(tr->prompts);
    free(tr->negative_prompt);
    memset(tr, 0, sizeof *tr);
}

int traj_step_index(const Trajectory *tr, int t) {
    for (int k = 0; k < tr->S; k++)
        if (tr->timesteps[k] == t) return k;
    return -1;
}

static void traj_alloc(Trajectory *tr) {
    size_t D = (size_t)tr->C * tr->H * tr->W, nD = (size_t)tr->n * D;
    size_t nSD = nD * (size_t)tr->S;
    tr->timesteps = xcalloc((size_t)tr->S, sizeof(int));
    tr->x_T = xcalloc(nD, sizeof(float));
    tr->x_0 = xcalloc(nD, sizeof(float));
    tr->x_t = xcalloc(nSD, sizeof(float));
    tr->x0_hat = xcalloc(nSD, sizeof(float));
    tr->noise = xcalloc(nSD, sizeof(float));
}

int traj_conditional(const Trajectory *tr) {
    return tr->labels != NULL || tr->context != NULL;
}

Cond traj_cond(const Trajectory *tr, int j) {
    const size_t LD = (size_t)tr->ctx_len * tr->ctx_dim;
    Cond c = {.labels = tr->labels ? tr->labels + j : NULL,
              .context = tr->context ? tr->context + (size_t)j * LD : NULL,
              .uncond_context = tr->uncond_context};
    return c;
}

/* Whether sampling with this conditioning and weight runs classifier-free guidance (2 network
 * batches per step) rather than the conditional (or unconditional) eps alone. */
static int guided(const Cond *c, float w) {
    return (c->labels || c->context) && w != 1.0f;
}

/* eps (B, C, H, W) of one sampler step of B samples that share the timestep. */
static void step_eps(Denoiser *d, int B, float *eps, const float *x, const float *tf,
                     const Cond *cond, float w) {
    if (guided(cond, w))
        denoiser_eps_guided(d, B, eps, x, tf, cond, w);
    else
        denoiser_eps(d, B, eps, x, tf, cond);
}

/* A forward-only denoiser for batches of `batch` samples with this conditioning (of n samples),
 * after checking that it fits the model: labels given exactly when it is class-conditional, each
 * in 0..K-1; contexts exactly when it has cross-attention, of its width; the unconditional
 * context when guided. */
static int cond_denoiser(Denoiser **d, const UNet *net, int batch, int H, int W, const Cond *c,
                         int ctx_len, int ctx_dim, int n, float w, const char *what, JtError *err) {
    *d = NULL;
    const int K = unet_num_classes(net), X = unet_cross_attention_dim(net);
    const int *labels = c->labels;
    if (!labels && K > 0)
        return jt_fail(err,
                       "%s: the model is class-conditional (num_class_embeds %d) and no "
                       "class labels were given",
                       what, K);
    if (!c->context && X > 0)
        return jt_fail(err,
                       "%s: the model has cross-attention (cross_attention_dim %d) and no text "
                       "contexts were given",
                       what, X);
    if (c->context && X == 0)
        return jt_fail(err, "%s: text contexts given, but the model has no cross-attention", what);
    if (c->context && ctx_dim != X)
        return jt_fail(err,
                       "%s: the contexts are %d wide but the model's cross_attention_dim is %d",
                       what, ctx_dim, X);
    if (!isfinite(w)) return jt_fail(err, "%s: guidance weight %g is not finite", what, (double)w);
    if (c->context && guided(c, w) && !c->uncond_context)
        return jt_fail(err,
                       "%s: guidance %g needs the unconditional context (--uncond row:R or "
                       "npy:FILE; StableDiffusionPipeline uses the empty prompt's)",
                       what, (double)w);
    int cap = guided(c, w) ? 2 * batch : batch;
    if (denoiser_create_ctx(d, net, NULL, cap, H, W, c->context ? ctx_len : 0, DENOISER_FORWARD,
                            err) != JT_OK)
        return JT_ERR;
    for (int i = 0; labels && i < n; i++) {
        char where[96];
        snprintf(where, sizeof where, "%s: sample %d", what, i);
        if (denoiser_check_label(*d, labels[i], where, err) != JT_OK) {
            denoiser_free(*d);
            *d = NULL;
            return JT_ERR;
        }
    }
    return JT_OK;
}

int traj_sample(const UNet *net, const NoiseSchedule *sched, const SampleOptions *opt,
                const float *x_T, Trajectory *tr, JtError *err) {
    memset(tr, 0, sizeof *tr);
    const UNetConfig *cfg = unet_config(net);
    if (opt->n < 1) return jt_fail(err, "number of samples %d: must be at least 1", opt->n);
    if (opt->steps < 1 || opt->steps > sched->T)
        return jt_fail(err, "sampler steps %d: must be in 1..%d", opt->steps, sched->T);
    int S = opt->steps;
    int *ts = xmalloc((size_t)S * sizeof(int));
    if (sched_set_timesteps(sched, S, ts, err) != JT_OK) {
        free(ts);
        return JT_ERR;
    }
    int batch = opt->batch > 0 ? opt->batch : 64;
    if (batch > opt->n) batch = opt->n;
    Denoiser *den;
    const int H = unet_config_height(cfg), W = unet_config_width(cfg);
    const Cond ocond = {opt->labels, opt->context, opt->uncond_context};
    if (cond_denoiser(&den, net, batch, H, W, &ocond, opt->ctx_len, opt->ctx_dim, opt->n,
                      opt->guidance, "sample", err) != JT_OK) {
        free(ts);
        return JT_ERR;
    }
    tr->n = opt->n;
    tr->S = S;
    tr->C = cfg->in_channels;
    tr->H = H;
    tr->W = W;
    tr->sampler = opt->sampler;
    tr->num_inference_steps = S;
    tr->eta = opt->sampler == SAMPLER_DDIM ? opt->eta : 0.0f;
    tr->seed = opt->seed;
    tr->model_fingerprint = model_fingerprint_of(net);
    traj_alloc(tr);
    memcpy(tr->timesteps, ts, (size_t)S * sizeof(int));
    free(ts);
    tr->guidance = 1.0f;
    if (opt->labels) {
        tr->labels = xmalloc((size_t)tr->n * sizeof(int));
        memcpy(tr->labels, opt->labels, (size_t)tr->n * sizeof(int));
    }
    if (opt->context) {
        const size_t LD = (size_t)opt->ctx_len * opt->ctx_dim;
        tr->ctx_len = opt->ctx_len;
        tr->ctx_dim = opt->ctx_dim;
        tr->context = xmalloc((size_t)tr->n * LD * sizeof(float));
        memcpy(tr->context, opt->context, (size_t)tr->n * LD * sizeof(float));
        if (opt->uncond_context && guided(&ocond, opt->guidance)) {
            tr->uncond_context = xmalloc(LD * sizeof(float));
            memcpy(tr->uncond_context, opt->uncond_context, LD * sizeof(float));
        }
        if (opt->context_source) tr->context_source = xstrdup(opt->context_source);
    }
    if (opt->prompts) {
        tr->prompts = xcalloc((size_t)tr->n, sizeof *tr->prompts);
        for (int i = 0; i < tr->n; i++)
            tr->prompts[i] = xstrdup(opt->prompts[i] ? opt->prompts[i] : "");
    }
    if (opt->negative_prompt && tr->uncond_context)
        tr->negative_prompt = xstrdup(opt->negative_prompt);
    if (traj_conditional(tr)) tr->guidance = opt->guidance;

    const size_t D = (size_t)tr->C * tr->H * tr->W;
    for (int i = 0; i < tr->n; i++) {
        if (x_T)
            memcpy(tr->x_T + i * D, x_T + i * D, D * sizeof(float));
        else
            rng_fill_normal(tr->x_T + i * D, D, opt->seed,
                            rng_stream(RNG_TAG_SAMPLE_INIT, (uint64_t)i, 0), 0);
    }
    float *x = xmalloc((size_t)batch * D * sizeof(float));
    float *eps = xmalloc((size_t)batch * D * sizeof(float));
    float *tf = xmalloc((size_t)batch * sizeof(float));
    Progress prog;
    size_t total = (size_t)S * (size_t)((tr->n + batch - 1) / batch);
    progress_init(&prog, "sample", total, 0, (double)batch, "img-steps");
    prog.quiet = opt->quiet;
    size_t done = 0;

    for (int b0 = 0; b0 < tr->n; b0 += batch) {
        int nb = tr->n - b0 < batch ? tr->n - b0 : batch;
        memcpy(x, tr->x_T + (size_t)b0 * D, (size_t)nb * D * sizeof(float));
        for (int k = 0; k < S; k++) {
            int t = tr->timesteps[k];
            for (int j = 0; j < nb; j++)
                tf[j] = (float)t;
            const Cond c = traj_cond(tr, b0);
            step_eps(den, nb, eps, x, tf, &c, tr->guidance);
            /* a non-finite prediction (NaN weights) stops the run; so does a step whose x_{t-1}
             * or x̂_0 overflows (checked below) */
            size_t bad = jt_first_nonfinite(eps, (size_t)nb * D);
            if (bad < (size_t)nb * D) {
                free(x), free(eps), free(tf);
                denoiser_free(den);
                return jt_fail(err,
                               "sample %zu: the model's prediction at timestep %d (step %d of "
                               "%d) is not finite (NaN or Inf in the weights?); nothing written",
                               (size_t)b0 + bad / D, t, k + 1, S);
            }
            for (int j = 0; j < nb; j++) {
                int i = b0 + j;
                size_t at = ((size_t)i * S + k) * D;
                float *xj = x + j * D, *z = tr->noise + at;
                memcpy(tr->x_t + at, xj, D * sizeof(float));
                int adds_noise = opt->sampler == SAMPLER_DDPM ? t > 0 : tr->eta > 0;
                if (adds_noise)
                    rng_fill_normal(z, D, opt->seed,
                                    rng_stream(RNG_TAG_SAMPLE_NOISE, (uint64_t)i, (uint64_t)k), 0);
                if (opt->sampler == SAMPLER_DDPM)
                    ddpm_step(xj, tr->x0_hat + at, xj, eps + j * D, adds_noise ? z : NULL, D, sched,
                              t, ddpm_prev_timestep(tr->timesteps, S, k));
                else
                    ddim_step(xj, tr->x0_hat + at, xj, eps + j * D, adds_noise ? z : NULL, D, sched,
                              t, S, tr->eta, false);
                if (jt_first_nonfinite(xj, D) < D || jt_first_nonfinite(tr->x0_hat + at, D) < D) {
                    free(x), free(eps), free(tf);
                    denoiser_free(den);
                    return jt_fail(err,
                                   "sample %d: the sampler's step at timestep %d (step %d of %d) "
                                   "is not finite (the values overflowed); nothing written",
                                   i, t, k + 1, S);
                }
            }
            done++;
            progress_update(&prog, done, NULL, done == total);
        }
        memcpy(tr->x_0 + (size_t)b0 * D, x, (size_t)nb * D * sizeof(float));
    }
    free(x), free(eps), free(tf);
    denoiser_free(den);
    return JT_OK;
}

int traj_replay(const UNet *net, const NoiseSchedule *sched, const Trajectory *tr, int j, int k0,
                float *x0, JtError *err) {
    const UNetConfig *cfg = unet_config(net);
    if (j < 0 || j >= tr->n || k0 < 0 || k0 >= tr->S)
        return jt_fail(err,
                       "trajectory: no sample %d / step index %d (it has %d samples, %d steps)", j,
                       k0, tr->n, tr->S);
    if (cfg->in_channels != tr->C || unet_config_height(cfg) != tr->H ||
        unet_config_width(cfg) != tr->W)
        return jt_fail(err, "trajectory: samples are %dx%dx%d, the model makes %dx%dx%d", tr->C,
                       tr->H, tr->W, cfg->in_channels, unet_config_height(cfg),
                       unet_config_width(cfg));
    const int K = unet_num_classes(net);
    if ((tr->labels != NULL) != (K > 0))
        return jt_fail(err, "trajectory: its samples are %s, but the model is %s",
                       tr->labels ? "class-conditional" : "unconditional",
                       K > 0 ? "class-conditional" : "unconditional");
    Denoiser *den;
    const Cond c = traj_cond(tr, j);
    if (cond_denoiser(&den, net, 1, tr->H, tr->W, &c, tr->ctx_len, tr->ctx_dim, 1, tr->guidance,
                      "trajectory", err) != JT_OK)
        return JT_ERR;
    const size_t D = (size_t)tr->C * tr->H * tr->W;
    float *x = xmalloc(D * sizeof(float)), *eps = xmalloc(D * sizeof(float));
    memcpy(x, tr->x_t + ((size_t)j * tr->S + k0) * D, D * sizeof(float));
    for (int k = k0; k < tr->S; k++) {
        int t = tr->timesteps[k];
        float tf = (float)t;
        step_eps(den, 1, eps, x, &tf, &c, tr->guidance);
        const float *z = tr->noise + ((size_t)j * tr->S + k) * D;
        if (tr->sampler == SAMPLER_DDPM)
            ddpm_step(x, NULL, x, eps, z, D, sched, t, ddpm_prev_timestep(tr->timesteps, tr->S, k));
        else
            ddim_step(x, NULL, x, eps, tr->eta > 0 ? z : NULL, D, sched, t, tr->num_inference_steps,
                      tr->eta, false);
    }
    memcpy(x0, x, D * sizeof(float));
    free(x), free(eps);
    denoiser_free(den);
    return JT_OK;
}

int traj_save(const Trajectory *tr, const char *path, JtError *err) {
    StWriter w;
    st_writer_init(&w);
    int64_t img[4] = {tr->n, tr->C, tr->H, tr->W};
    int64_t seq[5] = {tr->n, tr->S, tr->C, tr->H, tr->W};
    int64_t steps[1] = {tr->S};
    st_writer_add_f32(&w, "x_T", ST_F32, 4, img, tr->x_T);
    st_writer_add_f32(&w, "x_0", ST_F32, 4, img, tr->x_0);
    st_writer_add_f32(&w, "x_t", ST_F32, 5, seq, tr->x_t);
    st_writer_add_f32(&w, "x0_hat", ST_F32, 5, seq, tr->x0_hat);
    st_writer_add_f32(&w, "noise", ST_F32, 5, seq, tr->noise);
    int32_t *t32 = xmalloc((size_t)tr->S * sizeof(int32_t));
    for (int k = 0; k < tr->S; k++)
        t32[k] = tr->timesteps[k];
    st_writer_add(&w, "timesteps", ST_I32, 1, steps, t32);
    int64_t nshape[1] = {tr->n};
    int32_t *l32 = NULL;
    if (tr->labels) {
        l32 = xmalloc((size_t)tr->n * sizeof(int32_t));
        for (int i = 0; i < tr->n; i++)
            l32[i] = tr->labels[i];
        st_writer_add(&w, "class_labels", ST_I32, 1, nshape, l32);
    }
    if (tr->context) {
        int64_t cshape[3] = {tr->n, tr->ctx_len, tr->ctx_dim};
        st_writer_add_f32(&w, "encoder_hidden_states", ST_F32, 3, cshape, tr->context);
        if (tr->uncond_context)
            st_writer_add_f32(&w, "uncond_context", ST_F32, 2, cshape + 1, tr->uncond_context);
        if (tr->context_source) st_writer_set_metadata(&w, "context_source", tr->context_source);
    }
    char *prompts = NULL;
    if (tr->prompts) {
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < tr->n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(tr->prompts[i]));
        prompts = cJSON_PrintUnformatted(arr);
        cJSON_Delete(arr);
        st_writer_set_metadata(&w, "prompts", prompts);
    }
    if (tr->negative_prompt) st_writer_set_metadata(&w, "negative_prompt", tr->negative_prompt);
    char buf[64];
    st_writer_set_metadata(&w, "format", "jtrak-trajectory-v1");
    st_writer_set_metadata(&w, "sampler", traj_sampler_name(tr->sampler));
    snprintf(buf, sizeof buf, "%d", tr->num_inference_steps);
    st_writer_set_metadata(&w, "steps", buf);
    snprintf(buf, sizeof buf, "%.9g", tr->eta);
    st_writer_set_metadata(&w, "eta", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)tr->seed);
    st_writer_set_metadata(&w, "seed", buf);
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)tr->model_fingerprint);
    st_writer_set_metadata(&w, "model_fingerprint", buf);
    st_writer_set_metadata(&w, "cond",
                           tr->labels && tr->context ? "class+context"
                           : tr->labels              ? "class"
                           : tr->context             ? "context"
                                                     : "none");
    snprintf(buf, sizeof buf, "%.9g", traj_conditional(tr) ? tr->guidance : 1.0f);
    st_writer_set_metadata(&w, "guidance", buf);
    int rc = st_writer_write(&w, path, err);
    st_writer_free(&w);
    free(t32), free(l32), free(prompts);
    return rc;
}

/* Little-endian bytes of v, whatever the host. */
static uint64_t hash_u64(uint64_t h, uint64_t v) {
    unsigned char b[8];
    for (int j = 0; j < 8; j++)
        b[j] = (unsigned char)(v >> (8 * j));
    return hash_fnv1a(h, b, 8);
}

static uint64_t hash_f32(uint64_t h, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return hash_u64(h, u);
}

uint64_t traj_fingerprint(const Trajectory *tr) {
    static const char fmt[] = "jtrak-trajectory-v1";
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, fmt, sizeof fmt - 1);
    const int64_t dims[] = {
        tr->n, tr->S, tr->C, tr->H, tr->W, tr->sampler, tr->num_inference_steps};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        h = hash_u64(h, (uint64_t)dims[i]);
    h = hash_f32(h, tr->eta);
    h = hash_u64(h, tr->seed);
    h = hash_u64(h, tr->model_fingerprint);
    h = hash_f32(h, traj_conditional(tr) ? tr->guidance : 1.0f);
    for (int k = 0; k < tr->S; k++)
        h = hash_u64(h, (uint64_t)(int64_t)tr->timesteps[k]);
    h = hash_u64(h, tr->labels != NULL);
    for (int i = 0; tr->labels && i < tr->n; i++)
        h = hash_u64(h, (uint64_t)(int64_t)tr->labels[i]);
    /* the tensors as float32 bytes in memory (x86-64, little-endian like the file) */
    const size_t nD = (size_t)tr->n * tr->C * tr->H * tr->W, nSD = nD * (size_t)tr->S;
    h = hash_fnv1a(h, tr->x_T, nD * sizeof(float));
    h = hash_fnv1a(h, tr->x_t, nSD * sizeof(float));
    h = hash_fnv1a(h, tr->x0_hat, nSD * sizeof(float));
    h = hash_fnv1a(h, tr->noise, nSD * sizeof(float));
    h = hash_fnv1a(h, tr->x_0, nD * sizeof(float));
    /* text contexts, hashed only when present so that older fingerprints stay as they were */
    if (tr->context) {
        const size_t LD = (size_t)tr->ctx_len * tr->ctx_dim;
        h = hash_u64(h, (uint64_t)tr->ctx_len);
        h = hash_u64(h, (uint64_t)tr->ctx_dim);
        h = hash_fnv1a(h, tr->context, (size_t)tr->n * LD * sizeof(float));
        h = hash_u64(h, tr->uncond_context != NULL);
        if (tr->uncond_context) h = hash_fnv1a(h, tr->uncond_context, LD * sizeof(float));
    }
    return h;
}

int traj_check_recorded(const Trajectory *tr, const char *path, const char *recorded,
                        const char *manifest_path, JtError *err) {
    if (!recorded) return JT_OK;
    char h[17];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)tr->fingerprint);
    if (strcmp(recorded, h) == 0) return JT_OK;
    return jt_fail(err,
                   "%s: the trajectory (fingerprint %s) is not the one %s records (%s): it was "
                   "re-sampled or replaced since it was scored; score it again",
                   path, h, manifest_path, recorded);
}

int traj_check_schedule(const Trajectory *tr, const char *path, int T, const char *what,
                        JtError *err) {
    for (int k = 0; k < tr->S; k++)
        if (tr->timesteps[k] >= T)
            return jt_fail(err,
                           "%s: tensor 'timesteps': step %d is t=%d but %s has %d train timesteps "
                           "(0..%d): the trajectory was not sampled with this schedule",
                           path, k, tr->timesteps[k], what, T, T - 1);
    return JT_OK;
}

/* traj_load's check of the timesteps: in 0..TRAJ_MAX_T-1, strictly descending. */
static int check_timesteps(const Trajectory *tr, const char *path, JtError *err) {
    for (int k = 0; k < tr->S; k++) {
        const int t = tr->timesteps[k];
        if (t < 0 || t >= TRAJ_MAX_T)
            return jt_fail(err, "%s: tensor 'timesteps': step %d is t=%d, outside 0..%d", path, k,
                           t, TRAJ_MAX_T - 1);
        if (k > 0 && t >= tr->timesteps[k - 1])
            return jt_fail(err,
                           "%s: tensor 'timesteps': step %d is t=%d after t=%d: timesteps must "
                           "strictly descend (%s)",
                           path, k, t, tr->timesteps[k - 1],
                           t == tr->timesteps[k - 1] ? "a duplicate" : "out of order");
    }
    return JT_OK;
}

static int read_named(StFile *f, const char *name, int ndim, const int64_t *shape, float *dst,
                      JtError *err) {
    int i = st_find(f, name);
    if (i < 0)
        return jt_fail(err, "%s: not a jtrak trajectory: tensor '%s' missing", f->path, name);
    const StTensor *t = &f->tensors[i];
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = t->shape[d] == shape[d];
    if (!ok) return jt_fail(err, "%s: tensor '%s' has the wrong shape", f->path, name);
    if (st_read_f32(f, i, dst, err) != JT_OK) return JT_ERR;
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)shape[d];
    char what[96];
    snprintf(what, sizeof what, "tensor '%s'", name);
    return jt_check_finite(dst, n, f->path, what, err);
}

/* The text contexts of a "context" trajectory: encoder_hidden_states (n, L, D) and, when guided,
 * uncond_context (L, D). */
static int read_context(StFile *f, Trajectory *tr, JtError *err) {
    int ic = st_find(f, "encoder_hidden_states"), iu = st_find(f, "uncond_context");
    if (ic < 0)
        return jt_fail(err,
                       "%s: metadata cond says context but tensor 'encoder_hidden_states' is "
                       "missing",
                       f->path);
    const StTensor *t = &f->tensors[ic];
    if (t->ndim != 3 || t->shape[0] != tr->n || t->shape[1] < 1 || t->shape[1] > CONTEXT_MAX_LEN ||
        t->shape[2] < 1 || t->shape[2] > CONTEXT_MAX_DIM)
        return jt_fail(err,
                       "%s: tensor 'encoder_hidden_states' must be (%d, L, D), one context per "
                       "sample, L <= %d, D <= %d",
                       f->path, tr->n, CONTEXT_MAX_LEN, CONTEXT_MAX_DIM);
    tr->ctx_len = (int)t->shape[1];
    tr->ctx_dim = (int)t->shape[2];
    const int64_t cshape[3] = {tr->n, tr->ctx_len, tr->ctx_dim};
    const size_t LD = (size_t)tr->ctx_len * tr->ctx_dim;
    tr->context = xmalloc((size_t)tr->n * LD * sizeof(float));
    if (read_named(f, "encoder_hidden_states", 3, cshape, tr->context, err) != JT_OK) return JT_ERR;
    const char *src = st_metadata_get(f, "context_source");
    if (src) tr->context_source = xstrdup(src);
    if (iu < 0) {
        if (tr->guidance != 1.0f)
            return jt_fail(err, "%s: guidance %g needs tensor 'uncond_context', which is missing",
                           f->path, (double)tr->guidance);
        return JT_OK;
    }
    tr->uncond_context = xmalloc(LD * sizeof(float));
    return read_named(f, "uncond_context", 2, cshape + 1, tr->uncond_context, err);
}

/* The conditioning: metadata cond and guidance, tensors class_labels and encoder_hidden_states;
 * all absent in files written before conditioning existed, which were unconditional with
 * guidance 1. */
static int read_cond(StFile *f, Trajectory *tr, JtError *err) {
    const char *cond = st_metadata_get(f, "cond"), *g = st_metadata_get(f, "guidance");
    int il = st_find(f, "class_labels");
    static const char *const kinds[] = {"none", "class", "context", "class+context"};
    int kind = cond ? -1 : 0;
    for (int i = 0; cond && i < 4; i++)
        if (strcmp(cond, kinds[i]) == 0) kind = i;
    if (kind < 0)
        return jt_fail(err,
                       "%s: metadata 'cond' is '%s'; want none, class, context or "
                       "class+context",
                       f->path, cond);
    const int has_labels = kind == 1 || kind == 3, has_context = kind >= 2;
    if (has_labels != (il >= 0))
        return jt_fail(err, "%s: metadata cond '%s' but tensor 'class_labels' is %s", f->path,
                       cond ? cond : "(absent)", il >= 0 ? "present" : "missing");
    if (!has_context && st_find(f, "encoder_hidden_states") >= 0)
        return jt_fail(err, "%s: metadata cond '%s' but tensor 'encoder_hidden_states' is present",
                       f->path, cond ? cond : "(absent)");
    tr->guidance = 1.0f;
    if (g) {
        char *end;
        errno = 0;
        float v = strtof(g, &end);
        if (errno || end == g || *end || !isfinite(v))
            return jt_fail(err, "%s: metadata 'guidance' is '%s', not a finite number", f->path, g);
        if (kind == 0 && v != 1.0f)
            return jt_fail(err, "%s: guidance %s on an unconditional trajectory (cond none)",
                           f->path, g);
        tr->guidance = v;
    }
    if (has_context && read_context(f, tr, err) != JT_OK) return JT_ERR;
    const char *pr = st_metadata_get(f, "prompts");
    if (pr) {
        cJSON *arr = cJSON_Parse(pr);
        int ok = cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == tr->n;
        for (int i = 0; ok && i < tr->n; i++)
            ok = cJSON_IsString(cJSON_GetArrayItem(arr, i));
        if (!ok) {
            cJSON_Delete(arr);
            return jt_fail(err, "%s: metadata 'prompts' must be a JSON array of %d strings",
                           f->path, tr->n);
        }
        tr->prompts = xcalloc((size_t)tr->n, sizeof *tr->prompts);
        for (int i = 0; i < tr->n; i++)
            tr->prompts[i] = xstrdup(cJSON_GetArrayItem(arr, i)->valuestring);
        cJSON_Delete(arr);
    }
    const char *neg = st_metadata_get(f, "negative_prompt");
    if (neg) tr->negative_prompt = xstrdup(neg);
    if (!has_labels) return JT_OK;
    const StTensor *t = &f->tensors[il];
    if (t->dtype != ST_I32 || t->ndim != 1 || t->shape[0] != tr->n)
        return jt_fail(err, "%s: tensor 'class_labels' must be I32 (%d), one label per sample",
                       f->path, tr->n);
    int32_t *l32 = xmalloc((size_t)tr->n * sizeof(int32_t));
    int rc = st_read_raw(f, il, l32, err);
    tr->labels = xmalloc((size_t)tr->n * sizeof(int));
    for (int i = 0; rc == JT_OK && i < tr->n; i++) {
        if (l32[i] < 0)
            rc = jt_fail(err, "%s: tensor 'class_labels': sample %d has label %d (negative)",
                         f->path, i, (int)l32[i]);
        tr->labels[i] = l32[i];
    }
    free(l32);
    return rc;
}

/* The sampler settings in the metadata, as traj_save writes them: refused when they are not
 * (a trajectory with a sampler "foo" or a seed "x" would otherwise load as DDPM with seed 0). */
static int check_settings(const char *path, const char *sampler, const char *seed, const char *eta,
                          const char *fp, JtError *err) {
    if (strcmp(sampler, "ddpm") != 0 && strcmp(sampler, "ddim") != 0)
        return jt_fail(err, "%s: metadata 'sampler' is '%s'; want ddpm or ddim", path, sampler);
    char *end;
    errno = 0;
    (void)strtoull(seed, &end, 10);
    if (!*seed || *seed == '-' || *seed == '+' || *seed == ' ' || *end || errno)
        return jt_fail(err, "%s: metadata 'seed' is '%s', not a 64-bit unsigned integer", path,
                       seed);
    errno = 0;
    float e = strtof(eta, &end);
    if (!*eta || *end || errno || !isfinite(e))
        return jt_fail(err, "%s: metadata 'eta' is '%s', not a finite number", path, eta);
    if (strlen(fp) != 16 || strspn(fp, "0123456789abcdefABCDEF") != 16)
        return jt_fail(err, "%s: metadata 'model_fingerprint' is '%s', not 16 hex digits", path,
                       fp);
    return JT_OK;
}

int traj_load(Trajectory *tr, const char *path, JtError *err) {
    memset(tr, 0, sizeof *tr);
    StFile f;
    if (st_open(&f, path, err) != JT_OK) return JT_ERR;
    int rc = JT_OK;
    const char *fmt = st_metadata_get(&f, "format"), *sampler = st_metadata_get(&f, "sampler");
    const char *seed = st_metadata_get(&f, "seed"), *eta = st_metadata_get(&f, "eta");
    const char *fp = st_metadata_get(&f, "model_fingerprint");
    int it = st_find(&f, "x_t"), its = st_find(&f, "timesteps");
    if (!fmt || strcmp(fmt, "jtrak-trajectory-v1") != 0 || !sampler || !seed || !eta || !fp ||
        it < 0 || its < 0 || f.tensors[it].ndim != 5 || f.tensors[its].ndim != 1 ||
        f.tensors[its].dtype != ST_I32 || f.tensors[its].shape[0] != f.tensors[it].shape[1]) {
        st_close(&f);
        return jt_fail(err, "%s: not a jtrak trajectory file (format jtrak-trajectory-v1)", path);
    }
    if (check_settings(path, sampler, seed, eta, fp, err) != JT_OK) {
        st_close(&f);
        return JT_ERR;
    }
    const StTensor *x = &f.tensors[it];
    /* Every tensor's shape follows from x_t's; checked (the data of each is in the file, so the
     * sizes are bounded by it) before anything is allocated. */
    for (int d = 0; d < 5; d++)
        if (x->shape[d] > INT_MAX) {
            st_close(&f);
            return jt_fail(err, "%s: tensor 'x_t': dimension %d is %lld (at most %d)", path, d,
                           (long long)x->shape[d], INT_MAX);
        }
    static const char *const img_names[2] = {"x_T", "x_0"}, *const seq_names[3] = {"x_t", "x0_hat",
                                                                                   "noise"};
    for (int q = 0; q < 5; q++) {
        const char *name = q < 2 ? img_names[q] : seq_names[q - 2];
        int i = st_find(&f, name), nd = q < 2 ? 4 : 5, ok = i >= 0 && f.tensors[i].ndim == nd;
        for (int d = 0; ok && d < nd; d++)
            ok = f.tensors[i].shape[d] == x->shape[q < 2 && d > 0 ? d + 1 : d];
        if (!ok) {
            st_close(&f);
            return jt_fail(err,
                           i < 0 ? "%s: not a jtrak trajectory: tensor '%s' missing"
                                 : "%s: tensor '%s' has the wrong shape",
                           path, name);
        }
    }
    tr->n = (int)x->shape[0];
    tr->S = (int)x->shape[1];
    tr->C = (int)x->shape[2];
    tr->H = (int)x->shape[3];
    tr->W = (int)x->shape[4];
    tr->sampler = strcmp(sampler, "ddim") == 0 ? SAMPLER_DDIM : SAMPLER_DDPM;
    tr->num_inference_steps = tr->S;
    tr->eta = strtof(eta, NULL);
    tr->seed = strtoull(seed, NULL, 10);
    tr->model_fingerprint = strtoull(fp, NULL, 16);
    traj_alloc(tr);
    int64_t img[4] = {tr->n, tr->C, tr->H, tr->W};
    int64_t seq[5] = {tr->n, tr->S, tr->C, tr->H, tr->W};
    int32_t *t32 = xmalloc((size_t)tr->S * sizeof(int32_t));
    rc = st_read_raw(&f, its, t32, err);
    for (int k = 0; rc == JT_OK && k < tr->S; k++)
        tr->timesteps[k] = t32[k];
    free(t32);
    if (rc == JT_OK) rc = check_timesteps(tr, path, err);
    if (rc == JT_OK) rc = read_named(&f, "x_T", 4, img, tr->x_T, err);
    if (rc == JT_OK) rc = read_named(&f, "x_0", 4, img, tr->x_0, err);
    if (rc == JT_OK) rc = read_named(&f, "x_t", 5, seq, tr->x_t, err);
    if (rc == JT_OK) rc = read_named(&f, "x0_hat", 5, seq, tr->x0_hat, err);
    if (rc == JT_OK) rc = read_named(&f, "noise", 5, seq, tr->noise, err);
    if (rc == JT_OK) rc = read_cond(&f, tr, err);
    if (rc == JT_OK) tr->fingerprint = traj_fingerprint(tr);
    st_close(&f);
    if (rc != JT_OK) traj_free(tr);
    return rc;
}
