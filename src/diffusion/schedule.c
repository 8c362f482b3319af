/* schedule.c: diffusers' DDPMScheduler / DDIMScheduler noise schedule (unet2d.md 8.1-8.4, 9):
 * scheduler_config.json in and out, the float32 tables and set_timesteps.
 *
 * Bit-level notes (checked against torch 2.15 CPU by tests/test_schedule.c):
 * - torch.linspace(start, end, T) for float32 runs a serial two-sided loop in float32:
 *   step = (end - start) / (T - 1); v[i] = start + step * i for i < T / 2, else
 *   end - step * (T - 1 - i). torch's CPU build contracts both into one fused multiply-add, so the
 *   table is fmaf(step, i, start) / fmaf(-step, T - 1 - i, end): bitwise equal to torch.
 * - torch's CPU cumprod keeps the running product in double and rounds each prefix to float.
 * - squaredcos_cap_v2 is computed in double exactly as the Python code does (same libm: cos, pow),
 *   then rounded to float, as torch.tensor(betas, dtype=float32) does.
 * - set_timesteps follows numpy: linspace(0, T-1, n) = i * ((T-1)/(n-1)) with the last entry T-1,
 *   round half to even; arange(T, 0, -T/n) has ceil(T / (T/n)) entries start + i * delta, where
 *   delta = (start - T/n) - start. */
#include "diffusion/schedule.h"

#include "model/pipeline.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The diffusers version whose DDPMScheduler loads the config we write (checked by the twin). */
#define SCHED_DIFFUSERS_VERSION "0.42.1"
#define SCHED_CONFIG_NAME "scheduler_config.json"
/* Python's math.pi (the double nearest pi); M_PI is not standard C. */
static const double SCHED_PI = 3.141592653589793;

void sched_config_default(SchedConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->num_train_timesteps = 1000;
    cfg->beta_start = 0.0001;
    cfg->beta_end = 0.02;
    cfg->beta_schedule = SCHED_BETA_LINEAR;
    cfg->clip_sample = true;
    cfg->clip_sample_range = 1.0;
    cfg->timestep_spacing = SCHED_SPACING_LEADING;
    cfg->steps_offset = 0;
    cfg->set_alpha_to_one = true;
    cfg->dynamic_thresholding_ratio = 0.995;
    cfg->sample_max_value = 1.0;
}

static const char *const SCHED_BETA_NAMES[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
static const char *const SCHED_SPACING_NAMES[] = {"leading", "linspace", "trailing"};

const char *sched_beta_schedule_name(SchedBetaSchedule b) {
    return (unsigned)b < 3 ? SCHED_BETA_NAMES[b] : "?";
}

const char *sched_spacing_name(SchedSpacing s) {
    return (unsigned)s < 3 ? SCHED_SPACING_NAMES[s] : "?";
}

/* ------------------------------------------------------------------------------------------ */
/* scheduler_config.json                                                                       */

static const char *sched_json_type(const cJSON *it) {
    if (cJSON_IsNull(it)) return "null";
    if (cJSON_IsBool(it)) return "a boolean";
    if (cJSON_IsNumber(it)) return "a number";
    if (cJSON_IsString(it)) return "a string";
    if (cJSON_IsArray(it)) return "an array";
    if (cJSON_IsObject(it)) return "an object";
    return "an invalid value";
}

static int sched_get_int(const cJSON *it, const char *name, int *out, JtError *err) {
    if (!cJSON_IsNumber(it))
        return jt_fail(err, "%s: field \"%s\": expected an integer, got %s", name, it->string,
                       sched_json_type(it));
    double v = it->valuedouble;
    if (v != floor(v) || v < INT_MIN || v > INT_MAX)
        return jt_fail(err, "%s: field \"%s\": expected an integer, got %.17g", name, it->string,
                       v);
    *out = (int)v;
    return JT_OK;
}

static int sched_get_num(const cJSON *it, const char *name, double *out, JtError *err) {
    if (!cJSON_IsNumber(it))
        return jt_fail(err, "%s: field \"%s\": expected a number, got %s", name, it->string,
                       sched_json_type(it));
    *out = it->valuedouble;
    return JT_OK;
}

static int sched_get_bool(const cJSON *it, const char *name, bool *out, JtError *err) {
    if (!cJSON_IsBool(it))
        return jt_fail(err, "%s: field \"%s\": expected true or false, got %s", name, it->string,
                       sched_json_type(it));
    *out = cJSON_IsTrue(it);
    return JT_OK;
}

static int sched_get_string(const cJSON *it, const char *name, const char **out, JtError *err) {
    if (!cJSON_IsString(it))
        return jt_fail(err, "%s: field \"%s\": expected a string, got %s", name, it->string,
                       sched_json_type(it));
    *out = it->valuestring;
    return JT_OK;
}

/* A string field that must take one of `n` values; *out = its index. */
static int sched_get_choice(const cJSON *it, const char *name, const char *const *choices, int n,
                            int *out, JtError *err) {
    const char *v = NULL;
    if (sched_get_string(it, name, &v, err)) return JT_ERR;
    for (int i = 0; i < n; i++)
        if (strcmp(v, choices[i]) == 0) {
            *out = i;
            return JT_OK;
        }
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s\"%s\"", i ? ", " : "", choices[i]);
    }
    return jt_fail(err, "%s: field \"%s\": unsupported value \"%s\" (jtrak supports %s)", name,
                   it->string, v, list);
}

