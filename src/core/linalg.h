/* linalg.h: the only door to BLAS (OpenBLAS through CBLAS) in jtrak. Row-major everywhere; the
 * transpose flags say whether op(A) = A^T. Ops call these single-threaded from inside their own
 * OpenMP loops over the batch, so call la_blas_single_threaded() once at startup. */
#ifndef JTRAK_LINALG_H
#define JTRAK_LINALG_H

/* C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C; lda/ldb/ldc are row strides of the
 * stored (untransposed) matrices. beta = 0 ignores the old content of C (NaN included). */
void la_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* y = alpha * op(A) x + beta * y, A stored (M,N) with row stride lda; op(A) = A^T when trans
 * (then x has M entries and y has N, otherwise x has N and y has M). */
void la_sgemv(int trans, int M, int N, float alpha, const float *A, int lda, const float *x,
              float beta, float *y);

/* A (M,N) += alpha * x (M) y (N)^T, row stride lda. */
void la_sger(int M, int N, float alpha, const float *x, const float *y, float *A, int lda);

/* Makes OpenBLAS run every call on the calling thread (no pool of its own): parallelism comes
 * from the OpenMP loops around the calls. Idempotent; call it from serial code. */
void la_blas_single_threaded(void);

#endif
