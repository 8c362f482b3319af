/* score.c: see score.h. Phase 1 computes the projected target gradients Gamma[m][s] (N, k) of
 * every model and step (small); phase 2 walks the training rows in tiles, adding each model's
 * X_tile A_m Gamma^T / M, and writes the tile's scores and offers them to the top-k trackers. */
/* realpath() is XSI */
#define _XOPEN_SOURCE 700
#include "attrib/score.h"

#include "attrib/kernel.h"
#include "attrib/outfn.h"
#include "attrib/paramsel.h"
#include "attrib/project.h"
#include "attrib/scoremat.h"
#include "attrib/store.h"
#include "attrib/targets.h"
#include "core/progress.h"
#include "diffusion/trajectory.h"
#include "io/artifact.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const METHOD_NAMES[] = {"journey", "trak", "dtrak", "pixel"};

const char *score_method_name(ScoreMethod m) {
    return METHOD_NAMES[m];
}

int score_method_parse(const char *name, ScoreMethod *m) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, METHOD_NAMES[i]) == 0) {
            *m = (ScoreMethod)i;
            return JT_OK;
        }
    return JT_ERR;
}

void score_options_default(ScoreOptions *o) {
    memset(o, 0, sizeof *o);
    o->method = METHOD_JOURNEY;
    o->steps = "all";
    o->targets = "all";
    o->R = 20;
    o->topk = 10;
    o->tile_rows = 4096;
    o->batch = 16;
}

static int step_specific(ScoreMethod m) {
    return m == METHOD_JOURNEY || m == METHOD_PIXEL;
}

/* Scores per step: the step-specific methods on a trajectory (real images have no steps). */
static int per_step(ScoreMethod m, const Targets *tgt) {
    return step_specific(m) && !tgt->real;
}

/* Parses a comma list of integers into a malloc'd array. */
static int parse_int_list(const char *s, const char *what, int **out, int *n, JtError *err) {
    *out = NULL;
    *n = 0;
    int cap = 8;
    int *v = xmalloc((size_t)cap * sizeof *v);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 1000000000 || (*end && *end != ',')) {
            free(v);
            return jt_fail(err, "%s '%s': expected comma-separated non-negative integers", what, s);
        }
        if (*n == cap) v = xrealloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[(*n)++] = (int)x;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) {
        free(v);
        return jt_fail(err, "%s '%s': empty list", what, s);
    }
    *out = v;
    return JT_OK;
}

/* Resolves --steps against the trajectory: indices into its steps, in trajectory order. */
static int resolve_steps(const char *spec, const Trajectory *tr, int **kidx, int *n, JtError *err) {
    *kidx = xmalloc((size_t)tr->S * sizeof **kidx);
    *n = 0;
    if (strcmp(spec, "all") == 0) {
        for (int k = 0; k < tr->S; k++)
            (*kidx)[(*n)++] = k;
        return JT_OK;
    }
    int a, b, c;
    char tail;
    if (sscanf(spec, "%d:%d:%d%c", &a, &b, &c, &tail) == 3) {
        if (a < 0 || b <= a || c < 1)
            return jt_fail(err,
                           "--steps '%s': a range is START:STOP:STRIDE with 0 <= START < STOP "
                           "and STRIDE >= 1",
                           spec);
        for (int k = 0; k < tr->S; k++) {
            int t = tr->timesteps[k];
            if (t >= a && t < b && (t - a) % c == 0) (*kidx)[(*n)++] = k;
        }
        if (*n == 0)
            return jt_fail(err,
                           "--steps '%s': no step of the trajectory (%d..%d, %d steps) is in "
                           "that range",
                           spec, tr->timesteps[tr->S - 1], tr->timesteps[0], tr->S);
        return JT_OK;
    }
    int *ts, nt;
    if (parse_int_list(spec, "--steps", &ts, &nt, err) != JT_OK) return JT_ERR;
    for (int i = 0; i < nt; i++) {
        int k = traj_step_index(tr, ts[i]);
        if (k < 0) {
            int t0 = tr->timesteps[0], t1 = tr->timesteps[tr->S - 1];
            jt_fail(err,
                    "--steps: step %d is not in the trajectory (its %d steps run from %d down "
                    "to %d)",
                    ts[i], tr->S, t0, t1);
            free(ts);
            return JT_ERR;
        }
        (*kidx)[(*n)++] = k;
    }
    free(ts);
    return JT_OK;
}

