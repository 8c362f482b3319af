/* lds.c: see lds.h. The subsets, the subset models and their ground truths; lds_eval.c evaluates
 * the score folders against them. Under mpirun (core/comm.h) rank 0 prepares the folder before the
 * others check it, subset model q is trained and measured by rank q % size, and rank 0 evaluates
 * once every process has finished; errors are agreed, so every process fails if one does. */
/* realpath() is XSI */
#define _XOPEN_SOURCE 700
#include "eval/lds.h"
#include "eval/lds_internal.h"

#include "core/comm.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "diffusion/denoiser.h"
#include "diffusion/schedule.h"
#include "diffusion/train.h"
#include "diffusion/trajectory.h"
#include "io/artifact.h"
#include "io/jsonfile.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "nn/nn.h"

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

static int load_inputs(const LdsOptions *o, LdsInputs *in, JtError *err) {
    if (model_record_load(&in->mr, o->model_dir, "lds retrains the model's recipe on subsets of its data",
                          err) != JT_OK)
        return JT_ERR;
    int rc = traj_load(&in->tr, o->traj_path, err);
    if (rc == JT_OK && in->tr.model_fingerprint != in->mr.fingerprint)
        rc = jt_fail(err, "%s: the targets were sampled from another model than %s (fingerprints "
                          "differ)", o->traj_path, o->model_dir);
    if (rc == JT_OK) {
        char what[600];
        snprintf(what, sizeof what, "the schedule of %s", o->model_dir);
        rc =
            traj_check_schedule(&in->tr, o->traj_path, in->mr.sched.num_train_timesteps, what, err);
    }
    const Dataset *d = &in->mr.data; /* the model's geometry */
    if (rc == JT_OK && (in->tr.C != d->c || in->tr.H != d->h || in->tr.W != d->w))
        rc = jt_fail(err, "%s: samples are %dx%dx%d but the training images are %dx%dx%d",
                     o->traj_path, in->tr.C, in->tr.H, in->tr.W, d->c, d->h, d->w);
    if (rc == JT_OK && o->heldout) { /* fitted like the training images */
        rc = targets_from_data(&in->held, o->heldout, d->c, d->h, d->w, "heldout", err);
        in->have_held = rc == JT_OK;
    }
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

/* A recorded recipe read back as the recipe it means: a folder written before the recipe gained
 * a field (the conditioning) still matches the run that made it. */
static int same_recipe(const cJSON *recorded, const TrainRecipe *r, const char *where) {
    TrainRecipe had;
    JtError ignored;
    if (train_recipe_from_json(&had, recorded, where, &ignored) != JT_OK) return 0;
    char *a = train_recipe_json(&had), *b = train_recipe_json(r);
    int same = strcmp(a, b) == 0;
    free(a);
    free(b);
    return same;
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
            if (h && strcmp(field->string, "recipe") == 0 && same_recipe(h, &in->mr.recipe, mp))
                continue;
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

/* gt-heldout/manifest.json: which images the held-out ground truths are of. Kept apart from
 * manifest.json so that a held-out set can be added to a folder whose models exist; a folder holds
 * one held-out set. */
static int prepare_heldout(const LdsOptions *o, const LdsInputs *in, JtError *err) {
    char *dir = path_join(o->out_dir, "gt-heldout"), *mp = path_join(dir, "manifest.json");
    cJSON *want = cJSON_CreateObject();
    cJSON_AddStringToObject(want, "format", "jtrak-lds-heldout-v1");
    cJSON_AddItemToObject(want, "target_set", targets_set_json(&in->held));
    cJSON_AddNumberToObject(want, "grid", o->grid);
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)o->gt_seed);
    cJSON_AddStringToObject(want, "gt_seed", s);
    struct stat sb;
    int rc = JT_OK;
    if (stat(mp, &sb) == 0) {
        cJSON *have = json_load_file(mp, err);
        rc = have ? JT_OK : JT_ERR;
        const cJSON *ht = have ? cJSON_GetObjectItem(have, "target_set") : NULL;
        const cJSON *wt = cJSON_GetObjectItem(want, "target_set");
        const char *hf = json_str(ht, "fingerprint");
        if (rc == JT_OK && (!hf || strcmp(hf, json_str(wt, "fingerprint")) != 0))
            rc = jt_fail(err, "%s: this folder's held-out ground truths are of other images (%s) "
                              "than --heldout-data gives (%s); use the same images, or a new --out",
                         mp, json_str(ht, "spec") ? json_str(ht, "spec") : "?", json_str(wt, "spec"));
        cJSON_Delete(have);
    } else {
        rc = model_mkdirs(dir, err);
        if (rc == JT_OK) {
            char *text = cJSON_Print(want);
            rc = atomic_file_write(mp, text, strlen(text), err);
            free(text);
        }
    }
    cJSON_Delete(want);
    free(dir), free(mp);
    return rc;
}

