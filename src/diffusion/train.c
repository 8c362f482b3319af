/* train.c: see train.h. The loop per step: draw the batch rows (a seeded permutation per epoch),
 * flips, timesteps, noise and (class-conditional runs) the condition-dropout coins from
 * counter-based streams keyed by (seed, step, slot); the denoiser's noising loss (x_t =
 * add_noise(x_0, eps, t); mean (net(x_t, t, labels) - eps)^2 over the batch) and its batch-mean
 * backward; clip the global gradient norm; AdamW at the scheduled learning rate; EMA update. */
#include "diffusion/train.h"

#include "core/progress.h"
#include "core/rng.h"
#include "diffusion/denoiser.h"
#include "io/artifact.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "nn/nn.h"
#include "unet/unet.h"

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

void train_recipe_default(TrainRecipe *r) {
    memset(r, 0, sizeof *r);
    r->batch = 64;
    r->steps = 1000;
    r->lr = 1e-4;
    r->warmup = 100;
    r->lr_schedule = LR_COSINE;
    r->beta1 = 0.95;
    r->beta2 = 0.999;
    r->adam_eps = 1e-8;
    r->weight_decay = 1e-6;
    r->clip_norm = 1.0;
    r->ema_max_decay = 0.9999;
    r->ema_inv_gamma = 1.0;
    r->ema_power = 0.75;
    r->random_flip = 0;
    r->seed = 0;
    r->cond = TRAIN_COND_NONE;
    r->uncond_prob = 0.0;
}

long train_recommended_steps(size_t n_images, int batch) {
    CHECK(batch >= 1, "batch %d", batch);
    double images = (double)TRAIN_REC_EPOCHS * (double)n_images;
    if (images < (double)TRAIN_REC_MIN_IMAGES) images = (double)TRAIN_REC_MIN_IMAGES;
    double steps = ceil(images / (double)batch);
    return steps > (double)(1L << 40) ? 1L << 40 : (long)steps;
}