static int resolve_targets(const char *spec, const Targets *tgt, int **out, int *n, JtError *err) {
    if (strcmp(spec, "all") == 0) {
        *out = xmalloc((size_t)tgt->n * sizeof **out);
        for (int i = 0; i < tgt->n; i++)
            (*out)[i] = i;
        *n = tgt->n;
        return JT_OK;
    }
    if (parse_int_list(spec, "--targets", out, n, err) != JT_OK) return JT_ERR;
    for (int i = 0; i < *n; i++)
        if ((*out)[i] >= tgt->n)
            return jt_fail(err, "--targets: %s %d is not in the %s (it has %d)",
                           tgt->real ? "image" : "sample", (*out)[i],
                           tgt->real ? "target images" : "trajectory", tgt->n);
    return JT_OK;
}

static char *fmt_hex(uint64_t v, char buf[17]) {
    snprintf(buf, 17, "%016llx", (unsigned long long)v);
    return buf;
}

/* The clean image a target's output function starts from. */
static const float *target_image(const Targets *tgt, ScoreMethod m, int sample, int k) {
    return targets_image(tgt, sample, per_step(m, tgt) ? k : -1);
}

/* Phase 1 for one model: Gamma (n_eff, N, k) of the projected target gradients. */
static int target_features(const FeatureStore *st, int m, const Targets *tgt, const ScoreOptions *o,
                           const int *tg, int N, const int *kidx, int n_eff, float *gamma,
                           JtError *err) {
    Model *model;
    if (model_load_unet(st->model_paths[m], &model, err) != JT_OK) return JT_ERR;
    UNet *net = model_unet(model);
    int rc = JT_OK;
    if (model_fingerprint(model) != st->model_fingerprints[m])
        rc = jt_fail(err,
                     "%s: the model changed since the store %s was featurized (fingerprint "
                     "differs); featurize again",
                     st->model_paths[m], st->dir);
    NoiseSchedule sched;
    SchedConfig sc;
    if (rc == JT_OK) rc = sched_config_load_model(&sc, st->model_paths[m], err);
    if (rc == JT_OK) rc = sched_init(&sched, &sc, err);
    if (rc != JT_OK) {
        model_free(model);
        return JT_ERR;
    }
    if (!tgt->real) { /* before the output folder exists: nothing is left behind */
        char what[600];
        snprintf(what, sizeof what, "the schedule of %s", st->model_paths[m]);
        rc = traj_check_schedule(&tgt->tr, o->traj_path, sched.T, what, err);
    }
    /* The targets' conditioning (ldm.md 1.3: conditional eps only, no guidance): each target's
     * own class, or the null class when the store was featurized with it. */
    const int K = unet_num_classes(net), X = unet_cross_attention_dim(net);
    const int class_policy = st->cond == COND_OWN_CLASS || st->cond == COND_NULL_CLASS;
    if (rc == JT_OK && (K > 0) != class_policy)
        rc = jt_fail(err, "%s/manifest.json: conditioning is %s but %s %s", st->dir,
                     cond_policy_name(st->cond), st->model_paths[m],
                     K > 0 ? "is class-conditional" : "has no class embeddings");
    if (rc == JT_OK && (X > 0) != (st->cond == COND_OWN_CONTEXT))
        rc = jt_fail(err, "%s/manifest.json: conditioning is %s but %s %s", st->dir,
                     cond_policy_name(st->cond), st->model_paths[m],
                     X > 0 ? "has cross-attention" : "has no cross-attention");
    /* text contexts: each sample's own, recorded in the trajectory (its prompt) */
    if (rc == JT_OK && X > 0 && tgt->real)
        rc = jt_fail(err, "--targets-data: scoring real images with a text-conditional model needs "
                          "their contexts, which is not implemented; score a trajectory");
    if (rc == JT_OK && X > 0 && tgt->tr.ctx_dim != X)
        rc = jt_fail(err,
                     "%s: the trajectory's contexts are %d wide but %s's cross_attention_dim is "
                     "%d",
                     o->traj_path, tgt->tr.ctx_dim, st->model_paths[m], X);
    for (int j = 0; rc == JT_OK && K > 0 && st->cond == COND_OWN_CLASS && j < N; j++) {
        const int l = targets_label(tgt, tg[j]), top = tgt->real ? K - 2 : K - 1;
        if (l < 0 || l > top)
            rc = jt_fail(err, "%s %d has class %d but %s holds classes 0..%d (null class %d)",
                         tgt->real ? "--targets-data: image" : "trajectory: sample", tg[j], l,
                         st->model_paths[m], K - 2, K - 1);
    }
    if (rc != JT_OK) {
        sched_free(&sched);
        model_free(model);
        return JT_ERR;
    }
    int B = o->batch < N ? o->batch : N;
    GradEngine *ge = NULL;
    const int L = X > 0 ? tgt->tr.ctx_len : 0;
    rc = grad_engine_create_ctx(&ge, net, &sched, B, L, err);
    /* the target gradients over the store's parameter selection (featurize --params) */
    if (rc == JT_OK) {
        ParamSelect sel;
        rc = param_select_init(&sel, unet_layout(net), st->grad_params, st->model_paths[m], err);
        if (rc == JT_OK) rc = store_check_grad_params(st, m, sel.count, sel.fingerprint, err);
        if (rc == JT_OK) grad_engine_select_params(ge, sel.compact);
        param_select_free(&sel);
    }
    int *labels = K > 0 ? xmalloc((size_t)B * sizeof(int)) : NULL; /* (B) */
    const size_t LD = (size_t)L * (X > 0 ? X : 0);
    float *contexts = X > 0 ? xmalloc((size_t)B * LD * sizeof(float)) : NULL; /* (B, L, D) */
    const Cond cond = {.labels = labels, .context = contexts};
    const size_t P = ge ? grad_engine_grad_params(ge) : unet_num_params(net),
                 D = (size_t)tgt->C * tgt->H * tgt->W;
    const int R = o->R, k = st->k;
    OutFn fn = st->outfn; /* journey takes the store's; trak and dtrak were checked to match */
    Projector pr;
    proj_init(&pr, st->proj_kind, st->proj_seed, m, P, k);
    float *x0 = xmalloc((size_t)B * D * sizeof(float)),
          *eps = xmalloc((size_t)B * R * D * sizeof(float));
    float *grads = xmalloc((size_t)B * P * sizeof(float));
    int *t = xmalloc((size_t)B * R * sizeof(int));
    Progress prog;
    progress_init(&prog, "score: target gradients", (size_t)n_eff * N, 0, 1.0, "targets");
    prog.quiet = o->quiet;
    for (int s = 0; rc == JT_OK && s < n_eff; s++) {
        int tstep = per_step(o->method, tgt) ? tgt->tr.timesteps[kidx[s]] : -1;
        for (int j0 = 0; j0 < N; j0 += B) {
            int nb = N - j0 < B ? N - j0 : B;
            for (int b = 0; b < nb; b++) {
                int sample = tg[j0 + b];
                memcpy(x0 + b * D, target_image(tgt, o->method, sample, kidx[s]),
                       D * sizeof(float));
                if (labels)
                    labels[b] = st->cond == COND_NULL_CLASS ? K - 1 : targets_label(tgt, sample);
                if (contexts)
                    memcpy(contexts + b * LD, tgt->tr.context + (size_t)sample * LD,
                           LD * sizeof(float));
                uint64_t key = st->shared_draws
                                   ? ATTRIB_SHARED_ITEM
                                   : attrib_target_key(sample, tstep >= 0 ? tstep : sched.T);
                attrib_draws(o->seed, m, key, R, sched.T, tstep, D, t + (size_t)b * R,
                             eps + (size_t)b * R * D);
            }
            grad_engine_run_cond(ge, fn, nb, R, x0, 0, t, eps, &cond, grads, NULL);
            proj_apply(&pr, grads, nb, P, gamma + ((size_t)s * N + j0) * k);
            progress_update(&prog, (size_t)s * N + j0 + nb, NULL, 0);
        }
    }
    free(x0), free(eps), free(grads), free(t), free(labels), free(contexts);
    proj_free(&pr);
    grad_engine_free(ge);
    sched_free(&sched);
    model_free(model);
    return rc;
}

