/* linalg.c: thin row-major wrappers over OpenBLAS's CBLAS (cblas_sgemm, cblas_sgemv, cblas_sger)
 * with argument checks, and the switch that keeps OpenBLAS single-threaded (ops call BLAS from
 * inside their own OpenMP loops, house-style convention 8). */
#include "core/linalg.h"

#include "core/common.h"

#include <cblas.h>
#include <omp.h>

void openblas_set_num_threads(int num_threads);

void la_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    CHECK(M >= 0 && N >= 0 && K >= 0, "sgemm dims M=%d N=%d K=%d", M, N, K);
    if (M == 0 || N == 0) return;
    CHECK(lda >= (transA ? M : K) && lda >= 1, "sgemm lda %d too small", lda);
    CHECK(ldb >= (transB ? K : N) && ldb >= 1, "sgemm ldb %d too small", ldb);
    CHECK(ldc >= N, "sgemm ldc %d < N %d", ldc, N);
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void la_sgemv(int trans, int M, int N, float alpha, const float *A, int lda, const float *x,
              float beta, float *y) {
    CHECK(M >= 0 && N >= 0, "sgemv dims M=%d N=%d", M, N);
    if (M == 0 || N == 0) return;
    CHECK(lda >= N, "sgemv lda %d < N %d", lda, N);
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, M, N, alpha, A, lda, x, 1, beta,
                y, 1);
}

void la_sger(int M, int N, float alpha, const float *x, const float *y, float *A, int lda) {
    CHECK(M >= 0 && N >= 0, "sger dims M=%d N=%d", M, N);
    if (M == 0 || N == 0) return;
    CHECK(lda >= N, "sger lda %d < N %d", lda, N);
    cblas_sger(CblasRowMajor, M, N, alpha, x, 1, y, 1, A, lda);
}

void la_blas_single_threaded(void) {
    /* The OpenMP build of OpenBLAS (libopenblas0-openmp) implements this with
     * omp_set_num_threads, which would serialise jtrak's own loops: put the OpenMP setting back. */
    int omp_threads = omp_get_max_threads();
    openblas_set_num_threads(1);
    if (omp_get_max_threads() != omp_threads) omp_set_num_threads(omp_threads);
}
