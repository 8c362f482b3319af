/* store.c: see store.h. The manifest is a cJSON document rewritten atomically
 * (atomic_file_write); the arrays are .npy files accessed by rows with pread/pwrite (io/npy.h),
 * which is what lets several processes fill one store: each writes only its own rows. */
#define _XOPEN_SOURCE 700 /* realpath (X/Open, beside the build's _POSIX_C_SOURCE) */
#include "attrib/store.h"

#include "core/hash.h"
#include "io/jsonfile.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FEATURES_FILE "features.npy"
#define DONE_FILE "done.npy"
#define KERNEL_FILE "kernel.npy"

typedef struct {
    NpyFile *feat_r, *done_r; /* (n_models) opened read-only by store_open / store_create */
    NpyFile *feat_w, *done_w; /* (n_models) opened for writing on demand (fd -1 until then) */
} StorePriv;

char *store_model_path(const FeatureStore *st, int model, const char *name) {
    size_t n = strlen(st->dir) + strlen(name) + 32;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/model_%d/%s", st->dir, model, name);
    return p;
}

static void hex64(uint64_t v, char buf[17]) {
    snprintf(buf, 17, "%016" PRIx64, v);
}

static void dec64(uint64_t v, char buf[24]) {
    snprintf(buf, 24, "%" PRIu64, v);
}

static int parse_hex64(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

static int parse_dec64(const char *s, uint64_t *out) {
    if (!s || !*s) return 0;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

static const char *const COND_NAMES[] = {"none", "own-class", "null-class", "own-context"};

const char *cond_policy_name(CondPolicy c) {
    CHECK(c >= COND_NONE && c <= COND_OWN_CONTEXT, "bad conditioning %d", (int)c);
    return COND_NAMES[c];
}

int cond_policy_parse(const char *name, CondPolicy *c) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, COND_NAMES[i]) == 0) {
            *c = (CondPolicy)i;
            return 1;
        }
    return 0;
}

/* ---- manifest ------------------------------------------------------------------------------- */

/* A double that reads back bitwise (cJSON prints 15 digits when they round-trip approximately). */
static void add_exact(cJSON *o, const char *key, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    cJSON_AddRawToObject(o, key, buf);
}

static cJSON *manifest_json(const FeatureStore *st) {
    char buf[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", STORE_FORMAT);
    cJSON *models = cJSON_AddArrayToObject(o, "models");
    for (int m = 0; m < st->n_models; m++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "path", st->model_paths[m]);
        hex64(st->model_fingerprints[m], buf);
        cJSON_AddStringToObject(e, "fingerprint", buf);
        cJSON_AddNumberToObject(e, "params", (double)st->model_params[m]);
        if (!store_grad_params_all(st)) {
            cJSON_AddNumberToObject(e, "grad_params", (double)st->model_grad_params[m]);
            hex64(st->model_grad_fingerprints[m], buf);
            cJSON_AddStringToObject(e, "grad_params_fingerprint", buf);
        }
        cJSON_AddItemToArray(models, e);
    }
    cJSON *d = cJSON_AddObjectToObject(o, "dataset");
    cJSON_AddStringToObject(d, "spec", st->data_spec);
    hex64(st->data_fingerprint, buf);
    cJSON_AddStringToObject(d, "fingerprint", buf);
    cJSON_AddNumberToObject(d, "n", (double)st->n);
    cJSON_AddStringToObject(o, "output_function", outfn_name(st->outfn));
    cJSON_AddNumberToObject(o, "S", st->S);
    cJSON_AddNumberToObject(o, "k", st->k);
    cJSON *pj = cJSON_AddObjectToObject(o, "projector");
    cJSON_AddStringToObject(pj, "kind", proj_kind_name(st->proj_kind));
    dec64(st->proj_seed, buf);
    cJSON_AddStringToObject(pj, "seed", buf); /* strings: JSON numbers lose 64-bit integers */
    dec64(st->draw_seed, buf);
    cJSON_AddStringToObject(o, "draw_seed", buf);
    cJSON_AddStringToObject(o, "draws", st->shared_draws ? "shared" : "independent");
    if (st->sgemm_kernel[0]) cJSON_AddStringToObject(o, "sgemm_kernel", st->sgemm_kernel);
    cJSON_AddStringToObject(o, "conditioning", cond_policy_name(st->cond));
    if (st->cond == COND_OWN_CONTEXT) {
        cJSON *cj = cJSON_AddObjectToObject(o, "context");
        cJSON_AddStringToObject(cj, "spec", st->context_spec ? st->context_spec : "");
        hex64(st->context_fingerprint, buf);
        cJSON_AddStringToObject(cj, "fingerprint", buf);
    }
    cJSON_AddStringToObject(o, "gradient_params", st->grad_params ? st->grad_params : "all");
    cJSON *kj = cJSON_AddObjectToObject(o, "kernel");
    add_exact(kj, "lambda", st->kernel.lambda);
    cJSON_AddBoolToObject(kj, "auto_ridge", st->kernel.auto_ridge);
    cJSON_AddBoolToObject(kj, "rescale", st->kernel.rescale);
    cJSON *pm = cJSON_AddArrayToObject(kj, "per_model");
    cJSON *done = cJSON_AddArrayToObject(o, "done");
    for (int m = 0; m < st->n_models; m++) {
        if (st->model_finalized[m]) {
            cJSON *e = cJSON_CreateObject();
            add_exact(e, "lambda_used", st->kernel_info[m].lambda_used);
            add_exact(e, "rescale_divisor", st->kernel_info[m].rescale_divisor);
            cJSON_AddBoolToObject(e, "ridge_added", st->kernel_info[m].ridge_added);
            cJSON_AddItemToArray(pm, e);
        } else {
            cJSON_AddItemToArray(pm, cJSON_CreateNull());
        }
        cJSON *e = cJSON_CreateObject();
        cJSON_AddBoolToObject(e, "featurized", st->featurized[m]);
        cJSON_AddBoolToObject(e, "finalized", st->model_finalized[m]);
        cJSON_AddItemToArray(done, e);
    }
    return o;
}

