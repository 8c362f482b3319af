/* layout.h: the tensor table (house-style convention 3, "one layout, many slabs"). A ParamLayout
 * lists every parameter tensor by its diffusers name with its shape and its offset (in floats) in
 * one contiguous slab; the same table drives parameters, gradients, optimizer moments, per-example
 * gradients and checkpoint I/O. */
#ifndef JTRAK_LAYOUT_H
#define JTRAK_LAYOUT_H

#include <stddef.h>

#define LAYOUT_MAX_DIMS 4
#define LAYOUT_NAME_MAX 128

typedef struct {
    char name[LAYOUT_NAME_MAX]; /* diffusers state_dict key, e.g. "down_blocks.0.resnets.0.conv1.weight" */
    int ndim;
    int shape[LAYOUT_MAX_DIMS];
    size_t numel;
    size_t offset; /* in floats from the start of the slab */
} LayoutEntry;

typedef struct {
    LayoutEntry *entries;
    int count, cap;
    size_t total; /* floats in one slab */
} ParamLayout;

void layout_init(ParamLayout *l);
void layout_free(ParamLayout *l);
/* Appends a tensor and returns its offset. shape has ndim entries. */
size_t layout_add(ParamLayout *l, const char *name, int ndim, const int *shape);
/* Index of the entry with this name, or -1. */
int layout_find(const ParamLayout *l, const char *name);
/* Shape as text, e.g. "[32,16,3,3]", into buf. */
const char *layout_shape_str(const LayoutEntry *e, char *buf, size_t cap);

#endif
