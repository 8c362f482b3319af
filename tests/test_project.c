/* test_project.c: the random projections (src/attrib/project.h, method.md 2.3, 6.5), every kind
 * (rademacher, sparse, hadamard; rademacher on both its paths, the fused AVX-512 kernel and the
 * portable one): proj_apply against an explicit matrix built from proj_row; the result for an
 * example does not depend on the batch around it or on the thread count (bitwise);
 * the Johnson-Lindenstrauss property <P^T u, P^T v> p / k ~ <u, v> at the dense kind's error level,
 * on Gaussian vectors and on structured ones (periodic, blockwise, spiky: what a fold without
 * mixing would get wrong); the entries each kind promises (balanced +-1; one +-sqrt(k/s) per column
 * block; signed Walsh rows, orthogonal within a block); the same (seed, model) gives the same
 * matrix and another model or seed an independent one. */
#include "attrib/project.h"
#include "core/linalg.h"
#include "core/rng.h"
#include "helpers/numcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ProjKind KINDS[] = {PROJ_RADEMACHER, PROJ_SPARSE, PROJ_HADAMARD};
#define N_KINDS ((int)(sizeof KINDS / sizeof KINDS[0]))

/* The kinds, with the dense one on each of its paths: la_sgemm's "auto" (the fused AVX-512 kernel
 * on a build for AVX-512, else the portable path) and "openblas" (the portable path: materialised
 * blocks of R and la_sgemm), as JTRAK_SGEMM selects them (project.c, dense_fused). */
typedef struct {
    ProjKind kind;
    const char *sgemm;
    const char *name;
} Variant;
static const Variant VARIANTS[] = {{PROJ_RADEMACHER, "auto", "rademacher"},
                                   {PROJ_RADEMACHER, "openblas", "rademacher (portable)"},
                                   {PROJ_SPARSE, "auto", "sparse"},
                                   {PROJ_HADAMARD, "auto", "hadamard"}};
#define N_VARIANTS ((int)(sizeof VARIANTS / sizeof VARIANTS[0]))

/* proj_init, then the variant's SGEMM selection (proj_init applies $JTRAK_SGEMM, so after it). */
static void variant_init(Projector *pr, const Variant *v, uint64_t seed, int model, size_t p,
                         int k) {
    proj_init(pr, v->kind, seed, model, p, k);
    cr_assert_eq(la_sgemm_select(v->sgemm), 0, "la_sgemm_select(%s)", v->sgemm);
}

