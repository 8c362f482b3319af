/* project.c: the random projection of TRAK (method.md 2.3, 6.5): out = G R / sqrt(p) with R a
 * p x k matrix that is regenerated on the fly and never stored. Three kinds of R; every one has
 * E[R R^T] = k I (rows of squared norm k, distinct rows uncorrelated), so that
 * E <R^T u, R^T v> = k <u, v> and, after the common 1/sqrt(p), features, kernels and scores of
 * every kind have the same scale.
 *
 * RADEMACHER (dense +-1, the reference). Entry (i, j) is bit (j % 32) of word (j / 32) % 4 of the
 * Philox block
 *   rng_block(seed, rng_stream(RNG_TAG_PROJECTION, model_id, 0), (i << 24) | (j / 128))
 * with bit 1 -> +1 and bit 0 -> -1 (one 32-bit draw gives 32 entries). It is a function of
 * (seed, model_id, i, j) alone: not of the block size, the thread count or the batch, and the
 * first k' columns of a k-column matrix are the k'-column matrix. Rows are limited to 2^40 and
 * columns to 2^31. (rng.h suggests keying PROJECTION streams by (model, block); keying the
 * counter by the row instead keeps rows_per_block a pure tuning knob.) A different model_id is
 * a different stream, hence an independent matrix (TRAK's seed + 10000 * model_id).
 *
 * The product, rademacher: two paths over the same R (dense_fused picks one per call), each
 * with float sums over blocks of rows added in double, the total rounded once; 1/sqrt(p) is
 * computed in double and applied in float (as TRAK divides its float32 features by sqrt(p)). The
 * two differ in rounding order only (~1e-6 of outputs ~3; tests/test_project.c checks both
 * against an explicit matrix, and each one's independence of the batch and of the thread count
 * bitwise).
 *
 * Fused (project_dense_avx512.c: the default on a build for AVX-512; JTRAK_SGEMM=openblas, which
 * turns jtrak's own AVX-512 SGEMM off, turns it off too). R is never written to memory: the
 * Philox words of 1024 rows x 128 columns (16 KiB) are generated, 16 rows per vectorised Philox
 * call, each 16-bit slice of a word becomes the signs of 16 columns in a register (a mask blend
 * of -1 and +1), and each example's entry of G is broadcast into a register tile of 8 examples
 * x 32 columns. Why: the portable path below materialises R as floats (1024 x k: 8 MiB at
 * k = 2048, rewritten for every block of rows) and hands it to an SGEMM that packs it again; on
 * featurize's fm-xs shapes (p = 280177, k = 2048, batch 16, 2 threads of a Zen 5 EPYC) it ran at
 * ~127 GFLOP/s where the SGEMM peaks at ~440, bound by memory: it slowed 2.4x when another tenant
 * of the host loaded memory. The fused kernel is bound by the vector pipes: 0.035 s instead of
 * 0.144 s per batch there (~530 GFLOP/s, above the SGEMM's peak: it also adds some products on
 * the pipes that fused multiply-adds leave idle), and a process streaming memory on the other
 * core slowed it by 2% (one thread; the portable path by ~40%). An example's
 * arithmetic: for each run of PROJ_DENSE_ROWS rows from row 0 up, a float sum over the run in row
 * order (from 0; each product g R[i][j] is exact), added in double to the total. Every example
 * of a tile does the same operations whatever its place and the tile's height (the last group
 * of a batch is a shorter tile, not zero padding), every column likewise, and the work items
 * (128 columns x 1024 rows) of a chunk of columns run in row order on whichever thread is free:
 * the result depends on neither the batch nor the thread count.
 *
 * Portable (no AVX-512 in the build, or JTRAK_SGEMM=openblas). Rows of R are taken
 * rows_per_block at a time; the block's k columns are cut into fixed chunks of PROJ_CHUNK_COLS,
 * and each chunk (generated into its slice of pr->block, then multiplied with la_sgemm) is one
 * OpenMP work item: the same item does the same arithmetic whichever thread runs it, so the
 * result does not depend on the thread count.
 * The batch is cut into groups of PROJ_GROUP_ROWS rows (the last one padded with zero rows) and
 * every GEMM has the same shape (PROJ_GROUP_ROWS x chunk x block rows). That is what makes an
 * example's result independent of the batch: OpenBLAS (0.3.21, Haswell kernels) sums a row that
 * falls in a full register tile differently from one in a remainder tile, so GEMMs of B rows gave
 * B = 1..3 and B >= 4 results up to ~1.4e-6 apart (a few ulp of outputs ~3). With one fixed shape
 * whose rows are all computed alike, an example always gets the same arithmetic whatever B is
 * and whatever the other rows hold (the test would say if another BLAS build broke it).
 *
 * SPARSE (a sparse JL transform: the block construction of Kane & Nelson, "Sparser
 * Johnson-Lindenstrauss transforms", J. ACM 2014, the sparse option of method.md's table row 6).
 * The k columns are cut into s = min(PROJ_SPARSE_NNZ, k) blocks, block t = [col0[t], col0[t+1]),
 * col0[t] = floor(t k / s) (sizes m_t differ by at most one). Row i of R has exactly one nonzero
 * in each block, +-sqrt(k / s): a count sketch per block, the s sketches summed. Its draws are
 * the 8 words of the Philox blocks 2i and 2i + 1 of stream rng_stream(RNG_TAG_PROJECTION,
 * model_id, 1) (word t for block t): bit 0 is the sign (set -> -1), and the column is
 * col0[t] + floor((w >> 1) m_t / 2^31) (multiply-shift on 31 bits: every column's probability
 * is 1/m_t within m_t / 2^31 < 1e-6 relative for m_t < 2^11, far below the JL error).
 * |R_i|^2 = k exactly, rows are uncorrelated by their signs, and the variance of
 * <R^T u, R^T v> / k is (|u|^2 |v|^2 + <u,v>^2 - 2 sum_i u_i^2 v_i^2) / k, the dense kind's exactly
 * (a count sketch with m buckets has that variance with 1/m, and s of them with m = k/s average
 * to 1/k); s > 1 only thins the tails for vectors with a few large coordinates. Cost B p s sign
 * adds instead of B p k.
 *
 * HADAMARD (a block subsampled randomized Hadamard transform, "block SRHT": Balabanov, Beaupere,
 * Grigori & Lederer, "Block subsampled randomized Hadamard transform for Nystrom approximation on
 * distributed architectures", ICML 2023). L = the smallest power of two >= k; the p rows are cut
 * into blocks c of L rows (the last one zero-padded), and R^T = [ E_0 S H D_0 | E_1 S H D_1 | ... ]
 * with H the L x L Walsh-Hadamard matrix (H[a][b] = (-1)^popcount(a & b), unnormalised), D_c the
 * input signs of block c (bit i of stream rng_stream(RNG_TAG_PROJECTION, model_id, 2), i the
 * global row), S the first k of the L outputs and E_c the output signs of block c (bit j of the
 * blocks (c << 24) | (j / 128) of stream (.., model_id, 3); bits as for the dense kind). So
 * R[i][j] = D(i) H[i % L][j] E(i / L, j): every entry +-1, every coordinate reaches every output.
 * Why it is a JL map: D_c makes every output of H D_c g_c a Rademacher sum of the whole block
 * (the randomized-Hadamard "flattening": no output carries much more than its share), and for
 * k = L a block's map is an exact isometry (times sqrt(k)): rows of one block are orthogonal, so
 * a block's own contribution to <R^T u, R^T v> is exactly k <u_c, v_c>. The cross terms between
 * blocks c != c' are sum_j E_c[j] E_c'[j] (H D_c u_c)_j (H D_c' v_c')_j, independent random signs
 * times outputs whose squares average |u_c|^2 |v_c'|^2: variance / k^2 = (|u|^2 |v|^2 + <u,v>^2 -
 * sum_c (|u_c|^2 |v_c|^2 + <u_c,v_c>^2)) / k, at most the dense kind's. Without E_c the cross
 * terms would be k <D_c u_c, D_c' v_c'>, which only pairs coordinates L apart (a fold, no mixing):
 * a layer whose rows divide L puts its dominant column on few of them.
 * For k < L (k not a power of two) S keeps the first k outputs (the paper samples a random subset,
 * shared by the blocks): for a fixed vector every output of H D u is a Rademacher sum with variance
 * |u|^2, so a fixed subset serves as well.
 * Cost B p log2(L) adds (a fast Walsh-Hadamard transform per block) instead of B p k.
 *
 * The product, sparse and hadamard. The rows of G are cut into fixed chunks of chunk_rows() rows
 * (a multiple of L); a chunk is one OpenMP work item that writes its own partial sums in double
 * ((B, k); sparse keeps them (k, B) so that a nonzero adds B contiguous values), every example in
 * a fixed order (rows ascending; for hadamard a block's FWHT in double, then its k outputs
 * added), its draws generated once and shared by the batch. The partials are added to the total
 * in chunk order, whatever thread made them, and the total is scaled and rounded to float once.
 * No BLAS, and an example's arithmetic never involves another example (the batch only adds SIMD
 * lanes doing the same operations), so its result depends neither on the thread count nor on the
 * batch. The distinct streams (model_id, 0..3) keep the kinds' draws from ever sharing a Philox
 * counter. */
