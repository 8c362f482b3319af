/* test_nn_ops.c: the ops of src/nn (nn.h) against independent references.
 *  - forwards against naive double-precision loops (conv, groupnorm, linear, attention, the
 *    elementwise ops), the embedding lookup and its backward against a naive loop,
 *    timestep_embedding against hand-computed values, AdamW against steps
 *    computed by hand in double;
 *  - every backward against central finite differences of loss = sum(out * r) for a fixed random
 *    r (forward in float, loss accumulated in double), for input and parameter gradients;
 *  - per-example mode: slab b equals the B=1 backward of example b, and the slabs sum to the
 *    batch-summed gradient;
 *  - thread-count independence: summed-mode conv/attention/groupnorm/linear/embedding results are
 *    bitwise equal with 1 and 2 OpenMP threads, at a batch whose examples share slots in groups.
 * Set JTRAK_TEST_VERBOSE=1 to print the measured errors. */
#include "core/linalg.h"
#include "helpers/numcheck.h"
#include "nn/nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- utilities ------------------------------------------------------------------------------ */

static void suite_init(void) {
    la_blas_single_threaded();
}

static uint64_t rng_state;
static void rng_seed(uint64_t s) {
    rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}
/* splitmix64 -> uniform in [-1, 1) */
static float urand(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rand_buf(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = urand() * scale;
    return p;
}
static float *zeros(size_t n) {
    return calloc(n ? n : 1, sizeof(float));
}

static int verbose(void) {
    const char *v = getenv("JTRAK_TEST_VERBOSE");
    return v && *v && *v != '0';
}
static void report(const char *what, NumDiff d) {
    if (verbose())
        fprintf(stderr, "  %-44s max abs %.3g  max rel %.3g\n", what, d.max_abs, d.max_rel);
}

/* A context with per-thread scratch for every thread OpenMP may use and room for B summed-mode
 * slots of `params` floats. */
static OpCtx ctx_make(size_t scratch, size_t grad_floats, size_t example_stride) {
    OpCtx c;
    c.nthreads = omp_get_max_threads() > 2 ? omp_get_max_threads() : 2;
    c.thread_floats = scratch;
    c.thread_buf = zeros((size_t)c.nthreads * scratch);
    c.grad_floats = grad_floats;
    c.grad_buf = zeros(grad_floats);
    c.example_stride = example_stride;
    return c;
}
static void ctx_free(OpCtx *c) {
    free(c->thread_buf);
    free(c->grad_buf);
}

/* ---- finite differences --------------------------------------------------------------------- */

/* The op under test: fwd(st) recomputes `out` (nout floats) from the current inputs. */
typedef struct {
    void (*fwd)(void *st);
    void *st;
    const float *out;
    size_t nout;
    const float *r; /* (nout) fixed random weights of the loss */
} FdProblem;

static double fd_loss(const FdProblem *p) {
    p->fwd(p->st);
    double L = 0.0;
    for (size_t i = 0; i < p->nout; i++)
        L += (double)p->out[i] * (double)p->r[i];
    return L;
}

/* Central differences of the loss with respect to x[0..n) (restored afterwards); the step is
 * measured after rounding x +- h to float. */
static double *fd_gradient(const FdProblem *p, float *x, size_t n, float h) {
    double *g = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        const float x0 = x[i], xp = x0 + h, xm = x0 - h;
        x[i] = xp;
        double lp = fd_loss(p);
        x[i] = xm;
        double lm = fd_loss(p);
        x[i] = x0;
        g[i] = (lp - lm) / ((double)xp - (double)xm);
    }
    p->fwd(p->st); /* leave `out` as the unperturbed forward */
    return g;
}

static NumDiff fd_expect(const char *what, const FdProblem *p, float *x, const float *analytic,
                         size_t n, float h, double atol, double rtol) {
    double *fd = fd_gradient(p, x, n, h);
    double *an = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        an[i] = analytic[i];
    NumDiff d = expect_close_d(what, an, fd, n, atol, rtol);
    report(what, d);
    free(fd);
    free(an);
    return d;
}

/* Gradient-check tolerances. With inputs, weights and r in [-1, 1], h = 1e-2 and a float
 * forward, the finite difference carries (a) rounding: a few float ulps of the outputs that the
 * perturbation changes, divided by 2h, about 1e-5..1e-4 absolute, and (b) truncation, h^2/6 times a
 * third derivative, about 1e-5 relative for the smooth ops here. Measured: at most 8e-5 absolute
 * over every check in this file. 5e-4 absolute + 1e-3 relative keeps a 6x margin, while a wrong
 * index, sign, scale or missing term gives errors of O(0.1) or more, and a 1% error in one
 * gradient entry of size >= 0.1 already fails (see conv_fd_detects_wrong_gradient). */
#define FD_H 1e-2f
#define FD_ATOL 5e-4
#define FD_RTOL 1e-3

/* ---- conv2d --------------------------------------------------------------------------------- */

typedef struct {
    Conv2dDims d;
    OpCtx c;
    float *in, *w, *bias, *out;
} ConvState;

static void conv_fwd(void *s) {
    ConvState *st = s;
    conv2d_forward(st->out, st->in, st->w, st->bias, &st->d, &st->c);
}

/* Naive direct convolution in double over an explicitly zero-padded copy of the input. */
static void conv_naive(double *out, const float *in, const float *w, const float *bias,
                       const Conv2dDims *d) {
    int pt, pb;
    if (d->pad == CONV_PAD_SAME) {
        pt = pb = (d->k - 1) / 2;
    } else {
        pt = 0;
        pb = 1;
    }
    const int Hp = d->H + pt + pb, Wp = d->W + pt + pb;
    const int Ho = (Hp - d->k) / d->stride + 1, Wo = (Wp - d->k) / d->stride + 1;
    double *padded = calloc((size_t)d->cin * Hp * Wp, sizeof(double));
    for (int b = 0; b < d->B; b++) {
        memset(padded, 0, (size_t)d->cin * Hp * Wp * sizeof(double));
        for (int c = 0; c < d->cin; c++)
            for (int y = 0; y < d->H; y++)
                for (int x = 0; x < d->W; x++)
                    padded[((size_t)c * Hp + y + pt) * Wp + x + pt] =
                        in[(((size_t)b * d->cin + c) * d->H + y) * d->W + x];
        for (int o = 0; o < d->cout; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int c = 0; c < d->cin; c++)
                        for (int i = 0; i < d->k; i++)
                            for (int j = 0; j < d->k; j++)
                                acc += (double)w[(((size_t)o * d->cin + c) * d->k + i) * d->k + j] *
                                       padded[((size_t)c * Hp + oy * d->stride + i) * Wp +
                                              ox * d->stride + j];
                    out[(((size_t)b * d->cout + o) * Ho + oy) * Wo + ox] = acc;
                }
    }
    free(padded);
}

static ConvState conv_setup(Conv2dDims d, int with_bias, uint64_t seed) {
    rng_seed(seed);
    ConvState st;
    st.d = d;
    size_t nin = (size_t)d.B * d.cin * d.H * d.W, nw = (size_t)d.cout * d.cin * d.k * d.k;
    size_t nout = (size_t)d.B * d.cout * conv2d_out_h(&d) * conv2d_out_w(&d);
    st.in = rand_buf(nin, 1.0f);
    st.w = rand_buf(nw, 1.0f);
    st.bias = with_bias ? rand_buf(d.cout, 1.0f) : NULL;
    st.out = zeros(nout);
    st.c = ctx_make(conv2d_scratch_floats(&d), (size_t)d.B * (nw + d.cout), 0);
    return st;
}
static void conv_teardown(ConvState *st) {
    free(st->in);
    free(st->w);
    free(st->bias);
    free(st->out);
    ctx_free(&st->c);
}

Test(nn_conv, out_size) {
    Conv2dDims d = {1, 1, 1, 8, 7, 3, 1, CONV_PAD_SAME};
    cr_expect_eq(conv2d_out_h(&d), 8);
    cr_expect_eq(conv2d_out_w(&d), 7);
    d.stride = 2; /* (8 + 2 - 3)/2 + 1 = 4, (7 + 2 - 3)/2 + 1 = 4 */
    cr_expect_eq(conv2d_out_h(&d), 4);
    cr_expect_eq(conv2d_out_w(&d), 4);
    d.pad = CONV_PAD_RB; /* (8 + 1 - 3)/2 + 1 = 4, (7 + 1 - 3)/2 + 1 = 3 */
    cr_expect_eq(conv2d_out_h(&d), 4);
    cr_expect_eq(conv2d_out_w(&d), 3);
    Conv2dDims one = {1, 1, 1, 5, 6, 1, 1, CONV_PAD_SAME};
    cr_expect_eq(conv2d_out_h(&one), 5);
    cr_expect_eq(conv2d_scratch_floats(&one), 0); /* 1x1 stride 1: no im2col */
}

