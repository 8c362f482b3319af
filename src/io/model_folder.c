/* model_folder.c: see model_folder.h. Follows diffusers' ModelMixin.save_pretrained /
 * from_pretrained for a non-sharded safetensors checkpoint (file names, {"format":"pt"} metadata,
 * F32 tensors) and the legacy-name fix-up of _fix_state_dict_keys_on_load (unet2d.md section 6.3).
 */
#include "io/model_folder.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int model_mkdirs(const char *dir, JtError *err) {
    char *p = xstrdup(dir);
    size_t n = strlen(p);
    int rc = JT_OK;
    for (size_t i = 1; i <= n && rc == JT_OK; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char saved = p[i];
        p[i] = 0;
        struct stat sb;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            rc = jt_fail(err, "%s: cannot create folder: %s", p, strerror(errno));
        else if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
            rc = jt_fail(err, "%s: exists and is not a folder", p);
        p[i] = saved;
    }
    free(p);
    return rc;
}

char *model_folder_weights_path(const char *dir, const char *file) {
    char *plain = path_join(dir, file);
    struct stat sb;
    const char *dot = strrchr(file, '.');
    if (stat(plain, &sb) == 0 || !dot || strcmp(dot, ".safetensors") != 0) return plain;
    size_t stem = (size_t)(dot - file);
    char *name = xmalloc(stem + sizeof ".fp16.safetensors");
    snprintf(name, stem + sizeof ".fp16.safetensors", "%.*s.fp16.safetensors", (int)stem, file);
    char *variant = path_join(dir, name);
    free(name);
    if (stat(variant, &sb) == 0) {
        free(plain);
        return variant;
    }
    free(variant);
    return plain;
}

/* ---- slabs ---- */

void model_slab_add(StWriter *w, const char *prefix, const ParamLayout *l, const float *slab,
                    StDtype stored) {
    if (!prefix) prefix = "";
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        char name[2 * LAYOUT_NAME_MAX];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        st_writer_add_f32_dims(w, name, stored, e->ndim, e->shape, slab + e->offset);
    }
}

/* The pre-0.17 diffusers name of an attention projection (to_q -> query, to_k -> key,
 * to_v -> value, to_out.0 -> proj_attn) into out; returns 0 if name has no legacy form. */
static int legacy_name(const char *name, char *out, size_t cap) {
    static const char *const cur[4] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    static const char *const old[4] = {".query.", ".key.", ".value.", ".proj_attn."};
    const char *attn = strstr(name, "attentions.");
    if (!attn) return 0;
    for (int k = 0; k < 4; k++) {
        const char *at = strstr(attn, cur[k]);
        if (!at) continue;
        snprintf(out, cap, "%.*s%s%s", (int)(at - name), name, old[k], at + strlen(cur[k]));
        return 1;
    }
    return 0;
}

/* The file's shape matches the entry's, or is [C,C',1,1] for an expected [C,C'] (1x1-conv
 * checkpoints of linear layers; the data order is the same). */
static int shape_ok(const StTensor *t, const LayoutEntry *e) {
    if (t->ndim == e->ndim) {
        for (int d = 0; d < e->ndim; d++)
            if (t->shape[d] != e->shape[d]) return 0;
        return 1;
    }
    return e->ndim == 2 && t->ndim == 4 && t->shape[0] == e->shape[0] &&
           t->shape[1] == e->shape[1] && t->shape[2] == 1 && t->shape[3] == 1;
}

int model_slab_read(StFile *f, const char *prefix, const ParamLayout *l, float *slab,
                    JtError *err) {
    if (!prefix) prefix = "";
    size_t plen = strlen(prefix);
    int *src = xmalloc((size_t)(l->count ? l->count : 1) * sizeof *src);
    char *claimed = xcalloc((size_t)f->n_tensors + 1, 1);
    int rc = JT_OK;

    /* Resolve and check every name, shape and dtype before reading any data. */
    for (int i = 0; i < l->count && rc == JT_OK; i++) {
        const LayoutEntry *e = &l->entries[i];
        char name[2 * LAYOUT_NAME_MAX], leg[2 * LAYOUT_NAME_MAX + 16], eshape[96], fshape[256];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        int idx = st_find(f, name), lidx = -1;
        char leaf[2 * LAYOUT_NAME_MAX];
        if (legacy_name(e->name, leaf, sizeof leaf)) {
            snprintf(leg, sizeof leg, "%s%s", prefix, leaf);
            lidx = st_find(f, leg);
        }
        layout_shape_str(e, eshape, sizeof eshape);
        if (idx < 0 && lidx < 0) {
            rc = jt_fail(err, "%s: tensor '%s': missing (the model needs it, shape %s)", f->path,
                         name, eshape);
            break;
        }
        if (idx >= 0 && lidx >= 0) {
            rc = jt_fail(err,
                         "%s: tensor '%s': present under both its current and its legacy "
                         "name '%s'",
                         f->path, name, leg);
            break;
        }
        int use = idx >= 0 ? idx : lidx;
        const StTensor *t = &f->tensors[use];
        if (!shape_ok(t, e)) {
            st_shape_str(t->ndim, t->shape, fshape, sizeof fshape);
            rc = jt_fail(err, "%s: tensor '%s': shape %s but the model expects %s", f->path,
                         t->name, fshape, eshape);
        } else if (!st_dtype_is_float(t->dtype)) {
            rc = jt_fail(err,
                         "%s: tensor '%s': dtype %s is not a float type (F32, F16, BF16, "
                         "F64)",
                         f->path, t->name, st_dtype_name(t->dtype));
        }
        src[i] = use;
        claimed[use] = 1;
    }
    for (int j = 0; j < f->n_tensors && rc == JT_OK; j++)
        if (!claimed[j] && strncmp(f->tensors[j].name, prefix, plen) == 0)
            rc = jt_fail(err, "%s: tensor '%s': not a parameter of this model (extra tensor)",
                         f->path, f->tensors[j].name);
    for (int i = 0; i < l->count && rc == JT_OK; i++) {
        const LayoutEntry *e = &l->entries[i];
        char what[2 * LAYOUT_NAME_MAX + 16];
        snprintf(what, sizeof what, "tensor '%s'", f->tensors[src[i]].name);
        rc = st_read_f32(f, src[i], slab + e->offset, err);
        if (rc == JT_OK) rc = jt_check_finite(slab + e->offset, e->numel, f->path, what, err);
    }
    free(src);
    free(claimed);
    return rc;
}

int model_slab_save(const char *path, const ParamLayout *l, const float *slab, JtError *err) {
    StWriter w;
    st_writer_init(&w);
    model_slab_add(&w, "", l, slab, ST_F32);
    int rc = st_writer_write(&w, path, err);
    st_writer_free(&w);
    return rc;
}

int model_slab_load(const char *path, const ParamLayout *l, float *slab, JtError *err) {
    StFile f;
    if (st_open(&f, path, err) != JT_OK) return JT_ERR;
    int rc = model_slab_read(&f, "", l, slab, err);
    st_close(&f);
    return rc;
}
