/* sgemm_avx512.c: see sgemm_avx512.h. Loops (outer to inner): K blocks of SGEMM_KC -> M blocks of
 * SGEMM_MC (op(A) packed once per block, panels of 8 rows) -> N panels of 48 columns (op(B) packed,
 * stays in L1) -> the 8 x 48 micro-kernel over each A panel. Transposed operands are packed through
 * 16 x 16 in-register transposes; edges are zero-padded in the packs and masked on the stores. */
#include "core/sgemm_avx512.h"
#include "core/common.h"

#if defined(__AVX512F__) && defined(__AVX512VL__)

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

enum {
    SGEMM_MR = 8,           /* rows of the register tile */
    SGEMM_NR = 48,          /* columns of the register tile: 3 vectors of 16 */
    SGEMM_KC = 128,         /* K block: a packed B panel (KC x NR floats, 24 KiB) stays in L1 */
    SGEMM_MC = 192,         /* M block: a packed A block (MC x KC floats, 192 KiB) fits L2 */
    SGEMM_TAP_STACK = 2304, /* im2col tap masks kept on the stack (4.5 KiB) */
    SGEMM_PREFETCH_MAX = 512 << 10, /* im2col images prefetched into L2 up to this size */
};

static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

/* r[0..15] (rows) -> r[c] = column c of the 16 x 16 block. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* Within each 128-bit lane L, u[4i + j] now holds column 4L + j of rows 4i .. 4i + 3. */
    __m512 u[16];
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
        __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    /* Column 4L + j gathers lane L of u[j], u[4 + j], u[8 + j], u[12 + j]. */
    for (int j = 0; j < 4; j++) {
        __m512 ab_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x44), ab_hi = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xEE);
        __m512 cd_lo = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x44),
               cd_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xEE);
        r[j] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
        r[4 + j] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);
        r[8 + j] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
    }
}

/* Loads rows 0..nr-1, columns 0..nc-1 of src (row stride ld) into a 16 x 16 block (zeros outside)
 * and transposes it: out[c] holds column c. */
static inline void load_transposed(const float *src, int ld, int nr, int nc, __m512 out[16]) {
    __mmask16 m = lanes(nc);
    for (int r = 0; r < 16; r++)
        out[r] = r < nr ? _mm512_maskz_loadu_ps(m, src + (size_t)r * ld) : _mm512_setzero_ps();
    transpose16(out);
}

/* Packs rows i0 .. i0+mc-1, K range k0 .. k0+kc-1 of op(A) into panels of 8 rows:
 * ap[p * kc * 8 + k * 8 + i] = op(A)[i0 + 8p + i][k0 + k], zero beyond mc. */
static void pack_a(float *restrict ap, int transA, const float *A, int lda, int i0, int mc, int k0, int kc) {
    const int panels = (mc + SGEMM_MR - 1) / SGEMM_MR;
    if (transA) { /* op(A)[i][k] = A[k][i]: 8 contiguous values per k */
        for (int p = 0; p < panels; p++) {
            int rows = mc - p * SGEMM_MR < SGEMM_MR ? mc - p * SGEMM_MR : SGEMM_MR;
            __mmask8 m = (__mmask8)((1u << rows) - 1u);
            float *dst = ap + (size_t)p * kc * SGEMM_MR;
            const float *src = A + (size_t)k0 * lda + i0 + p * SGEMM_MR;
            for (int k = 0; k < kc; k++)
                _mm256_storeu_ps(dst + k * SGEMM_MR, _mm256_maskz_loadu_ps(m, src + (size_t)k * lda));
        }
        return;
    }
    /* op(A)[i][k] = A[i][k]: two panels (16 rows) at a time through a transpose */
    for (int p = 0; p < panels; p += 2) {
        int rows = mc - p * SGEMM_MR < 16 ? mc - p * SGEMM_MR : 16;
        const float *src = A + (size_t)(i0 + p * SGEMM_MR) * lda + k0;
        float *d0 = ap + (size_t)p * kc * SGEMM_MR, *d1 = d0 + (size_t)kc * SGEMM_MR;
        for (int kb = 0; kb < kc; kb += 16) {
            int cols = kc - kb < 16 ? kc - kb : 16;
            __m512 v[16];
            load_transposed(src + kb, lda, rows, cols, v);
            for (int c = 0; c < cols; c++) {
                _mm256_storeu_ps(d0 + (kb + c) * SGEMM_MR, _mm512_castps512_ps256(v[c]));
                if (p + 1 < panels)
                    _mm256_storeu_ps(d1 + (kb + c) * SGEMM_MR,
                                     _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[c]), 1)));
            }
        }
    }
}

