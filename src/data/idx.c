/* idx.c: MNIST / Fashion-MNIST IDX files (Y. LeCun's format: big-endian magic 0x0000080N for
 * unsigned bytes in N dimensions, then N big-endian uint32 sizes, then the data), raw or gzip'd
 * (zlib's gzread reads both). Images are idx3 (N, H, W), labels idx1 (N). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/source.h"

typedef struct {
    uint8_t *data; /* (dims[0], dims[1], ...) */
    int ndim;
    size_t dims[3];
    size_t count;
} IdxArray;

typedef struct {
    IdxArray images;
} IdxImpl;

static int gz_fail(gzFile gz, const char *path, const char *what, JtError *err) {
    int code = Z_OK;
    const char *msg = gzerror(gz, &code);
    if (code != Z_OK && code != Z_STREAM_END) {
        /* zlib prefixes its message with the path; the message names the file once. */
        size_t n = strlen(path);
        if (strncmp(msg, path, n) == 0 && msg[n] == ':') msg += n + (msg[n + 1] == ' ' ? 2 : 1);
        return jt_fail(err, "%s: truncated or corrupt gzip stream (%s)", path, msg);
    }
    return jt_fail(err, "%s: truncated while reading the %s", path, what);
}

/* Reads up to n bytes; returns bytes read, or -1 on a zlib error. */
static long long gz_read_n(gzFile gz, uint8_t *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        unsigned chunk = (unsigned)(n - got > (1u << 30) ? (1u << 30) : n - got);
        int k = gzread(gz, buf + got, chunk);
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (long long)got;
}

