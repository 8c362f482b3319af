/* dataset.c: data_load (open the source, select, transform every selected image into the uint8
 * (N, C, H, W) slab, fingerprint, describe), subsets, and the float views of the pixels. */
#include "data/dataset.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hash.h"
#include "data/source.h"
#include "data/transform.h"

static const char *const FASHION_NAMES[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};
static const char *const DIGIT_NAMES[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

/* ---- source helpers (shared by the readers) -------------------------------------------------- */

void data_source_free(DataSource *src) {
    if (src->free_impl) src->free_impl(src);
    free(src->labels);
    if (src->class_names)
        for (int k = 0; k < src->n_classes; k++)
            free(src->class_names[k]);
    free(src->class_names);
    free(src->what);
    memset(src, 0, sizeof *src);
}

char **data_names_dup(const char *const *names, int n) {
    char **out = xcalloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    for (int i = 0; i < n; i++)
        out[i] = xstrdup(names[i]);
    return out;
}

static int open_source(const DatasetSpec *s, DataSource *src, JtError *err) {
    switch (s->kind) {
    case DATA_SRC_FASHION_MNIST: {
        const char *dir = s->path ? s->path : DATA_FASHION_MNIST_DIR;
        struct stat st;
        if (!s->path && stat(dir, &st) != 0)
            return jt_fail(err,
                           "%s: not found: the default dataset comes from Debian's "
                           "dataset-fashion-mnist package (apt install dataset-fashion-mnist), "
                           "or give --data fashion-mnist:DIR",
                           dir);
        return data_open_mnist_dir(src, dir, s->test_split, FASHION_NAMES, err);
    }
    case DATA_SRC_MNIST:
        return data_open_mnist_dir(src, s->path, s->test_split, DIGIT_NAMES, err);
    case DATA_SRC_IDX:
        return data_open_idx(src, s->path, s->path2, NULL, err);
    case DATA_SRC_CIFAR10:
        return data_open_cifar10(src, s->path, s->test_split, err);
    case DATA_SRC_FOLDER:
        return data_open_folder(src, s->path, err);
    case DATA_SRC_NPY:
        return data_open_npy(src, s->path, s->path2, err);
    case DATA_SRC_COCO:
    case DATA_SRC_CAPTIONS:
        return data_open_captioned(src, s, err);
    case DATA_SRC_LATENTS:
        break; /* data_load_latents */
    }
    return jt_fail(err, "bad dataset kind %d", (int)s->kind);
}

/* ---- fingerprint and description ------------------------------------------------------------- */

static uint64_t fingerprint(const Dataset *ds) {
    if (ds->latent) return data_latent_fingerprint(ds);
    static const char tag[] = "jtrak-dataset-v1";
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, tag, sizeof tag - 1);
    uint64_t dims[4] = {ds->n, (uint64_t)ds->c, (uint64_t)ds->h, (uint64_t)ds->w};
    unsigned char le[8];
    for (int d = 0; d < 4; d++) {
        for (int b = 0; b < 8; b++)
            le[b] = (unsigned char)(dims[d] >> (8 * b));
        h = hash_fnv1a(h, le, 8);
    }
    h = hash_fnv1a(h, ds->pixels, ds->n * (size_t)ds->c * (size_t)ds->h * (size_t)ds->w);
    for (size_t i = 0; i < ds->n; i++) {
        uint32_t v = (uint32_t)(int32_t)ds->labels[i];
        for (int b = 0; b < 4; b++)
            le[b] = (unsigned char)(v >> (8 * b));
        h = hash_fnv1a(h, le, 4);
    }
    return h;
}

/* A relative path made absolute against the working directory (not resolving links), so that a
 * description read back from another directory names the same files. */
static void absolutize(char **p) {
    if (!*p || (*p)[0] == '/') return;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return;
    const char *rel = *p;
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    size_t n = strlen(cwd) + strlen(rel) + 2;
    char *abs = xmalloc(n);
    snprintf(abs, n, "%s/%s", cwd, rel);
    free(*p);
    *p = abs;
}