/* Masks of every 16-pixel group of the image, built once per call: table[g kk + t] has bit q set
 * when tap t = (i, j) of pixel 16 g + q reads inside the image (the pixel exists, row y + i - pad
 * and column x + j - pad inside). The masked loads of the packs then never touch memory outside
 * the image (masked lanes do not fault), although the shifted pointer may point before it. Packs
 * only ask for groups starting at multiples of 16 (N panels of 48, K blocks of 128, steps of 16) */
typedef struct {
    __mmask16 *mask;                                  /* (groups, kk) */
    ptrdiff_t off[SGEMM_CONV_KMAX * SGEMM_CONV_KMAX]; /* tap t's shift in the flattened image */
} TapTable;

static void tap_table_fill(const SgemmIm2col *cv, TapTable *tt) {
    const int k = cv->k, pad = (k - 1) / 2, W = cv->W, H = cv->H, HW = H * W, kk = k * k;
    for (int t = 0; t < kk; t++)
        tt->off[t] = (ptrdiff_t)(t / k - pad) * W + (t % k - pad);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i vW = _mm512_set1_epi32(W), vH = _mm512_set1_epi32(H),
                  zero = _mm512_setzero_si512();
    for (int g = 0, p0 = 0; p0 < HW; g++, p0 += 16) {
        /* (y, x) of pixels p0 .. p0+15: x0 + q wraps into the next rows (several when W < 16) */
        __m512i x = _mm512_add_epi32(_mm512_set1_epi32(p0 % W), iota),
                y = _mm512_set1_epi32(p0 / W);
        for (__mmask16 m; (m = _mm512_cmpge_epi32_mask(x, vW)) != 0;) {
            x = _mm512_mask_sub_epi32(x, m, x, vW);
            y = _mm512_mask_add_epi32(y, m, y, _mm512_set1_epi32(1));
        }
        __mmask16 xm[SGEMM_CONV_KMAX], ym[SGEMM_CONV_KMAX];
        for (int d = 0; d < k; d++) {
            const __m512i xs = _mm512_add_epi32(x, _mm512_set1_epi32(d - pad));
            const __m512i ys = _mm512_add_epi32(y, _mm512_set1_epi32(d - pad));
            xm[d] = _mm512_cmpge_epi32_mask(xs, zero) & _mm512_cmplt_epi32_mask(xs, vW);
            ym[d] = _mm512_cmpge_epi32_mask(ys, zero) & _mm512_cmplt_epi32_mask(ys, vH);
        }
        const __mmask16 exists = lanes(HW - p0);
        for (int t = 0; t < kk; t++)
            tt->mask[(size_t)g * kk + t] = exists & ym[t / k] & xm[t % k];
    }
}

/* Where op(B) comes from: a stored matrix (B, ldb), or, for a convolution, the im2col matrix of an
 * image that is never built (cv): stored row r = c k^2 + t of it holds x[c] shifted by
 * (t / k - pad, t % k - pad), zero outside the image. */
typedef struct {
    const float *B;
    int ldb;
    const SgemmIm2col *cv;
    const TapTable *taps; /* cv's masks */
} BSource;

