/* latents.c: the latents:FILE.npy source (dataset.h "Latent datasets", ldm.md 1.2, 3). A latent
 * store is what `jtrak encode` writes: FILE.npy, float32 (N, 2z, h, w), channels [0, z) the
 * posterior mean and [z, 2z) the clamped log-variance of diffusers' DiagonalGaussianDistribution
 * (unscaled), rows in the selection order of the dataset it was encoded from, and FILE.npy.json:
 *   {"kind": "jtrak-latents", "layout": "mean|logvar", "vae_fingerprint": "<16 hex>",
 *    "scaling_factor": s, "latent_channels": z, "latent_height": h, "latent_width": w, "rows": N,
 *    "dataset": {"spec": <description>, "fingerprint": "<16 hex>", "n": N}}
 * Loading checks the manifest and the array against each other (one error each, naming the file),
 * reloads the dataset the store was encoded from for its labels, names, captions and images, and
 * applies the selection to the store's rows. The draws: scaling * mean (mode "mean", D-TRAK), or
 * scaling * (mean + exp(0.5 logvar) * n) with n keyed by (seed, stream, counter, row) (mode
 * "sample": a fresh posterior sample per draw, as Journey-TRAK's vmapped vae.encode(...).sample()).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/source.h"
#include "io/jsonfile.h"
#include "io/npy.h"

/* diffusers' DiagonalGaussianDistribution clamps logvar to [-30, 20]. */
#define LATENT_LOGVAR_MIN -30.0f
#define LATENT_LOGVAR_MAX 20.0f

static int parse_hex64(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

/* An integer field of the manifest in [lo, hi]. */
static int get_int(const char *path, const cJSON *o, const char *key, double lo, double hi,
                   size_t *out, JtError *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return jt_fail(err, "%s: field '%s' missing or not a number", path, key);
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != floor(d))
        return jt_fail(err, "%s: field '%s' is %g, expected an integer in %.0f..%.0f", path, key, d,
                       lo, hi);
    *out = (size_t)d;
    return JT_OK;
}

typedef struct {
    size_t rows, z, h, w;
    float scaling;
    uint64_t vae_fp, data_fp;
    char *data_spec;     /* borrowed from the cJSON tree */
    const char *vae_dir; /* borrowed; NULL when not recorded */
} LatentManifest;

static int read_manifest(const char *path, cJSON *o, LatentManifest *m, JtError *err) {
    if (!cJSON_IsObject(o)) return jt_fail(err, "%s: not a JSON object", path);
    const char *kind = json_str(o, "kind");
    if (!kind || strcmp(kind, "jtrak-latents") != 0)
        return jt_fail(err,
                       "%s: field 'kind' is %s%s%s, expected \"jtrak-latents\" (a latent store "
                       "written by jtrak encode)",
                       path, kind ? "\"" : "", kind ? kind : "missing", kind ? "\"" : "");
    const char *layout = json_str(o, "layout");
    if (!layout || strcmp(layout, "mean|logvar") != 0)
        return jt_fail(err, "%s: field 'layout' is %s%s%s, expected \"mean|logvar\"", path,
                       layout ? "\"" : "", layout ? layout : "missing", layout ? "\"" : "");
    if (!parse_hex64(json_str(o, "vae_fingerprint"), &m->vae_fp))
        return jt_fail(err, "%s: field 'vae_fingerprint' missing or not 16 lowercase hex digits",
                       path);
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(o, "scaling_factor");
    if (!cJSON_IsNumber(sf) || !isfinite(sf->valuedouble) || !(sf->valuedouble > 0) ||
        !isfinite((float)sf->valuedouble) || (float)sf->valuedouble <= 0.0f)
        return jt_fail(err, "%s: field 'scaling_factor' missing or not a finite positive number",
                       path);
    m->scaling = (float)sf->valuedouble;
    m->vae_dir = json_str(o, "vae");
    if (get_int(path, o, "latent_channels", 1, 4096, &m->z, err) != JT_OK ||
        get_int(path, o, "latent_height", 1, 65536, &m->h, err) != JT_OK ||
        get_int(path, o, "latent_width", 1, 65536, &m->w, err) != JT_OK ||
        get_int(path, o, "rows", 1, 9007199254740992.0, &m->rows, err) != JT_OK)
        return JT_ERR;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "dataset");
    if (!cJSON_IsObject(d))
        return jt_fail(err, "%s: field 'dataset' missing or not an object", path);
    m->data_spec = (char *)json_str(d, "spec");
    if (!m->data_spec || !m->data_spec[0])
        return jt_fail(err, "%s: field 'dataset.spec' missing or not a string", path);
    if (!parse_hex64(json_str(d, "fingerprint"), &m->data_fp))
        return jt_fail(
            err, "%s: field 'dataset.fingerprint' missing or not 16 lowercase hex digits", path);
    size_t dn = 0;
    if (get_int(path, d, "n", 1, 9007199254740992.0, &dn, err) != JT_OK) return JT_ERR;
    if (dn != m->rows)
        return jt_fail(err, "%s: 'dataset.n' is %zu but 'rows' is %zu", path, dn, m->rows);
    return JT_OK;
}

