/* imagefolder.c: a folder of PNG/JPEG images, decoded with stb_image (Debian libstb-dev). Two
 * layouts, as torchvision's ImageFolder and diffusers' training scripts use them:
 *   DIR/NAME.png|jpg|jpeg                unlabelled
 *   DIR/CLASS/NAME.png|jpg|jpeg          labelled; classes are the sub-folders in sorted order
 * Names are sorted byte-wise (strcmp, as Python's sorted()), so the order and therefore the
 * indices do not depend on the file system. Hidden entries (starting with '.') and files with
 * other extensions are skipped. Images are decoded one at a time when the loader asks, so a
 * selection of a few images from a large folder decodes only those. Only PNG and JPEG bytes reach
 * stb, and an image's size is checked against DATA_IMAGE_MAX_* (stbi_info) before it is decoded. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <stb/stb_image.h>

#include "data/source.h"

typedef struct {
    char **files;    /* (n) full paths */
    DataImage image; /* the last decoded image */
} FolderImpl;

typedef struct {
    char **items;
    size_t n, cap;
} NameList;

static void list_push(NameList *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = xrealloc(l->items, l->cap * sizeof(char *));
    }
    l->items[l->n++] = xstrdup(s);
}

static void list_free(NameList *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
           strcasecmp(dot, ".jpeg") == 0;
}

/* Sorted image files and sub-folders of dir; *other counts the files skipped. */
static int scan_dir(const char *dir, NameList *images, NameList *subdirs, size_t *other,
                    JtError *err) {
    DIR *d = opendir(dir);
    if (!d) return jt_fail(err, "%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *full = path_join(dir, e->d_name);
        struct stat st;
        if (stat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                if (subdirs) list_push(subdirs, e->d_name);
            } else if (S_ISREG(st.st_mode) && is_image_name(e->d_name)) {
                list_push(images, e->d_name);
            } else {
                (*other)++;
            }
        }
        free(full);
    }
    closedir(d);
    if (images->n) qsort(images->items, images->n, sizeof(char *), cmp_str);
    if (subdirs && subdirs->n) qsort(subdirs->items, subdirs->n, sizeof(char *), cmp_str);
    return JT_OK;
}

static int is_png(const uint8_t *b, size_t n) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return n >= 8 && memcmp(b, sig, 8) == 0;
}

/* stb_image 2.27 (Debian's libstb) does not check that the 16 code counts of a JPEG Huffman table
 * (DHT) sum to at most 256, and writes that many entries into a 257-entry array (past the end of
 * its decoder state; upstream 2.28 refuses them). Walks the markers as stb reads them (a DHT's
 * tables are read on from its start, whatever its length says) and refuses such a table. */
static int jpeg_check_huffman(const uint8_t *b, size_t n, const char *what, JtError *err) {
    size_t i = 2; /* after SOI */
    while (i + 1 < n) {
        if (b[i] != 0xff || b[i + 1] == 0xff || b[i + 1] == 0x00 ||
            (b[i + 1] >= 0xd0 && b[i + 1] <= 0xd7)) {
            i++; /* entropy-coded data, fill, stuffing, restart markers */
            continue;
        }
        if (b[i + 1] == 0xd9 || i + 3 >= n) break; /* EOI */
        size_t seg = (size_t)b[i + 2] << 8 | b[i + 3], p = i + 4;
        if (b[i + 1] == 0xc4) {
            long left = (long)seg - 2;
            while (left > 0 && p < n) {
                size_t count = 0;
                for (size_t k = 1; k <= 16; k++)
                    count += p + k < n ? b[p + k] : 0;
                if (count > 256)
                    return jt_fail(err,
                                   "%s: cannot decode: corrupt JPEG: Huffman table at byte %zu "
                                   "declares %zu codes (at most 256)",
                                   what, p, count);
                p += 17 + count;
                left -= 17 + (long)count;
            }
            i = p;
        } else {
            i += 2 + seg;
        }
    }
    return JT_OK;
}