char *data_spec_describe_abs(const DatasetSpec *spec) {
    DatasetSpec s;
    data_spec_copy(&s, spec);
    absolutize(&s.path);
    absolutize(&s.path2);
    absolutize(&s.index_file);
    char *d = data_spec_describe(&s);
    data_spec_free(&s);
    return d;
}

uint64_t data_text_fingerprint(size_t n, char *const *item_names, char *const *captions) {
    static const char tag[] = "jtrak-rows-text-v1";
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, tag, sizeof tag - 1);
    unsigned char le[8];
    for (int b = 0; b < 8; b++)
        le[b] = (unsigned char)((uint64_t)n >> (8 * b));
    h = hash_fnv1a(h, le, 8);
    for (size_t i = 0; i < n; i++) {
        const char *name = item_names && item_names[i] ? item_names[i] : "";
        const char *cap = captions && captions[i] ? captions[i] : "";
        h = hash_fnv1a(h, name, strlen(name) + 1);
        h = hash_fnv1a(h, cap, strlen(cap) + 1);
    }
    return h;
}

uint64_t data_rows_text_fingerprint(const Dataset *ds) {
    return data_text_fingerprint(ds->n, ds->item_names, ds->captions);
}

static char *describe_loaded(const DatasetSpec *spec, const Dataset *ds, const DataSource *src) {
    DatasetSpec s;
    data_spec_copy(&s, spec);
    char *classes;
    JtError ignored;
    if (s.classes && data_classes_canonical(s.classes, src, &classes, &ignored) == JT_OK) {
        free(s.classes);
        s.classes = classes;
    }
    absolutize(&s.path);
    absolutize(&s.path2);
    absolutize(&s.index_file);
    s.height = ds->h;
    s.width = ds->w;
    s.channels = ds->c;
    char *d = data_spec_describe(&s);
    data_spec_free(&s);
    return d;
}

/* ---- loading --------------------------------------------------------------------------------- */

static const char *chan_word(int c) {
    return c == 1 ? "gray" : "RGB";
}

/* " (FILE)" for sources with one file per image, else "". */
static void item_suffix(const DataSource *src, size_t i, char *buf, size_t cap) {
    const char *name = src->item_name ? src->item_name(src, i) : NULL;
    if (name)
        snprintf(buf, cap, " (%s)", name);
    else
        buf[0] = '\0';
}

