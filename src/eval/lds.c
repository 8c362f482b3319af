/* lds.c: see lds.h. */
/* realpath() is XSI */
#define _XOPEN_SOURCE 700
#include "eval/lds.h"

#include "core/progress.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "diffusion/schedule.h"
#include "diffusion/train.h"
#include "diffusion/trajectory.h"
#include "eval/model_record.h"
#include "eval/stats.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "nn/nn.h"
#include "report/plot.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SEED_STRIDE 1000003ULL /* model seed offset between seed replicas */

void lds_options_default(LdsOptions *o) {
    memset(o, 0, sizeof *o);
    o->K = 64;
    o->alpha = 0.5;
    o->crn = 1;
    o->seeds_per_subset = 1;
    o->ceiling = 4;
    o->steps = "900,700,500,300,100,0";
    o->R_eval = 100;
    o->grid = 10;
    o->replicates = 1000;
}

static void hex(uint64_t v, char buf[17]) { snprintf(buf, 17, "%016llx", (unsigned long long)v); }

/* Everything lds derives from: the full model, its recipe and data, the targets. */
typedef struct {
    ModelRecord mr;
    Trajectory tr;
    int *kidx, n_steps; /* ground-truth steps: indices into tr */
    uint8_t *mask;      /* (K, n) */
} LdsInputs;

static int load_inputs(const LdsOptions *o, LdsInputs *in, JtError *err) {
    if (model_record_load(&in->mr, o->model_dir, "lds retrains the model's recipe on subsets of its data",
                          err) != JT_OK)
        return JT_ERR;
    int rc = traj_load(&in->tr, o->traj_path, err);
    if (rc == JT_OK && in->tr.model_fingerprint != in->mr.fingerprint)
        rc = jt_fail(err, "%s: the targets were sampled from another model than %s (fingerprints "
                          "differ)", o->traj_path, o->model_dir);
    return rc;
}

/* Ground-truth steps, as score --steps resolves them. */
static int resolve_steps(const char *spec, LdsInputs *in, JtError *err) {
    const Trajectory *tr = &in->tr;
    in->kidx = xmalloc((size_t)tr->S * sizeof(int));
    in->n_steps = 0;
    int a, b, c;
    char tail;
    if (sscanf(spec, "%d:%d:%d%c", &a, &b, &c, &tail) == 3 && b > a && c > 0) {
        for (int k = 0; k < tr->S; k++) {
            int t = tr->timesteps[k];
            if (t >= a && t < b && (t - a) % c == 0) in->kidx[in->n_steps++] = k;
        }
    } else {
        const char *p = spec;
        while (*p) {
            char *end;
            long t = strtol(p, &end, 10);
            if (end == p || (*end && *end != ','))
                return jt_fail(err, "--steps '%s': a list 900,500,100 or START:STOP:STRIDE", spec);
            int k = traj_step_index(tr, (int)t);
            if (k < 0)
                return jt_fail(err, "--steps: step %ld is not in the trajectory (%d..%d)", t,
                               tr->timesteps[tr->S - 1], tr->timesteps[0]);
            if (in->n_steps < tr->S) in->kidx[in->n_steps++] = k;
            p = *end ? end + 1 : end;
        }
    }
    if (in->n_steps == 0) return jt_fail(err, "--steps '%s': no step of the trajectory", spec);
    return JT_OK;
}

static void make_masks(const LdsOptions *o, size_t n, uint8_t *mask) {
    uint32_t *perm = xmalloc(n * sizeof *perm);
    size_t m = (size_t)llround(o->alpha * (double)n);
    for (int k = 0; k < o->K; k++) {
        rng_permutation(perm, (uint32_t)n, o->subset_seed, rng_stream(RNG_TAG_SUBSET, (uint64_t)k, 0));
        memset(mask + (size_t)k * n, 0, n);
        for (size_t i = 0; i < m; i++) mask[(size_t)k * n + perm[i]] = 1;
    }
    free(perm);
}