char *train_recipe_json(const TrainRecipe *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "batch", r->batch);
    cJSON_AddNumberToObject(o, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "lr", r->lr);
    cJSON_AddNumberToObject(o, "warmup", (double)r->warmup);
    cJSON_AddStringToObject(o, "lr_schedule", r->lr_schedule == LR_COSINE ? "cosine" : "constant");
    cJSON_AddNumberToObject(o, "adam_beta1", r->beta1);
    cJSON_AddNumberToObject(o, "adam_beta2", r->beta2);
    cJSON_AddNumberToObject(o, "adam_eps", r->adam_eps);
    cJSON_AddNumberToObject(o, "weight_decay", r->weight_decay);
    cJSON_AddNumberToObject(o, "clip_norm", r->clip_norm);
    cJSON_AddNumberToObject(o, "ema_max_decay", r->ema_max_decay);
    cJSON_AddNumberToObject(o, "ema_inv_gamma", r->ema_inv_gamma);
    cJSON_AddNumberToObject(o, "ema_power", r->ema_power);
    cJSON_AddBoolToObject(o, "random_flip", r->random_flip);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    cJSON_AddStringToObject(o, "seed", seed); /* a string: JSON numbers lose 64-bit integers */
    cJSON_AddStringToObject(o, "cond",
                            r->cond == TRAIN_COND_CLASS     ? "class"
                            : r->cond == TRAIN_COND_CONTEXT ? "context"
                                                            : "none");
    cJSON_AddNumberToObject(o, "uncond_prob", r->uncond_prob);
    if (r->cond == TRAIN_COND_CONTEXT) {
        char fp[32];
        snprintf(fp, sizeof fp, "%016llx", (unsigned long long)r->context_fingerprint);
        cJSON_AddStringToObject(o, "context_fingerprint", fp);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int train_recipe_from_json(TrainRecipe *r, const void *object, const char *where, JtError *err) {
    const cJSON *o = object;
    static const char *const nums[] = {
        "batch",    "steps",        "lr",        "warmup",        "adam_beta1",    "adam_beta2",
        "adam_eps", "weight_decay", "clip_norm", "ema_max_decay", "ema_inv_gamma", "ema_power"};
    double v[12];
    train_recipe_default(r);
    for (int i = 0; i < 12; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, nums[i]);
        if (!cJSON_IsNumber(x))
            return jt_fail(err, "%s: recipe field '%s' missing or not a number", where, nums[i]);
        v[i] = x->valuedouble;
    }
    const cJSON *sched = cJSON_GetObjectItemCaseSensitive(o, "lr_schedule");
    const cJSON *flip = cJSON_GetObjectItemCaseSensitive(o, "random_flip");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
    if (!cJSON_IsString(sched) ||
        (strcmp(sched->valuestring, "cosine") != 0 && strcmp(sched->valuestring, "constant") != 0))
        return jt_fail(err, "%s: recipe field 'lr_schedule' must be cosine or constant", where);
    if (!cJSON_IsBool(flip))
        return jt_fail(err, "%s: recipe field 'random_flip' not a bool", where);
    if (!cJSON_IsString(seed)) return jt_fail(err, "%s: recipe field 'seed' not a string", where);
    char *end;
    errno = 0;
    unsigned long long sd = strtoull(seed->valuestring, &end, 10);
    if (errno || *end || end == seed->valuestring)
        return jt_fail(err, "%s: recipe field 'seed' is not an integer", where);
    r->batch = (int)v[0], r->steps = (long)v[1], r->lr = v[2], r->warmup = (long)v[3];
    r->beta1 = v[4], r->beta2 = v[5], r->adam_eps = v[6], r->weight_decay = v[7];
    r->clip_norm = v[8], r->ema_max_decay = v[9], r->ema_inv_gamma = v[10], r->ema_power = v[11];
    r->lr_schedule = strcmp(sched->valuestring, "cosine") == 0 ? LR_COSINE : LR_CONSTANT;
    r->random_flip = cJSON_IsTrue(flip);
    r->seed = (uint64_t)sd;
    /* Conditioning: absent in records written before it existed, which were unconditional. */
    const cJSON *cond = cJSON_GetObjectItemCaseSensitive(o, "cond");
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(o, "uncond_prob");
    if (cond && (!cJSON_IsString(cond) || (strcmp(cond->valuestring, "none") != 0 &&
                                           strcmp(cond->valuestring, "class") != 0 &&
                                           strcmp(cond->valuestring, "context") != 0)))
        return jt_fail(err, "%s: recipe field 'cond' must be \"none\", \"class\" or \"context\"",
                       where);
    if (up && (!cJSON_IsNumber(up) || !(up->valuedouble >= 0 && up->valuedouble <= 1)))
        return jt_fail(err, "%s: recipe field 'uncond_prob' must be a number in [0, 1]", where);
    r->cond = !cond                                       ? TRAIN_COND_NONE
              : strcmp(cond->valuestring, "class") == 0   ? TRAIN_COND_CLASS
              : strcmp(cond->valuestring, "context") == 0 ? TRAIN_COND_CONTEXT
                                                          : TRAIN_COND_NONE;
    if (r->cond == TRAIN_COND_CONTEXT) {
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(o, "context_fingerprint");
        char *hex_end = NULL;
        if (!cJSON_IsString(cf) || strlen(cf->valuestring) != 16 ||
            (r->context_fingerprint = strtoull(cf->valuestring, &hex_end, 16), *hex_end))
            return jt_fail(err,
                           "%s: recipe field 'context_fingerprint' missing or not 16 hex "
                           "digits",
                           where);
    }
    r->uncond_prob = up ? up->valuedouble : 0.0;
    if (r->cond == TRAIN_COND_NONE && r->uncond_prob != 0)
        return jt_fail(err, "%s: recipe field 'uncond_prob' is %g but 'cond' is none", where,
                       r->uncond_prob);
    return JT_OK;
}

double train_lr_at(const TrainRecipe *r, long step) {
    if (step < r->warmup) return r->lr * (double)step / (double)(r->warmup > 0 ? r->warmup : 1);
    if (r->lr_schedule == LR_CONSTANT) return r->lr;
    double progress =
        (double)(step - r->warmup) / (double)(r->steps - r->warmup > 0 ? r->steps - r->warmup : 1);
    const double pi = 3.14159265358979323846;
    return r->lr * 0.5 * (1.0 + cos(pi * progress));
}

double train_ema_decay(const TrainRecipe *r, long step) {
    long s = step - 1; /* diffusers: max(0, optimization_step - update_after_step - 1) */
    if (s <= 0) return 0.0;
    double d = 1.0 - pow(1.0 + (double)s / r->ema_inv_gamma, -r->ema_power);
    return d < r->ema_max_decay ? d : r->ema_max_decay;
}

