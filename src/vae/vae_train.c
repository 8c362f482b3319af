/* vae_train.c: see vae_train.h. The loop per step: the batch rows from a seeded permutation per
 * epoch (the stream U-Net training uses, RNG_TAG_TRAIN_ORDER (epoch, 0)), the posterior-sampling
 * noise from (RNG_TAG_TRAIN_NOISE (step, slot)); vae_loss and its backward (the gradient of the
 * batch loss); torch.nn.utils.clip_grad_norm_; AdamW at the scheduled learning rate. When every
 * step is done: the scaling factor 1 / std of the posterior means of the training set (SD's
 * recipe for 0.18215), then the model folder and training.json. The folder is locked for the whole
 * run (io/lock.h). */
#include "vae/vae_train.h"

#include "core/progress.h"
#include "core/rng.h"
#include "io/artifact.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "nn/nn.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATE_FILE "train_state.safetensors"
#define RECORD_FILE "training.json"
#define LOG_FILE "log.jsonl"
#define RECORD_FORMAT "jtrak-vae-training-v1"
#define PI_D 3.141592653589793 /* M_PI is not standard C */

void vae_recipe_default(VaeRecipe *r) {
    memset(r, 0, sizeof *r);
    r->batch = 64;
    r->steps = VAE_REC_STEPS;
    r->lr = 2e-3;
    r->warmup = 50;
    r->beta1 = 0.9;
    r->beta2 = 0.999;
    r->adam_eps = 1e-8;
    r->weight_decay = 0.0;
    r->clip_norm = 1.0;
    r->kl_beta = VAE_REC_BETA;
    r->seed = 0;
}

char *vae_recipe_json(const VaeRecipe *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "loss", "mse+beta*kl");
    cJSON_AddNumberToObject(o, "batch", r->batch);
    cJSON_AddNumberToObject(o, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "lr", r->lr);
    cJSON_AddNumberToObject(o, "warmup", (double)r->warmup);
    cJSON_AddStringToObject(o, "lr_schedule", "cosine");
    cJSON_AddNumberToObject(o, "adam_beta1", r->beta1);
    cJSON_AddNumberToObject(o, "adam_beta2", r->beta2);
    cJSON_AddNumberToObject(o, "adam_eps", r->adam_eps);
    cJSON_AddNumberToObject(o, "weight_decay", r->weight_decay);
    cJSON_AddNumberToObject(o, "clip_norm", r->clip_norm);
    cJSON_AddNumberToObject(o, "kl_beta", r->kl_beta);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    cJSON_AddStringToObject(o, "seed", seed); /* a string: JSON numbers lose 64-bit integers */
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* linear warmup from lr / warmup to lr, then a half cosine to 0 at the last step */
double vae_lr_at(const VaeRecipe *r, long step) {
    if (step < r->warmup) return r->lr * (double)(step + 1) / (double)r->warmup;
    const long span = r->steps - r->warmup;
    if (span <= 0) return r->lr;
    const double progress = (double)(step - r->warmup) / (double)span;
    return r->lr * 0.5 * (1.0 + cos(PI_D * progress));
}