/* Reloads the dataset the store was encoded from. JT_OK with *origin NULL and *note set when it no
 * longer loads; JT_ERR when it loads but is not the data the store was encoded from. */
static int load_origin(const char *mpath, const LatentManifest *m, Dataset **origin, char **note,
                       JtError *err) {
    *origin = NULL;
    *note = NULL;
    DatasetSpec s;
    JtError e2;
    char buf[1200];
    if (data_spec_parse(&s, m->data_spec, &e2) != JT_OK) {
        snprintf(buf, sizeof buf, "its description does not parse (%s)", e2.msg);
        *note = xstrdup(buf);
        return JT_OK;
    }
    if (s.kind == DATA_SRC_LATENTS) {
        data_spec_free(&s);
        return jt_fail(err, "%s: 'dataset.spec' names another latent store (%s)", mpath,
                       m->data_spec);
    }
    Dataset *o = xcalloc(1, sizeof *o);
    int rc = data_load(&s, o, &e2);
    data_spec_free(&s);
    if (rc != JT_OK) {
        free(o);
        snprintf(buf, sizeof buf, "it does not load: %s", e2.msg);
        *note = xstrdup(buf);
        return JT_OK;
    }
    if (o->fingerprint != m->data_fp || o->n != m->rows) {
        char a[17], b[17];
        data_fingerprint_hex(o, a);
        snprintf(b, sizeof b, "%016llx", (unsigned long long)m->data_fp);
        rc = jt_fail(err,
                     "%s: the dataset it was encoded from (%s) now has %zu rows and fingerprint "
                     "%s, the store records %zu rows and %s: the data changed since jtrak encode; "
                     "encode it again",
                     mpath, m->data_spec, o->n, a, m->rows, b);
        data_free(o);
        free(o);
        return rc;
    }
    *origin = o;
    return JT_OK;
}

static void latent_free(DataLatent *L) {
    if (!L) return;
    free(L->moments);
    free(L->store_path);
    free(L->vae_dir);
    if (L->origin) {
        data_free(L->origin);
        free(L->origin);
    }
    free(L->origin_note);
    free(L);
}

void data_latent_free(DataLatent *L) {
    latent_free(L);
}

static char *abs_path(const char *p) {
    if (p[0] == '/') return xstrdup(p);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return xstrdup(p);
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *a = xmalloc(n);
    snprintf(a, n, "%s/%s", cwd, p);
    return a;
}

static char **dup_table_rows(char *const *table, const size_t *rows, size_t k) {
    if (!table) return NULL;
    char **out = xcalloc(k, sizeof(char *));
    for (size_t i = 0; i < k; i++)
        out[i] = table[rows[i]] ? xstrdup(table[rows[i]]) : NULL;
    return out;
}

