/* project.c: the random projection of TRAK (method.md 2.3, 6.5): out = G R / sqrt(p) with R a
 * dense p x k Rademacher matrix that is regenerated on the fly and never stored.
 *
 * The matrix. Entry (i, j) is bit (j % 32) of word (j / 32) % 4 of the Philox block
 *   rng_block(seed, rng_stream(RNG_TAG_PROJECTION, model_id, 0), (i << 24) | (j / 128))
 * with bit 1 -> +1 and bit 0 -> -1 (one 32-bit draw gives 32 entries). It is a function of
 * (seed, model_id, i, j) alone: not of the block size, the thread count or the batch, and the
 * first k' columns of a k-column matrix are the k'-column matrix. Rows are limited to 2^40 and
 * columns to 2^31. (rng.h suggests keying PROJECTION streams by (model, block); keying the
 * counter by the row instead keeps rows_per_block a pure tuning knob.) A different model_id is
 * a different stream, hence an independent matrix (TRAK's seed + 10000 * model_id).
 *
 * The product. Rows of R are taken rows_per_block at a time; the block's k columns are cut into
 * fixed chunks of PROJ_CHUNK_COLS, and each chunk (generated into its slice of pr->block, then
 * multiplied) is one OpenMP work item: the same item does the same arithmetic whichever thread
 * runs it, so the result does not depend on the thread count.
 * The batch is cut into groups of PROJ_GROUP_ROWS rows (the last one padded with zero rows) and
 * every GEMM has the same shape (PROJ_GROUP_ROWS x chunk x block rows). That is what makes an
 * example's result independent of the batch: OpenBLAS (0.3.21, Haswell kernels) sums a row that
 * falls in a full register tile differently from one in a remainder tile, so GEMMs of B rows gave
 * B = 1..3 and B >= 4 results up to ~1.4e-6 apart (a few ulp of outputs ~3). With one fixed shape
 * whose rows are all computed alike, an example always gets the same arithmetic whatever B is
 * and whatever the other rows hold (tests/test_project.c checks this and the thread independence
 * bitwise; another BLAS build could break it, and that test would say so). The block products
 * are accumulated in double and rounded once; 1/sqrt(p) is computed in double and applied in
 * float (as TRAK divides its float32 features by sqrt(p)). */
#include "attrib/project.h"

#include "core/common.h"
#include "core/linalg.h"
#include "core/rng.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define PROJ_ROWS_PER_BLOCK 1024
#define PROJ_CHUNK_COLS 128 /* a multiple of 128: a chunk starts on a Philox block */
/* 8 rows: with OpenBLAS 0.3.21's Haswell sgemm every row of an 8-row GEMM is computed alike,
 * whatever its position (checked on batches of 1..16); with 16 rows the kernel splits the rows
 * into unequal tiles and a row's result depends on its position (~1e-6 apart), although it would
 * be ~25% faster per example at batch 64 (OpenBLAS repacks the R chunk for every group). */
#define PROJ_GROUP_ROWS 8
#define PROJ_MAX_ROWS ((uint64_t)1 << 40)

const char *proj_kind_name(ProjKind k) {
    switch (k) {
    case PROJ_RADEMACHER:
        return "rademacher";
    }
    CHECK(0, "bad projection kind %d", (int)k);
}

int proj_kind_parse(const char *name, ProjKind *k) {
    if (strcmp(name, "rademacher") == 0) {
        *k = PROJ_RADEMACHER;
        return 1;
    }
    return 0;
}

void proj_init(Projector *pr, ProjKind kind, uint64_t seed, int model_id, size_t p, int k) {
    CHECK(kind == PROJ_RADEMACHER, "bad projection kind %d", (int)kind);
    CHECK(model_id >= 0, "model id %d", model_id);
    CHECK(p >= 1 && (uint64_t)p < PROJ_MAX_ROWS, "projection input dimension %zu", p);
    CHECK(k >= 1, "projection dimension %d", k);
    pr->kind = kind;
    pr->seed = seed;
    pr->model_id = model_id;
    pr->p = p;
    pr->k = k;
    pr->rows_per_block = p < PROJ_ROWS_PER_BLOCK ? p : PROJ_ROWS_PER_BLOCK;
    size_t n;
    CHECK(jt_mul_size(pr->rows_per_block, (size_t)k, &n), "projection block size overflows");
    pr->block = xmalloc(n * sizeof(float));
    la_blas_single_threaded(); /* the chunks run in parallel, each GEMM on its own thread */
}

void proj_free(Projector *pr) {
    if (!pr) return;
    free(pr->block);
    pr->block = NULL;
}

static uint64_t proj_stream(const Projector *pr) {
    return rng_stream(RNG_TAG_PROJECTION, (uint64_t)(uint32_t)pr->model_id, 0);
}

/* SIGNS[byte] = the 8 entries of one byte of a draw: bit b (LSB first) set -> +1, clear -> -1.
 * A table lookup writes 8 entries with one 32-byte copy. */
// clang-format off
#define PROJ_SIGN(v, b) ((((v) >> (b)) & 1) ? 1.0f : -1.0f)
#define PROJ_BYTE(v)                                                                               \
    {PROJ_SIGN(v, 0), PROJ_SIGN(v, 1), PROJ_SIGN(v, 2), PROJ_SIGN(v, 3),                           \
     PROJ_SIGN(v, 4), PROJ_SIGN(v, 5), PROJ_SIGN(v, 6), PROJ_SIGN(v, 7)}