/* The condition-dropout coin of (step, slot): 1 when the draw is unconditional. */
static int dropout_coin(const TrainRecipe *r, long step, int slot) {
    if (r->uncond_prob <= 0) return 0;
    double u = rng_uniform_double(r->seed, rng_stream(RNG_TAG_TRAIN_COND, (uint64_t)step, 0),
                                  (uint64_t)slot);
    return u < r->uncond_prob;
}

int train_cond_label(const TrainRecipe *r, long step, int slot, int label, int null_class) {
    return dropout_coin(r, step, slot) ? null_class : label;
}

const float *train_cond_context(const TrainRecipe *r, const ContextSet *ctx, long step, int slot,
                                size_t row) {
    if (dropout_coin(r, step, slot)) return ctx->uncond;
    int k = context_pick(ctx, r->seed, rng_stream(RNG_TAG_CONTEXT_PICK, (uint64_t)step, 0),
                         (uint64_t)slot);
    return context_of_row(ctx, row, k);
}

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) {
    g_stop_signal = sig;
}

/* A diffusers model folder (config.json + weights) holding `slab`; *fp (if not NULL) receives the
 * saved model's fingerprint. */
static int save_model_folder(const char *dir, const UNetConfig *cfg, const float *slab,
                             uint64_t *fp, JtError *err) {
    Model *m;
    if (model_create(&m, cfg, err) != JT_OK) return JT_ERR;
    const ParamLayout *l = model_layout(m);
    memcpy(model_params(m), slab, l->total * sizeof *slab);
    int rc = model_save(m, dir, err);
    if (fp) *fp = model_fingerprint(m);
    model_free(m);
    return rc;
}

typedef struct {
    float *params, *ema, *m, *v;
    long step;
    /* the log interval in progress: losses of the steps since the last log.jsonl line, so that a
     * resumed run writes the same average as an uninterrupted one (save_every need not be a
     * multiple of log_every) */
    double loss_sum;
    long loss_count;
} TrainState;

static int save_state(const char *out_dir, const ParamLayout *l, const TrainState *s,
                      const char *recipe_json, const char *config_json, uint64_t data_fp,
                      JtError *err) {
    StWriter w;
    st_writer_init(&w);
    model_slab_add(&w, "params.", l, s->params, ST_F32);
    model_slab_add(&w, "ema.", l, s->ema, ST_F32);
    model_slab_add(&w, "adam_m.", l, s->m, ST_F32);
    model_slab_add(&w, "adam_v.", l, s->v, ST_F32);
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", s->step);
    st_writer_set_metadata(&w, "step", buf);
    st_writer_set_metadata(&w, "recipe", recipe_json);
    st_writer_set_metadata(&w, "config", config_json);
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)data_fp);
    st_writer_set_metadata(&w, "data_fingerprint", buf);
    char lbuf[64];
    snprintf(lbuf, sizeof lbuf, "%a", s->loss_sum); /* hex: reads back bitwise */
    st_writer_set_metadata(&w, "log_loss_sum", lbuf);
    snprintf(lbuf, sizeof lbuf, "%ld", s->loss_count);
    st_writer_set_metadata(&w, "log_loss_count", lbuf);
    char *path = path_join(out_dir, STATE_FILE);
    int rc = st_writer_write(&w, path, err);
    free(path);
    st_writer_free(&w);
    return rc;
}

/* Whether a stored recipe is this run's: compared through train_recipe_from_json, so a state file
 * written before the recipe gained fields (which read back as their old meaning) still resumes. */
static int recipe_same(const char *stored, const char *want) {
    cJSON *o = cJSON_Parse(stored);
    TrainRecipe r;
    JtError e;
    int same = 0;
    if (o && train_recipe_from_json(&r, o, "state", &e) == JT_OK) {
        char *canon = train_recipe_json(&r);
        same = strcmp(canon, want) == 0;
        free(canon);
    }
    cJSON_Delete(o);
    return same;
}

