/* npy.c: reader and writer for NumPy .npy files (see npy.h). The header is a Python dict literal,
 * e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }, which is parsed here by a
 * small tokenizer that accepts exactly the literals numpy writes (strings, True/False, tuples of
 * integers) in any key order; anything else is an error naming the file. */
#include "io/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host ('<' dtypes are read and written as they are in memory)"
#endif

static const unsigned char NPY_MAGIC[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
enum { NPY_PREAMBLE_V1 = 10, NPY_PREAMBLE_V2 = 12, NPY_ALIGN = 64 };
/* Cap on the header text: numpy's own limit for reading is 10000 bytes by default; a larger value
 * means a corrupt file rather than an array. */
enum { NPY_HEADER_MAX = 1 << 20 };

size_t npy_dtype_size(NpyDtype t) {
    switch (t) {
    case NPY_U8:
        return 1;
    case NPY_I32:
        return 4;
    case NPY_I64:
        return 8;
    case NPY_F32:
        return 4;
    case NPY_F64:
        return 8;
    }
    CHECK(0, "bad NpyDtype %d", (int)t);
    return 0;
}

const char *npy_dtype_descr(NpyDtype t) {
    switch (t) {
    case NPY_U8:
        return "|u1";
    case NPY_I32:
        return "<i4";
    case NPY_I64:
        return "<i8";
    case NPY_F32:
        return "<f4";
    case NPY_F64:
        return "<f8";
    }
    CHECK(0, "bad NpyDtype %d", (int)t);
    return "";
}

const char *npy_shape_str(const NpyHeader *h, char *buf, size_t cap) {
    size_t used = 0;
    int k = snprintf(buf, cap, "(");
    used = k > 0 ? (size_t)k : 0;
    for (int i = 0; i < h->ndim && used < cap; i++) {
        k = snprintf(buf + used, cap - used, "%s%zu", i ? ", " : "", h->shape[i]);
        if (k > 0) used += (size_t)k;
    }
    if (used < cap) snprintf(buf + used, cap - used, h->ndim == 1 ? ",)" : ")");
    return buf;
}

/* ---- low-level I/O ------------------------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t n, off_t off, int positional) {
    const char *p = buf;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t k = positional ? pwrite(fd, p, chunk, off) : write(fd, p, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
        off += k;
    }
    return 0;
}

/* Returns bytes read (less than n only at end of file), or -1. */
static ssize_t read_all(int fd, void *buf, size_t n, off_t off) {
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        size_t chunk = n - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : n - got;
        ssize_t k = pread(fd, p + got, chunk, off + (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* A temporary file next to path (core/common.h: recognisable, stale ones swept). */
static int tmp_open(const char *path, char **tmp, JtError *err) {
    return jt_tmp_open(path, tmp, err);
}

/* fsync + rename tmp over path; on failure unlinks tmp. Does not close fd. */
static int tmp_commit(int fd, char *tmp, const char *path, JtError *err) {
    int rc = JT_OK;
    if (fsync(fd) != 0) {
        rc = jt_fail(err, "%s: fsync failed: %s", path, strerror(errno));
    } else if (rename(tmp, path) != 0) {
        rc = jt_fail(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    }
    if (rc != JT_OK) unlink(tmp);
    free(tmp);
    return rc;
}

/* ---- header text ---------------------------------------------------------------------------- */

typedef struct {
    const char *s, *end;
} Lex;

static void lex_ws(Lex *x) {
    while (x->s < x->end && (*x->s == ' ' || *x->s == '\t' || *x->s == '\n' || *x->s == '\r'))
        x->s++;
}

static int lex_char(Lex *x, char c) {
    lex_ws(x);
    if (x->s < x->end && *x->s == c) {
        x->s++;
        return 1;
    }
    return 0;
}

/* A quoted string (no escapes: numpy never writes any in these keys/values) into out. */
static int lex_string(Lex *x, char *out, size_t cap) {
    lex_ws(x);
    if (x->s >= x->end || (*x->s != '\'' && *x->s != '"')) return 0;
    char q = *x->s++;
    size_t n = 0;
    while (x->s < x->end && *x->s != q) {
        if (*x->s == '\\' || n + 1 >= cap) return 0;
        out[n++] = *x->s++;
    }
    if (x->s >= x->end) return 0;
    x->s++;
    out[n] = '\0';
    return 1;
}

static int lex_word(Lex *x, const char *w) {
    lex_ws(x);
    size_t n = strlen(w);
    if ((size_t)(x->end - x->s) >= n && memcmp(x->s, w, n) == 0) {
        x->s += n;
        return 1;
    }
    return 0;
}

static int parse_descr(const char *d, NpyDtype *t) {
    static const struct {
        const char *s;
        NpyDtype t;
    } table[] = {{"|u1", NPY_U8},  {"<u1", NPY_U8},  {">u1", NPY_U8},  {"u1", NPY_U8},
                 {"|b1", NPY_U8}, /* bool stored as bytes 0/1 */
                 {"<i4", NPY_I32}, {"<i8", NPY_I64}, {"<f4", NPY_F32}, {"<f8", NPY_F64}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(d, table[i].s) == 0) {
            *t = table[i].t;
            return 1;
        }
    return 0;
}

/* Parses the dict text into h (dtype, ndim, shape). */
static int parse_header_text(const char *path, const char *text, size_t len, NpyHeader *h,
                             JtError *err) {
    Lex x = {text, text + len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!lex_char(&x, '{')) return jt_fail(err, "%s: .npy header is not a dict", path);
    for (;;) {
        if (lex_char(&x, '}')) break;
        char key[64];
        if (!lex_string(&x, key, sizeof key) || !lex_char(&x, ':'))
            return jt_fail(err, "%s: malformed .npy header near \"%.20s\"", path, x.s);
        if (strcmp(key, "descr") == 0) {
            char d[64];
            lex_ws(&x);
            if (x.s < x.end && *x.s == '[')
                return jt_fail(err, "%s: structured dtypes are not supported", path);
            if (!lex_string(&x, d, sizeof d))
                return jt_fail(err, "%s: malformed 'descr' in .npy header", path);
            if (!parse_descr(d, &h->dtype)) {
                if (d[0] == '>')
                    return jt_fail(err, "%s: big-endian dtype '%s' is not supported", path, d);
                return jt_fail(err,
                               "%s: dtype '%s' is not supported (expected one of |u1 <i4 <i8 "
                               "<f4 <f8)",
                               path, d);
            }
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (lex_word(&x, "True"))
                return jt_fail(err,
                               "%s: Fortran-order arrays are not supported (save with "
                               "numpy.ascontiguousarray)",
                               path);
            if (!lex_word(&x, "False"))
                return jt_fail(err, "%s: malformed 'fortran_order' in .npy header", path);
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (!lex_char(&x, '('))
                return jt_fail(err, "%s: malformed 'shape' in .npy header", path);
            h->ndim = 0;
            for (;;) {
                if (lex_char(&x, ')')) break;
                lex_ws(&x);
                if (x.s >= x.end || *x.s < '0' || *x.s > '9')
                    return jt_fail(err, "%s: malformed 'shape' in .npy header", path);
                uint64_t v = 0;
                while (x.s < x.end && *x.s >= '0' && *x.s <= '9') {
                    if (v > (UINT64_MAX - 9) / 10)
                        return jt_fail(err, "%s: shape entry too large", path);
                    v = v * 10 + (uint64_t)(*x.s++ - '0');
                }
                if (x.s < x.end && *x.s == 'L') x.s++; /* Python 2 longs */
                if (h->ndim >= NPY_MAX_DIMS)
                    return jt_fail(err, "%s: more than %d dimensions", path, NPY_MAX_DIMS);
                if (v > SIZE_MAX) return jt_fail(err, "%s: shape entry too large", path);
                h->shape[h->ndim++] = (size_t)v;
                if (lex_char(&x, ')')) break;
                if (!lex_char(&x, ','))
                    return jt_fail(err, "%s: malformed 'shape' in .npy header", path);
            }
            have_shape = 1;
        } else {
            return jt_fail(err, "%s: unexpected key '%s' in .npy header", path, key);
        }
        if (lex_char(&x, '}')) break;
        if (!lex_char(&x, ','))
            return jt_fail(err, "%s: malformed .npy header near \"%.20s\"", path, x.s);
    }
    if (!have_descr || !have_order || !have_shape)
        return jt_fail(err, "%s: .npy header lacks '%s'", path,
                       !have_descr   ? "descr"
                       : !have_order ? "fortran_order"
                                     : "shape");
    return JT_OK;
}

/* Reads and validates the header from an open fd (file size included). */
static int parse_fd(int fd, const char *path, NpyHeader *h, JtError *err) {
    memset(h, 0, sizeof *h);
    unsigned char pre[NPY_PREAMBLE_V2];
    ssize_t got = read_all(fd, pre, sizeof pre, 0);
    if (got < 0) return jt_fail(err, "%s: read failed: %s", path, strerror(errno));
    if (got < NPY_PREAMBLE_V1 || memcmp(pre, NPY_MAGIC, 6) != 0)
        return jt_fail(err, "%s: not a .npy file (bad magic)", path);
    int major = pre[6];
    size_t hlen, pre_len;
    if (major == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        pre_len = NPY_PREAMBLE_V1;
    } else if (major == 2 || major == 3) {
        if (got < NPY_PREAMBLE_V2) return jt_fail(err, "%s: truncated .npy header", path);
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        pre_len = NPY_PREAMBLE_V2;
    } else {
        return jt_fail(err, "%s: unsupported .npy format version %d.%d", path, major, pre[7]);
    }
    if (hlen > NPY_HEADER_MAX)
        return jt_fail(err, "%s: .npy header length %zu is implausible (corrupt file?)", path,
                       hlen);
    char *text = xmalloc(hlen + 1);
    got = read_all(fd, text, hlen, (off_t)pre_len);
    if (got != (ssize_t)hlen) {
        free(text);
        return jt_fail(err, "%s: truncated .npy header", path);
    }
    text[hlen] = '\0';
    int rc = parse_header_text(path, text, hlen, h, err);
    free(text);
    if (rc != JT_OK) return rc;
    h->version = major;
    h->data_offset = pre_len + hlen;
    h->count = 1;
    for (int i = 0; i < h->ndim; i++)
        if (!jt_mul_size(h->count, h->shape[i], &h->count))
            return jt_fail(err, "%s: shape overflows", path);
    size_t bytes = 0;
    if (!jt_mul_size(h->count, npy_dtype_size(h->dtype), &bytes) ||
        bytes > (size_t)INT64_MAX - h->data_offset)
        return jt_fail(err, "%s: shape overflows", path);
    struct stat st;
    if (fstat(fd, &st) != 0) return jt_fail(err, "%s: stat failed: %s", path, strerror(errno));
    uint64_t want = (uint64_t)h->data_offset + bytes, have = (uint64_t)st.st_size;
    if (have < want) {
        char sb[160];
        return jt_fail(err, "%s: truncated: shape %s of %s needs %llu bytes of data, file has %llu",
                       path, npy_shape_str(h, sb, sizeof sb), npy_dtype_descr(h->dtype),
                       (unsigned long long)bytes,
                       (unsigned long long)(have > h->data_offset ? have - h->data_offset : 0));
    }
    if (have > want)
        return jt_fail(err, "%s: %llu bytes after the end of the array (corrupt file?)", path,
                       (unsigned long long)(have - want));
    return JT_OK;
}

static int open_ro(const char *path, JtError *err) {
    return jt_open_regular(path, O_RDONLY, err); /* a FIFO would block open */
}

int npy_read_header(const char *path, NpyHeader *h, JtError *err) {
    int fd = open_ro(path, err);
    if (fd < 0) return JT_ERR;
    int rc = parse_fd(fd, path, h, err);
    close(fd);
    return rc;
}

int npy_read(const char *path, NpyHeader *h, void **data, JtError *err) {
    *data = NULL;
    int fd = open_ro(path, err);
    if (fd < 0) return JT_ERR;
    int rc = parse_fd(fd, path, h, err);
    if (rc == JT_OK) {
        size_t bytes = h->count * npy_dtype_size(h->dtype);
        char what[600], sb[160];
        snprintf(what, sizeof what, "%s: shape %s of %s", path, npy_shape_str(h, sb, sizeof sb),
                 npy_dtype_descr(h->dtype));
        if (jt_check_memory(bytes, what, err) != JT_OK) {
            close(fd);
            return JT_ERR;
        }
        void *buf = xmalloc(bytes);
        ssize_t got = read_all(fd, buf, bytes, (off_t)h->data_offset);
        if (got != (ssize_t)bytes) {
            free(buf);
            rc = jt_fail(err, "%s: read failed: %s", path, got < 0 ? strerror(errno) : "short");
        } else {
            *data = buf;
        }
    }
    close(fd);
    return rc;
}

int npy_read_as(const char *path, NpyDtype want, NpyHeader *h, void **data, JtError *err) {
    *data = NULL;
    if (npy_read_header(path, h, err) != JT_OK) return JT_ERR;
    if (h->dtype != want)
        return jt_fail(err, "%s: dtype is %s, expected %s", path, npy_dtype_descr(h->dtype),
                       npy_dtype_descr(want));
    return npy_read(path, h, data, err);
}

/* Builds the preamble + header for (dtype, shape) into a malloc'd buffer; returns its length. */
static size_t build_header(NpyDtype dtype, int ndim, const size_t *shape, char **out) {
    char dict[64 + NPY_MAX_DIMS * 24];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     npy_dtype_descr(dtype));
    for (int i = 0; i < ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%zu", i ? ", " : "", shape[i]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", ndim == 1 ? "," : "");
    /* Exactly numpy's _wrap_header: room for the first axis to grow to 21 digits, then spaces up
     * to a 64-byte boundary (at least one), then '\n'; so the bytes equal numpy.save's. */
    size_t growth = 0;
    if (ndim > 0) {
        char digits[32];
        growth = 21 - (size_t)snprintf(digits, sizeof digits, "%zu", shape[0]);
    }
    size_t hlen0 = (size_t)n + growth + 1;
    size_t pad = NPY_ALIGN - (NPY_PREAMBLE_V1 + hlen0) % NPY_ALIGN;
    size_t hlen = hlen0 + pad, total = NPY_PREAMBLE_V1 + hlen;
    CHECK(hlen <= 65535, "npy header too long");
    char *buf = xmalloc(total);
    memcpy(buf, NPY_MAGIC, 6);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + NPY_PREAMBLE_V1, dict, (size_t)n);
    memset(buf + NPY_PREAMBLE_V1 + n, ' ', hlen - (size_t)n - 1);
    buf[total - 1] = '\n';
    *out = buf;
    return total;
}

static int check_shape(const char *path, NpyDtype dtype, int ndim, const size_t *shape,
                       size_t *bytes, JtError *err) {
    if (ndim < 0 || ndim > NPY_MAX_DIMS)
        return jt_fail(err, "%s: cannot write %d dimensions", path, ndim);
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        if (!jt_mul_size(count, shape[i], &count)) return jt_fail(err, "%s: shape overflows", path);
    if (!jt_mul_size(count, npy_dtype_size(dtype), bytes) || *bytes > (size_t)INT64_MAX / 2)
        return jt_fail(err, "%s: shape overflows", path);
    return JT_OK;
}

int npy_write(const char *path, NpyDtype dtype, int ndim, const size_t *shape, const void *data,
              JtError *err) {
    size_t bytes = 0;
    if (check_shape(path, dtype, ndim, shape, &bytes, err) != JT_OK) return JT_ERR;
    char *hdr;
    size_t hlen = build_header(dtype, ndim, shape, &hdr);
    char *tmp;
    int fd = tmp_open(path, &tmp, err);
    if (fd < 0) {
        free(hdr);
        return JT_ERR;
    }
    int rc = JT_OK;
    if (write_all(fd, hdr, hlen, 0, 0) != 0 || write_all(fd, data, bytes, 0, 0) != 0) {
        rc = jt_fail(err, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
    } else {
        rc = tmp_commit(fd, tmp, path, err);
    }
    if (close(fd) != 0 && rc == JT_OK)
        rc = jt_fail(err, "%s: close failed: %s", path, strerror(errno));
    free(hdr);
    return rc;
}

/* ---- row access ----------------------------------------------------------------------------- */

static void file_set(NpyFile *f, int fd, int writable, const NpyHeader *h, const char *path) {
    f->fd = fd;
    f->writable = writable;
    f->hdr = *h;
    f->rows = h->ndim >= 1 ? h->shape[0] : 1;
    f->row_bytes = npy_dtype_size(h->dtype);
    for (int i = 1; i < h->ndim; i++)
        f->row_bytes *= h->shape[i];
    f->path = xstrdup(path);
}

int npy_create(NpyFile *f, const char *path, NpyDtype dtype, int ndim, const size_t *shape,
               JtError *err) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (ndim < 1) return jt_fail(err, "%s: a row store needs at least one dimension", path);
    size_t bytes = 0;
    if (check_shape(path, dtype, ndim, shape, &bytes, err) != JT_OK) return JT_ERR;
    char *hdr;
    size_t hlen = build_header(dtype, ndim, shape, &hdr);
    char *tmp;
    int fd = tmp_open(path, &tmp, err);
    if (fd < 0) {
        free(hdr);
        return JT_ERR;
    }
    /* ftruncate extends with zeros (sparse where the file system allows), so unwritten rows read
     * back as 0 and the file already has the size numpy expects. */
    if (write_all(fd, hdr, hlen, 0, 0) != 0 || ftruncate(fd, (off_t)(hlen + bytes)) != 0) {
        jt_fail(err, "%s: cannot create: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        free(hdr);
        close(fd);
        return JT_ERR;
    }
    free(hdr);
    if (tmp_commit(fd, tmp, path, err) != JT_OK) {
        close(fd);
        return JT_ERR;
    }
    NpyHeader h = {.dtype = dtype, .ndim = ndim, .count = 1, .data_offset = hlen, .version = 1};
    for (int i = 0; i < ndim; i++) {
        h.shape[i] = shape[i];
        h.count *= shape[i];
    }
    file_set(f, fd, 1, &h, path);
    return JT_OK;
}

int npy_open(NpyFile *f, const char *path, int writable, JtError *err) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    int fd = jt_open_regular(path, writable ? O_RDWR : O_RDONLY, err);
    if (fd < 0) return JT_ERR;
    NpyHeader h;
    if (parse_fd(fd, path, &h, err) != JT_OK) {
        close(fd);
        return JT_ERR;
    }
    file_set(f, fd, writable, &h, path);
    return JT_OK;
}

static int row_range(NpyFile *f, size_t row0, size_t nrows, off_t *off, size_t *bytes,
                     JtError *err) {
    CHECK(f->fd >= 0, "npy file not open");
    if (row0 > f->rows || nrows > f->rows - row0)
        return jt_fail(err, "%s: rows [%zu, %zu) out of range (%zu rows)", f->path, row0,
                       row0 + nrows, f->rows);
    *off = (off_t)(f->hdr.data_offset + row0 * f->row_bytes);
    *bytes = nrows * f->row_bytes;
    return JT_OK;
}

int npy_write_rows(NpyFile *f, size_t row0, size_t nrows, const void *buf, JtError *err) {
    CHECK(f->writable, "npy file opened read-only");
    off_t off = 0;
    size_t bytes = 0;
    if (row_range(f, row0, nrows, &off, &bytes, err) != JT_OK) return JT_ERR;
    if (write_all(f->fd, buf, bytes, off, 1) != 0)
        return jt_fail(err, "%s: write failed: %s", f->path, strerror(errno));
    return JT_OK;
}

int npy_read_rows(NpyFile *f, size_t row0, size_t nrows, void *buf, JtError *err) {
    off_t off = 0;
    size_t bytes = 0;
    if (row_range(f, row0, nrows, &off, &bytes, err) != JT_OK) return JT_ERR;
    ssize_t got = read_all(f->fd, buf, bytes, off);
    if (got != (ssize_t)bytes)
        return jt_fail(err, "%s: read failed: %s", f->path, got < 0 ? strerror(errno) : "short");
    return JT_OK;
}

int npy_sync(NpyFile *f, JtError *err) {
    if (f->fd >= 0 && f->writable && fsync(f->fd) != 0)
        return jt_fail(err, "%s: fsync failed: %s", f->path, strerror(errno));
    return JT_OK;
}

int npy_close(NpyFile *f, JtError *err) {
    int rc = JT_OK;
    if (f->fd >= 0) {
        rc = npy_sync(f, err);
        if (close(f->fd) != 0 && rc == JT_OK)
            rc = jt_fail(err, "%s: close failed: %s", f->path, strerror(errno));
    }
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
    return rc;
}