/* B rows of p standard normals at row stride ld (the gap filled with NaN: it must not be read). */
static float *gaussian_rows(int B, size_t p, size_t ld, uint64_t seed) {
    float *g = malloc((size_t)B * ld * sizeof *g);
    for (int b = 0; b < B; b++) {
        rng_fill_normal(g + (size_t)b * ld, p, seed, (uint64_t)b, 0);
        for (size_t i = p; i < ld; i++)
            g[(size_t)b * ld + i] = NAN;
    }
    return g;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

Test(project, small_case_equals_explicit_matrix) {
    /* p = 2500 with ld > p. k = 300: dense column chunks 128, 128, 44 (the last ends inside a
     * Philox block and a word, and the fused kernel's last tile inside a vector); sparse blocks of
     * 37 and 38 columns; hadamard L = 512, S keeps 300 of 512 outputs, 5 blocks, the last 452
     * rows. k = 256: hadamard L = k. k = 5: sparse s = 5 blocks of one column, hadamard L = 8.
     * k = 2048: 16 Philox blocks per row (the column index in the counter's low word up to 15).
     * p = 2500 rows are also two full dense row blocks and a partial one (the fused kernel's runs
     * of 128 rows: 19 and a partial one). B = 10: a full group of 8 examples and a partial one of
     * 2 (the fused kernel's tiles of 8 and of 2 rows). */
    const size_t p = 2500, ld = 2509;
    const int ks[] = {300, 256, 5, 2048}, B = 10;
    float *G = gaussian_rows(B, p, ld, 5);
    for (int var = 0; var < N_VARIANTS; var++)
        for (int ki = 0; ki < 4; ki++) {
            const int k = ks[ki];
            Projector pr;
            variant_init(&pr, &VARIANTS[var], 17, 2, p, k);
            float *R = malloc(p * k * sizeof *R);
            for (size_t i = 0; i < p; i++)
                proj_row(&pr, i, R + i * k);
            float *out = malloc((size_t)B * k * sizeof *out);
            float *want = malloc((size_t)B * k * sizeof *want);
            proj_apply(&pr, G, B, ld, out);
            double amax = 0;
            for (int b = 0; b < B; b++)
                for (int j = 0; j < k; j++) {
                    double s = 0;
                    for (size_t i = 0; i < p; i++)
                        s += (double)G[(size_t)b * ld + i] * R[i * k + j];
                    want[b * k + j] = (float)(s / sqrt((double)p));
                    amax = fmax(amax, fabs(want[b * k + j]));
                }
            /* dense: float32 sums over blocks of rows (fused: runs of 128 rows; portable: GEMMs
             * over 1024 rows), then summed in double, vs a double loop: at most ~sqrt(1024) ulp of
             * a partial sum of size ~sqrt(1024), i.e. ~1e-5 of the O(1) outputs (both paths
             * measure ~1e-6 of outputs ~4, a few ulp). sparse and hadamard add in double (their
             * error is ~1e-7, the float rounding of sqrt(k/s) in proj_row and of the outputs).
             * 1e-5 of the largest output absolutely and 1e-5 relatively for all: an entry of R
             * wrong anywhere moves an output by ~|g_i| / sqrt(p) ~ 2e-2. */
            char what[64];
            snprintf(what, sizeof what, "%s k=%d vs explicit matrix", VARIANTS[var].name, k);
            NumDiff d = expect_close(what, out, want, (size_t)B * k, 1e-5 * amax, 1e-5);
            fprintf(stderr, "project: %s, max abs error %.2e (max |out| %.2f)\n", what, d.max_abs,
                    amax);
            free(R), free(out), free(want);
            proj_free(&pr);
        }
    free(G);
}

Test(project, rows_do_not_depend_on_the_batch_bitwise) {
    const size_t p = 20000, ld = 20003;
    const int k = 2048, B = 7;
    float *G = gaussian_rows(B, p, ld, 6);
    for (int var = 0; var < N_VARIANTS; var++) {
        const char *name = VARIANTS[var].name;
        Projector pr;
        variant_init(&pr, &VARIANTS[var], 3, 1, p, k);
        float *out = malloc((size_t)B * k * sizeof *out), *one = malloc((size_t)k * sizeof *one);
        proj_apply(&pr, G, B, ld, out);
        /* dense, fused: every example row of a register tile does the same operations, whatever
         * the tile's height (7, 1, 8 or 2 here) and the row's place in it (the first rows of a
         * tile add some of their products by vaddps instead of fma: bitwise the same, and this
         * checks it). dense, portable: every GEMM has the shape (8 rows x chunk x block rows) and
         * an example is one row of a full register tile, whatever B is and whatever the other
         * rows hold. sparse and hadamard: nothing mixes the examples. */
        for (int b = 0; b < B; b++) {
            proj_apply(&pr, G + (size_t)b * ld, 1, p, one);
            cr_expect(memcmp(out + (size_t)b * k, one, k * sizeof *one) == 0,
                      "%s: row %d of a batch of %d differs from the same row alone", name, b, B);
        }
        /* The same rows in another order, inside a batch of 10 (groups of 8 and 2; padded to 8
         * on the portable path). */
        float *G10 = malloc(10 * p * sizeof *G10), *out10 = malloc(10 * (size_t)k * sizeof *out10);
        for (int b = 0; b < 10; b++)
            memcpy(G10 + (size_t)b * p, G + (size_t)((b * 3) % B) * ld, p * sizeof *G10);
        proj_apply(&pr, G10, 10, p, out10);
        for (int b = 0; b < 10; b++)
            cr_expect(memcmp(out10 + (size_t)b * k, out + (size_t)((b * 3) % B) * k,
                             k * sizeof(float)) == 0,
                      "%s: row %d of a batch of 10 differs", name, b);
        free(out), free(one), free(G10), free(out10);
        proj_free(&pr);
    }
    free(G);
}

Test(project, result_does_not_depend_on_thread_count) {
    /* p = 30000: four row chunks of sparse and hadamard (8192 rows each, the last 5424), held two,
     * four or six at a time with 1, 2 or 3 threads; dense (both paths): 30 row blocks, 8 column
     * chunks shared out dynamically. */
    const size_t p = 30000;
    const int k = 1024, B = 5;
    float *G = gaussian_rows(B, p, p, 7), *out[3];
    for (int var = 0; var < N_VARIANTS; var++) {
        for (int n = 0; n < 3; n++) {
            omp_set_num_threads(n + 1);
            Projector pr;
            variant_init(&pr, &VARIANTS[var], 3, 0, p, k);
            out[n] = malloc((size_t)B * k * sizeof(float));
            proj_apply(&pr, G, B, p, out[n]);
            proj_free(&pr);
        }
        omp_set_num_threads(2);
        for (int n = 1; n < 3; n++)
            cr_expect(memcmp(out[0], out[n], (size_t)B * k * sizeof(float)) == 0,
                      "%s: projections differ between 1 and %d threads", VARIANTS[var].name, n + 1);
        free(out[0]), free(out[1]), free(out[2]);
    }
    free(G);
}

/* JL statistics of one kind over pairs of rows of G (B, p): z = (<P^T u, P^T v> p / k - <u, v>) /
 * (|u||v|) divided by the dense kind's sd, sqrt((1 + rho^2 - 2 sum_i u_i^2 v_i^2 / (|u||v|)^2) / k)
 * (E <R^T u, R^T v> = k <u, v> and that variance hold for all three kinds: project.c). Pairs
 * (a, b) with a <= b <= a + pair_step. Returns the number of estimates; sums of z/sd and
 * (z/sd)^2, and the largest |z/sd|. */
typedef struct {
    int n;
    double sum_z, sum_q, worst;
} JlStats;

static JlStats jl_stats(ProjKind kind, uint64_t seed, int model, const float *G, int B, size_t p,
                        int k, int pair_step) {
    Projector pr;
    proj_init(&pr, kind, seed, model, p, k);
    float *out = malloc((size_t)B * k * sizeof *out);
    proj_apply(&pr, G, B, p, out);
    JlStats st = {0, 0, 0, 0};
    for (int a = 0; a < B; a++)
        for (int b = a; b <= a + pair_step && b < B; b++) {
            const float *u = G + (size_t)a * p, *v = G + (size_t)b * p;
            double uv = dot(u, v, p), nu = sqrt(dot(u, u, p)), nv = sqrt(dot(v, v, p)), s4 = 0;
            for (size_t i = 0; i < p; i++)
                s4 += (double)u[i] * u[i] * v[i] * v[i];
            double r = uv / (nu * nv), c = s4 / (nu * nu * nv * nv);
            double est = dot(out + (size_t)a * k, out + (size_t)b * k, k) * (double)p / k;
            double z = (est - uv) / (nu * nv) / sqrt((1 + r * r - 2 * c) / k);
            st.n++, st.sum_z += z, st.sum_q += z * z, st.worst = fmax(st.worst, fabs(z));
        }
    free(out);
    proj_free(&pr);
    return st;
}

Test(project, inner_products_are_preserved) {
    /* JL: with 1/sqrt(p) on both factors, z has mean 0 and sd sqrt((1 + rho^2) / k) for spread-out
     * vectors: 0.031 for norms (rho 1), 0.025 for rho 0.5 at k = 2048. */
    const size_t p = 20000;
    const int k = 2048, B = 64;
    const double rho = 0.5;
    float *G = gaussian_rows(B, p, p, 8);
    /* pairs (2i, 2i+1) with correlation rho: v = rho u + sqrt(1 - rho^2) w */
    for (int b = 1; b < B; b += 2)
        for (size_t i = 0; i < p; i++)
            G[b * p + i] = (float)(rho * G[(b - 1) * p + i] + sqrt(1 - rho * rho) * G[b * p + i]);
    for (int kind = 0; kind < N_KINDS; kind++) {
        const char *name = proj_kind_name(KINDS[kind]);
        /* every norm, and each pair (2i, 2i+1) (plus the (2i+1, 2i+2) pairs, rho ~ 0) */
        JlStats st = jl_stats(KINDS[kind], 11, 0, G, B, p, k, 1);
        /* 127 estimates: each within 5 sd; no bias (mean of z/sd ~ N(0, 1/127): 5 sd = 0.44), and
         * the dense kind's spread (mean of (z/sd)^2 ~ 1 with sd ~ sqrt(2/127) = 0.13; hadamard's
         * is a little smaller, its blocks' own terms being exact): correlated or repeated entries
         * of R would inflate it k-fold, a wrong scale would shift the mean. */
        fprintf(stderr,
                "project: %s JL over %d estimates: mean z/sd %.3f, mean (z/sd)^2 %.3f, worst "
                "%.2f\n",
                name, st.n, st.sum_z / st.n, st.sum_q / st.n, st.worst);
        cr_expect(st.worst < 5, "%s: an estimate is %.1f sd off", name, st.worst);
        cr_expect(fabs(st.sum_z / st.n) < 0.44, "%s: bias %g sd", name, st.sum_z / st.n);
        cr_expect(st.sum_q / st.n > 0.5 && st.sum_q / st.n < 1.6,
                  "%s: mean squared error %g of the dense theory's", name, st.sum_q / st.n);
    }
    free(G);
}

Test(project, structured_vectors_are_preserved) {
    /* Gradients are not Gaussian: a layer's gradient repeats with the layer's row length, whole
     * tensors are zero, a few coordinates dominate. Five such vectors, projected by 12 matrices
     * (model ids) per kind: the norm estimates |P^T u|^2 p / k of every kind must show the dense
     * kind's error (z/sd as in jl_stats, with the exact sd of each vector). Hadamard without its
     * output signs only folds coordinates L apart (the spikes 512 apart collide), without its
     * input signs a periodic block stays on a few Walsh outputs: either way some z exceeds 40. */
    const size_t p = 20000;
    const int k = 2048, B = 5, n_models = 12;
    float *G = calloc((size_t)B * p, sizeof *G);
    float w[64];
    rng_fill_normal(w, 64, 21, 0, 0);
    for (size_t i = 0; i < p; i++) {
        G[i] = w[i % 64];                                        /* period 64, divides L */
        G[p + i] = (i / 1000) % 3 == 0 ? w[(i / 1000) % 64] : 0; /* blockwise constant, gaps */
    }
    for (int j = 0; j < 40; j++) /* 40 spikes at unrelated places */
        G[2 * p + (size_t)j * 487] = (float)(j % 2 ? 3 + j : -2 - j);
    rng_fill_normal(G + 3 * p, p, 22, 0, 0); /* noise plus one coordinate holding half the norm */
    G[3 * p + 777] = (float)sqrt((double)p);
    /* one input feature of a layer with rows of 512 dominates: spikes 512 apart plus faint noise */
    rng_fill_normal(G + 4 * p, p, 23, 0, 0);
    for (size_t i = 0; i < p; i++)
        G[4 * p + i] = i % 512 == 37 ? 10 + w[(i / 512) % 64] : 0.01f * G[4 * p + i];
    for (int kind = 0; kind < N_KINDS; kind++) {
        const char *name = proj_kind_name(KINDS[kind]);
        JlStats all = {0, 0, 0, 0};
        for (int m = 0; m < n_models; m++) {
            JlStats st = jl_stats(KINDS[kind], 5, m, G, B, p, k, 0);
            all.n += st.n, all.sum_z += st.sum_z, all.sum_q += st.sum_q;
            all.worst = fmax(all.worst, st.worst);
        }
        /* 60 norm estimates: each within 5 sd, mean (z/sd)^2 ~ 1 (sd 0.18) or below */
        fprintf(stderr,
                "project: %s structured norms over %d estimates: mean (z/sd)^2 %.3f, "
                "worst %.2f\n",
                name, all.n, all.sum_q / all.n, all.worst);
        cr_expect(all.worst < 5, "%s: a norm is %.1f sd off", name, all.worst);
        cr_expect(all.sum_q / all.n < 1.8, "%s: mean squared error %g of the dense theory's", name,
                  all.sum_q / all.n);
    }
    free(G);
}

Test(project, rademacher_entries_are_balanced_signs) {
    const size_t p = 1000;
    const int k = 2048;
    Projector pr;
    proj_init(&pr, PROJ_RADEMACHER, 0, 0, p, k);
    float *row = malloc(k * sizeof *row);
    long *col = calloc(k, sizeof *col);
    long total = 0, agree_next = 0;
    for (size_t i = 0; i < p; i++) {
        proj_row(&pr, i, row);
        for (int j = 0; j < k; j++) {
            cr_assert(row[j] == 1.0f || row[j] == -1.0f, "R[%zu][%d] = %g", i, j, row[j]);
            total += row[j] > 0 ? 1 : -1;
            col[j] += row[j] > 0 ? 1 : -1;
            if (j + 1 < k) agree_next += row[j] == row[j + 1] ? 1 : -1;
        }
    }
    /* 2,048,000 signs: sum sd 1431; 5 sd */
    cr_expect(labs(total) < 7200, "sum of entries %ld", total);
    /* neighbouring columns (neighbouring bits of a word) are independent */
    cr_expect(labs(agree_next) < 7200, "neighbour agreement %ld", agree_next);
    /* each column: 1000 signs, sd 31.6: no column beyond 5.5 sd (2048 columns) */
    long worst = 0;
    for (int j = 0; j < k; j++)
        worst = labs(col[j]) > worst ? labs(col[j]) : worst;
    cr_expect(worst < 174, "a column sums to %ld", worst);
    free(row), free(col);
    proj_free(&pr);
}

Test(project, sparse_rows_have_one_signed_entry_per_block) {
    const size_t p = 20000;
    const int k = 2048, s = PROJ_SPARSE_NNZ, m = k / s;
    Projector pr;
    proj_init(&pr, PROJ_SPARSE, 0, 0, p, k);
    const float v = (float)sqrt((double)k / s);
    float *row = malloc(k * sizeof *row);
    long *hits = calloc(k, sizeof *hits), total = 0;
    for (size_t i = 0; i < p; i++) {
        proj_row(&pr, i, row);
        for (int t = 0; t < s; t++) {
            int nz = 0;
            for (int j = t * m; j < (t + 1) * m; j++) {
                if (row[j] == 0) continue;
                cr_assert(row[j] == v || row[j] == -v, "R[%zu][%d] = %g, not +-%g", i, j, row[j],
                          v);
                nz++, hits[j]++, total += row[j] > 0 ? 1 : -1;
            }
            cr_assert_eq(nz, 1, "row %zu has %d nonzeros in column block %d", i, nz, t);
        }
    }
    /* 160,000 signs: sum sd 400; 5 sd */
    cr_expect(labs(total) < 2000, "sum of signs %ld", total);
    /* every column is hit ~ Binomial(20000, 1/256): mean 78.1, sd 8.8; none beyond 5.5 sd */
    long lo = hits[0], hi = hits[0];
    for (int j = 0; j < k; j++)
        lo = hits[j] < lo ? hits[j] : lo, hi = hits[j] > hi ? hits[j] : hi;
    cr_expect(lo > 29 && hi < 127, "column hits from %ld to %ld (expected 78 +- 9)", lo, hi);
    free(row), free(hits);
    proj_free(&pr);
}

Test(project, hadamard_rows_are_signed_walsh_rows) {
    /* k = L = 512, p = 1300: blocks of 512, 512, 276 rows. Within a block the rows are orthogonal
     * exactly (D H E with H's orthogonal rows); across blocks the normalised inner product is a
     * sum of k random signs / k: sd 1/sqrt(512) = 0.044. */
    const size_t p = 1300;
    const int k = 512;
    Projector pr;
    proj_init(&pr, PROJ_HADAMARD, 4, 0, p, k);
    float *R = malloc(p * k * sizeof *R);
    long total = 0;
    for (size_t i = 0; i < p; i++) {
        proj_row(&pr, i, R + i * k);
        for (int j = 0; j < k; j++) {
            cr_assert(R[i * k + j] == 1.0f || R[i * k + j] == -1.0f, "R[%zu][%d] = %g", i, j,
                      R[i * k + j]);
            total += R[i * k + j] > 0 ? 1 : -1;
        }
    }
    /* 665,600 signs: sd 816; 5 sd */
    cr_expect(labs(total) < 4100, "sum of entries %ld", total);
    double worst_cross = 0;
    int bad_within = 0;
    for (size_t a = 0; a < p; a += 7)
        for (size_t b = a + 1; b < p; b += 5) {
            double d = dot(R + a * k, R + b * k, k);
            if (a / k == b / k)
                bad_within += d != 0;
            else
                worst_cross = fmax(worst_cross, fabs(d) / k);
        }
    cr_expect_eq(bad_within, 0, "%d pairs of rows of one block are not orthogonal", bad_within);
    /* ~17,000 cross pairs: none beyond 5.5 sd */
    cr_expect(worst_cross < 0.243, "rows of two blocks: normalised inner product %g", worst_cross);
    free(R);
    proj_free(&pr);
}

Test(project, keyed_by_seed_and_model) {
    const size_t p = 500;
    const int k = 2048;
    for (int kind = 0; kind < N_KINDS; kind++) {
        const char *name = proj_kind_name(KINDS[kind]);
        Projector a, b, c, d, e;
        proj_init(&a, KINDS[kind], 9, 0, p, k);
        proj_init(&b, KINDS[kind], 9, 0, p, k);
        proj_init(&c, KINDS[kind], 9, 1, p, k);
        proj_init(&d, KINDS[kind], 10, 0, p, k);
        proj_init(&e, PROJ_RADEMACHER, 9, 0, p, k); /* another kind: other streams */
        float *ra = malloc(k * sizeof(float)), *rx = malloc(k * sizeof(float));
        double same_c = 0, same_d = 0, same_e = 0;
        for (size_t i = 0; i < p; i++) {
            proj_row(&a, i, ra);
            proj_row(&b, i, rx);
            cr_assert(memcmp(ra, rx, k * sizeof(float)) == 0,
                      "%s row %zu: same seed and model differ", name, i);
            proj_row(&c, i, rx);
            same_c += dot(ra, rx, k);
            proj_row(&d, i, rx);
            same_d += dot(ra, rx, k);
            proj_row(&e, i, rx);
            same_e += dot(ra, rx, k);
        }
        /* another model or seed: an independent matrix, normalised inner product mean 0, variance
         * 1/(p k) for every kind (rows of squared norm k): sd 1e-3, 5 sd. hadamard's is the
         * product of two sign sums (its one block shares the output signs): heavier tails, the
         * same variance. */
        double n = (double)p * k;
        cr_expect(fabs(same_c / n) < 5e-3, "%s model 0 vs 1: normalised inner product %g", name,
                  same_c / n);
        cr_expect(fabs(same_d / n) < 5e-3, "%s seed 9 vs 10: normalised inner product %g", name,
                  same_d / n);
        if (KINDS[kind] != PROJ_RADEMACHER)
            cr_expect(fabs(same_e / n) < 5e-3, "%s vs rademacher: normalised inner product %g",
                      name, same_e / n);
        /* and the projections themselves differ between models */
        float *G = gaussian_rows(1, p, p, 12), oa[64], oc[64];
        Projector a64, c64;
        proj_init(&a64, KINDS[kind], 9, 0, p, 64);
        proj_init(&c64, KINDS[kind], 9, 1, p, 64);
        proj_apply(&a64, G, 1, p, oa);
        proj_apply(&c64, G, 1, p, oc);
        int same = 0;
        for (int j = 0; j < 64; j++)
            same += oa[j] == oc[j];
        cr_expect(same < 4, "%s: models 0 and 1 give %d equal outputs of 64", name, same);
        free(G), free(ra), free(rx);
        proj_free(&a), proj_free(&b), proj_free(&c), proj_free(&d), proj_free(&e);
        proj_free(&a64), proj_free(&c64);
    }
}

Test(project, dense_columns_are_a_prefix) {
    /* The first k' columns of a dense k-column matrix are the k'-column matrix. */
    const size_t p = 300;
    Projector a, e;
    proj_init(&a, PROJ_RADEMACHER, 9, 0, p, 2048);
    proj_init(&e, PROJ_RADEMACHER, 9, 0, p, 300);
    float *ra = malloc(2048 * sizeof(float)), *rx = malloc(300 * sizeof(float));
    for (size_t i = 0; i < p; i++) {
        proj_row(&a, i, ra);
        proj_row(&e, i, rx);
        cr_assert(memcmp(ra, rx, 300 * sizeof(float)) == 0,
                  "row %zu: the 300-column matrix is not the first 300 columns", i);
    }
    free(ra), free(rx);
    proj_free(&a), proj_free(&e);
}

Test(project, names) {
    ProjKind kind;
    for (int i = 0; i < N_KINDS; i++) {
        cr_assert(proj_kind_parse(proj_kind_name(KINDS[i]), &kind) && kind == KINDS[i]);
    }
    cr_assert_str_eq(proj_kind_name(PROJ_RADEMACHER), "rademacher");
    cr_assert_str_eq(proj_kind_name(PROJ_SPARSE), "sparse");
    cr_assert_str_eq(proj_kind_name(PROJ_HADAMARD), "hadamard");
    cr_assert(!proj_kind_parse("gaussian", &kind));
    cr_assert(!proj_kind_parse("Sparse", &kind));
    cr_assert(!proj_kind_parse("", &kind));
}

Test(project, scratch_bytes_are_reported) {
    /* featurize prints this in its memory estimate: every kind holds a (B, k) of doubles; the
     * dense kind on its portable path also its R block (8 MiB here), on the fused path 16 KiB of
     * Philox words per thread; the others their partial sums. */
    for (int var = 0; var < N_VARIANTS; var++) {
        Projector pr;
        variant_init(&pr, &VARIANTS[var], 0, 0, 100000, 2048);
        size_t b = proj_scratch_bytes(&pr, 16);
        cr_expect(b >= 16 * 2048 * sizeof(double) && b < ((size_t)64 << 20),
                  "%s: %zu bytes of scratch", VARIANTS[var].name, b);
        fprintf(stderr, "project: %s scratch %zu bytes at B = 16, k = 2048\n", VARIANTS[var].name,
                b);
        proj_free(&pr);
    }
}
