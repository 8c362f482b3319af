/* counterfactual.c: see counterfactual.h. One model per (target, removal kind), each a resumable
 * `train` folder; a model whose regenerations are recorded is not trained again. */
#include "eval/counterfactual.h"

#include "core/rng.h"
#include "diffusion/trajectory.h"
#include "eval/model_record.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/png.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_TOPK = 0, KIND_RANDOM, KIND_NEAREST, N_KINDS };
static const char *const KIND_NAMES[N_KINDS] = {"top-k", "random-k", "nearest-k"};
static const char *const KIND_DIRS[N_KINDS] = {"topk", "random", "nearest"};

void counterfactual_options_default(CounterfactualOptions *o) {
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->targets = "all";
}

static int parse_targets(const char *spec, int n_samples, int **out, int *n, JtError *err) {
    *out = xmalloc((size_t)(n_samples > 0 ? n_samples : 1) * sizeof(int));
    *n = 0;
    if (strcmp(spec, "all") == 0) {
        for (int i = 0; i < n_samples; i++) (*out)[(*n)++] = i;
        return JT_OK;
    }
    const char *p = spec;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < 0 || v >= n_samples)
            return jt_fail(err, "--targets '%s': sample indices 0..%d, comma-separated", spec,
                           n_samples - 1);
        if (*n < n_samples) (*out)[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return JT_OK;
}

/* The k training rows to remove for target j (sample s): rows (k). */
static void removal(int kind, const float *scores, int Ns, int col, const Dataset *d,
                    const float *x0, uint64_t seed, int s, int k, size_t *rows) {
    const size_t n = d->n, D = (size_t)d->c * d->h * d->w;
    double *key = xmalloc(n * sizeof(double));
    if (kind == KIND_RANDOM) {
        uint32_t *perm = xmalloc(n * sizeof *perm);
        rng_permutation(perm, (uint32_t)n, seed, rng_stream(RNG_TAG_SUBSET, 0x4346u, (uint64_t)s));
        for (int q = 0; q < k; q++) rows[q] = perm[q];
        free(perm), free(key);
        return;
    }
    float *img = xmalloc(D * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        if (kind == KIND_TOPK) {
            key[i] = -(double)scores[i * Ns + col]; /* ascending key = descending score */
        } else {
            data_image_f32(d, i, 0, img);
            double e = 0;
            for (size_t q = 0; q < D; q++) e += ((double)img[q] - x0[q]) * ((double)img[q] - x0[q]);
            key[i] = e;
        }
    }
    for (int q = 0; q < k; q++) { /* k smallest keys, lower row first on ties */
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < n; i++) {
            int taken = 0;
            for (int r = 0; r < q && !taken; r++) taken = rows[r] == i;
            if (!taken && (best == SIZE_MAX || key[i] < key[best])) best = i;
        }
        rows[q] = best;
    }
    free(img), free(key);
}

static double rmse(const float *a, const float *b, size_t D) {
    double e = 0;
    for (size_t q = 0; q < D; q++) e += ((double)a[q] - b[q]) * ((double)a[q] - b[q]);
    return sqrt(e / (double)D);
}