/* The manifest: what the subsets and models are derived from. A rerun must match it. */
static cJSON *manifest(const LdsOptions *o, const LdsInputs *in) {
    char h[17], s[32];
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "format", "jtrak-lds-v1");
    char *abs = realpath(o->model_dir, NULL);
    cJSON_AddStringToObject(m, "model", abs ? abs : o->model_dir);
    free(abs);
    hex(in->mr.fingerprint, h);
    cJSON_AddStringToObject(m, "model_fingerprint", h);
    cJSON *d = cJSON_AddObjectToObject(m, "dataset");
    cJSON_AddStringToObject(d, "spec", in->mr.data.description);
    cJSON_AddStringToObject(d, "fingerprint", data_fingerprint_hex(&in->mr.data, h));
    cJSON_AddNumberToObject(d, "n", (double)in->mr.data.n);
    char *recipe = train_recipe_json(&in->mr.recipe);
    cJSON_AddItemToObject(m, "recipe", cJSON_Parse(recipe));
    free(recipe);
    cJSON_AddNumberToObject(m, "K", o->K);
    cJSON_AddNumberToObject(m, "alpha", o->alpha);
    snprintf(s, sizeof s, "%llu", (unsigned long long)o->subset_seed);
    cJSON_AddStringToObject(m, "subset_seed", s);
    cJSON_AddBoolToObject(m, "common_random_numbers", o->crn);
    cJSON_AddNumberToObject(m, "seeds_per_subset", o->seeds_per_subset);
    cJSON_AddNumberToObject(m, "ceiling_subsets", o->ceiling);
    hex(in->tr.model_fingerprint, h);
    cJSON *t = cJSON_AddObjectToObject(m, "targets");
    abs = realpath(o->traj_path, NULL);
    cJSON_AddStringToObject(t, "trajectory", abs ? abs : o->traj_path);
    free(abs);
    cJSON_AddNumberToObject(t, "n", in->tr.n);
    cJSON *st = cJSON_AddArrayToObject(m, "steps");
    for (int s2 = 0; s2 < in->n_steps; s2++)
        cJSON_AddItemToArray(st, cJSON_CreateNumber(in->tr.timesteps[in->kidx[s2]]));
    cJSON_AddNumberToObject(m, "R_eval", o->R_eval);
    cJSON_AddNumberToObject(m, "grid", o->grid);
    snprintf(s, sizeof s, "%llu", (unsigned long long)o->gt_seed);
    cJSON_AddStringToObject(m, "gt_seed", s);
    return m;
}

/* Creates the folder, or checks that an existing one was made from the same inputs. */
static int prepare_folder(const LdsOptions *o, const LdsInputs *in, JtError *err) {
    char *mp = path_join(o->out_dir, "manifest.json"), *masks = path_join(o->out_dir, "masks.npy");
    cJSON *want = manifest(o, in);
    struct stat sb;
    int rc = JT_OK;
    if (stat(mp, &sb) == 0) {
        cJSON *have = json_load_file(mp, err);
        rc = have ? JT_OK : JT_ERR;
        const cJSON *field;
        cJSON_ArrayForEach(field, want) {
            if (rc != JT_OK) break;
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(have, field->string);
            if (!h || !cJSON_Compare(h, field, 1))
                rc = jt_fail(err, "%s: field '%s' differs from this run's (subsets from another "
                                  "model, dataset or recipe?); use a new --out", mp, field->string);
        }
        cJSON_Delete(have);
    } else {
        rc = model_mkdirs(o->out_dir, err);
        size_t shape[2] = {(size_t)o->K, in->mr.data.n};
        if (rc == JT_OK) rc = npy_write(masks, NPY_U8, 2, shape, in->mask, err);
        if (rc == JT_OK) {
            char *text = cJSON_Print(want);
            rc = atomic_file_write(mp, text, strlen(text), err);
            free(text);
        }
    }
    if (rc == JT_OK) { /* the stored masks must be the ones this run draws */
        NpyHeader h;
        void *stored = NULL;
        rc = npy_read_as(masks, NPY_U8, &h, &stored, err);
        if (rc == JT_OK && (h.ndim != 2 || h.shape[0] != (size_t)o->K || h.shape[1] != in->mr.data.n ||
                            memcmp(stored, in->mask, (size_t)o->K * in->mr.data.n) != 0))
            rc = jt_fail(err, "%s: the subset masks differ from this run's", masks);
        free(stored);
    }
    cJSON_Delete(want);
    free(mp), free(masks);
    return rc;
}