/* Loads a state written by save_state, refusing one from another recipe, config or dataset. */
static int load_state(const char *path, const ParamLayout *l, TrainState *s,
                      const char *recipe_json, const char *config_json, uint64_t data_fp,
                      JtError *err) {
    StFile f;
    if (st_open(&f, path, err) != JT_OK) return JT_ERR;
    int rc = JT_OK;
    const char *step = st_metadata_get(&f, "step"), *recipe = st_metadata_get(&f, "recipe");
    const char *config = st_metadata_get(&f, "config"),
               *dfp = st_metadata_get(&f, "data_fingerprint");
    char want_fp[32];
    snprintf(want_fp, sizeof want_fp, "%016llx", (unsigned long long)data_fp);
    if (!step || !recipe || !config || !dfp) {
        rc = jt_fail(err,
                     "%s: not a jtrak training state (metadata step/recipe/config/"
                     "data_fingerprint missing)",
                     path);
    } else if (!recipe_same(recipe, recipe_json)) {
        rc = jt_fail(err,
                     "%s: the run in this folder used another recipe (%s); use a new --out "
                     "or the same options",
                     path, recipe);
    } else if (strcmp(config, config_json) != 0) {
        rc = jt_fail(err,
                     "%s: the run in this folder trained another model config; use a new "
                     "--out",
                     path);
    } else if (strcmp(dfp, want_fp) != 0) {
        rc = jt_fail(err,
                     "%s: the run in this folder trained on other data (fingerprint %s, "
                     "now %s); use a new --out",
                     path, dfp, want_fp);
    } else {
        char *end;
        errno = 0;
        s->step = strtol(step, &end, 10);
        if (errno || *end || s->step < 0) rc = jt_fail(err, "%s: bad step '%s'", path, step);
    }
    /* states written before the log interval was kept lack it: the interval starts afresh */
    const char *lsum = st_metadata_get(&f, "log_loss_sum"),
               *lcount = st_metadata_get(&f, "log_loss_count");
    s->loss_sum = 0;
    s->loss_count = 0;
    if (rc == JT_OK && lsum && lcount) {
        char *e1, *e2;
        errno = 0;
        s->loss_sum = strtod(lsum, &e1);
        s->loss_count = strtol(lcount, &e2, 10);
        if (errno || *e1 || *e2 || s->loss_count < 0 || !isfinite(s->loss_sum))
            rc = jt_fail(err, "%s: bad log_loss_sum '%s' or log_loss_count '%s'", path, lsum,
                         lcount);
    }
    if (rc == JT_OK) rc = model_slab_read(&f, "params.", l, s->params, err);
    if (rc == JT_OK) rc = model_slab_read(&f, "ema.", l, s->ema, err);
    if (rc == JT_OK) rc = model_slab_read(&f, "adam_m.", l, s->m, err);
    if (rc == JT_OK) rc = model_slab_read(&f, "adam_v.", l, s->v, err);
    st_close(&f);
    return rc;
}

/* A resumed run's log.jsonl: only the complete lines of steps up to the state's step. A run killed
 * after logging a step but before saving the state that covers it logs that step again when
 * resumed, and a kill inside a write leaves half a line; both are dropped here, so that the log
 * reads as an uninterrupted run's. */
static int trim_log(const char *path, long step, JtError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return JT_OK; /* no log yet: fopen "a" below makes it */
    char *text = NULL, *kept = NULL;
    size_t len = 0, cap = 0, klen = 0;
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + got + 1 > cap) text = xrealloc(text, cap = 2 * (len + got + 1));
        memcpy(text + len, buf, got);
        len += got;
    }
    fclose(f);
    if (len == 0) {
        free(text);
        return JT_OK;
    }
    text[len] = 0;
    kept = xmalloc(len + 1);
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break; /* half a line: the write was cut */
        const char *key = "{\"step\":";
        char *end;
        long ls = strncmp(line, key, strlen(key)) == 0 ? strtol(line + strlen(key), &end, 10) : -1;
        if (ls >= 0 && ls <= step) {
            memcpy(kept + klen, line, (size_t)(nl + 1 - line));
            klen += (size_t)(nl + 1 - line);
        }
        line = nl + 1;
    }
    int rc = klen == len ? JT_OK : atomic_file_write(path, kept, klen, err);
    free(text);
    free(kept);
    return rc;
}

/* training.json; weights_fingerprint is the model fingerprint (model.h) of the EMA model saved in
 * out_dir. */
