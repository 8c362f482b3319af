/* npy_images.c: images from a NumPy uint8 array, (N, H, W) gray or (N, H, W, C) with C = 1 (gray),
 * 3 (RGB) or 4 (RGBA), C order, as numpy.save writes a stack of images; labels optionally from a
 * second .npy of integers, shape (N,). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/source.h"
#include "io/npy.h"

typedef struct {
    uint8_t *data; /* (n, h, w, c) */
    int h, w, c;
} NpyImpl;

static int npyimg_get(DataSource *src, size_t i, DataRaw *img, JtError *err) {
    const NpyImpl *m = src->impl;
    size_t per = (size_t)m->h * (size_t)m->w * (size_t)m->c;
    img->data = m->data + i * per;
    img->h = m->h;
    img->w = m->w;
    img->c = m->c;
    img->sy = (ptrdiff_t)m->w * m->c;
    img->sx = m->c;
    img->sc = 1;
    return JT_OK;
}

static void npyimg_free(DataSource *src) {
    NpyImpl *m = src->impl;
    if (m) free(m->data);
    free(m);
    src->impl = NULL;
}

static int read_labels(DataSource *src, const char *path, JtError *err) {
    NpyHeader h;
    void *raw;
    if (npy_read(path, &h, &raw, err) != JT_OK) return JT_ERR;
    char sb[160];
    int rc = JT_OK;
    if (h.dtype != NPY_U8 && h.dtype != NPY_I32 && h.dtype != NPY_I64) {
        rc = jt_fail(err, "%s: labels have dtype %s, expected an integer type (|u1, <i4, <i8)",
                     path, npy_dtype_descr(h.dtype));
    } else if (h.ndim != 1 || h.shape[0] != src->n) {
        rc = jt_fail(err, "%s: labels have shape %s, expected (%zu,) to match %s", path,
                     npy_shape_str(&h, sb, sizeof sb), src->n, src->what);
    }
    if (rc != JT_OK) {
        free(raw);
        return rc;
    }
    src->labels = xmalloc(src->n * sizeof(int));
    int maxl = 0;
    for (size_t i = 0; i < src->n; i++) {
        int64_t v = h.dtype == NPY_U8    ? ((const uint8_t *)raw)[i]
                    : h.dtype == NPY_I32 ? ((const int32_t *)raw)[i]
                                         : ((const int64_t *)raw)[i];
        /* Labels index class tables, so they must be small non-negative integers. */
        if (v < 0 || v > 65535) {
            free(raw);
            return jt_fail(err, "%s: label %lld of image %zu is out of range (expected 0..65535)",
                           path, (long long)v, i);
        }
        src->labels[i] = (int)v;
        if (v > maxl) maxl = (int)v;
    }
    free(raw);
    src->n_classes = maxl + 1;
    src->class_names = xcalloc((size_t)src->n_classes, sizeof(char *));
    for (int k = 0; k < src->n_classes; k++) {
        char b[16];
        snprintf(b, sizeof b, "%d", k);
        src->class_names[k] = xstrdup(b);
    }
    return JT_OK;
}

int data_open_npy(DataSource *src, const char *images, const char *labels, JtError *err) {
    memset(src, 0, sizeof *src);
    NpyHeader h;
    if (npy_read_header(images, &h, err) != JT_OK) return JT_ERR;
    char sb[160];
    if (h.dtype != NPY_U8)
        return jt_fail(err, "%s: dtype is %s, expected |u1 (uint8 images, 0..255)", images,
                       npy_dtype_descr(h.dtype));
    if (h.ndim != 3 && h.ndim != 4)
        return jt_fail(err, "%s: shape %s is not (N, H, W) or (N, H, W, C)", images,
                       npy_shape_str(&h, sb, sizeof sb));
    size_t c = h.ndim == 4 ? h.shape[3] : 1;
    if (c < 1 || c > 4 || c == 2)
        return jt_fail(err, "%s: shape %s has %zu channels, expected 1, 3 or 4 (N, H, W, C)",
                       images, npy_shape_str(&h, sb, sizeof sb), c);
    if (h.shape[0] == 0)
        return jt_fail(err, "%s: holds no images (shape %s)", images,
                       npy_shape_str(&h, sb, sizeof sb));
    if (h.shape[1] == 0 || h.shape[2] == 0 || h.shape[1] > 65536 || h.shape[2] > 65536)
        return jt_fail(err, "%s: images of %zux%zu are not usable", images, h.shape[1], h.shape[2]);
    void *data;
    if (npy_read(images, &h, &data, err) != JT_OK) return JT_ERR;
    NpyImpl *m = xcalloc(1, sizeof *m);
    m->data = data;
    m->h = (int)h.shape[1];
    m->w = (int)h.shape[2];
    m->c = (int)c;
    src->impl = m;
    src->get = npyimg_get;
    src->free_impl = npyimg_free;
    src->what = xstrdup(images);
    src->n = h.shape[0];
    if (labels && read_labels(src, labels, err) != JT_OK) {
        data_source_free(src);
        return JT_ERR;
    }
    return JT_OK;
}