Test(nn_conv, forward_matches_naive, .init = suite_init) {
    const Conv2dDims cases[] = {
        {2, 3, 5, 6, 6, 3, 1, CONV_PAD_SAME},    {2, 3, 5, 5, 7, 3, 1, CONV_PAD_SAME},
        {2, 4, 3, 6, 5, 1, 1, CONV_PAD_SAME},    {2, 3, 4, 8, 8, 3, 2, CONV_PAD_SAME},
        {2, 3, 4, 7, 9, 3, 2, CONV_PAD_SAME},    {2, 3, 4, 8, 8, 3, 2, CONV_PAD_RB},
        {2, 3, 4, 7, 9, 3, 2, CONV_PAD_RB},      {2, 3, 4, 7, 6, 1, 2, CONV_PAD_SAME},
        {3, 16, 8, 12, 12, 3, 1, CONV_PAD_SAME},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            ConvState st = conv_setup(cases[k], with_bias, 100 + k);
            size_t nout = (size_t)st.d.B * st.d.cout * conv2d_out_h(&st.d) * conv2d_out_w(&st.d);
            double *want = malloc(nout * sizeof(double));
            conv_naive(want, st.in, st.w, st.bias, &st.d);
            conv_fwd(&st);
            double *got = malloc(nout * sizeof(double));
            for (size_t i = 0; i < nout; i++)
                got[i] = st.out[i];
            char what[96];
            snprintf(what, sizeof what, "conv fwd case %zu k%d s%d pad%d bias%d", k, st.d.k,
                     st.d.stride, st.d.pad, with_bias);
            /* float GEMM vs double: K = 9*cin (<= 144) products of O(1) values summed in float,
             * partial sums up to ~10 (ulp 1e-6): a random walk of ~sqrt(K) half-ulps, about 5e-6
             * at K = 144 (measured 4.2e-6), hence 2e-7 * K absolute */
            const double K = (double)st.d.cin * st.d.k * st.d.k;
            report(what, expect_close_d(what, got, want, nout, 2e-7 * K, 1e-5));
            free(want);
            free(got);
            conv_teardown(&st);
        }
    }
}

/* FD check of din, dw, dbias for one conv configuration. */
static void conv_grad_case(Conv2dDims d, int with_bias, uint64_t seed, const char *name) {
    ConvState st = conv_setup(d, with_bias, seed);
    size_t nin = (size_t)d.B * d.cin * d.H * d.W, nw = (size_t)d.cout * d.cin * d.k * d.k;
    size_t nout = (size_t)d.B * d.cout * conv2d_out_h(&d) * conv2d_out_w(&d);
    float *r = rand_buf(nout, 1.0f);
    float *din = zeros(nin), *dw = zeros(nw), *db = with_bias ? zeros(d.cout) : NULL;
    conv_fwd(&st);
    conv2d_backward(din, dw, db, r, st.in, st.w, &st.d, &st.c);
    FdProblem p = {conv_fwd, &st, st.out, nout, r};
    char what[128];
    snprintf(what, sizeof what, "%s din", name);
    fd_expect(what, &p, st.in, din, nin, FD_H, FD_ATOL, FD_RTOL);
    snprintf(what, sizeof what, "%s dw", name);
    fd_expect(what, &p, st.w, dw, nw, FD_H, FD_ATOL, FD_RTOL);
    if (with_bias) {
        snprintf(what, sizeof what, "%s dbias", name);
        fd_expect(what, &p, st.bias, db, d.cout, FD_H, FD_ATOL, FD_RTOL);
    }
    free(r);
    free(din);
    free(dw);
    free(db);
    conv_teardown(&st);
}

Test(nn_conv, grad_3x3_s1, .init = suite_init) {
    conv_grad_case((Conv2dDims){2, 4, 5, 6, 6, 3, 1, CONV_PAD_SAME}, 1, 1, "conv3x3 s1 6x6");
    conv_grad_case((Conv2dDims){2, 3, 4, 5, 7, 3, 1, CONV_PAD_SAME}, 0, 2, "conv3x3 s1 5x7 nobias");
}
Test(nn_conv, grad_1x1, .init = suite_init) {
    conv_grad_case((Conv2dDims){2, 6, 4, 5, 6, 1, 1, CONV_PAD_SAME}, 1, 3, "conv1x1 s1 5x6");
    conv_grad_case((Conv2dDims){2, 4, 3, 7, 5, 1, 2, CONV_PAD_SAME}, 1, 4, "conv1x1 s2 7x5");
}
Test(nn_conv, grad_3x3_s2_same, .init = suite_init) {
    conv_grad_case((Conv2dDims){2, 4, 4, 8, 8, 3, 2, CONV_PAD_SAME}, 1, 5, "conv3x3 s2 same 8x8");
    conv_grad_case((Conv2dDims){2, 4, 4, 7, 5, 3, 2, CONV_PAD_SAME}, 1, 6, "conv3x3 s2 same 7x5");
}
Test(nn_conv, grad_3x3_s2_rb, .init = suite_init) {
    conv_grad_case((Conv2dDims){2, 4, 4, 8, 8, 3, 2, CONV_PAD_RB}, 1, 7, "conv3x3 s2 rb 8x8");
    conv_grad_case((Conv2dDims){2, 4, 4, 7, 5, 3, 2, CONV_PAD_RB}, 1, 8, "conv3x3 s2 rb 7x5");
}

/* The gradient check is sensitive: a 1% error in one weight-gradient entry, or a gradient of the
 * transposed kernel, is far outside FD_ATOL/FD_RTOL. */
Test(nn_conv, fd_detects_wrong_gradient, .init = suite_init) {
    Conv2dDims d = {2, 3, 4, 6, 6, 3, 1, CONV_PAD_SAME};
    ConvState st = conv_setup(d, 1, 9);
    size_t nw = (size_t)d.cout * d.cin * 9, nout = (size_t)d.B * d.cout * 36;
    float *r = rand_buf(nout, 1.0f), *dw = zeros(nw), *db = zeros(d.cout);
    conv_fwd(&st);
    conv2d_backward(NULL, dw, db, r, st.in, st.w, &st.d, &st.c);
    FdProblem p = {conv_fwd, &st, st.out, nout, r};
    double *fd = fd_gradient(&p, st.w, nw, FD_H);
    double worst_ok = 0, off_1pct = 0, transposed = 0;
    size_t big = 0; /* the largest gradient entry */
    for (size_t i = 0; i < nw; i++) {
        if (fabs(fd[i]) > fabs(fd[big])) big = i;
        double tol = FD_ATOL + FD_RTOL * fabs(fd[i]);
        worst_ok = fmax(worst_ok, fabs(dw[i] - fd[i]) / tol);
        size_t oc = i / 9, kk = i % 9, ti = oc * 9 + (8 - kk); /* flipped kernel */
        transposed = fmax(transposed, fabs(dw[ti] - fd[i]) / tol);
    }
    off_1pct = fabs(dw[big] * 1.01 - fd[big]) / (FD_ATOL + FD_RTOL * fabs(fd[big]));
    cr_expect_lt(worst_ok, 1.0, "correct gradient uses %.3g of the tolerance", worst_ok);
    cr_expect_gt(off_1pct, 1.0, "1%% error uses only %.3g of the tolerance", off_1pct);
    cr_expect_gt(transposed, 10.0, "flipped kernel uses only %.3g of the tolerance", transposed);
    free(fd);
    free(r);
    free(dw);
    free(db);
    conv_teardown(&st);
}

/* ---- group norm ----------------------------------------------------------------------------- */

typedef struct {
    GroupNormDims d;
    OpCtx c;
    float *in, *gamma, *beta, *out, *mean, *rstd;
} GnState;

static void gn_fwd(void *s) {
    GnState *st = s;
    groupnorm_forward(st->out, st->mean, st->rstd, st->in, st->gamma, st->beta, &st->d, &st->c);
}
static GnState gn_setup(GroupNormDims d, uint64_t seed) {
    rng_seed(seed);
    GnState st;
    st.d = d;
    size_t n = (size_t)d.B * d.C * d.HW;
    st.in = rand_buf(n, 1.0f);
    for (size_t i = 0; i < n; i++)
        st.in[i] += 0.5f; /* a nonzero mean */
    st.gamma = rand_buf(d.C, 1.0f);
    st.beta = rand_buf(d.C, 1.0f);
    st.out = zeros(n);
    st.mean = zeros((size_t)d.B * d.G);
    st.rstd = zeros((size_t)d.B * d.G);
    st.c = ctx_make(0, (size_t)d.B * 2 * d.C, 0);
    return st;
}
static void gn_teardown(GnState *st) {
    free(st->in);
    free(st->gamma);
    free(st->beta);
    free(st->out);
    free(st->mean);
    free(st->rstd);
    ctx_free(&st->c);
}

