/* safetensors.c: see safetensors.h. Follows unet2d.md section 10 and the Rust reference
 * (`Metadata::validate`, `SafeTensors::read_metadata`, `prepare`). The reader is a little stricter
 * than the Rust one where that catches broken files: duplicate names (Rust keeps the last) and a
 * header that does not start with '{' are refused. The JSON itself is parsed with cJSON. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes little-endian data in place: port the byte swaps first"
#endif

typedef unsigned long long ull;

/* ---- dtypes ---- */

static const struct {
    const char *name;
    int bits;
} DTYPES[ST_NUM_DTYPES] = {
    [ST_BOOL] = {"BOOL", 8},
    [ST_U8] = {"U8", 8},
    [ST_I8] = {"I8", 8},
    [ST_F8_E5M2] = {"F8_E5M2", 8},
    [ST_F8_E4M3] = {"F8_E4M3", 8},
    [ST_F8_E8M0] = {"F8_E8M0", 8},
    [ST_I16] = {"I16", 16},
    [ST_U16] = {"U16", 16},
    [ST_F16] = {"F16", 16},
    [ST_BF16] = {"BF16", 16},
    [ST_I32] = {"I32", 32},
    [ST_U32] = {"U32", 32},
    [ST_F32] = {"F32", 32},
    [ST_C64] = {"C64", 64},
    [ST_F64] = {"F64", 64},
    [ST_I64] = {"I64", 64},
    [ST_U64] = {"U64", 64},
    [ST_F4] = {"F4", 4},
    [ST_F6_E2M3] = {"F6_E2M3", 6},
    [ST_F6_E3M2] = {"F6_E3M2", 6},
    [ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
};

const char *st_dtype_name(StDtype dt) {
    CHECK(dt >= 0 && dt < ST_NUM_DTYPES, "bad dtype %d", (int)dt);
    return DTYPES[dt].name;
}

int st_dtype_parse(const char *name, StDtype *dt) {
    for (int i = 0; i < ST_NUM_DTYPES; i++)
        if (strcmp(name, DTYPES[i].name) == 0) {
            *dt = (StDtype)i;
            return 1;
        }
    return 0;
}

int st_dtype_bits(StDtype dt) {
    CHECK(dt >= 0 && dt < ST_NUM_DTYPES, "bad dtype %d", (int)dt);
    return DTYPES[dt].bits;
}

int st_dtype_is_float(StDtype dt) {
    return dt == ST_F32 || dt == ST_F16 || dt == ST_BF16 || dt == ST_F64;
}

/* ---- half and bfloat16 ---- */

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t st_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* inf, or NaN (kept quiet, top payload bits kept) */
        if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
        return (uint16_t)(sign | 0x7c00u);
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {
        /* below 2^-14: a half subnormal, round(|f| * 2^24) to nearest even; the scaling is exact
         * and 1024 correctly encodes the smallest normal */
        float v;
        memcpy(&v, &ax, 4);
        return (uint16_t)(sign | (uint16_t)lrintf(v * 16777216.0f));
    }
    uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
}

float st_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);                                           /* nearest even */
    return (uint16_t)(x >> 16);
}

/* ---- small helpers ---- */

const char *st_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_uint(const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it)) return 0;
    double d = it->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Returns the offset of the first byte that breaks UTF-8, or n if the text is valid (no overlong
 * forms, no surrogates, nothing above U+10FFFF), as Rust's str::from_utf8 requires. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

/* ---- reader ---- */

void st_close(StFile *f) {
    if (f->fp) fclose(f->fp);
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first name that appears twice, or NULL. Sorts a copy of the pointer array. */
static const char *find_duplicate(char **names, int n) {
    if (n < 2) return NULL;
    char **s = xmalloc((size_t)n * sizeof *s);
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str_ptr);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) dup = s[i];
    free(s);
    return dup;
}