int data_image_decode(const uint8_t *buf, size_t len, const char *what, DataImage *img,
                      JtError *err) {
    memset(img, 0, sizeof *img);
    /* stb_image would decode GIF, BMP, PSD, TGA, HDR, PIC and PNM behind a .png name too: only the
     * two formats this reader promises reach it. */
    if (!is_png(buf, len) && !(len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)) {
        char head[40] = "";
        for (size_t i = 0; i < len && i < 8; i++)
            snprintf(head + 2 * i, sizeof head - 2 * i, "%02x", buf[i]);
        return jt_fail(err, "%s: cannot decode: not a PNG or JPEG file (it starts with bytes %s)",
                       what, len ? head : "(none: empty file)");
    }
    if (len > INT_MAX)
        return jt_fail(err, "%s: %zu bytes; stb_image reads files of at most %d bytes", what, len,
                       INT_MAX);
    if (!is_png(buf, len) && jpeg_check_huffman(buf, len, what, err) != JT_OK) return JT_ERR;
    int w = 0, h = 0, comp = 0;
    /* A PNG's size is read from its IHDR here: stbi_info refuses a PNG of more than 2^30 bytes
     * decoded without saying why ("unknown image type"). */
    if (is_png(buf, len) && len >= 26 && memcmp(buf + 12, "IHDR", 4) == 0) {
        uint32_t pw = (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 |
                      buf[19],
                 ph = (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 | (uint32_t)buf[22] << 8 |
                      buf[23];
        static const int channels[7] = {1, 0, 3, 4, 2, 0, 4}; /* by colour type; palette: RGBA */
        w = pw > INT_MAX ? INT_MAX : (int)pw;
        h = ph > INT_MAX ? INT_MAX : (int)ph;
        comp = buf[25] < 7 ? channels[buf[25]] : 0;
    } else if (!stbi_info_from_memory(buf, (int)len, &w, &h, &comp))
        return jt_fail(err, "%s: cannot decode: %s", what, stbi_failure_reason());
    /* The size the header declares, refused before stb allocates it: a 16-bit PNG is decoded
     * into 16-bit pixels and then converted, so both buffers (three times the 8-bit size) live. */
    size_t bytes = jt_sat_mul(jt_sat_mul((size_t)w, (size_t)h), (size_t)(comp > 0 ? comp : 4));
    if (is_png(buf, len) && len >= 26 && buf[24] == 16) bytes = jt_sat_mul(bytes, 3);
    if (w > DATA_IMAGE_MAX_SIDE || h > DATA_IMAGE_MAX_SIDE ||
        (size_t)w * (size_t)h > DATA_IMAGE_MAX_PIXELS) {
        char need[32];
        return jt_fail(err,
                       "%s: %dx%d pixels would need %s to decode; jtrak decodes images of at "
                       "most %d pixels a side and %d pixels in all",
                       what, w, h, jt_format_bytes(bytes, need, sizeof need), DATA_IMAGE_MAX_SIDE,
                       DATA_IMAGE_MAX_PIXELS);
    }
    char mem_what[1100];
    snprintf(mem_what, sizeof mem_what, "%s: decoding its %dx%d pixels", what, w, h);
    if (jt_check_memory(bytes, mem_what, err) != JT_OK) return JT_ERR;
    img->pixels = stbi_load_from_memory(buf, (int)len, &w, &h, &comp, 0);
    if (!img->pixels) return jt_fail(err, "%s: cannot decode: %s", what, stbi_failure_reason());
    img->w = w;
    img->h = h;
    img->c = comp;
    return JT_OK;
}

void data_image_free(DataImage *img) {
    stbi_image_free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* The whole file, malloc'd, refused when it could not be an image this reader decodes. */
static int read_image_file(const char *path, const char *what, uint8_t **buf, size_t *len,
                           JtError *err) {
    *buf = NULL;
    FILE *fp = jt_fopen_regular(path, err);
    if (!fp) return JT_ERR;
    struct stat st;
    int rc = JT_OK;
    if (fstat(fileno(fp), &st) != 0) {
        rc = jt_fail(err, "%s: cannot stat: %s", what, strerror(errno));
    } else if ((uint64_t)st.st_size > (uint64_t)INT_MAX) {
        rc = jt_fail(err, "%s: %lld bytes; stb_image reads files of at most %d bytes", what,
                     (long long)st.st_size, INT_MAX);
    } else {
        *len = (size_t)st.st_size;
        *buf = xmalloc(*len);
        if (fread(*buf, 1, *len, fp) != *len) {
            rc = jt_fail(err, "%s: read failed (file changed?)", what);
            free(*buf);
            *buf = NULL;
        }
    }
    fclose(fp);
    return rc;
}

int data_image_read(const char *path, const char *what, DataImage *img, JtError *err) {
    memset(img, 0, sizeof *img);
    uint8_t *buf;
    size_t len = 0;
    if (read_image_file(path, what, &buf, &len, err) != JT_OK) return JT_ERR;
    int rc = data_image_decode(buf, len, what, img, err);
    free(buf);
    return rc;
}

int data_image_fetch(const char *path, size_t i, const char *src_what, DataImage *image,
                     DataRaw *raw, JtError *err) {
    data_image_free(image);
    char what[1024];
    snprintf(what, sizeof what, "image %zu of %s (%s)", i, src_what, path);
    if (data_image_read(path, what, image, err) != JT_OK) return JT_ERR;
    raw->data = image->pixels;
    raw->h = image->h;
    raw->w = image->w;
    raw->c = image->c;
    raw->sy = (ptrdiff_t)image->w * image->c;
    raw->sx = image->c;
    raw->sc = 1;
    return JT_OK;
}

static int folder_get(DataSource *src, size_t i, DataRaw *img, JtError *err) {
    FolderImpl *m = src->impl;
    return data_image_fetch(m->files[i], i, src->what, &m->image, img, err);
}

static const char *folder_item_name(const DataSource *src, size_t i) {
    const FolderImpl *m = src->impl;
    return m->files[i];
}

static void folder_free(DataSource *src) {
    FolderImpl *m = src->impl;
    if (m) {
        for (size_t i = 0; i < src->n; i++)
            free(m->files[i]);
        free(m->files);
        data_image_free(&m->image);
    }
    free(m);
    src->impl = NULL;
}

int data_open_folder(DataSource *src, const char *dir, JtError *err) {
    memset(src, 0, sizeof *src);
    NameList top = {0}, subdirs = {0};
    size_t other = 0;
    if (scan_dir(dir, &top, &subdirs, &other, err) != JT_OK) return JT_ERR;
    FolderImpl *m = xcalloc(1, sizeof *m);
    src->impl = m;
    src->get = folder_get;
    src->free_impl = folder_free;
    src->item_name = folder_item_name;
    src->what = xstrdup(dir);
    NameList files = {0};
    int rc = JT_OK;
    if (subdirs.n == 0) {
        for (size_t i = 0; i < top.n; i++) {
            char *p = path_join(dir, top.items[i]);
            list_push(&files, p);
            free(p);
        }
        if (files.n == 0)
            rc = jt_fail(err, "%s: no PNG or JPEG images in this folder (%zu other files skipped)",
                         dir, other);
    } else if (top.n > 0) {
        rc = jt_fail(err,
                     "%s: mixes image files (%s, ...) and class folders (%s, ...); put every "
                     "image in a class folder, or none",
                     dir, top.items[0], subdirs.items[0]);
    } else {
        size_t lab_cap = 0;
        src->n_classes = (int)subdirs.n;
        src->class_names = data_names_dup((const char *const *)subdirs.items, (int)subdirs.n);
        for (size_t k = 0; k < subdirs.n && rc == JT_OK; k++) {
            char *cdir = path_join(dir, subdirs.items[k]);
            NameList imgs = {0};
            size_t cother = 0;
            rc = scan_dir(cdir, &imgs, NULL, &cother, err);
            if (rc == JT_OK && imgs.n == 0)
                rc = jt_fail(err, "%s: class folder has no PNG or JPEG images", cdir);
            for (size_t i = 0; rc == JT_OK && i < imgs.n; i++) {
                char *p = path_join(cdir, imgs.items[i]);
                list_push(&files, p);
                free(p);
                if (files.n > lab_cap) {
                    lab_cap = files.cap;
                    src->labels = xrealloc(src->labels, lab_cap * sizeof(int));
                }
                src->labels[files.n - 1] = (int)k;
            }
            list_free(&imgs);
            free(cdir);
        }
    }
    list_free(&top);
    list_free(&subdirs);
    /* Hand the list to the source (its strings are freed by folder_free). */
    m->files = files.items;
    src->n = files.n;
    if (rc != JT_OK) data_source_free(src);
    return rc;
}
