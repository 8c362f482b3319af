/* spec.c: DatasetSpec: defaults, setting options from text (the command line, or a description
 * read back from a manifest), and the canonical description "key=value;..." that artifacts record.
 * Values may not contain ';' (the separator of descriptions). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/dataset.h"

void data_spec_init(DatasetSpec *s) {
    memset(s, 0, sizeof *s);
    s->kind = DATA_SRC_FASHION_MNIST;
    s->fit = DATA_FIT_NONE;
    s->color = DATA_COLOR_AUTO;
    s->flip = DATA_FLIP_NONE;
}

void data_spec_free(DatasetSpec *s) {
    free(s->path);
    free(s->path2);
    free(s->classes);
    free(s->index_file);
    data_spec_init(s);
}

static char *dup_or_null(const char *p) {
    return p ? xstrdup(p) : NULL;
}

void data_spec_copy(DatasetSpec *dst, const DatasetSpec *src) {
    *dst = *src;
    dst->path = dup_or_null(src->path);
    dst->path2 = dup_or_null(src->path2);
    dst->classes = dup_or_null(src->classes);
    dst->index_file = dup_or_null(src->index_file);
}

static const char *const KIND_NAMES[] = {"fashion-mnist", "mnist",   "idx",  "cifar10", "folder",
                                         "npy",           "latents", "coco", "captions"};
static const char *const FIT_NAMES[] = {"none", "pad", "crop", "resize", "nearest"};
static const char *const COLOR_NAMES[] = {"auto", "gray", "rgb"};
static const char *const FLIP_NAMES[] = {"none", "all", "random"};
static const char *const LATENT_NAMES[] = {"sample", "sample", "mean"};

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int file_exists(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* Splits "A,B" at the first comma (B may be NULL). */
static void split_pair(const char *text, char **a, char **b) {
    const char *comma = strchr(text, ',');
    if (!comma) {
        *a = xstrdup(text);
        *b = NULL;
        return;
    }
    *a = xmalloc((size_t)(comma - text) + 1);
    memcpy(*a, text, (size_t)(comma - text));
    (*a)[comma - text] = '\0';
    *b = xstrdup(comma + 1);
}

/* "PATH[,train|,test]": sets s->path and s->test_split. */
static void set_path_split(DatasetSpec *s, const char *rest) {
    const char *comma = strrchr(rest, ',');
    size_t n = strlen(rest);
    s->test_split = 0;
    if (comma && (strcmp(comma, ",train") == 0 || strcmp(comma, ",test") == 0)) {
        s->test_split = strcmp(comma, ",test") == 0;
        n = (size_t)(comma - rest);
    }
    s->path = xmalloc(n + 1);
    memcpy(s->path, rest, n);
    s->path[n] = '\0';
}

/* A bare path: guess the kind from what is there. */
static int guess_source(DatasetSpec *s, const char *path, JtError *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return jt_fail(err,
                       "--data %s: %s (a dataset is fashion-mnist, mnist:DIR, idx:FILE, "
                       "cifar10:DIR, folder:DIR, npy:FILE or an existing path)",
                       path, strerror(errno));
    s->path = xstrdup(path);
    if (S_ISDIR(st.st_mode)) {
        if (file_exists(path, "train-images-idx3-ubyte.gz") ||
            file_exists(path, "train-images-idx3-ubyte") ||
            file_exists(path, "t10k-images-idx3-ubyte.gz") ||
            file_exists(path, "t10k-images-idx3-ubyte"))
            s->kind = DATA_SRC_MNIST;
        else if (file_exists(path, "data_batch_1.bin") || file_exists(path, "test_batch.bin"))
            s->kind = DATA_SRC_CIFAR10;
        else
            s->kind = DATA_SRC_FOLDER;
        return JT_OK;
    }
    if (ends_with(path, ".npy")) {
        /* a latent store of jtrak encode has its manifest beside it */
        size_t n = strlen(path) + 6;
        char *manifest = xmalloc(n);
        snprintf(manifest, n, "%s.json", path);
        s->kind = access(manifest, F_OK) == 0 ? DATA_SRC_LATENTS : DATA_SRC_NPY;
        free(manifest);
    } else if (ends_with(path, "-ubyte") || ends_with(path, "-ubyte.gz")) {
        s->kind = DATA_SRC_IDX;
    } else if (ends_with(path, ".bin")) {
        s->kind = DATA_SRC_CIFAR10;
    } else if (ends_with(path, ".csv") || ends_with(path, ".jsonl")) {
        s->kind = DATA_SRC_CAPTIONS;
    } else if (ends_with(path, ".json") && strncmp(strrchr(path, '/') ? strrchr(path, '/') + 1
                                                                      : path,
                                                   "captions_", 9) == 0) {
        s->kind = DATA_SRC_COCO;
    } else {
        free(s->path);
        s->path = NULL;
        return jt_fail(err,
                       "--data %s: cannot tell what kind of dataset this file is (write idx:, "
                       "npy:, cifar10:, coco: or captions: before the path)",
                       path);
    }
    return JT_OK;
}