/* The ground truth of one model: (n_steps + 1, N) doubles. */
static int ground_truth(const LdsOptions *o, const LdsInputs *in, const char *model_dir,
                        double *gt, JtError *err) {
    UNet *net;
    if (model_load(model_dir, &net, err) != JT_OK) return JT_ERR;
    NoiseSchedule sched;
    if (sched_init(&sched, &in->mr.sched, err) != JT_OK) {
        unet_free(net);
        return JT_ERR;
    }
    const Trajectory *tr = &in->tr;
    const size_t D = (size_t)tr->C * tr->H * tr->W;
    const int B = o->R_eval > o->grid ? (o->R_eval < 64 ? o->R_eval : 64) : (o->grid < 64 ? o->grid : 64);
    UNetRun *run;
    int rc = unet_run_create(&run, net, B, tr->H, tr->W, err);
    float *x0 = xmalloc((size_t)B * D * sizeof(float)), *eps = xmalloc((size_t)B * D * sizeof(float));
    float *xt = xmalloc((size_t)B * D * sizeof(float)), *y = xmalloc((size_t)B * D * sizeof(float));
    float *tf = xmalloc((size_t)B * sizeof(float));
    int *ti = xmalloc((size_t)B * sizeof(int));
    const int N = tr->n, rows = in->n_steps + 1;
    for (int row = 0; rc == JT_OK && row < rows; row++) {
        int dtrak = row == in->n_steps, draws = dtrak ? o->grid : o->R_eval;
        for (int j = 0; j < N; j++) {
            double sum = 0;
            for (int r0 = 0; r0 < draws; r0 += B) {
                int nb = draws - r0 < B ? draws - r0 : B;
                for (int b = 0; b < nb; b++) {
                    int r = r0 + b;
                    int t = dtrak ? (int)(((double)r + 0.5) * sched.T / o->grid)
                                  : tr->timesteps[in->kidx[row]];
                    const float *src = dtrak ? tr->x_0 + (size_t)j * D
                                             : tr->x0_hat + ((size_t)j * tr->S + in->kidx[row]) * D;
                    memcpy(x0 + b * D, src, D * sizeof(float));
                    /* The same draws for every model: keyed by (target, t, draw), not by model. */
                    rng_fill_normal(eps + b * D, D, o->gt_seed,
                                    rng_stream(RNG_TAG_SUBSET, ((uint64_t)j << 32) | (uint64_t)t,
                                               1 + (uint64_t)r + (dtrak ? 1000000u : 0u)),
                                    0);
                    ti[b] = t;
                    tf[b] = (float)t;
                }
                sched_add_noise(xt, x0, eps, ti, (size_t)nb, D, &sched);
                unet_forward(net, run, nb, y, xt, tf);
                for (int b = 0; b < nb; b++) sum += mse_forward(y + b * D, eps + b * D, D);
            }
            gt[(size_t)row * N + j] = -sum / draws; /* higher = the model explains the target better */
        }
    }
    free(x0), free(eps), free(xt), free(y), free(tf), free(ti);
    unet_run_free(run);
    sched_free(&sched);
    unet_free(net);
    return rc;
}

static uint64_t model_seed(const LdsOptions *o, uint64_t base, int k, int r) {
    return (o->crn ? base : base + 1 + (uint64_t)k) + (uint64_t)r * SEED_STRIDE;
}

/* Trains (or resumes) the model of subset k, seed replica r, and computes its ground truth; a
 * model whose ground truth exists is done. Returns 1 in *trained when it trained. */
