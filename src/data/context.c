/* context.c: see context.h. */
#include "data/context.h"

#include "core/hash.h"
#include "core/rng.h"
#include "io/jsonfile.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* "npy:FILE" -> FILE; anything else is a usage error naming the option. */
static int npy_path(const char *text, const char *option, const char **path, JtError *err) {
    *path = NULL;
    if (!text || strncmp(text, "npy:", 4) != 0 || !text[4])
        return jt_fail(err, "%s '%s': expected npy:FILE", option, text ? text : "");
    *path = text + 4;
    return JT_OK;
}

static int check_finite(const char *path, const float *v, size_t n, JtError *err) {
    size_t bad = jt_first_nonfinite(v, n);
    if (bad < n)
        return jt_fail(err, "%s: value %zu is %s: contexts must be finite", path, bad,
                       isnan(v[bad]) ? "NaN" : "infinite");
    return JT_OK;
}

static int check_dims(const char *path, size_t L, size_t D, JtError *err) {
    if (L < 1 || L > CONTEXT_MAX_LEN)
        return jt_fail(err, "%s: %zu context tokens: must be 1..%d", path, L, CONTEXT_MAX_LEN);
    if (D < 1 || D > CONTEXT_MAX_DIM)
        return jt_fail(err, "%s: context width %zu: must be 1..%d", path, D, CONTEXT_MAX_DIM);
    return JT_OK;
}

/* The table file: sets table, m, L, D and, for the (N, K, L, D) form, k (else 0). */
/* The table is mapped read-only rather than read: COCO's 5 captions per image at 77 x 1024 are
 * 186 GB, which the page cache serves on demand (the values are checked once, below). */
static int read_table(ContextSet *cs, const char *path, JtError *err) {
    NpyHeader h;
    if (npy_read_header(path, &h, err) != JT_OK) return JT_ERR;
    if (h.dtype != NPY_F32)
        return jt_fail(err, "%s: dtype %s: contexts are float32", path, npy_dtype_descr(h.dtype));
    /* the floats are read in place from the mapping, so they must be aligned (NumPy pads its
     * header to a multiple of 64 bytes; a file that does not would be read misaligned) */
    if (h.data_offset % sizeof(float) != 0)
        return jt_fail(err,
                       "%s: the array data starts at byte %zu, not a multiple of 4 (numpy.save "
                       "pads the header to 64 bytes): write the file again with numpy.save",
                       path, (size_t)h.data_offset);
    char shape[128];
    int rc = JT_OK;
    const size_t bytes = h.data_offset + h.count * sizeof(float);
    int fd = open(path, O_RDONLY);
    void *map = fd >= 0 && h.count > 0 ? mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    if (fd >= 0) close(fd);
    if (h.count > 0 && (!map || map == MAP_FAILED))
        return jt_fail(err, "%s: cannot map %zu bytes: %s", path, bytes, strerror(errno));
    const float *data = map ? (const float *)((const char *)map + h.data_offset) : NULL;
    if (h.ndim != 3 && h.ndim != 4)
        rc = jt_fail(err, "%s: shape %s: a context file is (N, L, D), (N, K, L, D) or (M, L, D)",
                     path, npy_shape_str(&h, shape, sizeof shape));
    else if (h.shape[0] < 1)
        rc = jt_fail(err, "%s: no contexts (shape %s)", path,
                     npy_shape_str(&h, shape, sizeof shape));
    else if (h.ndim == 4 && (h.shape[1] < 1 || h.shape[1] > CONTEXT_MAX_PER_ROW))
        rc = jt_fail(err, "%s: %zu contexts per row: must be 1..%d", path, h.shape[1],
                     CONTEXT_MAX_PER_ROW);
    if (rc == JT_OK) rc = check_dims(path, h.shape[h.ndim - 2], h.shape[h.ndim - 1], err);
    if (rc == JT_OK) rc = check_finite(path, data, h.count, err);
    if (rc != JT_OK) {
        if (map) munmap(map, bytes);
        return JT_ERR;
    }
    cs->map = map;
    cs->map_bytes = bytes;
    cs->table = data;
    cs->L = (int)h.shape[h.ndim - 2];
    cs->D = (int)h.shape[h.ndim - 1];
    cs->k = h.ndim == 4 ? (int)h.shape[1] : 0;
    cs->m = h.ndim == 4 ? h.shape[0] * h.shape[1] : h.shape[0];
    return JT_OK;
}