/* A field diffusers has but jtrak supports at one value only (a boolean or a string). */
static int sched_require_bool(const cJSON *it, const char *name, bool want, const char *why,
                              JtError *err) {
    bool v = false;
    if (sched_get_bool(it, name, &v, err)) return JT_ERR;
    if (v != want)
        return jt_fail(err, "%s: field \"%s\": unsupported value %s (jtrak supports only %s: %s)",
                       name, it->string, v ? "true" : "false", want ? "true" : "false", why);
    return JT_OK;
}

static int sched_config_validate(const SchedConfig *c, const char *name, JtError *err) {
    if (c->num_train_timesteps < 2 || c->num_train_timesteps > 1000000)
        return jt_fail(err, "%s: field \"num_train_timesteps\": %d is outside 2..1000000", name,
                       c->num_train_timesteps);
    if (c->beta_schedule != SCHED_BETA_SQUAREDCOS_CAP_V2) {
        /* Every beta of (scaled) linear lies between beta_start and beta_end. */
        if (!(c->beta_start > 0 && c->beta_start < 1))
            return jt_fail(err, "%s: field \"beta_start\": %.17g is outside (0, 1)", name,
                           c->beta_start);
        if (!(c->beta_end > 0 && c->beta_end < 1))
            return jt_fail(err, "%s: field \"beta_end\": %.17g is outside (0, 1)", name,
                           c->beta_end);
    }
    if (!(c->clip_sample_range > 0) || !isfinite(c->clip_sample_range))
        return jt_fail(err, "%s: field \"clip_sample_range\": %.17g is not a positive number", name,
                       c->clip_sample_range);
    if (c->steps_offset < 0 || c->steps_offset >= c->num_train_timesteps)
        return jt_fail(err, "%s: field \"steps_offset\": %d is outside 0..num_train_timesteps-1",
                       name, c->steps_offset);
    if ((unsigned)c->beta_schedule > 2)
        return jt_fail(err, "%s: field \"beta_schedule\": invalid value %d", name,
                       (int)c->beta_schedule);
    if ((unsigned)c->timestep_spacing > 2)
        return jt_fail(err, "%s: field \"timestep_spacing\": invalid value %d", name,
                       (int)c->timestep_spacing);
    return JT_OK;
}

