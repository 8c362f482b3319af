/* sgemm_avx512.h: jtrak's own single-threaded SGEMM for AVX-512 machines, behind la_sgemm.
 *
 * Why: jtrak's GEMMs are small (a convolution of one image: M = 16..64 output channels, N = H*W
 * pixels, K = 9 * input channels) and run one per thread inside the ops' OpenMP loops. The Debian
 * OpenBLAS here runs its AVX2 (Haswell) kernels (the environment pins OPENBLAS_CORETYPE), half of
 * what an AVX-512 core can do, and its packing is sized for large matrices. This kernel packs both
 * operands into small panels (op(A) in panels of 8 rows, op(B) in panels of 48 columns, K in blocks
 * of SGEMM_KC) and multiplies them with an 8 x 48 register tile of fused multiply-adds.
 *
 * The summation order depends only on K (blocks of SGEMM_KC, in order), never on the thread or the
 * batch, so results stay independent of both. Built only when the compiler targets AVX-512F and VL
 * (-march=native on such a machine); elsewhere sgemm_avx512 returns 0 and la_sgemm uses OpenBLAS. */
#ifndef JTRAK_SGEMM_AVX512_H
#define JTRAK_SGEMM_AVX512_H

/* Same contract as la_sgemm (row-major, op(X) = X^T when transX, beta = 0 ignores C). Returns 1
 * when it computed C, 0 when this build has no AVX-512 kernel (C untouched). */
int sgemm_avx512(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* The im2col matrix of one image x (C, H, W) for a k x k kernel, stride 1, zero padding (k-1)/2
 * (an output as large as the input): (C k k, H W), row (c, i, j) holding x[c] shifted by
 * (i - (k-1)/2, j - (k-1)/2) with zeros outside. Never built: the kernel packs it from x. */
enum { SGEMM_CONV_KMAX = 7 };
typedef struct {
    const float *x;
    int H, W, k; /* k odd, at most SGEMM_CONV_KMAX */
} SgemmIm2col;

/* sgemm_avx512 with op(B) the im2col matrix `cols` (transB = 0: B = cols, N = H W, K = C k k;
 * transB = 1: B = cols^T, N = C k k, K = H W). Returns 0 (C untouched) without AVX-512 or for an
 * even or too large k. */
int sgemm_avx512_im2col(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                        const SgemmIm2col *cols, float beta, float *C, int ldc);

/* 1 when this build carries the kernel. */
int sgemm_avx512_built(void);

#endif