#define PROJ_BYTES4(v) PROJ_BYTE(v), PROJ_BYTE(v + 1), PROJ_BYTE(v + 2), PROJ_BYTE(v + 3)
#define PROJ_BYTES16(v) PROJ_BYTES4(v), PROJ_BYTES4(v + 4), PROJ_BYTES4(v + 8), PROJ_BYTES4(v + 12)
#define PROJ_BYTES64(v)                                                                            \
    PROJ_BYTES16(v), PROJ_BYTES16(v + 16), PROJ_BYTES16(v + 32), PROJ_BYTES16(v + 48)
static const float SIGNS[256][8] = {PROJ_BYTES64(0), PROJ_BYTES64(64), PROJ_BYTES64(128),
                                    PROJ_BYTES64(192)};
// clang-format on

/* Columns [c0, c1) of row i into out[0 .. c1 - c0); c0 a multiple of 128. */
static void proj_gen(const Projector *pr, uint64_t stream, size_t i, int c0, int c1, float *out) {
    for (int q = c0; q < c1; q += 128) {
        RngBlock rb = rng_block(pr->seed, stream, ((uint64_t)i << 24) | (uint64_t)(q >> 7));
        for (int w = 0; w < 4; w++) {
            const int j0 = q + 32 * w;
            if (j0 >= c1) break;
            const uint32_t word = rb.v[w];
            float *o = out + (j0 - c0);
            if (c1 - j0 >= 32) {
                for (int byte = 0; byte < 4; byte++)
                    memcpy(o + 8 * byte, SIGNS[(word >> (8 * byte)) & 0xffu], 8 * sizeof(float));
            } else {
                for (int b = 0; b < c1 - j0; b++)
                    o[b] = PROJ_SIGN(word, b);
            }
        }
    }
}

void proj_row(const Projector *pr, size_t i, float *row) {
    CHECK(i < pr->p, "row %zu of %zu", i, pr->p);
    proj_gen(pr, proj_stream(pr), i, 0, pr->k, row);
}

void proj_apply(Projector *pr, const float *G, int B, size_t ldg, float *out) {
    CHECK(B >= 1, "batch %d", B);
    CHECK(ldg >= pr->p, "row stride %zu < p = %zu", ldg, pr->p);
    const size_t p = pr->p, rpb = pr->rows_per_block;
    const int k = pr->k;
    const int ngroups = (B + PROJ_GROUP_ROWS - 1) / PROJ_GROUP_ROWS;
    const size_t Bp = (size_t)ngroups * PROJ_GROUP_ROWS; /* padded batch */
    const int nchunks = (k + PROJ_CHUNK_COLS - 1) / PROJ_CHUNK_COLS;
    const uint64_t stream = proj_stream(pr);

    float *pack = xmalloc(Bp * rpb * sizeof(float));      /* (Bp, nr) one block of G */
    float *tmp = xmalloc(Bp * (size_t)k * sizeof(float)); /* (Bp, k) one block's product */
    double *acc = xcalloc((size_t)B * k, sizeof(double)); /* (B, k) */

    for (size_t r0 = 0; r0 < p; r0 += rpb) {
        const int nr = (int)(p - r0 < rpb ? p - r0 : rpb);
        /* (Bp, nr) at row stride nr: the rows of G, then zero rows up to the padded batch. */
        for (int b = 0; b < B; b++)
            memcpy(pack + (size_t)b * nr, G + (size_t)b * ldg + r0, (size_t)nr * sizeof(float));
        memset(pack + (size_t)B * nr, 0, (Bp - (size_t)B) * (size_t)nr * sizeof(float));
#pragma omp parallel for schedule(dynamic, 1)
        for (int c = 0; c < nchunks; c++) {
            const int c0 = c * PROJ_CHUNK_COLS;
            const int c1 = c0 + PROJ_CHUNK_COLS < k ? c0 + PROJ_CHUNK_COLS : k;
            float *R = pr->block + c0; /* (nr, c1 - c0), row stride k */
            for (int r = 0; r < nr; r++)
                proj_gen(pr, stream, r0 + (size_t)r, c0, c1, R + (size_t)r * k);
            for (int gi = 0; gi < ngroups; gi++) {
                const size_t g0 = (size_t)gi * PROJ_GROUP_ROWS;
                la_sgemm(0, 0, PROJ_GROUP_ROWS, c1 - c0, nr, 1.0f, pack + g0 * nr, nr, R, k, 0.0f,
                         tmp + g0 * k + c0, k);
            }
            for (int b = 0; b < B; b++) {
                double *ab = acc + (size_t)b * k;
                const float *tb = tmp + (size_t)b * k;
                for (int j = c0; j < c1; j++)
                    ab[j] += tb[j];
            }
        }
    }
    const float scale = (float)(1.0 / sqrt((double)p));
    for (size_t i = 0; i < (size_t)B * k; i++)
        out[i] = (float)acc[i] * scale;
    free(pack);
    free(tmp);
    free(acc);
}