/* Each row's candidates: the per-row forms, or the table with its index. */
static int assign_rows(ContextSet *cs, const ContextSpec *spec, const char *path,
                       const Dataset *data, JtError *err) {
    const size_t n = data->n;
    cs->n = n;
    if (cs->k > 0 || !spec->index) { /* (N, K, L, D) or (N, L, D): row i's own contexts */
        if (spec->index)
            return jt_fail(err,
                           "--cond-index %s: only an (M, L, D) table takes an index, %s is "
                           "(N, K, L, D)",
                           spec->index, path);
        const size_t rows = cs->k > 0 ? cs->m / (size_t)cs->k : cs->m;
        if (rows != n)
            return jt_fail(err,
                           "%s: %zu rows of contexts, but the data has %zu rows (give "
                           "--cond-index labels|npy:FILE to use it as a table)",
                           path, rows, n);
        if (cs->k == 0) cs->k = 1;
        cs->cand = xmalloc(n * (size_t)cs->k * sizeof *cs->cand);
        for (size_t i = 0; i < n * (size_t)cs->k; i++)
            cs->cand[i] = i;
        return JT_OK;
    }
    cs->k = 1;
    cs->cand = xmalloc((n ? n : 1) * sizeof *cs->cand);
    if (strcmp(spec->index, "labels") == 0) {
        if (data->n_classes == 0)
            return jt_fail(err, "--cond-index labels: the data (%s) has no labels",
                           data->description ? data->description : "dataset");
        for (size_t i = 0; i < n; i++) {
            if (data->labels[i] < 0 || (size_t)data->labels[i] >= cs->m)
                return jt_fail(err,
                               "--cond-index labels: row %zu has label %d, but %s has only %zu "
                               "contexts",
                               i, data->labels[i], path, cs->m);
            cs->cand[i] = (size_t)data->labels[i];
        }
        return JT_OK;
    }
    const char *ipath;
    if (npy_path(spec->index, "--cond-index", &ipath, err) != JT_OK) return JT_ERR;
    NpyHeader h;
    void *idx = NULL;
    if (npy_read(ipath, &h, &idx, err) != JT_OK) return JT_ERR;
    int rc = JT_OK;
    if (h.dtype != NPY_I32 && h.dtype != NPY_I64)
        rc = jt_fail(err, "%s: dtype %s: an index is int32 or int64", ipath,
                     npy_dtype_descr(h.dtype));
    else if (h.ndim != 1 || h.shape[0] != n)
        rc = jt_fail(err, "%s: an index is (N,) with N = the data's %zu rows", ipath, n);
    for (size_t i = 0; rc == JT_OK && i < n; i++) {
        const int64_t v =
            h.dtype == NPY_I64 ? ((const int64_t *)idx)[i] : ((const int32_t *)idx)[i];
        if (v < 0 || (uint64_t)v >= cs->m)
            rc = jt_fail(err, "%s: entry %zu is %lld, outside the %zu contexts of %s", ipath, i,
                         (long long)v, cs->m, path);
        else
            cs->cand[i] = (size_t)v;
    }
    free(idx);
    return rc;
}

static int read_uncond(ContextSet *cs, const char *text, const char *path, JtError *err) {
    const size_t LD = (size_t)cs->L * cs->D;
    if (strncmp(text, "row:", 4) == 0) {
        char *end = NULL;
        unsigned long long r = strtoull(text + 4, &end, 10);
        if (!text[4] || *end || text[4] == '-')
            return jt_fail(err, "--uncond '%s': expected row:R or npy:FILE", text);
        if (r >= cs->m)
            return jt_fail(err, "--uncond %s: %s has only %zu contexts", text, path, cs->m);
        cs->uncond = xmalloc(LD * sizeof(float));
        memcpy(cs->uncond, cs->table + (size_t)r * LD, LD * sizeof(float));
        return JT_OK;
    }
    const char *upath;
    if (npy_path(text, "--uncond", &upath, err) != JT_OK) return JT_ERR;
    NpyHeader h;
    void *u = NULL;
    if (npy_read_as(upath, NPY_F32, &h, &u, err) != JT_OK) return JT_ERR;
    const int ok2 = h.ndim == 2 && h.shape[0] == (size_t)cs->L && h.shape[1] == (size_t)cs->D;
    const int ok3 = h.ndim == 3 && h.shape[0] == 1 && h.shape[1] == (size_t)cs->L &&
                    h.shape[2] == (size_t)cs->D;
    char shape[128];
    int rc = JT_OK;
    if (!ok2 && !ok3)
        rc = jt_fail(err, "%s: shape %s: the unconditional context must be (%d, %d) like %s", upath,
                     npy_shape_str(&h, shape, sizeof shape), cs->L, cs->D, path);
    if (rc == JT_OK) rc = check_finite(upath, u, h.count, err);
    if (rc != JT_OK) {
        free(u);
        return JT_ERR;
    }
    cs->uncond = u;
    return JT_OK;
}

/* FILE.json beside FILE.npy, when it has "captions": one string per table row. A sidecar that
 * does not parse, or whose captions do not match the table, is an error (it names the wrong texts);
 * a JSON without "captions" is someone else's file and is ignored. */