/* Packs columns j0 .. j0+nj-1 (nj <= 48), K range k0 .. k0+kc-1 of op(B):
 * bp[k * 48 + j] = op(B)[k0 + k][j0 + j], zero beyond nj. */
static void pack_b(float *restrict bp, int transB, const BSource *src, int j0, int nj, int k0, int kc) {
    const SgemmIm2col *cv = src->cv;
    const int kk = cv ? cv->k * cv->k : 1, HW = cv ? cv->H * cv->W : 0;
    const ptrdiff_t *off = cv ? src->taps->off : NULL;
    if (!transB) { /* op(B)[k][j] = B[k][j]: rows of 48 */
        const __mmask16 m[3] = {lanes(nj), lanes(nj - 16 > 0 ? nj - 16 : 0), lanes(nj - 32 > 0 ? nj - 32 : 0)};
        if (!cv) {
            const float *s = src->B + (size_t)k0 * src->ldb + j0;
            for (int k = 0; k < kc; k++, s += src->ldb)
                for (int v = 0; v < 3; v++)
                    _mm512_storeu_ps(bp + k * SGEMM_NR + 16 * v, _mm512_maskz_loadu_ps(m[v], s + 16 * v));
            return;
        }
        /* the groups of the 3 vectors (a vector past nj reads group 0, masked off) */
        const __mmask16 *tap[3];
        for (int v = 0; v < 3; v++)
            tap[v] = src->taps->mask + (size_t)(m[v] ? (j0 + 16 * v) / 16 : 0) * kk;
        int c = k0 / kk, t = k0 % kk; /* row k0 + k = c kk + t */
        for (int k = 0; k < kc; k++) {
            const float *s = cv->x + (size_t)c * HW + j0 + off[t];
            for (int v = 0; v < 3; v++)
                _mm512_storeu_ps(bp + k * SGEMM_NR + 16 * v,
                                 _mm512_maskz_loadu_ps(tap[v][t] & m[v], s + 16 * v));
            if (++t == kk) t = 0, c++;
        }
        return;
    }
    /* op(B)[k][j] = B[j][k]: 16 x 16 transposes of stored rows j0 + jb .. (at most 16), columns
     * k0 + kb .. (at most 16) */
    for (int kb = 0; kb < kc; kb += 16) {
        const int cols = kc - kb < 16 ? kc - kb : 16;
        const __mmask16 *tap = cv ? src->taps->mask + (size_t)((k0 + kb) / 16) * kk : NULL;
        for (int jb = 0; jb < nj; jb += 16) { /* vectors past nj are never read */
            const int rows = nj - jb < 16 ? nj - jb : 16;
            __m512 v[16];
            if (!cv) {
                load_transposed(src->B + (size_t)(j0 + jb) * src->ldb + k0 + kb, src->ldb, rows, cols, v);
            } else {
                int c = (j0 + jb) / kk, t = (j0 + jb) % kk; /* stored row j0 + jb + r = c kk + t */
                for (int r = 0; r < 16; r++) {
                    if (r >= rows) {
                        v[r] = _mm512_setzero_ps();
                        continue;
                    }
                    v[r] = _mm512_maskz_loadu_ps(tap[t], cv->x + (size_t)c * HW + k0 + kb + off[t]);
                    if (++t == kk) t = 0, c++;
                }
                transpose16(v);
            }
            for (int q = 0; q < cols; q++)
                _mm512_storeu_ps(bp + (kb + q) * SGEMM_NR + jb, v[q]);
        }
    }
}

/* C tile (mr <= 8 rows, nv vectors of 16 columns, the last one masked by `last`) from one packed A
 * panel and one packed B panel over kc. first: this is the first K block, so C = alpha AB + beta C
 * (beta = 0: C is not read); otherwise C += alpha AB. The 24 accumulators are named variables, not
 * an array: GCC keeps those in registers (an array of them went through the stack). */
