/* test_rng.c: the counter-based RNG (src/core/rng.c): Philox known answers, determinism, that a
 * draw depends only on (seed, stream, index) (chunked and multi-threaded fills equal one fill), and
 * the statistics of uniforms, normals and bounded integers. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/rng.h"

/* Known-answer vectors of Philox4x32-10 from Random123's kat_vectors. */
Test(rng, philox_known_answers) {
    RngBlock b = rng_block(0, 0, 0);
    uint32_t want0[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(b.v[i], want0[i], "zero vector word %d", i);
    /* key {a4093822, 299f31d0}, counter {243f6a88, 85a308d3, 13198a2e, 03707344} */
    b = rng_block(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull);
    uint32_t want1[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(b.v[i], want1[i], "pi vector word %d", i);
}

Test(rng, word_mapping) {
    RngBlock b = rng_block(7, 9, 3);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(rng_u32(7, 9, 12 + (uint64_t)i), b.v[i]);
    cr_assert_eq(rng_u64(7, 9, 6), (uint64_t)b.v[0] | ((uint64_t)b.v[1] << 32));
    cr_assert_eq(rng_u64(7, 9, 7), (uint64_t)b.v[2] | ((uint64_t)b.v[3] << 32));
}

Test(rng, determinism_and_keys) {
    cr_assert_eq(rng_u32(1, 2, 3), rng_u32(1, 2, 3));
    cr_assert_eq(rng_normal(1, 2, 3), rng_normal(1, 2, 3));
    /* seed, stream and index each change the draw */
    cr_assert_neq(rng_u64(1, 2, 3), rng_u64(2, 2, 3));
    cr_assert_neq(rng_u64(1, 2, 3), rng_u64(1, 3, 3));
    cr_assert_neq(rng_u64(1, 2, 3), rng_u64(1, 2, 4));
    /* high words matter too */
    cr_assert_neq(rng_u64(1, 2, 3), rng_u64(1 | (1ull << 40), 2, 3));
    cr_assert_neq(rng_u64(1, 2, 3), rng_u64(1, 2 | (1ull << 40), 3));
    cr_assert_neq(rng_u64(1, 2, 3), rng_u64(1, 2, 3 | (1ull << 40)));
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

Test(rng, stream_ids) {
    cr_assert_eq(rng_stream(3, 10, 20), rng_stream(3, 10, 20));
    cr_assert_neq(rng_stream(3, 10, 20), rng_stream(4, 10, 20));
    cr_assert_neq(rng_stream(3, 10, 20), rng_stream(3, 20, 10));
    /* (tag, a, b) over a grid: no collisions */
    enum { NA = 100, NB = 100, NT = 4 };
    uint64_t *ids = malloc(sizeof(uint64_t) * NA * NB * NT);
    size_t k = 0;
    for (uint32_t t = 0; t < NT; t++)
        for (uint64_t a = 0; a < NA; a++)
            for (uint64_t b = 0; b < NB; b++)
                ids[k++] = rng_stream(t, a, b);
    qsort(ids, k, sizeof *ids, cmp_u64);
    for (size_t i = 1; i < k; i++)
        cr_assert_neq(ids[i], ids[i - 1], "stream id collision");
    free(ids);
}

/* Element i of a fill depends only on offset + i: chunks at odd boundaries give the same floats. */
Test(rng, chunked_fill_equals_one_fill) {
    enum { N = 1001 };
    float whole[N], part[N], u_whole[N], u_part[N];
    rng_fill_normal(whole, N, 42, 5, 17);
    rng_fill_uniform(u_whole, N, 42, 5, 17);
    size_t cuts[] = {0, 1, 2, 5, 6, 333, 334, 999, N};
    for (size_t c = 0; c + 1 < sizeof cuts / sizeof *cuts; c++) {
        size_t a = cuts[c], b = cuts[c + 1];
        rng_fill_normal(part + a, b - a, 42, 5, 17 + a);
        rng_fill_uniform(u_part + a, b - a, 42, 5, 17 + a);
    }
    cr_assert(memcmp(whole, part, sizeof whole) == 0, "chunked normal fill differs");
    cr_assert(memcmp(u_whole, u_part, sizeof u_whole) == 0, "chunked uniform fill differs");
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(whole[i], rng_normal(42, 5, 17 + i));
        cr_assert_eq(u_whole[i], rng_uniform(42, 5, 17 + i));
    }
}

/* The same fill split over 1..4 OpenMP threads with uneven chunks equals the serial fill. */
Test(rng, thread_count_independence) {
    enum { N = 100003 };
    float *ref = malloc(sizeof(float) * N), *par = malloc(sizeof(float) * N);
    rng_fill_normal(ref, N, 2024, 77, 3);
    for (int threads = 1; threads <= 4; threads++) {
        memset(par, 0, sizeof(float) * N);
        int chunks = 7 * threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
#endif
        for (int c = 0; c < chunks; c++) {
            size_t a = (size_t)N * (size_t)c / (size_t)chunks;
            size_t b = (size_t)N * (size_t)(c + 1) / (size_t)chunks;
            rng_fill_normal(par + a, b - a, 2024, 77, 3 + a);
        }
        cr_assert(memcmp(ref, par, sizeof(float) * N) == 0, "fill with %d threads differs",
                  threads);
    }
    free(ref);
    free(par);
}

/* Moments of 1e6 draws within 5 standard errors (a false alarm about once in 1.7 million runs). */
Test(rng, normal_statistics) {
    enum { N = 1000000 };
    float *z = malloc(sizeof(float) * N);
    rng_fill_normal(z, N, 123, rng_stream(RNG_TAG_TEST, 1, 2), 0);
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0, maxabs = 0;
    for (size_t i = 0; i < N; i++) {
        double x = z[i];
        s1 += x;
        s2 += x * x;
        s3 += x * x * x;
        s4 += x * x * x * x;
        if (fabs(x) > maxabs) maxabs = fabs(x);
    }
    double mean = s1 / N, var = s2 / N - mean * mean;
    /* SE of the mean 1/sqrt(N); of the variance sqrt(2/N); skewness sqrt(6/N); 4th moment
     * sqrt(96/N) */
    cr_assert(fabs(mean) < 5 / sqrt(N), "mean %g", mean);
    cr_assert(fabs(var - 1) < 5 * sqrt(2.0 / N), "variance %g", var);
    cr_assert(fabs(s3 / N) < 5 * sqrt(15.0 / N), "third moment %g", s3 / N);
    cr_assert(fabs(s4 / N - 3) < 5 * sqrt(96.0 / N), "fourth moment %g", s4 / N);
    cr_assert(maxabs < 6.5, "max |z| = %g in 1e6 draws", maxabs);
    /* Neighbours (the cos/sin pair of one block) are uncorrelated. */
    double c = 0;
    for (size_t i = 0; i + 1 < N; i += 2)
        c += (double)z[i] * z[i + 1];
    cr_assert(fabs(c / (N / 2)) < 5 / sqrt(N / 2), "pair correlation %g", c / (N / 2));
    free(z);
}

Test(rng, uniform_statistics_and_ranges) {
    enum { N = 1000000 };
    float *u = malloc(sizeof(float) * N);
    rng_fill_uniform(u, N, 9, 4, 0);
    double s1 = 0, s2 = 0;
    for (size_t i = 0; i < N; i++) {
        cr_assert(u[i] >= 0.0f && u[i] < 1.0f);
        s1 += u[i];
        s2 += (double)u[i] * u[i];
    }
    double mean = s1 / N, var = s2 / N - mean * mean;
    cr_assert(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / N), "mean %g", mean);
    cr_assert(fabs(var - 1.0 / 12) < 5 * sqrt(1.0 / 180 / N), "variance %g", var);
    for (uint64_t i = 0; i < 10000; i++) {
        float p = rng_uniform_pos(9, 4, i);
        cr_assert(p > 0.0f && p <= 1.0f);
        cr_assert_eq(p, rng_uniform(9, 4, i) + 0x1.0p-24f, "(0,1] is [0,1) shifted by 2^-24");
        double d = rng_uniform_double(9, 4, i);
        cr_assert(d >= 0.0 && d < 1.0);
    }
    free(u);
}

Test(rng, randint_unbiased) {
    /* chi-square over 10 buckets, 1e6 draws: 9 degrees of freedom, 99.999% quantile 37.3 */
    enum { N = 1000000, K = 10 };
    long count[K] = {0};
    for (uint64_t i = 0; i < N; i++) {
        uint32_t r = rng_randint(5, 6, i, K);
        cr_assert(r < K);
        count[r]++;
    }
    double chi2 = 0, e = (double)N / K;
    for (int k = 0; k < K; k++)
        chi2 += (count[k] - e) * (count[k] - e) / e;
    cr_assert(chi2 < 37.3, "chi-square %g", chi2);
    /* n = 1 and n = 2^32 - 1 (the largest): in range, mean near (n-1)/2 */
    cr_assert_eq(rng_randint(1, 2, 3, 1), 0u);
    double mean = 0;
    uint32_t big = 0xffffffffu;
    for (uint64_t i = 0; i < 100000; i++)
        mean += rng_randint(1, 2, i, big);
    mean /= 100000;
    double sd = big / sqrt(12.0) / sqrt(100000.0);
    cr_assert(fabs(mean - (big - 1) / 2.0) < 5 * sd, "mean %g", mean);
    /* a function of its arguments only */
    cr_assert_eq(rng_randint(5, 6, 77, 1000), rng_randint(5, 6, 77, 1000));
}

Test(rng, permutation) {
    enum { N = 1000 };
    uint32_t p[N], q[N];
    int seen[N] = {0};
    rng_permutation(p, N, 11, 12);
    rng_permutation(q, N, 11, 12);
    cr_assert(memcmp(p, q, sizeof p) == 0, "not deterministic");
    int fixed = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(p[i] < N && !seen[p[i]], "not a permutation");
        seen[p[i]] = 1;
        fixed += p[i] == (uint32_t)i;
    }
    cr_assert(fixed < 10, "%d fixed points (expected about 1)", fixed);
}