int vae_latent_std(Vae *vae, const Dataset *data, int batch, int quiet, double *mean_out,
                   double *std_out, JtError *err) {
    if (data->n < 2) return jt_fail(err, "the latent std needs at least 2 images");
    VaeRun *run;
    const int B = (size_t)batch < data->n ? batch : (int)data->n;
    if (vae_run_create(&run, vae, B, data->h, data->w, VAE_RUN_FORWARD_ONLY, err) != JT_OK)
        return JT_ERR;
    int zc, zh, zw;
    vae_run_latent_shape(run, &zc, &zh, &zw);
    const size_t per = (size_t)zc * zh * zw, D = (size_t)data->c * data->h * data->w;
    float *x = xmalloc((size_t)B * D * sizeof(float));
    float *mean = xmalloc((size_t)B * per * sizeof(float)), *lv = xmalloc((size_t)B * per * 4);
    size_t *rows = xmalloc((size_t)B * sizeof(size_t));
    /* Welford over every entry, in double, batch after batch in row order */
    double mu = 0, m2 = 0;
    size_t count = 0;
    Progress prog;
    const size_t nb = (data->n + (size_t)B - 1) / (size_t)B;
    progress_init(&prog, "latent std", nb, 0, (double)B, "img");
    prog.quiet = quiet;
    for (size_t bi = 0; bi < nb; bi++) {
        const size_t r0 = bi * (size_t)B;
        const int b = (int)(data->n - r0 < (size_t)B ? data->n - r0 : (size_t)B);
        for (int j = 0; j < b; j++)
            rows[j] = r0 + (size_t)j;
        data_batch_f32(data, rows, NULL, (size_t)b, x);
        vae_encode(vae, run, b, x, mean, lv);
        for (size_t k = 0; k < (size_t)b * per; k++) {
            const double v = mean[k], d = v - mu;
            count++;
            mu += d / (double)count;
            m2 += d * (v - mu);
        }
        progress_update(&prog, bi + 1, NULL, bi + 1 == nb);
    }
    free(x), free(mean), free(lv), free(rows);
    vae_run_free(run);
    *mean_out = mu;
    *std_out = sqrt(m2 / (double)(count - 1));
    if (!(*std_out > 0) || !isfinite(*std_out))
        return jt_fail(err, "the posterior means have std %g: the VAE's latents are degenerate",
                       *std_out);
    return JT_OK;
}

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) {
    g_stop_signal = sig;
}

typedef struct {
    float *params, *m, *v;
    long step;
} VaeState;

static int save_state(const char *out_dir, const ParamLayout *l, const VaeState *s,
                      const char *recipe_json, const char *config_json, uint64_t data_fp,
                      JtError *err) {
    StWriter w;
    st_writer_init(&w);
    model_slab_add(&w, "params.", l, s->params, ST_F32);
    model_slab_add(&w, "adam_m.", l, s->m, ST_F32);
    model_slab_add(&w, "adam_v.", l, s->v, ST_F32);
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", s->step);
    st_writer_set_metadata(&w, "format", RECORD_FORMAT);
    st_writer_set_metadata(&w, "step", buf);
    st_writer_set_metadata(&w, "recipe", recipe_json);
    st_writer_set_metadata(&w, "config", config_json);
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)data_fp);
    st_writer_set_metadata(&w, "data_fingerprint", buf);
    char *path = path_join(out_dir, STATE_FILE);
    int rc = st_writer_write(&w, path, err);
    free(path);
    st_writer_free(&w);
    return rc;
}

/* Loads a state written by save_state, refusing one of another kind, recipe, config or data. */
static int load_state(const char *path, const ParamLayout *l, VaeState *s, const char *recipe_json,
                      const char *config_json, uint64_t data_fp, JtError *err) {
    StFile f;
    if (st_open(&f, path, err) != JT_OK) return JT_ERR;
    int rc = JT_OK;
    const char *fmt = st_metadata_get(&f, "format"), *step = st_metadata_get(&f, "step");
    const char *recipe = st_metadata_get(&f, "recipe"), *config = st_metadata_get(&f, "config");
    const char *dfp = st_metadata_get(&f, "data_fingerprint");
    char want_fp[32];
    snprintf(want_fp, sizeof want_fp, "%016llx", (unsigned long long)data_fp);
    if (!fmt || strcmp(fmt, RECORD_FORMAT) != 0 || !step || !recipe || !config || !dfp) {
        rc = jt_fail(err, "%s: not the training state of a jtrak VAE (train-vae); use a new --out",
                     path);
    } else if (strcmp(recipe, recipe_json) != 0) {
        rc = jt_fail(err,
                     "%s: the run in this folder used another recipe (%s); use a new --out or the "
                     "same options",
                     path, recipe);
    } else if (strcmp(config, config_json) != 0) {
        rc = jt_fail(err, "%s: the run in this folder trained another VAE config; use a new --out",
                     path);
    } else if (strcmp(dfp, want_fp) != 0) {
        rc = jt_fail(err,
                     "%s: the run in this folder trained on other data (fingerprint %s, now %s); "
                     "use a new --out",
                     path, dfp, want_fp);
    } else {
        char *end;
        errno = 0;
        s->step = strtol(step, &end, 10);
        if (errno || *end || s->step < 0) rc = jt_fail(err, "%s: bad step '%s'", path, step);
    }
    if (rc == JT_OK) rc = model_slab_read(&f, "params.", l, s->params, err);
    if (rc == JT_OK) rc = model_slab_read(&f, "adam_m.", l, s->m, err);
    if (rc == JT_OK) rc = model_slab_read(&f, "adam_v.", l, s->v, err);
    st_close(&f);
    return rc;
}