/* Mean and a 95% t-interval over n values. */
static void mean_ci(const double *v, int n, double *mean, double *lo, double *hi) {
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m += v[i] / n;
    for (int i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    static const double t975[] = {0, 12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23};
    double tq = n - 1 <= 10 ? t975[n > 1 ? n - 1 : 0] : 1.96;
    double half = n > 1 ? tq * sqrt(s / (n - 1) / n) : NAN;
    *mean = m, *lo = m - half, *hi = m + half;
}

int counterfactual_run(const CounterfactualOptions *o, JtError *err) {
    if (o->k < 1) return jt_fail(err, "--k %d: remove at least one image", o->k);
    ModelRecord mr;
    if (model_record_load(&mr, o->model_dir, "counterfactual retrains the model's recipe", err) != JT_OK)
        return JT_ERR;
    Trajectory tr = {0};
    cJSON *man = NULL;
    float *scores = NULL;
    int *tg = NULL, N = 0, Ns = 0, rc = traj_load(&tr, o->traj_path, err);
    int ks = rc == JT_OK ? traj_step_index(&tr, o->step) : -1;
    char h[17];
    if (rc == JT_OK && tr.model_fingerprint != mr.fingerprint)
        rc = jt_fail(err, "%s: the targets were sampled from another model than %s", o->traj_path,
                     o->model_dir);
    if (rc == JT_OK && ks < 0)
        rc = jt_fail(err, "--step %d is not in the trajectory %s", o->step, o->traj_path);
    if (rc == JT_OK && (size_t)o->k >= mr.data.n)
        rc = jt_fail(err, "--k %d: the training set has only %zu images", o->k, mr.data.n);
    if (rc == JT_OK) rc = parse_targets(o->targets, tr.n, &tg, &N, err);
    /* The scores at step t, from a folder made for this training set and these targets. */
    char *mp = xmalloc(strlen(o->scores_dir) + 64);
    sprintf(mp, "%s/manifest.json", o->scores_dir);
    if (rc == JT_OK && !(man = json_load_file(mp, err))) rc = JT_ERR;
    const cJSON *ds = man ? cJSON_GetObjectItem(man, "dataset") : NULL;
    const cJSON *tj = man ? cJSON_GetObjectItem(man, "trajectory") : NULL;
    const cJSON *targets = man ? cJSON_GetObjectItem(man, "targets") : NULL;
    if (rc == JT_OK && (!json_str(ds, "fingerprint") ||
                        strcmp(json_str(ds, "fingerprint"), data_fingerprint_hex(&mr.data, h)) != 0))
        rc = jt_fail(err, "%s: scores of another training set than the model's", mp);
    snprintf(h, sizeof h, "%016llx", (unsigned long long)tr.model_fingerprint);
    if (rc == JT_OK && (!json_str(tj, "model_fingerprint") || strcmp(json_str(tj, "model_fingerprint"), h) != 0))
        rc = jt_fail(err, "%s: scores of targets from another model", mp);
    if (rc == JT_OK) {
        sprintf(mp, "%s/scores_t%d.npy", o->scores_dir, o->step);
        NpyHeader hd;
        void *d = NULL;
        rc = npy_read_as(mp, NPY_F32, &hd, &d, err);
        if (rc != JT_OK) rc = jt_fail(err, "%s: no dense scores at step %d (score without "
                                           "--topk-only, with this step)", mp, o->step);
        else if (hd.ndim != 2 || hd.shape[0] != mr.data.n)
            rc = jt_fail(err, "%s: %zu rows but the training set has %zu", mp, hd.shape[0], mr.data.n);
        scores = d;
        Ns = rc == JT_OK ? (int)hd.shape[1] : 0;
    }
    int *col = xmalloc((size_t)(N > 0 ? N : 1) * sizeof(int));
    for (int j = 0; rc == JT_OK && j < N; j++) {
        col[j] = -1;
        for (int q = 0; q < cJSON_GetArraySize(targets) && q < Ns; q++)
            if (cJSON_GetArrayItem(targets, q)->valueint == tg[j]) col[j] = q;
        if (col[j] < 0) rc = jt_fail(err, "%s: sample %d was not scored", o->scores_dir, tg[j]);
    }
    free(mp);
    if (rc == JT_OK) rc = model_mkdirs(o->out_dir, err);

    const size_t D = (size_t)tr.C * tr.H * tr.W;
    double *dist_t = xcalloc((size_t)N * N_KINDS, sizeof(double)), *dist_T = xcalloc((size_t)N * N_KINDS, sizeof(double));
    float *regen = xcalloc((size_t)N * N_KINDS * D, sizeof(float));
    size_t *rows = xmalloc((size_t)o->k * sizeof(size_t)), *keep = xmalloc(mr.data.n * sizeof(size_t));
    NoiseSchedule sched;
    int have_sched = rc == JT_OK && sched_init(&sched, &mr.sched, err) == JT_OK;
    if (rc == JT_OK && !have_sched) rc = JT_ERR;
    cJSON *out = cJSON_CreateObject(), *per = cJSON_AddArrayToObject(out, "targets");
    for (int j = 0; rc == JT_OK && j < N; j++) {
        cJSON *tj2 = cJSON_CreateObject();
        cJSON_AddNumberToObject(tj2, "sample", tg[j]);
        for (int kind = 0; rc == JT_OK && kind < N_KINDS; kind++) {
            removal(kind, scores, Ns, col[j], &mr.data, tr.x_0 + (size_t)tg[j] * D, o->seed, tg[j], o->k, rows);
            size_t m = 0;
            for (size_t i = 0; i < mr.data.n; i++) {
                int removed = 0;
                for (int q = 0; q < o->k && !removed; q++) removed = rows[q] == i;
                if (!removed) keep[m++] = i;
            }
            Dataset sub = {0};
            rc = data_subset(&mr.data, keep, m, &sub, err);
            char dir[600];
            snprintf(dir, sizeof dir, "%s/models/s%d_%s", o->out_dir, tg[j], KIND_DIRS[kind]);
            TrainControl ctl = {dir, 200, 50, 0, o->quiet};
            int stopped = 0;
            if (rc == JT_OK) rc = train_run(&mr.cfg, &mr.sched, &sub, &mr.recipe, &ctl, &stopped, err);
            if (rc == JT_OK && stopped) rc = jt_fail(err, "interrupted while training %s; run again to resume", dir);
            data_free(&sub);
            UNet *net = NULL;
            if (rc == JT_OK) rc = model_load(dir, &net, err);
            float *x_from_t = regen + ((size_t)j * N_KINDS + kind) * D, *x_from_T = xmalloc(D * sizeof(float));
            if (rc == JT_OK) rc = traj_replay(net, &sched, &tr, tg[j], ks, x_from_t, err);
            if (rc == JT_OK) rc = traj_replay(net, &sched, &tr, tg[j], 0, x_from_T, err);
            unet_free(net);
            const float *orig = tr.x_0 + (size_t)tg[j] * D;
            dist_t[kind * N + j] = rmse(x_from_t, orig, D);
            dist_T[kind * N + j] = rmse(x_from_T, orig, D);
            free(x_from_T);
            cJSON *kj = cJSON_AddObjectToObject(tj2, KIND_NAMES[kind]);
            cJSON *removed = cJSON_AddArrayToObject(kj, "removed_rows");
            for (int q = 0; q < o->k; q++) cJSON_AddItemToArray(removed, cJSON_CreateNumber((double)rows[q]));
            cJSON_AddNumberToObject(kj, "rmse_from_x_t", dist_t[kind * N + j]);
            cJSON_AddNumberToObject(kj, "rmse_from_x_T", dist_T[kind * N + j]);
        }
        cJSON_AddItemToArray(per, tj2);
    }
    if (rc == JT_OK) {
        printf("counterfactual at t=%d, k=%d removed, %d target(s): RMSE of the regenerated sample\n",
               o->step, o->k, N);
        printf("%-10s %-28s %s\n", "removed", "from x_t (mean [95% CI])", "from x_T (mean [95% CI])");
        cJSON *sum = cJSON_AddArrayToObject(out, "summary");
        for (int kind = 0; kind < N_KINDS; kind++) {
            double m1, l1, h1, m2, l2, h2;
            mean_ci(dist_t + kind * N, N, &m1, &l1, &h1);
            mean_ci(dist_T + kind * N, N, &m2, &l2, &h2);
            printf("%-10s %.4f [%.4f, %.4f]       %.4f [%.4f, %.4f]\n", KIND_NAMES[kind], m1, l1, h1, m2, l2, h2);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "removed", KIND_NAMES[kind]);
            cJSON_AddNumberToObject(e, "rmse_from_x_t", m1);
            cJSON_AddNumberToObject(e, "ci_from_x_t_lo", l1);
            cJSON_AddNumberToObject(e, "ci_from_x_t_hi", h1);
            cJSON_AddNumberToObject(e, "rmse_from_x_T", m2);
            cJSON_AddNumberToObject(e, "ci_from_x_T_lo", l2);
            cJSON_AddNumberToObject(e, "ci_from_x_T_hi", h2);
            cJSON_AddItemToArray(sum, e);
        }
        cJSON_AddNumberToObject(out, "step", o->step);
        cJSON_AddNumberToObject(out, "k", o->k);
        char *text = cJSON_Print(out), *p = xmalloc(strlen(o->out_dir) + 64);
        sprintf(p, "%s/counterfactual.json", o->out_dir);
        rc = atomic_file_write(p, text, strlen(text), err);
        /* Figure: per target, the original then the three regenerations from x_t. */
        float *tiles = xmalloc((size_t)N * (N_KINDS + 1) * D * sizeof(float));
        for (int j = 0; j < N; j++) {
            memcpy(tiles + (size_t)j * (N_KINDS + 1) * D, tr.x_0 + (size_t)tg[j] * D, D * sizeof(float));
            for (int kind = 0; kind < N_KINDS; kind++)
                memcpy(tiles + ((size_t)j * (N_KINDS + 1) + 1 + kind) * D,
                       regen + ((size_t)j * N_KINDS + kind) * D, D * sizeof(float));
        }
        if (rc == JT_OK) {
            sprintf(p, "%s/counterfactual.png", o->out_dir);
            rc = png_write_grid(p, tiles, N * (N_KINDS + 1), tr.C, tr.H, tr.W, N_KINDS + 1, err);
        }
        free(tiles), free(text), free(p);
    }
    cJSON_Delete(out);
    if (have_sched) sched_free(&sched);
    free(dist_t), free(dist_T), free(regen), free(rows), free(keep), free(col), free(tg), free(scores);
    cJSON_Delete(man);
    traj_free(&tr);
    model_record_free(&mr);
    return rc;
}
