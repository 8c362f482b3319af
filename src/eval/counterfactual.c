/* counterfactual.c: see counterfactual.h. One model per (target, removal kind), each a resumable
 * `train` folder; a model whose training is finished is not trained again. Under mpirun
 * (core/comm.h) model q = (target q / 3, kind q % 3) is trained and replayed by rank q % size;
 * rank 0 makes the folder first and, once every process has finished, receives the others'
 * regenerations and writes the table, the json and the figure. Errors are agreed, so every
 * process fails if one does. */
#include "eval/counterfactual.h"

#include "core/comm.h"
#include "core/rng.h"
#include "diffusion/trajectory.h"
#include "eval/model_record.h"
#include "io/artifact.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "model/model.h"

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

/* Everything the models derive from: the full model's record and schedule, the targets and their
 * columns of the scores at step t. */
typedef struct {
    ModelRecord mr;
    int have_mr, have_sched;
    NoiseSchedule sched;
    Trajectory tr;
    int ks;        /* index of step t in tr */
    int *tg, N;    /* the targets' sample indices (N) */
    float *scores; /* (n, Ns) scores at step t */
    int Ns;
    int *col; /* each target's column in scores (N) */
} CfInputs;

static void free_inputs(CfInputs *in) {
    if (in->have_sched) sched_free(&in->sched);
    if (in->have_mr) model_record_free(&in->mr);
    traj_free(&in->tr);
    free(in->tg), free(in->scores), free(in->col);
}

/* Loads the model record and the targets and checks the scores at step t against both. */
static int load_inputs(const CounterfactualOptions *o, CfInputs *in, JtError *err) {
    memset(in, 0, sizeof *in);
    if (model_record_load(&in->mr, o->model_dir, "counterfactual retrains the model's recipe",
                          err) != JT_OK)
        return JT_ERR;
    in->have_mr = 1;
    cJSON *man = NULL;
    int rc = traj_load(&in->tr, o->traj_path, err);
    in->ks = rc == JT_OK ? traj_step_index(&in->tr, o->step) : -1;
    char h[17];
    if (rc == JT_OK && in->tr.model_fingerprint != in->mr.fingerprint)
        rc = jt_fail(err, "%s: the targets were sampled from another model than %s", o->traj_path,
                     o->model_dir);
    if (rc == JT_OK) {
        char what[600];
        snprintf(what, sizeof what, "the schedule of %s", o->model_dir);
        rc =
            traj_check_schedule(&in->tr, o->traj_path, in->mr.sched.num_train_timesteps, what, err);
    }
    if (rc == JT_OK && in->ks < 0)
        rc = jt_fail(err, "--step %d is not in the trajectory %s", o->step, o->traj_path);
    if (rc == JT_OK && (size_t)o->k >= in->mr.data.n)
        rc = jt_fail(err, "--k %d: the training set has only %zu images", o->k, in->mr.data.n);
    if (rc == JT_OK) rc = parse_targets(o->targets, in->tr.n, &in->tg, &in->N, err);
    /* The scores at step t, from a folder made for this training set and these targets. */
    char *mp = xmalloc(strlen(o->scores_dir) + 64);
    sprintf(mp, "%s/manifest.json", o->scores_dir);
    if (rc == JT_OK && !(man = json_load_file(mp, err))) rc = JT_ERR;
    const cJSON *ds = man ? cJSON_GetObjectItem(man, "dataset") : NULL;
    const cJSON *tj = man ? cJSON_GetObjectItem(man, "trajectory") : NULL;
    const cJSON *targets = man ? cJSON_GetObjectItem(man, "targets") : NULL;
    if (rc == JT_OK &&
        (!json_str(ds, "fingerprint") ||
         strcmp(json_str(ds, "fingerprint"), data_fingerprint_hex(&in->mr.data, h)) != 0))
        rc = jt_fail(err, "%s: scores of another training set than the model's", mp);
    snprintf(h, sizeof h, "%016llx", (unsigned long long)in->tr.model_fingerprint);
    if (rc == JT_OK &&
        (!json_str(tj, "model_fingerprint") || strcmp(json_str(tj, "model_fingerprint"), h) != 0))
        rc = jt_fail(err, "%s: scores of targets from another model", mp);
    if (rc == JT_OK)
        rc = traj_check_recorded(&in->tr, o->traj_path, json_str(tj, "fingerprint"), mp, err);
    if (rc == JT_OK) {
        sprintf(mp, "%s/scores_t%d.npy", o->scores_dir, o->step);
        NpyHeader hd;
        void *d = NULL;
        rc = npy_read_as(mp, NPY_F32, &hd, &d, err);
        if (rc != JT_OK)
            rc = jt_fail(err,
                         "%s: no dense scores at step %d (score without "
                         "--topk-only, with this step)",
                         mp, o->step);
        else if (hd.ndim != 2 || hd.shape[0] != in->mr.data.n)
            rc = jt_fail(err, "%s: %zu rows but the training set has %zu", mp, hd.shape[0],
                         in->mr.data.n);
        else
            rc = jt_check_finite(d, hd.count, mp, "the scores", err);
        in->scores = d;
        in->Ns = rc == JT_OK ? (int)hd.shape[1] : 0;
    }
    in->col = xmalloc((size_t)(in->N > 0 ? in->N : 1) * sizeof(int));
    for (int j = 0; rc == JT_OK && j < in->N; j++) {
        in->col[j] = -1;
        for (int q = 0; q < cJSON_GetArraySize(targets) && q < in->Ns; q++)
            if (cJSON_GetArrayItem(targets, q)->valueint == in->tg[j]) in->col[j] = q;
        if (in->col[j] < 0)
            rc = jt_fail(err, "%s: sample %d was not scored", o->scores_dir, in->tg[j]);
    }
    free(mp);
    cJSON_Delete(man);
    if (rc == JT_OK) {
        rc = sched_init(&in->sched, &in->mr.sched, err);
        in->have_sched = rc == JT_OK;
    }
    return rc;
}

