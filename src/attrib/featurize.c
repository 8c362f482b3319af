/* featurize.c: see featurize.h. The run: check every model against the data and fingerprint it;
 * create the store or check the existing one (rank 0), then for each model: load it, build the
 * gradient engine and the projector, compute this process's chunks that are not done yet (draws ->
 * per-example gradients -> projection -> rows -> done mask), wait for every process, and let rank 0
 * accumulate X^T X from the stored rows, invert it and write the kernel (method.md 2.1, 2.4). Long
 * work in the style of diffusion/train.c: a progress line, log.jsonl, signals stop cleanly after
 * the chunk in flight. */
#include "attrib/featurize.h"

#include "attrib/paramsel.h"
#include "attrib/store.h"
#include "core/comm.h"
#include "core/linalg.h"
#include "core/progress.h"
#include "core/rng.h"
#include "diffusion/schedule.h"
#include "diffusion/trajectory.h"
#include "io/artifact.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "model/model.h"
#include "model/pipeline.h"
#include "unet/unet.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void featurize_options_default(FeaturizeOptions *o) {
    memset(o, 0, sizeof *o);
    o->k = 2048;
    o->S = 20;
    o->outfn = OUTFN_LOSS;
    o->proj_kind = PROJ_RADEMACHER;
    o->batch = 16;
    o->kernel.lambda = 0;
    o->kernel.auto_ridge = 0;
    o->kernel.rescale = 1;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) {
    g_stop_signal = sig;
}

static void fmt_bytes(char *buf, size_t cap, double b) {
    if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else
        snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
}

