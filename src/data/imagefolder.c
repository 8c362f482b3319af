/* imagefolder.c: a folder of PNG/JPEG images, decoded with stb_image (Debian libstb-dev). Two
 * layouts, as torchvision's ImageFolder and diffusers' training scripts use them:
 *   DIR/NAME.png|jpg|jpeg                unlabelled
 *   DIR/CLASS/NAME.png|jpg|jpeg          labelled; classes are the sub-folders in sorted order
 * Names are sorted byte-wise (strcmp, as Python's sorted()), so the order and therefore the
 * indices do not depend on the file system. Hidden entries (starting with '.') and files with
 * other extensions are skipped. Images are decoded one at a time when the loader asks, so a
 * selection of a few images from a large folder decodes only those. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <stb/stb_image.h>

#include "data/source.h"

typedef struct {
    char **files;    /* (n) full paths */
    uint8_t *pixels; /* the last decoded image, (h, w, c) from stb */
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

static int folder_get(DataSource *src, size_t i, DataRaw *img, JtError *err) {
    FolderImpl *m = src->impl;
    stbi_image_free(m->pixels);
    m->pixels = NULL;
    int w, h, comp;
    m->pixels = stbi_load(m->files[i], &w, &h, &comp, 0);
    if (!m->pixels)
        return jt_fail(err, "image %zu of %s (%s): cannot decode: %s", i, src->what, m->files[i],
                       stbi_failure_reason());
    img->data = m->pixels;
    img->h = h;
    img->w = w;
    img->c = comp;
    img->sy = (ptrdiff_t)w * comp;
    img->sx = comp;
    img->sc = 1;
    return JT_OK;
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
        stbi_image_free(m->pixels);
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