static int do_model(const LdsOptions *o, LdsInputs *in, int k, int r, int *trained, JtError *err) {
    char name[64];
    snprintf(name, sizeof name, "models/s%d_r%d", k, r);
    char *mdir = path_join(o->out_dir, name);
    snprintf(name, sizeof name, "gt/s%d_r%d.npy", k, r);
    char *gpath = path_join(o->out_dir, name), *gdir = path_join(o->out_dir, "gt");
    struct stat sb;
    int rc = JT_OK;
    *trained = 0;
    if (stat(gpath, &sb) != 0) {
        size_t n = in->mr.data.n, m = 0;
        size_t *rows = xmalloc(n * sizeof *rows);
        for (size_t i = 0; i < n; i++)
            if (in->mask[(size_t)k * n + i]) rows[m++] = i;
        Dataset sub = {0};
        rc = data_subset(&in->mr.data, rows, m, &sub, err);
        free(rows);
        TrainRecipe rec = in->mr.recipe;
        rec.seed = model_seed(o, in->mr.recipe.seed, k, r);
        TrainControl ctl = {mdir, 200, 50, 0, 1};
        int stopped = 0;
        if (rc == JT_OK) rc = train_run(&in->mr.cfg, &in->mr.sched, &sub, &rec, &ctl, &stopped, err);
        if (rc == JT_OK && stopped) rc = jt_fail(err, "interrupted while training %s; run again to resume", mdir);
        data_free(&sub);
        const int N = in->tr.n;
        double *gt = xmalloc((size_t)(in->n_steps + 1) * N * sizeof(double));
        if (rc == JT_OK) rc = ground_truth(o, in, mdir, gt, err);
        size_t shape[2] = {(size_t)in->n_steps + 1, (size_t)N};
        if (rc == JT_OK) rc = model_mkdirs(gdir, err);
        if (rc == JT_OK) rc = npy_write(gpath, NPY_F64, 2, shape, gt, err);
        free(gt);
        *trained = rc == JT_OK;
    }
    free(mdir), free(gpath), free(gdir);
    return rc;
}

static int read_gt(const LdsOptions *o, const LdsInputs *in, int k, int r, double *gt, JtError *err) {
    char name[64];
    snprintf(name, sizeof name, "gt/s%d_r%d.npy", k, r);
    char *p = path_join(o->out_dir, name);
    NpyHeader h;
    void *d = NULL;
    int rc = npy_read_as(p, NPY_F64, &h, &d, err);
    if (rc == JT_OK && (h.ndim != 2 || h.shape[0] != (size_t)in->n_steps + 1 || h.shape[1] != (size_t)in->tr.n))
        rc = jt_fail(err, "%s: shape differs from this run's steps and targets", p);
    if (rc == JT_OK) memcpy(gt, d, h.count * sizeof(double));
    free(d);
    free(p);
    return rc;
}