static void fmt_duration(char *buf, size_t cap, double s) {
    if (!(s >= 0))
        snprintf(buf, cap, "?");
    else if (s < 60)
        snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

size_t featurize_bytes(size_t engine_bytes, size_t P, int batch, int S, size_t D, int x0_draws,
                       size_t context_floats, int k, size_t proj_bytes) {
    size_t B = (size_t)batch, K = (size_t)k;
    return engine_bytes + B * P * sizeof(float)          /* gradient slab (B, P) */
           + proj_bytes                                  /* projector scratch */
           + B * (size_t)S * D * sizeof(float)           /* draws eps (B, S, D) */
           + B * (size_t)x0_draws * D * sizeof(float)    /* x0 (B, [S,] D) */
           + B * context_floats * sizeof(float)          /* contexts (B, L, D) */
           + B * K * sizeof(float)              /* projected rows */
           + P * sizeof(float)                  /* the model's weights */
           + K * K * sizeof(double)             /* Gram (rank 0) */
           + K * K * sizeof(float);             /* kernel */
}

/* The model's schedule: its folder's scheduler_config.json, else diffusers' defaults. */
static int load_schedule(const char *dir, NoiseSchedule *sched, JtError *err) {
    SchedConfig sc;
    int rc = sched_config_load_model(&sc, dir, err);
    if (rc == JT_OK) rc = sched_init(sched, &sc, err);
    return rc;
}

static int check_model_data(const char *dir, const UNet *net, const Dataset *data, JtError *err) {
    const UNetConfig *cfg = unet_config(net);
    const int H = unet_config_height(cfg), W = unet_config_width(cfg);
    char size[32];
    snprintf(size, sizeof size, H == W ? "%d" : "[%d, %d]", H, W);
    if (data->c != cfg->in_channels || data->h != H || data->w != W)
        return jt_fail(err,
                       "%s/config.json: the model takes %dx%dx%d images (in_channels %d, "
                       "sample_size %s) but the data are %dx%dx%d (%s); featurize with the "
                       "data the model was trained on",
                       dir, cfg->in_channels, H, W, cfg->in_channels, size, data->c, data->h,
                       data->w, data->description);
    return JT_OK;
}

/* A warning (not an error) when the model's training.json names other data than `data`. */
static void warn_training_data(const char *dir, const Dataset *data) {
    char *unet_dir = pipeline_model_dir(dir); /* a pipeline keeps it beside its U-Net */
    char *path = path_join(unet_dir, "training.json");
    free(unet_dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        free(path);
        return;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = xmalloc(sz > 0 ? (size_t)sz + 1 : 1);
    size_t got = sz > 0 ? fread(text, 1, (size_t)sz, f) : 0;
    text[got] = 0;
    fclose(f);
    cJSON *o = cJSON_ParseWithOpts(text, NULL, 1);
    cJSON *d = o ? cJSON_GetObjectItemCaseSensitive(o, "dataset") : NULL;
    cJSON *fp = d ? cJSON_GetObjectItemCaseSensitive(d, "fingerprint") : NULL;
    cJSON *spec = d ? cJSON_GetObjectItemCaseSensitive(d, "spec") : NULL;
    char want[17];
    data_fingerprint_hex(data, want);
    if (cJSON_IsString(fp) && strcmp(fp->valuestring, want) != 0)
        fprintf(stderr,
                "featurize: warning: %s says the model was trained on other data "
                "(fingerprint %s: %s) than the data given (%s: %s); the scores will refer "
                "to the rows of the data given\n",
                path, fp->valuestring, cJSON_IsString(spec) ? spec->valuestring : "?", want,
                data->description);
    cJSON_Delete(o);
    free(text);
    free(path);
}

static void log_line(const char *dir, const char *line) {
    char *path = path_join(dir, "log.jsonl");
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s\n", line);
        fclose(f);
    }
    free(path);
}

/* ---- one model's rows ----------------------------------------------------------------------- */

typedef struct {
    const FeaturizeOptions *opt;
    const Dataset *data;
    FeatureStore *st;
    int rank, size;
    size_t rows_this_call; /* rows computed by this process in this call */
    size_t rows_left_all;  /* rows still to compute by this process over all models (estimate) */
    int estimated;         /* the memory/time estimate was printed */
    CondPolicy cond;       /* how rows are conditioned */
    int K;                 /* the models' num_class_embeds (0: unconditional) */
    const ContextSet *ctx; /* COND_OWN_CONTEXT: the rows' contexts */
    double t_start;
} Run;

/* Which rows of the chunk still need computing (a chunk is redone whole if any row is missing, so
 * that its rows are computed in the same batch as in any other run). */
static int chunk_needed(const uint8_t *mask, size_t r0, size_t rows) {
    for (size_t i = 0; i < rows; i++)
        if (!mask[r0 + i]) return 1;
    return 0;
}

/* Computes this process's missing chunks of model m. Sets *stopped on stop_after_rows/signal. */
static int featurize_model(Run *run, int m, int *stopped, JtError *err) {
    const FeaturizeOptions *opt = run->opt;
    const Dataset *data = run->data;
    FeatureStore *st = run->st;
    const char *dir = opt->model_dirs[m];
    const size_t n = st->n, B = (size_t)opt->batch, D = (size_t)data->c * data->h * data->w;
    const int S = st->S, k = st->k;
    const size_t n_chunks = (n + B - 1) / B;

    uint8_t *mask = xmalloc(n);
    if (store_rows_done(st, m, mask, NULL, err) != JT_OK) {
        free(mask);
        return JT_ERR;
    }
    size_t mine = 0, mine_done = 0; /* rows of this process's chunks, and those already done */
    for (size_t c = (size_t)run->rank; c < n_chunks; c += (size_t)run->size) {
        size_t r0 = c * B, rows = r0 + B <= n ? B : n - r0;
        mine += rows;
        if (!chunk_needed(mask, r0, rows)) mine_done += rows;
    }
    if (mine_done == mine) {
        free(mask);
        return JT_OK;
    }

    Model *model = NULL;
    NoiseSchedule sched = {0};
    GradEngine *ge = NULL;
    int rc = model_load_unet(dir, &model, err);
    UNet *net = model ? model_unet(model) : NULL;
    if (rc == JT_OK && model_fingerprint(model) != st->model_fingerprints[m])
        rc = jt_fail(err,
                     "%s: the model changed while featurizing (fingerprint differs from the "
                     "store's); use a new --out",
                     dir);
    if (rc == JT_OK) rc = load_schedule(dir, &sched, err);
    int cap = (int)(B < n ? B : n);
    if (rc == JT_OK)
        rc = grad_engine_create_ctx(&ge, net, &sched, cap, run->ctx ? run->ctx->L : 0, err);
    /* the store's parameter selection: the gradient rows are over the selected tensors only */
    ParamSelect sel = {0};
    if (rc == JT_OK) rc = param_select_init(&sel, unet_layout(net), st->grad_params, dir, err);
    if (rc == JT_OK) rc = store_check_grad_params(st, m, sel.count, sel.fingerprint, err);
    if (rc == JT_OK) grad_engine_select_params(ge, sel.compact);
    param_select_free(&sel);
    if (rc != JT_OK) {
        grad_engine_free(ge);
        model_free(model);
        if (sched.betas) sched_free(&sched);
        free(mask);
        return JT_ERR;
    }
    const size_t P = grad_engine_grad_params(ge); /* p: the selected count */
    Projector pr;
    proj_init(&pr, st->proj_kind, st->proj_seed, m, P, k);
    float *grads = xmalloc(B * P * sizeof(float));           /* (B, P) */
    float *X = xmalloc(B * (size_t)k * sizeof(float));       /* (B, k) */
    /* (B, C, H, W), or (B, S, C, H, W) for a latent dataset in sample mode: a posterior sample per
     * (row, draw) keyed by (draw seed, model, draw slot, row) */
    const int per_draw = data_draws_random(data);
    float *x0 = xmalloc(B * (per_draw ? (size_t)S : 1) * D * sizeof(float));
    float *eps = xmalloc(B * (size_t)S * D * sizeof(float)); /* (B, S, C, H, W) */
    int *t = xmalloc(B * (size_t)S * sizeof(int));           /* (B, S) */
    int *labels = run->K > 0 ? xmalloc(B * sizeof(int)) : NULL; /* (B) */
    const size_t LD = run->ctx ? (size_t)run->ctx->L * run->ctx->D : 0;
    float *contexts = run->ctx ? xmalloc(B * LD * sizeof(float)) : NULL; /* (B, L, D) */
    const Cond cond = {.labels = labels, .context = contexts};
    size_t *rows_idx = xmalloc(B * sizeof(size_t));

    if (!run->estimated && run->rank == 0 && !opt->quiet) {
        const size_t proj_bytes = proj_scratch_bytes(&pr, (int)B);
        size_t bytes = featurize_bytes(grad_engine_bytes(ge), P, (int)B, S, D, per_draw ? S : 1,
                                       LD, k, proj_bytes);
        char b1[32], b2[32], b3[32], b4[32];
        fmt_bytes(b1, sizeof b1, (double)bytes);
        fmt_bytes(b2, sizeof b2, (double)grad_engine_bytes(ge));
        fmt_bytes(b3, sizeof b3, (double)(B * P * sizeof(float)));
        fmt_bytes(b4, sizeof b4, (double)proj_bytes);
        fprintf(stderr,
                "featurize: memory about %s per process (grad engine %s, gradient slab %s "
                "for %zu x %zu, %s projector %s, Gram %d x %d doubles) plus the data\n",
                b1, b2, b3, B, P, proj_kind_name(pr.kind), b4, k, k);
        if (!store_grad_params_all(st))
            fprintf(stderr,
                    "featurize: gradients over %zu of the model's %zu parameters (--params "
                    "'%s')\n",
                    P, unet_num_params(net), st->grad_params);
    }

    char label[64];
    if (run->size > 1)
        snprintf(label, sizeof label, "featurize model %d/%d rank 0/%d", m + 1, st->n_models,
                 run->size);
    else
        snprintf(label, sizeof label, "featurize model %d/%d", m + 1, st->n_models);
    Progress prog;
    progress_init(&prog, label, mine, mine_done, 1.0, "img");
    prog.quiet = opt->quiet || run->rank != 0;
    size_t done_mine = mine_done;
    double t_sync = progress_now(), t_log = t_sync;
    const int T = sched.T;

    for (size_t c = (size_t)run->rank; c < n_chunks && rc == JT_OK; c += (size_t)run->size) {
        size_t r0 = c * B, rows = r0 + B <= n ? B : n - r0;
        if (!chunk_needed(mask, r0, rows)) continue;
        double t0 = progress_now();
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < rows; b++)
            attrib_draws(st->draw_seed, m,
                         st->shared_draws ? ATTRIB_SHARED_ITEM : (uint64_t)(r0 + b), S, T, -1, D,
                         t + b * (size_t)S, eps + b * (size_t)S * D);
        for (size_t b = 0; b < rows; b++)
            rows_idx[b] = r0 + b;
        /* No flip: featurization is deterministic (method.md 6.2). */
        if (per_draw) {
            const uint64_t ls = rng_stream(RNG_TAG_ATTRIB_LATENT, (uint64_t)m, 0);
            for (size_t b = 0; b < rows; b++)
                for (int sd = 0; sd < S; sd++)
                    data_batch_draw(data, rows_idx + b, NULL, 1, st->draw_seed, ls, (uint64_t)sd,
                                    x0 + (b * (size_t)S + (size_t)sd) * D);
        } else {
            data_batch_draw(data, rows_idx, NULL, rows, 0, 0, 0, x0);
        }
        for (size_t b = 0; labels && b < rows; b++)
            labels[b] = run->cond == COND_OWN_CLASS ? data->labels[r0 + b] : run->K - 1;
        for (size_t b = 0; contexts && b < rows; b++)
            memcpy(contexts + b * LD, featurize_row_context(run->ctx, st->draw_seed, r0 + b),
                   LD * sizeof(float));
        grad_engine_run_cond(ge, st->outfn, (int)rows, S, x0, per_draw, t, eps, &cond, grads,
                             NULL);
        proj_apply(&pr, grads, (int)rows, P, X);
        for (size_t i = 0; i < rows * (size_t)k; i++) {
            if (!isfinite(X[i])) {
                rc = jt_fail(err,
                             "%s: the features of training row %zu are not finite (NaN or "
                             "Inf in the weights or the gradients)",
                             dir, r0 + i / (size_t)k);
                break;
            }
        }
        if (rc == JT_OK) rc = store_write_rows(st, m, r0, rows, X, err);
        if (rc == JT_OK) rc = store_mark_done(st, m, r0, rows, err);
        if (rc != JT_OK) break;
        memset(mask + r0, 1, rows);
        done_mine += rows;
        run->rows_this_call += rows;
        if (run->rows_left_all >= rows) run->rows_left_all -= rows;
        double now = progress_now();
        if (!run->estimated) {
            run->estimated = 1;
            if (run->rank == 0 && !opt->quiet) {
                double rate = (double)rows / (now - t0 > 1e-9 ? now - t0 : 1e-9);
                char e[32];
                fmt_duration(e, sizeof e, (double)run->rows_left_all / rate);
                fprintf(stderr,
                        "featurize: first chunk: %zu rows in %.2f s (%.2f rows/s per "
                        "process): about %s for the %zu rows left to this process, plus "
                        "the kernels\n",
                        rows, now - t0, rate, e, run->rows_left_all);
            }
        }
        progress_update(&prog, done_mine, NULL, done_mine == mine);
        if (now - t_sync > 5.0) {
            rc = store_sync(st, m, err);
            t_sync = now;
        }
        if (run->rank == 0 && now - t_log > 30.0) {
            char line[256];
            snprintf(line, sizeof line,
                     "{\"model\":%d,\"rows_done\":%zu,\"rows\":%zu,\"processes\":%d,"
                     "\"rows_per_s\":%.3f,\"elapsed_s\":%.1f}",
                     m, done_mine * (size_t)run->size, n, run->size,
                     progress_rate(&prog, done_mine), now - run->t_start);
            log_line(st->dir, line);
            t_log = now;
        }
        if (g_stop_signal) {
            *stopped = 2;
            break;
        }
        if (opt->stop_after_rows > 0 && run->rows_this_call >= opt->stop_after_rows) {
            *stopped = 1;
            break;
        }
    }
    if (rc == JT_OK) rc = store_sync(st, m, err);
    if (rc == JT_OK && run->rank == 0) {
        char line[256];
        snprintf(line, sizeof line,
                 "{\"model\":%d,\"rows_done_rank0\":%zu,\"rows_rank0\":%zu,"
                 "\"processes\":%d,\"rows_per_s\":%.3f,\"elapsed_s\":%.1f,\"stopped\":%d}",
                 m, done_mine, mine, run->size, progress_rate(&prog, done_mine),
                 progress_now() - run->t_start, *stopped);
        log_line(st->dir, line);
    }
    free(grads), free(X), free(x0), free(eps), free(t), free(labels), free(contexts);
    free(rows_idx), free(mask);
    proj_free(&pr);
    grad_engine_free(ge);
    sched_free(&sched);
    model_free(model);
    return rc;
}

