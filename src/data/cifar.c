/* cifar.c: CIFAR-10 binary batches (https://www.cs.toronto.edu/~kriz/cifar.html, "binary
 * version"): records of 1 label byte (0..9) and 3072 pixel bytes, 1024 red then 1024 green then
 * 1024 blue, each a 32x32 image in row-major order. The train split is data_batch_1..5.bin in
 * that order (50000 images), the test split test_batch.bin; class names come from
 * batches.meta.txt when it is there. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/source.h"

enum { CIFAR_SIDE = 32, CIFAR_PIXELS = 3 * 32 * 32, CIFAR_RECORD = 1 + CIFAR_PIXELS };

static const char *const CIFAR10_NAMES[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};

typedef struct {
    uint8_t *records; /* (n, 3073) as in the files */
} CifarImpl;

static int cifar_get(DataSource *src, size_t i, DataRaw *img, JtError *err) {
    const CifarImpl *m = src->impl;
    img->data = m->records + i * CIFAR_RECORD + 1;
    img->h = img->w = CIFAR_SIDE;
    img->c = 3;
    img->sy = CIFAR_SIDE;
    img->sx = 1;
    img->sc = CIFAR_SIDE * CIFAR_SIDE;
    return JT_OK;
}

static void cifar_free(DataSource *src) {
    CifarImpl *m = src->impl;
    if (m) free(m->records);
    free(m);
    src->impl = NULL;
}

/* Appends the records of one batch file to m->records (n records so far). */
static int cifar_read_file(const char *path, CifarImpl *m, size_t *n, JtError *err) {
    FILE *fp = jt_fopen_regular(path, err); /* a FIFO would block fopen */
    if (!fp) return JT_ERR;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return jt_fail(err, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0 || size % CIFAR_RECORD != 0) {
        fclose(fp);
        return jt_fail(err,
                       "%s: size %zu is not a positive multiple of %d (a CIFAR-10 record is 1 "
                       "label byte + 3072 pixel bytes; truncated or not CIFAR-10 binary?)",
                       path, size, CIFAR_RECORD);
    }
    size_t k = size / CIFAR_RECORD;
    char what[600];
    snprintf(what, sizeof what, "%s: %zu records of %d bytes", path, k, CIFAR_RECORD);
    if (jt_check_memory(jt_sat_mul(*n + k, CIFAR_RECORD), what, err) != JT_OK) {
        fclose(fp);
        return JT_ERR;
    }
    m->records = xrealloc(m->records, (*n + k) * CIFAR_RECORD);
    uint8_t *dst = m->records + *n * CIFAR_RECORD;
    size_t got = fread(dst, 1, size, fp);
    int bad_read = got != size || ferror(fp);
    fclose(fp);
    if (bad_read) return jt_fail(err, "%s: read failed", path);
    for (size_t r = 0; r < k; r++)
        if (dst[r * CIFAR_RECORD] >= 10)
            return jt_fail(err,
                           "%s: record %zu has label %d (CIFAR-10 labels are 0..9; CIFAR-100 "
                           "files are not supported)",
                           path, r, dst[r * CIFAR_RECORD]);
    *n += k;
    return JT_OK;
}

/* Class names from dir/batches.meta.txt (10 non-empty lines), or the standard ones. */
static char **cifar_names(const char *dir) {
    char **names = data_names_dup(CIFAR10_NAMES, 10);
    if (!dir) return names;
    size_t cap = strlen(dir) + 32;
    char *p = xmalloc(cap);
    snprintf(p, cap, "%s/batches.meta.txt", dir);
    FILE *fp = fopen(p, "r");
    free(p);
    if (!fp) return names;
    char line[256];
    char *read[10] = {0};
    int k = 0;
    while (k < 10 && fgets(line, sizeof line, fp)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        while (len > 0 && line[len - 1] == ' ')
            line[--len] = '\0';
        if (len) read[k++] = xstrdup(line);
    }
    fclose(fp);
    for (int i = 0; i < 10; i++) {
        if (k == 10) {
            free(names[i]);
            names[i] = read[i];
        } else {
            free(read[i]);
        }
    }
    return names;
}

int data_open_cifar10(DataSource *src, const char *path, int test_split, JtError *err) {
    memset(src, 0, sizeof *src);
    struct stat st;
    if (stat(path, &st) != 0) return jt_fail(err, "%s: cannot open: %s", path, strerror(errno));
    CifarImpl *m = xcalloc(1, sizeof *m);
    src->impl = m;
    src->get = cifar_get;
    src->free_impl = cifar_free;
    src->what = xstrdup(path);
    size_t n = 0;
    if (S_ISDIR(st.st_mode)) {
        size_t cap = strlen(path) + 32;
        char *f = xmalloc(cap);
        int nfiles = test_split ? 1 : 5;
        for (int b = 1; b <= nfiles; b++) {
            if (test_split)
                snprintf(f, cap, "%s/test_batch.bin", path);
            else
                snprintf(f, cap, "%s/data_batch_%d.bin", path, b);
            if (cifar_read_file(f, m, &n, err) != JT_OK) {
                free(f);
                data_source_free(src);
                return JT_ERR;
            }
        }
        free(f);
        src->class_names = cifar_names(path);
    } else {
        if (cifar_read_file(path, m, &n, err) != JT_OK) {
            data_source_free(src);
            return JT_ERR;
        }
        src->class_names = cifar_names(NULL);
    }
    src->n = n;
    src->n_classes = 10;
    src->labels = xmalloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        src->labels[i] = m->records[i * CIFAR_RECORD];
    return JT_OK;
}
