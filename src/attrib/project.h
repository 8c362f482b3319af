/* project.h: random projection of gradient vectors (method.md 2.3, 6.5): out = G R / sqrt(p) with
 * R a p x k matrix of +-1 (Rademacher) entries generated on the fly, block of rows by block of
 * rows, from Philox keyed by (seed, model_id, row block): never stored, identical in featurize and
 * score, across thread counts, batch compositions and MPI ranks. A different model_id gives an
 * independent matrix (as TRAK's seed + 10000 * model_id). */
#ifndef JTRAK_PROJECT_H
#define JTRAK_PROJECT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PROJ_RADEMACHER = 0 } ProjKind;

typedef struct {
    ProjKind kind;
    uint64_t seed;
    int model_id;
    size_t p; /* input dimension (the parameter count) */
    int k;    /* output dimension */
    float *block; /* scratch: rows_per_block x k */
    size_t rows_per_block;
} Projector;

const char *proj_kind_name(ProjKind k);
int proj_kind_parse(const char *name, ProjKind *k);
void proj_init(Projector *pr, ProjKind kind, uint64_t seed, int model_id, size_t p, int k);
void proj_free(Projector *pr);
/* out (B, k) = G (B, p; row stride ldg floats) R / sqrt(p). OVERWRITES out. */
void proj_apply(Projector *pr, const float *G, int B, size_t ldg, float *out);
/* Row i of R (k entries of +-1), for tests. */
void proj_row(const Projector *pr, size_t i, float *row);

#endif