typedef struct {
    char *final_path, *tmp_path;
    NpyFile f;
    int open;
} ScoreFile;

/* The top-k lists on stdout; a target with a prompt (text-conditional trajectory) gets a line
 * with it, and with the guidance and negative prompt, first. */
static void print_table(const TopK *tk, int n_eff, const int *tg, int N, const int *labels_t,
                        const Dataset *data, int real, const Trajectory *tr) {
    for (int j = 0; j < N; j++)
        for (int s = 0; s < n_eff; s++) {
            const TopK *t = &tk[s];
            if (s == 0 && !real && tr->prompts) {
                printf("target %d (sample %d) prompt \"%s\" guidance %g", j, tg[j],
                       tr->prompts[tg[j]], (double)tr->guidance);
                if (tr->negative_prompt && tr->uncond_context)
                    printf(" negative prompt \"%s\"", tr->negative_prompt);
                printf("\n");
            }
            if (labels_t)
                printf("target %d (sample %d) t=%d\n", j, tg[j], labels_t[s]);
            else
                printf("target %d (%s %d) %s\n", j, real ? "image" : "sample", tg[j],
                       real ? "real image" : "final image");
            for (int side = 0; side < 2; side++) {
                printf("  %s:", side ? "opponents " : "proponents");
                for (int r = 0; r < t->count[j]; r++) {
                    size_t row = side ? t->opp_idx[j * t->k + r] : t->pro_idx[j * t->k + r];
                    float v = side ? t->opp_val[j * t->k + r] : t->pro_val[j * t->k + r];
                    const char *cls = data ? data_class_name(data, data->labels[row]) : NULL;
                    printf(" %zu%s%s%s(%+.4g)", row, cls ? "[" : "", cls ? cls : "", cls ? "]" : "",
                           v);
                }
                printf("\n");
            }
        }
}