/* Trains (or resumes) the model of target j without the training rows `rows` (k) and regenerates
 * the sample with it from x_t (into x_from_t, (C, H, W)) and from x_T; d_t and d_T get the RMSE
 * of each to the original sample. */
static int retrain(const CounterfactualOptions *o, const CfInputs *in, int j, int kind,
                   const size_t *rows, int quiet, float *x_from_t, double *d_t, double *d_T,
                   JtError *err) {
    const Dataset *data = &in->mr.data;
    size_t *keep = xmalloc(data->n * sizeof(size_t)), m = 0;
    for (size_t i = 0; i < data->n; i++) {
        int removed = 0;
        for (int q = 0; q < o->k && !removed; q++)
            removed = rows[q] == i;
        if (!removed) keep[m++] = i;
    }
    Dataset sub = {0};
    int rc = data_subset(data, keep, m, &sub, err);
    free(keep);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models/s%d_%s", o->out_dir, in->tg[j], KIND_DIRS[kind]);
    TrainControl ctl = {dir, 200, 50, 0, quiet};
    int stopped = 0;
    if (rc == JT_OK)
        rc = train_run(&in->mr.cfg, &in->mr.sched, &sub, &in->mr.recipe, &ctl, &stopped, err);
    if (rc == JT_OK && stopped)
        rc = jt_fail(err, "interrupted while training %s; run again to resume", dir);
    data_free(&sub);
    Model *model = NULL;
    if (rc == JT_OK) rc = model_load_unet(dir, &model, err);
    const UNet *net = model ? model_unet(model) : NULL;
    const size_t D = (size_t)in->tr.C * in->tr.H * in->tr.W;
    float *x_from_T = xmalloc(D * sizeof(float));
    if (rc == JT_OK) rc = traj_replay(net, &in->sched, &in->tr, in->tg[j], in->ks, x_from_t, err);
    if (rc == JT_OK) rc = traj_replay(net, &in->sched, &in->tr, in->tg[j], 0, x_from_T, err);
    model_free(model);
    if (rc == JT_OK) {
        const float *orig = in->tr.x_0 + (size_t)in->tg[j] * D;
        *d_t = rmse(x_from_t, orig, D);
        *d_T = rmse(x_from_T, orig, D);
    }
    free(x_from_T);
    return rc;
}

/* Rank 0, once every model is done: the table on stdout, counterfactual.json and the figure.
 * removed: (N, N_KINDS, k) rows; regen: (N, N_KINDS, C, H, W); dist_t, dist_T: (N_KINDS, N). */