static int sched_config_field(SchedConfig *c, const cJSON *it, const char *name, JtError *err) {
    const char *k = it->string;
    int choice;
    if (k[0] == '_') return JT_OK; /* _class_name, _diffusers_version, ... */
    if (strcmp(k, "num_train_timesteps") == 0)
        return sched_get_int(it, name, &c->num_train_timesteps, err);
    if (strcmp(k, "beta_start") == 0) return sched_get_num(it, name, &c->beta_start, err);
    if (strcmp(k, "beta_end") == 0) return sched_get_num(it, name, &c->beta_end, err);
    if (strcmp(k, "beta_schedule") == 0) {
        if (sched_get_choice(it, name, SCHED_BETA_NAMES, 3, &choice, err)) return JT_ERR;
        c->beta_schedule = (SchedBetaSchedule)choice;
        return JT_OK;
    }
    if (strcmp(k, "trained_betas") == 0) {
        if (!cJSON_IsNull(it))
            return jt_fail(err,
                           "%s: field \"trained_betas\": unsupported (jtrak supports only "
                           "null: betas come from beta_schedule)",
                           name);
        return JT_OK;
    }
    if (strcmp(k, "variance_type") == 0) {
        static const char *const only[] = {"fixed_small"};
        return sched_get_choice(it, name, only, 1, &choice, err);
    }
    if (strcmp(k, "prediction_type") == 0) {
        static const char *const only[] = {"epsilon"};
        return sched_get_choice(it, name, only, 1, &choice, err);
    }
    if (strcmp(k, "clip_sample") == 0) return sched_get_bool(it, name, &c->clip_sample, err);
    if (strcmp(k, "clip_sample_range") == 0)
        return sched_get_num(it, name, &c->clip_sample_range, err);
    if (strcmp(k, "thresholding") == 0)
        return sched_require_bool(it, name, false, "dynamic thresholding is not implemented", err);
    if (strcmp(k, "dynamic_thresholding_ratio") == 0)
        return sched_get_num(it, name, &c->dynamic_thresholding_ratio, err);
    if (strcmp(k, "sample_max_value") == 0)
        return sched_get_num(it, name, &c->sample_max_value, err);
    if (strcmp(k, "timestep_spacing") == 0) {
        if (sched_get_choice(it, name, SCHED_SPACING_NAMES, 3, &choice, err)) return JT_ERR;
        c->timestep_spacing = (SchedSpacing)choice;
        return JT_OK;
    }
    if (strcmp(k, "steps_offset") == 0) return sched_get_int(it, name, &c->steps_offset, err);
    if (strcmp(k, "set_alpha_to_one") == 0)
        return sched_get_bool(it, name, &c->set_alpha_to_one, err);
    /* PNDMScheduler's (SD-1.x and SD-2-base pipelines): an option of its own sampler. The noise
     * schedule is the betas above, which is all training and attribution use; jtrak samples with
     * --sampler ddpm|ddim over them. */
    if (strcmp(k, "skip_prk_steps") == 0) {
        bool ignored;
        return sched_get_bool(it, name, &ignored, err);
    }
    if (strcmp(k, "rescale_betas_zero_snr") == 0)
        return sched_require_bool(it, name, false, "zero-terminal-SNR rescaling is not implemented",
                                  err);
    return jt_fail(err,
                   "%s: field \"%s\": unknown scheduler field (not a DDPMScheduler, "
                   "DDIMScheduler or PNDMScheduler option jtrak knows)",
                   name, k);
}

int sched_config_parse(SchedConfig *cfg, const char *json, size_t len, const char *name,
                       JtError *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        return jt_fail(err, "%s: invalid JSON (parse error at byte %zu)", name, at);
    }
    int rc = JT_OK;
    if (!cJSON_IsObject(root)) {
        rc = jt_fail(err, "%s: expected a JSON object, got %s", name, sched_json_type(root));
        goto done;
    }
    SchedConfig c = *cfg;
    for (const cJSON *it = root->child; it; it = it->next) {
        for (const cJSON *prev = root->child; prev != it; prev = prev->next)
            if (strcmp(prev->string, it->string) == 0) {
                rc = jt_fail(err, "%s: field \"%s\": appears twice", name, it->string);
                goto done;
            }
        if ((rc = sched_config_field(&c, it, name, err))) goto done;
    }
    if ((rc = sched_config_validate(&c, name, err))) goto done;
    *cfg = c;
done:
    cJSON_Delete(root);
    return rc;
}

