/* test_project.c: the dense Rademacher projection (src/attrib/project.h, method.md 2.3, 6.5):
 * against an explicit matrix built from proj_row; the result for an example does not depend on
 * the batch around it or on the thread count (bitwise); the Johnson-Lindenstrauss property
 * <P^T u, P^T v> p / k ~ <u, v>; entries +-1 and balanced; the same (seed, model) gives the same
 * matrix and another model an independent one. */
#include "attrib/project.h"
#include "core/rng.h"
#include "helpers/numcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    /* p = 2500: two full 1024-row blocks and a partial one; k = 300: column chunks 128, 128, 44
     * (the last chunk ends inside a Philox block and inside a 32-bit word). */
    const size_t p = 2500, ld = 2509;
    const int k = 300, B = 3;
    Projector pr;
    proj_init(&pr, PROJ_RADEMACHER, 17, 2, p, k);
    float *G = gaussian_rows(B, p, ld, 5);
    float *R = malloc(p * k * sizeof *R);
    for (size_t i = 0; i < p; i++)
        proj_row(&pr, i, R + i * k);
    float *out = malloc((size_t)B * k * sizeof *out), *want = malloc((size_t)B * k * sizeof *want);
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
    /* float32 block GEMMs (1024-term sums of O(1) products, then summed in double) vs a double
     * loop: the error is ~sqrt(1024) ulp of a partial sum of size ~sqrt(1024), i.e. ~1e-5 of the
     * O(1) outputs; 1e-5 of the largest output absolutely and 1e-5 relatively. */
    NumDiff d =
        expect_close("projection vs explicit matrix", out, want, (size_t)B * k, 1e-5 * amax, 1e-5);
    fprintf(stderr, "project: vs explicit matrix, max abs error %.2e (max |out| %.2f)\n", d.max_abs,
            amax);
    free(G), free(R), free(out), free(want);
    proj_free(&pr);
}

Test(project, rows_do_not_depend_on_the_batch_bitwise) {
    const size_t p = 20000, ld = 20003;
    const int k = 2048, B = 7;
    Projector pr;
    proj_init(&pr, PROJ_RADEMACHER, 3, 1, p, k);
    float *G = gaussian_rows(B, p, ld, 6);
    float *out = malloc((size_t)B * k * sizeof *out), *one = malloc((size_t)k * sizeof *one);
    proj_apply(&pr, G, B, ld, out);
    /* Every GEMM has the shape (8 rows x chunk x block rows) and an example is one row of a full
     * register tile, whatever B is and whatever the other rows hold. */
    for (int b = 0; b < B; b++) {
        proj_apply(&pr, G + (size_t)b * ld, 1, p, one);
        cr_expect(memcmp(out + (size_t)b * k, one, k * sizeof *one) == 0,
                  "row %d of a batch of %d differs from the same row alone", b, B);
    }
    /* The same rows in another order, inside a batch of 10 (two groups of 8, padded). */
    float *G10 = malloc(10 * p * sizeof *G10), *out10 = malloc(10 * (size_t)k * sizeof *out10);
    for (int b = 0; b < 10; b++)
        memcpy(G10 + (size_t)b * p, G + (size_t)((b * 3) % B) * ld, p * sizeof *G10);
    proj_apply(&pr, G10, 10, p, out10);
    for (int b = 0; b < 10; b++)
        cr_expect(
            memcmp(out10 + (size_t)b * k, out + (size_t)((b * 3) % B) * k, k * sizeof(float)) == 0,
            "row %d of a batch of 10 differs", b);
    free(G), free(out), free(one), free(G10), free(out10);
    proj_free(&pr);
}

Test(project, result_does_not_depend_on_thread_count) {
    const size_t p = 9000;
    const int k = 1024, B = 5;
    float *G = gaussian_rows(B, p, p, 7), *out[2];
    for (int n = 0; n < 2; n++) {
        omp_set_num_threads(n + 1);
        Projector pr;
        proj_init(&pr, PROJ_RADEMACHER, 3, 0, p, k);
        out[n] = malloc((size_t)B * k * sizeof(float));
        proj_apply(&pr, G, B, p, out[n]);
        proj_free(&pr);
    }
    omp_set_num_threads(2);
    cr_assert(memcmp(out[0], out[1], (size_t)B * k * sizeof(float)) == 0,
              "projections differ between 1 and 2 threads");
    free(G), free(out[0]), free(out[1]);
}