/* Rank 0: X^T X from the stored rows (blocks of about 32 MiB), the kernel, the manifest. The same
 * arithmetic whether rows were computed in this call or not: gram_add's order is fixed and
 * kernel_invert sets LAPACK single-threaded itself (a resumed run builds no grad engine). */
static int finalize_model(Run *run, int m, JtError *err) {
    FeatureStore *st = run->st;
    const int k = st->k;
    const FeaturizeOptions *opt = run->opt;
    uint8_t *mask = xmalloc(st->n);
    size_t done = 0;
    int rc = store_rows_done(st, m, mask, &done, err);
    free(mask);
    if (rc != JT_OK) return JT_ERR;
    if (done != st->n)
        return jt_fail(err,
                       "%s/model_%d/done.npy: %zu of %zu rows done after every process "
                       "finished; run the same command again",
                       st->dir, m, done, st->n);
    if (!st->featurized[m] && store_mark_featurized(st, m, err) != JT_OK) return JT_ERR;
    double t0 = progress_now();
    size_t blk = ((size_t)32 << 20) / ((size_t)k * sizeof(float));
    if (blk < 1) blk = 1;
    if (blk > st->n) blk = st->n;
    float *X = xmalloc(blk * (size_t)k * sizeof(float));
    Gram g;
    gram_init(&g, k);
    /* A real feature row is never exactly zero (the projection of a nonzero gradient): a zero
     * row marked done was never written, or was overwritten (a store zero-filled under a running
     * featurize), and must not pass into a finished store. Such rows are marked not done. */
    size_t zero_rows = 0, first_zero = 0;
    for (size_t r0 = 0; r0 < st->n && rc == JT_OK; r0 += blk) {
        size_t rows = r0 + blk <= st->n ? blk : st->n - r0;
        rc = store_read_features(st, m, r0, rows, X, err);
        for (size_t i = 0; rc == JT_OK && i < rows; i++) {
            const float *x = X + i * (size_t)k;
            int zero = 1;
            for (int c = 0; zero && c < k; c++)
                zero = x[c] == 0.0f;
            if (!zero) continue;
            if (zero_rows++ == 0) first_zero = r0 + i;
            rc = store_mark_undone(st, m, r0 + i, err);
        }
        if (rc == JT_OK) gram_add(&g, X, rows);
    }
    free(X);
    if (rc == JT_OK && zero_rows) {
        st->featurized[m] = 0;
        rc = store_write_manifest(st, err);
        if (rc == JT_OK)
            rc = jt_fail(err,
                         "%s/model_%d/features.npy: %zu row(s) marked done are all zeros (the "
                         "first: row %zu), which a computed feature row never is: the file was "
                         "overwritten or damaged; they are marked not done: run the same "
                         "command again to compute them",
                         st->dir, m, zero_rows, first_zero);
    }
    float *A = xmalloc((size_t)k * (size_t)k * sizeof(float));
    KernelInfo info = {0};
    if (rc == JT_OK) {
        rc = kernel_invert(&g, &st->kernel, A, &info, err);
        if (rc != JT_OK) {
            JtError inner = *err;
            jt_fail(err, "model %d (%s): %s", m, st->model_paths[m], inner.msg);
        }
    }
    if (rc == JT_OK) rc = store_write_kernel(st, m, A, &info, err);
    double dt = progress_now() - t0;
    if (rc == JT_OK) {
        if (!opt->quiet)
            fprintf(stderr,
                    "featurize: model %d/%d kernel (%d x %d, %.1f s): lambda %g (%s), "
                    "%s\n",
                    m + 1, st->n_models, k, k, dt, info.lambda_used,
                    info.ridge_added ? "ridge added by --auto-ridge: X^T X was singular"
                                     : "as requested, no ridge added",
                    st->kernel.rescale ? "rescaled by 1/mean|A|" : "not rescaled");
        char line[256];
        snprintf(line, sizeof line,
                 "{\"model\":%d,\"kernel\":{\"lambda_used\":%.9g,\"ridge_added\":"
                 "%s,\"rescale_divisor\":%.9g,\"seconds\":%.2f}}",
                 m, info.lambda_used, info.ridge_added ? "true" : "false", info.rescale_divisor,
                 dt);
        log_line(st->dir, line);
    }
    gram_free(&g);
    free(A);
    return rc;
}