/* Reads an IDX file of unsigned bytes with want_ndim dimensions; kind names it in messages. */
static int idx_read(const char *path, int want_ndim, const char *kind, IdxArray *a, JtError *err) {
    memset(a, 0, sizeof *a);
    struct stat st;
    if (stat(path, &st) != 0) return jt_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return jt_fail(err, "%s: is a directory, expected an IDX file", path);
    if (!S_ISREG(st.st_mode)) /* a FIFO would block gzopen */
        return jt_fail(err, "%s: not a regular file, expected an IDX file", path);
    gzFile gz = gzopen(path, "rb");
    if (!gz) return jt_fail(err, "%s: cannot open: %s", path, strerror(errno ? errno : ENOMEM));
    gzbuffer(gz, 1 << 17);
    int rc = JT_ERR;
    uint8_t hdr[4 + 4 * 3];
    size_t hlen = 4 + 4 * (size_t)want_ndim;
    long long got = gz_read_n(gz, hdr, hlen);
    if (got < 4) {
        gz_fail(gz, path, "header", err);
        goto done;
    }
    /* The magic first, so that a wrong file says so even when it is also short. */
    uint32_t magic =
        (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    uint32_t want = 0x00000800u | (uint32_t)want_ndim;
    if (magic != want) {
        jt_fail(err, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s)", path, magic, want, kind);
        goto done;
    }
    if (got != (long long)hlen) {
        gz_fail(gz, path, "header", err);
        goto done;
    }
    a->ndim = want_ndim;
    a->count = 1;
    for (int i = 0; i < want_ndim; i++) {
        const uint8_t *p = hdr + 4 + 4 * i;
        a->dims[i] = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (a->dims[i] == 0) {
            jt_fail(err, "%s: IDX header has a zero dimension (no %s)", path, kind);
            goto done;
        }
        if (!jt_mul_size(a->count, a->dims[i], &a->count)) {
            jt_fail(err, "%s: IDX header sizes overflow", path);
            goto done;
        }
    }
    /* Grow the buffer as data arrives (from 1 MiB, doubling), so that a corrupt header announcing
     * terabytes fails as "truncated" instead of exhausting memory, and a few bytes of file never
     * cost more than a MiB. */
    size_t cap = a->count < ((size_t)1 << 20) ? a->count : ((size_t)1 << 20), have = 0;
    a->data = xmalloc(cap);
    while (have < a->count) {
        if (have == cap) {
            cap = cap > a->count / 2 ? a->count : cap * 2;
            a->data = xrealloc(a->data, cap);
        }
        long long k = gz_read_n(gz, a->data + have, cap - have);
        if (k < 0) {
            gz_fail(gz, path, kind, err);
            goto done;
        }
        if (k == 0) break;
        have += (size_t)k;
    }
    if (have < a->count) {
        int code = Z_OK;
        gzerror(gz, &code);
        if (code != Z_OK && code != Z_STREAM_END) {
            gz_fail(gz, path, kind, err);
        } else if (want_ndim == 3) {
            jt_fail(err,
                    "%s: truncated: header announces %zu %s of %zux%zu (%zu bytes), file has %zu",
                    path, a->dims[0], kind, a->dims[1], a->dims[2], a->count, have);
        } else {
            jt_fail(err, "%s: truncated: header announces %zu %s, file has %zu", path, a->dims[0],
                    kind, have);
        }
        goto done;
    }
    uint8_t extra[256];
    long long more = gz_read_n(gz, extra, sizeof extra);
    if (more < 0) {
        gz_fail(gz, path, kind, err);
        goto done;
    }
    if (more > 0) {
        jt_fail(err, "%s: more data than the header announces (corrupt file?)", path);
        goto done;
    }
    rc = JT_OK;
done:;
    int close_rc = gzclose_r(gz);
    if (rc == JT_OK && close_rc != Z_OK) {
        rc = jt_fail(err, "%s: truncated or corrupt gzip stream (%s)", path, zError(close_rc));
    }
    if (rc != JT_OK) {
        free(a->data);
        a->data = NULL;
    }
    return rc;
}

static int idx_get(DataSource *src, size_t i, DataRaw *img, JtError *err) {
    const IdxImpl *m = src->impl;
    size_t plane = m->images.dims[1] * m->images.dims[2];
    img->data = m->images.data + i * plane;
    img->h = (int)m->images.dims[1];
    img->w = (int)m->images.dims[2];
    img->c = 1;
    img->sy = (ptrdiff_t)m->images.dims[2];
    img->sx = 1;
    img->sc = 0;
    return JT_OK;
}

static void idx_free(DataSource *src) {
    IdxImpl *m = src->impl;
    if (m) free(m->images.data);
    free(m);
    src->impl = NULL;
}

int data_open_idx(DataSource *src, const char *images, const char *labels, const char *const *names,
                  JtError *err) {
    memset(src, 0, sizeof *src);
    IdxImpl *m = xcalloc(1, sizeof *m);
    if (idx_read(images, 3, "images", &m->images, err) != JT_OK) {
        free(m);
        return JT_ERR;
    }
    if (m->images.dims[1] > 65536 || m->images.dims[2] > 65536) {
        jt_fail(err, "%s: images of %zux%zu are implausibly large (corrupt header?)", images,
                m->images.dims[1], m->images.dims[2]);
        free(m->images.data);
        free(m);
        return JT_ERR;
    }
    src->impl = m;
    src->get = idx_get;
    src->free_impl = idx_free;
    src->what = xstrdup(images);
    src->n = m->images.dims[0];
    if (!labels) return JT_OK;

    IdxArray lab;
    if (idx_read(labels, 1, "labels", &lab, err) != JT_OK) {
        data_source_free(src);
        return JT_ERR;
    }
    if (lab.dims[0] != src->n) {
        jt_fail(err, "%s: %zu labels, but %s has %zu images", labels, lab.dims[0], images, src->n);
        free(lab.data);
        data_source_free(src);
        return JT_ERR;
    }
    src->labels = xmalloc(src->n * sizeof(int));
    int maxl = 0;
    for (size_t i = 0; i < src->n; i++) {
        src->labels[i] = lab.data[i];
        if (lab.data[i] > maxl) maxl = lab.data[i];
        if (names && lab.data[i] >= 10) {
            jt_fail(err, "%s: label %d of image %zu is out of range (expected 0..9)", labels,
                    lab.data[i], i);
            free(lab.data);
            data_source_free(src);
            return JT_ERR;
        }
    }
    free(lab.data);
    if (names) {
        src->n_classes = 10;
        src->class_names = data_names_dup(names, 10);
    } else {
        src->n_classes = maxl + 1;
        src->class_names = xcalloc((size_t)src->n_classes, sizeof(char *));
        for (int k = 0; k < src->n_classes; k++) {
            char b[16];
            snprintf(b, sizeof b, "%d", k);
            src->class_names[k] = xstrdup(b);
        }
    }
    return JT_OK;
}

/* The first of the usual spellings of an MNIST file that exists in dir, or NULL (malloc'd):
 * "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "train-images.idx3-ubyte". */
static char *mnist_find(const char *dir, const char *split, const char *kind, const char *idx) {
    static const char *const fmts[] = {"%s/%s-%s-%s-ubyte.gz", "%s/%s-%s-%s-ubyte",
                                       "%s/%s-%s.%s-ubyte"};
    size_t cap = strlen(dir) + 64;
    char *p = xmalloc(cap);
    for (int i = 0; i < 3; i++) {
        snprintf(p, cap, fmts[i], dir, split, kind, idx);
        if (access(p, F_OK) == 0) return p;
    }
    free(p);
    return NULL;
}

int data_open_mnist_dir(DataSource *src, const char *dir, int test_split, const char *const *names,
                        JtError *err) {
    memset(src, 0, sizeof *src);
    struct stat st;
    if (stat(dir, &st) != 0) return jt_fail(err, "%s: cannot open: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return jt_fail(err,
                       "%s: not a directory (give the directory holding the IDX files, or "
                       "use idx:FILE)",
                       dir);
    const char *split = test_split ? "t10k" : "train";
    char *images = mnist_find(dir, split, "images", "idx3");
    if (!images)
        return jt_fail(err, "%s: no %s-images-idx3-ubyte[.gz] here (not an MNIST-style directory)",
                       dir, split);
    char *labels = mnist_find(dir, split, "labels", "idx1");
    if (!labels) {
        free(images);
        return jt_fail(err, "%s: no %s-labels-idx1-ubyte[.gz] next to the images", dir, split);
    }
    int rc = data_open_idx(src, images, labels, names, err);
    free(images);
    free(labels);
    return rc;
}