static int write_record(const char *out_dir, const char *recipe_json, const Dataset *data,
                        const ContextSet *ctx, const TrainState *s, uint64_t weights_fp,
                        JtError *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "jtrak-training-v1");
    cJSON_AddItemToObject(o, "recipe", cJSON_Parse(recipe_json));
    cJSON *d = cJSON_AddObjectToObject(o, "dataset");
    char fp[32];
    cJSON_AddStringToObject(d, "spec", data->description);
    cJSON_AddStringToObject(d, "fingerprint", data_fingerprint_hex(data, fp));
    cJSON_AddNumberToObject(d, "n", (double)data->n);
    if (ctx) {
        cJSON *c = cJSON_AddObjectToObject(o, "context");
        cJSON_AddStringToObject(c, "spec", ctx->description);
        cJSON_AddStringToObject(c, "fingerprint", context_fingerprint_hex(ctx, fp));
        cJSON_AddNumberToObject(c, "tokens", ctx->L);
        cJSON_AddNumberToObject(c, "width", ctx->D);
    }
    cJSON_AddNumberToObject(o, "step", (double)s->step);
    cJSON_AddStringToObject(o, "weights_fingerprint", model_fingerprint_hex(weights_fp, fp));
    cJSON_AddStringToObject(o, "weights", "ema");
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    char *path = path_join(out_dir, RECORD_FILE);
    int rc = atomic_file_write(path, text, strlen(text), err);
    free(path);
    free(text);
    return rc;
}

/* Everything a finished (or paused) run leaves in its folder. */
static int save_outputs(const char *out_dir, const UNetConfig *cfg, const SchedConfig *sched,
                        const ParamLayout *l, const TrainState *s, const char *recipe_json,
                        const char *config_json, const Dataset *data, const ContextSet *ctx,
                        JtError *err) {
    char *raw = path_join(out_dir, "raw");
    uint64_t ema_fp = 0;
    int rc = save_state(out_dir, l, s, recipe_json, config_json, data->fingerprint, err);
    if (rc == JT_OK) rc = save_model_folder(out_dir, cfg, s->ema, &ema_fp, err);
    if (rc == JT_OK) rc = save_model_folder(raw, cfg, s->params, NULL, err);
    if (rc == JT_OK) rc = sched_config_save(sched, out_dir, err);
    if (rc == JT_OK) rc = write_record(out_dir, recipe_json, data, ctx, s, ema_fp, err);
    free(raw);
    return rc;
}

/* The text-context half of check_inputs. */
static int check_context(const UNetConfig *cfg, const Dataset *data, const ContextSet *ctx,
                         const TrainRecipe *r, JtError *err) {
    if (r->cond != TRAIN_COND_CONTEXT) {
        if (ctx) return jt_fail(err, "text contexts given, but the run is not --cond npy:FILE");
        if (cfg->cross_attention_dim > 0)
            return jt_fail(err,
                           "config: a model with cross-attention (cross_attention_dim %d) is "
                           "trained with text contexts: --cond npy:FILE",
                           cfg->cross_attention_dim);
        return JT_OK;
    }
    if (!ctx) return jt_fail(err, "--cond context needs the contexts (npy:FILE)");
    if (context_check_model(ctx, cfg->cross_attention_dim, "config", err) != JT_OK) return JT_ERR;
    if (cfg->num_class_embeds > 0)
        return jt_fail(err,
                       "config: num_class_embeds %d with text contexts: training on both "
                       "class labels and contexts is not implemented",
                       cfg->num_class_embeds);
    if (ctx->n != data->n)
        return jt_fail(err, "the contexts (%s) serve %zu rows but the data has %zu",
                       ctx->description, ctx->n, data->n);
    if (r->uncond_prob > 0 && !ctx->uncond)
        return jt_fail(err,
                       "caption dropout %g needs the unconditional context (--uncond row:R or "
                       "--uncond npy:FILE)",
                       r->uncond_prob);
    if (!(r->uncond_prob >= 0 && r->uncond_prob <= 1))
        return jt_fail(err, "condition dropout %g: must be in [0, 1]", r->uncond_prob);
    if (r->context_fingerprint != ctx->fingerprint)
        return jt_fail(err, "the recipe's context fingerprint differs from the contexts given");
    return JT_OK;
}