static int read_captions(ContextSet *cs, const char *path, JtError *err) {
    size_t n = strlen(path);
    if (n < 4 || strcmp(path + n - 4, ".npy") != 0) return JT_OK;
    char *jp = xmalloc(n + 2);
    memcpy(jp, path, n - 4);
    strcpy(jp + n - 4, ".json");
    struct stat sb;
    int rc = JT_OK;
    if (stat(jp, &sb) == 0) {
        cJSON *o = json_load_file(jp, err);
        const cJSON *c = o ? cJSON_GetObjectItemCaseSensitive(o, "captions") : NULL;
        if (!o) {
            rc = JT_ERR;
        } else if (c && (!cJSON_IsArray(c) || (size_t)cJSON_GetArraySize(c) != cs->m)) {
            rc = jt_fail(err,
                         "%s: 'captions' must be an array of %zu strings, one per context of %s",
                         jp, cs->m, path);
        } else if (c) {
            cs->captions = xcalloc(cs->m, sizeof *cs->captions);
            for (size_t i = 0; rc == JT_OK && i < cs->m; i++) {
                const cJSON *e = cJSON_GetArrayItem(c, (int)i);
                if (!cJSON_IsString(e))
                    rc = jt_fail(err, "%s: captions[%zu] is not a string", jp, i);
                else
                    cs->captions[i] = xstrdup(e->valuestring);
            }
        }
        cJSON_Delete(o);
    }
    free(jp);
    return rc;
}

/* FILE.npy.json, the manifest encode-text writes beside FILE.npy, when it names the rows it was
 * made for ("dataset_text_fingerprint", data_text_fingerprint of the captioned dataset's rows):
 * a context file made for other images, or the same images in another order or selection, is
 * refused even when the row count agrees. A manifest without the field (encode-text --ids, hand-
 * made files) names no dataset and is not checked; one that does not parse is an error. */
static int check_dataset(const char *path, const Dataset *data, JtError *err) {
    char *mp = xmalloc(strlen(path) + 6);
    sprintf(mp, "%s.json", path);
    struct stat sb;
    int rc = JT_OK;
    if (stat(mp, &sb) == 0) {
        cJSON *o = json_load_file(mp, err);
        const char *want = o ? json_str(o, "dataset_text_fingerprint") : NULL;
        const cJSON *f = o ? cJSON_GetObjectItemCaseSensitive(o, "dataset_text_fingerprint") : NULL;
        char have[17];
        snprintf(have, sizeof have, "%016llx",
                 (unsigned long long)data_rows_text_fingerprint(data));
        if (!o) {
            rc = JT_ERR;
        } else if (f && !want) {
            rc = jt_fail(err, "%s: 'dataset_text_fingerprint' must be a string", mp);
        } else if (want && strcmp(want, have) != 0) {
            const char *made = json_str(o, "dataset");
            rc = jt_fail(err,
                         "%s: made for another dataset: its manifest records the rows of %s (text "
                         "fingerprint %s), but the data here (%s) has text fingerprint %s (run "
                         "jtrak encode-text --captions on this dataset)",
                         path, made ? made : "(not named)", want,
                         data->description ? data->description : "dataset", have);
        }
        cJSON_Delete(o);
    }
    free(mp);
    return rc;
}

static void fingerprint(ContextSet *cs) {
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, "jtrak-context-v1", 16);
    const uint64_t dims[5] = {cs->m, (uint64_t)cs->L, (uint64_t)cs->D, cs->n, (uint64_t)cs->k};
    h = hash_fnv1a(h, dims, sizeof dims);
    h = hash_fnv1a(h, cs->table, cs->m * (size_t)cs->L * cs->D * sizeof(float));
    for (size_t i = 0; cs->cand && i < cs->n * (size_t)cs->k; i++) {
        const uint64_t c = cs->cand[i];
        h = hash_fnv1a(h, &c, sizeof c);
    }
    const uint8_t has_uncond = cs->uncond != NULL;
    h = hash_fnv1a(h, &has_uncond, 1);
    if (cs->uncond) h = hash_fnv1a(h, cs->uncond, (size_t)cs->L * cs->D * sizeof(float));
    cs->fingerprint = h;
}

