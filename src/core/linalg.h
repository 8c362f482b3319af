/* linalg.h: the only door to BLAS (OpenBLAS through CBLAS) in jtrak. Row-major everywhere; the
 * transpose flags say whether op(A) = A^T. Ops call these single-threaded from inside their own
 * OpenMP loops over the batch, so call la_blas_single_threaded() once at startup. */
#ifndef JTRAK_LINALG_H
#define JTRAK_LINALG_H

/* C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C; lda/ldb/ldc are row strides of the
 * stored (untransposed) matrices. beta = 0 ignores the old content of C (NaN included). */
void la_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* la_sgemm with op(B) the im2col matrix of the image x (C, H, W) for a k x k convolution with
 * stride 1 and zero padding (k-1)/2 (rows (c, i, j), columns the H W pixels), without building it:
 * transB = 0 gives B = im2col(x) (N = H W), transB = 1 gives B^T (K = H W). Returns 1 when done,
 * 0 when the selected kernel cannot (OpenBLAS): the caller builds the columns itself. */
int la_sgemm_im2col(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *x, int H, int W, int k, float beta, float *C, int ldc);

/* Which SGEMM la_sgemm runs: "avx512" (jtrak's own, core/sgemm_avx512.h; the default on a build
 * for AVX-512), "openblas", or "auto" / NULL (the default). Returns -1 for an unknown name or a
 * kernel this build lacks. Call from serial code; la_blas_single_threaded applies $JTRAK_SGEMM. */
int la_sgemm_select(const char *name);
const char *la_sgemm_kernel(void); /* "avx512" or "openblas" */

/* y = alpha * op(A) x + beta * y, A stored (M,N) with row stride lda; op(A) = A^T when trans
 * (then x has M entries and y has N, otherwise x has N and y has M). */
void la_sgemv(int trans, int M, int N, float alpha, const float *A, int lda, const float *x,
              float beta, float *y);

/* A (M,N) += alpha * x (M) y (N)^T, row stride lda. */
void la_sger(int M, int N, float alpha, const float *x, const float *y, float *A, int lda);

/* Makes OpenBLAS run every call on the calling thread (no pool of its own): parallelism comes
 * from the OpenMP loops around the calls; also applies $JTRAK_SGEMM (la_sgemm_select; a bad value
 * is a CHECK failure). Idempotent; call it from serial code. */
void la_blas_single_threaded(void);

/* Symmetric positive definite helpers (LAPACKE, double). Their rounding depends on OpenBLAS's
 * thread count, so a caller that needs bitwise-reproducible results sets it first
 * (la_blas_single_threaded: attrib/kernel.c does). Row-major A (n,n) with row stride lda;
 * only its lower triangle is read and written (the row-major lower triangle is LAPACK's
 * column-major upper one, so no transposed copy is made). */

/* Cholesky A = L L^T: L overwrites the lower triangle. Returns 0, or j > 0 when the leading minor
 * of order j is not positive definite (LAPACKE_dpotrf's info; A is then partly overwritten). */
int la_dpotrf_lower(int n, double *A, int lda);
/* From la_dpotrf_lower's factor: the lower triangle becomes that of A^{-1} (dpotri). Returns 0,
 * or j > 0 when L[j-1][j-1] is zero. */
int la_dpotri_lower(int n, double *A, int lda);
/* Reciprocal condition number estimate in the 1-norm (dpocon) from la_dpotrf_lower's factor,
 * given anorm = ||A||_1 of the matrix before factorisation. */
double la_dpocon_lower(int n, const double *L, int lda, double anorm);

#endif