const float *featurize_row_context(const ContextSet *ctx, uint64_t draw_seed, size_t row) {
    int k = context_pick(ctx, draw_seed, rng_stream(RNG_TAG_CONTEXT_PICK, (uint64_t)row, 1), 0);
    return context_of_row(ctx, row, k);
}

/* The text-context conditioning of the run: the ensemble agrees on cross_attention_dim (Xs (M)),
 * and the contexts are given exactly when it has cross-attention, of its width, one set per row. */
static int resolve_context(const FeaturizeOptions *opt, const int *Xs, const int *Ks,
                           const Dataset *data, CondPolicy *cond, JtError *err) {
    const int M = opt->n_models, X = Xs[0];
    for (int m = 1; m < M; m++)
        if (Xs[m] != X)
            return jt_fail(err,
                           "%s/config.json: cross_attention_dim is %d but %s has %d: the models "
                           "of an ensemble must agree on conditioning",
                           opt->model_dirs[m], Xs[m], opt->model_dirs[0], X);
    const ContextSet *c = opt->context;
    if (X == 0) {
        if (c)
            return jt_fail(err,
                           "--cond %s: %s has no cross-attention; text contexts are for "
                           "models with cross-attention",
                           c->description, opt->model_dirs[0]);
        return JT_OK;
    }
    if (!c)
        return jt_fail(err,
                       "%s has cross-attention (cross_attention_dim %d): give the rows' text "
                       "contexts with --cond npy:FILE",
                       opt->model_dirs[0], X);
    if (Ks[0] > 0)
        return jt_fail(err,
                       "%s: class labels and text contexts together are not implemented in "
                       "featurize",
                       opt->model_dirs[0]);
    if (opt->cond != FEATURIZE_COND_DEFAULT)
        return jt_fail(err, "--cond own|null is for class-conditional models; %s takes contexts",
                       opt->model_dirs[0]);
    if (context_check_model(c, X, opt->model_dirs[0], err) != JT_OK) return JT_ERR;
    if (c->n != data->n)
        return jt_fail(err, "the contexts (%s) serve %zu rows but the data has %zu", c->description,
                       c->n, data->n);
    *cond = COND_OWN_CONTEXT;
    return JT_OK;
}