Test(nn_groupnorm, forward_matches_naive, .init = suite_init) {
    const GroupNormDims cases[] = {{2, 8, 30, 2, 1e-5f}, {2, 6, 25, 6, 1e-6f}, {3, 4, 7, 1, 1e-5f}};
    for (size_t k = 0; k < 3; k++) {
        GnState st = gn_setup(cases[k], 20 + k);
        const GroupNormDims *d = &st.d;
        gn_fwd(&st);
        size_t n = (size_t)d->B * d->C * d->HW;
        float *want = zeros(n), *wmean = zeros((size_t)d->B * d->G),
              *wrstd = zeros((size_t)d->B * d->G);
        int cpg = d->C / d->G;
        for (int b = 0; b < d->B; b++)
            for (int g = 0; g < d->G; g++) {
                double s = 0, s2 = 0;
                int cnt = cpg * d->HW;
                for (int c = g * cpg; c < (g + 1) * cpg; c++)
                    for (int p = 0; p < d->HW; p++) {
                        double v = st.in[((size_t)b * d->C + c) * d->HW + p];
                        s += v;
                        s2 += v * v;
                    }
                double mu = s / cnt, var = s2 / cnt - mu * mu;
                wmean[b * d->G + g] = (float)mu;
                wrstd[b * d->G + g] = (float)(1.0 / sqrt(var + d->eps));
                for (int c = g * cpg; c < (g + 1) * cpg; c++)
                    for (int p = 0; p < d->HW; p++) {
                        size_t i = ((size_t)b * d->C + c) * d->HW + p;
                        want[i] = (float)((st.in[i] - mu) / sqrt(var + d->eps) * st.gamma[c] +
                                          st.beta[c]);
                    }
            }
        /* both sides compute in double and round once; the naive variance formula differs by
         * cancellation of O(1e-16) relative: 1e-6 is ample for float results */
        report("groupnorm fwd out", expect_close("groupnorm fwd out", st.out, want, n, 1e-6, 1e-6));
        report("groupnorm fwd mean",
               expect_close("groupnorm fwd mean", st.mean, wmean, d->B * d->G, 1e-6, 1e-6));
        report("groupnorm fwd rstd",
               expect_close("groupnorm fwd rstd", st.rstd, wrstd, d->B * d->G, 1e-6, 1e-6));
        free(want);
        free(wmean);
        free(wrstd);
        gn_teardown(&st);
    }
}

static void gn_grad_case(GroupNormDims d, uint64_t seed, const char *name) {
    GnState st = gn_setup(d, seed);
    size_t n = (size_t)d.B * d.C * d.HW;
    float *r = rand_buf(n, 1.0f), *din = zeros(n), *dg = zeros(d.C), *dbt = zeros(d.C);
    gn_fwd(&st);
    groupnorm_backward(din, dg, dbt, r, st.in, st.mean, st.rstd, st.gamma, &st.d, &st.c);
    FdProblem p = {gn_fwd, &st, st.out, n, r};
    char what[128];
    snprintf(what, sizeof what, "%s din", name);
    fd_expect(what, &p, st.in, din, n, FD_H, FD_ATOL, FD_RTOL);
    snprintf(what, sizeof what, "%s dgamma", name);
    fd_expect(what, &p, st.gamma, dg, d.C, FD_H, FD_ATOL, FD_RTOL);
    snprintf(what, sizeof what, "%s dbeta", name);
    fd_expect(what, &p, st.beta, dbt, d.C, FD_H, FD_ATOL, FD_RTOL);
    free(r);
    free(din);
    free(dg);
    free(dbt);
    gn_teardown(&st);
}

Test(nn_groupnorm, grad_g2, .init = suite_init) {
    gn_grad_case((GroupNormDims){2, 8, 30, 2, 1e-5f}, 30, "groupnorm G=2 C=8 HW=30");
}
Test(nn_groupnorm, grad_g_eq_c, .init = suite_init) {
    gn_grad_case((GroupNormDims){2, 6, 25, 6, 1e-6f}, 31, "groupnorm G=C=6 HW=25");
}

/* silu(groupnorm(x)) as one op is the composition, bitwise: forward, din, dgamma, dbeta (summed
 * mode at a batch whose examples share slots, and per-example mode), on 1 and 2 threads. */
static void gn_silu_case(GroupNormDims d, uint64_t seed, size_t example_stride) {
    GnState st = gn_setup(d, seed);
    const size_t n = (size_t)d.B * d.C * d.HW,
                 np = example_stride ? d.B * example_stride : 2 * (size_t)d.C;
    OpCtx c = ctx_make(groupnorm_silu_scratch_floats(&d), grad_slots_floats(d.B, 2 * (size_t)d.C),
                       example_stride);
    float *dz = rand_buf(n, 1.0f), *y = zeros(n), *z_want = zeros(n), *dy = zeros(n);
    float *din_want = zeros(n), *dp_want = zeros(np);
    /* the composition */
    groupnorm_forward(y, st.mean, st.rstd, st.in, st.gamma, st.beta, &d, &c);
    silu_forward(z_want, y, n);
    silu_backward(dy, dz, y, n);
    float *dgw = dp_want, *dbw = dp_want + d.C; /* per example: slab b at + b * stride */
    groupnorm_backward(din_want, dgw, dbw, dy, st.in, st.mean, st.rstd, st.gamma, &d, &c);
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        float *z = zeros(n), *din = zeros(n), *dp = zeros(np), *mean = zeros((size_t)d.B * d.G);
        float *rstd = zeros((size_t)d.B * d.G);
        groupnorm_silu_forward(z, mean, rstd, st.in, st.gamma, st.beta, &d, &c);
        groupnorm_silu_backward(din, dp, dp + d.C, dz, st.in, mean, rstd, st.gamma, st.beta, &d,
                                &c);
        char what[96];
        snprintf(what, sizeof what, "groupnorm_silu B=%d stride %zu, %d thread(s): z", d.B,
                 example_stride, threads);
        expect_close(what, z, z_want, n, 0, 0);
        snprintf(what, sizeof what, "groupnorm_silu B=%d stride %zu, %d thread(s): din", d.B,
                 example_stride, threads);
        expect_close(what, din, din_want, n, 0, 0);
        snprintf(what, sizeof what, "groupnorm_silu B=%d stride %zu, %d thread(s): dgamma, dbeta",
                 d.B, example_stride, threads);
        expect_close(what, dp, dp_want, np, 0, 0);
        free(z), free(din), free(dp), free(mean), free(rstd);
    }
    omp_set_num_threads(2);
    free(dz), free(y), free(z_want), free(dy), free(din_want), free(dp_want);
    ctx_free(&c);
    gn_teardown(&st);
}
Test(nn_groupnorm, silu_fused_equals_composition, .init = suite_init) {
    gn_silu_case((GroupNormDims){37, 8, 30, 2, 1e-5f}, 32, 0);
    gn_silu_case((GroupNormDims){5, 6, 25, 3, 1e-6f}, 33, 2 * 6 + 3);
}

/* ---- linear --------------------------------------------------------------------------------- */

typedef struct {
    LinearDims d;
    OpCtx c;
    float *x, *w, *bias, *y;
} LinState;

static void lin_fwd(void *s) {
    LinState *st = s;
    linear_forward(st->y, st->x, st->w, st->bias, &st->d, &st->c);
}
static LinState lin_setup(LinearDims d, uint64_t seed) {
    rng_seed(seed);
    LinState st;
    st.d = d;
    st.x = rand_buf((size_t)d.B * d.in, 1.0f);
    st.w = rand_buf((size_t)d.out * d.in, 1.0f);
    st.bias = rand_buf(d.out, 1.0f);
    st.y = zeros((size_t)d.B * d.out);
    st.c = ctx_make(0, (size_t)d.B * (d.out * d.in + d.out), 0);
    return st;
}
static void lin_teardown(LinState *st) {
    free(st->x);
    free(st->w);
    free(st->bias);
    free(st->y);
    ctx_free(&st->c);
}

Test(nn_linear, forward_matches_naive, .init = suite_init) {
    LinState st = lin_setup((LinearDims){3, 7, 5}, 40);
    lin_fwd(&st);
    double want[15], got[15];
    for (int b = 0; b < 3; b++)
        for (int o = 0; o < 5; o++) {
            double acc = st.bias[o];
            for (int i = 0; i < 7; i++)
                acc += (double)st.w[o * 7 + i] * st.x[b * 7 + i];
            want[b * 5 + o] = acc;
            got[b * 5 + o] = st.y[b * 5 + o];
        }
    /* 7 float products of O(1) values: rounding well under 1e-6 */
    report("linear fwd", expect_close_d("linear fwd", got, want, 15, 1e-6, 1e-6));
    lin_teardown(&st);
}

Test(nn_linear, grad, .init = suite_init) {
    LinearDims d = {3, 7, 5};
    LinState st = lin_setup(d, 41);
    float *r = rand_buf(15, 1.0f), *dx = zeros(21), *dw = zeros(35), *db = zeros(5);
    lin_fwd(&st);
    linear_backward(dx, dw, db, r, st.x, st.w, &st.d, &st.c);
    FdProblem p = {lin_fwd, &st, st.y, 15, r};
    fd_expect("linear dx", &p, st.x, dx, 21, FD_H, FD_ATOL, FD_RTOL);
    fd_expect("linear dw", &p, st.w, dw, 35, FD_H, FD_ATOL, FD_RTOL);
    fd_expect("linear dbias", &p, st.bias, db, 5, FD_H, FD_ATOL, FD_RTOL);
    free(r);
    free(dx);
    free(dw);
    free(db);
    lin_teardown(&st);
}

/* ---- attention ------------------------------------------------------------------------------ */

typedef struct {
    AttnDims d;
    OpCtx c;
    float *x, *res, *out, *saved;
    float *prm;  /* wq bq wk bk wv bv wo bo, contiguous */
    float *p[8]; /* pointers into prm */
    size_t numel[8], nparams;
} AttnState;