uint64_t data_latent_fingerprint(const Dataset *ds) {
    static const char tag[] = "jtrak-latents-v1";
    const DataLatent *L = ds->latent;
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, tag, sizeof tag - 1);
    uint64_t v[6] = {ds->n,           (uint64_t)ds->c,    (uint64_t)ds->h,
                     (uint64_t)ds->w, L->vae_fingerprint, (uint64_t)L->mode};
    unsigned char le[8];
    for (int d = 0; d < 6; d++) {
        for (int b = 0; b < 8; b++)
            le[b] = (unsigned char)(v[d] >> (8 * b));
        h = hash_fnv1a(h, le, 8);
    }
    uint32_t sbits;
    memcpy(&sbits, &L->scaling_factor, 4);
    for (int b = 0; b < 4; b++)
        le[b] = (unsigned char)(sbits >> (8 * b));
    h = hash_fnv1a(h, le, 4);
    /* the moments as stored: little-endian float32 (.npy's, and the host's, see io/npy.h) */
    h = hash_fnv1a(h, L->moments,
                   ds->n * 2 * (size_t)ds->c * (size_t)ds->h * (size_t)ds->w * sizeof(float));
    for (size_t i = 0; i < ds->n; i++) {
        uint32_t x = (uint32_t)(int32_t)ds->labels[i];
        for (int b = 0; b < 4; b++)
            le[b] = (unsigned char)(x >> (8 * b));
        h = hash_fnv1a(h, le, 4);
    }
    return h;
}

