/* test_linalg.c: la_sgemm, whichever kernel it runs (jtrak's AVX-512 one on a build for AVX-512,
 * OpenBLAS otherwise): all four transpose cases against a double-precision reference over shapes
 * that cross every edge of the kernel's blocking (8-row panels, 48-column panels, K blocks of 128,
 * M blocks of 192), padded strides, alpha and beta (beta = 0 must ignore NaN in C), columns past N
 * left alone; and, for the AVX-512 kernel, that a row (a column) of C is bitwise the same whatever
 * the other rows (columns) of the call: its summation order depends on K alone; and the im2col-free
 * product of convolutions (la_sgemm_im2col) against the same product on built columns. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/linalg.h"
#include "helpers/uniform.h"

static float op_at(const float *X, int ld, int trans, int r, int c) {
    return trans ? X[(size_t)c * ld + r] : X[(size_t)r * ld + c];
}

/* One call against the reference; pads every stride by `pad` and checks the padding of C. */
static void check_case(int tA, int tB, int M, int N, int K, float alpha, float beta, int pad) {
    int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(tA ? K : M) * lda, nb = (size_t)(tB ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(nc * sizeof *C);
    float *C0 = malloc(nc * sizeof *C0);
    test_fill_uniform(A, na, 1 + M), test_fill_uniform(B, nb, 2 + N),
        test_fill_uniform(C0, nc, 3 + K);
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++)
            C0[i] = (i % (size_t)ldc) < (size_t)N ? NAN : C0[i]; /* must not be read */
    memcpy(C, C0, nc * sizeof *C);
    la_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < ldc; j++) {
            float got = C[(size_t)i * ldc + j];
            if (j >= N) { /* padding untouched */
                cr_assert(memcmp(&got, &C0[(size_t)i * ldc + j], sizeof got) == 0,
                          "tA=%d tB=%d M=%d N=%d K=%d: padding C[%d][%d] changed", tA, tB, M, N, K, i, j);
                continue;
            }
            double want = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)op_at(A, lda, tA, i, k) * op_at(B, ldb, tB, k, j);
                want += p;
                mag += fabs(p);
            }
            want *= alpha;
            if (beta != 0.0f) want += (double)beta * C0[(size_t)i * ldc + j];
            /* float32 accumulation of K products: error below ~K * 2^-24 * sum|products|; the
             * bound is 8x looser than that worst case yet far below one misplaced product. */
            double tol = 8.0 * (K + 2) * 6e-8 * (fabs(alpha) * mag + fabs(beta) + 1e-30);
            cr_assert(fabs(got - want) <= tol,
                      "tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d: C[%d][%d] = %.9g, want %.9g "
                      "(tol %.3g; kernel %s)",
                      tA, tB, M, N, K, alpha, beta, pad, i, j, got, want, tol, la_sgemm_kernel());
        }
    }
    free(A), free(B), free(C), free(C0);
}

Test(linalg, sgemm_every_transpose_and_edge) {
    la_blas_single_threaded();
    static const int shapes[][3] = {
        {1, 1, 1},     {8, 48, 16},   {7, 47, 15},   {9, 49, 17},   {16, 784, 9},  {32, 196, 288},
        {32, 49, 288}, {17, 33, 255}, {24, 96, 256}, {13, 50, 257}, {200, 20, 30}, {193, 97, 513},
        {3, 5, 600},   {64, 16, 784}, {288, 196, 32}, {2, 130, 1}, {8, 48, 128}, {10, 60, 129},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++) {
                const int *d = shapes[s];
                check_case(tA, tB, d[0], d[1], d[2], 1.0f, (s % 3 == 0) ? 0.0f : 1.0f, (int)(s % 4));
            }
    check_case(0, 0, 19, 70, 300, -0.7f, 0.5f, 3);
    check_case(1, 1, 19, 70, 300, 2.0f, -1.5f, 1);
    check_case(0, 1, 40, 144, 196, 0.25f, 0.0f, 0);
}