/* Colour-converts, fits and flips source image `si` into out (c, H, W). */
static int transform_one(const DatasetSpec *spec, DataSource *src, size_t si, const DataRaw *raw,
                         int c, int H, int W, uint8_t **tmp, size_t *tmp_cap, uint8_t *out,
                         JtError *err) {
    char where[1100];
    item_suffix(src, si, where, sizeof where);
    size_t in_px;
    if (!jt_mul_size((size_t)raw->h * (size_t)raw->w, (size_t)c, &in_px))
        return jt_fail(err, "image %zu of %s%s: too large", si, src->what, where);
    /* tmp holds the colour-converted image (c, h, w), then for bilinear the first pass. */
    size_t pass1 = (size_t)raw->h * (size_t)W > (size_t)H * (size_t)raw->w
                       ? (size_t)raw->h * (size_t)W
                       : (size_t)H * (size_t)raw->w;
    size_t need = in_px + (size_t)c * pass1;
    if (need > *tmp_cap) {
        *tmp = xrealloc(*tmp, need);
        *tmp_cap = need;
    }
    uint8_t *conv = *tmp, *scratch = *tmp + in_px;
    data_color_convert(conv, raw, c);
    int h = raw->h, w = raw->w;
    if (h == H && w == W) {
        memcpy(out, conv, (size_t)c * (size_t)H * (size_t)W);
    } else {
        switch (spec->fit) {
        case DATA_FIT_NONE:
            if (spec->height)
                return jt_fail(err,
                               "image %zu of %s%s is %dx%d, model expects %dx%d (use --fit pad, "
                               "--fit crop or --fit resize)",
                               si, src->what, where, h, w, H, W);
            return jt_fail(err,
                           "image %zu of %s%s is %dx%d, but the first selected image is %dx%d "
                           "(give --size and --fit to bring them to one size)",
                           si, src->what, where, h, w, H, W);
        case DATA_FIT_PAD:
            if (h > H || w > W)
                return jt_fail(err,
                               "image %zu of %s%s is %dx%d, larger than the model's %dx%d: --fit "
                               "pad cannot shrink it (use --fit crop or --fit resize)",
                               si, src->what, where, h, w, H, W);
            data_pad(out, H, W, conv, c, h, w);
            break;
        case DATA_FIT_CROP:
            if (h < H || w < W)
                return jt_fail(err,
                               "image %zu of %s%s is %dx%d, smaller than the model's %dx%d: --fit "
                               "crop cannot grow it (use --fit pad or --fit resize)",
                               si, src->what, where, h, w, H, W);
            data_crop(out, H, W, conv, c, h, w);
            break;
        case DATA_FIT_RESIZE:
            data_resize_bilinear(out, H, W, conv, c, h, w, scratch);
            break;
        case DATA_FIT_NEAREST:
            data_resize_nearest(out, H, W, conv, c, h, w);
            break;
        }
    }
    if (spec->flip == DATA_FLIP_ALL) data_flip_u8(out, c, H, W);
    return JT_OK;
}

/* Each row's file name (relative to the source folder) and caption, when the source has them. */
static void keep_item_text(Dataset *ds, const DataSource *src) {
    size_t pre = strlen(src->what);
    for (size_t i = 0; src->item_name && i < ds->n; i++) {
        const char *name = src->item_name(src, ds->index[i]);
        if (!name) continue;
        if (!ds->item_names) ds->item_names = xcalloc(ds->n, sizeof(char *));
        if (pre && strncmp(name, src->what, pre) == 0 &&
            (src->what[pre - 1] == '/' || name[pre] == '/'))
            name += pre + (src->what[pre - 1] != '/');
        ds->item_names[i] = xstrdup(name);
    }
    for (size_t i = 0; src->item_caption && i < ds->n; i++) {
        const char *cap = src->item_caption(src, ds->index[i]);
        if (!cap) continue;
        if (!ds->captions) ds->captions = xcalloc(ds->n, sizeof(char *));
        ds->captions[i] = xstrdup(cap);
    }
}

/* A copy of rows[0..k) of a per-row string table (NULL stays NULL). */
static char **dup_rows(char *const *table, const size_t *rows, size_t k) {
    if (!table) return NULL;
    char **out = xcalloc(k, sizeof(char *));
    for (size_t i = 0; i < k; i++)
        out[i] = table[rows[i]] ? xstrdup(table[rows[i]]) : NULL;
    return out;
}

static void free_rows(char **table, size_t n) {
    if (!table) return;
    for (size_t i = 0; i < n; i++)
        free(table[i]);
    free(table);
}

