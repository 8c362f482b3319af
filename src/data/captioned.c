/* captioned.c: the captioned sources, coco:ANNOTATIONS.json[,IMAGEDIR] and
 * captions:FILE.csv|FILE.jsonl[,IMAGEDIR], as DataSources: the images a captions file names
 * (data/captions.h), in its order, decoded one at a time by the folder reader's decoder when the
 * loader asks (so fit, colour and selection work as for folder:), unlabelled, each named by its
 * file as the captions file gives it, each captioned by its first caption (what reports show; all
 * captions stay reachable through data_source_captions for encode-text).
 *
 * COCO's layout keeps the images of split S in S/ beside annotations/: captions_train2017.json in
 * annotations/ means ../train2017/ (relative to the annotations file), unless IMAGEDIR is given. */
#include "data/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Captions caps;
    DataImage image; /* the last decoded image */
} CaptionedImpl;

static int captioned_get(DataSource *src, size_t i, DataRaw *img, JtError *err) {
    CaptionedImpl *m = src->impl;
    return data_image_fetch(m->caps.files[i], i, src->what, &m->image, img, err);
}

static const char *captioned_item_name(const DataSource *src, size_t i) {
    const CaptionedImpl *m = src->impl;
    return m->caps.names[i];
}

static const char *captioned_item_caption(const DataSource *src, size_t i) {
    const CaptionedImpl *m = src->impl;
    return captions_text(&m->caps, i, 0);
}

static void captioned_free(DataSource *src) {
    CaptionedImpl *m = src->impl;
    if (m) {
        captions_free(&m->caps);
        data_image_free(&m->image);
    }
    free(m);
    src->impl = NULL;
}

/* COCO's image folder for an annotations file ".../annotations/captions_S.json": ".../S". */
static int coco_image_dir(const char *path, char **dir, JtError *err) {
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    size_t bl = strlen(base);
    if (strncmp(base, "captions_", 9) != 0 || bl <= 9 + 5 || strcmp(base + bl - 5, ".json") != 0)
        return jt_fail(err,
                       "coco:%s: cannot tell the image folder from the name (COCO's is "
                       "annotations/captions_SPLIT.json beside SPLIT/): give coco:%s,IMAGEDIR",
                       path, path);
    const char *split = base + 9;
    size_t sl = bl - 9 - 5;
    /* the folder above the annotations file's folder */
    char *parent;
    if (!slash) {
        parent = xstrdup("..");
    } else {
        size_t dl = (size_t)(slash - path);
        const char *up = NULL;
        for (size_t k = dl; k-- > 0;)
            if (path[k] == '/') {
                up = path + k;
                break;
            }
        if (up) {
            parent = xmalloc((size_t)(up - path) + 2);
            memcpy(parent, path, (size_t)(up - path));
            parent[up - path] = '\0';
            if (up == path) strcpy(parent, "/");
        } else {
            parent = xstrdup("."); /* "annotations/captions_S.json" -> "./S" */
        }
    }
    size_t n = strlen(parent) + sl + 2;
    *dir = xmalloc(n);
    snprintf(*dir, n, "%s/%.*s", parent, (int)sl, split);
    free(parent);
    return JT_OK;
}

int data_open_captioned(DataSource *src, const DatasetSpec *spec, JtError *err) {
    memset(src, 0, sizeof *src);
    CaptionsFormat fmt = CAPTIONS_COCO;
    char *root = NULL;
    int rc = JT_OK;
    if (spec->kind == DATA_SRC_COCO) {
        if (spec->path2)
            root = xstrdup(spec->path2);
        else
            rc = coco_image_dir(spec->path, &root, err);
        if (rc == JT_OK) rc = captions_format_of(spec->path, &fmt, err);
        if (rc == JT_OK && fmt != CAPTIONS_COCO)
            rc = jt_fail(err,
                         "coco:%s: a COCO annotations file is .json (for CSV or JSONL "
                         "captions write captions:FILE)",
                         spec->path);
    } else {
        if (spec->path2) root = xstrdup(spec->path2);
        rc = captions_format_of(spec->path, &fmt, err);
        if (rc == JT_OK && fmt == CAPTIONS_COCO)
            rc = jt_fail(err,
                         "captions:%s: a captions file is .csv or .jsonl (for COCO's "
                         "captions_*.json write coco:FILE)",
                         spec->path);
    }
    CaptionedImpl *m = NULL;
    if (rc == JT_OK) {
        m = xcalloc(1, sizeof *m);
        rc = captions_read(&m->caps, fmt, spec->path, root, err);
    }
    free(root);
    if (rc != JT_OK) {
        free(m);
        return JT_ERR;
    }
    src->impl = m;
    src->n = m->caps.n;
    src->get = captioned_get;
    src->item_name = captioned_item_name;
    src->item_caption = captioned_item_caption;
    src->free_impl = captioned_free;
    src->what = xstrdup(spec->path);
    return JT_OK;
}

const Captions *data_source_captions(const DataSource *src) {
    if (src->free_impl != captioned_free) return NULL;
    const CaptionedImpl *m = src->impl;
    return &m->caps;
}