/* The conditioning of the run: the ensemble agrees on num_class_embeds (Ks (M)), --cond fits it,
 * and with own-class every row has a label the models hold (a real class 0..K-2). */
static int resolve_cond(const FeaturizeOptions *opt, const int *Ks, const Dataset *data,
                        CondPolicy *cond, JtError *err) {
    const int M = opt->n_models, K = Ks[0];
    for (int m = 1; m < M; m++)
        if (Ks[m] != K)
            return jt_fail(err,
                           "%s/config.json: num_class_embeds is %d but %s has %d: the models of "
                           "an ensemble must agree on conditioning (all class-conditional with "
                           "the same classes, or all unconditional)",
                           opt->model_dirs[m], Ks[m], opt->model_dirs[0], K);
    if (K == 0) {
        if (opt->cond != FEATURIZE_COND_DEFAULT)
            return jt_fail(err,
                           "--cond %s: %s is unconditional (no num_class_embeds in its "
                           "config.json); --cond is for class-conditional models",
                           opt->cond == FEATURIZE_COND_NULL ? "null" : "own", opt->model_dirs[0]);
        *cond = COND_NONE;
        return JT_OK;
    }
    if (opt->cond == FEATURIZE_COND_NULL) {
        *cond = COND_NULL_CLASS;
        return JT_OK;
    }
    *cond = COND_OWN_CLASS;
    if (data->n_classes == 0)
        return jt_fail(err,
                       "%s: the data has no labels but %s is class-conditional (num_class_embeds "
                       "%d): featurize with labelled data, or with --cond null for the "
                       "unconditional score",
                       data->description, opt->model_dirs[0], K);
    for (size_t i = 0; i < data->n; i++) {
        const int l = data->labels[i];
        if (l < 0 || l > K - 2) {
            const char *name = l >= 0 ? data_class_name(data, l) : NULL;
            return jt_fail(err,
                           "%s: row %zu has label %d%s%s%s but %s holds classes 0..%d "
                           "(num_class_embeds %d, the null class %d): the data has classes the "
                           "model was not trained on",
                           data->description, i, l, name ? " (" : "", name ? name : "",
                           name ? ")" : "", opt->model_dirs[0], K - 2, K, K - 1);
        }
    }
    return JT_OK;
}