/* The finished run: the scaling factor, the model folder and training.json. */
static int save_final(const char *out_dir, const VaeConfig *cfg, Vae *vae, const VaeRecipe *r,
                      const char *recipe_json, const Dataset *data, long step, int quiet,
                      JtError *err) {
    double lat_mean, lat_std;
    if (vae_latent_std(vae, data, r->batch, quiet, &lat_mean, &lat_std, err) != JT_OK)
        return JT_ERR;
    VaeConfig out = *cfg;
    out.scaling_factor = (float)(1.0 / lat_std);
    if (!quiet)
        fprintf(stderr,
                "train-vae: posterior means over the %zu training images: mean %.4g, std %.4g -> "
                "scaling_factor = 1/std = %.6g (config.json)\n",
                data->n, lat_mean, lat_std, (double)out.scaling_factor);
    Model *m;
    if (model_create_kind(&m, model_kind_find(VAE_CLASS), &out, err) != JT_OK) return JT_ERR;
    memcpy(model_params(m), vae_params(vae), vae_num_params(vae) * sizeof(float));
    int rc = model_save(m, out_dir, err);
    char fp[32];
    model_fingerprint_hex(model_fingerprint(m), fp);
    model_free(m);
    if (rc != JT_OK) return JT_ERR;

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", RECORD_FORMAT);
    cJSON_AddStringToObject(o, "class", VAE_CLASS);
    cJSON_AddItemToObject(o, "recipe", cJSON_Parse(recipe_json));
    cJSON *d = cJSON_AddObjectToObject(o, "dataset");
    char dfp[32];
    cJSON_AddStringToObject(d, "spec", data->description);
    cJSON_AddStringToObject(d, "fingerprint", data_fingerprint_hex(data, dfp));
    cJSON_AddNumberToObject(d, "n", (double)data->n);
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON *sf = cJSON_AddObjectToObject(o, "scaling_factor");
    cJSON_AddNumberToObject(sf, "value", (double)out.scaling_factor);
    cJSON_AddStringToObject(sf, "rule", "1 / std of the posterior means over the training set");
    cJSON_AddNumberToObject(sf, "latent_mean", lat_mean);
    cJSON_AddNumberToObject(sf, "latent_std", lat_std);
    cJSON_AddStringToObject(o, "weights_fingerprint", fp);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    char *path = path_join(out_dir, RECORD_FILE);
    rc = atomic_file_write(path, text, strlen(text), err);
    free(path);
    free(text);
    return rc;
}

static int check_inputs(const VaeConfig *cfg, const Dataset *data, const VaeRecipe *r,
                        JtError *err) {
    if (data->n < 2)
        return jt_fail(err, "the dataset (%s) has fewer than 2 images", data->description);
    if (data->c != cfg->in_channels)
        return jt_fail(err, "the data has %d channel(s) but the VAE's in_channels is %d (%s)",
                       data->c, cfg->in_channels, data->description);
    if (cfg->out_channels != cfg->in_channels)
        return jt_fail(err,
                       "config: out_channels %d differs from in_channels %d; a reconstruction "
                       "loss needs them equal",
                       cfg->out_channels, cfg->in_channels);
    if (vae_config_check_size(cfg, data->h, data->w, "the data", err) != JT_OK) return JT_ERR;
    if (r->batch < 1) return jt_fail(err, "batch size %d: must be at least 1", r->batch);
    if (r->steps < 1) return jt_fail(err, "steps %ld: must be at least 1", r->steps);
    if (!(r->kl_beta >= 0) || !isfinite(r->kl_beta))
        return jt_fail(err, "--beta %g: must be a finite number >= 0", r->kl_beta);
    return JT_OK;
}