static int parse_metadata(StFile *f, const cJSON *meta, const char *path, JtError *err) {
    if (cJSON_IsNull(meta)) return JT_OK; /* Rust reads it as an absent Option */
    if (!cJSON_IsObject(meta))
        return jt_fail(err, "%s: header field '__metadata__' is not a JSON object", path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = xcalloc((size_t)n + 1, sizeof(char *));
    f->meta_values = xcalloc((size_t)n + 1, sizeof(char *));
    for (const cJSON *it = meta->child; it; it = it->next) {
        if (!cJSON_IsString(it))
            return jt_fail(err, "%s: __metadata__ entry '%s' is not a string", path, it->string);
        f->meta_keys[f->n_meta] = xstrdup(it->string);
        f->meta_values[f->n_meta] = xstrdup(it->valuestring);
        f->n_meta++;
    }
    const char *dup = find_duplicate(f->meta_keys, f->n_meta);
    if (dup) return jt_fail(err, "%s: __metadata__ entry '%s' appears twice", path, dup);
    return JT_OK;
}

static int parse_entry(StTensor *t, const cJSON *e, uint64_t data_size, const char *path,
                       JtError *err) {
    const char *name = t->name;
    if (!cJSON_IsObject(e))
        return jt_fail(err, "%s: tensor '%s': header entry is not a JSON object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) return jt_fail(err, "%s: tensor '%s': missing field 'dtype'", path, name);
    if (!sh) return jt_fail(err, "%s: tensor '%s': missing field 'shape'", path, name);
    if (!off) return jt_fail(err, "%s: tensor '%s': missing field 'data_offsets'", path, name);
    if (!cJSON_IsString(dt))
        return jt_fail(err, "%s: tensor '%s': field 'dtype' is not a string", path, name);
    if (!st_dtype_parse(dt->valuestring, &t->dtype))
        return jt_fail(err, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);

    if (!cJSON_IsArray(sh))
        return jt_fail(err, "%s: tensor '%s': field 'shape' is not a JSON array", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return jt_fail(err, "%s: tensor '%s': %d dimensions (this reader handles up to %d)", path,
                       name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    int k = 0;
    for (const cJSON *d = sh->child; d; d = d->next, k++) {
        uint64_t v;
        if (!json_uint(d, &v) || v > (uint64_t)INT64_MAX)
            return jt_fail(err, "%s: tensor '%s': shape entry %d is not a non-negative integer",
                           path, name, k);
        t->shape[k] = (int64_t)v;
    }

    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &t->begin) ||
        !json_uint(off->child->next, &t->end))
        return jt_fail(err,
                       "%s: tensor '%s': field 'data_offsets' is not an array of two "
                       "non-negative integers",
                       path, name);

    char sbuf[256];
    st_shape_str(t->ndim, t->shape, sbuf, sizeof sbuf);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        size_t prod;
        if (!jt_mul_size((size_t)numel, (size_t)t->shape[i], &prod))
            return jt_fail(err, "%s: tensor '%s': shape %s overflows", path, name, sbuf);
        numel = prod;
    }
    t->numel = numel;
    size_t nbits;
    if (!jt_mul_size((size_t)numel, (size_t)st_dtype_bits(t->dtype), &nbits))
        return jt_fail(err, "%s: tensor '%s': shape %s overflows", path, name, sbuf);
    if (nbits % 8)
        return jt_fail(err, "%s: tensor '%s': shape %s of %s is not a whole number of bytes", path,
                       name, sbuf, st_dtype_name(t->dtype));
    uint64_t need = nbits / 8;
    /* Every reader of tensors loads them whole as float32: a tensor that cannot fit in this
     * machine's memory is refused here, before anyone allocates it (issue 15, item 2). */
    char what[600];
    snprintf(what, sizeof what, "%s: tensor '%s': shape %s (%llu elements, as float32)", path, name,
             sbuf, (ull)numel);
    if (jt_check_memory(jt_sat_mul((size_t)numel, sizeof(float)), what, err) != JT_OK)
        return JT_ERR;
    if (t->end < t->begin)
        return jt_fail(err, "%s: tensor '%s': data_offsets [%llu,%llu] end before they begin", path,
                       name, (ull)t->begin, (ull)t->end);
    if (t->end - t->begin != need)
        return jt_fail(
            err, "%s: tensor '%s': data_offsets [%llu,%llu] but shape %s of %s needs %llu bytes",
            path, name, (ull)t->begin, (ull)t->end, sbuf, st_dtype_name(t->dtype), (ull)need);
    if (t->end > data_size)
        return jt_fail(err,
                       "%s: tensor '%s': data_offsets [%llu,%llu] run past the end of the data "
                       "buffer (%llu bytes; file truncated?)",
                       path, name, (ull)t->begin, (ull)t->end, (ull)data_size);
    return JT_OK;
}

typedef struct {
    uint64_t begin, end;
    int idx;
} OffsetKey;

static int cmp_by_offsets(const void *a, const void *b) {
    const OffsetKey *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

/* Sorted by (begin, end), the tensors must tile [0, data_size) exactly (Metadata::validate). */
static int check_coverage(const StFile *f, uint64_t data_size, const char *path, JtError *err) {
    int n = f->n_tensors;
    OffsetKey *order = xmalloc((size_t)(n ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = (OffsetKey){f->tensors[i].begin, f->tensors[i].end, i};
    qsort(order, (size_t)n, sizeof *order, cmp_by_offsets);
    uint64_t pos = 0;
    int rc = JT_OK;
    const StTensor *prev = NULL;
    for (int i = 0; i < n && rc == JT_OK; i++) {
        const StTensor *t = &f->tensors[order[i].idx];
        if (t->begin > pos)
            rc = jt_fail(err,
                         "%s: tensor '%s': data_offsets [%llu,%llu] leave a hole: bytes "
                         "[%llu,%llu) of the data buffer belong to no tensor",
                         path, t->name, (ull)t->begin, (ull)t->end, (ull)pos, (ull)t->begin);
        else if (t->begin < pos)
            rc = jt_fail(
                err, "%s: tensor '%s': data_offsets [%llu,%llu] overlap tensor '%s' [%llu,%llu]",
                path, t->name, (ull)t->begin, (ull)t->end, prev->name, (ull)prev->begin,
                (ull)prev->end);
        pos = t->end;
        prev = t;
    }
    if (rc == JT_OK && pos != data_size) {
        if (prev)
            rc = jt_fail(err,
                         "%s: the tensors cover %llu bytes but the data buffer holds %llu: "
                         "trailing bytes after tensor '%s'",
                         path, (ull)pos, (ull)data_size, prev->name);
        else
            rc = jt_fail(err, "%s: no tensors, but the data buffer holds %llu bytes", path,
                         (ull)data_size);
    }
    free(order);
    return rc;
}

static int parse_header(StFile *f, char *hdr, uint64_t n, const char *path, JtError *err) {
    size_t bad = utf8_invalid_at((const unsigned char *)hdr, (size_t)n);
    if (bad < n) return jt_fail(err, "%s: header is not valid UTF-8 (byte %zu)", path, bad);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)hdr[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return jt_fail(err, "%s: header is not valid JSON (control byte 0x%02x at byte %llu)",
                           path, c, (ull)i);
    }
    if (n == 0 || hdr[0] != '{')
        return jt_fail(err, "%s: header is not a JSON object (it starts with '%.10s')", path, hdr);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root) {
        long at = end ? (long)(end - hdr) : -1;
        return jt_fail(err, "%s: header is not valid JSON (error near byte %ld)", path, at);
    }
    int rc = JT_OK;
    for (const char *p = end; p < hdr + n && rc == JT_OK; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            rc = jt_fail(err, "%s: header is not valid JSON (trailing characters at byte %ld)",
                         path, (long)(p - hdr));
    if (rc == JT_OK && !cJSON_IsObject(root))
        rc = jt_fail(err, "%s: header is not a JSON object", path);
    if (rc != JT_OK) {
        cJSON_Delete(root);
        return rc;
    }

    uint64_t data_size = f->file_size - f->data_start;
    int count = cJSON_GetArraySize(root), n_meta_fields = 0;
    f->tensors = xcalloc((size_t)count + 1, sizeof *f->tensors);
    for (const cJSON *e = root->child; e && rc == JT_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (++n_meta_fields > 1)
                rc = jt_fail(err, "%s: header field '__metadata__' appears twice", path);
            else
                rc = parse_metadata(f, e, path, err);
            continue;
        }
        StTensor *t = &f->tensors[f->n_tensors++];
        t->name = xstrdup(e->string);
        rc = parse_entry(t, e, data_size, path, err);
    }
    cJSON_Delete(root);
    if (rc != JT_OK) return rc;

    char **names = xmalloc((size_t)(f->n_tensors + 1) * sizeof *names);
    for (int i = 0; i < f->n_tensors; i++)
        names[i] = f->tensors[i].name;
    const char *dup = find_duplicate(names, f->n_tensors);
    if (dup) rc = jt_fail(err, "%s: tensor '%s': the name appears twice in the header", path, dup);
    free(names);
    if (rc != JT_OK) return rc;
    return check_coverage(f, data_size, path, err);
}

int st_open(StFile *f, const char *path, JtError *err) {
    memset(f, 0, sizeof *f);
    FILE *fp = jt_fopen_regular(path, err); /* a FIFO would block fopen */
    if (!fp) return JT_ERR;
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return jt_fail(err, "%s: not a regular file", path);
    }
    f->fp = fp;
    f->path = xstrdup(path);
    f->file_size = (uint64_t)sb.st_size;
    int rc = JT_OK;
    unsigned char len8[8];
    if (f->file_size < 8 || fread(len8, 1, 8, fp) != 8) {
        rc = jt_fail(err,
                     "%s: file is %llu bytes, too short for the 8-byte header length "
                     "(truncated?)",
                     path, (ull)f->file_size);
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | len8[i];
    f->header_len = n;
    if (n > ST_MAX_HEADER) {
        rc = jt_fail(err, "%s: header length %llu exceeds the limit of %llu bytes", path, (ull)n,
                     (ull)ST_MAX_HEADER);
        goto done;
    }
    if (n > f->file_size - 8) {
        rc = jt_fail(err,
                     "%s: header length %llu runs past the end of the file (%llu bytes; "
                     "truncated?)",
                     path, (ull)n, (ull)f->file_size);
        goto done;
    }
    f->data_start = 8 + n;
    char *hdr = xmalloc((size_t)n + 1);
    if (fread(hdr, 1, (size_t)n, fp) != (size_t)n) {
        rc = jt_fail(err, "%s: cannot read the %llu-byte header", path, (ull)n);
    } else {
        hdr[n] = 0;
        rc = parse_header(f, hdr, n, path, err);
    }
    free(hdr);
done:
    if (rc != JT_OK) st_close(f);
    return rc;
}

int st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return i;
    return -1;
}

const char *st_metadata_get(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

static int read_at(StFile *f, const StTensor *t, uint64_t offset, void *dst, size_t n,
                   JtError *err) {
    if (n == 0) return JT_OK;
    if (fseeko(f->fp, (off_t)(f->data_start + offset), SEEK_SET) != 0 ||
        fread(dst, 1, n, f->fp) != n)
        return jt_fail(err, "%s: tensor '%s': cannot read %zu bytes of data (file changed?)",
                       f->path, t->name, n);
    return JT_OK;
}

int st_read_raw(StFile *f, int idx, void *dst, JtError *err) {
    CHECK(idx >= 0 && idx < f->n_tensors, "tensor index %d of %d", idx, f->n_tensors);
    const StTensor *t = &f->tensors[idx];
    return read_at(f, t, t->begin, dst, (size_t)(t->end - t->begin), err);
}

int st_read_f32_range(StFile *f, int idx, uint64_t first, uint64_t count, float *dst,
                      JtError *err) {
    CHECK(idx >= 0 && idx < f->n_tensors, "tensor index %d of %d", idx, f->n_tensors);
    const StTensor *t = &f->tensors[idx];
    CHECK(first <= t->numel && count <= t->numel - first, "range [%llu,+%llu) of %llu elements",
          (ull)first, (ull)count, (ull)t->numel);
    if (!st_dtype_is_float(t->dtype))
        return jt_fail(err, "%s: tensor '%s': dtype %s is not a float type (F32, F16, BF16, F64)",
                       f->path, t->name, st_dtype_name(t->dtype));
    size_t esize = (size_t)st_dtype_bits(t->dtype) / 8;
    uint64_t off = t->begin + first * esize;
    if (t->dtype == ST_F32) return read_at(f, t, off, dst, (size_t)count * 4, err);

    enum { CHUNK = 8192 };
    unsigned char *buf = xmalloc(CHUNK * 8);
    int rc = JT_OK;
    for (uint64_t done = 0; done < count && rc == JT_OK;) {
        size_t m = (size_t)(count - done < CHUNK ? count - done : CHUNK);
        rc = read_at(f, t, off + done * esize, buf, m * esize, err);
        for (size_t i = 0; i < m && rc == JT_OK; i++) {
            if (t->dtype == ST_F64) {
                double d;
                memcpy(&d, buf + 8 * i, 8);
                dst[done + i] = (float)d;
            } else {
                uint16_t h;
                memcpy(&h, buf + 2 * i, 2);
                dst[done + i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
            }
        }
        done += m;
    }
    free(buf);
    return rc;
}

int st_read_f32(StFile *f, int idx, float *dst, JtError *err) {
    CHECK(idx >= 0 && idx < f->n_tensors, "tensor index %d of %d", idx, f->n_tensors);
    return st_read_f32_range(f, idx, 0, f->tensors[idx].numel, dst, err);
}

/* ---- atomic files ---- */

static void atomic_release(AtomicFile *af) {
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

int atomic_file_open(AtomicFile *af, const char *path, JtError *err) {
    memset(af, 0, sizeof *af);
    char *tmp = NULL;
    int fd = jt_tmp_open(path, &tmp, err); /* recognisable, stale ones swept */
    if (fd < 0) return JT_ERR;
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return jt_fail(err, "%s: cannot open a temporary file: %s", path, strerror(e));
    }
    af->path = xstrdup(path);
    af->tmp_path = tmp;
    return JT_OK;
}

void atomic_file_abort(AtomicFile *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_release(af);
}

int atomic_file_commit(AtomicFile *af, JtError *err) {
    int ok = fflush(af->fp) == 0 && !ferror(af->fp);
    int e = errno;
    if (ok && fsync(fileno(af->fp)) != 0) ok = 0, e = errno;
    if (fclose(af->fp) != 0 && ok) ok = 0, e = errno;
    af->fp = NULL;
    if (ok && rename(af->tmp_path, af->path) != 0) ok = 0, e = errno;
    if (!ok) {
        int rc = jt_fail(err, "%s: write failed: %s", af->path, strerror(e));
        atomic_file_abort(af);
        return rc;
    }
    atomic_release(af);
    return JT_OK;
}

int atomic_file_write(const char *path, const void *data, size_t n, JtError *err) {
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != JT_OK) return JT_ERR;
    if (fwrite(data, 1, n, af.fp) != n) {
        int e = errno;
        atomic_file_abort(&af);
        return jt_fail(err, "%s: write failed: %s", path, strerror(e));
    }
    return atomic_file_commit(&af, err);
}

/* ---- writer ---- */

void st_writer_init(StWriter *w) {
    memset(w, 0, sizeof *w);
    st_writer_set_metadata(w, "format", "pt");
}

void st_writer_free(StWriter *w) {
    for (int i = 0; i < w->n; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}

void st_writer_set_metadata(StWriter *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = xstrdup(value);
            return;
        }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 4;
        w->meta_keys = xrealloc(w->meta_keys, (size_t)w->cap_meta * sizeof(char *));
        w->meta_values = xrealloc(w->meta_values, (size_t)w->cap_meta * sizeof(char *));
    }
    w->meta_keys[w->n_meta] = xstrdup(key);
    w->meta_values[w->n_meta] = xstrdup(value);
    w->n_meta++;
}

static StWriterTensor *writer_push(StWriter *w, const char *name, StDtype dtype, int ndim,
                                   const int64_t *shape) {
    CHECK(dtype >= 0 && dtype < ST_NUM_DTYPES && st_dtype_bits(dtype) % 8 == 0 && dtype < ST_F4,
          "cannot write dtype %d", (int)dtype);
    CHECK(ndim >= 0 && ndim <= ST_MAX_DIMS, "tensor %s has %d dims", name, ndim);
    CHECK(strcmp(name, "__metadata__") != 0, "a tensor cannot be called __metadata__");
    for (int i = 0; i < w->n; i++)
        CHECK(strcmp(w->tensors[i].name, name) != 0, "tensor %s added twice", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->tensors = xrealloc(w->tensors, (size_t)w->cap * sizeof *w->tensors);
    }
    StWriterTensor *t = &w->tensors[w->n++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        CHECK(shape[i] >= 0, "tensor %s has dim %d = %lld", name, i, (long long)shape[i]);
        t->shape[i] = shape[i];
        CHECK(jt_mul_size(numel, (size_t)shape[i], &numel), "tensor %s too large", name);
    }
    size_t nbytes;
    CHECK(jt_mul_size(numel, (size_t)st_dtype_bits(dtype) / 8, &nbytes), "tensor %s too large",
          name);
    t->nbytes = nbytes;
    return t;
}

void st_writer_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape,
                   const void *data) {
    StWriterTensor *t = writer_push(w, name, dtype, ndim, shape);
    CHECK(data != NULL || t->nbytes == 0, "tensor %s has no data", name);
    t->data = data;
}

