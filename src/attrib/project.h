/* project.h: random projection of gradient vectors (method.md 2.3, 6.5): out = G R / sqrt(p) with
 * R a p x k random matrix that is generated on the fly from Philox keyed by (seed, model_id, row):
 * never stored, identical in featurize and score, across thread counts, batch compositions and MPI
 * ranks. A different model_id gives an independent matrix (as TRAK's seed + 10000 * model_id).
 * Three kinds (project.c's top comment gives the constructions):
 *   rademacher  dense +-1 entries, as TRAK's CudaProjector (the reference; cost B p k)
 *   sparse      a sparse JL transform: PROJ_SPARSE_NNZ nonzeros +-sqrt(k / s) per row of R, one in
 *               each of s column blocks (cost B p s)
 *   hadamard    a block subsampled randomized Hadamard transform: +-1 entries, each run of L rows
 *               (L = k rounded up to a power of two) a sign-flipped Walsh-Hadamard block (cost
 *               B p log2 L)
 * Every kind has E[R R^T] = k I, so E <out_u, out_v> = (k / p) <u, v> and the variance of that
 * estimate is at most the dense kind's: features, kernels and scores have the same scale whichever
 * kind made them. */
#ifndef JTRAK_PROJECT_H
#define JTRAK_PROJECT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PROJ_RADEMACHER = 0, PROJ_SPARSE = 1, PROJ_HADAMARD = 2 } ProjKind;

/* Nonzeros per row of the sparse kind (fewer when k is smaller). Part of the definition of
 * "sparse": changing it changes every stored sparse feature. */
#define PROJ_SPARSE_NNZ 8

typedef struct {
    ProjKind kind;
    uint64_t seed;
    int model_id;
    size_t p;              /* input dimension (the parameter count) */
    int k;                 /* output dimension */
    float *block;          /* rademacher, portable path: scratch rows_per_block x k (allocated on
                              first use); NULL otherwise */
    size_t rows_per_block; /* rademacher, portable path: rows of R generated at a time; 0 for the
                              other kinds */
    int s;                 /* sparse: nonzeros per row, min(PROJ_SPARSE_NNZ, k) */
    int col0[PROJ_SPARSE_NNZ + 1]; /* sparse: column block t is [col0[t], col0[t + 1]) */
    int L;                         /* hadamard: block length, the smallest power of two >= k */
} Projector;

const char *proj_kind_name(ProjKind k);
/* "rademacher", "sparse" or "hadamard": 1 and *k set, or 0. */
int proj_kind_parse(const char *name, ProjKind *k);
void proj_init(Projector *pr, ProjKind kind, uint64_t seed, int model_id, size_t p, int k);
void proj_free(Projector *pr);
/* Bytes of scratch proj_apply holds at batch B (with this process's OpenMP thread count). */
size_t proj_scratch_bytes(const Projector *pr, int B);
/* out (B, k) = G (B, p; row stride ldg floats) R / sqrt(p). OVERWRITES out. */
void proj_apply(Projector *pr, const float *G, int B, size_t ldg, float *out);
/* Row i of R (k entries: +-1 for rademacher and hadamard; s entries +-sqrt(k / s) and zeros for
 * sparse), for tests. */
void proj_row(const Projector *pr, size_t i, float *row);

#endif
