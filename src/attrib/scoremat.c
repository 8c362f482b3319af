/* scoremat.c: TRAK scores tau = X A Gamma^T in row tiles (method.md 2.1, 2.4), and the per-target
 * top-k of proponents (largest scores) and opponents (smallest).
 *
 * traker forms the features F = X A once (BasicScoreComputer.get_x_xtx_inv) and then F Gamma^T;
 * here A Gamma^T (k, N) is formed once per model and target set, so a tile of training rows costs
 * one (rows, k) x (k, N) product and F never exists. The two groupings differ only by float32
 * rounding.
 *
 * Top-k: per target, a binary heap of the k best entries with the worst at the root, under a total
 * order (score, then lower row index wins), so the kept set is the same whatever the order or the
 * tiling in which rows are offered; topk_finish sorts it. NaN scores are never kept (they have no
 * place in the order). */
#include "attrib/scoremat.h"

#include "core/common.h"
#include "core/linalg.h"

#include <limits.h>
#include <stdlib.h>

void scoremat_prepare(const float *A, const float *Gamma, int k, int N, float *AG) {
    CHECK(k >= 1 && N >= 0, "scoremat_prepare: k=%d N=%d", k, N);
    if (N == 0) return;
    /* AG (k, N) = A (k, k) Gamma^T, Gamma stored (N, k). */
    la_sgemm(0, 1, k, N, k, 1.0f, A, k, Gamma, k, 0.0f, AG, N);
}

void scoremat_tile(const float *X_tile, size_t rows, const float *AG, int k, int N, float weight,
                   float *out) {
    CHECK(k >= 1 && N >= 0, "scoremat_tile: k=%d N=%d", k, N);
    CHECK(rows <= (size_t)INT_MAX, "scoremat_tile: %zu rows in one tile", rows);
    if (rows == 0 || N == 0) return;
    la_sgemm(0, 0, (int)rows, N, k, weight, X_tile, k, AG, N, 1.0f, out, N);
}

void topk_init(TopK *t, int N, int k) {
    CHECK(N >= 0 && k >= 0, "topk_init: N=%d k=%d", N, k);
    size_t nk = (size_t)N * (size_t)k;
    t->N = N;
    t->k = k;
    t->pro_idx = xcalloc(nk ? nk : 1, sizeof(size_t));
    t->opp_idx = xcalloc(nk ? nk : 1, sizeof(size_t));
    t->pro_val = xcalloc(nk ? nk : 1, sizeof(float));
    t->opp_val = xcalloc(nk ? nk : 1, sizeof(float));
    t->count = xcalloc(N ? (size_t)N : 1, sizeof(int));
}

void topk_free(TopK *t) {
    if (!t) return;
    free(t->pro_idx), free(t->opp_idx), free(t->pro_val), free(t->opp_val), free(t->count);
    t->pro_idx = t->opp_idx = NULL;
    t->pro_val = t->opp_val = NULL;
    t->count = NULL;
}

/* Is (va, ia) better than (vb, ib)? sign = +1 for proponents (larger first), -1 for opponents
 * (smaller first); equal scores: the lower row index is better. */
static inline int better(int sign, float va, size_t ia, float vb, size_t ib) {
    if (va != vb) return sign > 0 ? va > vb : va < vb;
    return ia < ib;
}

/* Heap with the worst entry at index 0: every parent is worse than its children. */
static void heap_sift_down(int sign, float *v, size_t *ix, int n, int i) {
    for (;;) {
        int w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && better(sign, v[w], ix[w], v[l], ix[l])) w = l;
        if (r < n && better(sign, v[w], ix[w], v[r], ix[r])) w = r;
        if (w == i) return;
        float tv = v[i];
        size_t ti = ix[i];
        v[i] = v[w], ix[i] = ix[w];
        v[w] = tv, ix[w] = ti;
        i = w;
    }
}

static void heap_offer(int sign, float *v, size_t *ix, int *count, int k, float s, size_t row) {
    int n = *count;
    if (n < k) { /* sift the new entry up while it is worse than its parent */
        int i = n;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!better(sign, v[p], ix[p], s, row)) break;
            v[i] = v[p], ix[i] = ix[p];
            i = p;
        }
        v[i] = s, ix[i] = row;
        *count = n + 1;
    } else if (better(sign, s, row, v[0], ix[0])) {
        v[0] = s, ix[0] = row;
        heap_sift_down(sign, v, ix, n, 0);
    }
}

void topk_push(TopK *t, const float *scores, size_t row0, size_t rows) {
    const int N = t->N, k = t->k;
    if (k == 0 || rows == 0 || N == 0) return;
        /* Targets are independent; the two heaps of one target share its count (both hold
         * min(k, non-NaN rows seen) entries). */
#pragma omp parallel for schedule(static) if ((size_t)N * rows >= 65536)
    for (int j = 0; j < N; j++) {
        float *pv = t->pro_val + (size_t)j * k, *ov = t->opp_val + (size_t)j * k;
        size_t *pi = t->pro_idx + (size_t)j * k, *oi = t->opp_idx + (size_t)j * k;
        int cp = t->count[j], co = t->count[j];
        for (size_t r = 0; r < rows; r++) {
            float s = scores[r * (size_t)N + j];
            if (s != s) continue; /* NaN */
            heap_offer(+1, pv, pi, &cp, k, s, row0 + r);
            heap_offer(-1, ov, oi, &co, k, s, row0 + r);
        }
        t->count[j] = cp;
    }
}

typedef struct {
    float v;
    size_t i;
} Entry;

static int cmp_pro(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    return better(+1, x->v, x->i, y->v, y->i) ? -1 : better(+1, y->v, y->i, x->v, x->i) ? 1 : 0;
}

static int cmp_opp(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    return better(-1, x->v, x->i, y->v, y->i) ? -1 : better(-1, y->v, y->i, x->v, x->i) ? 1 : 0;
}

static void sort_list(float *v, size_t *ix, int n, Entry *tmp,
                      int (*cmp)(const void *, const void *)) {
    for (int r = 0; r < n; r++)
        tmp[r].v = v[r], tmp[r].i = ix[r];
    qsort(tmp, (size_t)n, sizeof *tmp, cmp);
    for (int r = 0; r < n; r++)
        v[r] = tmp[r].v, ix[r] = tmp[r].i;
}

void topk_finish(TopK *t) {
    if (t->k == 0) return;
    Entry *tmp = xmalloc((size_t)t->k * sizeof *tmp);
    for (int j = 0; j < t->N; j++) {
        size_t o = (size_t)j * t->k;
        sort_list(t->pro_val + o, t->pro_idx + o, t->count[j], tmp, cmp_pro);
        sort_list(t->opp_val + o, t->opp_idx + o, t->count[j], tmp, cmp_opp);
    }
    free(tmp);
}