static int check_inputs(const UNetConfig *cfg, const Dataset *data, const TrainRecipe *r,
                        JtError *err) {
    if (data->n == 0) return jt_fail(err, "the dataset (%s) has no images", data->description);
    if (data->latent && r->random_flip)
        return jt_fail(err,
                       "--flip: %s holds latents, which cannot be flipped (a flipped latent is "
                       "not the latent of a flipped image)",
                       data->description);
    if (data->c != cfg->in_channels)
        return jt_fail(err, "the data has %d channel(s) but the model's in_channels is %d (%s)",
                       data->c, cfg->in_channels, data->description);
    if (cfg->out_channels != cfg->in_channels)
        return jt_fail(err,
                       "config: out_channels %d differs from in_channels %d; epsilon "
                       "prediction needs them equal",
                       cfg->out_channels, cfg->in_channels);
    const int H = unet_config_height(cfg), W = unet_config_width(cfg);
    if (H && (data->h != H || data->w != W))
        return jt_fail(err, "the data are %dx%d images but the model's sample_size is %dx%d (%s)",
                       data->h, data->w, H, W, data->description);
    if (unet_config_check_size(cfg, data->h, data->w, "the data", err) != JT_OK) return JT_ERR;
    if (r->batch < 1) return jt_fail(err, "batch size %d: must be at least 1", r->batch);
    const int K = cfg->num_class_embeds;
    if (r->cond == TRAIN_COND_NONE) {
        if (K > 0)
            return jt_fail(err,
                           "config: num_class_embeds is %d (a class-conditional model); train "
                           "it with --cond class",
                           K);
        if (r->uncond_prob != 0)
            return jt_fail(err, "condition dropout %g needs class conditioning (--cond class)",
                           r->uncond_prob);
    } else if (r->cond == TRAIN_COND_CLASS) { /* TRAIN_COND_CONTEXT: check_context */
        if (data->n_classes == 0 || !data->labels)
            return jt_fail(err, "--cond class needs labelled data, and %s has no labels",
                           data->description);
        if (K < data->n_classes + 1)
            return jt_fail(err,
                           "config: num_class_embeds %d cannot hold the data's %d classes "
                           "and the null class (needs at least %d)",
                           K, data->n_classes, data->n_classes + 1);
        for (size_t i = 0; i < data->n; i++)
            if (data->labels[i] < 0 || data->labels[i] >= data->n_classes)
                return jt_fail(err, "%s: row %zu has label %d, outside 0..%d", data->description, i,
                               data->labels[i], data->n_classes - 1);
        if (!(r->uncond_prob >= 0 && r->uncond_prob <= 1))
            return jt_fail(err, "condition dropout %g: must be in [0, 1]", r->uncond_prob);
    }
    if (r->steps < 1) return jt_fail(err, "steps %ld: must be at least 1", r->steps);
    return JT_OK;
}