static void attn_fwd(void *s) {
    AttnState *st = s;
    attention_forward(st->out, st->saved, st->x, st->res, st->p[0], st->p[1], st->p[2], st->p[3],
                      st->p[4], st->p[5], st->p[6], st->p[7], &st->d, &st->c);
}
static AttnState attn_setup(AttnDims d, uint64_t seed) {
    rng_seed(seed);
    AttnState st;
    st.d = d;
    size_t n = (size_t)d.B * d.C * d.N;
    st.x = rand_buf(n, 1.0f);
    st.res = rand_buf(n, 1.0f);
    st.out = zeros(n);
    st.saved = zeros(attention_saved_floats(&d));
    st.nparams = 0;
    for (int i = 0; i < 8; i++) {
        st.numel[i] = (i % 2) ? (size_t)d.C : (size_t)d.C * d.C;
        st.nparams += st.numel[i];
    }
    /* weights ~ U(-1,1) * 0.7: logits of O(1) so the softmax is neither flat nor one-hot */
    st.prm = rand_buf(st.nparams, 0.7f);
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        st.p[i] = st.prm + off;
        off += st.numel[i];
    }
    st.c = ctx_make(attention_scratch_floats(&d), (size_t)d.B * st.nparams, 0);
    return st;
}
static void attn_teardown(AttnState *st) {
    free(st->x);
    free(st->res);
    free(st->out);
    free(st->saved);
    free(st->prm);
    ctx_free(&st->c);
}

/* Token by token, in double, straight from unet2d.md section 4.2. */
static void attn_naive(double *out, const AttnState *st) {
    const int C = st->d.C, N = st->d.N, H = st->d.heads, dh = C / H;
    const float *wq = st->p[0], *bq = st->p[1], *wk = st->p[2], *bk = st->p[3], *wv = st->p[4],
                *bv = st->p[5], *wo = st->p[6], *bo = st->p[7];
    double *q = malloc(sizeof(double) * N * C), *k = malloc(sizeof(double) * N * C),
           *v = malloc(sizeof(double) * N * C), *o = malloc(sizeof(double) * N * C),
           *s = malloc(sizeof(double) * N);
    for (int b = 0; b < st->d.B; b++) {
        const float *x = st->x + (size_t)b * C * N, *r = st->res + (size_t)b * C * N;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < C; j++) {
                double aq = bq[j], ak = bk[j], av = bv[j];
                for (int c = 0; c < C; c++) {
                    double xv = x[(size_t)c * N + n]; /* X[n][c] = x[c][n] */
                    aq += wq[j * C + c] * xv;
                    ak += wk[j * C + c] * xv;
                    av += wv[j * C + c] * xv;
                }
                q[n * C + j] = aq;
                k[n * C + j] = ak;
                v[n * C + j] = av;
            }
        for (int h = 0; h < H; h++)
            for (int i = 0; i < N; i++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < N; j++) {
                    double a = 0;
                    for (int t = h * dh; t < (h + 1) * dh; t++)
                        a += q[i * C + t] * k[j * C + t];
                    s[j] = a / sqrt((double)dh);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < N; j++)
                    sum += (s[j] = exp(s[j] - mx));
                for (int t = h * dh; t < (h + 1) * dh; t++) {
                    double a = 0;
                    for (int j = 0; j < N; j++)
                        a += s[j] / sum * v[j * C + t];
                    o[i * C + t] = a;
                }
            }
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                double y = bo[c];
                for (int t = 0; t < C; t++)
                    y += wo[c * C + t] * o[n * C + t];
                out[(size_t)b * C * N + (size_t)c * N + n] =
                    (y + r[(size_t)c * N + n]) * st->d.scale;
            }
    }
    free(q);
    free(k);
    free(v);
    free(o);
    free(s);
}

Test(nn_attention, forward_matches_naive, .init = suite_init) {
    const AttnDims cases[] = {{2, 4, 30, 1, 1.0f}, {2, 8, 20, 2, 1.0f / 1.5f}, {1, 6, 9, 3, 0.5f}};
    for (size_t kc = 0; kc < 3; kc++) {
        AttnState st = attn_setup(cases[kc], 50 + kc);
        attn_fwd(&st);
        size_t n = (size_t)st.d.B * st.d.C * st.d.N;
        double *want = malloc(n * sizeof(double)), *got = malloc(n * sizeof(double));
        attn_naive(want, &st);
        for (size_t i = 0; i < n; i++)
            got[i] = st.out[i];
        char what[64];
        snprintf(what, sizeof what, "attention fwd C=%d heads=%d", st.d.C, st.d.heads);
        /* four chained float GEMMs over C <= 8 and N <= 30 terms plus a float softmax, on O(1)
         * values: a few 1e-7 relative; 1e-5 leaves margin and still catches any layout error */
        report(what, expect_close_d(what, got, want, n, 1e-5, 1e-5));
        free(want);
        free(got);
        attn_teardown(&st);
    }
}

static void attn_grad_case(AttnDims d, uint64_t seed, const char *name) {
    AttnState st = attn_setup(d, seed);
    size_t n = (size_t)d.B * d.C * d.N;
    float *r = rand_buf(n, 1.0f), *dx = zeros(n), *dres = zeros(n), *dprm = zeros(st.nparams);
    float *dp[8];
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        dp[i] = dprm + off;
        off += st.numel[i];
    }
    attn_fwd(&st);
    attention_backward(dx, dres, dp, r, st.x, st.saved, st.p[0], st.p[2], st.p[4], st.p[6], &st.d,
                       &st.c);
    FdProblem p = {attn_fwd, &st, st.out, n, r};
    static const char *pname[8] = {"dwq", "dbq", "dwk", "dbk", "dwv", "dbv", "dwo", "dbo"};
    char what[128];
    snprintf(what, sizeof what, "%s dx", name);
    fd_expect(what, &p, st.x, dx, n, FD_H, FD_ATOL, FD_RTOL);
    snprintf(what, sizeof what, "%s dresidual", name);
    fd_expect(what, &p, st.res, dres, n, FD_H, FD_ATOL, FD_RTOL);
    for (int i = 0; i < 8; i++) {
        snprintf(what, sizeof what, "%s %s", name, pname[i]);
        fd_expect(what, &p, st.p[i], dp[i], st.numel[i], FD_H, FD_ATOL, FD_RTOL);
    }
    free(r);
    free(dx);
    free(dres);
    free(dprm);
    attn_teardown(&st);
}

Test(nn_attention, grad_1head, .init = suite_init) {
    attn_grad_case((AttnDims){2, 4, 30, 1, 1.0f / 1.5f}, 60,
                   "attention 1 head C=4 N=30 rescale 1.5");
}
Test(nn_attention, grad_2heads, .init = suite_init) {
    attn_grad_case((AttnDims){2, 6, 20, 2, 0.5f}, 61, "attention 2 heads C=6 N=20 rescale 2");
}

/* ---- elementwise ops ------------------------------------------------------------------------ */

typedef struct {
    int B, C, H, W, Ca, Cb;
    float scale;
    size_t n;
    float *a, *b, *v, *out;
} EwState;

static void silu_fwd(void *s) {
    EwState *st = s;
    silu_forward(st->out, st->a, st->n);
}
Test(nn_elementwise, silu, .init = suite_init) {
    rng_seed(70);
    EwState st = {.n = 64};
    st.a = rand_buf(st.n, 6.0f); /* both tails and the bend of the sigmoid */
    st.a[0] = 0.0f;
    st.a[1] = -30.0f;
    st.out = zeros(st.n);
    silu_fwd(&st);
    double want[64], got[64];
    for (size_t i = 0; i < st.n; i++) {
        want[i] = st.a[i] / (1.0 + exp(-(double)st.a[i]));
        got[i] = st.out[i];
    }
    /* float expf and one division: a few ulps of O(1..6) values */
    report("silu fwd", expect_close_d("silu fwd", got, want, st.n, 1e-6, 1e-6));
    float *r = rand_buf(st.n, 1.0f), *din = zeros(st.n);
    silu_backward(din, r, st.a, st.n);
    FdProblem p = {silu_fwd, &st, st.out, st.n, r};
    fd_expect("silu din", &p, st.a, din, st.n, FD_H, FD_ATOL, FD_RTOL);
    free(st.a);
    free(st.out);
    free(r);
    free(din);
}

static void up_fwd(void *s) {
    EwState *st = s;
    upsample2x_forward(st->out, st->a, st->B, st->C, st->H, st->W);
}
Test(nn_elementwise, upsample2x, .init = suite_init) {
    rng_seed(71);
    EwState st = {.B = 2, .C = 3, .H = 3, .W = 5};
    size_t nin = (size_t)st.B * st.C * st.H * st.W, nout = 4 * nin;
    st.a = rand_buf(nin, 1.0f);
    st.out = zeros(nout);
    up_fwd(&st);
    float *want = zeros(nout);
    for (int pc = 0; pc < st.B * st.C; pc++)
        for (int y = 0; y < 2 * st.H; y++)
            for (int x = 0; x < 2 * st.W; x++)
                want[((size_t)pc * 2 * st.H + y) * 2 * st.W + x] =
                    st.a[((size_t)pc * st.H + y / 2) * st.W + x / 2];
    report("upsample fwd", expect_close("upsample fwd", st.out, want, nout, 0, 0)); /* a copy */
    float *r = rand_buf(nout, 1.0f), *din = zeros(nin);
    upsample2x_backward(din, r, st.B, st.C, st.H, st.W);
    FdProblem p = {up_fwd, &st, st.out, nout, r};
    fd_expect("upsample din", &p, st.a, din, nin, FD_H, FD_ATOL, FD_RTOL);
    free(st.a);
    free(st.out);
    free(want);
    free(r);
    free(din);
}