Test(project, inner_products_are_preserved) {
    /* JL: with R p x k of +-1, E <R^T u, R^T v> = k <u, v> and the variance is
     * k (|u|^2 |v|^2 + <u,v>^2 - 2 sum_i u_i^2 v_i^2) ~ k |u|^2 |v|^2 (1 + rho^2) for spread-out
     * vectors; with the 1/sqrt(p) of both factors, z = (<P^T u, P^T v> p / k - <u, v>) / (|u||v|)
     * has mean 0 and sd sqrt((1 + rho^2) / k): 0.031 for norms (rho 1), 0.025 for rho 0.5. */
    const size_t p = 20000;
    const int k = 2048, B = 64;
    const double rho = 0.5;
    Projector pr;
    proj_init(&pr, PROJ_RADEMACHER, 11, 0, p, k);
    float *G = gaussian_rows(B, p, p, 8);
    /* pairs (2i, 2i+1) with correlation rho: v = rho u + sqrt(1 - rho^2) w */
    for (int b = 1; b < B; b += 2)
        for (size_t i = 0; i < p; i++)
            G[b * p + i] = (float)(rho * G[(b - 1) * p + i] + sqrt(1 - rho * rho) * G[b * p + i]);
    float *out = malloc((size_t)B * k * sizeof *out);
    proj_apply(&pr, G, B, p, out);
    double sum_z = 0, sum_q = 0;
    int n = 0;
    for (int a = 0; a < B; a++)
        for (int b = a; b <= a + (a % 2 == 0); b++) { /* every norm, and each pair (2i, 2i+1) */
            double uv = dot(G + a * p, G + b * p, p);
            double nu = sqrt(dot(G + a * p, G + a * p, p)), nv = sqrt(dot(G + b * p, G + b * p, p));
            double r = uv / (nu * nv);
            double est = dot(out + (size_t)a * k, out + (size_t)b * k, k) * (double)p / k;
            double z = (est - uv) / (nu * nv), sd = sqrt((1 + r * r) / k);
            cr_expect(fabs(z) < 5 * sd, "rows (%d,%d): <u,v> %g, estimate %g (%.1f sd)", a, b, uv,
                      est, z / sd);
            sum_z += z / sd, sum_q += (z / sd) * (z / sd), n++;
        }
    /* 96 estimates: no bias (mean of z/sd ~ N(0, 1/96): 5 sd = 0.51), and the spread the theory
     * says (mean of (z/sd)^2 ~ 1 with sd ~ sqrt(2/96) = 0.14): correlated or repeated entries of R
     * would inflate it k-fold, a wrong scale would shift the mean. */
    fprintf(stderr, "project: JL over %d estimates: mean z/sd %.3f, mean (z/sd)^2 %.3f\n", n,
            sum_z / n, sum_q / n);
    cr_expect(fabs(sum_z / n) < 0.51, "bias %g sd", sum_z / n);
    cr_expect(sum_q / n > 0.5 && sum_q / n < 1.7, "mean squared error %g of the theory's",
              sum_q / n);
    free(G), free(out);
    proj_free(&pr);
}

Test(project, entries_are_balanced_signs) {
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

Test(project, keyed_by_seed_and_model) {
    const size_t p = 500;
    const int k = 2048;
    Projector a, b, c, d, e;
    proj_init(&a, PROJ_RADEMACHER, 9, 0, p, k);
    proj_init(&b, PROJ_RADEMACHER, 9, 0, p, k);
    proj_init(&c, PROJ_RADEMACHER, 9, 1, p, k);
    proj_init(&d, PROJ_RADEMACHER, 10, 0, p, k);
    proj_init(&e, PROJ_RADEMACHER, 9, 0, p, 300); /* fewer columns */
    float *ra = malloc(k * sizeof(float)), *rx = malloc(k * sizeof(float));
    double same_c = 0, same_d = 0;
    for (size_t i = 0; i < p; i++) {
        proj_row(&a, i, ra);
        proj_row(&b, i, rx);
        cr_assert(memcmp(ra, rx, k * sizeof(float)) == 0, "row %zu: same seed and model differ", i);
        proj_row(&e, i, rx);
        cr_assert(memcmp(ra, rx, 300 * sizeof(float)) == 0,
                  "row %zu: the 300-column matrix is not the first 300 columns", i);
        proj_row(&c, i, rx);
        same_c += dot(ra, rx, k);
        proj_row(&d, i, rx);
        same_d += dot(ra, rx, k);
    }
    /* another model or seed: an independent matrix, normalised inner product ~ N(0, 1/(p k)):
     * sd 1e-3, 5 sd */
    double n = (double)p * k;
    cr_expect(fabs(same_c / n) < 5e-3, "model 0 vs 1: normalised inner product %g", same_c / n);
    cr_expect(fabs(same_d / n) < 5e-3, "seed 9 vs 10: normalised inner product %g", same_d / n);
    free(ra), free(rx);
    proj_free(&a), proj_free(&b), proj_free(&c), proj_free(&d), proj_free(&e);
}

Test(project, names) {
    ProjKind kind;
    cr_assert(proj_kind_parse("rademacher", &kind) && kind == PROJ_RADEMACHER);
    cr_assert(!proj_kind_parse("gaussian", &kind));
    cr_assert_str_eq(proj_kind_name(PROJ_RADEMACHER), "rademacher");
}