/* Row i of C from a call over rows r0.. of A equals the same row from the full call, bitwise; the
 * same for a block of columns. */
Test(linalg, sgemm_rows_and_columns_do_not_depend_on_the_rest_of_the_call) {
    la_blas_single_threaded();
    if (strcmp(la_sgemm_kernel(), "avx512") != 0) cr_skip("a property of jtrak's AVX-512 kernel");
    const int M = 37, N = 101, K = 300;
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
            float *full = calloc((size_t)M * N, sizeof *full), *part = calloc((size_t)M * N, sizeof *part);
            test_fill_uniform(A, (size_t)M * K, 7), test_fill_uniform(B, (size_t)K * N, 8);
            int lda = tA ? M : K, ldb = tB ? K : N;
            la_sgemm(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, full, N);
            /* rows 11..(11+m): A's rows start 11 rows (or columns, when transposed) in; m = 9, 12,
             * 4 and 1 end on the kernel's 1-row and 4-row tiles (the full call has 8-row tiles) */
            const float *A1 = tA ? A + 11 : A + (size_t)11 * K;
            const int rows[] = {9, 12, 4, 1};
            for (int q = 0; q < 4; q++) {
                la_sgemm(tA, tB, rows[q], N, K, 1.0f, A1, lda, B, ldb, 0.0f, part + (size_t)11 * N,
                         N);
                cr_assert(memcmp(part + (size_t)11 * N, full + (size_t)11 * N,
                                 (size_t)rows[q] * N * sizeof(float)) == 0,
                          "tA=%d tB=%d: rows 11..%d differ from the full call's", tA, tB,
                          10 + rows[q]);
            }
            /* columns 50..(50+23) */
            const float *B1 = tB ? B + (size_t)50 * K : B + 50;
            memset(part, 0, (size_t)M * N * sizeof *part);
            la_sgemm(tA, tB, M, 23, K, 1.0f, A, lda, B1, ldb, 0.0f, part + 50, N);
            for (int i = 0; i < M; i++)
                cr_assert(memcmp(part + (size_t)i * N + 50, full + (size_t)i * N + 50, 23 * sizeof(float)) == 0,
                          "tA=%d tB=%d: row %d, columns 50..72 differ from the full call's", tA, tB, i);
            free(A), free(B), free(full), free(part);
        }
}

/* Both kernels compute the same products (to rounding), so switching kernels is safe. */
Test(linalg, sgemm_kernels_agree) {
    la_blas_single_threaded();
    const char *kernels[] = {"openblas", "avx512"};
    for (int q = 0; q < 2; q++) {
        if (la_sgemm_select(kernels[q]) != 0) {
            cr_assert_str_eq(kernels[q], "avx512", "openblas must always be selectable");
            continue; /* a build without AVX-512 */
        }
        cr_assert_str_eq(la_sgemm_kernel(), kernels[q]);
        check_case(0, 1, 32, 288, 196, 1.0f, 1.0f, 0);
        check_case(1, 0, 288, 196, 32, 1.0f, 0.0f, 0);
    }
    cr_assert_eq(la_sgemm_select("auto"), 0);
    cr_assert_eq(la_sgemm_select("cublas"), -1);
}

/* The im2col matrix of x (C, H, W) for a k x k kernel, stride 1, padding (k-1)/2, built. */
static float *build_cols(const float *x, int C, int H, int W, int k) {
    const int p = (k - 1) / 2;
    float *cols = malloc((size_t)C * k * k * H * W * sizeof *cols);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
                for (int y = 0; y < H; y++)
                    for (int xx = 0; xx < W; xx++) {
                        int yy = y + i - p, x2 = xx + j - p;
                        cols[(((size_t)(c * k + i) * k + j) * H + y) * W + xx] =
                            yy >= 0 && yy < H && x2 >= 0 && x2 < W ? x[((size_t)c * H + yy) * W + x2] : 0.0f;
                    }
    return cols;
}