int store_write_manifest(const FeatureStore *st, JtError *err) {
    cJSON *o = manifest_json(st);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len] = '\n', text[len + 1] = 0;
    char *path = path_join(st->dir, STORE_MANIFEST);
    int rc = atomic_file_write(path, text, len + 1, err);
    free(path);
    free(text);
    return rc;
}

/* Field readers: each fails naming the manifest and the field. */
static cJSON *get(cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static int get_str(const char *path, cJSON *o, const char *key, const char *where, const char **out,
                   JtError *err) {
    cJSON *v = get(o, key);
    if (!cJSON_IsString(v))
        return jt_fail(err, "%s: field '%s%s' missing or not a string", path, where, key);
    *out = v->valuestring;
    return JT_OK;
}

static int get_size(const char *path, cJSON *o, const char *key, const char *where, double lo,
                    double hi, size_t *out, JtError *err) {
    cJSON *v = get(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return jt_fail(err, "%s: field '%s%s' missing or not an integer in [%.0f, %.0f]", path,
                       where, key, lo, hi);
    *out = (size_t)v->valuedouble;
    return JT_OK;
}

static int get_bool(const char *path, cJSON *o, const char *key, const char *where, int *out,
                    JtError *err) {
    cJSON *v = get(o, key);
    if (!cJSON_IsBool(v))
        return jt_fail(err, "%s: field '%s%s' missing or not true/false", path, where, key);
    *out = cJSON_IsTrue(v);
    return JT_OK;
}

static int get_num(const char *path, cJSON *o, const char *key, const char *where, double *out,
                   JtError *err) {
    cJSON *v = get(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return jt_fail(err, "%s: field '%s%s' missing or not a number", path, where, key);
    *out = v->valuedouble;
    return JT_OK;
}

static int get_seed(const char *path, cJSON *o, const char *key, const char *where, uint64_t *out,
                    JtError *err) {
    const char *s = NULL;
    if (get_str(path, o, key, where, &s, err) != JT_OK) return JT_ERR;
    if (!parse_dec64(s, out))
        return jt_fail(err, "%s: field '%s%s' is '%s', not a 64-bit unsigned integer", path, where,
                       key, s);
    return JT_OK;
}

static int get_fp(const char *path, cJSON *o, const char *key, const char *where, uint64_t *out,
                  JtError *err) {
    const char *s = NULL;
    if (get_str(path, o, key, where, &s, err) != JT_OK) return JT_ERR;
    if (!parse_hex64(s, out))
        return jt_fail(err, "%s: field '%s%s' is '%s', not 16 hex digits", path, where, key, s);
    return JT_OK;
}

static void alloc_models(FeatureStore *st, int M) {
    st->n_models = M;
    st->model_paths = xcalloc((size_t)M, sizeof *st->model_paths);
    st->model_fingerprints = xcalloc((size_t)M, sizeof *st->model_fingerprints);
    st->model_params = xcalloc((size_t)M, sizeof *st->model_params);
    st->model_grad_params = xcalloc((size_t)M, sizeof *st->model_grad_params);
    st->model_grad_fingerprints = xcalloc((size_t)M, sizeof *st->model_grad_fingerprints);
    st->kernel_info = xcalloc((size_t)M, sizeof *st->kernel_info);
    st->featurized = xcalloc((size_t)M, sizeof *st->featurized);
    st->model_finalized = xcalloc((size_t)M, sizeof *st->model_finalized);
    StorePriv *p = xcalloc(1, sizeof *p);
    p->feat_r = xcalloc((size_t)M, sizeof *p->feat_r);
    p->done_r = xcalloc((size_t)M, sizeof *p->done_r);
    p->feat_w = xcalloc((size_t)M, sizeof *p->feat_w);
    p->done_w = xcalloc((size_t)M, sizeof *p->done_w);
    for (int m = 0; m < M; m++)
        p->feat_r[m].fd = p->done_r[m].fd = p->feat_w[m].fd = p->done_w[m].fd = -1;
    st->priv = p;
}

static void update_finalized(FeatureStore *st) {
    st->finalized = st->n_models > 0;
    for (int m = 0; m < st->n_models; m++)
        st->finalized &= st->model_finalized[m] != 0;
}

static int parse_manifest(FeatureStore *st, const char *path, cJSON *o, JtError *err) {
    const char *s = NULL;
    if (!cJSON_IsObject(o)) return jt_fail(err, "%s: not a JSON object", path);
    if (get_str(path, o, "format", "", &s, err) != JT_OK) return JT_ERR;
    if (strcmp(s, STORE_FORMAT) != 0)
        return jt_fail(err, "%s: field 'format' is '%s', expected '%s'", path, s, STORE_FORMAT);
    cJSON *models = get(o, "models");
    int M = cJSON_IsArray(models) ? cJSON_GetArraySize(models) : 0;
    if (M < 1) return jt_fail(err, "%s: field 'models' missing or not a non-empty array", path);
    alloc_models(st, M);
    size_t v = 0;
    for (int m = 0; m < M; m++) {
        cJSON *e = cJSON_GetArrayItem(models, m);
        char where[48];
        snprintf(where, sizeof where, "models[%d].", m);
        if (!cJSON_IsObject(e))
            return jt_fail(err, "%s: field 'models[%d]' is not an object", path, m);
        if (get_str(path, e, "path", where, &s, err) != JT_OK) return JT_ERR;
        st->model_paths[m] = xstrdup(s);
        if (get_fp(path, e, "fingerprint", where, &st->model_fingerprints[m], err) != JT_OK ||
            get_size(path, e, "params", where, 1, 9007199254740992.0, &st->model_params[m], err) !=
                JT_OK)
            return JT_ERR;
    }
    /* stores made before the selection was kept differentiate every parameter */
    if (get(o, "gradient_params")) {
        if (get_str(path, o, "gradient_params", "", &s, err) != JT_OK) return JT_ERR;
        if (!*s) return jt_fail(err, "%s: field 'gradient_params' is empty", path);
        st->grad_params = xstrdup(s);
    } else {
        st->grad_params = xstrdup("all");
    }
    for (int m = 0; m < M; m++) {
        cJSON *e = cJSON_GetArrayItem(models, m);
        char where[48];
        snprintf(where, sizeof where, "models[%d].", m);
        st->model_grad_params[m] = st->model_params[m];
        if (store_grad_params_all(st)) continue;
        if (get_size(path, e, "grad_params", where, 1, (double)st->model_params[m],
                     &st->model_grad_params[m], err) != JT_OK ||
            get_fp(path, e, "grad_params_fingerprint", where, &st->model_grad_fingerprints[m],
                   err) != JT_OK)
            return JT_ERR;
    }
    cJSON *d = get(o, "dataset");
    if (!cJSON_IsObject(d))
        return jt_fail(err, "%s: field 'dataset' missing or not an object", path);
    if (get_str(path, d, "spec", "dataset.", &s, err) != JT_OK) return JT_ERR;
    st->data_spec = xstrdup(s);
    if (get_fp(path, d, "fingerprint", "dataset.", &st->data_fingerprint, err) != JT_OK ||
        get_size(path, d, "n", "dataset.", 1, 9007199254740992.0, &st->n, err) != JT_OK)
        return JT_ERR;
    if (get_str(path, o, "output_function", "", &s, err) != JT_OK) return JT_ERR;
    if (!outfn_parse(s, &st->outfn))
        return jt_fail(err, "%s: field 'output_function' is '%s', not loss or sqnorm", path, s);
    if (get_size(path, o, "S", "", 1, INT_MAX, &v, err) != JT_OK) return JT_ERR;
    st->S = (int)v;
    if (get_size(path, o, "k", "", 1, INT_MAX, &v, err) != JT_OK) return JT_ERR;
    st->k = (int)v;
    cJSON *pj = get(o, "projector");
    if (!cJSON_IsObject(pj))
        return jt_fail(err, "%s: field 'projector' missing or not an object", path);
    /* Stores made before there was more than one kind may lack it: they are rademacher. */
    st->proj_kind = PROJ_RADEMACHER;
    if (get(pj, "kind")) {
        if (get_str(path, pj, "kind", "projector.", &s, err) != JT_OK) return JT_ERR;
        if (!proj_kind_parse(s, &st->proj_kind))
            return jt_fail(err,
                           "%s: field 'projector.kind' is '%s', not rademacher, sparse or hadamard",
                           path, s);
    }
    if (get_seed(path, pj, "seed", "projector.", &st->proj_seed, err) != JT_OK ||
        get_seed(path, o, "draw_seed", "", &st->draw_seed, err) != JT_OK)
        return JT_ERR;
    if (get_str(path, o, "draws", "", &s, err) != JT_OK) return JT_ERR;
    if (strcmp(s, "shared") != 0 && strcmp(s, "independent") != 0)
        return jt_fail(err, "%s: field 'draws' is '%s', not shared or independent", path, s);
    st->shared_draws = strcmp(s, "shared") == 0;
    st->sgemm_kernel[0] = '\0'; /* stores made before it was kept lack it: not checked */
    if (get(o, "sgemm_kernel")) {
        if (get_str(path, o, "sgemm_kernel", "", &s, err) != JT_OK) return JT_ERR;
        if (strcmp(s, "avx512") != 0 && strcmp(s, "openblas") != 0)
            return jt_fail(err, "%s: field 'sgemm_kernel' is '%s', not avx512 or openblas", path,
                           s);
        snprintf(st->sgemm_kernel, sizeof st->sgemm_kernel, "%s", s);
    }
    st->cond = COND_NONE; /* stores made before conditioning was kept are unconditional */
    if (get(o, "conditioning")) {
        if (get_str(path, o, "conditioning", "", &s, err) != JT_OK) return JT_ERR;
        if (!cond_policy_parse(s, &st->cond))
            return jt_fail(err,
                           "%s: field 'conditioning' is '%s', not none, own-class, null-class or "
                           "own-context",
                           path, s);
    }
    if (st->cond == COND_OWN_CONTEXT) {
        cJSON *cj = get(o, "context");
        if (!cJSON_IsObject(cj))
            return jt_fail(err, "%s: conditioning own-context needs the object 'context'", path);
        if (get_str(path, cj, "spec", "context.", &s, err) != JT_OK) return JT_ERR;
        st->context_spec = xstrdup(s);
        if (get_str(path, cj, "fingerprint", "context.", &s, err) != JT_OK) return JT_ERR;
        if (!parse_hex64(s, &st->context_fingerprint))
            return jt_fail(err, "%s: field 'context.fingerprint' is '%s', not 16 hex digits", path,
                           s);
    }
    cJSON *kj = get(o, "kernel");
    if (!cJSON_IsObject(kj))
        return jt_fail(err, "%s: field 'kernel' missing or not an object", path);
    if (get_num(path, kj, "lambda", "kernel.", &st->kernel.lambda, err) != JT_OK ||
        get_bool(path, kj, "auto_ridge", "kernel.", &st->kernel.auto_ridge, err) != JT_OK ||
        get_bool(path, kj, "rescale", "kernel.", &st->kernel.rescale, err) != JT_OK)
        return JT_ERR;
    if (st->kernel.lambda < 0) return jt_fail(err, "%s: field 'kernel.lambda' is negative", path);
    cJSON *pm = get(kj, "per_model"), *done = get(o, "done");
    if (!cJSON_IsArray(pm) || cJSON_GetArraySize(pm) != M)
        return jt_fail(err, "%s: field 'kernel.per_model' missing or not an array of %d entries",
                       path, M);
    if (!cJSON_IsArray(done) || cJSON_GetArraySize(done) != M)
        return jt_fail(err, "%s: field 'done' missing or not an array of %d entries", path, M);
    for (int m = 0; m < M; m++) {
        char where[48];
        cJSON *e = cJSON_GetArrayItem(done, m);
        snprintf(where, sizeof where, "done[%d].", m);
        if (!cJSON_IsObject(e))
            return jt_fail(err, "%s: field 'done[%d]' is not an object", path, m);
        if (get_bool(path, e, "featurized", where, &st->featurized[m], err) != JT_OK ||
            get_bool(path, e, "finalized", where, &st->model_finalized[m], err) != JT_OK)
            return JT_ERR;
        e = cJSON_GetArrayItem(pm, m);
        snprintf(where, sizeof where, "kernel.per_model[%d].", m);
        if (st->model_finalized[m]) {
            if (!cJSON_IsObject(e))
                return jt_fail(err,
                               "%s: field 'kernel.per_model[%d]' must be an object for a "
                               "finalized model",
                               path, m);
            if (get_num(path, e, "lambda_used", where, &st->kernel_info[m].lambda_used, err) !=
                    JT_OK ||
                get_num(path, e, "rescale_divisor", where, &st->kernel_info[m].rescale_divisor,
                        err) != JT_OK ||
                get_bool(path, e, "ridge_added", where, &st->kernel_info[m].ridge_added, err) !=
                    JT_OK)
                return JT_ERR;
        }
    }
    update_finalized(st);
    return JT_OK;
}

/* Opens a model's arrays read-only and checks their shapes against the manifest. */
static int check_array(const char *path, NpyFile *f, NpyDtype dtype, int ndim, size_t d0, size_t d1,
                       JtError *err) {
    if (npy_open(f, path, 0, err) != JT_OK) return JT_ERR;
    const NpyHeader *h = &f->hdr;
    int ok = h->dtype == dtype && h->ndim == ndim && h->shape[0] == d0 &&
             (ndim < 2 || h->shape[1] == d1);
    if (!ok) {
        char got[96];
        npy_shape_str(h, got, sizeof got);
        if (ndim == 2)
            jt_fail(err, "%s: holds %s %s, the manifest says %s (%zu, %zu)", path,
                    npy_dtype_descr(h->dtype), got, npy_dtype_descr(dtype), d0, d1);
        else
            jt_fail(err, "%s: holds %s %s, the manifest says %s (%zu,)", path,
                    npy_dtype_descr(h->dtype), got, npy_dtype_descr(dtype), d0);
        npy_close(f, NULL);
        return JT_ERR;
    }
    return JT_OK;
}

static int open_arrays(FeatureStore *st, JtError *err) {
    StorePriv *p = st->priv;
    for (int m = 0; m < st->n_models; m++) {
        char *fp = store_model_path(st, m, FEATURES_FILE), *dp = store_model_path(st, m, DONE_FILE);
        int rc = check_array(fp, &p->feat_r[m], NPY_F32, 2, st->n, (size_t)st->k, err);
        if (rc == JT_OK) rc = check_array(dp, &p->done_r[m], NPY_U8, 1, st->n, 0, err);
        free(fp), free(dp);
        if (rc != JT_OK) return JT_ERR;
        if (st->model_finalized[m]) {
            char *kp = store_model_path(st, m, KERNEL_FILE);
            NpyHeader h;
            rc = npy_read_header(kp, &h, err);
            if (rc == JT_OK && (h.dtype != NPY_F32 || h.ndim != 2 || h.shape[0] != (size_t)st->k ||
                                h.shape[1] != (size_t)st->k)) {
                char got[96];
                rc = jt_fail(err, "%s: holds %s %s, the manifest says <f4 (%d, %d)", kp,
                             npy_dtype_descr(h.dtype), npy_shape_str(&h, got, sizeof got), st->k,
                             st->k);
            }
            free(kp);
            if (rc != JT_OK) return JT_ERR;
        }
    }
    return JT_OK;
}

int store_open(FeatureStore *st, const char *dir, JtError *err) {
    memset(st, 0, sizeof *st);
    char *path = path_join(dir, STORE_MANIFEST);
    size_t len;
    char *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        jt_fail(err, "%s: cannot open (%s): not a feature store (run jtrak featurize)", path,
                strerror(errno));
        free(path);
        return JT_ERR;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    len = sz > 0 ? (size_t)sz : 0;
    if (len > JSON_FILE_MAX_BYTES) {
        fclose(f);
        char have[32];
        jt_fail(err, "%s: %s is too large for a store manifest (at most %d MiB)", path,
                jt_format_bytes(len, have, sizeof have), JSON_FILE_MAX_BYTES >> 20);
        free(path);
        return JT_ERR;
    }
    text = xmalloc(len + 1);
    size_t got = fread(text, 1, len, f);
    fclose(f);
    text[got] = 0;
    st->dir = xstrdup(dir);
    cJSON *o = cJSON_ParseWithOpts(text, NULL, 1); /* nothing may follow the manifest */
    free(text);
    int rc;
    if (!o) {
        rc = jt_fail(err, "%s: not valid JSON", path);
    } else {
        rc = parse_manifest(st, path, o, err);
        cJSON_Delete(o);
    }
    free(path);
    if (rc == JT_OK) rc = open_arrays(st, err);
    if (rc != JT_OK) store_close(st);
    return rc;
}

void store_close(FeatureStore *st) {
    StorePriv *p = st->priv;
    if (p) {
        for (int m = 0; m < st->n_models; m++) {
            npy_close(&p->feat_r[m], NULL);
            npy_close(&p->done_r[m], NULL);
            npy_close(&p->feat_w[m], NULL);
            npy_close(&p->done_w[m], NULL);
        }
        free(p->feat_r), free(p->done_r), free(p->feat_w), free(p->done_w);
        free(p);
    }
    if (st->model_paths)
        for (int m = 0; m < st->n_models; m++)
            free(st->model_paths[m]);
    free(st->model_paths), free(st->model_fingerprints), free(st->model_params);
    free(st->grad_params), free(st->model_grad_params), free(st->model_grad_fingerprints);
    free(st->kernel_info), free(st->featurized), free(st->model_finalized);
    free(st->dir), free(st->data_spec), free(st->context_spec);
    memset(st, 0, sizeof *st);
}

/* A folder store_create may fill: missing, empty, or holding only what an interrupted creation
 * leaves (model_<m>/ folders, temporary files, the log). */
static int folder_is_ours(const char *dir, JtError *err) {
    DIR *d = opendir(dir);
    if (!d) return JT_OK; /* missing: model_mkdirs creates it (or reports why not) */
    struct dirent *e;
    int rc = JT_OK;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0 || strncmp(nm, "model_", 6) == 0 ||
            strcmp(nm, "log.jsonl") == 0 || strncmp(nm, STORE_MANIFEST ".tmp", 17) == 0 ||
            strcmp(nm, DIR_LOCK_FILE) == 0)
            continue;
        rc = jt_fail(err,
                     "%s: the folder holds '%s' and no %s: not a feature store; give a new "
                     "or empty --out",
                     dir, nm, STORE_MANIFEST);
        break;
    }
    closedir(d);
    return rc;
}

int store_create(FeatureStore *st, const char *dir, const StoreSpec *sp, JtError *err) {
    memset(st, 0, sizeof *st);
    CHECK(sp->n_models >= 1 && sp->n >= 1 && sp->k >= 1 && sp->S >= 1, "bad store spec");
    char *mpath = path_join(dir, STORE_MANIFEST);
    struct stat sb;
    int exists = stat(mpath, &sb) == 0;
    free(mpath);
    if (exists)
        return jt_fail(err, "%s/%s: a store already exists here (open it to resume)", dir,
                       STORE_MANIFEST);
    if (folder_is_ours(dir, err) != JT_OK) return JT_ERR;
    if (model_mkdirs(dir, err) != JT_OK) return JT_ERR;
    st->dir = xstrdup(dir);
    alloc_models(st, sp->n_models);
    for (int m = 0; m < sp->n_models; m++) {
        char *abs = realpath(sp->model_paths[m], NULL);
        st->model_paths[m] = abs ? abs : xstrdup(sp->model_paths[m]);
        st->model_fingerprints[m] = sp->model_fingerprints[m];
        st->model_params[m] = sp->model_params[m];
    }
    const int all = !sp->grad_params || strcmp(sp->grad_params, "all") == 0;
    CHECK(all || (sp->model_grad_params && sp->model_grad_fingerprints),
          "store spec: a parameter selection without its counts");
    st->grad_params = xstrdup(all ? "all" : sp->grad_params);
    for (int m = 0; m < sp->n_models; m++) {
        st->model_grad_params[m] = all ? sp->model_params[m] : sp->model_grad_params[m];
        st->model_grad_fingerprints[m] = all ? 0 : sp->model_grad_fingerprints[m];
    }
    st->n = sp->n;
    st->k = sp->k;
    st->S = sp->S;
    st->outfn = sp->outfn;
    st->proj_kind = sp->proj_kind;
    st->proj_seed = sp->proj_seed;
    st->draw_seed = sp->draw_seed;
    st->shared_draws = sp->shared_draws;
    st->cond = sp->cond;
    st->context_spec = sp->context_spec ? xstrdup(sp->context_spec) : NULL;
    st->context_fingerprint = sp->context_fingerprint;
    snprintf(st->sgemm_kernel, sizeof st->sgemm_kernel, "%s",
             sp->sgemm_kernel ? sp->sgemm_kernel : "");
    st->data_fingerprint = sp->data_fingerprint;
    st->data_spec = xstrdup(sp->data_spec);
    st->kernel = sp->kernel;
    StorePriv *p = st->priv;
    int rc = JT_OK;
    for (int m = 0; m < st->n_models && rc == JT_OK; m++) {
        char sub[32];
        snprintf(sub, sizeof sub, "model_%d", m);
        char *md = path_join(dir, sub);
        rc = model_mkdirs(md, err);
        free(md);
        char *fp = store_model_path(st, m, FEATURES_FILE), *dp = store_model_path(st, m, DONE_FILE);
        size_t fshape[2] = {st->n, (size_t)st->k}, dshape[1] = {st->n};
        if (rc == JT_OK) rc = npy_create(&p->feat_w[m], fp, NPY_F32, 2, fshape, err);
        if (rc == JT_OK) rc = npy_create(&p->done_w[m], dp, NPY_U8, 1, dshape, err);
        if (rc == JT_OK) rc = npy_open(&p->feat_r[m], fp, 0, err);
        if (rc == JT_OK) rc = npy_open(&p->done_r[m], dp, 0, err);
        free(fp), free(dp);
    }
    /* Stale kernels of an interrupted creation must not be taken for this store's. */
    for (int m = 0; m < st->n_models && rc == JT_OK; m++) {
        char *kp = store_model_path(st, m, KERNEL_FILE);
        unlink(kp);
        free(kp);
    }
    if (rc == JT_OK) rc = store_write_manifest(st, err);
    if (rc != JT_OK) store_close(st);
    return rc;
}

int store_grad_params_all(const FeatureStore *st) {
    return !st->grad_params || strcmp(st->grad_params, "all") == 0;
}

static int check_grad_selection(const FeatureStore *st, const size_t *count, const uint64_t *fp,
                                const char *mp, JtError *err) {
    for (int m = 0; m < st->n_models; m++)
        if (count[m] != st->model_grad_params[m] || fp[m] != st->model_grad_fingerprints[m])
            return jt_fail(err,
                           "%s: models[%d].grad_params is %zu but --params '%s' selects %zu "
                           "parameters of %s (or other names: grad_params_fingerprint differs); "
                           "use a new --out",
                           mp, m, st->model_grad_params[m], st->grad_params, count[m],
                           st->model_paths[m]);
    return JT_OK;
}

int store_check_grad_params(const FeatureStore *st, int model, size_t count, uint64_t fingerprint,
                            JtError *err) {
    CHECK(model >= 0 && model < st->n_models, "model %d of %d", model, st->n_models);
    if (store_grad_params_all(st)) {
        if (count == st->model_params[model]) return JT_OK;
        return jt_fail(err, "%s/%s: models[%d].params is %zu but the model has %zu", st->dir,
                       STORE_MANIFEST, model, st->model_params[model], count);
    }
    if (count == st->model_grad_params[model] && fingerprint == st->model_grad_fingerprints[model])
        return JT_OK;
    return jt_fail(err,
                   "%s/%s: models[%d].grad_params is %zu but gradient_params '%s' selects %zu "
                   "parameters of %s (or other names: grad_params_fingerprint differs)",
                   st->dir, STORE_MANIFEST, model, st->model_grad_params[model], st->grad_params,
                   count, st->model_paths[model]);
}

int store_check(const FeatureStore *st, const StoreSpec *sp, JtError *err) {
    char a[32], b[32];
    char *mp = path_join(st->dir, STORE_MANIFEST);
    int rc = JT_OK;
    if (st->n_models != sp->n_models) {
        rc = jt_fail(err,
                     "%s: models: the store holds %d model(s) but %d were given (--models); "
                     "use a new --out",
                     mp, st->n_models, sp->n_models);
        goto done;
    }
    for (int m = 0; m < st->n_models; m++) {
        if (st->model_fingerprints[m] != sp->model_fingerprints[m]) {
            hex64(st->model_fingerprints[m], a);
            hex64(sp->model_fingerprints[m], b);
            rc = jt_fail(err,
                         "%s: models[%d].fingerprint is %s (%s) but the model given (%s) has "
                         "%s; use a new --out",
                         mp, m, a, st->model_paths[m], sp->model_paths[m], b);
            goto done;
        }
    }
    if (st->data_fingerprint != sp->data_fingerprint || st->n != sp->n) {
        hex64(st->data_fingerprint, a);
        hex64(sp->data_fingerprint, b);
        rc = jt_fail(err,
                     "%s: dataset.fingerprint is %s (%zu rows: %s) but the data given has %s "
                     "(%zu rows: %s); use a new --out",
                     mp, a, st->n, st->data_spec, b, sp->n, sp->data_spec);
    } else if (st->outfn != sp->outfn) {
        rc = jt_fail(err, "%s: output_function is %s but --output %s was given; use a new --out",
                     mp, outfn_name(st->outfn), outfn_name(sp->outfn));
    } else if (st->S != sp->S) {
        rc = jt_fail(err, "%s: S is %d but --S %d was given; use a new --out", mp, st->S, sp->S);
    } else if (st->k != sp->k) {
        rc = jt_fail(err, "%s: k is %d but --k %d was given; use a new --out", mp, st->k, sp->k);
    } else if (st->proj_kind != sp->proj_kind) {
        rc = jt_fail(err, "%s: projector.kind is %s but --projection %s was given; use a new --out",
                     mp, proj_kind_name(st->proj_kind), proj_kind_name(sp->proj_kind));
    } else if (st->proj_seed != sp->proj_seed) {
        dec64(st->proj_seed, a);
        dec64(sp->proj_seed, b);
        rc = jt_fail(err, "%s: projector.seed is %s but --proj-seed %s was given; use a new --out",
                     mp, a, b);
    } else if (st->draw_seed != sp->draw_seed) {
        dec64(st->draw_seed, a);
        dec64(sp->draw_seed, b);
        rc = jt_fail(err, "%s: draw_seed is %s but --seed %s was given; use a new --out", mp, a, b);
    } else if (st->shared_draws != sp->shared_draws) {
        rc = jt_fail(err, "%s: draws are %s but --draws %s was given; use a new --out", mp,
                     st->shared_draws ? "shared" : "independent",
                     sp->shared_draws ? "shared" : "independent");
    } else if (st->cond != sp->cond) {
        rc = jt_fail(err,
                     "%s: conditioning is %s but this run's is %s (--cond own|null for a "
                     "class-conditional model); give the store's --cond or use a new --out",
                     mp, cond_policy_name(st->cond), cond_policy_name(sp->cond));
    } else if (st->cond == COND_OWN_CONTEXT && st->context_fingerprint != sp->context_fingerprint) {
        rc = jt_fail(err,
                     "%s: the rows were featurized with other text contexts (%s) than this "
                     "run's (%s); use a new --out",
                     mp, st->context_spec, sp->context_spec ? sp->context_spec : "none");
    } else if (strcmp(st->grad_params, sp->grad_params ? sp->grad_params : "all") != 0) {
        rc = jt_fail(err,
                     "%s: gradient_params is '%s' but --params '%s' was given (the rows are "
                     "projections of other gradients); give the store's --params or use a new "
                     "--out",
                     mp, st->grad_params, sp->grad_params ? sp->grad_params : "all");
    } else if (!store_grad_params_all(st) &&
               (rc = check_grad_selection(st, sp->model_grad_params, sp->model_grad_fingerprints,
                                          mp, err)) != JT_OK) {
        /* message filled */
    } else if (st->sgemm_kernel[0] && sp->sgemm_kernel &&
               strcmp(st->sgemm_kernel, sp->sgemm_kernel) != 0) {
        /* the rows would mix two kernels' roundings (~1e-6 apart): a resumed store would not
         * equal an uninterrupted one */
        rc = jt_fail(err,
                     "%s: sgemm_kernel is %s but this process computes with %s; run it with "
                     "JTRAK_SGEMM=%s (on a build for this CPU) or use a new --out",
                     mp, st->sgemm_kernel, sp->sgemm_kernel, st->sgemm_kernel);
    }
done:
    free(mp);
    return rc;
}

uint64_t store_fingerprint(const FeatureStore *st) {
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, STORE_FORMAT, strlen(STORE_FORMAT));
    uint64_t v[9] = {(uint64_t)st->n_models,  st->data_fingerprint, (uint64_t)st->n,
                     (uint64_t)st->outfn,     (uint64_t)st->S,      (uint64_t)st->k,
                     (uint64_t)st->proj_kind, st->proj_seed,        (uint64_t)st->shared_draws};
    for (int i = 0; i < 9; i++) { /* little-endian bytes whatever the host */
        unsigned char b[8];
        for (int j = 0; j < 8; j++)
            b[j] = (unsigned char)(v[i] >> (8 * j));
        h = hash_fnv1a(h, b, 8);
    }
    for (int m = 0; m <= st->n_models; m++) {
        uint64_t x = m < st->n_models ? st->model_fingerprints[m] : st->draw_seed;
        unsigned char b[8];
        for (int j = 0; j < 8; j++)
            b[j] = (unsigned char)(x >> (8 * j));
        h = hash_fnv1a(h, b, 8);
    }
    if (st->cond != COND_NONE) {
        unsigned char c = (unsigned char)st->cond;
        h = hash_fnv1a(h, &c, 1);
    }
    if (st->cond == COND_OWN_CONTEXT) {
        unsigned char b[8];
        for (int j = 0; j < 8; j++)
            b[j] = (unsigned char)(st->context_fingerprint >> (8 * j));
        h = hash_fnv1a(h, b, 8);
    }
    if (!store_grad_params_all(st)) {
        h = hash_fnv1a(h, st->grad_params, strlen(st->grad_params));
        for (int m = 0; m < st->n_models; m++) {
            unsigned char b[8];
            for (int j = 0; j < 8; j++)
                b[j] = (unsigned char)(st->model_grad_fingerprints[m] >> (8 * j));
            h = hash_fnv1a(h, b, 8);
        }
    }
    return h;
}