/* ---- the run -------------------------------------------------------------------------------- */

static int kernel_options_equal(const KernelOptions *a, const KernelOptions *b) {
    return a->lambda == b->lambda && (a->auto_ridge != 0) == (b->auto_ridge != 0) &&
           (a->rescale != 0) == (b->rescale != 0);
}

/* Rank 0: opens and checks the store, or creates it. */
static int prepare_store(const FeaturizeOptions *opt, const StoreSpec *spec, FeatureStore *st,
                         JtError *err) {
    char *mp = path_join(opt->out_dir, STORE_MANIFEST);
    struct stat sb;
    int exists = stat(mp, &sb) == 0;
    free(mp);
    if (!exists) return store_create(st, opt->out_dir, spec, err);
    if (store_open(st, opt->out_dir, err) != JT_OK) return JT_ERR;
    int rc = store_check(st, spec, err);
    if (rc == JT_OK && !kernel_options_equal(&st->kernel, &spec->kernel)) {
        int any = 0;
        for (int m = 0; m < st->n_models; m++)
            any |= st->model_finalized[m];
        if (any && !opt->quiet)
            fprintf(stderr,
                    "featurize: the kernel options changed (lambda %g -> %g, auto_ridge "
                    "%d -> %d, rescale %d -> %d): the kernels are computed again from the "
                    "stored features\n",
                    st->kernel.lambda, spec->kernel.lambda, st->kernel.auto_ridge,
                    spec->kernel.auto_ridge, st->kernel.rescale, spec->kernel.rescale);
        rc = store_set_kernel_options(st, &spec->kernel, err);
    }
    if (rc != JT_OK) store_close(st);
    return rc;
}