static void cat_fwd(void *s) {
    EwState *st = s;
    concat_forward(st->out, st->a, st->b, st->B, st->Ca, st->Cb, st->H);
}
Test(nn_elementwise, concat, .init = suite_init) {
    rng_seed(72);
    EwState st = {.B = 2, .Ca = 2, .Cb = 3, .H = 5 /* HW */};
    size_t na = (size_t)st.B * st.Ca * st.H, nb = (size_t)st.B * st.Cb * st.H, nout = na + nb;
    st.a = rand_buf(na, 1.0f);
    st.b = rand_buf(nb, 1.0f);
    st.out = zeros(nout);
    cat_fwd(&st);
    float *want = zeros(nout);
    for (int s = 0; s < st.B; s++)
        for (int c = 0; c < st.Ca + st.Cb; c++)
            for (int p = 0; p < st.H; p++)
                want[((size_t)s * (st.Ca + st.Cb) + c) * st.H + p] =
                    c < st.Ca ? st.a[((size_t)s * st.Ca + c) * st.H + p]
                              : st.b[((size_t)s * st.Cb + c - st.Ca) * st.H + p];
    report("concat fwd", expect_close("concat fwd", st.out, want, nout, 0, 0)); /* a copy */
    float *r = rand_buf(nout, 1.0f), *da = zeros(na), *db = zeros(nb);
    concat_backward(da, db, r, st.B, st.Ca, st.Cb, st.H);
    FdProblem p = {cat_fwd, &st, st.out, nout, r};
    fd_expect("concat da", &p, st.a, da, na, FD_H, FD_ATOL, FD_RTOL);
    fd_expect("concat db", &p, st.b, db, nb, FD_H, FD_ATOL, FD_RTOL);
    free(st.a);
    free(st.b);
    free(st.out);
    free(want);
    free(r);
    free(da);
    free(db);
}

static void acv_fwd(void *s) {
    EwState *st = s;
    add_channel_vec_forward(st->out, st->a, st->v, st->B, st->C, st->H);
}
Test(nn_elementwise, add_channel_vec, .init = suite_init) {
    rng_seed(73);
    EwState st = {.B = 2, .C = 3, .H = 7 /* HW */};
    size_t n = (size_t)st.B * st.C * st.H;
    st.a = rand_buf(n, 1.0f);
    st.v = rand_buf((size_t)st.B * st.C, 1.0f);
    st.out = zeros(n);
    acv_fwd(&st);
    float *want = zeros(n);
    for (size_t i = 0; i < n; i++)
        want[i] = st.a[i] + st.v[i / st.H];
    report("add_channel_vec fwd",
           expect_close("add_channel_vec fwd", st.out, want, n, 0, 0)); /* one float add */
    float *r = rand_buf(n, 1.0f), *din = zeros(n), *dv = zeros((size_t)st.B * st.C);
    add_channel_vec_backward(din, dv, r, st.B, st.C, st.H);
    FdProblem p = {acv_fwd, &st, st.out, n, r};
    fd_expect("add_channel_vec din", &p, st.a, din, n, FD_H, FD_ATOL, FD_RTOL);
    fd_expect("add_channel_vec dv", &p, st.v, dv, (size_t)st.B * st.C, FD_H, FD_ATOL, FD_RTOL);
    free(st.a);
    free(st.v);
    free(st.out);
    free(want);
    free(r);
    free(din);
    free(dv);
}

static void adds_fwd(void *s) {
    EwState *st = s;
    add_scaled_forward(st->out, st->a, st->b, st->scale, st->n);
}
Test(nn_elementwise, add_scaled, .init = suite_init) {
    rng_seed(74);
    EwState st = {.n = 40, .scale = 0.7f};
    st.a = rand_buf(st.n, 1.0f);
    st.b = rand_buf(st.n, 1.0f);
    st.out = zeros(st.n);
    adds_fwd(&st);
    float want[40];
    for (size_t i = 0; i < st.n; i++)
        want[i] = (st.a[i] + st.b[i]) * st.scale;
    report("add_scaled fwd",
           expect_close("add_scaled fwd", st.out, want, st.n, 0, 0)); /* same float ops */
    float *r = rand_buf(st.n, 1.0f), *da = zeros(st.n), *db = zeros(st.n);
    add_scaled_backward(da, db, r, st.scale, st.n);
    FdProblem p = {adds_fwd, &st, st.out, st.n, r};
    fd_expect("add_scaled da", &p, st.a, da, st.n, FD_H, FD_ATOL, FD_RTOL);
    fd_expect("add_scaled db", &p, st.b, db, st.n, FD_H, FD_ATOL, FD_RTOL);
    free(st.a);
    free(st.b);
    free(st.out);
    free(r);
    free(da);
    free(db);
}

Test(nn_elementwise, mse, .init = suite_init) {
    const float pred[3] = {1.0f, 2.0f, 3.0f}, target[3] = {0.0f, 0.0f, 1.0f};
    double got = mse_forward(pred, target, 3), want = 3.0;       /* (1 + 4 + 4) / 3 */
    expect_close_d("mse fwd by hand", &got, &want, 1, 0, 1e-15); /* exact in double */
    rng_seed(75);
    size_t n = 50;
    float *p = rand_buf(n, 1.0f), *t = rand_buf(n, 1.0f), *dp = zeros(n);
    const float scale = 0.5f;
    mse_backward(dp, p, t, n, scale);
    /* d(scale * mse)/dp by central differences of the double loss */
    double *fd = malloc(n * sizeof(double)), *an = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        float x0 = p[i], xp = x0 + FD_H, xm = x0 - FD_H;
        p[i] = xp;
        double lp = scale * mse_forward(p, t, n);
        p[i] = xm;
        double lm = scale * mse_forward(p, t, n);
        p[i] = x0;
        fd[i] = (lp - lm) / ((double)xp - (double)xm);
        an[i] = dp[i];
    }
    /* mse is quadratic: central differences are exact up to double rounding; the analytic side
     * is float (2/n and two products): 1e-6 relative */
    report("mse dpred", expect_close_d("mse dpred", an, fd, n, 1e-7, 1e-6));
    free(p);
    free(t);
    free(dp);
    free(fd);
    free(an);
}

/* ---- timestep embedding --------------------------------------------------------------------- */

Test(nn_temb, t_zero) {
    float t[2] = {0.0f, 0.0f}, out[2 * 8], want_flip[8] = {1, 1, 1, 1, 0, 0, 0, 0},
          want_plain[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    timestep_embedding(out, t, 2, 8, 1, 0.0f);
    expect_close("temb t=0 flip", out, want_flip, 8, 0, 0); /* cos 0, sin 0: exact */
    expect_close("temb t=0 flip b1", out + 8, want_flip, 8, 0, 0);
    timestep_embedding(out, t, 2, 8, 0, 1.0f);
    expect_close("temb t=0 plain", out, want_plain, 8, 0, 0);
}

Test(nn_temb, hand_values) {
    /* dim 4, half 2, shift 0: freq = [1, exp(-ln(1e4)/2) = 0.01]; t = 10: a = [10, 0.1].
     * dim 4, shift 1: freq = [1, exp(-ln 1e4) = 1e-4]; t = 1000: a = [1000, 0.1]. */
    const double s10 = -0.5440211108893698, c10 = -0.8390715290764524;
    const double s01 = 0.09983341664682815, c01 = 0.9950041652780258;
    const double s1000 = 0.8268795405320025, c1000 = 0.5623790762907029;
    float t1 = 10.0f, t2 = 1000.0f, o4[4], o5[5];
    /* freq_0 = expf(0) = 1 makes a = t exact; the float32 exponent and expf put freq_1 within
     * ~6e-7 relative of 0.01 or 1e-4, which moves sin/cos(0.1) by < 1e-7; sinf/cosf add an ulp:
     * 1e-6 absolute */
    timestep_embedding(o4, &t1, 1, 4, 0, 0.0f);
    double g4[4] = {o4[0], o4[1], o4[2], o4[3]}, w4[4] = {s10, s01, c10, c01};
    report("temb t=10 [sin,cos]", expect_close_d("temb t=10 [sin,cos]", g4, w4, 4, 1e-6, 0));
    timestep_embedding(o5, &t1, 1, 5, 1, 0.0f); /* odd dim: [cos, sin, 0] */
    double g5[5] = {o5[0], o5[1], o5[2], o5[3], o5[4]}, w5[5] = {c10, c01, s10, s01, 0.0};
    report("temb t=10 odd flip", expect_close_d("temb t=10 odd flip", g5, w5, 5, 1e-6, 0));
    timestep_embedding(o4, &t2, 1, 4, 1, 1.0f);
    double g6[4] = {o4[0], o4[1], o4[2], o4[3]}, w6[4] = {c1000, c01, s1000, s01};
    report("temb t=1000 shift 1", expect_close_d("temb t=1000 shift 1", g6, w6, 4, 1e-6, 0));
}

Test(nn_temb, dim128_matches_double) {
    const float ts[3] = {1.0f, 500.0f, 999.0f};
    for (int shift = 0; shift < 2; shift++) {
        float out[3 * 128];
        timestep_embedding(out, ts, 3, 128, 1, (float)shift);
        double got[3 * 128], want[3 * 128];
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < 64; i++) {
                double a = ts[b] * exp(-log(10000.0) * i / (64.0 - shift));
                want[b * 128 + i] = cos(a);
                want[b * 128 + 64 + i] = sin(a);
            }
        for (int i = 0; i < 3 * 128; i++)
            got[i] = out[i];
        /* unet2d.md section 7: at t ~ 1000 a float32 argument has an ulp of 6e-5 and the float32
         * frequency is off by up to an ulp, so sin/cos are good to ~1e-4 absolute only */
        report("temb dim 128 vs double",
               expect_close_d("temb dim 128 vs double", got, want, 3 * 128, 2e-4, 0));
    }
}

