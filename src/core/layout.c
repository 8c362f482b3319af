/* layout.c: see layout.h. The name index is open addressing with linear probing over FNV-1a
 * hashes, at most half full, rebuilt when it grows. */
#include "core/layout.h"

#include "core/common.h"
#include "core/hash.h"
#include "core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void layout_init(ParamLayout *l) {
    memset(l, 0, sizeof *l);
}

void layout_free(ParamLayout *l) {
    free(l->entries);
    free(l->index);
    memset(l, 0, sizeof *l);
}

static size_t name_slot(const ParamLayout *l, const char *name) {
    return (size_t)(hash_fnv1a(HASH_FNV_OFFSET, name, strlen(name)) & (uint64_t)(l->index_cap - 1));
}

static void index_insert(ParamLayout *l, int id) {
    size_t mask = (size_t)l->index_cap - 1;
    for (size_t s = name_slot(l, l->entries[id].name);; s = (s + 1) & mask)
        if (l->index[s] < 0) {
            l->index[s] = id;
            return;
        }
}

static void index_grow(ParamLayout *l) {
    int cap = l->index_cap ? 2 * l->index_cap : 128;
    CHECK(cap > 0 && cap <= (1 << 30), "layout index of %d slots", cap);
    free(l->index);
    l->index = xmalloc((size_t)cap * sizeof *l->index);
    l->index_cap = cap;
    for (int s = 0; s < cap; s++)
        l->index[s] = -1;
    for (int i = 0; i < l->count; i++)
        index_insert(l, i);
}

size_t layout_add_init(ParamLayout *l, const char *name, int ndim, const int *shape,
                       LayoutInit init) {
    CHECK(ndim >= 0 && ndim <= LAYOUT_MAX_DIMS, "tensor %s has %d dims", name, ndim);
    CHECK(strlen(name) < LAYOUT_NAME_MAX, "tensor name too long: %s", name);
    CHECK(layout_find(l, name) < 0, "duplicate tensor %s", name);
    CHECK(init.kind != LAYOUT_INIT_FAN_IN || init.fan_in > 0, "tensor %s: fan-in 0", name);
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
    e->init = init;
    l->total += e->numel;
    if (2 * l->count > l->index_cap)
        index_grow(l); /* inserts every entry, this one included */
    else
        index_insert(l, l->count - 1);
    return e->offset;
}

size_t layout_add(ParamLayout *l, const char *name, int ndim, const int *shape) {
    return layout_add_init(l, name, ndim, shape, (LayoutInit){LAYOUT_INIT_ZEROS, 0, 0.0f});
}

int layout_find(const ParamLayout *l, const char *name) {
    if (!l->index_cap) return -1;
    size_t mask = (size_t)l->index_cap - 1;
    for (size_t s = name_slot(l, name); l->index[s] >= 0; s = (s + 1) & mask)
        if (strcmp(l->entries[l->index[s]].name, name) == 0) return l->index[s];
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

void layout_init_params(const ParamLayout *l, float *slab, uint64_t seed) {
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        float *p = slab + e->offset;
        const uint64_t stream = rng_stream(RNG_TAG_INIT, (uint64_t)i, 0);
        switch (e->init.kind) {
        case LAYOUT_INIT_ZEROS:
        case LAYOUT_INIT_ONES: {
            const float v = e->init.kind == LAYOUT_INIT_ONES ? 1.0f : 0.0f;
            for (size_t k = 0; k < e->numel; k++)
                p[k] = v;
            break;
        }
        case LAYOUT_INIT_FAN_IN: { /* torch's kaiming_uniform_(a=sqrt(5)) reduces to this bound */
            const float bound = (float)(1.0 / sqrt((double)e->init.fan_in));
            rng_fill_uniform(p, e->numel, seed, stream, 0);
            for (size_t k = 0; k < e->numel; k++)
                p[k] = (2.0f * p[k] - 1.0f) * bound;
            break;
        }
        case LAYOUT_INIT_NORMAL: {
            rng_fill_normal(p, e->numel, seed, stream, 0);
            const float s = e->init.std;
            if (s != 1.0f) /* (multiplying by 1 would be exact too; this just skips the pass) */
                for (size_t k = 0; k < e->numel; k++)
                    p[k] *= s;
            break;
        }
        }
    }
}