/* One method's LDS at one ground-truth row, as a JSON object (and a table line). */
static cJSON *evaluate(const LdsOptions *o, const LdsInputs *in, const char *method, const char *label,
                       const float *scores /* (n, Ns) */, int Ns, const int *cols /* (N) column of
                       each target in scores, -1 if absent */, const double *truth /* (K, N) */,
                       uint64_t seed, JtError *err) {
    const int K = o->K, N = in->tr.n;
    const size_t n = in->mr.data.n;
    int Nt = 0;
    for (int j = 0; j < N; j++) Nt += cols[j] >= 0;
    if (Nt == 0) return NULL;
    float *sub = xmalloc(n * (size_t)Nt * sizeof(float));
    double *tru = xmalloc((size_t)K * Nt * sizeof(double)), *preds = xmalloc((size_t)K * Nt * sizeof(double));
    for (int j = 0, c = 0; j < N; j++) {
        if (cols[j] < 0) continue;
        for (size_t i = 0; i < n; i++) sub[i * Nt + c] = scores[i * Ns + cols[j]];
        for (int k = 0; k < K; k++) tru[(size_t)k * Nt + c] = truth[(size_t)k * N + j];
        c++;
    }
    lds_predict(in->mask, sub, K, (int)n, Nt, preds);
    LdsBootstrapOpts bo = {o->replicates, 0.95, seed, 0};
    LdsInterval ci, perm;
    int rc = lds_bootstrap(preds, tru, K, Nt, &bo, &ci, NULL, err);
    if (rc == JT_OK) rc = lds_permuted_control(in->mask, sub, tru, K, (int)n, Nt, seed ^ 0x9e3779b97f4a7c15ULL, &bo, &perm, err);
    cJSON *e = NULL;
    if (rc == JT_OK) {
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "method", method);
        cJSON_AddStringToObject(e, "ground_truth", label);
        cJSON_AddNumberToObject(e, "targets", Nt);
        cJSON_AddNumberToObject(e, "lds", ci.estimate);
        cJSON_AddNumberToObject(e, "ci_lo", ci.lo);
        cJSON_AddNumberToObject(e, "ci_hi", ci.hi);
        cJSON_AddNumberToObject(e, "permuted", perm.estimate);
        cJSON_AddNumberToObject(e, "permuted_ci_lo", perm.lo);
        cJSON_AddNumberToObject(e, "permuted_ci_hi", perm.hi);
        printf("%-10s %-12s %8.3f  [%6.3f, %6.3f]   %7.3f [%6.3f, %6.3f]\n", label, method,
               ci.estimate, ci.lo, ci.hi, perm.estimate, perm.lo, perm.hi);
    }
    free(sub), free(tru), free(preds);
    return e;
}

/* Class-composition baseline: score 1 for training images of the target's class (the label of
 * the training image nearest in pixels to the target image), 0 otherwise. */
static float *class_scores(const LdsInputs *in, int row, int *ok) {
    const Dataset *d = &in->mr.data;
    const Trajectory *tr = &in->tr;
    *ok = d->n_classes > 0;
    if (!*ok) return NULL;
    const size_t n = d->n, D = (size_t)tr->C * tr->H * tr->W;
    const int N = tr->n;
    float *s = xcalloc(n * (size_t)N, sizeof(float)), *img = xmalloc(D * sizeof(float));
    for (int j = 0; j < N; j++) {
        const float *y = row == in->n_steps ? tr->x_0 + (size_t)j * D
                                            : tr->x0_hat + ((size_t)j * tr->S + in->kidx[row]) * D;
        double best = INFINITY;
        int cls = -1;
        for (size_t i = 0; i < n; i++) {
            data_image_f32(d, i, 0, img);
            double e = 0;
            for (size_t q = 0; q < D; q++) e += ((double)img[q] - y[q]) * ((double)img[q] - y[q]);
            if (e < best) best = e, cls = d->labels[i];
        }
        for (size_t i = 0; i < n; i++) s[i * N + j] = d->labels[i] == cls ? 1.0f : 0.0f;
    }
    free(img);
    return s;
}