static cJSON *topk_json(const TopK *tk, int n_eff, const int *tg, int N, const int *labels_t,
                        const Dataset *data, const Targets *tgt) {
    cJSON *arr = cJSON_CreateArray();
    for (int j = 0; j < N; j++)
        for (int s = 0; s < n_eff; s++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "target", j);
            cJSON_AddNumberToObject(e, "sample", tg[j]);
            if (targets_labelled(tgt))
                cJSON_AddNumberToObject(e, "class", targets_label(tgt, tg[j]));
            if (!tgt->real) cJSON_AddNumberToObject(e, "guidance", tgt->tr.guidance);
            if (labels_t)
                cJSON_AddNumberToObject(e, "step", labels_t[s]);
            else
                cJSON_AddStringToObject(e, "step", "final");
            for (int side = 0; side < 2; side++) {
                cJSON *list = cJSON_AddArrayToObject(e, side ? "opponents" : "proponents");
                for (int r = 0; r < tk[s].count[j]; r++) {
                    size_t row =
                        side ? tk[s].opp_idx[j * tk[s].k + r] : tk[s].pro_idx[j * tk[s].k + r];
                    float v =
                        side ? tk[s].opp_val[j * tk[s].k + r] : tk[s].pro_val[j * tk[s].k + r];
                    cJSON *it = cJSON_CreateObject();
                    cJSON_AddNumberToObject(it, "row", (double)row);
                    if (data) cJSON_AddNumberToObject(it, "source_index", (double)data->index[row]);
                    const char *file = data ? data_item_name(data, row) : NULL;
                    const char *cap = data ? data_item_caption(data, row) : NULL;
                    if (file) cJSON_AddStringToObject(it, "file", file);
                    if (cap) cJSON_AddStringToObject(it, "caption", cap);
                    cJSON_AddNumberToObject(it, "score", v);
                    cJSON_AddItemToArray(list, it);
                }
            }
            cJSON_AddItemToArray(arr, e);
        }
    return arr;
}

static int write_json(const char *dir, const char *name, cJSON *o, JtError *err) {
    char *text = cJSON_Print(o);
    char *path = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    int rc = atomic_file_write(path, text, strlen(text), err);
    free(path);
    free(text);
    return rc;
}

