/* project_dense_avx512.c: see project_dense_avx512.h. Work items are (chunk of 128 columns, block
 * of PD_ROWS rows); a chunk's blocks go in row order, each item to whichever thread is free
 * (pd_claim). An item: the chunk's Philox words for the block's rows, into an L1-resident buffer,
 * 16 rows per vectorised Philox call -> groups of PD_MR examples -> the chunk's 4 tiles of PD_NV
 * vectors of 16 columns -> runs of PROJ_DENSE_ROWS rows, each row PD_NV mask blends (the signs)
 * and PD_MR x PD_NV accumulations of broadcast entries of G; after a run the float tile is added
 * to the tile's double totals (on the stack while the block goes by, then stored into acc).
 *
 * Two ways to add g R[i][j] to an accumulator c, bitwise the same (g times +-1 is exact, and
 * each rounds once): fma(g, s, c) with s = +-1.0 (the blend), and c + (g ^ the sign bit of s)
 * (one vpternlogd, then vaddps). Zen 5 runs fused multiply-adds on two of its four vector pipes
 * and additions on the other two: with PD_MR_ADD of the PD_MR x PD_NV accumulators added the
 * second way, both kinds of pipe work (one thread of a Zen 5 EPYC, batch 16, k 2048, p 280177:
 * 8 x 2 tiles took 0.0775 s with fma alone, 0.0686 s with 3 of 16 by addition, 0.073 s with 4;
 * 8 x 3 tiles 0.0775 s and 0.068 s with 4 of 24; 6 x 4 tiles 0.0776 s). On a core whose
 * additions share the fma ports (Intel's), the 3 extra vpternlogd per row would cost instead:
 * set PD_MR_ADD to 0 there after measuring. */
#include "attrib/project_dense_avx512.h"

#if defined(__AVX512F__) && defined(__AVX512VL__)

#include "core/common.h"

#include <immintrin.h>
#include <sched.h>
#include <stdlib.h>

enum {
    PD_MR = 8,          /* examples of the register tile */
    PD_NV = 2,          /* vectors of 16 columns of the register tile */
    PD_MR_ADD = 3,      /* examples whose last vector is accumulated by vaddps, not fma */
    PD_NC = 16 * PD_NV, /* columns of a tile */
    PD_CHUNK = 128,     /* columns of one Philox block (4 words of 32 bits): a work item */
    PD_ROWS = 1024,     /* rows of a block (the words of a chunk: 16 KiB) */
};
_Static_assert(PD_CHUNK % PD_NC == 0, "a tile lies in one chunk");
_Static_assert(PD_ROWS % PROJ_DENSE_ROWS == 0 && PROJ_DENSE_ROWS % 16 == 0,
               "Philox makes the words of 16 rows at a time");

/* Bytes of one thread's buffer of Philox words: (4, PD_ROWS) of 32 bits. */
#define PD_BITS_BYTES (4 * PD_ROWS * sizeof(uint32_t))

/* Philox4x32-10 (Random123's philox4x32, as core/rng.c calls it) of 16 counters at once: x[w]
 * holds word w of the 16 counters in, of the 16 outputs out. The 32 x 32 -> 64 bit products of
 * the even lanes come from one _mm512_mul_epu32, those of the odd lanes from another on the
 * words shifted down; a masked in-lane shuffle puts each product's halves in their lanes. */
