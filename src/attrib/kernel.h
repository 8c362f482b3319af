/* kernel.h: the TRAK kernel (method.md 2.1, 2.4): K = X^T X accumulated in double over row blocks,
 * A = (K + lambda I)^{-1} by Cholesky (LAPACKE dpotrf/dpotri), and TRAK's rescaling
 * A <- A / mean|A| (on by default, as the traker library). */
#ifndef JTRAK_KERNEL_H
#define JTRAK_KERNEL_H

#include "core/common.h"

#include <stddef.h>

typedef struct {
    int k;
    double *xtx; /* (k, k), full symmetric */
    size_t rows;
} Gram;

void gram_init(Gram *g, int k);
void gram_free(Gram *g);
/* xtx += X^T X for X (rows, k) float32. */
void gram_add(Gram *g, const float *X, size_t rows);

typedef struct {
    double lambda;  /* requested ridge (>= 0) */
    int auto_ridge; /* if K + lambda I is not positive definite: retry with the smallest
                       lambda = 1e-7 * mean(diag K) * 10^j (j = 0..12) that factorises */
    int rescale;    /* divide by mean |A| */
} KernelOptions;

typedef struct {
    double lambda_used;
    double rescale_divisor; /* mean |A| before rescaling (1 when off) */
    int ridge_added;        /* 1 if auto_ridge had to raise lambda */
} KernelInfo;

/* A (k, k) float32, with LAPACK single-threaded (la_blas_single_threaded, so call it from serial
 * code): bitwise the same whatever OpenBLAS's threading was before. Fails (naming n, k and what to
 * do) when K + lambda I is singular and auto_ridge is off. */
int kernel_invert(const Gram *g, const KernelOptions *opt, float *A, KernelInfo *info, JtError *err);

#endif