static int set_source(DatasetSpec *s, const char *text, JtError *err) {
    free(s->path);
    free(s->path2);
    s->path = s->path2 = NULL;
    s->test_split = 0;
    if (text[0] == '\0') return jt_fail(err, "--data: empty dataset");
    const char *colon = strchr(text, ':');
    const char *slash = strchr(text, '/');
    if (!colon || (slash && slash < colon)) {
        if (strcmp(text, "fashion-mnist") == 0) {
            s->kind = DATA_SRC_FASHION_MNIST;
            return JT_OK;
        }
        for (size_t k = 1; k < sizeof KIND_NAMES / sizeof KIND_NAMES[0]; k++)
            if (strcmp(text, KIND_NAMES[k]) == 0)
                return jt_fail(err, "--data %s: needs a path, e.g. %s:/path/to/data", text, text);
        return guess_source(s, text, err);
    }
    size_t plen = (size_t)(colon - text);
    const char *rest = colon + 1;
    int kind = -1;
    for (size_t k = 0; k < sizeof KIND_NAMES / sizeof KIND_NAMES[0]; k++)
        if (strlen(KIND_NAMES[k]) == plen && strncmp(text, KIND_NAMES[k], plen) == 0) kind = (int)k;
    if (plen == 8 && strncmp(text, "cifar-10", 8) == 0) kind = DATA_SRC_CIFAR10;
    if (kind < 0)
        return jt_fail(err,
                       "--data %s: unknown dataset kind '%.*s' (expected fashion-mnist, mnist, "
                       "idx, cifar10, folder, npy, latents, coco or captions)",
                       text, (int)plen, text);
    if (rest[0] == '\0') return jt_fail(err, "--data %s: nothing after the ':'", text);
    s->kind = (DataSourceKind)kind;
    switch (s->kind) {
    case DATA_SRC_FASHION_MNIST:
        if (strcmp(rest, "train") == 0 || strcmp(rest, "test") == 0) {
            s->test_split = strcmp(rest, "test") == 0;
            return JT_OK;
        }
        set_path_split(s, rest);
        return JT_OK;
    case DATA_SRC_MNIST:
    case DATA_SRC_CIFAR10:
        set_path_split(s, rest);
        if (s->path[0] == '\0') return jt_fail(err, "--data %s: needs a path", text);
        return JT_OK;
    case DATA_SRC_IDX:
    case DATA_SRC_NPY:
        split_pair(rest, &s->path, &s->path2);
        if (s->path[0] == '\0' || (s->path2 && s->path2[0] == '\0'))
            return jt_fail(err, "--data %s: expected %s:IMAGES[,LABELS]", text, KIND_NAMES[kind]);
        return JT_OK;
    case DATA_SRC_COCO:
    case DATA_SRC_CAPTIONS:
        split_pair(rest, &s->path, &s->path2);
        if (s->path[0] == '\0' || (s->path2 && s->path2[0] == '\0'))
            return jt_fail(err, "--data %s: expected %s", text,
                           kind == DATA_SRC_COCO ? "coco:ANNOTATIONS.json[,IMAGEDIR]"
                                                 : "captions:FILE.csv|FILE.jsonl[,IMAGEDIR]");
        return JT_OK;
    case DATA_SRC_FOLDER:
    case DATA_SRC_LATENTS:
        s->path = xstrdup(rest);
        return JT_OK;
    }
    return JT_OK;
}