static int train_locked(const VaeConfig *cfg_in, const Dataset *data, const VaeRecipe *r,
                        const VaeTrainControl *ctl, int *stopped, JtError *err) {
    *stopped = 0;
    if (check_inputs(cfg_in, data, r, err) != JT_OK) return JT_ERR;
    /* the model folder's sample_size is the size it was trained at */
    VaeConfig cfg = *cfg_in;
    if (data->h == data->w) {
        cfg.sample_size = data->h;
        cfg.sample_h = cfg.sample_w = 0;
    } else {
        cfg.sample_size = 0;
        cfg.sample_h = data->h;
        cfg.sample_w = data->w;
    }
    Vae *vae = NULL;
    VaeRun *run = NULL;
    if (vae_create(&vae, &cfg, err) != JT_OK) return JT_ERR;
    if (vae_run_create(&run, vae, r->batch, data->h, data->w, VAE_RUN_TRAIN, err) != JT_OK) {
        vae_free(vae);
        return JT_ERR;
    }
    if (!ctl->quiet) {
        char mem[32];
        fprintf(stderr, "train-vae: %zu parameters, training memory %s at batch %d\n",
                vae_num_params(vae), jt_format_bytes(vae_run_bytes(run), mem, sizeof mem),
                r->batch);
    }
    int zc, zh, zw;
    vae_run_latent_shape(run, &zc, &zh, &zw);
    const ParamLayout *l = vae_layout(vae);
    const size_t P = l->total, n = data->n, B = (size_t)r->batch;
    const size_t D = (size_t)data->c * data->h * data->w, Z = (size_t)zc * zh * zw;
    char *recipe_json = vae_recipe_json(r), *config_json = vae_config_to_json(&cfg);
    VaeState s = {vae_params(vae), xcalloc(P, sizeof(float)), xcalloc(P, sizeof(float)), 0};
    float *g = xmalloc(P * sizeof(float));
    float *x = xmalloc(B * D * sizeof(float)), *noise = xmalloc(B * Z * sizeof(float));
    size_t *rows = xmalloc(B * sizeof(size_t));
    uint32_t *perm = xmalloc(n * sizeof(uint32_t));
    long perm_epoch = -1;
    FILE *log = NULL;
    int rc = JT_OK;

    char *state_path = path_join(ctl->out_dir, STATE_FILE);
    struct stat sb;
    if (stat(state_path, &sb) == 0) {
        rc = load_state(state_path, l, &s, recipe_json, config_json, data->fingerprint, err);
        if (rc == JT_OK && !ctl->quiet)
            fprintf(stderr, "train-vae: resuming %s at step %ld/%ld\n", ctl->out_dir, s.step,
                    r->steps);
    } else {
        char *rec = path_join(ctl->out_dir, RECORD_FILE);
        if (stat(rec, &sb) == 0)
            rc = jt_fail(err,
                         "%s: a finished training run whose %s is gone: it cannot be resumed or "
                         "extended; use a new --out",
                         rec, STATE_FILE);
        free(rec);
        vae_init_params(vae, r->seed);
    }
    char *log_path = path_join(ctl->out_dir, LOG_FILE);
    if (rc == JT_OK && !(log = fopen(log_path, s.step > 0 ? "a" : "w")))
        rc = jt_fail(err, "%s: cannot open for writing: %s", log_path, strerror(errno));
    free(log_path);

    void (*old_int)(int) = signal(SIGINT, on_signal);
    void (*old_term)(int) = signal(SIGTERM, on_signal);
    g_stop_signal = 0;
    Progress prog;
    progress_init(&prog, "train-vae", (size_t)r->steps, (size_t)s.step, (double)B, "img");
    prog.quiet = ctl->quiet;
    double sum_loss = 0, sum_mse = 0, sum_kl = 0;
    long count = 0, run_steps = 0;
    const uint64_t seed = r->seed;

    while (rc == JT_OK && s.step < r->steps) {
        const long step = s.step;
        for (size_t j = 0; j < B; j++) {
            uint64_t gpos = (uint64_t)step * B + j; /* position in the endless epoch stream */
            long epoch = (long)(gpos / n);
            if (epoch != perm_epoch) {
                rng_permutation(perm, (uint32_t)n, seed,
                                rng_stream(RNG_TAG_TRAIN_ORDER, (uint64_t)epoch, 0));
                perm_epoch = epoch;
            }
            rows[j] = perm[gpos % n];
            rng_fill_normal(noise + j * Z, Z, seed,
                            rng_stream(RNG_TAG_TRAIN_NOISE, (uint64_t)step, j), 0);
        }
        data_batch_f32(data, rows, NULL, B, x);
        double mse, kl;
        double loss = vae_loss(vae, run, (int)B, x, noise, (float)r->kl_beta, &mse, &kl, NULL);
        if (!isfinite(loss)) {
            rc = jt_fail(err, "training diverged at step %ld (loss %g); lower --lr", step, loss);
            break;
        }
        memset(g, 0, P * sizeof(float));
        vae_loss_backward(vae, run, g);
        if (r->clip_norm > 0) { /* torch.nn.utils.clip_grad_norm_ */
            double sq = 0;
            for (size_t k = 0; k < P; k++)
                sq += (double)g[k] * g[k];
            double coef = r->clip_norm / (sqrt(sq) + 1e-6);
            if (coef < 1.0)
                for (size_t k = 0; k < P; k++)
                    g[k] = (float)(g[k] * coef);
        }
        AdamWConfig opt = {(float)vae_lr_at(r, step), (float)r->beta1, (float)r->beta2,
                           (float)r->adam_eps, (float)r->weight_decay};
        adamw_step(s.params, s.m, s.v, g, P, &opt, step + 1);
        s.step = step + 1;
        run_steps++;
        sum_loss += loss, sum_mse += mse, sum_kl += kl;
        count++;

        char extra[96];
        snprintf(extra, sizeof extra, "loss %.5f mse %.5f kl %.1f", loss, mse, kl);
        progress_update(&prog, (size_t)s.step, extra, s.step == r->steps);
        if (s.step % (ctl->log_every > 0 ? ctl->log_every : 50) == 0 || s.step == r->steps) {
            fprintf(log,
                    "{\"step\":%ld,\"loss\":%.6g,\"mse\":%.6g,\"kl\":%.6g,\"lr\":%.6g,"
                    "\"images_per_s\":%.2f,\"elapsed_s\":%.1f}\n",
                    s.step, sum_loss / (double)count, sum_mse / (double)count,
                    sum_kl / (double)count, opt.lr, progress_rate(&prog, (size_t)s.step),
                    progress_now() - prog.t_start);
            fflush(log);
            sum_loss = sum_mse = sum_kl = 0;
            count = 0;
        }
        int pause = g_stop_signal || (ctl->stop_after > 0 && run_steps >= ctl->stop_after);
        if (pause || s.step == r->steps || (ctl->save_every > 0 && s.step % ctl->save_every == 0))
            rc = save_state(ctl->out_dir, l, &s, recipe_json, config_json, data->fingerprint, err);
        if (rc == JT_OK && pause && s.step < r->steps) {
            *stopped = g_stop_signal ? 2 : 1;
            if (!ctl->quiet)
                fprintf(stderr, "train-vae: stopped at step %ld/%ld%s; the same command resumes\n",
                        s.step, r->steps, g_stop_signal ? " (signal)" : "");
            break;
        }
    }
    signal(SIGINT, old_int);
    signal(SIGTERM, old_term);
    if (log) fclose(log);
    /* the training run holds the memory of a batch's activations: free it before encoding */
    vae_run_free(run);
    if (rc == JT_OK && !*stopped)
        rc = save_final(ctl->out_dir, &cfg, vae, r, recipe_json, data, s.step, ctl->quiet, err);

    free(state_path);
    free(recipe_json), free(config_json);
    free(s.m), free(s.v), free(g), free(x), free(noise), free(rows), free(perm);
    vae_free(vae);
    return rc;
}

int vae_train_run(const VaeConfig *cfg, const Dataset *data, const VaeRecipe *r,
                  const VaeTrainControl *ctl, int *stopped, JtError *err) {
    *stopped = 0;
    const ArtifactKind ok[] = {ARTIFACT_TRAINING};
    if (artifact_check_out(ctl->out_dir, "--out", "a VAE training folder", ok, 1, err) != JT_OK)
        return JT_ERR;
    DirLock lock;
    if (dir_lock(&lock, ctl->out_dir, "train-vae", err) != JT_OK) return JT_ERR;
    int rc = train_locked(cfg, data, r, ctl, stopped, err);
    dir_unlock(&lock);
    return rc;
}