static inline __attribute__((always_inline)) void philox16(__m512i x[4], uint64_t seed) {
    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u);
    const __m512i m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma GCC unroll 10
    for (int round = 0; round < 10; round++) {
        const __m512i e0 = _mm512_mul_epu32(x[0], m0);
        const __m512i o0 = _mm512_mul_epu32(_mm512_srli_epi64(x[0], 32), m0);
        const __m512i e1 = _mm512_mul_epu32(x[2], m1);
        const __m512i o1 = _mm512_mul_epu32(_mm512_srli_epi64(x[2], 32), m1);
        /* even lanes: the high half is element 1 of the pair (0xF5 picks 1, 1, 3, 3), the low
         * half is in place; odd lanes: the high half is in place, the low half is element 0 of
         * the pair (0xA0 picks 0, 0, 2, 2) */
        const __m512i hi0 = _mm512_mask_shuffle_epi32(o0, 0x5555, e0, (_MM_PERM_ENUM)0xF5);
        const __m512i lo0 = _mm512_mask_shuffle_epi32(e0, 0xAAAA, o0, (_MM_PERM_ENUM)0xA0);
        const __m512i hi1 = _mm512_mask_shuffle_epi32(o1, 0x5555, e1, (_MM_PERM_ENUM)0xF5);
        const __m512i lo1 = _mm512_mask_shuffle_epi32(e1, 0xAAAA, o1, (_MM_PERM_ENUM)0xA0);
        /* 0x96: a ^ b ^ c */
        x[0] = _mm512_ternarylogic_epi32(hi1, x[1], _mm512_set1_epi32((int)k0), 0x96);
        x[1] = lo1;
        x[2] = _mm512_ternarylogic_epi32(hi0, x[3], _mm512_set1_epi32((int)k1), 0x96);
        x[3] = lo0;
        k0 += 0x9E3779B9u; /* the Weyl key bump between rounds */
        k1 += 0xBB67AE85u;
    }
}

/* bits (4, PD_ROWS) 32-bit words, as 16-bit halves: word w of row r0 + r of chunk c at word
 * index w PD_ROWS + r (halves 2 (w PD_ROWS + r) and that + 1, the low first), for r < nr rounded
 * up to 16. Row i, chunk c is the Philox block (i << 24) | c of the stream: counter {its
 * low and high 32 bits, stream low, stream high}, key the seed (project.c). r0 is a multiple of
 * 16, so the 16 rows of a call share i >> 8 and differ in bits 24..27 of the low word only. */
static void pd_gen(uint16_t *bits, uint64_t seed, uint64_t stream, size_t r0, int nr, int c) {
    const __m512i lane = _mm512_slli_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 24);
    const __m512i s_lo = _mm512_set1_epi32((int)(uint32_t)stream);
    const __m512i s_hi = _mm512_set1_epi32((int)(uint32_t)(stream >> 32));
    for (int q = 0; q < nr; q += 16) {
        const uint64_t i = (uint64_t)r0 + (uint64_t)q;
        __m512i x[4] = {
            _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)(i << 24 | (uint64_t)c)), lane),
            _mm512_set1_epi32((int)(uint32_t)(i >> 8)), s_lo, s_hi};
        philox16(x, seed);
        for (int w = 0; w < 4; w++)
            _mm512_storeu_si512((void *)(bits + 2 * ((size_t)w * PD_ROWS + (size_t)q)), x[w]);
    }
}

/* One tile: mr examples (rows g[m] of G, from the block's first row), nv vectors of 16 columns
 * from column j0 (the signs of vector v of row r are the 16 bits mk[v][2 r]), nr rows; acc
 * (mr, k) from column 0. Every accumulator lane is its own chain of additions over the rows in
 * order, restarted at 0 every PROJ_DENSE_ROWS rows: the same arithmetic for an example whatever
 * mr and its place m, and for a column whatever nv (see the top comment for the two routes). */
static inline __attribute__((always_inline)) void pd_tile(int nr, const float *const *g,
                                                          const uint16_t *const *mk, double *acc,
                                                          int k, int j0, const int mr,
                                                          const int nv) {
    double t[PD_MR][PD_NC] __attribute__((aligned(64))); /* the tile's totals */
    __mmask8 cm[2 * PD_NV];                              /* columns below k, per 8 */
#pragma GCC unroll 4
    for (int h = 0; h < 2 * nv; h++) {
        const int n = k - j0 - 8 * h;
        cm[h] = n >= 8 ? 0xFF : n > 0 ? (__mmask8)((1u << n) - 1u) : 0;
    }
#pragma GCC unroll 8
    for (int m = 0; m < mr; m++)
#pragma GCC unroll 4
        for (int h = 0; h < 2 * nv; h++)
            _mm512_store_pd(t[m] + 8 * h,
                            _mm512_maskz_loadu_pd(cm[h], acc + (size_t)m * k + j0 + 8 * h));
    const __m512 plus = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    for (int r0 = 0; r0 < nr; r0 += PROJ_DENSE_ROWS) {
        const int r1 = r0 + PROJ_DENSE_ROWS < nr ? r0 + PROJ_DENSE_ROWS : nr;
        __m512 c[PD_MR][PD_NV];
#pragma GCC unroll 8
        for (int m = 0; m < mr; m++)
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++)
                c[m][v] = _mm512_setzero_ps();
        for (int r = r0; r < r1; r++) {
            __m512 s[PD_NV];
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++)
                s[v] = _mm512_mask_blend_ps((__mmask16)mk[v][2 * r], minus, plus);
#pragma GCC unroll 8
            for (int m = 0; m < mr; m++) {
                const __m512 gm = _mm512_set1_ps(g[m][r]);
#pragma GCC unroll 2
                for (int v = 0; v < nv; v++) {
                    if (v == nv - 1 && m < PD_MR_ADD) {
                        /* 0x78: gm ^ (s & sign) */
                        const __m512i gs = _mm512_ternarylogic_epi32(
                            _mm512_castps_si512(gm), _mm512_castps_si512(s[v]), sign, 0x78);
                        c[m][v] = _mm512_add_ps(c[m][v], _mm512_castsi512_ps(gs));
                    } else {
                        c[m][v] = _mm512_fmadd_ps(gm, s[v], c[m][v]);
                    }
                }
            }
        }
