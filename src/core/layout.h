/* layout.h: the tensor table (house-style convention 3, "one layout, many slabs"). A ParamLayout
 * lists every parameter tensor by its diffusers name with its shape, its offset (in floats) in one
 * contiguous slab and how PyTorch initialises it; the same table drives parameters, gradients,
 * optimizer moments, per-example gradients, checkpoint I/O and initialisation. Names are indexed
 * by a hash table, so registration and lookup are O(1) expected (a model may have 10^5 tensors). */
#ifndef JTRAK_LAYOUT_H
#define JTRAK_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define LAYOUT_MAX_DIMS 4
#define LAYOUT_NAME_MAX 128

/* How layout_init_params fills a tensor (the module's reset_parameters in PyTorch). */
typedef enum {
    LAYOUT_INIT_ZEROS = 0, /* norm biases; also the default of layout_add */
    LAYOUT_INIT_ONES,      /* norm weights (gamma) */
    LAYOUT_INIT_FAN_IN, /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): nn.Conv2d/nn.Linear weight and bias
                         */
    LAYOUT_INIT_NORMAL  /* N(0, std^2): nn.Embedding (std 1) */
} LayoutInitKind;

typedef struct {
    LayoutInitKind kind;
    size_t fan_in; /* LAYOUT_INIT_FAN_IN: the fan-in of the weight (a bias takes its weight's) */
    float std;     /* LAYOUT_INIT_NORMAL */
} LayoutInit;

typedef struct {
    char name[LAYOUT_NAME_MAX]; /* diffusers state_dict key, e.g.
                                   "down_blocks.0.resnets.0.conv1.weight" */
    int ndim;
    int shape[LAYOUT_MAX_DIMS];
    size_t numel;
    size_t offset;   /* in floats from the start of the slab */
    LayoutInit init; /* set at registration */
} LayoutEntry;

typedef struct {
    LayoutEntry *entries;
    int count, cap;
    size_t total; /* floats in one slab */
    int *index;   /* open-addressing hash table of entry ids (-1 empty), index_cap slots */
    int index_cap;
} ParamLayout;

void layout_init(ParamLayout *l);
void layout_free(ParamLayout *l);
/* Appends a tensor (initialised to zeros) and returns its offset. shape has ndim entries. A
 * duplicate name is a CHECK failure. */
size_t layout_add(ParamLayout *l, const char *name, int ndim, const int *shape);
/* layout_add with the tensor's initialisation. */
size_t layout_add_init(ParamLayout *l, const char *name, int ndim, const int *shape,
                       LayoutInit init);
/* Index of the entry with this name, or -1. */
int layout_find(const ParamLayout *l, const char *name);
/* Shape as text, e.g. "[32,16,3,3]", into buf. */
const char *layout_shape_str(const LayoutEntry *e, char *buf, size_t cap);
/* Fills slab (l->total floats) by each entry's init; random draws are keyed by
 * (seed, RNG_TAG_INIT, entry index), so a tensor's values depend only on the seed and its
 * position in the table, never on the thread count. */
void layout_init_params(const ParamLayout *l, float *slab, uint64_t seed);

#endif
