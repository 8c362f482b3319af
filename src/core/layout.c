/* layout.c: see layout.h. Lookups are linear: a U-Net has a few hundred tensors and lookups only
 * happen at load and save time. */
#include "core/layout.h"

#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void layout_init(ParamLayout *l) { memset(l, 0, sizeof *l); }

void layout_free(ParamLayout *l) {
    free(l->entries);
    memset(l, 0, sizeof *l);
}

size_t layout_add(ParamLayout *l, const char *name, int ndim, const int *shape) {
    CHECK(ndim >= 0 && ndim <= LAYOUT_MAX_DIMS, "tensor %s has %d dims", name, ndim);
    CHECK(strlen(name) < LAYOUT_NAME_MAX, "tensor name too long: %s", name);
    CHECK(layout_find(l, name) < 0, "duplicate tensor %s", name);
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->entries = xrealloc(l->entries, (size_t)l->cap * sizeof *l->entries);
    }
    LayoutEntry *e = &l->entries[l->count++];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        CHECK(shape[i] > 0, "tensor %s has dim %d = %d", name, i, shape[i]);
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];
    }
    e->offset = l->total;
    l->total += e->numel;
    return e->offset;
}

int layout_find(const ParamLayout *l, const char *name) {
    for (int i = 0; i < l->count; i++)
        if (strcmp(l->entries[i].name, name) == 0) return i;
    return -1;
}

const char *layout_shape_str(const LayoutEntry *e, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < e->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%d" : "%d", e->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}