void st_writer_add_f32(StWriter *w, const char *name, StDtype stored, int ndim,
                       const int64_t *shape, const float *data) {
    CHECK(st_dtype_is_float(stored), "tensor %s: cannot store floats as %s", name,
          st_dtype_name(stored));
    StWriterTensor *t = writer_push(w, name, stored, ndim, shape);
    CHECK(data != NULL || t->nbytes == 0, "tensor %s has no data", name);
    t->data = data;
    t->from_f32 = 1;
}

void st_writer_add_f32_dims(StWriter *w, const char *name, StDtype stored, int ndim,
                            const int *shape, const float *data) {
    int64_t s[ST_MAX_DIMS];
    CHECK(ndim >= 0 && ndim <= ST_MAX_DIMS, "tensor %s has %d dims", name, ndim);
    for (int i = 0; i < ndim; i++)
        s[i] = shape[i];
    st_writer_add_f32(w, name, stored, ndim, s, data);
}

typedef struct {
    StDtype dtype;
    const char *name;
    int idx;
} WriterKey;

/* Rust `prepare`: dtype descending (enum order), then name bytewise. */
static int cmp_writer_order(const void *a, const void *b) {
    const WriterKey *x = a, *y = b;
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int write_tensor_data(FILE *fp, const StWriterTensor *t) {
    if (t->nbytes == 0) return 1; /* an empty tensor may come without data (fwrite wants one) */
    if (!t->from_f32 || t->dtype == ST_F32) return fwrite(t->data, 1, t->nbytes, fp) == t->nbytes;
    const float *src = t->data;
    size_t esize = (size_t)st_dtype_bits(t->dtype) / 8, numel = t->nbytes / esize;
    enum { CHUNK = 8192 };
    unsigned char buf[CHUNK * 8];
    for (size_t done = 0; done < numel;) {
        size_t m = numel - done < CHUNK ? numel - done : CHUNK;
        for (size_t i = 0; i < m; i++) {
            if (t->dtype == ST_F64) {
                double d = src[done + i];
                memcpy(buf + 8 * i, &d, 8);
            } else {
                uint16_t h = t->dtype == ST_F16 ? st_f32_to_f16(src[done + i])
                                                : st_f32_to_bf16(src[done + i]);
                memcpy(buf + 2 * i, &h, 2);
            }
        }
        if (fwrite(buf, esize, m, fp) != m) return 0;
        done += m;
    }
    return 1;
}

int st_writer_write(const StWriter *w, const char *path, JtError *err) {
    WriterKey *order = xmalloc((size_t)(w->n ? w->n : 1) * sizeof *order);
    for (int i = 0; i < w->n; i++)
        order[i] = (WriterKey){w->tensors[i].dtype, w->tensors[i].name, i};
    qsort(order, (size_t)w->n, sizeof *order, cmp_writer_order);

    cJSON *root = cJSON_CreateObject();
    if (w->n_meta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++)
            cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_values[i]);
    }
    uint64_t offset = 0;
    for (int k = 0; k < w->n; k++) {
        const StWriterTensor *t = &w->tensors[order[k].idx];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int i = 0; i < t->ndim; i++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[i]));
        CHECK(offset + t->nbytes < (1ull << 53), "data buffer too large for exact JSON numbers");
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(offset + t->nbytes)));
        offset += t->nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    CHECK(json != NULL, "cJSON_PrintUnformatted failed");
    cJSON_Delete(root);
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    CHECK(padded <= ST_MAX_HEADER, "safetensors header of %zu bytes is over the limit", padded);

    AtomicFile af;
    int rc = atomic_file_open(&af, path, err);
    if (rc == JT_OK) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        int ok = fwrite(len8, 1, 8, af.fp) == 8 && fwrite(json, 1, len, af.fp) == len;
        for (size_t i = len; i < padded && ok; i++)
            ok = fputc(' ', af.fp) != EOF;
        for (int k = 0; k < w->n && ok; k++)
            ok = write_tensor_data(af.fp, &w->tensors[order[k].idx]);
        if (!ok) {
            int e = errno;
            atomic_file_abort(&af);
            rc = jt_fail(err, "%s: write failed: %s", path, strerror(e));
        } else {
            rc = atomic_file_commit(&af, err);
        }
    }
    free(json);
    free(order);
    return rc;
}