int data_load_latents(const DatasetSpec *spec, Dataset *ds, JtError *err) {
    memset(ds, 0, sizeof *ds);
    const char *path = spec->path;
    static const char *const FIT[] = {"none", "pad", "crop", "resize", "nearest"};
    if (spec->flip != DATA_FLIP_NONE)
        return jt_fail(err,
                       "--flip %s: latents:%s cannot be flipped (a flipped latent is not the "
                       "latent of a flipped image); encode flipped images instead",
                       spec->flip == DATA_FLIP_ALL ? "all" : "random", path);
    if (spec->fit != DATA_FIT_NONE)
        return jt_fail(err,
                       "--fit %s: does not apply to latents:%s (the latents have the size they "
                       "were encoded at)",
                       FIT[spec->fit], path);
    if (spec->color != DATA_COLOR_AUTO)
        return jt_fail(err, "--color: does not apply to latents:%s", path);

    size_t mlen = strlen(path) + 6;
    char *mpath = xmalloc(mlen);
    snprintf(mpath, mlen, "%s.json", path);
    LatentManifest m;
    memset(&m, 0, sizeof m);
    if (access(mpath, F_OK) != 0) {
        jt_fail(err,
                "%s: the manifest %s is missing (a latent store is FILE.npy beside "
                "FILE.npy.json, as jtrak encode writes them)",
                path, mpath);
        free(mpath);
        return JT_ERR;
    }
    cJSON *mj = json_load_file(mpath, err);
    int rc = mj ? read_manifest(mpath, mj, &m, err) : JT_ERR;
    NpyHeader h;
    char sb[160];
    if (rc == JT_OK) rc = npy_read_header(path, &h, err);
    if (rc == JT_OK && h.dtype != NPY_F32)
        rc = jt_fail(err, "%s: dtype is %s, expected <f4 (float32 posterior moments)", path,
                     npy_dtype_descr(h.dtype));
    if (rc == JT_OK && (h.ndim != 4 || h.shape[0] != m.rows || h.shape[1] != 2 * m.z ||
                        h.shape[2] != m.h || h.shape[3] != m.w))
        rc = jt_fail(err,
                     "%s: shape %s, but its manifest %s says (rows %zu, 2 x latent_channels %zu, "
                     "latent_height %zu, latent_width %zu)",
                     path, npy_shape_str(&h, sb, sizeof sb), mpath, m.rows, 2 * m.z, m.h, m.w);
    /* The model's expectations (the CLI sets them from the U-Net's config). */
    if (rc == JT_OK && spec->channels && (size_t)spec->channels != m.z)
        rc = jt_fail(err,
                     "%s: the latents have %zu channels (latent_channels in %s) but the model "
                     "takes in_channels %d: a latent store of another VAE, or a model of another "
                     "latent space",
                     path, m.z, mpath, spec->channels);
    if (rc == JT_OK && spec->height && ((size_t)spec->height != m.h || (size_t)spec->width != m.w))
        rc = jt_fail(err,
                     "%s: the latents are %zux%zu (latent_height x latent_width in %s) but the "
                     "model takes %dx%d (its sample_size)",
                     path, m.h, m.w, mpath, spec->height, spec->width);
    if (rc != JT_OK) {
        cJSON_Delete(mj);
        free(mpath);
        return JT_ERR;
    }
    NpyHeader h2;
    float *all = NULL;
    rc = npy_read_as(path, NPY_F32, &h2, (void **)&all, err);
    const size_t zc = m.z, per = m.z * m.h * m.w; /* one mean (or one logvar) */
    for (size_t i = 0; rc == JT_OK && i < m.rows; i++) {
        const float *row = all + i * 2 * per;
        for (size_t q = 0; q < 2 * per; q++) {
            if (!isfinite(row[q])) {
                rc = jt_fail(err,
                             "%s: row %zu holds a non-finite %s (channel %zu): the encoder "
                             "diverged or the file is damaged",
                             path, i, q < per ? "mean" : "log-variance", (q % per) / (per / zc));
                break;
            }
            if (q >= per && (row[q] < LATENT_LOGVAR_MIN || row[q] > LATENT_LOGVAR_MAX)) {
                rc = jt_fail(err,
                             "%s: row %zu holds log-variance %g, outside diffusers' clamp "
                             "[-30, 20]: not a posterior of jtrak encode",
                             path, i, (double)row[q]);
                break;
            }
        }
    }
    Dataset *origin = NULL;
    char *note = NULL;
    if (rc == JT_OK) rc = load_origin(mpath, &m, &origin, &note, err);

    DataSource src;
    memset(&src, 0, sizeof src);
    size_t *sel = NULL, n = 0;
    if (rc == JT_OK) {
        src.n = m.rows;
        src.what = xstrdup(path);
        if (origin && origin->n_classes > 0) {
            src.labels = origin->labels;
            src.n_classes = origin->n_classes;
            src.class_names = origin->class_names;
        }
        rc = data_select(spec, &src, &sel, &n, err);
    }
    if (rc != JT_OK) {
        free(src.what);
        free(all);
        if (origin) {
            data_free(origin);
            free(origin);
        }
        free(note);
        cJSON_Delete(mj);
        free(mpath);
        return JT_ERR;
    }

    DataLatent *L = xcalloc(1, sizeof *L);
    L->scaling_factor = m.scaling;
    L->mode = spec->latent == DATA_LATENT_MEAN ? DATA_LATENT_MEAN : DATA_LATENT_SAMPLE;
    L->vae_fingerprint = m.vae_fp;
    L->store_path = abs_path(path);
    L->vae_dir = m.vae_dir ? xstrdup(m.vae_dir) : NULL;
    L->origin = origin;
    L->origin_note = note;
    if (n == m.rows) { /* selection of every row in order: keep the array */
        int identity = 1;
        for (size_t i = 0; i < n && identity; i++)
            identity = sel[i] == i;
        if (identity) L->moments = all, all = NULL;
    }
    if (!L->moments) {
        L->moments = xmalloc(n * 2 * per * sizeof(float));
        for (size_t i = 0; i < n; i++)
            memcpy(L->moments + i * 2 * per, all + sel[i] * 2 * per, 2 * per * sizeof(float));
    }
    free(all);
    ds->latent = L;
    ds->n = n;
    ds->c = (int)m.z;
    ds->h = (int)m.h;
    ds->w = (int)m.w;
    ds->index = sel;
    ds->n_source = m.rows;
    ds->labels = xmalloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        ds->labels[i] = origin ? origin->labels[sel[i]] : -1;
    if (origin) {
        ds->n_classes = origin->n_classes;
        ds->class_names =
            origin->class_names
                ? data_names_dup((const char *const *)origin->class_names, origin->n_classes)
                : NULL;
        ds->item_names = dup_table_rows(origin->item_names, sel, n);
        ds->captions = dup_table_rows(origin->captions, sel, n);
    }
    ds->flip = DATA_FLIP_NONE;
    ds->fingerprint = data_latent_fingerprint(ds);

    /* The description: the spec with the resolved path, size and channels and the mode. */
    DatasetSpec s;
    data_spec_copy(&s, spec);
    char *classes;
    JtError ignored;
    if (s.classes && data_classes_canonical(s.classes, &src, &classes, &ignored) == JT_OK) {
        free(s.classes);
        s.classes = classes;
    }
    free(s.path);
    s.path = xstrdup(L->store_path);
    if (s.index_file) {
        char *a = abs_path(s.index_file);
        free(s.index_file);
        s.index_file = a;
    }
    s.height = ds->h;
    s.width = ds->w;
    s.channels = ds->c;
    s.latent = L->mode;
    ds->description = data_spec_describe(&s);
    data_spec_free(&s);
    free(src.what);
    cJSON_Delete(mj);
    free(mpath);
    return JT_OK;
}