/* The ground truth of one model: (n_steps + 1, N) doubles for the generated targets, or
 * (1, N_heldout) for the held-out images (heldout = 1). */
int lds_ground_truth(const LdsOptions *o, const LdsInputs *in, const char *model_dir, int heldout,
                     double *gt, JtError *err) {
    Model *model;
    if (model_load_unet(model_dir, &model, err) != JT_OK) return JT_ERR;
    UNet *net = model_unet(model);
    NoiseSchedule sched;
    if (sched_init(&sched, &in->mr.sched, err) != JT_OK) {
        model_free(model);
        return JT_ERR;
    }
    const Trajectory *tr = &in->tr;
    const Dataset *d = &in->mr.data; /* the model's geometry, which both target kinds have */
    const size_t D = (size_t)d->c * d->h * d->w;
    const int B = o->R_eval > o->grid ? (o->R_eval < 64 ? o->R_eval : 64) : (o->grid < 64 ? o->grid : 64);
    /* The noising loss of diffusion/denoiser.h (forward only), each target with its own class:
     * the trajectory's labels or the held-out images' (conditional eps, no guidance). */
    Denoiser *den = NULL;
    int rc = denoiser_create(&den, net, &sched, B, d->h, d->w, DENOISER_FORWARD, err);
    const int K = unet_num_classes(net);
    const Targets *held = &in->held;
    if (rc == JT_OK && K > 0 && (heldout ? !targets_labelled(held) : !tr->labels))
        rc = jt_fail(err, "%s is class-conditional (num_class_embeds %d) but the %s no labels",
                     model_dir, K, heldout ? "held-out images have" : "trajectory has");
    if (rc == JT_OK && K == 0 && !heldout && tr->labels)
        rc = jt_fail(err, "%s is unconditional but the trajectory is class-conditional",
                     model_dir);
    const int N = heldout ? in->held.n : tr->n, rows = heldout ? 1 : in->n_steps + 1;
    for (int j = 0; rc == JT_OK && K > 0 && j < N; j++) {
        const int l = heldout ? targets_label(held, j) : tr->labels[j];
        rc = denoiser_check_label(den, l, heldout ? "--heldout-data" : "trajectory", err);
    }
    float *x0 = xmalloc((size_t)B * D * sizeof(float)), *eps = xmalloc((size_t)B * D * sizeof(float));
    double *per = xmalloc((size_t)B * sizeof(double));
    int *ti = xmalloc((size_t)B * sizeof(int)), *lab = xmalloc((size_t)B * sizeof(int));
    for (int row = 0; rc == JT_OK && row < rows; row++) {
        int dtrak = heldout || row == in->n_steps, draws = dtrak ? o->grid : o->R_eval;
        /* Draw streams: per-step draws from 1, the generated D-TRAK grid from 1000001, the
         * held-out grid from 2000001, so that no two ground truths share noise by accident. */
        const uint64_t base = heldout ? 2000001u : dtrak ? 1000001u : 1u;
        for (int j = 0; j < N; j++) {
            double sum = 0;
            const Cond cond = {K > 0 ? lab : NULL};
            for (int b = 0; K > 0 && b < B; b++)
                lab[b] = heldout ? targets_label(held, j) : tr->labels[j];
            for (int r0 = 0; r0 < draws; r0 += B) {
                int nb = draws - r0 < B ? draws - r0 : B;
                for (int b = 0; b < nb; b++) {
                    int r = r0 + b;
                    int t = dtrak ? (int)(((double)r + 0.5) * sched.T / o->grid)
                                  : tr->timesteps[in->kidx[row]];
                    const float *src = heldout ? targets_image(&in->held, j, -1)
                                       : dtrak ? tr->x_0 + (size_t)j * D
                                               : tr->x0_hat + ((size_t)j * tr->S + in->kidx[row]) * D;
                    memcpy(x0 + b * D, src, D * sizeof(float));
                    /* The same draws for every model: keyed by (target, t, draw), not by model. */
                    rng_fill_normal(eps + b * D, D, o->gt_seed,
                                    rng_stream(RNG_TAG_SUBSET, ((uint64_t)j << 32) | (uint64_t)t,
                                               (uint64_t)r + base),
                                    0);
                    ti[b] = t;
                }
                denoiser_loss(den, nb, x0, ti, eps, &cond, per);
                for (int b = 0; b < nb; b++) sum += per[b];
            }
            gt[(size_t)row * N + j] = -sum / draws; /* higher = the model explains the target better */
        }
    }
    free(x0), free(eps), free(per), free(ti), free(lab);
    denoiser_free(den);
    sched_free(&sched);
    model_free(model);
    return rc;
}