int context_load(ContextSet *cs, const ContextSpec *spec, const Dataset *data, JtError *err) {
    memset(cs, 0, sizeof *cs);
    const char *path;
    if (npy_path(spec->file, data ? "--cond" : "--context", &path, err) != JT_OK) return JT_ERR;
    int rc = read_table(cs, path, err);
    if (rc == JT_OK) rc = read_captions(cs, path, err);
    if (rc == JT_OK && data) rc = assign_rows(cs, spec, path, data, err);
    if (rc == JT_OK && data) rc = check_dataset(path, data, err);
    if (rc == JT_OK && !data) {
        if (spec->index) rc = jt_fail(err, "--cond-index is for training data, not prompts");
        cs->k = cs->k ? cs->k : 1;
    }
    if (rc == JT_OK && spec->uncond) rc = read_uncond(cs, spec->uncond, path, err);
    if (rc != JT_OK) {
        context_free(cs);
        return JT_ERR;
    }
    fingerprint(cs);
    const char *idx = spec->index ? spec->index : "none",
               *un = spec->uncond ? spec->uncond : "none";
    size_t len = strlen(spec->file) + strlen(idx) + strlen(un) + 32;
    cs->description = xmalloc(len);
    snprintf(cs->description, len, "file=%s;index=%s;uncond=%s", spec->file, idx, un);
    return JT_OK;
}

void context_free(ContextSet *cs) {
    if (!cs) return;
    if (cs->map) munmap(cs->map, cs->map_bytes);
    free(cs->cand);
    free(cs->uncond);
    free(cs->description);
    for (size_t i = 0; cs->captions && i < cs->m; i++)
        free(cs->captions[i]);
    free(cs->captions);
    memset(cs, 0, sizeof *cs);
}

int context_check_model(const ContextSet *cs, int cross_attention_dim, const char *what,
                        JtError *err) {
    if (cross_attention_dim <= 0)
        return jt_fail(err, "%s has no cross-attention: it takes no text contexts (%s)", what,
                       cs->description);
    if (cross_attention_dim != cs->D)
        return jt_fail(err,
                       "%s: the contexts are %d wide but the model's cross_attention_dim is %d "
                       "(%s)",
                       what, cs->D, cross_attention_dim, cs->description);
    return JT_OK;
}

const float *context_table_row(const ContextSet *cs, size_t r) {
    CHECK(r < cs->m, "context row %zu outside 0..%zu", r, cs->m - 1);
    return cs->table + r * (size_t)cs->L * cs->D;
}

const float *context_of_row(const ContextSet *cs, size_t row, int k) {
    CHECK(row < cs->n && k >= 0 && k < cs->k, "context of row %zu candidate %d (n %zu, k %d)", row,
          k, cs->n, cs->k);
    return context_table_row(cs, cs->cand[row * (size_t)cs->k + (size_t)k]);
}

int context_pick(const ContextSet *cs, uint64_t seed, uint64_t stream, uint64_t index) {
    if (cs->k <= 1) return 0;
    return (int)rng_randint(seed, stream, index, (uint32_t)cs->k);
}

const char *context_fingerprint_hex(const ContextSet *cs, char buf[17]) {
    snprintf(buf, 17, "%016llx", (unsigned long long)cs->fingerprint);
    return buf;
}

int context_load_described(ContextSet *cs, const char *description, const Dataset *data,
                           JtError *err) {
    memset(cs, 0, sizeof *cs);
    /* fixed order, as context_load writes it; a path may hold ';' only before ";index=" */
    const char *f = strstr(description, "file="), *i = strstr(description, ";index="),
               *u = i ? strstr(i, ";uncond=") : NULL;
    if (f != description || !i || !u)
        return jt_fail(err, "context description '%s': expected file=...;index=...;uncond=...",
                       description);
    char *file = strndup(f + 5, (size_t)(i - f - 5)), *index = strndup(i + 7, (size_t)(u - i - 7));
    const char *uncond = u + 8;
    ContextSpec spec = {file, strcmp(index, "none") == 0 ? NULL : index,
                        strcmp(uncond, "none") == 0 ? NULL : uncond};
    int rc = context_load(cs, &spec, data, err);
    free(file), free(index);
    return rc;
}

void context_subset(const ContextSet *src, const size_t *rows, size_t k, ContextSet *out) {
    CHECK(src->n > 0, "a prompt table has no rows to subset");
    memset(out, 0, sizeof *out);
    const size_t LD = (size_t)src->L * src->D;
    out->m = src->m;
    out->L = src->L;
    out->D = src->D;
    out->n = k;
    out->k = src->k;
    out->table = src->table; /* borrowed: out must not outlive src (map stays NULL) */
    out->cand = xmalloc((k ? k : 1) * (size_t)src->k * sizeof *out->cand);
    for (size_t i = 0; i < k; i++) {
        CHECK(rows[i] < src->n, "subset row %zu outside 0..%zu", rows[i], src->n - 1);
        memcpy(out->cand + i * (size_t)src->k, src->cand + rows[i] * (size_t)src->k,
               (size_t)src->k * sizeof *out->cand);
    }
    if (src->uncond) {
        out->uncond = xmalloc(LD * sizeof(float));
        memcpy(out->uncond, src->uncond, LD * sizeof(float));
    }
    fingerprint(out);
    out->description = xstrdup(src->description);
}