int data_latent_copy_rows(const Dataset *src, const size_t *rows, size_t k, Dataset *out) {
    const DataLatent *S = src->latent;
    const size_t per2 = 2 * (size_t)src->c * (size_t)src->h * (size_t)src->w;
    DataLatent *L = xcalloc(1, sizeof *L);
    *L = *S;
    L->moments = xmalloc(k * per2 * sizeof(float));
    for (size_t i = 0; i < k; i++)
        memcpy(L->moments + i * per2, S->moments + rows[i] * per2, per2 * sizeof(float));
    L->store_path = xstrdup(S->store_path);
    L->vae_dir = S->vae_dir ? xstrdup(S->vae_dir) : NULL;
    L->origin_note = S->origin_note ? xstrdup(S->origin_note) : NULL;
    L->origin = NULL;
    if (S->origin) {
        /* every row of the origin (it is indexed by store row, through out->index) */
        size_t *all = xmalloc(S->origin->n * sizeof(size_t));
        for (size_t i = 0; i < S->origin->n; i++)
            all[i] = i;
        L->origin = xcalloc(1, sizeof *L->origin);
        JtError e;
        int rc = data_subset(S->origin, all, S->origin->n, L->origin, &e);
        free(all);
        CHECK(rc == JT_OK, "copying the origin of a latent dataset: %s", e.msg);
        free(L->origin->description);
        L->origin->description = xstrdup(S->origin->description);
    }
    out->latent = L;
    return JT_OK;
}

/* ---- access ---------------------------------------------------------------------------------- */

int data_draws_random(const Dataset *ds) {
    return ds->latent && ds->latent->mode == DATA_LATENT_SAMPLE;
}

const char *data_latent_mode_name(const Dataset *ds) {
    if (!ds->latent) return NULL;
    return ds->latent->mode == DATA_LATENT_MEAN ? "mean" : "sample";
}

void data_latent_mean_f32(const Dataset *ds, size_t row, float *out) {
    const DataLatent *L = ds->latent;
    const size_t per = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    const float *mean = L->moments + row * 2 * per;
    for (size_t q = 0; q < per; q++)
        out[q] = L->scaling_factor * mean[q];
}

void data_batch_draw(const Dataset *ds, const size_t *rows, const uint8_t *flips, size_t b,
                     uint64_t seed, uint64_t stream, uint64_t counter, float *out) {
    if (!ds->latent) {
        data_batch_f32(ds, rows, flips, b, out);
        return;
    }
    const DataLatent *L = ds->latent;
    const size_t per = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    const uint64_t sc = rng_stream(RNG_TAG_LATENT_SAMPLE, stream, counter);
    for (size_t i = 0; i < b; i++) {
        CHECK(rows[i] < ds->n, "row %zu of %zu", rows[i], ds->n);
        CHECK(!flips || !flips[i], "a latent row cannot be flipped");
        float *o = out + i * per;
        if (L->mode == DATA_LATENT_MEAN) {
            data_latent_mean_f32(ds, rows[i], o);
            continue;
        }
        const float *mean = L->moments + rows[i] * 2 * per, *logvar = mean + per;
        rng_fill_normal(o, per, seed, rng_stream(RNG_TAG_LATENT_SAMPLE, sc, rows[i]), 0);
        /* diffusers: std = exp(0.5 * logvar); sample = mean + std * n; then * scaling_factor */
        for (size_t q = 0; q < per; q++)
            o[q] = L->scaling_factor * (mean[q] + expf(0.5f * logvar[q]) * o[q]);
    }
}