#include "attrib/project.h"
#include "attrib/project_dense_avx512.h"

#include "core/common.h"
#include "core/linalg.h"
#include "core/rng.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* rademacher, portable path: rows of R per block, columns per work item, examples per GEMM */
#define PROJ_ROWS_PER_BLOCK 1024
#define PROJ_CHUNK_COLS 128 /* a multiple of 128: a chunk starts on a Philox block */
/* 8 rows: with OpenBLAS 0.3.21's Haswell sgemm every row of an 8-row GEMM is computed alike,
 * whatever its position (checked on batches of 1..16); with 16 rows the kernel splits the rows
 * into unequal tiles and a row's result depends on its position (~1e-6 apart), although it would
 * be ~25% faster per example at batch 64 (OpenBLAS repacks the R chunk for every group). */
#define PROJ_GROUP_ROWS 8
#define PROJ_MAX_ROWS ((uint64_t)1 << 40)
/* sparse and hadamard: rows of G per work item (at least L), a power of two. Small enough that a
 * model of 10^5 parameters still makes several items; the (B, k) partial sums it costs are a few
 * percent of an item's work. */
#define PROJ_CHUNK_ROWS ((size_t)1 << 13)
/* sparse: rows whose columns and signs are drawn at a time (32 KiB of codes and, at B = 16,
 * 64 KiB of G transposed: cache-resident while every example of the batch uses them). */