/* ---- AdamW ---------------------------------------------------------------------------------- */

Test(nn_adamw, steps_by_hand) {
    const AdamWConfig cfg = {1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f};
    float p[3] = {0.5f, -1.25f, 2.0f}, m[3] = {0}, v[3] = {0};
    const float g[3][3] = {{0.1f, -0.2f, 0.0f}, {0.3f, 0.05f, -1.0f}, {-0.4f, 0.6f, 2.0f}};
    double pd[3] = {0.5, -1.25, 2.0}, md[3] = {0}, vd[3] = {0};
    const double lr = cfg.lr, b1 = cfg.beta1, b2 = cfg.beta2, eps = cfg.eps, wd = cfg.weight_decay;
    for (int step = 1; step <= 3; step++) {
        adamw_step(p, m, v, g[step - 1], 3, &cfg, step);
        for (int i = 0; i < 3; i++) {
            double gi = g[step - 1][i];
            pd[i] *= 1.0 - lr * wd;
            md[i] = b1 * md[i] + (1.0 - b1) * gi;
            vd[i] = b2 * vd[i] + (1.0 - b2) * gi * gi;
            double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
            pd[i] -= lr / bc1 * md[i] / (sqrt(vd[i]) / sqrt(bc2) + eps);
        }
        double gp[3] = {p[0], p[1], p[2]}, gm[3] = {m[0], m[1], m[2]}, gv[3] = {v[0], v[1], v[2]};
        char what[64];
        /* about ten float32 roundings of O(1) values, 6e-8 relative each: 1e-6 */
        snprintf(what, sizeof what, "adamw p step %d", step);
        report(what, expect_close_d(what, gp, pd, 3, 1e-6, 1e-6));
        snprintf(what, sizeof what, "adamw m step %d", step);
        report(what, expect_close_d(what, gm, md, 3, 1e-8, 1e-6));
        snprintf(what, sizeof what, "adamw v step %d", step);
        report(what, expect_close_d(what, gv, vd, 3, 1e-10, 1e-6));
    }
    /* step 1, no decay: the update is lr * g / (|g| + eps), i.e. -lr*sign(g) (g = 0: no move) */
    float q[3] = {1.0f, 1.0f, 1.0f}, mq[3] = {0}, vq[3] = {0};
    const AdamWConfig nodecay = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    adamw_step(q, mq, vq, g[0], 3, &nodecay, 1);
    const float want[3] = {1.0f - 1e-3f, 1.0f + 1e-3f, 1.0f};
    /* a few float roundings near 1.0 (ulp 1.2e-7) */
    expect_close("adamw first step = -lr sign(g)", q, want, 3, 3e-7, 0);
}

Test(nn_adamw, late_step_bias_correction) {
    /* at step 10000 both corrections are ~1: p moves by lr * m / (sqrt(v) + eps) */
    const AdamWConfig cfg = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    float p[1] = {0.0f}, m[1] = {0.2f}, v[1] = {0.01f}, g[1] = {0.2f};
    adamw_step(p, m, v, g, 1, &cfg, 10000);
    const double b1 = cfg.beta1, b2 = cfg.beta2, gd = g[0];
    double md = b1 * (double)0.2f + (1 - b1) * gd, vd = b2 * (double)0.01f + (1 - b2) * gd * gd;
    double bc1 = 1 - pow(b1, 10000), bc2 = 1 - pow(b2, 10000);
    double want = -(double)cfg.lr / bc1 * md / (sqrt(vd) / sqrt(bc2) + (double)cfg.eps), got = p[0];
    /* float32 evaluation of an O(1e-3) result: 1e-6 relative */
    expect_close_d("adamw step 10000", &got, &want, 1, 1e-10, 1e-6);
}

/* ---- per-example mode ----------------------------------------------------------------------- *
 * bwd(st, b0, nb, dparams, din, c) runs the op's backward on examples b0 .. b0+nb-1 with its
 * parameter gradients laid out contiguously from dparams (P floats per example) and its input
 * gradient for those examples at din. */
typedef struct {
    const char *name;
    int B;
    size_t P, scratch, din_per_example;
    void (*bwd)(void *st, int b0, int nb, float *dparams, float *din, const OpCtx *c);
    void *st;
} PeProblem;

static void per_example_check(const PeProblem *pe) {
    const int B = pe->B;
    const size_t P = pe->P, stride = P + 5, nd = pe->din_per_example; /* a gap after each slab */
    char what[128];

    OpCtx cpe = ctx_make(pe->scratch, 0, stride);
    float *slab = zeros((size_t)B * stride), *din_pe = zeros((size_t)B * nd);
    pe->bwd(pe->st, 0, B, slab, din_pe, &cpe);
    size_t gap_writes = 0;
    for (int b = 0; b < B; b++)
        for (size_t i = P; i < stride; i++)
            gap_writes += slab[(size_t)b * stride + i] != 0.0f;
    cr_expect_eq(gap_writes, 0, "%s: per-example backward wrote outside its slab", pe->name);

    for (int b = 0; b < B; b++) {
        OpCtx c1 = ctx_make(pe->scratch, P, 0);
        float *one = zeros(P), *din1 = zeros(nd);
        pe->bwd(pe->st, b, 1, one, din1, &c1);
        /* the same arithmetic on the same example; only the BLAS kernel's handling of a
         * different batch position could reorder sums: 1e-6 */
        snprintf(what, sizeof what, "%s slab %d vs B=1 backward", pe->name, b);
        report(what, expect_close(what, slab + (size_t)b * stride, one, P, 1e-6, 1e-6));
        snprintf(what, sizeof what, "%s din %d vs B=1 backward", pe->name, b);
        expect_close(what, din_pe + (size_t)b * nd, din1, nd, 1e-6, 1e-6);
        free(one);
        free(din1);
        ctx_free(&c1);
    }

    OpCtx cs = ctx_make(pe->scratch, (size_t)B * P, 0);
    float *sum = zeros(P), *din_s = zeros((size_t)B * nd), *want = zeros(P);
    pe->bwd(pe->st, 0, B, sum, din_s, &cs);
    for (size_t i = 0; i < P; i++) {
        double acc = 0.0;
        for (int b = 0; b < B; b++)
            acc += slab[(size_t)b * stride + i];
        want[i] = (float)acc;
    }
    /* the summed mode reduces the same per-example values in double: equal up to the final
     * float rounding, with 1e-6 for any reordering */
    snprintf(what, sizeof what, "%s summed vs sum of slabs", pe->name);
    report(what, expect_close(what, sum, want, P, 1e-6, 1e-6));
    snprintf(what, sizeof what, "%s din summed vs per-example", pe->name);
    expect_close(what, din_s, din_pe, (size_t)B * nd, 0, 0); /* din does not depend on the mode */

    free(slab);
    free(din_pe);
    free(sum);
    free(din_s);
    free(want);
    ctx_free(&cpe);
    ctx_free(&cs);
}

typedef struct {
    ConvState cs;
    float *r; /* (B, cout, Ho, Wo) */
} ConvPe;
static void conv_pe_bwd(void *s, int b0, int nb, float *dp, float *din, const OpCtx *c) {
    ConvPe *st = s;
    Conv2dDims d = st->cs.d;
    size_t nw = (size_t)d.cout * d.cin * d.k * d.k, in_sz = (size_t)d.cin * d.H * d.W;
    size_t out_sz = (size_t)d.cout * conv2d_out_h(&d) * conv2d_out_w(&d);
    d.B = nb;
    conv2d_backward(din, dp, dp + nw, st->r + b0 * out_sz, st->cs.in + b0 * in_sz, st->cs.w, &d, c);
}
static void conv_pe_case(Conv2dDims d, const char *name) {
    ConvPe st = {conv_setup(d, 1, 80), NULL};
    size_t out_sz = (size_t)d.cout * conv2d_out_h(&d) * conv2d_out_w(&d);
    st.r = rand_buf((size_t)d.B * out_sz, 1.0f);
    PeProblem pe = {name,
                    d.B,
                    (size_t)d.cout * d.cin * d.k * d.k + d.cout,
                    conv2d_scratch_floats(&d),
                    (size_t)d.cin * d.H * d.W,
                    conv_pe_bwd,
                    &st};
    per_example_check(&pe);
    free(st.r);
    conv_teardown(&st.cs);
}
Test(nn_per_example, conv, .init = suite_init) {
    conv_pe_case((Conv2dDims){3, 4, 5, 6, 7, 3, 1, CONV_PAD_SAME}, "conv3x3 s1");
    conv_pe_case((Conv2dDims){3, 4, 5, 6, 7, 1, 1, CONV_PAD_SAME}, "conv1x1");
    conv_pe_case((Conv2dDims){3, 4, 5, 7, 7, 3, 2, CONV_PAD_RB}, "conv3x3 s2 rb");
    /* more examples than summed-mode slots: groups of 3 accumulate in one slot */
    conv_pe_case((Conv2dDims){37, 4, 5, 6, 7, 3, 1, CONV_PAD_SAME}, "conv3x3 s1 B=37");
}