static int pick(const char *value, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(value, names[i]) == 0) return i;
    return -1;
}

static int parse_uint(const char *v, unsigned long long max, unsigned long long *out) {
    if (!*v) return 0;
    unsigned long long x = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        if (x > (max - (unsigned long long)(*p - '0')) / 10) return 0;
        x = x * 10 + (unsigned long long)(*p - '0');
    }
    *out = x;
    return 1;
}

int data_spec_set(DatasetSpec *s, const char *key, const char *value, JtError *err) {
    if (strchr(value, ';'))
        return jt_fail(err, "--%s %s: ';' is not allowed in dataset options", key, value);
    unsigned long long u;
    if (strcmp(key, "data") == 0) return set_source(s, value, err);
    if (strcmp(key, "classes") == 0) {
        free(s->classes);
        s->classes = strcmp(value, "all") == 0 ? NULL : xstrdup(value);
        if (s->classes && strspn(s->classes, " ,") == strlen(s->classes))
            return jt_fail(err, "--classes '%s': no class given", value);
        return JT_OK;
    }
    if (strcmp(key, "limit") == 0) {
        if (strcmp(value, "all") == 0) {
            s->limit = 0;
            return JT_OK;
        }
        if (!parse_uint(value, SIZE_MAX, &u))
            return jt_fail(err, "--limit %s: expected a non-negative integer or 'all'", value);
        s->limit = (size_t)u;
        return JT_OK;
    }
    if (strcmp(key, "indices") == 0) {
        free(s->index_file);
        s->index_file = strcmp(value, "none") == 0 ? NULL : xstrdup(value);
        return JT_OK;
    }
    if (strcmp(key, "fit") == 0) {
        int k = pick(value, FIT_NAMES, 5);
        if (k < 0)
            return jt_fail(err, "--fit %s: expected none, pad, crop, resize or nearest", value);
        s->fit = (DataFit)k;
        return JT_OK;
    }
    if (strcmp(key, "size") == 0) {
        if (strcmp(value, "source") == 0) {
            s->height = s->width = 0;
            return JT_OK;
        }
        const char *x = strchr(value, 'x');
        char hb[32];
        unsigned long long hh, ww;
        if (x && (size_t)(x - value) < sizeof hb) {
            memcpy(hb, value, (size_t)(x - value));
            hb[x - value] = '\0';
            if (!parse_uint(hb, 65536, &hh) || !parse_uint(x + 1, 65536, &ww)) hh = ww = 0;
        } else if (!x && parse_uint(value, 65536, &hh)) {
            ww = hh;
        } else {
            hh = ww = 0;
        }
        if (hh == 0 || ww == 0)
            return jt_fail(err, "--size %s: expected N or HxW (1..65536) or 'source'", value);
        s->height = (int)hh;
        s->width = (int)ww;
        return JT_OK;
    }
    if (strcmp(key, "channels") == 0) {
        if (strcmp(value, "source") == 0 || strcmp(value, "0") == 0)
            s->channels = 0;
        else if (strcmp(value, "1") == 0 || strcmp(value, "3") == 0)
            s->channels = value[0] - '0';
        else if (s->kind == DATA_SRC_LATENTS && parse_uint(value, 4096, &u) && u > 0)
            s->channels = (int)u; /* a latent store's latent_channels */
        else
            return jt_fail(err, "--channels %s: expected 1, 3 or 'source'", value);
        return JT_OK;
    }
    if (strcmp(key, "color") == 0) {
        int k = pick(value, COLOR_NAMES, 3);
        if (k < 0) return jt_fail(err, "--color %s: expected auto, gray or rgb", value);
        s->color = (DataColor)k;
        return JT_OK;
    }
    if (strcmp(key, "flip") == 0) {
        int k = pick(value, FLIP_NAMES, 3);
        if (k < 0) return jt_fail(err, "--flip %s: expected none, all or random", value);
        s->flip = (DataFlip)k;
        return JT_OK;
    }
    if (strcmp(key, "latent") == 0) {
        if (strcmp(value, "sample") == 0)
            s->latent = DATA_LATENT_SAMPLE;
        else if (strcmp(value, "mean") == 0)
            s->latent = DATA_LATENT_MEAN;
        else
            return jt_fail(err, "--latent %s: expected sample or mean", value);
        return JT_OK;
    }
    return jt_fail(err, "unknown dataset option '%s'", key);
}