int featurize_run(const FeaturizeOptions *opt, const Dataset *data, JtError *err) {
    if (opt->stopped) *opt->stopped = 0;
    if (opt->n_models < 1) return jt_fail(err, "no model given (--models DIR[,DIR...])");
    if (!opt->out_dir) return jt_fail(err, "no output store given (--out STORE)");
    if (opt->k < 1) return jt_fail(err, "--k %d: must be at least 1", opt->k);
    if (opt->S < 1) return jt_fail(err, "--S %d: must be at least 1", opt->S);
    if (opt->batch < 1) return jt_fail(err, "--batch %d: must be at least 1", opt->batch);
    if (!(opt->kernel.lambda >= 0))
        return jt_fail(err, "--lambda %g: must be >= 0", opt->kernel.lambda);
    if (data->n == 0) return jt_fail(err, "the dataset (%s) has no images", data->description);
    /* Before any row is computed: the kernel's rank and memory (kernel.c refuses the same
     * singular case, but only after every row). */
    if ((size_t)opt->k > data->n && opt->kernel.lambda == 0 && !opt->kernel.auto_ridge)
        return jt_fail(err,
                       "--k %d with %zu training images and --lambda 0: X^T X (%d x %d) has rank "
                       "at most %zu, so the kernel would be singular; use --k %zu or less, or a "
                       "ridge (--lambda X or --auto-ridge)",
                       opt->k, data->n, opt->k, opt->k, data->n, data->n);
    char kwhat[96];
    snprintf(kwhat, sizeof kwhat, "--k %d: the %d x %d kernel (X^T X and its factor in double)",
             opt->k, opt->k, opt->k);
    if (jt_check_memory(jt_sat_mul(jt_sat_mul((size_t)opt->k, (size_t)opt->k), 20), kwhat, err) !=
        JT_OK)
        return JT_ERR;

    Run run = {0};
    run.opt = opt;
    run.data = data;
    run.t_start = progress_now();
    run.rank = comm_rank();
    run.size = comm_size();
    const int M = opt->n_models;

    /* Every model: matches the data, fingerprint, parameter count. */
    uint64_t *fps = xcalloc((size_t)M, sizeof *fps);
    size_t *params = xcalloc((size_t)M, sizeof *params);
    size_t *gparams = xcalloc((size_t)M, sizeof *gparams);
    uint64_t *gfps = xcalloc((size_t)M, sizeof *gfps);
    char *gsel = NULL; /* the canonical --params */
    int *Ks = xcalloc((size_t)M, sizeof *Ks), *Xs = xcalloc((size_t)M, sizeof *Xs);
    int rc = JT_OK;
    for (int m = 0; m < M && rc == JT_OK; m++) {
        Model *model = NULL;
        rc = model_load_unet(opt->model_dirs[m], &model, err);
        if (rc == JT_OK) rc = check_model_data(opt->model_dirs[m], model_unet(model), data, err);
        if (rc == JT_OK) {
            fps[m] = model_fingerprint(model);
            params[m] = unet_num_params(model_unet(model));
            ParamSelect sel;
            rc = param_select_init(&sel, unet_layout(model_unet(model)), opt->params,
                                   opt->model_dirs[m], err);
            if (rc == JT_OK) {
                gparams[m] = sel.count;
                gfps[m] = sel.fingerprint;
                if (!gsel) gsel = xstrdup(sel.patterns);
                param_select_free(&sel);
            }
            Ks[m] = unet_num_classes(model_unet(model));
            Xs[m] = unet_cross_attention_dim(model_unet(model));
            if (run.rank == 0) warn_training_data(opt->model_dirs[m], data);
        }
        model_free(model);
    }
    if (rc == JT_OK) rc = resolve_context(opt, Xs, Ks, data, &run.cond, err);
    if (rc == JT_OK && run.cond != COND_OWN_CONTEXT)
        rc = resolve_cond(opt, Ks, data, &run.cond, err);
    run.K = Ks[0];
    run.ctx = run.cond == COND_OWN_CONTEXT ? opt->context : NULL;
    free(Ks), free(Xs);
    StoreSpec spec = {M,
                      opt->model_dirs,
                      fps,
                      params,
                      data->n,
                      data->fingerprint,
                      data->description,
                      opt->outfn,
                      opt->S,
                      opt->k,
                      opt->proj_kind,
                      opt->proj_seed,
                      opt->draw_seed,
                      opt->shared_draws,
                      opt->kernel,
                      la_sgemm_kernel(),
                      run.cond,
                      run.ctx ? run.ctx->description : NULL,
                      run.ctx ? run.ctx->fingerprint : 0,
                      gsel,
                      gparams,
                      gfps};
    FeatureStore st;
    memset(&st, 0, sizeof st);
    int open = 0;
    /* Rank 0 holds the store's lock for the whole run, for every process of it: the others touch
     * the store only after rank 0 has checked it (the comm_agree below) and finish before rank 0
     * lets go (the last comm_agree of the model loop). Another run finds it held and stops. */
    DirLock lock = {-1, NULL, 0};
    if (rc == JT_OK && run.rank == 0) {
        const ArtifactKind ok[] = {ARTIFACT_STORE};
        rc = artifact_check_out(opt->out_dir, "--out", "a feature store", ok, 1, err);
        if (rc == JT_OK) rc = dir_lock(&lock, opt->out_dir, "featurize", err);
    }
    if (rc == JT_OK && run.rank == 0) {
        rc = prepare_store(opt, &spec, &st, err);
        open = rc == JT_OK;
    }
    /* Rank 0 has created or checked the store before anyone else opens it. */
    rc = comm_agree(rc, err, "%s: another process failed to prepare the store (see its message)",
                    opt->out_dir);
    if (rc == JT_OK && run.rank != 0) {
        rc = store_open(&st, opt->out_dir, err);
        open = rc == JT_OK;
        /* the same inputs as rank 0's, but maybe another machine: its SGEMM kernel must match */
        if (open) rc = store_check(&st, &spec, err);
    }
    rc = comm_agree(rc, err, "%s: another process failed to open the store (see its message)",
                    opt->out_dir);
    if (rc != JT_OK) {
        if (open) store_close(&st);
        dir_unlock(&lock);
        free(fps), free(params), free(gparams), free(gfps), free(gsel);
        return JT_ERR;
    }
    run.st = &st;

    /* What is left, for the estimate and the opening line. */
    int *need_rows = xcalloc((size_t)M, sizeof *need_rows),
        *need_kernel = xcalloc((size_t)M, sizeof *need_kernel);
    size_t left_total = 0;
    {
        uint8_t *mask = xmalloc(st.n);
        const size_t B = (size_t)opt->batch, n_chunks = (st.n + B - 1) / B;
        for (int m = 0; m < M && rc == JT_OK; m++) {
            need_kernel[m] = !st.model_finalized[m];
            need_rows[m] = !st.featurized[m];
            if (!need_rows[m]) continue;
            size_t done = 0;
            rc = store_rows_done(&st, m, mask, &done, err);
            left_total += st.n - done;
            for (size_t c = (size_t)run.rank; c < n_chunks && rc == JT_OK; c += (size_t)run.size) {
                size_t r0 = c * B, rows = r0 + B <= st.n ? B : st.n - r0;
                if (chunk_needed(mask, r0, rows)) run.rows_left_all += rows;
            }
        }
        free(mask);
    }
    rc = comm_agree(rc, err, "%s: another process failed to read the store (see its message)",
                    opt->out_dir);
    if (rc == JT_OK && run.rank == 0 && !opt->quiet) {
        int nk = 0;
        for (int m = 0; m < M; m++)
            nk += need_kernel[m];
        fprintf(stderr,
                "featurize: %d model(s), %zu rows (%s), k %d, S %d, output %s, conditioning %s, "
                "batch %d, %d process(es): %zu rows and %d kernel(s) left -> %s\n",
                M, st.n, data->description, st.k, st.S, outfn_name(st.outfn),
                cond_policy_name(st.cond), opt->batch, run.size, left_total, nk, st.dir);
    }

    void (*old_int)(int) = signal(SIGINT, on_signal);
    void (*old_term)(int) = signal(SIGTERM, on_signal);
    g_stop_signal = 0;
    int stopped = 0;
    for (int m = 0; m < M && rc == JT_OK; m++) {
        if (!need_kernel[m]) continue;
        if (need_rows[m]) {
            int my_stop = 0;
            rc = featurize_model(&run, m, &my_stop, err);
            /* Every process reaches this point for every model: errors and stops are shared. */
            rc = comm_agree(rc, err, "model %d: another process failed (see its message)", m);
            int any_stop = comm_max(my_stop);
            if (rc != JT_OK) break;
            if (any_stop) {
                stopped = my_stop ? my_stop : any_stop;
                if (run.rank == 0 && !opt->quiet) {
                    uint8_t *mask = xmalloc(st.n);
                    size_t done = 0;
                    if (store_rows_done(&st, m, mask, &done, err) == JT_OK)
                        fprintf(stderr,
                                "featurize: stopped at %zu/%zu rows of model %d/%d%s; the "
                                "same command resumes\n",
                                done, st.n, m + 1, M, stopped == 2 ? " (signal)" : "");
                    free(mask);
                }
                break;
            }
        }
        if (run.rank == 0) rc = finalize_model(&run, m, err);
        rc = comm_agree(rc, err, "model %d: the kernel failed on rank 0 (see its message)", m);
    }
    signal(SIGINT, old_int);
    signal(SIGTERM, old_term);
    if (rc == JT_OK && !stopped && run.rank == 0 && !opt->quiet)
        fprintf(stderr, "featurize: done: %d model(s) finalized in %s (%.1f s)\n", M, st.dir,
                progress_now() - run.t_start);
    if (opt->stopped) *opt->stopped = stopped;
    free(need_rows), free(need_kernel);
    store_close(&st);
    dir_unlock(&lock);
    free(fps), free(params), free(gparams), free(gfps), free(gsel);
    return rc;
}