typedef struct {
    GnState gs;
    float *r;
} GnPe;
static void gn_pe_bwd(void *s, int b0, int nb, float *dp, float *din, const OpCtx *c) {
    GnPe *st = s;
    GroupNormDims d = st->gs.d;
    size_t sz = (size_t)d.C * d.HW;
    d.B = nb;
    groupnorm_backward(din, dp, dp + d.C, st->r + b0 * sz, st->gs.in + b0 * sz,
                       st->gs.mean + b0 * d.G, st->gs.rstd + b0 * d.G, st->gs.gamma, &d, c);
}
Test(nn_per_example, groupnorm, .init = suite_init) {
    GroupNormDims d = {3, 8, 20, 4, 1e-5f};
    GnPe st = {gn_setup(d, 81), NULL};
    st.r = rand_buf((size_t)d.B * d.C * d.HW, 1.0f);
    gn_fwd(&st.gs);
    PeProblem pe = {"groupnorm", d.B, 2 * (size_t)d.C, 0, (size_t)d.C * d.HW, gn_pe_bwd, &st};
    per_example_check(&pe);
    free(st.r);
    gn_teardown(&st.gs);
}

typedef struct {
    LinState ls;
    float *r;
} LinPe;
static void lin_pe_bwd(void *s, int b0, int nb, float *dp, float *din, const OpCtx *c) {
    LinPe *st = s;
    LinearDims d = st->ls.d;
    d.B = nb;
    linear_backward(din, dp, dp + (size_t)d.out * d.in, st->r + (size_t)b0 * d.out,
                    st->ls.x + (size_t)b0 * d.in, st->ls.w, &d, c);
}
Test(nn_per_example, linear, .init = suite_init) {
    LinearDims d = {4, 9, 6};
    LinPe st = {lin_setup(d, 82), NULL};
    st.r = rand_buf((size_t)d.B * d.out, 1.0f);
    PeProblem pe = {"linear", d.B, (size_t)d.out * d.in + d.out, 0, (size_t)d.in, lin_pe_bwd, &st};
    per_example_check(&pe);
    free(st.r);
    lin_teardown(&st.ls);
}

typedef struct {
    AttnState as;
    float *r, *dres;
} AttnPe;
static void attn_pe_bwd(void *s, int b0, int nb, float *dp, float *din, const OpCtx *c) {
    AttnPe *st = s;
    AttnDims d = st->as.d;
    size_t sz = (size_t)d.C * d.N;
    d.B = 1;
    size_t per = attention_saved_floats(&d);
    d.B = nb;
    float *dptr[8];
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        dptr[i] = dp + off;
        off += st->as.numel[i];
    }
    attention_backward(din, NULL, dptr, st->r + b0 * sz, st->as.x + b0 * sz,
                       st->as.saved + b0 * per, st->as.p[0], st->as.p[2], st->as.p[4], st->as.p[6],
                       &d, c);
}
Test(nn_per_example, attention, .init = suite_init) {
    AttnDims d = {3, 6, 12, 2, 0.5f};
    AttnPe st = {attn_setup(d, 83), NULL, NULL};
    st.r = rand_buf((size_t)d.B * d.C * d.N, 1.0f);
    attn_fwd(&st.as);
    PeProblem pe = {
        "attention", d.B, st.as.nparams, attention_scratch_floats(&d), (size_t)d.C * d.N,
        attn_pe_bwd, &st};
    per_example_check(&pe);
    free(st.r);
    attn_teardown(&st.as);
}

/* ---- thread-count independence -------------------------------------------------------------- */

/* run(st, res) computes the forward and the summed-mode backward and writes all of it to res. */
static void threads_check(const char *name, void (*run)(void *st, float *res), void *st, size_t n) {
    float *r1 = zeros(n), *r2 = zeros(n);
    omp_set_num_threads(1);
    run(st, r1);
    omp_set_num_threads(2);
    run(st, r2);
    /* house-style convention 7: bitwise equal */
    char what[96];
    snprintf(what, sizeof what, "%s: 2 threads vs 1", name);
    expect_close(what, r2, r1, n, 0, 0);
    free(r1);
    free(r2);
}

static void conv_threads_run(void *s, float *res) {
    ConvPe *st = s;
    const Conv2dDims *d = &st->cs.d;
    size_t nin = (size_t)d->B * d->cin * d->H * d->W, nw = (size_t)d->cout * d->cin * d->k * d->k;
    size_t nout = (size_t)d->B * d->cout * conv2d_out_h(d) * conv2d_out_w(d);
    conv_fwd(&st->cs);
    memcpy(res, st->cs.out, nout * sizeof(float));
    float *din = res + nout, *dw = din + nin, *db = dw + nw;
    conv2d_backward(din, dw, db, st->r, st->cs.in, st->cs.w, d, &st->cs.c);
}
Test(nn_threads, conv_bitwise, .init = suite_init) {
    /* B = 37 > NN_GRAD_SLOTS: examples share summed-mode slots in groups of 3, the last one
     * short; the groups must stay whole on one thread whatever the thread count. */
    const Conv2dDims cases[] = {{37, 16, 12, 12, 12, 3, 1, CONV_PAD_SAME},
                                {37, 16, 12, 12, 12, 1, 1, CONV_PAD_SAME},
                                {37, 16, 12, 12, 12, 3, 2, CONV_PAD_RB}};
    for (int k = 0; k < 3; k++) {
        Conv2dDims d = cases[k];
        ConvPe st = {conv_setup(d, 1, 90 + k), NULL};
        size_t nin = (size_t)d.B * d.cin * d.H * d.W, nw = (size_t)d.cout * d.cin * d.k * d.k;
        size_t nout = (size_t)d.B * d.cout * conv2d_out_h(&d) * conv2d_out_w(&d);
        st.r = rand_buf(nout, 1.0f);
        threads_check("conv", conv_threads_run, &st, nout + nin + nw + d.cout);
        free(st.r);
        conv_teardown(&st.cs);
    }
}

static void attn_threads_run(void *s, float *res) {
    AttnPe *st = s;
    const AttnDims *d = &st->as.d;
    size_t n = (size_t)d->B * d->C * d->N;
    attn_fwd(&st->as);
    memcpy(res, st->as.out, n * sizeof(float));
    float *dx = res + n, *dres = dx + n, *dp = dres + n, *dptr[8];
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        dptr[i] = dp + off;
        off += st->as.numel[i];
    }
    attention_backward(dx, dres, dptr, st->r, st->as.x, st->as.saved, st->as.p[0], st->as.p[2],
                       st->as.p[4], st->as.p[6], d, &st->as.c);
}
Test(nn_threads, attention_bitwise, .init = suite_init) {
    AttnDims d = {37, 16, 36, 2, 1.0f}; /* grouped slots, as in conv_bitwise */
    AttnPe st = {attn_setup(d, 95), NULL, NULL};
    size_t n = (size_t)d.B * d.C * d.N;
    st.r = rand_buf(n, 1.0f);
    threads_check("attention", attn_threads_run, &st, 3 * n + st.as.nparams);
    free(st.r);
    attn_teardown(&st.as);
}

static void gn_threads_run(void *s, float *res) {
    GnPe *st = s;
    const GroupNormDims *d = &st->gs.d;
    size_t n = (size_t)d->B * d->C * d->HW;
    gn_fwd(&st->gs);
    memcpy(res, st->gs.out, n * sizeof(float));
    groupnorm_backward(res + n, res + 2 * n, res + 2 * n + d->C, st->r, st->gs.in, st->gs.mean,
                       st->gs.rstd, st->gs.gamma, d, &st->gs.c);
}
static void lin_threads_run(void *s, float *res) {
    LinPe *st = s;
    const LinearDims *d = &st->ls.d;
    lin_fwd(&st->ls);
    size_t ny = (size_t)d->B * d->out, nx = (size_t)d->B * d->in;
    memcpy(res, st->ls.y, ny * sizeof(float));
    linear_backward(res + ny, res + ny + nx, res + ny + nx + (size_t)d->out * d->in, st->r,
                    st->ls.x, st->ls.w, d, &st->ls.c);
}
Test(nn_threads, groupnorm_linear_bitwise, .init = suite_init) {
    GroupNormDims gd = {37, 8, 49, 2, 1e-5f}; /* grouped slots, as in conv_bitwise */
    GnPe g = {gn_setup(gd, 96), NULL};
    size_t n = (size_t)gd.B * gd.C * gd.HW;
    g.r = rand_buf(n, 1.0f);
    threads_check("groupnorm", gn_threads_run, &g, 2 * n + 2 * gd.C);
    free(g.r);
    gn_teardown(&g.gs);
    LinearDims ld = {37, 33, 17};
    LinPe l = {lin_setup(ld, 97), NULL};
    l.r = rand_buf((size_t)ld.B * ld.out, 1.0f);
    threads_check("linear", lin_threads_run, &l,
                  (size_t)ld.B * (ld.out + ld.in) + (size_t)ld.out * ld.in + ld.out);
    free(l.r);
    lin_teardown(&l.ls);
}

