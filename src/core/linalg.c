/* linalg.c: thin row-major wrappers over OpenBLAS's CBLAS (cblas_sgemm, cblas_sgemv, cblas_sger)
 * with argument checks, and the switch that keeps OpenBLAS single-threaded (ops call BLAS from
 * inside their own OpenMP loops, house-style convention 8). */
#include "core/linalg.h"

#include "core/common.h"
#include "core/sgemm_avx512.h"

#include <cblas.h>
#include <lapacke.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void openblas_set_num_threads(int num_threads);

/* Set from serial code only (la_sgemm_select), read by every thread. */
static int g_sgemm_openblas = 0;

int la_sgemm_select(const char *name) {
    if (!name || strcmp(name, "auto") == 0) g_sgemm_openblas = !sgemm_avx512_built();
    else if (strcmp(name, "openblas") == 0) g_sgemm_openblas = 1;
    else if (strcmp(name, "avx512") == 0 && sgemm_avx512_built()) g_sgemm_openblas = 0;
    else return -1;
    return 0;
}

const char *la_sgemm_kernel(void) {
    return g_sgemm_openblas || !sgemm_avx512_built() ? "openblas" : "avx512";
}

void la_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    CHECK(M >= 0 && N >= 0 && K >= 0, "sgemm dims M=%d N=%d K=%d", M, N, K);
    if (M == 0 || N == 0) return;
    CHECK(lda >= (transA ? M : K) && lda >= 1, "sgemm lda %d too small", lda);
    CHECK(ldb >= (transB ? K : N) && ldb >= 1, "sgemm ldb %d too small", ldb);
    CHECK(ldc >= N, "sgemm ldc %d < N %d", ldc, N);
    if (!g_sgemm_openblas &&
        sgemm_avx512(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int la_sgemm_im2col(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *x, int H, int W, int k, float beta, float *C, int ldc) {
    CHECK(M >= 0 && N >= 0 && K >= 0 && H >= 1 && W >= 1 && k >= 1, "sgemm_im2col dims");
    CHECK(lda >= (transA ? M : K) && lda >= 1, "sgemm_im2col lda %d too small", lda);
    CHECK(ldc >= N, "sgemm_im2col ldc %d < N %d", ldc, N);
    CHECK(transB ? K == H * W : N == H * W, "sgemm_im2col: the image has %d pixels", H * W);
    if (g_sgemm_openblas) return 0;
    const SgemmIm2col cols = {x, H, W, k};
    return sgemm_avx512_im2col(transA, transB, M, N, K, alpha, A, lda, &cols, beta, C, ldc);
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
    const char *env = getenv("JTRAK_SGEMM");
    if (la_sgemm_select(env) != 0) {
        fprintf(stderr, "jtrak: JTRAK_SGEMM=%s: expected auto, openblas or avx512 (the last only on "
                        "a build for AVX-512)\n", env);
        exit(2);
    }
}

/* The SPD helpers below call LAPACKE in column-major order on the same memory: a row-major lower
 * triangle is the column-major upper triangle, so uplo 'U' with LAPACK_COL_MAJOR works in place
 * (LAPACKE's row-major path would transpose into a scratch copy first). */
int la_dpotrf_lower(int n, double *A, int lda) {
    CHECK(n >= 0 && lda >= (n > 1 ? n : 1), "dpotrf n=%d lda=%d", n, lda);
    if (n == 0) return 0;
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', n, A, lda);
    CHECK(info >= 0, "dpotrf argument %d invalid", (int)-info);
    return (int)info;
}

int la_dpotri_lower(int n, double *A, int lda) {
    CHECK(n >= 0 && lda >= (n > 1 ? n : 1), "dpotri n=%d lda=%d", n, lda);
    if (n == 0) return 0;
    lapack_int info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'U', n, A, lda);
    CHECK(info >= 0, "dpotri argument %d invalid", (int)-info);
    return (int)info;
}

double la_dpocon_lower(int n, const double *L, int lda, double anorm) {
    CHECK(n >= 0 && lda >= (n > 1 ? n : 1), "dpocon n=%d lda=%d", n, lda);
    if (n == 0) return 1.0;
    double rcond = 0;
    lapack_int info = LAPACKE_dpocon(LAPACK_COL_MAJOR, 'U', n, L, lda, anorm, &rcond);
    CHECK(info == 0, "dpocon failed (%d)", (int)info);
    return rcond;
}