static int report(const CounterfactualOptions *o, const CfInputs *in, const size_t *removed,
                  const float *regen, const double *dist_t, const double *dist_T, JtError *err) {
    const int N = in->N;
    const Trajectory *tr = &in->tr;
    const size_t D = (size_t)tr->C * tr->H * tr->W;
    cJSON *out = cJSON_CreateObject(), *per = cJSON_AddArrayToObject(out, "targets");
    for (int j = 0; j < N; j++) {
        cJSON *tj = cJSON_CreateObject();
        cJSON_AddNumberToObject(tj, "sample", in->tg[j]);
        for (int kind = 0; kind < N_KINDS; kind++) {
            const size_t *rows = removed + ((size_t)j * N_KINDS + kind) * (size_t)o->k;
            cJSON *kj = cJSON_AddObjectToObject(tj, KIND_NAMES[kind]);
            cJSON *rj = cJSON_AddArrayToObject(kj, "removed_rows");
            for (int q = 0; q < o->k; q++)
                cJSON_AddItemToArray(rj, cJSON_CreateNumber((double)rows[q]));
            cJSON_AddNumberToObject(kj, "rmse_from_x_t", dist_t[kind * N + j]);
            cJSON_AddNumberToObject(kj, "rmse_from_x_T", dist_T[kind * N + j]);
        }
        cJSON_AddItemToArray(per, tj);
    }
    printf("counterfactual at t=%d, k=%d removed, %d target(s): RMSE of the regenerated sample\n",
           o->step, o->k, N);
    printf("%-10s %-28s %s\n", "removed", "from x_t (mean [95% CI])", "from x_T (mean [95% CI])");
    cJSON *sum = cJSON_AddArrayToObject(out, "summary");
    for (int kind = 0; kind < N_KINDS; kind++) {
        double m1, l1, h1, m2, l2, h2;
        mean_ci(dist_t + kind * N, N, &m1, &l1, &h1);
        mean_ci(dist_T + kind * N, N, &m2, &l2, &h2);
        printf("%-10s %.4f [%.4f, %.4f]       %.4f [%.4f, %.4f]\n", KIND_NAMES[kind], m1, l1, h1,
               m2, l2, h2);
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
    int rc = atomic_file_write(p, text, strlen(text), err);
    /* Figure: per target, the original then the three regenerations from x_t. */
    float *tiles = xmalloc((size_t)N * (N_KINDS + 1) * D * sizeof(float));
    for (int j = 0; j < N; j++) {
        memcpy(tiles + (size_t)j * (N_KINDS + 1) * D, tr->x_0 + (size_t)in->tg[j] * D,
               D * sizeof(float));
        for (int kind = 0; kind < N_KINDS; kind++)
            memcpy(tiles + ((size_t)j * (N_KINDS + 1) + 1 + kind) * D,
                   regen + ((size_t)j * N_KINDS + kind) * D, D * sizeof(float));
    }
    if (rc == JT_OK) {
        sprintf(p, "%s/counterfactual.png", o->out_dir);
        rc = png_write_grid(p, tiles, N * (N_KINDS + 1), tr->C, tr->H, tr->W, N_KINDS + 1, err);
    }
    free(tiles), free(text), free(p);
    cJSON_Delete(out);
    return rc;
}

int counterfactual_run(const CounterfactualOptions *o, JtError *err) {
    if (o->k < 1) return jt_fail(err, "--k %d: remove at least one image", o->k);
    /* From here on every process reaches every comm_agree, whatever fails. */
    const int rank = comm_rank(), size = comm_size();
    CfInputs in;
    int rc = load_inputs(o, &in, err);
    rc = comm_agree(rc, err, "%s: another process failed to read the inputs (see its message)",
                    o->out_dir);
    /* Rank 0 makes the folder before anyone trains into it. */
    const ArtifactKind ok[] = {ARTIFACT_COUNTERFACTUAL};
    if (rc == JT_OK && rank == 0)
        rc = artifact_check_out(o->out_dir, "--out", "a counterfactual folder", ok, 1, err);
    if (rc == JT_OK && rank == 0) rc = model_mkdirs(o->out_dir, err);
    rc = comm_agree(rc, err, "%s: another process failed to make the folder (see its message)",
                    o->out_dir);

    const int N = rc == JT_OK ? in.N : 0, n_models = N * N_KINDS;
    const size_t D = (size_t)in.tr.C * in.tr.H * in.tr.W;
    double *dist_t = xcalloc((size_t)n_models + 1, sizeof(double));
    double *dist_T = xcalloc((size_t)n_models + 1, sizeof(double));
    float *regen = xcalloc((size_t)n_models * D + 1, sizeof(float));
    size_t *removed = xmalloc(((size_t)n_models * (size_t)o->k + 1) * sizeof(size_t));
    /* Model q (target j = q / N_KINDS, kind q % N_KINDS) is rank q % size's, in every call, so
     * that a stopped run resumes its training. Every process lists every model's removed rows
     * (cheap) for rank 0's report. */
    for (int q = 0; rc == JT_OK && q < n_models; q++) {
        int j = q / N_KINDS, kind = q % N_KINDS;
        size_t *rows = removed + (size_t)q * (size_t)o->k;
        removal(kind, in.scores, in.Ns, in.col[j], &in.mr.data, in.tr.x_0 + (size_t)in.tg[j] * D,
                o->seed, in.tg[j], o->k, rows);
        if (q % size != rank) continue;
        rc = retrain(o, &in, j, kind, rows, o->quiet || rank != 0, regen + (size_t)q * D,
                     &dist_t[kind * N + j], &dist_T[kind * N + j], err);
    }
    rc = comm_agree(rc, err, "%s: another process failed on its models (see its message)",
                    o->out_dir);
    /* Every process has its models' regenerations and distances; rank 0 gets the others'. */
    for (int q = 0; rc == JT_OK && size > 1 && q < n_models; q++) {
        int j = q / N_KINDS, kind = q % N_KINDS;
        comm_bcast(regen + (size_t)q * D, D * sizeof(float), q % size);
        comm_bcast(&dist_t[kind * N + j], sizeof(double), q % size);
        comm_bcast(&dist_T[kind * N + j], sizeof(double), q % size);
    }
    if (rc == JT_OK && rank == 0) rc = report(o, &in, removed, regen, dist_t, dist_T, err);
    rc = comm_agree(rc, err, "%s: writing the results failed on rank 0 (see its message)",
                    o->out_dir);
    free(dist_t), free(dist_T), free(regen), free(removed);
    free_inputs(&in);
    return rc;
}