#pragma GCC unroll 8
        for (int m = 0; m < mr; m++)
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) {
                const __m512 x = c[m][v];
                const __m256 xhi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
                double *tv = t[m] + 16 * v;
                _mm512_store_pd(tv, _mm512_add_pd(_mm512_load_pd(tv),
                                                  _mm512_cvtps_pd(_mm512_castps512_ps256(x))));
                _mm512_store_pd(tv + 8,
                                _mm512_add_pd(_mm512_load_pd(tv + 8), _mm512_cvtps_pd(xhi)));
            }
    }
#pragma GCC unroll 8
    for (int m = 0; m < mr; m++)
#pragma GCC unroll 4
        for (int h = 0; h < 2 * nv; h++)
            _mm512_mask_storeu_pd(acc + (size_t)m * k + j0 + 8 * h, cm[h],
                                  _mm512_load_pd(t[m] + 8 * h));
}

/* pd_tile for each (mr, nv), so that every accumulator lives in a register. */
typedef void (*PdTileFn)(int nr, const float *const *g, const uint16_t *const *mk, double *acc,
                         int k, int j0);
#define PD_TILE_FN(mr, nv)                                                                         \
    static void pd_tile_##mr##_##nv(int nr, const float *const *g, const uint16_t *const *mk,      \
                                    double *acc, int k, int j0) {                                  \
        pd_tile(nr, g, mk, acc, k, j0, mr, nv);                                                    \
    }