/* ---- accumulation and contract checks ------------------------------------------------------- */

/* Backward accumulates: a second call adds the same gradient again. */
Test(nn_contract, backward_accumulates, .init = suite_init) {
    Conv2dDims d = {2, 3, 4, 6, 6, 3, 2, CONV_PAD_SAME};
    ConvState st = conv_setup(d, 1, 98);
    size_t nin = (size_t)d.B * d.cin * 36, nw = (size_t)d.cout * d.cin * 9;
    size_t nout = (size_t)d.B * d.cout * 9;
    float *r = rand_buf(nout, 1.0f), *din = zeros(nin), *dw = zeros(nw), *db = zeros(d.cout);
    conv2d_backward(din, dw, db, r, st.in, st.w, &st.d, &st.c);
    float *din2 = malloc(nin * sizeof(float)), *dw2 = malloc(nw * sizeof(float)),
          *db2 = malloc(d.cout * sizeof(float));
    for (size_t i = 0; i < nin; i++)
        din2[i] = 2 * din[i];
    for (size_t i = 0; i < nw; i++)
        dw2[i] = 2 * dw[i];
    for (int i = 0; i < d.cout; i++)
        db2[i] = 2 * db[i];
    conv2d_backward(din, dw, db, r, st.in, st.w, &st.d, &st.c);
    /* g + g is exact; the summed-mode reduction rounds g + (its double sum) once: 1 ulp */
    expect_close("conv din accumulates", din, din2, nin, 0, 2.5e-7);
    expect_close("conv dw accumulates", dw, dw2, nw, 0, 2.5e-7);
    expect_close("conv dbias accumulates", db, db2, d.cout, 0, 2.5e-7);
    free(r);
    free(din);
    free(dw);
    free(db);
    free(din2);
    free(dw2);
    free(db2);
    conv_teardown(&st);
}

/* A summed-mode backward with too small a grad_buf is a bug: CHECK aborts. */
Test(nn_contract, grad_buf_too_small_aborts, .init = suite_init, .signal = SIGABRT) {
    LinearDims d = {3, 4, 5};
    LinState st = lin_setup(d, 99);
    st.c.grad_floats = grad_slots_floats(d.B, (size_t)d.out * d.in + d.out) - 1;
    float dy[15] = {0}, dw[20] = {0}, db[5] = {0};
    linear_backward(NULL, dw, db, dy, st.x, st.w, &st.d, &st.c);
    lin_teardown(&st);
}

/* Scratch smaller than conv2d_scratch_floats is a bug too. */
Test(nn_contract, scratch_too_small_aborts, .init = suite_init, .signal = SIGABRT) {
    Conv2dDims d = {1, 2, 2, 5, 5, 3, 1, CONV_PAD_SAME};
    ConvState st = conv_setup(d, 1, 100);
    st.c.thread_floats = conv2d_scratch_floats(&d) - 1;
    conv_fwd(&st);
    conv_teardown(&st);
}

/* ---- embedding ------------------------------------------------------------------------------ */

typedef struct {
    EmbeddingDims d;
    OpCtx c;
    int *ids;
    float *w, *out;
} EmbState;

static void emb_fwd(void *s) {
    EmbState *st = s;
    embedding_forward(st->out, st->ids, st->w, &st->d);
}
/* ids cycle through a pattern with repeats (several examples share a row) and leave some rows
 * unused */
static EmbState emb_setup(EmbeddingDims d, uint64_t seed) {
    rng_seed(seed);
    EmbState st;
    st.d = d;
    st.ids = malloc((size_t)d.B * sizeof(int));
    for (int b = 0; b < d.B; b++)
        st.ids[b] = (int)((3 * (unsigned)b * (unsigned)b + 1) % (unsigned)d.K);
    st.w = rand_buf((size_t)d.K * d.T, 1.0f);
    st.out = zeros((size_t)d.B * d.T);
    st.c = ctx_make(0, grad_slots_floats(d.B, (size_t)d.K * d.T), 0);
    return st;
}
static void emb_teardown(EmbState *st) {
    free(st->ids);
    free(st->w);
    free(st->out);
    ctx_free(&st->c);
}

Test(nn_embedding, forward_and_backward_match_naive, .init = suite_init) {
    EmbeddingDims d = {6, 5, 7}; /* ids 1, 4, 3, 3, 4, 1: rows 0 and 2 unused */
    EmbState st = emb_setup(d, 110);
    emb_fwd(&st);
    /* a lookup is a copy: bitwise */
    for (int b = 0; b < d.B; b++)
        expect_close("embedding fwd row", st.out + (size_t)b * d.T, st.w + (size_t)st.ids[b] * d.T,
                     d.T, 0, 0);
    float *r = rand_buf((size_t)d.B * d.T, 1.0f), *dw = rand_buf((size_t)d.K * d.T, 1.0f);
    double *want = malloc((size_t)d.K * d.T * sizeof(double)),
           *got = malloc((size_t)d.K * d.T * sizeof(double));
    for (size_t i = 0; i < (size_t)d.K * d.T; i++)
        want[i] = dw[i]; /* backward accumulates onto what dw holds */
    for (int b = 0; b < d.B; b++)
        for (int j = 0; j < d.T; j++)
            want[(size_t)st.ids[b] * d.T + j] += r[(size_t)b * d.T + j];
    embedding_backward(dw, r, st.ids, &d, &st.c);
    for (size_t i = 0; i < (size_t)d.K * d.T; i++)
        got[i] = dw[i];
    /* at most 3 float terms per entry, summed in double, rounded once: 1 ulp of O(1) values; the
     * unused rows are untouched (exactly their old values) */
    report("embedding dW vs naive",
           expect_close_d("embedding dW vs naive", got, want, (size_t)d.K * d.T, 0, 1.2e-7));
    free(r);
    free(dw);
    free(want);
    free(got);
    emb_teardown(&st);
}

Test(nn_embedding, grad, .init = suite_init) {
    EmbeddingDims d = {5, 4, 6};
    EmbState st = emb_setup(d, 111);
    float *r = rand_buf((size_t)d.B * d.T, 1.0f), *dw = zeros((size_t)d.K * d.T);
    emb_fwd(&st);
    embedding_backward(dw, r, st.ids, &d, &st.c);
    FdProblem p = {emb_fwd, &st, st.out, (size_t)d.B * d.T, r};
    /* the loss is linear in W: the finite difference has only rounding error */
    fd_expect("embedding dW", &p, st.w, dw, (size_t)d.K * d.T, FD_H, FD_ATOL, FD_RTOL);
    free(r);
    free(dw);
    emb_teardown(&st);
}

typedef struct {
    EmbState es;
    float *r; /* (B, T) */
} EmbPe;
static void emb_pe_bwd(void *s, int b0, int nb, float *dp, float *din, const OpCtx *c) {
    (void)din; /* ids have no gradient */
    EmbPe *st = s;
    EmbeddingDims d = st->es.d;
    d.B = nb;
    embedding_backward(dp, st->r + (size_t)b0 * d.T, st->es.ids + b0, &d, c);
}
Test(nn_per_example, embedding, .init = suite_init) {
    const EmbeddingDims cases[] = {{6, 5, 7}, {37, 4, 9}}; /* B = 37: grouped summed-mode slots */
    for (int k = 0; k < 2; k++) {
        EmbeddingDims d = cases[k];
        EmbPe st = {emb_setup(d, 112 + k), NULL};
        st.r = rand_buf((size_t)d.B * d.T, 1.0f);
        PeProblem pe = {"embedding", d.B, (size_t)d.K * d.T, 0, 0, emb_pe_bwd, &st};
        per_example_check(&pe);
        free(st.r);
        emb_teardown(&st.es);
    }
}

static void emb_threads_run(void *s, float *res) {
    EmbPe *st = s;
    const EmbeddingDims *d = &st->es.d;
    size_t n = (size_t)d->B * d->T;
    emb_fwd(&st->es);
    memcpy(res, st->es.out, n * sizeof(float));
    embedding_backward(res + n, st->r, st->es.ids, d, &st->es.c);
}
Test(nn_threads, embedding_bitwise, .init = suite_init) {
    EmbeddingDims d = {37, 4, 33}; /* grouped slots, every row shared by several examples */
    EmbPe st = {emb_setup(d, 114), NULL};
    st.r = rand_buf((size_t)d.B * d.T, 1.0f);
    threads_check("embedding", emb_threads_run, &st, (size_t)d.B * d.T + (size_t)d.K * d.T);
    free(st.r);
    emb_teardown(&st.es);
}