int data_load(const DatasetSpec *spec, Dataset *ds, JtError *err) {
    memset(ds, 0, sizeof *ds);
    if (spec->kind == DATA_SRC_LATENTS) return data_load_latents(spec, ds, err);
    if (spec->latent != DATA_LATENT_DEFAULT)
        return jt_fail(err, "--latent %s: only a latents:FILE.npy source has a latent mode",
                       spec->latent == DATA_LATENT_MEAN ? "mean" : "sample");
    if (spec->fit != DATA_FIT_NONE && spec->height == 0)
        return jt_fail(err, "--fit needs a target size (--size, or the model's sample_size)");
    DataSource src;
    if (open_source(spec, &src, err) != JT_OK) return JT_ERR;
    size_t *rows, n;
    if (data_select(spec, &src, &rows, &n, err) != JT_OK) {
        data_source_free(&src);
        return JT_ERR;
    }
    int rc = JT_OK;
    char where[1100];
    DataRaw raw;
    uint8_t *tmp = NULL;
    size_t tmp_cap = 0;
    /* Geometry of the result, from the spec or else from the first selected image. */
    if (src.get(&src, rows[0], &raw, err) != JT_OK) {
        rc = JT_ERR;
        goto fail;
    }
    int c_first = raw.c <= 2 ? 1 : 3;
    int c = spec->color == DATA_COLOR_GRAY ? 1 : spec->color == DATA_COLOR_RGB ? 3 : c_first;
    int H = spec->height ? spec->height : raw.h;
    int W = spec->width ? spec->width : raw.w;
    if (spec->channels && spec->channels != c) {
        item_suffix(&src, rows[0], where, sizeof where);
        rc = jt_fail(err, "%s%s has %s images (%d channel%s), model expects %d (use --color %s)",
                     src.what, where, chan_word(c), c, c == 1 ? "" : "s", spec->channels,
                     spec->channels == 1 ? "gray" : "rgb");
        goto fail;
    }
    size_t per = (size_t)c * (size_t)H * (size_t)W, total;
    if (!jt_mul_size(per, n, &total)) {
        rc = jt_fail(err, "%s: %zu images of %dx%dx%d overflow memory sizes", src.what, n, c, H, W);
        goto fail;
    }
    ds->pixels = xmalloc(total);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && src.get(&src, rows[i], &raw, err) != JT_OK) {
            rc = JT_ERR;
            goto fail;
        }
        int ci = raw.c <= 2 ? 1 : 3;
        if (spec->color == DATA_COLOR_AUTO && ci != c_first) {
            item_suffix(&src, rows[i], where, sizeof where);
            rc = jt_fail(err,
                         "image %zu of %s%s is %s but image %zu is %s (use --color gray or "
                         "--color rgb)",
                         rows[i], src.what, where, chan_word(ci), rows[0], chan_word(c_first));
            goto fail;
        }
        if (transform_one(spec, &src, rows[i], &raw, c, H, W, &tmp, &tmp_cap, ds->pixels + i * per,
                          err) != JT_OK) {
            rc = JT_ERR;
            goto fail;
        }
    }
    free(tmp);
    tmp = NULL;
    ds->n = n;
    ds->c = c;
    ds->h = H;
    ds->w = W;
    ds->index = rows;
    rows = NULL;
    ds->labels = xmalloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        ds->labels[i] = src.labels ? src.labels[ds->index[i]] : -1;
    ds->n_source = src.n;
    ds->n_classes = src.n_classes;
    ds->flip = spec->flip;
    ds->fingerprint = fingerprint(ds);
    ds->description = describe_loaded(spec, ds, &src);
    ds->class_names = src.class_names;
    src.class_names = NULL;
    keep_item_text(ds, &src);
    data_source_free(&src);
    return JT_OK;
fail:
    free(tmp);
    free(rows);
    data_source_free(&src);
    data_free(ds);
    return rc;
}

void data_free(Dataset *ds) {
    free(ds->pixels);
    data_latent_free(ds->latent);
    free(ds->labels);
    free(ds->index);
    if (ds->class_names)
        for (int k = 0; k < ds->n_classes; k++)
            free(ds->class_names[k]);
    free(ds->class_names);
    free_rows(ds->item_names, ds->n);
    free_rows(ds->captions, ds->n);
    free(ds->description);
    memset(ds, 0, sizeof *ds);
}

