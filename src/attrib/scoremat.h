/* scoremat.h: TRAK scores in bounded memory (method.md 2.1): for model m,
 * tau[i, j] = x_i^T A gamma_j with x_i a row of the train features X (n, k), A the rescaled kernel
 * inverse (k, k), gamma_j a row of the target features Gamma (N, k); the ensemble score is the
 * mean over models. Rows are processed in tiles; a top-k tracker keeps the largest (proponents) and
 * smallest (opponents) scores per target without the dense matrix. */
#ifndef JTRAK_SCOREMAT_H
#define JTRAK_SCOREMAT_H

#include <stddef.h>

/* AG (k, N) = A Gamma^T, computed once per model and target set. */
void scoremat_prepare(const float *A, const float *Gamma, int k, int N, float *AG);
/* out (rows, N) += weight * X_tile (rows, k) AG (k, N). */
void scoremat_tile(const float *X_tile, size_t rows, const float *AG, int k, int N, float weight,
                   float *out);

typedef struct {
    int N, k;
    size_t *pro_idx, *opp_idx; /* (N, k) */
    float *pro_val, *opp_val;  /* (N, k) */
    int *count;                /* (N) entries held */
} TopK;

void topk_init(TopK *t, int N, int k);
void topk_free(TopK *t);
/* Offers scores (rows, N) of training rows row0..row0+rows-1. Ties keep the lower row index;
 * NaN scores are skipped. The kept sets do not depend on the order in which rows are offered. */
void topk_push(TopK *t, const float *scores, size_t row0, size_t rows);
/* Sorts each target's lists: proponents by decreasing score, opponents by increasing score (equal
 * scores: lower row first). Call once, after the last push. */
void topk_finish(TopK *t);

#endif