static int is_regular_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

char *data_spec_describe(const DatasetSpec *s) {
    size_t cap = 512 + (s->path ? strlen(s->path) : 0) + (s->path2 ? strlen(s->path2) : 0) +
                 (s->classes ? strlen(s->classes) : 0) +
                 (s->index_file ? strlen(s->index_file) : 0);
    char *buf = xmalloc(cap);
    const char *split = s->test_split ? "test" : "train";
    int n;
    switch (s->kind) {
    case DATA_SRC_FASHION_MNIST:
        if (s->path)
            n = snprintf(buf, cap, "data=fashion-mnist:%s,%s", s->path, split);
        else
            n = snprintf(buf, cap, "data=fashion-mnist:%s", split);
        break;
    case DATA_SRC_MNIST:
        n = snprintf(buf, cap, "data=mnist:%s,%s", s->path, split);
        break;
    case DATA_SRC_CIFAR10:
        if (is_regular_file(s->path))
            n = snprintf(buf, cap, "data=cifar10:%s", s->path);
        else
            n = snprintf(buf, cap, "data=cifar10:%s,%s", s->path, split);
        break;
    case DATA_SRC_FOLDER:
        n = snprintf(buf, cap, "data=folder:%s", s->path);
        break;
    case DATA_SRC_LATENTS:
        n = snprintf(buf, cap, "data=latents:%s", s->path);
        break;
    default:
        n = snprintf(buf, cap, "data=%s:%s%s%s", KIND_NAMES[s->kind], s->path, s->path2 ? "," : "",
                     s->path2 ? s->path2 : "");
        break;
    }
    char size[48], chans[16], limit[32];
    if (s->height)
        snprintf(size, sizeof size, "%dx%d", s->height, s->width);
    else
        snprintf(size, sizeof size, "source");
    if (s->channels)
        snprintf(chans, sizeof chans, "%d", s->channels);
    else
        snprintf(chans, sizeof chans, "source");
    if (s->limit)
        snprintf(limit, sizeof limit, "%zu", s->limit);
    else
        snprintf(limit, sizeof limit, "all");
    n += snprintf(buf + n, cap - (size_t)n,
                  ";classes=%s;limit=%s;indices=%s;fit=%s;size=%s;channels=%s;color=%s;flip=%s",
                  s->classes ? s->classes : "all", limit, s->index_file ? s->index_file : "none",
                  FIT_NAMES[s->fit], size, chans, COLOR_NAMES[s->color], FLIP_NAMES[s->flip]);
    if (s->kind == DATA_SRC_LATENTS)
        snprintf(buf + n, cap - (size_t)n, ";latent=%s", LATENT_NAMES[s->latent]);
    return buf;
}

int data_spec_parse(DatasetSpec *s, const char *description, JtError *err) {
    data_spec_init(s);
    char *copy = xstrdup(description);
    int rc = JT_OK;
    for (char *save = NULL, *item = strtok_r(copy, ";", &save); item && rc == JT_OK;
         item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) {
            rc = jt_fail(err, "dataset description: '%s' is not key=value", item);
            break;
        }
        *eq = '\0';
        rc = data_spec_set(s, item, eq + 1, err);
    }
    free(copy);
    if (rc != JT_OK) data_spec_free(s);
    return rc;
}