static int evaluate_all(const LdsOptions *o, LdsInputs *in, cJSON *results, JtError *err) {
    const int K = o->K, N = in->tr.n, rows = in->n_steps + 1, R = o->seeds_per_subset;
    double *truth = xcalloc((size_t)rows * K * N, sizeof(double));
    double *gt = xmalloc((size_t)rows * N * sizeof(double));
    int rc = JT_OK;
    for (int k = 0; rc == JT_OK && k < K; k++)
        for (int r = 0; rc == JT_OK && r < R; r++) {
            rc = read_gt(o, in, k, r, gt, err);
            for (int row = 0; rc == JT_OK && row < rows; row++)
                for (int j = 0; j < N; j++)
                    truth[((size_t)row * K + k) * N + j] += gt[(size_t)row * N + j] / R;
        }
    /* Noise ceiling: the share of ground-truth variance due to the training seed, from the
     * subsets trained again with another seed; a perfect attribution correlates at most
     * sqrt(1 - share) with a single-seed ground truth. */
    cJSON *ceil = cJSON_AddArrayToObject(results, "noise_ceiling");
    int C = o->ceiling < K ? o->ceiling : K;
    if (rc == JT_OK && C >= 2) {
        double *alt = xmalloc((size_t)rows * N * sizeof(double));
        double *seedvar = xcalloc((size_t)rows * N, sizeof(double));
        for (int k = 0; rc == JT_OK && k < C; k++) {
            rc = read_gt(o, in, k, R, alt, err);
            if (rc == JT_OK) rc = read_gt(o, in, k, 0, gt, err);
            for (int q = 0; rc == JT_OK && q < rows * N; q++) {
                double dlt = alt[q] - gt[q];
                seedvar[q] += dlt * dlt / 2 / C;
            }
        }
        for (int row = 0; rc == JT_OK && row < rows; row++) {
            double share = 0;
            int used = 0;
            for (int j = 0; j < N; j++) {
                double mean = 0, var = 0;
                for (int k = 0; k < K; k++) mean += truth[((size_t)row * K + k) * N + j] / K;
                for (int k = 0; k < K; k++) {
                    double dv = truth[((size_t)row * K + k) * N + j] - mean;
                    var += dv * dv / (K - 1);
                }
                if (var > 0) share += fmin(1.0, seedvar[(size_t)row * N + j] / var), used++;
            }
            share = used ? share / used : NAN;
            cJSON *c = cJSON_CreateObject();
            if (row < in->n_steps)
                cJSON_AddNumberToObject(c, "step", in->tr.timesteps[in->kidx[row]]);
            else
                cJSON_AddStringToObject(c, "ground_truth", "dtrak-protocol");
            cJSON_AddNumberToObject(c, "seed_variance_share", share);
            cJSON_AddNumberToObject(c, "perfect_attribution_lds", sqrt(fmax(0.0, 1.0 - share)));
            cJSON_AddItemToArray(ceil, c);
        }
        free(alt), free(seedvar);
    }
    if (rc != JT_OK) {
        free(truth), free(gt);
        return rc;
    }
    printf("%-10s %-12s %8s  %-17s   %s\n", "truth", "method", "LDS", "95% CI", "permuted control");
    cJSON *evals = cJSON_AddArrayToObject(results, "lds");
    const size_t n = in->mr.data.n;
    for (int row = 0; rc == JT_OK && row < rows; row++) {
        char label[32];
        int t = row < in->n_steps ? in->tr.timesteps[in->kidx[row]] : -1;
        if (t >= 0) snprintf(label, sizeof label, "t=%d", t);
        else snprintf(label, sizeof label, "dtrak-grid");
        for (int s = 0; rc == JT_OK && s <= o->n_scores; s++) {
            float *scores = NULL;
            int Ns = N, *cols = xmalloc((size_t)N * sizeof(int));
            char method[64];
            if (s == o->n_scores) { /* the class-composition baseline */
                int ok;
                scores = class_scores(in, row, &ok);
                snprintf(method, sizeof method, "class");
                for (int j = 0; j < N; j++) cols[j] = ok ? j : -1;
            } else {
                char *mp = path_join(o->score_dirs[s], "manifest.json");
                cJSON *man = json_load_file(mp, err);
                rc = man ? JT_OK : JT_ERR;
                const cJSON *ds = man ? cJSON_GetObjectItem(man, "dataset") : NULL;
                const cJSON *tj = man ? cJSON_GetObjectItem(man, "trajectory") : NULL;
                char h[17];
                data_fingerprint_hex(&in->mr.data, h);
                if (rc == JT_OK && (!ds || !json_str(ds, "fingerprint") || strcmp(json_str(ds, "fingerprint"), h) != 0))
                    rc = jt_fail(err, "%s: scores of another training set than the subsets' (%s)", mp,
                                 in->mr.data.description);
                hex(in->tr.model_fingerprint, h);
                if (rc == JT_OK && (!tj || !json_str(tj, "model_fingerprint") || strcmp(json_str(tj, "model_fingerprint"), h) != 0))
                    rc = jt_fail(err, "%s: scores of targets from another model than %s", mp, o->model_dir);
                const cJSON *steps = man ? cJSON_GetObjectItem(man, "steps") : NULL;
                const cJSON *tg = man ? cJSON_GetObjectItem(man, "targets") : NULL;
                /* Methods are named by their folder (journey-M4, journey-S5, ...), the method
                 * being in the folder's manifest. */
                const char *slash = strrchr(o->score_dirs[s], '/');
                snprintf(method, sizeof method, "%s", slash && slash[1] ? slash + 1 : o->score_dirs[s]);
                int final_only = !steps || cJSON_GetArraySize(steps) == 0, has_step = final_only;
                for (int q = 0; !final_only && q < cJSON_GetArraySize(steps); q++)
                    has_step |= cJSON_GetArrayItem(steps, q)->valueint == t;
                char file[64];
                if (final_only) snprintf(file, sizeof file, "scores_final.npy");
                else snprintf(file, sizeof file, "scores_t%d.npy", t);
                if (rc == JT_OK && has_step && (t >= 0 || final_only)) {
                    char *sp = path_join(o->score_dirs[s], file);
                    NpyHeader hd;
                    void *d = NULL;
                    rc = npy_read_as(sp, NPY_F32, &hd, &d, err);
                    if (rc == JT_OK && (hd.ndim != 2 || hd.shape[0] != n))
                        rc = jt_fail(err, "%s: %zu rows, the training set has %zu", sp, hd.shape[0], n);
                    scores = d;
                    Ns = rc == JT_OK ? (int)hd.shape[1] : 0;
                    free(sp);
                }
                for (int j = 0; j < N; j++) {
                    cols[j] = -1;
                    for (int q = 0; scores && tg && q < cJSON_GetArraySize(tg) && q < Ns; q++)
                        if (cJSON_GetArrayItem(tg, q)->valueint == j) cols[j] = q;
                }
                cJSON_Delete(man);
                free(mp);
            }
            if (rc == JT_OK && scores) {
                cJSON *e = evaluate(o, in, method, label, scores, Ns, cols,
                                    truth + (size_t)row * K * N, o->gt_seed + 7919u * (uint64_t)row, err);
                if (e) cJSON_AddItemToArray(evals, e);
            }
            free(scores), free(cols);
        }
    }
    free(truth), free(gt);
    return rc;
}