int data_subset(const Dataset *src, const size_t *rows, size_t k, Dataset *out, JtError *err) {
    memset(out, 0, sizeof *out);
    if (k == 0) return jt_fail(err, "empty subset of the dataset");
    for (size_t i = 0; i < k; i++)
        if (rows[i] >= src->n)
            return jt_fail(err, "subset row %zu is out of range (the dataset has %zu rows)",
                           rows[i], src->n);
    size_t per = (size_t)src->c * (size_t)src->h * (size_t)src->w;
    *out = *src;
    out->n = k;
    out->pixels = src->pixels ? xmalloc(k * per) : NULL;
    if (src->latent) data_latent_copy_rows(src, rows, k, out);
    out->labels = xmalloc(k * sizeof(int));
    out->index = xmalloc(k * sizeof(size_t));
    for (size_t i = 0; i < k; i++) {
        if (src->pixels) memcpy(out->pixels + i * per, src->pixels + rows[i] * per, per);
        out->labels[i] = src->labels[rows[i]];
        out->index[i] = src->index[rows[i]];
    }
    out->class_names = src->class_names
                           ? data_names_dup((const char *const *)src->class_names, src->n_classes)
                           : NULL;
    out->item_names = dup_rows(src->item_names, rows, k);
    out->captions = dup_rows(src->captions, rows, k);
    out->fingerprint = fingerprint(out);
    uint64_t rh = HASH_FNV_OFFSET;
    for (size_t i = 0; i < k; i++) {
        unsigned char le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (unsigned char)((uint64_t)rows[i] >> (8 * b));
        rh = hash_fnv1a(rh, le, 8);
    }
    size_t cap = strlen(src->description) + 64;
    out->description = xmalloc(cap);
    snprintf(out->description, cap, "%s;rows=%zu:%016llx", src->description, k,
             (unsigned long long)rh);
    return JT_OK;
}

/* ---- access ---------------------------------------------------------------------------------- */

float data_scale_u8(uint8_t v) {
    /* torchvision ToTensor then Normalize(0.5, 0.5), both in float32. */
    float x = (float)v / 255.0f;
    return (x - 0.5f) / 0.5f;
}

void data_image_f32(const Dataset *ds, size_t row, int flip, float *out) {
    CHECK(row < ds->n, "row %zu of %zu", row, ds->n);
    if (ds->latent) {
        CHECK(!flip, "a latent row cannot be flipped");
        data_latent_mean_f32(ds, row, out);
        return;
    }
    size_t per = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    const uint8_t *p = ds->pixels + row * per;
    for (size_t i = 0; i < per; i++)
        out[i] = data_scale_u8(p[i]);
    if (flip) data_flip_f32(out, ds->c, ds->h, ds->w);
}

void data_batch_f32(const Dataset *ds, const size_t *rows, const uint8_t *flips, size_t b,
                    float *out) {
    size_t per = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    for (size_t i = 0; i < b; i++)
        data_image_f32(ds, rows[i], flips ? flips[i] : 0, out + i * per);
}

float *data_images_f32(const Dataset *ds) {
    size_t per = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w, total;
    CHECK(jt_mul_size(per, ds->n, &total) && total <= SIZE_MAX / sizeof(float), "too large");
    float *out = xmalloc(total * sizeof(float));
    for (size_t i = 0; i < ds->n; i++)
        data_image_f32(ds, i, 0, out + i * per);
    return out;
}

const char *data_item_name(const Dataset *ds, size_t row) {
    return ds->item_names && row < ds->n ? ds->item_names[row] : NULL;
}

const char *data_item_caption(const Dataset *ds, size_t row) {
    return ds->captions && row < ds->n ? ds->captions[row] : NULL;
}

const char *data_class_name(const Dataset *ds, int label) {
    if (!ds->class_names || label < 0 || label >= ds->n_classes) return NULL;
    return ds->class_names[label];
}

const char *data_fingerprint_hex(const Dataset *ds, char buf[17]) {
    snprintf(buf, 17, "%016llx", (unsigned long long)ds->fingerprint);
    return buf;
}