#define PD_TILE_FNS(mr) PD_TILE_FN(mr, 1) PD_TILE_FN(mr, 2)
PD_TILE_FNS(1)
PD_TILE_FNS(2)
PD_TILE_FNS(3)
PD_TILE_FNS(4)
PD_TILE_FNS(5)
PD_TILE_FNS(6)
PD_TILE_FNS(7)
PD_TILE_FNS(8)
#define PD_TILE_ROW(mr)                                                                            \
    { pd_tile_##mr##_1, pd_tile_##mr##_2 }
static const PdTileFn PD_TILES[PD_MR][PD_NV] = {PD_TILE_ROW(1), PD_TILE_ROW(2), PD_TILE_ROW(3),
                                                PD_TILE_ROW(4), PD_TILE_ROW(5), PD_TILE_ROW(6),
                                                PD_TILE_ROW(7), PD_TILE_ROW(8)};

/* Row block blk of chunk c: acc (B, k) columns of the chunk += G R over the block's rows. bits:
 * the thread's buffer of words. */
static void pd_item(const float *G, int B, size_t ldg, size_t p, int k, uint64_t seed,
                    uint64_t stream, double *acc, int c, size_t blk, uint16_t *bits) {
    const size_t r0 = blk * PD_ROWS;
    const int nr = (int)(p - r0 < PD_ROWS ? p - r0 : PD_ROWS);
    pd_gen(bits, seed, stream, r0, nr, c);
    for (int b0 = 0; b0 < B; b0 += PD_MR) {
        const int mr = B - b0 < PD_MR ? B - b0 : PD_MR;
        const float *g[PD_MR];
        for (int m = 0; m < mr; m++)
            g[m] = G + (size_t)(b0 + m) * ldg + r0;
        for (int j0 = c * PD_CHUNK; j0 < k && j0 < (c + 1) * PD_CHUNK; j0 += PD_NC) {
            const int nv = ((k - j0 < PD_NC ? k - j0 : PD_NC) + 15) / 16;
            const uint16_t *mk[PD_NV];
            for (int v = 0; v < nv; v++) { /* word (j / 32) % 4, half (j / 16) % 2 */
                const int j = j0 + 16 * v;
                mk[v] = bits + 2 * (size_t)(j / 32 % 4) * PD_ROWS + j / 16 % 2;
            }
            PD_TILES[mr - 1][nv - 1](nr, g, mk, acc + (size_t)b0 * k, k, j0);
        }
    }
}

/* Where a chunk stands: its next row block, and whether a thread holds it. */
typedef struct {
    size_t next;
    int busy;
} PdChunk;

/* Under the critical section: the free chunk with the fewest blocks done (so that the threads
 * stay on neighbouring row blocks and share the reads of G), marked busy; -1 if none is free,
 * and *all_done set when every chunk is through. */
static int pd_claim(PdChunk *st, int nchunks, size_t nblocks, int *all_done) {
    int c = -1, done = 1;
    for (int q = 0; q < nchunks; q++) {
        if (st[q].next < nblocks) done = 0;
        if (!st[q].busy && st[q].next < nblocks && (c < 0 || st[q].next < st[c].next)) c = q;
    }
    if (c >= 0) st[c].busy = 1;
    *all_done = done;
    return c;
}

int proj_dense_avx512_built(void) {
    return 1;
}

size_t proj_dense_avx512_scratch_bytes(int k, int nthreads) {
    const size_t nchunks = ((size_t)k + PD_CHUNK - 1) / PD_CHUNK;
    return (size_t)nthreads * PD_BITS_BYTES + nchunks * sizeof(PdChunk);
}

int proj_dense_avx512(const float *G, int B, size_t ldg, size_t p, int k, uint64_t seed,
                      uint64_t stream, double *acc) {
    /* Work items (chunk, row block), a chunk's blocks in order (its columns' double sums are
     * made in row order) by whichever thread is free: no barrier between row blocks, so a thread
     * that the system deschedules holds up one chunk for a while, not every thread at every
     * block (batch 16 on 2 threads, one core busy with another process: ~1.1 s with a barrier
     * per block, 0.053 s this way, 0.035 s on idle cores). */
    const int nchunks = (k + PD_CHUNK - 1) / PD_CHUNK;
    const size_t nblocks = (p + PD_ROWS - 1) / PD_ROWS;
    PdChunk *st = xcalloc((size_t)nchunks, sizeof *st);
#pragma omp parallel
    {
        uint16_t *bits = xmalloc(PD_BITS_BYTES); /* (4, PD_ROWS, 2) */
        for (;;) {
            int c, all_done;
            size_t blk = 0;
#pragma omp critical(proj_dense_claim)
            {
                c = pd_claim(st, nchunks, nblocks, &all_done);
                if (c >= 0) blk = st[c].next;
            }
            if (all_done) break;
            if (c < 0) { /* every unfinished chunk is held: wait for one */
                sched_yield();
                continue;
            }
            pd_item(G, B, ldg, p, k, seed, stream, acc, c, blk, bits);
#pragma omp critical(proj_dense_claim)
            {
                st[c].next = blk + 1;
                st[c].busy = 0;
            }
        }
        free(bits);
    }
    free(st);
    return 1;
}

#else /* no AVX-512 in this build: project.c uses its portable path */

int proj_dense_avx512_built(void) {
    return 0;
}

size_t proj_dense_avx512_scratch_bytes(int k, int nthreads) {
    (void)k, (void)nthreads;
    return 0;
}

int proj_dense_avx512(const float *G, int B, size_t ldg, size_t p, int k, uint64_t seed,
                      uint64_t stream, double *acc) {
    (void)G, (void)B, (void)ldg, (void)p, (void)k, (void)seed, (void)stream, (void)acc;
    return 0;
}

#endif