/* ---- reading -------------------------------------------------------------------------------- */

static StorePriv *priv_of(const FeatureStore *st, int model) {
    CHECK(st->priv != NULL, "feature store not open");
    CHECK(model >= 0 && model < st->n_models, "model %d out of range (%d models)", model,
          st->n_models);
    return st->priv;
}

int store_read_features(const FeatureStore *st, int model, size_t row0, size_t rows, float *out,
                        JtError *err) {
    StorePriv *p = priv_of(st, model);
    if (npy_read_rows(&p->feat_r[model], row0, rows, out, err) != JT_OK) return JT_ERR;
    const size_t n = rows * (size_t)st->k, bad = jt_first_nonfinite(out, n);
    if (bad == n) return JT_OK;
    char *fp = store_model_path(st, model, FEATURES_FILE), what[96];
    snprintf(what, sizeof what, "the features of training row %zu", row0 + bad / (size_t)st->k);
    jt_check_finite(out + bad / (size_t)st->k * (size_t)st->k, (size_t)st->k, fp, what, err);
    free(fp);
    return JT_ERR;
}

int store_read_kernel(const FeatureStore *st, int model, float *A, JtError *err) {
    priv_of(st, model);
    char *kp = store_model_path(st, model, KERNEL_FILE);
    int rc = JT_OK;
    if (!st->model_finalized[model]) {
        rc = jt_fail(err,
                     "%s: model %d of the store is not finalized (no kernel yet); run the "
                     "same jtrak featurize command to complete it",
                     kp, model);
    } else {
        NpyHeader h;
        void *data = NULL;
        rc = npy_read_as(kp, NPY_F32, &h, &data, err);
        if (rc == JT_OK &&
            (h.ndim != 2 || h.shape[0] != (size_t)st->k || h.shape[1] != (size_t)st->k)) {
            char got[96];
            rc = jt_fail(err, "%s: shape %s, expected (%d, %d)", kp,
                         npy_shape_str(&h, got, sizeof got), st->k, st->k);
        }
        if (rc == JT_OK)
            rc = jt_check_finite(data, (size_t)st->k * (size_t)st->k, kp, "the kernel", err);
        if (rc == JT_OK) memcpy(A, data, (size_t)st->k * (size_t)st->k * sizeof(float));
        free(data);
    }
    free(kp);
    return rc;
}