#define PROJ_SPARSE_SUB 1024
/* sparse and hadamard: bytes of (B, k) partial sums held at once (see wave_chunks) */
#define PROJ_PARTIAL_BYTES ((size_t)32 << 20)
/* Streams of the kinds: (RNG_TAG_PROJECTION, model_id, PROJ_STREAM_*). */
enum {
    PROJ_STREAM_DENSE = 0,
    PROJ_STREAM_SPARSE = 1,
    PROJ_STREAM_HAD_IN = 2,
    PROJ_STREAM_HAD_OUT = 3
};

const char *proj_kind_name(ProjKind k) {
    switch (k) {
    case PROJ_RADEMACHER:
        return "rademacher";
    case PROJ_SPARSE:
        return "sparse";
    case PROJ_HADAMARD:
        return "hadamard";
    }
    CHECK(0, "bad projection kind %d", (int)k);
}

int proj_kind_parse(const char *name, ProjKind *k) {
    static const ProjKind kinds[] = {PROJ_RADEMACHER, PROJ_SPARSE, PROJ_HADAMARD};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(name, proj_kind_name(kinds[i])) == 0) {
            *k = kinds[i];
            return 1;
        }
    }
    return 0;
}

void proj_init(Projector *pr, ProjKind kind, uint64_t seed, int model_id, size_t p, int k) {
    CHECK(kind == PROJ_RADEMACHER || kind == PROJ_SPARSE || kind == PROJ_HADAMARD,
          "bad projection kind %d", (int)kind);
    CHECK(model_id >= 0, "model id %d", model_id);
    CHECK(p >= 1 && (uint64_t)p < PROJ_MAX_ROWS, "projection input dimension %zu", p);
    CHECK(k >= 1 && k <= (1 << 30), "projection dimension %d", k);
    memset(pr, 0, sizeof *pr);
    pr->kind = kind;
    pr->seed = seed;
    pr->model_id = model_id;
    pr->p = p;
    pr->k = k;
    if (kind == PROJ_RADEMACHER) {
        pr->rows_per_block = p < PROJ_ROWS_PER_BLOCK ? p : PROJ_ROWS_PER_BLOCK;
        size_t n;
        CHECK(jt_mul_size(pr->rows_per_block, (size_t)k, &n), "projection block size overflows");
        /* applies $JTRAK_SGEMM (which decides the path: dense_fused) and keeps OpenBLAS on the
         * calling thread (the portable path's chunks run in parallel, each GEMM on its own) */
        la_blas_single_threaded();
    } else if (kind == PROJ_SPARSE) {
        pr->s = k < PROJ_SPARSE_NNZ ? k : PROJ_SPARSE_NNZ;
        for (int t = 0; t <= pr->s; t++)
            pr->col0[t] = (int)((int64_t)t * k / pr->s);
    } else {
        pr->L = 1;
        while (pr->L < k)
            pr->L *= 2;
    }
}