/* lds.png: LDS against the step for every method (95% intervals as error bars), and the LDS a
 * perfect attribution could reach (dashed). */
static int write_plot(const LdsOptions *o, const LdsInputs *in, const cJSON *results, JtError *err) {
    const int S = in->n_steps;
    char names[PLOT_MAX_SERIES][64];
    double *buf = xcalloc((size_t)PLOT_MAX_SERIES * 4 * S, sizeof(double));
    double *xs = xmalloc((size_t)S * sizeof(double));
    int n_series = 0;
    for (int s = 0; s < S; s++) xs[s] = in->tr.timesteps[in->kidx[s]];
    for (size_t q = 0; q < (size_t)PLOT_MAX_SERIES * 4 * S; q++) buf[q] = NAN;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(results, "lds")) {
        const char *m = json_str(e, "method"), *gt = json_str(e, "ground_truth");
        int t, idx = -1, col = -1;
        if (!m || !gt || sscanf(gt, "t=%d", &t) != 1) continue;
        for (int s = 0; s < S; s++)
            if ((int)xs[s] == t) col = s;
        for (int q = 0; q < n_series; q++)
            if (strcmp(names[q], m) == 0) idx = q;
        if (idx < 0 && n_series < PLOT_MAX_SERIES - 1) {
            idx = n_series++;
            snprintf(names[idx], sizeof names[idx], "%s", m);
        }
        if (idx < 0 || col < 0) continue;
        double *y = buf + (size_t)idx * 4 * S;
        y[col] = cJSON_GetObjectItem(e, "lds")->valuedouble;
        y[S + col] = cJSON_GetObjectItem(e, "ci_lo")->valuedouble;
        y[2 * S + col] = cJSON_GetObjectItem(e, "ci_hi")->valuedouble;
    }
    PlotSeries series[PLOT_MAX_SERIES];
    for (int q = 0; q < n_series; q++) {
        double *y = buf + (size_t)q * 4 * S;
        series[q] = (PlotSeries){names[q], S, xs, y, y + S, y + 2 * S, 0};
    }
    double *ceil = buf + (size_t)(PLOT_MAX_SERIES - 1) * 4 * S;
    int have_ceiling = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(results, "noise_ceiling")) {
        const cJSON *st = cJSON_GetObjectItem(e, "step");
        for (int s = 0; st && s < S; s++)
            if ((int)xs[s] == st->valueint) {
                ceil[s] = cJSON_GetObjectItem(e, "perfect_attribution_lds")->valuedouble;
                have_ceiling = 1;
            }
    }
    if (have_ceiling) series[n_series++] = (PlotSeries){"noise ceiling", S, xs, ceil, NULL, NULL, 1};
    int rc = JT_OK;
    if (n_series > 0) {
        PlotOptions po = plot_options_default();
        po.title = "LDS per step (95% bootstrap intervals)";
        po.xlabel = "diffusion step t";
        po.ylabel = "LDS";
        po.reverse_x = 1;
        char *p = path_join(o->out_dir, "lds.png");
        rc = plot_write_png(p, series, n_series, &po, err);
        free(p);
    }
    free(buf), free(xs);
    return rc;
}