#define TILE_ROW(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define TILE_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define TILE_FMA(i)                                                                               \
    {                                                                                             \
        const __m512 ai = _mm512_set1_ps(ak[i]);                                                  \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                                               \
        if (nv > 1) c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);                                   \
        if (nv > 2) c##i##2 = _mm512_fmadd_ps(ai, b2, c##i##2);                                   \
    }
#define TILE_STORE(i)                                                                             \
    if (i < mr) {                                                                                 \
        float *row = c + (size_t)(i) * ldc;                                                       \
        store_vec(row, nv == 1 ? last : full, c##i##0, alpha, beta, first);                      \
        if (nv > 1) store_vec(row + 16, nv == 2 ? last : full, c##i##1, alpha, beta, first);      \
        if (nv > 2) store_vec(row + 32, last, c##i##2, alpha, beta, first);                       \
    }

static inline __attribute__((always_inline)) void store_vec(float *p, __mmask16 m, __m512 acc, float alpha,
                                                            float beta, int first) {
    const __m512 va = _mm512_set1_ps(alpha);
    __m512 r;
    if (first && beta == 0.0f) r = _mm512_mul_ps(va, acc);
    else if (first && beta != 1.0f)
        r = _mm512_fmadd_ps(va, acc, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, p)));
    else r = _mm512_fmadd_ps(va, acc, _mm512_maskz_loadu_ps(m, p));
    _mm512_mask_storeu_ps(p, m, r);
}

static inline __attribute__((always_inline)) void micro_tile(int kc, const float *restrict a,
                                                             const float *restrict b, float *c, int ldc,
                                                             int mr, const int nv, __mmask16 last,
                                                             float alpha, float beta, int first) {
    TILE_ROW(TILE_DECL)
    for (int k = 0; k < kc; k++) {
        const float *ak = a + k * SGEMM_MR, *bk = b + k * SGEMM_NR;
        const __m512 b0 = _mm512_load_ps(bk);
        const __m512 b1 = nv > 1 ? _mm512_load_ps(bk + 16) : b0;
        const __m512 b2 = nv > 2 ? _mm512_load_ps(bk + 32) : b0;
        TILE_ROW(TILE_FMA)
    }
    const __mmask16 full = 0xFFFF;
    TILE_ROW(TILE_STORE)
}

/* The three widths as separate bodies, so that every accumulator lives in a register. */
static void micro_tile_n3(int kc, const float *a, const float *b, float *c, int ldc, int mr, __mmask16 last,
                          float alpha, float beta, int first) {
    micro_tile(kc, a, b, c, ldc, mr, 3, last, alpha, beta, first);
}
static void micro_tile_n2(int kc, const float *a, const float *b, float *c, int ldc, int mr, __mmask16 last,
                          float alpha, float beta, int first) {
    micro_tile(kc, a, b, c, ldc, mr, 2, last, alpha, beta, first);
}
static void micro_tile_n1(int kc, const float *a, const float *b, float *c, int ldc, int mr, __mmask16 last,
                          float alpha, float beta, int first) {
    micro_tile(kc, a, b, c, ldc, mr, 1, last, alpha, beta, first);
}

static void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const BSource *b, float beta, float *C, int ldc) {
    /* On the stack: no allocation, nothing shared between threads. */
    float ap[SGEMM_MC * SGEMM_KC] __attribute__((aligned(64)));
    float bp[SGEMM_KC * SGEMM_NR] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < K; k0 += SGEMM_KC) {
        const int kc = K - k0 < SGEMM_KC ? K - k0 : SGEMM_KC, first = k0 == 0;
        for (int i0 = 0; i0 < M; i0 += SGEMM_MC) {
            const int mc = M - i0 < SGEMM_MC ? M - i0 : SGEMM_MC;
            pack_a(ap, transA, A, lda, i0, mc, k0, kc);
            for (int j0 = 0; j0 < N; j0 += SGEMM_NR) {
                const int nj = N - j0 < SGEMM_NR ? N - j0 : SGEMM_NR, nv = (nj + 15) / 16;
                const __mmask16 last = lanes(nj - 16 * (nv - 1));
                pack_b(bp, transB, b, j0, nj, k0, kc);
                for (int ip = 0; ip < mc; ip += SGEMM_MR) {
                    const int mr = mc - ip < SGEMM_MR ? mc - ip : SGEMM_MR;
                    const float *a = ap + (size_t)(ip / SGEMM_MR) * kc * SGEMM_MR;
                    float *c = C + (size_t)(i0 + ip) * ldc + j0;
                    if (nv == 3) micro_tile_n3(kc, a, bp, c, ldc, mr, last, alpha, beta, first);
                    else if (nv == 2) micro_tile_n2(kc, a, bp, c, ldc, mr, last, alpha, beta, first);
                    else micro_tile_n1(kc, a, bp, c, ldc, mr, last, alpha, beta, first);
                }
            }
        }
    }
}

