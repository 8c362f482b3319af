/* bench_sgemm.c: the machine's SGEMM peak for `make bench`, the yardstick beside the achieved
 * GFLOP/s of the U-Net and of featurize. OpenBLAS (through cblas) and, on a build for AVX-512,
 * jtrak's own kernel (la_sgemm, src/core/sgemm_avx512.h) multiply large square float32 matrices,
 * C = A B, n x n, 2 n^3 FLOPs per call, in three ways (jtrak's kernel: single and concurrent only):
 *
 *   single     one thread (OpenBLAS limited to 1 thread): the peak of one core
 *   threaded   one call on T threads (OpenBLAS's own thread pool)
 *   concurrent T OpenMP threads, each calling single-threaded SGEMM on its own matrices: the way
 *              jtrak's ops use BLAS (house-style convention 8), so the fairest peak for them
 *
 * with T = omp_get_max_threads() (OMP_NUM_THREADS). Each (kernel, mode, n) runs one untimed call,
 * then repeats until at least --min-seconds have passed and keeps the best call's rate. Prints one
 * JSON line per (kernel, mode, n) and a last line with the peak over all of them (what
 * "sgemm_peak"; its "impl" names the kernel that reached it).
 *
 * Run: bench_sgemm [--sizes 1024,2048,4096] [--min-seconds 0.5] */
#include "bench_common.h"
#include "core/linalg.h"
#include "core/progress.h"
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float *filled(size_t n, unsigned seed) {
    float *a = malloc(n * sizeof *a);
    if (!a) {
        fprintf(stderr, "bench_sgemm: out of memory (%zu floats)\n", n);
        exit(1);
    }
    /* Values in [-1, 1): no denormals or overflow in the products. */
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        a[i] = (float)((seed >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
    return a;
}

static int g_jtrak_kernel; /* 1: la_sgemm with jtrak's AVX-512 kernel; 0: OpenBLAS */

static void gemm(int n, const float *A, const float *B, float *C) {
    if (g_jtrak_kernel) la_sgemm(0, 0, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
}

/* Best seconds of one call of `mode` at size n (each of `copies` threads its own matrices). */
static double best_call(const char *mode, int n, int T, double min_s) {
    int copies = strcmp(mode, "concurrent") == 0 ? T : 1;
    size_t nn = (size_t)n * n;
    float **A = malloc((size_t)copies * sizeof *A), **B = malloc((size_t)copies * sizeof *B),
          **C = malloc((size_t)copies * sizeof *C);
    for (int c = 0; c < copies; c++) {
        A[c] = filled(nn, 1 + 3 * c);
        B[c] = filled(nn, 2 + 3 * c);
        C[c] = filled(nn, 3 + 3 * c);
    }
    openblas_set_num_threads(strcmp(mode, "threaded") == 0 ? T : 1);
    omp_set_num_threads(T); /* the pthread OpenBLAS leaves it alone; the OpenMP one would not */
    double best = 1e30, spent = 0;
    for (int it = 0; it == 0 || spent < min_s; it++) {
        double t0 = progress_now();
        if (copies > 1) {
#pragma omp parallel for num_threads(copies) schedule(static, 1)
            for (int c = 0; c < copies; c++)
                gemm(n, A[c], B[c], C[c]);
        } else {
            gemm(n, A[0], B[0], C[0]);
        }
        double dt = progress_now() - t0;
        if (it > 0) { /* the first call warms caches, pages and the thread pool */
            spent += dt;
            if (dt < best) best = dt;
        }
    }
    for (int c = 0; c < copies; c++)
        free(A[c]), free(B[c]), free(C[c]);
    free(A), free(B), free(C);
    return best;
}

int main(int argc, char **argv) {
    const char *sizes = "1024,2048,4096";
    double min_s = 0.5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc)
            sizes = argv[++i];
        else if (strcmp(argv[i], "--min-seconds") == 0 && i + 1 < argc)
            min_s = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_sgemm [--sizes 1024,2048,4096] [--min-seconds 0.5]\n");
            return 2;
        }
    }
    int size_list[16];
    const int n_sizes = bench_int_list(sizes, size_list, 16, "bench_sgemm", "--sizes");
    if (n_sizes < 0) return 2;
    int T = omp_get_max_threads();
    static const char *const modes[3] = {"single", "threaded", "concurrent"};
    static const char *const impls[2] = {"openblas", "jtrak-avx512"};
    double peak = 0;
    const char *peak_mode = "", *peak_impl = "";
    int peak_n = 0;
    int kernels = la_sgemm_select("avx512") == 0 ? 2 : 1;
    for (int q = 0; q < kernels; q++) {
        g_jtrak_kernel = q == 1;
        for (int m = 0; m < 3; m++) {
            if (T == 1 && m > 0) break;   /* all three are the same call */
            if (q == 1 && m == 1) continue; /* jtrak's kernel is single-threaded */
            for (int si = 0; si < n_sizes; si++) {
                const int n = size_list[si];
                fprintf(stderr, "bench_sgemm: %s %s n=%d\n", impls[q], modes[m], n);
                int copies = m == 2 ? T : 1;
                double sec = best_call(modes[m], n, T, min_s);
                double gflops = copies * 2.0 * n * (double)n * n / sec / 1e9;
                printf("{\"impl\":\"%s\",\"what\":\"sgemm\",\"mode\":\"%s\",\"n\":%d,"
                       "\"threads\":%d,\"calls_at_once\":%d,\"best_seconds\":%.6f,\"gflops\":%.2f}\n",
                       impls[q], modes[m], n, m == 0 ? 1 : T, copies, sec, gflops);
                fflush(stdout);
                /* The peak for T threads: a single-thread figure counts as that of one core only. */
                if (gflops > peak && (m > 0 || T == 1)) {
                    peak = gflops;
                    peak_mode = modes[m];
                    peak_impl = impls[q];
                    peak_n = n;
                }
            }
        }
    }
    printf("{\"impl\":\"%s\",\"what\":\"sgemm_peak\",\"threads\":%d,\"mode\":\"%s\",\"n\":%d,"
           "\"gflops\":%.2f,\"openblas\":\"%s\",\"core\":\"%s\"}\n",
           peak_impl, T, peak_mode, peak_n, peak, openblas_get_config(), openblas_get_corename());
    return 0;
}