static int train_run_locked(const UNetConfig *cfg, const SchedConfig *sched_cfg,
                            const Dataset *data, const ContextSet *ctx, const TrainRecipe *r,
                            const TrainControl *ctl, int *stopped, JtError *err) {
    *stopped = 0;
    if (check_inputs(cfg, data, r, err) != JT_OK) return JT_ERR;
    if (check_context(cfg, data, ctx, r, err) != JT_OK) return JT_ERR;
    /* A config without sample_size trains at the data's size, and the model folder says so. */
    UNetConfig sized = *cfg;
    if (unet_config_height(cfg) == 0) unet_config_set_size(&sized, data->h, data->w);
    cfg = &sized;
    NoiseSchedule sched;
    if (sched_init(&sched, sched_cfg, err) != JT_OK) return JT_ERR;
    UNet *net = NULL;
    Denoiser *den = NULL;
    if (unet_create(&net, cfg, err) != JT_OK) {
        sched_free(&sched);
        return JT_ERR;
    }
    if (denoiser_create_ctx(&den, net, &sched, r->batch, data->h, data->w, ctx ? ctx->L : 0,
                            DENOISER_TRAIN, err) != JT_OK ||
        model_mkdirs(ctl->out_dir, err) != JT_OK) {
        denoiser_free(den);
        unet_free(net);
        sched_free(&sched);
        return JT_ERR;
    }
    const ParamLayout *l = unet_layout(net);
    const size_t P = l->total, n = data->n, B = (size_t)r->batch;
    const size_t D = (size_t)data->c * data->h * data->w;
    char *recipe_json = train_recipe_json(r), *config_json = unet_config_to_json(cfg);
    TrainState s = {unet_params(net), xmalloc(P * sizeof(float)), xcalloc(P, sizeof(float)),
                    xcalloc(P, sizeof(float)), 0, 0, 0};
    float *g = xmalloc(P * sizeof(float));
    float *x0 = xmalloc(B * D * sizeof(float)), *eps = xmalloc(B * D * sizeof(float));
    int *ti = xmalloc(B * sizeof(int));
    const int conditional = r->cond == TRAIN_COND_CLASS;
    const int null_class = denoiser_null_class(den);
    int *labels = conditional ? xmalloc(B * sizeof(int)) : NULL;
    const size_t LD = ctx ? (size_t)ctx->L * ctx->D : 0;
    float *contexts = ctx ? xmalloc(B * LD * sizeof(float)) : NULL; /* (B, L, D) */
    const Cond cond = {.labels = labels, .context = contexts};
    size_t *rows = xmalloc(B * sizeof(size_t));
    uint8_t *flips = xmalloc(B);
    uint32_t *perm = xmalloc(n * sizeof(uint32_t));
    long perm_epoch = -1;
    FILE *log = NULL;
    int rc = JT_OK;

    char *state_path = path_join(ctl->out_dir, STATE_FILE);
    struct stat sb;
    if (stat(state_path, &sb) == 0) {
        rc = load_state(state_path, l, &s, recipe_json, config_json, data->fingerprint, err);
        if (rc == JT_OK && !ctl->quiet)
            fprintf(stderr, "train: resuming %s at step %ld/%ld\n", ctl->out_dir, s.step, r->steps);
    } else {
        unet_init_params(net, r->seed);
        memcpy(s.ema, s.params, P * sizeof(float));
    }
    char *log_path = path_join(ctl->out_dir, LOG_FILE);
    if (rc == JT_OK && s.step > 0) rc = trim_log(log_path, s.step, err);
    if (rc == JT_OK && !(log = fopen(log_path, s.step > 0 ? "a" : "w")))
        rc = jt_fail(err, "%s: cannot open for writing: %s", log_path, strerror(errno));
    free(log_path);

    void (*old_int)(int) = signal(SIGINT, on_signal);
    void (*old_term)(int) = signal(SIGTERM, on_signal);
    g_stop_signal = 0;
    Progress prog;
    progress_init(&prog, "train", (size_t)r->steps, (size_t)s.step, (double)B, "img");
    prog.quiet = ctl->quiet;
    long run_steps = 0;
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
            flips[j] =
                r->random_flip
                    ? (uint8_t)(rng_u32(seed, rng_stream(RNG_TAG_TRAIN_ORDER, (uint64_t)step, 1),
                                        j) &
                                1)
                    : 0;
            ti[j] = (int)rng_randint(seed, rng_stream(RNG_TAG_TRAIN_TIMESTEP, 0, (uint64_t)step), j,
                                     (uint32_t)sched.T);
            if (conditional)
                labels[j] = train_cond_label(r, step, (int)j, data->labels[rows[j]], null_class);
            if (ctx)
                memcpy(contexts + j * LD, train_cond_context(r, ctx, step, (int)j, rows[j]),
                       LD * sizeof(float));
            rng_fill_normal(eps + j * D, D, seed,
                            rng_stream(RNG_TAG_TRAIN_NOISE, (uint64_t)step, j), 0);
        }
        /* pixels as they are; latents: one posterior sample per (step, slot) */
        for (size_t j = 0; j < B; j++)
            data_batch_draw(data, rows + j, flips + j, 1, seed,
                            rng_stream(RNG_TAG_TRAIN_LATENT, (uint64_t)step, 0), j, x0 + j * D);
        double loss = denoiser_loss(den, (int)B, x0, ti, eps, &cond, NULL);
        memset(g, 0, P * sizeof(float));
        denoiser_loss_backward(den, (int)B, LOSS_BATCH_MEAN, g, 0);
        if (!isfinite(loss)) {
            rc = jt_fail(err, "training diverged at step %ld (loss %g); lower --lr", step, loss);
            break;
        }
        if (r->clip_norm > 0) { /* torch.nn.utils.clip_grad_norm_ */
            double sq = 0;
            for (size_t k = 0; k < P; k++)
                sq += (double)g[k] * g[k];
            double norm = sqrt(sq), coef = r->clip_norm / (norm + 1e-6);
            if (coef < 1.0)
                for (size_t k = 0; k < P; k++)
                    g[k] = (float)(g[k] * coef);
        }
        AdamWConfig opt = {(float)train_lr_at(r, step), (float)r->beta1, (float)r->beta2,
                           (float)r->adam_eps, (float)r->weight_decay};
        adamw_step(s.params, s.m, s.v, g, P, &opt, step + 1);
        float decay = (float)train_ema_decay(r, step + 1), one_minus = 1.0f - decay;
        for (size_t k = 0; k < P; k++)
            s.ema[k] -= one_minus * (s.ema[k] - s.params[k]);
        s.step = step + 1;
        run_steps++;
        s.loss_sum += loss;
        s.loss_count++;

        char extra[64];
        snprintf(extra, sizeof extra, "loss %.4f", loss);
        progress_update(&prog, (size_t)s.step, extra, s.step == r->steps);
        if (s.step % (ctl->log_every > 0 ? ctl->log_every : 50) == 0 || s.step == r->steps) {
            fprintf(log,
                    "{\"step\":%ld,\"loss\":%.6f,\"lr\":%.6g,\"images_per_s\":%.2f,"
                    "\"elapsed_s\":%.1f}\n",
                    s.step, s.loss_sum / (double)s.loss_count, opt.lr,
                    progress_rate(&prog, (size_t)s.step), progress_now() - prog.t_start);
            fflush(log);
            s.loss_sum = 0;
            s.loss_count = 0;
        }
        int pause = g_stop_signal || (ctl->stop_after > 0 && run_steps >= ctl->stop_after);
        if (pause || s.step == r->steps || (ctl->save_every > 0 && s.step % ctl->save_every == 0))
            rc = save_outputs(ctl->out_dir, cfg, sched_cfg, l, &s, recipe_json, config_json, data,
                              ctx, err);
        if (pause && s.step < r->steps) {
            *stopped = g_stop_signal ? 2 : 1;
            if (!ctl->quiet)
                fprintf(stderr, "train: stopped at step %ld/%ld%s; the same command resumes\n",
                        s.step, r->steps, g_stop_signal ? " (signal)" : "");
            break;
        }
    }
    if (rc == JT_OK && s.step >= r->steps && run_steps == 0)
        rc = save_outputs(ctl->out_dir, cfg, sched_cfg, l, &s, recipe_json, config_json, data, ctx,
                          err);
    signal(SIGINT, old_int);
    signal(SIGTERM, old_term);

    if (log) fclose(log);
    free(state_path);
    free(recipe_json), free(config_json);
    free(s.ema), free(s.m), free(s.v), free(g), free(x0), free(eps);
    free(ti), free(labels), free(contexts), free(rows), free(flips), free(perm);
    denoiser_free(den);
    unet_free(net);
    sched_free(&sched);
    return rc;
}

/* The folder: a training folder (resumed or checked by train_run_locked) or nothing of jtrak's,
 * locked for the whole run (io/lock.h) so that two runs never train into it at once. */
int train_run(const UNetConfig *cfg, const SchedConfig *sched_cfg, const Dataset *data,
              const TrainRecipe *r, const TrainControl *ctl, int *stopped, JtError *err) {
    return train_run_ctx(cfg, sched_cfg, data, NULL, r, ctl, stopped, err);
}

int train_run_ctx(const UNetConfig *cfg, const SchedConfig *sched_cfg, const Dataset *data,
                  const ContextSet *ctx, const TrainRecipe *r, const TrainControl *ctl,
                  int *stopped, JtError *err) {
    *stopped = 0;
    const ArtifactKind ok[] = {ARTIFACT_TRAINING};
    if (artifact_check_out(ctl->out_dir, "--out", "a training folder", ok, 1, err) != JT_OK)
        return JT_ERR;
    DirLock lock;
    if (dir_lock(&lock, ctl->out_dir, "train", err) != JT_OK) return JT_ERR;
    int rc = train_run_locked(cfg, sched_cfg, data, ctx, r, ctl, stopped, err);
    dir_unlock(&lock);
    return rc;
}