static uint64_t model_seed(const LdsOptions *o, uint64_t base, int k, int r) {
    return (o->crn ? base : base + 1 + (uint64_t)k) + (uint64_t)r * SEED_STRIDE;
}

/* Measures one ground truth of a finished model and writes it to dir/s<k>_r<r>.npy. */
static int write_gt(const LdsOptions *o, const LdsInputs *in, const char *mdir, int heldout,
                    const char *gdir, const char *gpath, JtError *err) {
    const int N = heldout ? in->held.n : in->tr.n, rows = heldout ? 1 : in->n_steps + 1;
    double *gt = xmalloc((size_t)rows * N * sizeof(double));
    int rc = lds_ground_truth(o, in, mdir, heldout, gt, err);
    size_t shape[2] = {(size_t)rows, (size_t)N};
    if (rc == JT_OK) rc = model_mkdirs(gdir, err);
    if (rc == JT_OK) rc = npy_write(gpath, NPY_F64, 2, shape, gt, err);
    free(gt);
    return rc;
}

/* Subset model q: subsets k = 0..K-1 with replicas 0..R-1, then the ceiling replicas. */
static void model_of(const LdsOptions *o, int q, int *k, int *r) {
    if (q < o->K * o->seeds_per_subset)
        *k = q / o->seeds_per_subset, *r = q % o->seeds_per_subset;
    else
        *k = q - o->K * o->seeds_per_subset, *r = o->seeds_per_subset;
}

/* Trains (or resumes) the model of subset k, seed replica r, and computes its ground truth; a
 * model whose ground truth exists is done. Then the held-out ground truth, if asked for and not
 * there yet: from the finished model, without training. Returns 1 in *trained when it trained. */
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
        if (rc == JT_OK) rc = write_gt(o, in, mdir, 0, gdir, gpath, err);
        *trained = rc == JT_OK;
    }
    if (rc == JT_OK && in->have_held) {
        free(gpath), free(gdir);
        snprintf(name, sizeof name, "gt-heldout/s%d_r%d.npy", k, r);
        gpath = path_join(o->out_dir, name), gdir = path_join(o->out_dir, "gt-heldout");
        if (stat(gpath, &sb) != 0) rc = write_gt(o, in, mdir, 1, gdir, gpath, err);
    }
    free(mdir), free(gpath), free(gdir);
    return rc;
}

/* Models whose ground truth exists (after every process has finished). */
static int models_done(const LdsOptions *o, int total) {
    int done = 0;
    for (int q = 0; q < total; q++) {
        int k, r;
        model_of(o, q, &k, &r);
        char name[64];
        snprintf(name, sizeof name, "gt/s%d_r%d.npy", k, r);
        char *p = path_join(o->out_dir, name);
        struct stat sb;
        done += stat(p, &sb) == 0;
        free(p);
    }
    return done;
}