int store_rows_done(const FeatureStore *st, int model, uint8_t *mask, size_t *count, JtError *err) {
    StorePriv *p = priv_of(st, model);
    if (npy_read_rows(&p->done_r[model], 0, st->n, mask, err) != JT_OK) return JT_ERR;
    if (count) {
        size_t c = 0;
        for (size_t i = 0; i < st->n; i++)
            c += mask[i] != 0;
        *count = c;
    }
    return JT_OK;
}

/* ---- writing -------------------------------------------------------------------------------- */

static int writable(FeatureStore *st, int model, JtError *err) {
    StorePriv *p = priv_of(st, model);
    if (p->feat_w[model].fd < 0) {
        char *fp = store_model_path(st, model, FEATURES_FILE);
        int rc = npy_open(&p->feat_w[model], fp, 1, err);
        free(fp);
        if (rc != JT_OK) return JT_ERR;
    }
    if (p->done_w[model].fd < 0) {
        char *dp = store_model_path(st, model, DONE_FILE);
        int rc = npy_open(&p->done_w[model], dp, 1, err);
        free(dp);
        if (rc != JT_OK) return JT_ERR;
    }
    return JT_OK;
}

int store_write_rows(FeatureStore *st, int model, size_t row0, size_t rows, const float *X,
                     JtError *err) {
    if (writable(st, model, err) != JT_OK) return JT_ERR;
    StorePriv *p = st->priv;
    return npy_write_rows(&p->feat_w[model], row0, rows, X, err);
}