static int score_run_locked(const ScoreOptions *o, const Dataset *data_in, JtError *err) {
    Targets tgt;
    memset(&tgt, 0, sizeof tgt);
    FeatureStore st;
    memset(&st, 0, sizeof st);
    int have_store = 0, rc = JT_OK, N = 0, n_steps = 0;
    int had_dir = 1; /* a refused run removes the (empty) output folder it made */
    int *tg = NULL, *kidx = NULL;
    Dataset own = {0};
    const Dataset *data = data_in;
    if (o->R < 1) return jt_fail(err, "--R %d: need at least one draw per target", o->R);
    if (o->topk < 1 || o->topk > SCORE_MAX_TOPK)
        return jt_fail(err, "--topk %d: must be 1 to %d", o->topk, SCORE_MAX_TOPK);
    if (!o->traj_path == !o->target_data)
        return jt_fail(err, "the targets are either generated samples (--trajectory) or real "
                            "images (--targets-data): give exactly one");
    if (o->target_data && o->method == METHOD_JOURNEY)
        return jt_fail(err,
                       "method journey attributes the steps of a sampling trajectory, and real "
                       "target images (--targets-data) have none: use --method trak, dtrak or "
                       "pixel");
    const ArtifactKind ok_out[] = {ARTIFACT_SCORES};
    if (o->out_dir && artifact_check_out(o->out_dir, "--out", "a score folder", ok_out, 1, err))
        return JT_ERR;
    if (o->traj_path) { /* real targets are loaded below, fitted like the training images */
        if (targets_from_trajectory(&tgt, o->traj_path, err) != JT_OK) return JT_ERR;
        rc = resolve_steps(o->steps, &tgt.tr, &kidx, &n_steps, err);
        if (rc == JT_OK) rc = resolve_targets(o->targets, &tgt, &tg, &N, err);
    }

    if (rc == JT_OK && o->store_dir) {
        rc = store_open(&st, o->store_dir, err);
        have_store = rc == JT_OK;
    } else if (rc == JT_OK && o->method != METHOD_PIXEL) {
        rc = jt_fail(err, "method %s needs a feature store (--store); only pixel works without one",
                     score_method_name(o->method));
    }
    if (rc == JT_OK && have_store && o->method != METHOD_PIXEL) {
        OutFn want = o->method == METHOD_DTRAK ? OUTFN_SQNORM : OUTFN_LOSS;
        int found = o->target_data != NULL; /* real images come from no model */
        for (int m = 0; m < st.n_models; m++)
            found |= st.model_fingerprints[m] == tgt.tr.model_fingerprint;
        char h1[17];
        if (o->method != METHOD_JOURNEY && st.outfn != want)
            rc = jt_fail(err,
                         "%s: the store was featurized with output function '%s', method %s "
                         "needs '%s' (featurize with --output %s)",
                         st.dir, outfn_name(st.outfn), score_method_name(o->method),
                         outfn_name(want), outfn_name(want));
        else if (!st.finalized)
            rc = jt_fail(err,
                         "%s: the store is not finished (featurize was interrupted); run the "
                         "same featurize command to complete it",
                         st.dir);
        else if (!o->target_data && (tgt.tr.labels != NULL) !=
                                        (st.cond == COND_OWN_CLASS || st.cond == COND_NULL_CLASS))
            rc = jt_fail(err,
                         "%s: the trajectory is %s but the store %s is %s (conditioning %s): "
                         "score a trajectory of the store's models",
                         o->traj_path,
                         tgt.tr.labels ? "class-conditional (class_labels)"
                                       : "not class-conditional (no class_labels)",
                         st.dir, st.cond != COND_NONE ? "conditional" : "unconditional",
                         cond_policy_name(st.cond));
        else if (!o->target_data && (tgt.tr.context != NULL) != (st.cond == COND_OWN_CONTEXT))
            rc = jt_fail(err,
                         "%s: the trajectory %s text contexts but the store %s has "
                         "conditioning %s: score a trajectory of the store's models",
                         o->traj_path, tgt.tr.context ? "has" : "has no", st.dir,
                         cond_policy_name(st.cond));
        else if (!found)
            rc = jt_fail(err,
                         "%s: the trajectory was sampled from a model (fingerprint %s) that is "
                         "not one of the store's %d model(s)",
                         o->traj_path, fmt_hex(tgt.tr.model_fingerprint, h1), st.n_models);
    }
    if (rc == JT_OK && !data) {
        if (!have_store) {
            rc =
                jt_fail(err, "method pixel without a store needs the training data (data options)");
        } else {
            DatasetSpec spec;
            data_spec_init(&spec);
            rc = data_spec_parse(&spec, st.data_spec, err);
            if (rc == JT_OK) rc = data_load(&spec, &own, err);
            data_spec_free(&spec);
            data = rc == JT_OK ? &own : NULL;
        }
    }
    if (rc == JT_OK && have_store && data->fingerprint != st.data_fingerprint)
        rc = jt_fail(err, "the training data (%s) is not the store's (fingerprint differs)",
                     data->description);
    if (rc == JT_OK && o->target_data) { /* the model's geometry: the training images' */
        rc = targets_from_data(&tgt, o->target_data, data->c, data->h, data->w, "targets", err);
        kidx = xcalloc(1, sizeof *kidx), n_steps = 1;
        if (rc == JT_OK) rc = resolve_targets(o->targets, &tgt, &tg, &N, err);
    }
    if (rc == JT_OK && o->target_data && have_store && o->method != METHOD_PIXEL &&
        st.cond == COND_OWN_CLASS && !targets_labelled(&tgt))
        rc = jt_fail(err,
                     "--targets-data: the target images (%s) have no labels but the store %s "
                     "is class-conditional (conditioning own-class): give labelled targets",
                     tgt.data.description, st.dir);
    if (rc == JT_OK && (data->c != tgt.C || data->h != tgt.H || data->w != tgt.W))
        rc = jt_fail(err, "%s: samples are %dx%dx%d but the training images are %dx%dx%d",
                     o->traj_path, tgt.C, tgt.H, tgt.W, data->c, data->h, data->w);
    if (rc != JT_OK) goto done;

    const size_t n = data->n, D = (size_t)tgt.C * tgt.H * tgt.W;
    const int n_eff = per_step(o->method, &tgt) ? n_steps : 1;
    int M = o->method == METHOD_PIXEL ? 0 : st.n_models;
    if (M && o->ensemble > 0 && o->ensemble < M) M = o->ensemble;
    const int k = have_store ? st.k : 0;
    int *labels_t = NULL;
    if (per_step(o->method, &tgt)) {
        labels_t = xmalloc((size_t)n_eff * sizeof(int));
        for (int s = 0; s < n_eff; s++)
            labels_t[s] = tgt.tr.timesteps[kidx[s]];
    }

    /* Phase 1: projected target gradients of every model. */
    float **gamma = xcalloc((size_t)(M ? M : 1), sizeof(float *)),
          **AG = xcalloc((size_t)(M ? M : 1), sizeof(float *));
    for (int m = 0; rc == JT_OK && m < M; m++) {
        gamma[m] = xmalloc((size_t)n_eff * N * k * sizeof(float));
        rc = target_features(&st, m, &tgt, o, tg, N, kidx, n_eff, gamma[m], err);
        if (rc == JT_OK) { /* A_m Gamma^T for every step */
            float *A = xmalloc((size_t)k * k * sizeof(float));
            rc = store_read_kernel(&st, m, A, err);
            AG[m] = xmalloc((size_t)n_eff * k * N * sizeof(float));
            for (int s = 0; rc == JT_OK && s < n_eff; s++)
                scoremat_prepare(A, gamma[m] + (size_t)s * N * k, k, N, AG[m] + (size_t)s * k * N);
            free(A);
        }
    }
    struct stat od;
    had_dir = stat(o->out_dir, &od) == 0;
    if (rc == JT_OK) rc = model_mkdirs(o->out_dir, err);
    /* A folder being rewritten is no score folder until its new manifest is in place: a run
     * stopped halfway (killed, disk full) must not leave new score files under the old manifest,
     * which lds, counterfactual and report would trust. */
    char *old_manifest = path_join(o->out_dir, "manifest.json");
    if (rc == JT_OK && unlink(old_manifest) != 0 && errno != ENOENT)
        rc = jt_fail(err, "%s: cannot remove the old manifest: %s", old_manifest, strerror(errno));
    free(old_manifest);

    /* Phase 2: training rows in tiles. */
    ScoreFile *files = xcalloc((size_t)n_eff, sizeof *files);
    TopK *tk = xcalloc((size_t)n_eff, sizeof *tk);
    for (int s = 0; s < n_eff; s++)
        topk_init(&tk[s], N, o->topk);
    for (int s = 0; rc == JT_OK && !o->topk_only && s < n_eff; s++) {
        char name[64];
        if (labels_t)
            snprintf(name, sizeof name, "scores_t%d.npy", labels_t[s]);
        else
            snprintf(name, sizeof name, "scores_final.npy");
        files[s].final_path = xmalloc(strlen(o->out_dir) + 80);
        files[s].tmp_path = xmalloc(strlen(o->out_dir) + 90);
        sprintf(files[s].final_path, "%s/%s", o->out_dir, name);
        sprintf(files[s].tmp_path, "%s/.%s.partial", o->out_dir, name);
        size_t shape[2] = {n, (size_t)N};
        struct stat ps;
        if (!o->quiet && s == 0 && stat(files[s].tmp_path, &ps) == 0)
            fprintf(stderr,
                    "score: %s holds the partial score files of an interrupted run; scoring does "
                    "not resume: it starts over\n",
                    o->out_dir);
        rc = npy_create(&files[s].f, files[s].tmp_path, NPY_F32, 2, shape, err);
        files[s].open = rc == JT_OK;
    }
    size_t tile = o->tile_rows ? o->tile_rows : 4096;
    float *X = xmalloc(tile * (size_t)(k ? k : 1) * sizeof(float));
    float *out = xmalloc(tile * (size_t)N * n_eff * sizeof(float));
    float *timg = o->method == METHOD_PIXEL ? xmalloc(tile * D * sizeof(float)) : NULL;
    Progress prog;
    progress_init(&prog, "score: training rows", n, 0, 1.0, "rows");
    prog.quiet = o->quiet;
    for (size_t row0 = 0; rc == JT_OK && row0 < n; row0 += tile) {
        size_t rows = n - row0 < tile ? n - row0 : tile;
        memset(out, 0, rows * (size_t)N * n_eff * sizeof(float));
        for (int m = 0; rc == JT_OK && m < M; m++) {
            rc = store_read_features(&st, m, row0, rows, X, err);
            for (int s = 0; rc == JT_OK && s < n_eff; s++)
                scoremat_tile(X, rows, AG[m] + (size_t)s * k * N, k, N, 1.0f / (float)M,
                              out + (size_t)s * rows * N);
        }
        if (o->method == METHOD_PIXEL) {
            for (size_t i = 0; i < rows; i++)
                data_image_f32(data, row0 + i, 0, timg + i * D);
            for (int s = 0; s < n_eff; s++)
                for (int j = 0; j < N; j++) {
                    const float *y = target_image(&tgt, o->method, tg[j], kidx[s]);
                    double yy = 0;
                    for (size_t e = 0; e < D; e++)
                        yy += (double)y[e] * y[e];
#pragma omp parallel for schedule(static)
                    for (size_t i = 0; i < rows; i++) {
                        const float *x = timg + i * D;
                        double xy = 0, xx = 0;
                        for (size_t e = 0; e < D; e++)
                            xy += (double)x[e] * y[e], xx += (double)x[e] * x[e];
                        double den = sqrt(xx * yy);
                        out[(size_t)s * rows * N + i * N + j] = den > 0 ? (float)(xy / den) : 0.0f;
                    }
                }
        }
        for (int s = 0; rc == JT_OK && s < n_eff; s++) {
            const float *o_s = out + (size_t)s * rows * N;
            if (files[s].open) rc = npy_write_rows(&files[s].f, row0, rows, o_s, err);
            topk_push(&tk[s], o_s, row0, rows);
        }
        progress_update(&prog, row0 + rows, NULL, row0 + rows == n);
    }
    for (int s = 0; s < n_eff; s++) {
        if (files[s].open) {
            JtError e2;
            int crc = npy_close(&files[s].f, &e2);
            if (rc == JT_OK && crc != JT_OK) rc = crc, *err = e2;
            if (rc == JT_OK && rename(files[s].tmp_path, files[s].final_path) != 0)
                rc = jt_fail(err, "%s: cannot rename into place: %s", files[s].final_path,
                             strerror(errno));
            if (rc != JT_OK) remove(files[s].tmp_path);
        }
        free(files[s].final_path), free(files[s].tmp_path);
        topk_finish(&tk[s]);
    }
    if (rc == JT_OK) {
        cJSON *topk = cJSON_CreateObject();
        cJSON_AddStringToObject(topk, "method", score_method_name(o->method));
        cJSON_AddNumberToObject(topk, "topk", o->topk);
        cJSON_AddItemToObject(topk, "results", topk_json(tk, n_eff, tg, N, labels_t, data, &tgt));
        rc = write_json(o->out_dir, "topk.json", topk, err);
        cJSON_Delete(topk);
    }
    if (rc == JT_OK) {
        char h[17];
        cJSON *man = cJSON_CreateObject();
        cJSON_AddStringToObject(man, "format", "jtrak-scores-v1");
        cJSON_AddStringToObject(man, "method", score_method_name(o->method));
        cJSON_AddNumberToObject(man, "R", o->R);
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
        cJSON_AddStringToObject(man, "seed", seed);
        cJSON_AddBoolToObject(man, "topk_only", o->topk_only);
        cJSON *steps = cJSON_AddArrayToObject(man, "steps");
        for (int s = 0; labels_t && s < n_eff; s++)
            cJSON_AddItemToArray(steps, cJSON_CreateNumber(labels_t[s]));
        cJSON *targets = cJSON_AddArrayToObject(man, "targets");
        for (int j = 0; j < N; j++)
            cJSON_AddItemToArray(targets, cJSON_CreateNumber(tg[j]));
        /* the policy the targets were scored with (the store's: own-class, null-class or none)
         * and each target's own class (null when the targets are unlabelled) */
        const int cond_used = have_store && o->method != METHOD_PIXEL;
        cJSON_AddStringToObject(man, "conditioning",
                                cond_policy_name(cond_used ? st.cond : COND_NONE));
        cJSON *tl = cJSON_AddArrayToObject(man, "target_labels");
        for (int j = 0; j < N; j++) {
            const int l = targets_label(&tgt, tg[j]);
            cJSON_AddItemToArray(tl, l >= 0 ? cJSON_CreateNumber(l) : cJSON_CreateNull());
        }
        char *abs;
        if (tgt.real) {
            cJSON_AddItemToObject(man, "target_set", targets_set_json(&tgt));
        } else {
            cJSON *t = cJSON_AddObjectToObject(man, "trajectory");
            abs = realpath(o->traj_path, NULL);
            cJSON_AddStringToObject(t, "path", abs ? abs : o->traj_path);
            free(abs);
            cJSON_AddStringToObject(t, "model_fingerprint", fmt_hex(tgt.tr.model_fingerprint, h));
            cJSON_AddStringToObject(t, "fingerprint", fmt_hex(tgt.tr.fingerprint, h));
            cJSON_AddStringToObject(t, "cond", tgt.tr.labels ? "class" : "none");
            cJSON_AddNumberToObject(t, "guidance", tgt.tr.guidance);
        }
        if (have_store) {
            cJSON *sj = cJSON_AddObjectToObject(man, "store");
            abs = realpath(st.dir, NULL);
            cJSON_AddStringToObject(sj, "path", abs ? abs : st.dir);
            free(abs);
            cJSON_AddNumberToObject(sj, "models", st.n_models);
            cJSON_AddNumberToObject(sj, "models_used", M);
            cJSON *fps = cJSON_AddArrayToObject(sj, "model_fingerprints"); /* of the models used */
            for (int m = 0; m < M; m++)
                cJSON_AddItemToArray(fps, cJSON_CreateString(fmt_hex(st.model_fingerprints[m], h)));
            cJSON_AddNumberToObject(sj, "k", st.k);
            cJSON_AddNumberToObject(sj, "S", st.S);
            cJSON_AddStringToObject(sj, "output_function", outfn_name(st.outfn));
            cJSON_AddStringToObject(sj, "conditioning", cond_policy_name(st.cond));
        }
        cJSON *dj = cJSON_AddObjectToObject(man, "dataset");
        cJSON_AddStringToObject(dj, "spec", data->description);
        cJSON_AddStringToObject(dj, "fingerprint", fmt_hex(data->fingerprint, h));
        cJSON_AddNumberToObject(dj, "n", (double)n);
        rc = write_json(o->out_dir, "manifest.json", man, err);
        cJSON_Delete(man);
    }
    if (rc == JT_OK) print_table(tk, n_eff, tg, N, labels_t, data, tgt.real, &tgt.tr);
    for (int s = 0; s < n_eff; s++)
        topk_free(&tk[s]);
    for (int m = 0; m < M; m++)
        free(gamma[m]), free(AG[m]);
    free(gamma), free(AG), free(files), free(tk), free(X), free(out), free(timg), free(labels_t);
done:
    if (rc != JT_OK && !had_dir) rmdir(o->out_dir); /* only succeeds while it is empty */
    free(tg), free(kidx);
    targets_free(&tgt);
    if (have_store) store_close(&st);
    data_free(&own);
    return rc;
}

/* The output folder is locked for the run (io/lock.h): two scores never write one folder. */
int score_run(const ScoreOptions *o, const Dataset *data_in, JtError *err) {
    if (!o->out_dir) return score_run_locked(o, data_in, err);
    const ArtifactKind ok_out[] = {ARTIFACT_SCORES};
    if (artifact_check_out(o->out_dir, "--out", "a score folder", ok_out, 1, err) != JT_OK)
        return JT_ERR;
    DirLock lock;
    if (dir_lock(&lock, o->out_dir, "score", err) != JT_OK) return JT_ERR;
    int rc = score_run_locked(o, data_in, err);
    dir_unlock(&lock);
    return rc;
}