static int sched_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* path itself, or path/scheduler_config.json when path is a folder (malloc'd). */
static char *sched_config_path(const char *path) {
    return sched_is_dir(path) ? path_join(path, SCHED_CONFIG_NAME) : xstrdup(path);
}

int sched_config_load_model(SchedConfig *cfg, const char *model_dir, JtError *err) {
    sched_config_default(cfg);
    if (pipeline_is_folder(model_dir)) { /* its scheduler/, as the pipeline class loads it */
        PipelineFolder p;
        if (pipeline_open(model_dir, &p, err) != JT_OK) return JT_ERR;
        int rc = pipeline_sched_config_load(cfg, &p, err);
        pipeline_close(&p);
        return rc;
    }
    char *file = path_join(model_dir, SCHED_CONFIG_NAME);
    struct stat sb;
    int rc = stat(file, &sb) == 0 ? sched_config_load(cfg, file, err) : JT_OK;
    free(file);
    return rc;
}

int sched_config_load(SchedConfig *cfg, const char *path, JtError *err) {
    char *file = sched_config_path(path);
    int rc = JT_ERR;
    char *text = NULL;
    FILE *f = fopen(file, "rb");
    if (!f) {
        jt_fail(err, "%s: cannot open: %s", file, strerror(errno));
        goto done;
    }
    size_t cap = 4096, len = 0;
    text = xmalloc(cap);
    for (;;) {
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        if (cap > (size_t)16 << 20) {
            jt_fail(err, "%s: larger than 16 MiB: not a scheduler config", file);
            fclose(f);
            goto done;
        }
        cap *= 2;
        text = xrealloc(text, cap);
    }
    if (ferror(f)) {
        jt_fail(err, "%s: read error: %s", file, strerror(errno));
        fclose(f);
        goto done;
    }
    fclose(f);
    sched_config_default(cfg);
    rc = sched_config_parse(cfg, text, len, file, err);
done:
    free(text);
    free(file);
    return rc;
}

int sched_config_save(const SchedConfig *cfg, const char *path, JtError *err) {
    char *file = sched_config_path(path);
    int rc = sched_config_validate(cfg, file, err);
    cJSON *o = NULL;
    char *text = NULL, *tmp = NULL;
    if (rc) goto done;
    o = cJSON_CreateObject();
    /* Every DDPMScheduler.__init__ argument, as DDPMScheduler.save_config writes them. */
    cJSON_AddStringToObject(o, "_class_name", "DDPMScheduler");
    cJSON_AddStringToObject(o, "_diffusers_version", SCHED_DIFFUSERS_VERSION);
    cJSON_AddNumberToObject(o, "beta_end", cfg->beta_end);
    cJSON_AddStringToObject(o, "beta_schedule", sched_beta_schedule_name(cfg->beta_schedule));
    cJSON_AddNumberToObject(o, "beta_start", cfg->beta_start);
    cJSON_AddBoolToObject(o, "clip_sample", cfg->clip_sample);
    cJSON_AddNumberToObject(o, "clip_sample_range", cfg->clip_sample_range);
    cJSON_AddNumberToObject(o, "dynamic_thresholding_ratio", cfg->dynamic_thresholding_ratio);
    cJSON_AddNumberToObject(o, "num_train_timesteps", cfg->num_train_timesteps);
    cJSON_AddStringToObject(o, "prediction_type", "epsilon");
    cJSON_AddBoolToObject(o, "rescale_betas_zero_snr", 0);
    cJSON_AddNumberToObject(o, "sample_max_value", cfg->sample_max_value);
    /* DDIM-only; DDPMScheduler ignores it (diffusers keeps it for DDIMScheduler.from_config). */
    if (!cfg->set_alpha_to_one) cJSON_AddBoolToObject(o, "set_alpha_to_one", 0);
    cJSON_AddNumberToObject(o, "steps_offset", cfg->steps_offset);
    cJSON_AddBoolToObject(o, "thresholding", 0);
    cJSON_AddStringToObject(o, "timestep_spacing", sched_spacing_name(cfg->timestep_spacing));
    cJSON_AddNullToObject(o, "trained_betas");
    cJSON_AddStringToObject(o, "variance_type", "fixed_small");
    text = cJSON_Print(o);
    CHECK(text != NULL, "cJSON_Print failed (out of memory)");
    size_t n = strlen(file) + 32;
    tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", file, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = jt_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    int bad = fputs(text, f) < 0 || fputc('\n', f) == EOF;
    bad |= fclose(f) != 0;
    if (bad) {
        rc = jt_fail(err, "%s: write error: %s", tmp, strerror(errno));
        remove(tmp);
        goto done;
    }
    if (rename(tmp, file) != 0) {
        rc = jt_fail(err, "%s: cannot rename %s into place: %s", file, tmp, strerror(errno));
        remove(tmp);
        goto done;
    }
done:
    cJSON_Delete(o);
    free(text);
    free(tmp);
    free(file);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Tables                                                                                      */

/* torch.linspace(start, end, T) in float32 on the CPU (see the note at the top of the file). */
static void sched_linspace_f32(float *out, float start, float end, int T) {
    float step = (end - start) / (float)(T - 1);
    int halfway = T / 2;
    for (int i = 0; i < T; i++)
        out[i] = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(T - i - 1), end);
}

/* diffusers' betas_for_alpha_bar(T, max_beta=0.999, "cosine"), in double as its Python code. */
static double sched_cosine_alpha_bar(double t) {
    return pow(cos((t + 0.008) / 1.008 * SCHED_PI / 2), 2.0);
}

void sched_make_betas(float *betas, const SchedConfig *cfg) {
    int T = cfg->num_train_timesteps;
    switch (cfg->beta_schedule) {
    case SCHED_BETA_LINEAR:
        sched_linspace_f32(betas, (float)cfg->beta_start, (float)cfg->beta_end, T);
        break;
    case SCHED_BETA_SCALED_LINEAR:
        /* Python's beta ** 0.5 is libm pow, then torch.linspace in float32, then ** 2 in float32.
         */
        sched_linspace_f32(betas, (float)pow(cfg->beta_start, 0.5), (float)pow(cfg->beta_end, 0.5),
                           T);
        for (int i = 0; i < T; i++)
            betas[i] = betas[i] * betas[i];
        break;
    case SCHED_BETA_SQUAREDCOS_CAP_V2:
        for (int i = 0; i < T; i++) {
            double t1 = (double)i / T, t2 = (double)(i + 1) / T;
            double b = 1 - sched_cosine_alpha_bar(t2) / sched_cosine_alpha_bar(t1);
            betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
        break;
    default:
        CHECK(0, "invalid beta_schedule %d", (int)cfg->beta_schedule);
    }
}

void sched_cumprod(float *alphas_cumprod, const float *alphas, int T) {
    double acc = 1.0;
    for (int i = 0; i < T; i++) {
        acc *= (double)alphas[i];
        alphas_cumprod[i] = (float)acc;
    }
}

int sched_init_from_betas(NoiseSchedule *s, const SchedConfig *cfg, const float *betas,
                          JtError *err) {
    memset(s, 0, sizeof *s);
    if (sched_config_validate(cfg, "scheduler config", err)) return JT_ERR;
    int T = cfg->num_train_timesteps;
    for (int i = 0; i < T; i++)
        if (!(betas[i] > 0 && betas[i] < 1))
            return jt_fail(err, "scheduler config: beta[%d] = %.9g is outside (0, 1)", i,
                           (double)betas[i]);
    s->cfg = *cfg;
    s->T = T;
    s->betas = xmalloc((size_t)T * sizeof(float));
    s->alphas = xmalloc((size_t)T * sizeof(float));
    s->alphas_cumprod = xmalloc((size_t)T * sizeof(float));
    memcpy(s->betas, betas, (size_t)T * sizeof(float));
    for (int i = 0; i < T; i++)
        s->alphas[i] = 1.0f - betas[i];
    sched_cumprod(s->alphas_cumprod, s->alphas, T);
    s->final_alpha_cumprod = cfg->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    return JT_OK;
}

int sched_init(NoiseSchedule *s, const SchedConfig *cfg, JtError *err) {
    memset(s, 0, sizeof *s);
    if (sched_config_validate(cfg, "scheduler config", err)) return JT_ERR;
    float *betas = xmalloc((size_t)cfg->num_train_timesteps * sizeof(float));
    sched_make_betas(betas, cfg);
    int rc = sched_init_from_betas(s, cfg, betas, err);
    free(betas);
    return rc;
}

int sched_load(NoiseSchedule *s, const char *path, JtError *err) {
    SchedConfig cfg;
    memset(s, 0, sizeof *s);
    if (sched_config_load(&cfg, path, err)) return JT_ERR;
    return sched_init(s, &cfg, err);
}

void sched_free(NoiseSchedule *s) {
    free(s->betas);
    free(s->alphas);
    free(s->alphas_cumprod);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------------------------ */
/* set_timesteps and add_noise                                                                 */

int sched_set_timesteps(const NoiseSchedule *s, int n, int *timesteps, JtError *err) {
    int T = s->T;
    const char *spacing = sched_spacing_name(s->cfg.timestep_spacing);
    if (n < 1 || n > T)
        return jt_fail(err,
                       "set_timesteps: %d inference steps is outside 1..num_train_timesteps "
                       "(%d)",
                       n, T);
    switch (s->cfg.timestep_spacing) {
    case SCHED_SPACING_LEADING: {
        int ratio = T / n;
        for (int i = 0; i < n; i++)
            timesteps[i] = (n - 1 - i) * ratio + s->cfg.steps_offset;
        break;
    }
    case SCHED_SPACING_LINSPACE: {
        /* numpy.linspace(0, T-1, n).round()[::-1]: y_i = i * step (+ 0), y_{n-1} = T-1 exactly. */
        double step = n > 1 ? (double)(T - 1) / (double)(n - 1) : 0.0;
        for (int i = 0; i < n; i++) {
            double y = i == n - 1 && n > 1 ? (double)(T - 1) : (double)i * step + 0.0;
            timesteps[n - 1 - i] = (int)nearbyint(y); /* round half to even, as numpy */
        }
        break;
    }
    case SCHED_SPACING_TRAILING: {
        /* numpy.round(numpy.arange(T, 0, -T/n)) - 1, with numpy's float arange. */
        double ratio = (double)T / (double)n;
        double len = ceil((0.0 - (double)T) / -ratio);
        if (len != (double)n)
            return jt_fail(err,
                           "set_timesteps: field \"timestep_spacing\": \"trailing\" with %d "
                           "steps out of %d gives %.0f timesteps in diffusers (numpy arange "
                           "rounding), the last one -1; choose another number of steps",
                           n, T, len);
        double start = (double)T, delta = (start + -ratio) - start;
        for (int i = 0; i < n; i++) {
            double y = i == 0 ? start : i == 1 ? start + -ratio : start + (double)i * delta;
            timesteps[i] = (int)nearbyint(y) - 1;
        }
        break;
    }
    default:
        CHECK(0, "invalid timestep_spacing %d", (int)s->cfg.timestep_spacing);
    }
    for (int i = 0; i < n; i++)
        if (timesteps[i] < 0 || timesteps[i] >= T)
            return jt_fail(err,
                           "set_timesteps: field \"steps_offset\"/\"timestep_spacing\": %s "
                           "spacing with %d steps and steps_offset %d gives timestep %d, outside "
                           "0..%d%s",
                           spacing, n, s->cfg.steps_offset, timesteps[i], T - 1,
                           /* e.g. a StableDiffusionPipeline's scheduler (steps_offset 1,
                              model/pipeline.h) with as many steps as training timesteps */
                           s->cfg.steps_offset > 0
                               ? " (sample with fewer steps; a StableDiffusionPipeline folder's "
                                 "schedule has the steps_offset 1 diffusers gives it, its unet/ "
                                 "folder samples with the schedule it was trained with)"
                               : "");
    return JT_OK;
}

void sched_add_noise(float *x_t, const float *x0, const float *eps, const int *t, size_t B,
                     size_t per_sample, const NoiseSchedule *s) {
    for (size_t b = 0; b < B; b++) {
        CHECK(t[b] >= 0 && t[b] < s->T, "add_noise: timestep %d outside 0..%d", t[b], s->T - 1);
        float abar = s->alphas_cumprod[t[b]];
        float sqrt_alpha_prod = sqrtf(abar);
        float sqrt_one_minus_alpha_prod = sqrtf(1.0f - abar);
        size_t o = b * per_sample;
        for (size_t i = 0; i < per_sample; i++) {
            /* Two float32 products, then the sum (separate torch ops: no fused multiply-add). */
            float a = sqrt_alpha_prod * x0[o + i];
            float e = sqrt_one_minus_alpha_prod * eps[o + i];
            x_t[o + i] = a + e;
        }
    }
}