int store_mark_done(FeatureStore *st, int model, size_t row0, size_t rows, JtError *err) {
    if (writable(st, model, err) != JT_OK) return JT_ERR;
    StorePriv *p = st->priv;
    if (npy_sync(&p->feat_w[model], err) != JT_OK) return JT_ERR;
    uint8_t *ones = xmalloc(rows ? rows : 1);
    memset(ones, 1, rows);
    int rc = npy_write_rows(&p->done_w[model], row0, rows, ones, err);
    free(ones);
    return rc;
}

int store_mark_undone(FeatureStore *st, int model, size_t row, JtError *err) {
    if (writable(st, model, err) != JT_OK) return JT_ERR;
    StorePriv *p = st->priv;
    const uint8_t zero = 0;
    if (npy_write_rows(&p->done_w[model], row, 1, &zero, err) != JT_OK) return JT_ERR;
    return npy_sync(&p->done_w[model], err);
}

int store_sync(FeatureStore *st, int model, JtError *err) {
    if (writable(st, model, err) != JT_OK) return JT_ERR;
    StorePriv *p = st->priv;
    return npy_sync(&p->done_w[model], err);
}

int store_write_kernel(FeatureStore *st, int model, const float *A, const KernelInfo *info,
                       JtError *err) {
    priv_of(st, model);
    char *kp = store_model_path(st, model, KERNEL_FILE);
    size_t shape[2] = {(size_t)st->k, (size_t)st->k};
    int rc = npy_write(kp, NPY_F32, 2, shape, A, err);
    free(kp);
    if (rc != JT_OK) return JT_ERR;
    st->kernel_info[model] = *info;
    st->model_finalized[model] = 1;
    update_finalized(st);
    return store_write_manifest(st, err);
}

int store_mark_featurized(FeatureStore *st, int model, JtError *err) {
    priv_of(st, model);
    st->featurized[model] = 1;
    return store_write_manifest(st, err);
}

int store_set_kernel_options(FeatureStore *st, const KernelOptions *opt, JtError *err) {
    st->kernel = *opt;
    for (int m = 0; m < st->n_models; m++) {
        st->model_finalized[m] = 0;
        memset(&st->kernel_info[m], 0, sizeof st->kernel_info[m]);
    }
    update_finalized(st);
    return store_write_manifest(st, err);
}