int lds_run(const LdsOptions *o, JtError *err) {
    if (o->K < 2) return jt_fail(err, "--K %d: need at least 2 subsets", o->K);
    if (!(o->alpha > 0 && o->alpha < 1)) return jt_fail(err, "--alpha %g: must be in (0, 1)", o->alpha);
    if (o->R_eval < 1 || o->grid < 1 || o->seeds_per_subset < 1)
        return jt_fail(err, "--R-eval, --grid and --seeds-per-subset must be at least 1");
    LdsInputs in;
    memset(&in, 0, sizeof in);
    int rc = load_inputs(o, &in, err);
    if (rc == JT_OK) rc = resolve_steps(o->steps, &in, err);
    if (rc == JT_OK) {
        in.mask = xmalloc((size_t)o->K * in.mr.data.n);
        make_masks(o, in.mr.data.n, in.mask);
        rc = prepare_folder(o, &in, err);
    }
    /* Subset models: k = 0..K-1 with replicas 0..R-1, then the ceiling replicas. */
    int total = o->K * o->seeds_per_subset + (o->ceiling < o->K ? o->ceiling : o->K);
    Progress prog;
    progress_init(&prog, "lds: subset models", (size_t)total, 0, 1.0, "models");
    prog.quiet = o->quiet;
    long trained_now = 0;
    int done = 0, stopped = 0;
    for (int q = 0; rc == JT_OK && q < total; q++) {
        int k, r;
        if (q < o->K * o->seeds_per_subset) k = q / o->seeds_per_subset, r = q % o->seeds_per_subset;
        else k = q - o->K * o->seeds_per_subset, r = o->seeds_per_subset;
        if (o->stop_after_models > 0 && trained_now >= o->stop_after_models) {
            stopped = 1;
            break;
        }
        int trained;
        rc = do_model(o, &in, k, r, &trained, err);
        trained_now += trained;
        done++;
        progress_update(&prog, (size_t)done, NULL, done == total);
    }
    if (rc == JT_OK && stopped) {
        if (!o->quiet)
            fprintf(stderr, "lds: stopped after training %ld model(s) (%d/%d done); run again to "
                            "continue\n", trained_now, done, total);
    } else if (rc == JT_OK) {
        cJSON *results = cJSON_CreateObject();
        rc = evaluate_all(o, &in, results, err);
        if (rc == JT_OK) rc = write_plot(o, &in, results, err);
        if (rc == JT_OK) {
            char *p = path_join(o->out_dir, "lds.json"), *text = cJSON_Print(results);
            rc = atomic_file_write(p, text, strlen(text), err);
            free(p), free(text);
        }
        cJSON_Delete(results);
    }
    free(in.kidx), free(in.mask);
    traj_free(&in.tr);
    model_record_free(&in.mr);
    return rc;
}
