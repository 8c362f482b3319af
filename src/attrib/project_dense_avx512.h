/* project_dense_avx512.h: the dense Rademacher product of project.c (out = G R, R = +-1 from
 * Philox bits) as one fused AVX-512 kernel that never writes R to memory.
 *
 * Why: materialising R as floats block by block and handing it to an SGEMM (project.c's portable
 * path) ran at ~127 GFLOP/s against the SGEMM's ~435 (2 threads) and was bound by memory: the
 * float blocks of R (1024 x k) are megabytes, written and read again for every row block, and the
 * whole product slowed 2.4x when another tenant of the host loaded memory. Here the Philox words
 * of a block of rows (16 bytes per row and 128 columns) are generated into a small buffer, 16
 * rows per call of a vectorised Philox4x32-10, and each 16-bit slice of a word becomes the sign
 * vector of 16 columns in a register (a mask blend of -1 and +1); each example's entry of G is
 * broadcast into a register tile of 8 examples x 32 columns. The only memory streams are G
 * (read once per thread) and the double accumulators (once per 1024 rows).
 *
 * The arithmetic of one output (example b, column j): for each run of PROJ_DENSE_ROWS rows of R
 * (from row 0 up), a float sum over the run's rows in ascending order, started at 0, of
 * g[b][i] * R[i][j] (exact: R is +-1, so each addition rounds once), then added in double to the
 * running total. It depends on (p, the run length) only: not on B, the example's place in the
 * batch, k, the column's place in a tile or the thread count (a column's runs are added in row
 * order, by whichever thread).
 *
 * Built only when the compiler targets AVX-512F and VL (as core/sgemm_avx512.c); elsewhere
 * proj_dense_avx512 returns 0 and project.c uses its portable path. */
#ifndef JTRAK_PROJECT_DENSE_AVX512_H
#define JTRAK_PROJECT_DENSE_AVX512_H

#include <stddef.h>
#include <stdint.h>

/* Rows of R whose products are summed in float before the double accumulation. */
#define PROJ_DENSE_ROWS 128

/* 1 when this build carries the kernel. */
int proj_dense_avx512_built(void);

/* Bytes proj_dense_avx512 allocates (besides acc) for k columns with nthreads OpenMP threads;
 * 0 without the kernel. */
size_t proj_dense_avx512_scratch_bytes(int k, int nthreads);

/* acc (B, k) += G (B, p; row stride ldg) R with R[i][j] the sign of bit (j % 32) of word
 * (j / 32) % 4 of rng_block(seed, stream, (i << 24) | (j / 128)) (set -> +1), i.e. project.c's
 * dense matrix for that stream. OpenMP-parallel over the columns. Returns 1 when done, 0 (acc
 * untouched) when this build has no AVX-512 kernel. */
int proj_dense_avx512(const float *G, int B, size_t ldg, size_t p, int k, uint64_t seed,
                      uint64_t stream, double *acc);

#endif