/* Asks for the n floats of x into L2 when they fit it comfortably. The im2col packs read an image
 * in scattered 16 x 16 blocks (rows of other channels and taps), which the hardware prefetchers
 * miss when the image is cold, as a layer's input is when the layer runs over a batch; asking up
 * front lets the misses overlap. One thread, batch 64, conv2d weight gradients: 96 -> 32 channels
 * at 28x28 136-143 -> 151-156 GFLOP/s, 128 -> 64 at 14x14 150-170 -> 171-198; fm-s training step
 * 107-110 -> 113-116 img/s. (Prefetching the layer's next image as well gained nothing.) */
static void prefetch_l2(const float *x, size_t n) {
    if (n * sizeof(float) > SGEMM_PREFETCH_MAX) return;
    for (const char *p = (const char *)x, *end = (const char *)(x + n); p < end; p += 64)
        _mm_prefetch(p, _MM_HINT_T1);
}

int sgemm_avx512(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return 0; /* nothing to multiply: OpenBLAS scales C */
    const BSource b = {B, ldb, NULL, NULL};
    gemm(transA, transB, M, N, K, alpha, A, lda, &b, beta, C, ldc);
    return 1;
}

int sgemm_avx512_im2col(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                        const SgemmIm2col *cols, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    if (cols->k < 1 || cols->k % 2 == 0 || cols->k > SGEMM_CONV_KMAX) return 0;
    /* The masks on the stack up to 64x64 images with 3x3 kernels, on the heap beyond. */
    __mmask16 stack_masks[SGEMM_TAP_STACK];
    const size_t n_masks = (size_t)(cols->H * cols->W + 15) / 16 * (size_t)(cols->k * cols->k);
    TapTable taps = {
        n_masks <= SGEMM_TAP_STACK ? stack_masks : xmalloc(n_masks * sizeof(__mmask16)), {0}};
    tap_table_fill(cols, &taps);
    const int channels = (transB ? N : K) / (cols->k * cols->k);
    prefetch_l2(cols->x, (size_t)channels * cols->H * cols->W);
    const BSource b = {NULL, 0, cols, &taps};
    gemm(transA, transB, M, N, K, alpha, A, lda, &b, beta, C, ldc);
    if (taps.mask != stack_masks) free(taps.mask);
    return 1;
}

int sgemm_avx512_built(void) { return 1; }

#else /* no AVX-512 in this build: la_sgemm uses OpenBLAS */

int sgemm_avx512(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    (void)transA, (void)transB, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B;
    (void)ldb, (void)beta, (void)C, (void)ldc;
    return 0;
}

int sgemm_avx512_im2col(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                        const SgemmIm2col *cols, float beta, float *C, int ldc) {
    (void)transA, (void)transB, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)cols, (void)beta, (void)C, (void)ldc;
    return 0;
}

int sgemm_avx512_built(void) { return 0; }

#endif