/* la_sgemm_im2col equals la_sgemm on the built columns, both ways round, over image sizes narrower
 * than a vector, not a multiple of it, and a single row or column; bitwise for the AVX-512 kernel
 * (same packed values, same order). */
Test(linalg, sgemm_im2col_equals_the_built_columns) {
    la_blas_single_threaded();
    if (strcmp(la_sgemm_kernel(), "avx512") != 0) {
        cr_assert_eq(la_sgemm_im2col(0, 0, 1, 4, 1, 1.0f, (float[]){1}, 1, (float[]){1, 2, 3, 4}, 2, 2, 1,
                                     0.0f, (float[4]){0}, 4),
                     0, "OpenBLAS has no im2col path: the caller must build the columns");
        cr_skip("no AVX-512 kernel in this build");
    }
    static const int cases[][5] = {/* C, H, W, k, M */
                                   {3, 28, 28, 3, 16}, {5, 7, 7, 3, 9},  {2, 14, 14, 3, 33},
                                   {4, 1, 19, 3, 8},   {3, 17, 1, 3, 5}, {2, 9, 11, 5, 7},
                                   {6, 5, 4, 1, 10},   {40, 6, 6, 3, 12}};
    for (size_t q = 0; q < sizeof cases / sizeof cases[0]; q++) {
        const int C = cases[q][0], H = cases[q][1], W = cases[q][2], k = cases[q][3], M = cases[q][4];
        const int Kc = C * k * k, HW = H * W;
        float *x = malloc((size_t)C * HW * sizeof *x), *A = malloc((size_t)M * (Kc > HW ? Kc : HW) * sizeof *A);
        test_fill_uniform(x, (size_t)C * HW, 11 + (unsigned)q),
            test_fill_uniform(A, (size_t)M * (Kc > HW ? Kc : HW), 12);
        float *cols = build_cols(x, C, H, W, k);
        /* transB = 0: (M, HW) = A (M, Kc) cols */
        float *want = calloc((size_t)M * HW, sizeof *want), *got = calloc((size_t)M * HW, sizeof *got);
        la_sgemm(0, 0, M, HW, Kc, 1.0f, A, Kc, cols, HW, 0.0f, want, HW);
        cr_assert_eq(la_sgemm_im2col(0, 0, M, HW, Kc, 1.0f, A, Kc, x, H, W, k, 0.0f, got, HW), 1);
        cr_assert(memcmp(got, want, (size_t)M * HW * sizeof *got) == 0,
                  "C=%d H=%d W=%d k=%d: A * im2col(x) differs from the built columns'", C, H, W, k);
        free(want), free(got);
        /* transB = 1: (M, Kc) = A (M, HW) cols^T, accumulating (beta = 1) */
        want = malloc((size_t)M * Kc * sizeof *want), got = malloc((size_t)M * Kc * sizeof *got);
        test_fill_uniform(want, (size_t)M * Kc, 13);
        memcpy(got, want, (size_t)M * Kc * sizeof *got);
        la_sgemm(0, 1, M, Kc, HW, 1.0f, A, HW, cols, HW, 1.0f, want, Kc);
        cr_assert_eq(la_sgemm_im2col(0, 1, M, Kc, HW, 1.0f, A, HW, x, H, W, k, 1.0f, got, Kc), 1);
        cr_assert(memcmp(got, want, (size_t)M * Kc * sizeof *got) == 0,
                  "C=%d H=%d W=%d k=%d: A * im2col(x)^T differs from the built columns'", C, H, W, k);
        free(want), free(got), free(cols), free(x), free(A);
    }
}

/* A JTRAK_SGEMM that names no kernel is one error line and exit status 2, not a silent default. */
Test(linalg, unknown_sgemm_kernel_in_the_environment_exits_2, .exit_code = 2) {
    setenv("JTRAK_SGEMM", "cublas", 1);
    la_blas_single_threaded();
}