int lds_run(const LdsOptions *o, JtError *err) {
    if (o->K < 2) return jt_fail(err, "--K %d: need at least 2 subsets", o->K);
    if (!(o->alpha > 0 && o->alpha < 1))
        return jt_fail(err, "--alpha %g: must be in (0, 1)", o->alpha);
    if (o->R_eval < 1 || o->grid < 1 || o->seeds_per_subset < 1)
        return jt_fail(err, "--R-eval, --grid and --seeds-per-subset must be at least 1");
    /* From here on every process reaches every comm_agree, whatever fails. */
    const int rank = comm_rank(), size = comm_size();
    LdsInputs in;
    memset(&in, 0, sizeof in);
    int rc = load_inputs(o, &in, err);
    if (rc == JT_OK) rc = resolve_steps(o->steps, &in, err);
    if (rc == JT_OK) rc = lds_check_score_folders(o, &in, err); /* before any training */
    if (rc == JT_OK) {
        in.mask = xmalloc((size_t)o->K * in.mr.data.n);
        make_masks(o, in.mr.data.n, in.mask);
    }
    rc = comm_agree(rc, err, "%s: another process failed to read the inputs (see its message)",
                    o->out_dir);
    /* Rank 0 holds the folder's lock for the run, for every process of it (they train into it
     * only after rank 0's check below, and have finished before the last comm_agree). */
    DirLock lock = {-1, NULL, 0};
    if (rc == JT_OK && rank == 0) {
        const ArtifactKind ok[] = {ARTIFACT_LDS};
        rc = artifact_check_out(o->out_dir, "--out", "an LDS folder", ok, 1, err);
        if (rc == JT_OK) rc = dir_lock(&lock, o->out_dir, "lds", err);
    }
    /* Rank 0 creates the folder (or checks it) before the others check it. */
    for (int turn = 0; turn < 2; turn++) {
        if (rc == JT_OK && (rank == 0) == (turn == 0)) {
            rc = prepare_folder(o, &in, err);
            if (rc == JT_OK && in.have_held) rc = prepare_heldout(o, &in, err);
        }
        rc = comm_agree(rc, err, "%s: another process failed to %s the folder (see its message)",
                        o->out_dir, turn == 0 ? "prepare" : "check");
    }
    /* Model q is rank q % size's, in every call, so that a stopped run resumes where it was and a
     * model is trained and measured by one process. */
    const int total = o->K * o->seeds_per_subset + (o->ceiling < o->K ? o->ceiling : o->K);
    const int mine = total / size + (rank < total % size);
    char label[64];
    if (size > 1)
        snprintf(label, sizeof label, "lds: subset models, rank 0/%d", size);
    else
        snprintf(label, sizeof label, "lds: subset models");
    Progress prog;
    progress_init(&prog, label, (size_t)mine, 0, 1.0, "models");
    prog.quiet = o->quiet || rank != 0;
    long trained_now = 0;
    int done = 0, stopped = 0;
    for (int q = rank; rc == JT_OK && q < total; q += size) {
        if (o->stop_after_models > 0 && trained_now >= o->stop_after_models) {
            stopped = 1;
            break;
        }
        int k, r, trained;
        model_of(o, q, &k, &r);
        rc = do_model(o, &in, k, r, &trained, err);
        trained_now += trained;
        done++;
        progress_update(&prog, (size_t)done, NULL, done == mine);
    }
    /* Every process has finished its models before rank 0 evaluates them all. */
    rc = comm_agree(rc, err, "%s: another process failed on its subset models (see its message)",
                    o->out_dir);
    stopped = comm_max(stopped);
    if (rc == JT_OK && stopped) {
        if (!o->quiet && rank == 0 && size == 1)
            fprintf(stderr,
                    "lds: stopped after training %ld model(s) (%d/%d done); run again to "
                    "continue\n",
                    trained_now, models_done(o, total), total);
        else if (!o->quiet && rank == 0)
            fprintf(stderr,
                    "lds: stopped after training at most %ld model(s) per process (%d/%d "
                    "done); run again to continue\n",
                    o->stop_after_models, models_done(o, total), total);
    } else if (rc == JT_OK && rank == 0) {
        cJSON *results = cJSON_CreateObject();
        rc = lds_evaluate_all(o, &in, results, err);
        if (rc == JT_OK) rc = lds_write_plots(o, &in, results, err);
        if (rc == JT_OK) {
            char *p = path_join(o->out_dir, "lds.json"), *text = cJSON_Print(results);
            rc = atomic_file_write(p, text, strlen(text), err);
            free(p), free(text);
        }
        cJSON_Delete(results);
    }
    rc = comm_agree(rc, err, "%s: the evaluation failed on rank 0 (see its message)", o->out_dir);
    dir_unlock(&lock);
    free(in.kidx), free(in.mask);
    traj_free(&in.tr);
    if (in.have_held) targets_free(&in.held);
    model_record_free(&in.mr);
    return rc;
}