void proj_free(Projector *pr) {
    if (!pr) return;
    free(pr->block);
    pr->block = NULL;
}

static uint64_t proj_stream(const Projector *pr, int which) {
    return rng_stream(RNG_TAG_PROJECTION, (uint64_t)(uint32_t)pr->model_id, (uint64_t)which);
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

/* ---- rademacher ------------------------------------------------------------------------------ */

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

/* The fused AVX-512 kernel (project_dense_avx512.h) when this build has it and la_sgemm runs
 * jtrak's own AVX-512 SGEMM; with JTRAK_SGEMM=openblas (or a build without AVX-512) the portable
 * path below, so that one switch still turns every jtrak kernel off. */
static int dense_fused(void) {
    return proj_dense_avx512_built() && strcmp(la_sgemm_kernel(), "avx512") == 0;
}

/* The portable path: acc (B, k) += G R, R materialised in float block by block (pr->block,
 * allocated on first use) and multiplied by la_sgemm. */
static void dense_gemm(Projector *pr, const float *G, int B, size_t ldg, double *acc) {
    const size_t p = pr->p, rpb = pr->rows_per_block;
    const int k = pr->k;
    const int ngroups = (B + PROJ_GROUP_ROWS - 1) / PROJ_GROUP_ROWS;
    const size_t Bp = (size_t)ngroups * PROJ_GROUP_ROWS; /* padded batch */
    const int nchunks = (k + PROJ_CHUNK_COLS - 1) / PROJ_CHUNK_COLS;
    const uint64_t stream = proj_stream(pr, PROJ_STREAM_DENSE);

    if (!pr->block) pr->block = xmalloc(rpb * (size_t)k * sizeof(float)); /* (rpb, k) */
    float *pack = xmalloc(Bp * rpb * sizeof(float));      /* (Bp, nr) one block of G */
    float *tmp = xmalloc(Bp * (size_t)k * sizeof(float)); /* (Bp, k) one block's product */

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
    free(pack);
    free(tmp);
}

static void dense_apply(Projector *pr, const float *G, int B, size_t ldg, float *out) {
    const size_t Bk = (size_t)B * pr->k;
    double *acc = xcalloc(Bk, sizeof(double)); /* (B, k) */
    if (!dense_fused() || !proj_dense_avx512(G, B, ldg, pr->p, pr->k, pr->seed,
                                             proj_stream(pr, PROJ_STREAM_DENSE), acc))
        dense_gemm(pr, G, B, ldg, acc);
    const float scale = (float)(1.0 / sqrt((double)pr->p));
    for (size_t i = 0; i < Bk; i++)
        out[i] = (float)acc[i] * scale;
    free(acc);
}

/* ---- sparse ---------------------------------------------------------------------------------- */

/* The s nonzeros of row i: code[t] = column << 1 | (1 if the sign is -1), column in block t. */
static void sparse_codes(const Projector *pr, uint64_t stream, size_t i, uint32_t *code) {
    RngBlock lo = rng_block(pr->seed, stream, 2 * (uint64_t)i);
    RngBlock hi = rng_block(pr->seed, stream, 2 * (uint64_t)i + 1);
    const uint32_t w[8] = {lo.v[0], lo.v[1], lo.v[2], lo.v[3], hi.v[0], hi.v[1], hi.v[2], hi.v[3]};
    for (int t = 0; t < pr->s; t++) {
        const uint64_t m = (uint64_t)(pr->col0[t + 1] - pr->col0[t]);
        const uint32_t col = (uint32_t)pr->col0[t] + (uint32_t)(((uint64_t)(w[t] >> 1) * m) >> 31);
        code[t] = col << 1 | (w[t] & 1u);
    }
}

/* part (k, B) += rows [r0, r1) of G times R (unscaled: +-1 for the nonzeros). scratch: the codes
 * of PROJ_SPARSE_SUB rows (s each), then those rows of G transposed (PROJ_SPARSE_SUB, B). A
 * nonzero adds a row of B values to a row of part: B lanes of the same additions, so an example's
 * sums do not depend on B; for each example and column the rows are added in ascending order. */
static void sparse_chunk(const Projector *pr, const float *G, int B, size_t ldg, size_t r0,
                         size_t r1, double *part, void *scratch) {
    const uint64_t stream = proj_stream(pr, PROJ_STREAM_SPARSE);
    const int s = pr->s;
    uint32_t *code = scratch;                                  /* (SUB, s) */
    float *gt = (float *)(code + (size_t)PROJ_SPARSE_SUB * s); /* (SUB, B) */
    for (size_t q0 = r0; q0 < r1; q0 += PROJ_SPARSE_SUB) {
        const size_t n = r1 - q0 < PROJ_SPARSE_SUB ? r1 - q0 : PROJ_SPARSE_SUB;
        for (size_t r = 0; r < n; r++)
            sparse_codes(pr, stream, q0 + r, code + r * (size_t)s);
        for (int b = 0; b < B; b++) {
            const float *gb = G + (size_t)b * ldg + q0;
            for (size_t r = 0; r < n; r++)
                gt[r * B + b] = gb[r];
        }
        for (size_t r = 0; r < n; r++) {
            const float *gr = gt + r * B;
            for (int t = 0; t < s; t++) {
                const uint32_t c = code[r * (size_t)s + t];
                const double sg = (c & 1u) ? -1.0 : 1.0; /* exact: a sign flip */
                double *pc = part + (size_t)(c >> 1) * B;
                for (int b = 0; b < B; b++)
                    pc[b] += sg * gr[b];
            }
        }
    }
}

/* ---- hadamard -------------------------------------------------------------------------------- */

/* out[l] = +-1.0 from bit i0 + l, l < n, of a stream: bit i is bit i % 32 of word (i / 32) % 4 of
 * the Philox block base | i / 128 (set -> +1). */
static void sign_bits(uint64_t seed, uint64_t stream, uint64_t base, uint64_t i0, size_t n,
                      double *out) {
    size_t l = 0;
    while (l < n) {
        const uint64_t i = i0 + l;
        const RngBlock rb = rng_block(seed, stream, base | (i >> 7));
        size_t end = l + (size_t)(128 - (i & 127));
        if (end > n) end = n;
        for (; l < end; l++) {
            const uint64_t ii = i0 + l;
            out[l] = (rb.v[(ii >> 5) & 3] >> (ii & 31)) & 1u ? 1.0 : -1.0;
        }
    }
}

/* In place x (L) <- H x, H[a][b] = (-1)^popcount(a & b): the butterflies in a fixed order. */
static void fwht(double *x, int L) {
    for (int h = 1; h < L; h *= 2)
        for (int i = 0; i < L; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                const double a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

/* part (B, k) += rows [r0, r1) of G times R, r0 a multiple of L. scratch: 2 L + k doubles. */
static void hadamard_chunk(const Projector *pr, const float *G, int B, size_t ldg, size_t r0,
                           size_t r1, double *part, double *scratch) {
    const int L = pr->L, k = pr->k;
    const uint64_t s_in = proj_stream(pr, PROJ_STREAM_HAD_IN);
    const uint64_t s_out = proj_stream(pr, PROJ_STREAM_HAD_OUT);
    double *d = scratch, *e = scratch + L, *x = scratch + L + k; /* (L), (k), (L) */
    for (size_t c0 = r0; c0 < r1; c0 += (size_t)L) {
        const size_t n = r1 - c0 < (size_t)L ? r1 - c0 : (size_t)L;
        sign_bits(pr->seed, s_in, 0, c0, n, d);
        sign_bits(pr->seed, s_out, (uint64_t)(c0 / (size_t)L) << 24, 0, (size_t)k, e);
        for (int b = 0; b < B; b++) {
            const float *gb = G + (size_t)b * ldg + c0;
            for (size_t l = 0; l < n; l++)
                x[l] = d[l] * gb[l];
            for (size_t l = n; l < (size_t)L; l++)
                x[l] = 0;
            fwht(x, L);
            double *pb = part + (size_t)b * k;
            for (int j = 0; j < k; j++)
                pb[j] += e[j] * x[j];
        }
    }
}

/* ---- sparse and hadamard: chunks of rows, partial sums added in chunk order ------------------ */

static size_t chunk_rows(const Projector *pr) {
    return pr->kind == PROJ_HADAMARD && (size_t)pr->L > PROJ_CHUNK_ROWS ? (size_t)pr->L
                                                                        : PROJ_CHUNK_ROWS;
}

/* Chunks whose partials are held at once: up to PROJ_PARTIAL_BYTES of them (every chunk of a
 * model of ~10^6 parameters at B = 16, k = 2048: one wave, one barrier), at least two per thread;
 * the result does not depend on it. */
static size_t wave_chunks(const Projector *pr, int B) {
    const size_t nch = (pr->p + chunk_rows(pr) - 1) / chunk_rows(pr);
    const size_t per = (size_t)B * (size_t)pr->k * sizeof(double);
    size_t w = PROJ_PARTIAL_BYTES / per, lo = 2 * (size_t)omp_get_max_threads();
    if (w < lo) w = lo;
    return w < nch ? w : nch;
}

static size_t item_scratch_bytes(const Projector *pr, int B) {
    return pr->kind == PROJ_SPARSE
               ? (size_t)PROJ_SPARSE_SUB * ((size_t)pr->s * sizeof(uint32_t) + B * sizeof(float))
               : (2 * (size_t)pr->L + (size_t)pr->k) * sizeof(double);
}

static void chunked_apply(Projector *pr, const float *G, int B, size_t ldg, float *out) {
    const size_t p = pr->p, rows = chunk_rows(pr), Bk = (size_t)B * pr->k;
    const size_t nch = (p + rows - 1) / rows, wave = wave_chunks(pr, B);
    /* (B, k) for hadamard, (k, B) for sparse: the chunks' layout; the sums are elementwise */
    double *acc = xcalloc(Bk, sizeof(double));
    double *part = xmalloc(wave * Bk * sizeof(double)); /* (wave, B, k) or (wave, k, B) */
    for (size_t w0 = 0; w0 < nch; w0 += wave) {
        const int nw = (int)(nch - w0 < wave ? nch - w0 : wave);
#pragma omp parallel
        {
            void *scratch = xmalloc(item_scratch_bytes(pr, B));
#pragma omp for schedule(dynamic, 1)
            for (int c = 0; c < nw; c++) {
                const size_t r0 = (w0 + (size_t)c) * rows, r1 = r0 + rows < p ? r0 + rows : p;
                double *pc = part + (size_t)c * Bk;
                memset(pc, 0, Bk * sizeof(double));
                if (pr->kind == PROJ_SPARSE)
                    sparse_chunk(pr, G, B, ldg, r0, r1, pc, scratch);
                else
                    hadamard_chunk(pr, G, B, ldg, r0, r1, pc, scratch);
            }
            free(scratch);
#pragma omp for schedule(static)
            for (size_t i = 0; i < Bk; i++)
                for (int c = 0; c < nw; c++)
                    acc[i] += part[(size_t)c * Bk + i];
        }
    }
    /* sparse: the nonzeros are +-sqrt(k / s); both factors in double, one rounding. */
    const double scale = pr->kind == PROJ_SPARSE ? sqrt((double)pr->k / pr->s) / sqrt((double)p)
                                                 : 1.0 / sqrt((double)p);
    if (pr->kind == PROJ_SPARSE) { /* acc is (k, B) */
        for (int b = 0; b < B; b++)
            for (int j = 0; j < pr->k; j++)
                out[(size_t)b * pr->k + j] = (float)(acc[(size_t)j * B + b] * scale);
    } else {
        for (size_t i = 0; i < Bk; i++)
            out[i] = (float)(acc[i] * scale);
    }
    free(acc);
    free(part);
}

/* ---- the interface --------------------------------------------------------------------------- */

size_t proj_scratch_bytes(const Projector *pr, int B) {
    const size_t k = (size_t)pr->k, Bk = (size_t)B * k;
    if (pr->kind == PROJ_RADEMACHER) {
        if (dense_fused())
            return Bk * sizeof(double) +
                   proj_dense_avx512_scratch_bytes(pr->k, omp_get_max_threads());
        const size_t Bp = (size_t)(B + PROJ_GROUP_ROWS - 1) / PROJ_GROUP_ROWS * PROJ_GROUP_ROWS;
        const size_t rpb = pr->rows_per_block;
        return (rpb * k + Bp * rpb + Bp * k) * sizeof(float) + Bk * sizeof(double);
    }
    return (1 + wave_chunks(pr, B)) * Bk * sizeof(double) +
           (size_t)omp_get_max_threads() * item_scratch_bytes(pr, B);
}

void proj_row(const Projector *pr, size_t i, float *row) {
    CHECK(i < pr->p, "row %zu of %zu", i, pr->p);
    const int k = pr->k;
    if (pr->kind == PROJ_RADEMACHER) {
        proj_gen(pr, proj_stream(pr, PROJ_STREAM_DENSE), i, 0, k, row);
    } else if (pr->kind == PROJ_SPARSE) {
        uint32_t code[PROJ_SPARSE_NNZ];
        sparse_codes(pr, proj_stream(pr, PROJ_STREAM_SPARSE), i, code);
        const float v = (float)sqrt((double)k / pr->s);
        memset(row, 0, (size_t)k * sizeof *row);
        for (int t = 0; t < pr->s; t++)
            row[code[t] >> 1] = (code[t] & 1u) ? -v : v;
    } else {
        const size_t L = (size_t)pr->L;
        double d, *e = xmalloc((size_t)k * sizeof *e);
        sign_bits(pr->seed, proj_stream(pr, PROJ_STREAM_HAD_IN), 0, i, 1, &d);
        sign_bits(pr->seed, proj_stream(pr, PROJ_STREAM_HAD_OUT), (uint64_t)(i / L) << 24, 0,
                  (size_t)k, e);
        const unsigned a = (unsigned)(i % L);
        for (int j = 0; j < k; j++)
            row[j] = (float)(d * e[j] * (__builtin_parity(a & (unsigned)j) ? -1.0 : 1.0));
        free(e);
    }
}

void proj_apply(Projector *pr, const float *G, int B, size_t ldg, float *out) {
    CHECK(B >= 1, "batch %d", B);
    CHECK(ldg >= pr->p, "row stride %zu < p = %zu", ldg, pr->p);
    size_t n;
    CHECK(jt_mul_size((size_t)B, (size_t)pr->k, &n), "projection output size overflows");
    if (pr->kind == PROJ_RADEMACHER)
        dense_apply(pr, G, B, ldg, out);
    else
        chunked_apply(pr, G, B, ldg, out);
}
