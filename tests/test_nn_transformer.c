/* test_nn_transformer.c: the ops of the text-conditional U-Net's transformer blocks (nn.h:
 * layernorm, gelu, quick_gelu, geglu, mha; ldm.md 2.3, 2.4, 2.8, 4.1) and their graph nodes.
 *  - forwards against naive references written plainly here, token by token in double;
 *  - every input and parameter gradient against central finite differences of those double
 *    references (loss = sum(out * r) for a fixed random r), so the differences are exact to about
 *    1e-9 and the tolerance only has to cover the float rounding of the op's backward;
 *  - per-example mode: slab b equals the B=1 backward of example b, and the slabs sum to the
 *    batch-summed gradient; results bitwise equal with 1 and 2 OpenMP threads (B = 37: examples
 *    share summed-mode slots in groups);
 *  - mha: cross-attention with N != L and Cq != Ckv, several heads, one head, causal, biases NULL
 *    (diffusers) and present (CLIP), self-attention with dctx == dx;
 *  - a tiny graph layernorm -> token_linear -> geglu -> token_linear -> mha(context) -> causal
 *    self-mha -> gelu -> quick_gelu against the composition of the references (which reads the
 *    context token-major, as graph_set_input takes it), its parameter, image and context gradients
 *    against finite differences, per-example gradients against the summed ones;
 *  - against the real diffusers (ref/make_transformer_op_fixtures.py): a BasicTransformerBlock
 *    (self-attention, cross-attention, GEGLU feed-forward, three layer norms) and a causal
 *    all-bias Attention + quick GELU (CLIP's) composed from the graph nodes: outputs and every
 *    gradient.
 * Set JTRAK_TEST_VERBOSE=1 to print the measured errors. */
#include "core/layout.h"
#include "core/linalg.h"
#include "helpers/numcheck.h"
#include "io/safetensors.h"
#include "nn/blocks.h"
#include "nn/graph.h"
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
static double *to_double(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++)
        d[i] = x ? x[i] : 0.0;
    return d;
}

static int verbose(void) {
    const char *v = getenv("JTRAK_TEST_VERBOSE");
    return v && *v && *v != '0';
}
static void report(const char *what, NumDiff d) {
    if (verbose())
        fprintf(stderr, "  %-52s max abs %.3g  max rel %.3g\n", what, d.max_abs, d.max_rel);
}

/* A context with per-thread scratch for every thread OpenMP may use and grad_floats of slots. */
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

/* Compares a float result with a double reference. */
static NumDiff close_fd(const char *what, const float *got, const double *want, size_t n,
                        double atol, double rtol) {
    double *g = to_double(got, n);
    NumDiff d = expect_close_d(what, g, want, n, atol, rtol);
    report(what, d);
    free(g);
    return d;
}

/* ---- finite differences of a double reference ------------------------------------------------ */

/* ref(st, out) computes the reference output (nout doubles) from the double arrays in st. */
typedef struct {
    void (*ref)(void *st, double *out);
    void *st;
    size_t nout;
    const double *r; /* (nout) loss weights */
} RefProblem;

static double ref_loss(const RefProblem *p, double *out) {
    p->ref(p->st, out);
    double L = 0.0;
    for (size_t i = 0; i < p->nout; i++)
        L += out[i] * p->r[i];
    return L;
}

/* Central differences with h = 1e-5 in double: truncation h^2/6 f''' ~ 1e-11 and rounding
 * 1e-16 |L| / h ~ 1e-10 for the losses here (|L| < 100), so the references' gradients are exact
 * to ~1e-9, far below the float rounding of the ops' backwards they check. */
#define REF_H 1e-5

/* d loss / d x[i] for x (n doubles, restored) into g. */
static void ref_gradient(const RefProblem *p, double *x, size_t n, double *g) {
    double *out = malloc(p->nout * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        const double x0 = x[i];
        x[i] = x0 + REF_H;
        const double lp = ref_loss(p, out);
        x[i] = x0 - REF_H;
        const double lm = ref_loss(p, out);
        x[i] = x0;
        g[i] = (lp - lm) / (2 * REF_H);
    }
    free(out);
}

/* The float backward's gradient `analytic` of the double array x against finite differences.
 * Tolerance: the analytic gradients are float sums of O(10..100) products of O(1) terms, each
 * rounded to 2^-24 relative; measured at most 6e-7 absolute (layernorm dgamma) and 4e-5 relative
 * (on entries above the absolute tolerance) over this file. 5e-6 absolute + 1e-4 relative keeps
 * an 8x margin, while a wrong index, scale, sign or missing term (the softmax correction, the
 * mean terms of the layer norm, one side of a self-attention) is O(0.01..1). */
#define GRAD_ATOL 5e-6
#define GRAD_RTOL 1e-4
static void grad_expect(const char *what, const RefProblem *p, double *x, const float *analytic,
                        size_t n) {
    double *fd = malloc((n ? n : 1) * sizeof(double));
    ref_gradient(p, x, n, fd);
    close_fd(what, analytic, fd, n, GRAD_ATOL, GRAD_RTOL);
    free(fd);
}

/* Forward tolerance: the ops compute in float (sums of O(10) terms, an exp or erf approximation
 * within a few ulp), the references in double: ~1e-6 measured; 1e-5 + 1e-5 relative. */
#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-5

/* ---- naive references ----------------------------------------------------------------------- */

/* Layer norm of each token n over C channels, element (n, c) at x[n*sn + c*sc]. */
static void ln_ref(double *out, const double *x, const double *gamma, const double *beta, int C,
                   int N, size_t sn, size_t sc, double eps) {
    for (int n = 0; n < N; n++) {
        double mu = 0.0, var = 0.0;
        for (int c = 0; c < C; c++)
            mu += x[n * sn + c * sc];
        mu /= C;
        for (int c = 0; c < C; c++) {
            const double t = x[n * sn + c * sc] - mu;
            var += t * t;
        }
        var /= C;
        for (int c = 0; c < C; c++)
            out[n * sn + c * sc] = (x[n * sn + c * sc] - mu) / sqrt(var + eps) * gamma[c] + beta[c];
    }
}

static double gelu_ref(double x) {
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}
static double gelu_ref_grad(double x) {
    return 0.5 * (1.0 + erf(x / sqrt(2.0))) +
           x * exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846);
}
static double quick_gelu_ref(double x) {
    return x / (1.0 + exp(-1.702 * x));
}
static double quick_gelu_ref_grad(double x) {
    const double s = 1.0 / (1.0 + exp(-1.702 * x));
    return s + 1.702 * x * s * (1.0 - s);
}

/* One example of attention, token by token. x: token n channel k at x[n*sxn + k*sxc] (Cq
 * channels); ctx likewise (Ckv); out (C channels, N tokens) at out[n*son + c*soc]. w as mha_forward
 * (NULL biases are zero). */
typedef struct {
    int Cq, Ckv, C, N, L, heads, causal;
} RefAttn;
static void mha_ref(double *out, size_t son, size_t soc, const double *x, size_t sxn, size_t sxc,
                    const double *ctx, size_t scn, size_t scc, const double *const w[8],
                    const RefAttn *a) {
    const int C = a->C, dh = C / a->heads;
    double *q = malloc((size_t)a->N * C * sizeof(double)), *k = malloc((size_t)a->L * C * 8);
    double *v = malloc((size_t)a->L * C * 8), *o = malloc((size_t)a->N * C * 8);
    double *s = malloc((size_t)a->L * 8);
    for (int n = 0; n < a->N; n++)
        for (int c = 0; c < C; c++) {
            double acc = w[1] ? w[1][c] : 0.0;
            for (int i = 0; i < a->Cq; i++)
                acc += w[0][(size_t)c * a->Cq + i] * x[n * sxn + i * sxc];
            q[(size_t)n * C + c] = acc;
        }
    for (int l = 0; l < a->L; l++)
        for (int c = 0; c < C; c++) {
            double ak = w[3] ? w[3][c] : 0.0, av = w[5] ? w[5][c] : 0.0;
            for (int i = 0; i < a->Ckv; i++) {
                ak += w[2][(size_t)c * a->Ckv + i] * ctx[l * scn + i * scc];
                av += w[4][(size_t)c * a->Ckv + i] * ctx[l * scn + i * scc];
            }
            k[(size_t)l * C + c] = ak;
            v[(size_t)l * C + c] = av;
        }
    const double scale = 1.0 / sqrt((double)dh);
    for (int h = 0; h < a->heads; h++)
        for (int n = 0; n < a->N; n++) {
            const int len = a->causal ? n + 1 : a->L;
            double mx = -INFINITY, sum = 0.0;
            for (int l = 0; l < len; l++) {
                double acc = 0.0;
                for (int e = 0; e < dh; e++)
                    acc += q[(size_t)n * C + h * dh + e] * k[(size_t)l * C + h * dh + e];
                s[l] = acc * scale;
                if (s[l] > mx) mx = s[l];
            }
            for (int l = 0; l < len; l++) {
                s[l] = exp(s[l] - mx);
                sum += s[l];
            }
            for (int e = 0; e < dh; e++) {
                double acc = 0.0;
                for (int l = 0; l < len; l++)
                    acc += s[l] / sum * v[(size_t)l * C + h * dh + e];
                o[(size_t)n * C + h * dh + e] = acc;
            }
        }
    for (int n = 0; n < a->N; n++)
        for (int c = 0; c < C; c++) {
            double acc = w[7] ? w[7][c] : 0.0;
            for (int i = 0; i < C; i++)
                acc += w[6][(size_t)c * C + i] * o[(size_t)n * C + i];
            out[n * son + c * soc] = acc;
        }
    free(q);
    free(k);
    free(v);
    free(o);
    free(s);
}

/* ---- per-example and thread checks (shared by the ops with parameters) ------------------------
 */

typedef struct {
    const char *name;
    int B;
    size_t P, scratch, din_per_example;
    /* backward of examples b0 .. b0+nb-1 into the parameter slab dp (or slabs) and din */
    void (*bwd)(void *st, int b0, int nb, float *dp, float *din, const OpCtx *c);
    void *st;
} PeProblem;

static void per_example_check(const PeProblem *pe) {
    const int B = pe->B;
    const size_t P = pe->P, stride = P + 3, nd = pe->din_per_example; /* a gap after each slab */
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
        OpCtx c1 = ctx_make(pe->scratch, grad_slots_floats(1, P), 0);
        float *one = zeros(P), *din1 = zeros(nd);
        pe->bwd(pe->st, b, 1, one, din1, &c1);
        /* the same arithmetic on the same example, whatever the mode and batch: bitwise */
        snprintf(what, sizeof what, "%s slab %d vs B=1 backward", pe->name, b);
        expect_close(what, slab + (size_t)b * stride, one, P, 0, 0);
        snprintf(what, sizeof what, "%s din %d vs B=1 backward", pe->name, b);
        expect_close(what, din_pe + (size_t)b * nd, din1, nd, 0, 0);
        free(one);
        free(din1);
        ctx_free(&c1);
    }
    OpCtx cs = ctx_make(pe->scratch, grad_slots_floats(B, P), 0);
    float *sum = zeros(P), *din_s = zeros((size_t)B * nd), *want = zeros(P);
    pe->bwd(pe->st, 0, B, sum, din_s, &cs);
    for (size_t i = 0; i < P; i++) {
        double acc = 0.0;
        for (int b = 0; b < B; b++)
            acc += slab[(size_t)b * stride + i];
        want[i] = (float)acc;
    }
    /* summed mode: examples of one slot group add up in float before the double reduction
     * (B > NN_GRAD_SLOTS), a few ulp: 1e-6 */
    snprintf(what, sizeof what, "%s summed vs sum of slabs", pe->name);
    report(what, expect_close(what, sum, want, P, 1e-6, 1e-6));
    snprintf(what, sizeof what, "%s din summed vs per-example", pe->name);
    expect_close(what, din_s, din_pe, (size_t)B * nd, 0, 0);
    free(slab);
    free(din_pe);
    free(sum);
    free(din_s);
    free(want);
    ctx_free(&cpe);
    ctx_free(&cs);
}

/* run(st, res) computes the forward and the summed-mode backward and writes all of it to res. */
static void threads_check(const char *name, void (*run)(void *st, float *res), void *st, size_t n) {
    float *r1 = zeros(n), *r2 = zeros(n);
    omp_set_num_threads(1);
    run(st, r1);
    omp_set_num_threads(2);
    run(st, r2);
    char what[96];
    snprintf(what, sizeof what, "%s: 2 threads vs 1", name);
    expect_close(what, r2, r1, n, 0, 0); /* house-style convention 7: bitwise */
    free(r1);
    free(r2);
}

/* ---- layer norm ----------------------------------------------------------------------------- */

typedef struct {
    LayerNormDims d;
    OpCtx c;
    float *x, *gamma, *beta, *out, *mean, *rstd, *r;
    double *xd, *gd, *bd, *rd;
} LnState;

static LnState ln_setup(LayerNormDims d, float offset, uint64_t seed) {
    rng_seed(seed);
    LnState s;
    s.d = d;
    const size_t n = (size_t)d.B * d.C * d.N;
    s.x = rand_buf(n, 1.0f);
    for (size_t i = 0; i < n; i++)
        s.x[i] += offset;
    s.gamma = rand_buf(d.C, 1.0f);
    s.beta = rand_buf(d.C, 1.0f);
    s.r = rand_buf(n, 1.0f);
    s.out = zeros(n);
    s.mean = zeros((size_t)d.B * d.N);
    s.rstd = zeros((size_t)d.B * d.N);
    s.xd = to_double(s.x, n);
    s.gd = to_double(s.gamma, d.C);
    s.bd = to_double(s.beta, d.C);
    s.rd = to_double(s.r, n);
    s.c = ctx_make(0, grad_slots_floats(d.B, 2 * (size_t)d.C), 0);
    return s;
}
static void ln_teardown(LnState *s) {
    free(s->x);
    free(s->gamma);
    free(s->beta);
    free(s->r);
    free(s->out);
    free(s->mean);
    free(s->rstd);
    free(s->xd);
    free(s->gd);
    free(s->bd);
    free(s->rd);
    ctx_free(&s->c);
}
static void ln_fwd(LnState *s) {
    layernorm_forward(s->out, s->mean, s->rstd, s->x, s->gamma, s->beta, &s->d, &s->c);
}
static void ln_ref_all(void *st, double *out) {
    const LnState *s = st;
    const size_t CN = (size_t)s->d.C * s->d.N;
    for (int b = 0; b < s->d.B; b++)
        ln_ref(out + b * CN, s->xd + b * CN, s->gd, s->bd, s->d.C, s->d.N, 1, (size_t)s->d.N,
               s->d.eps);
}

Test(nn_layernorm, forward_matches_naive, .init = suite_init) {
    /* N = 70: a full block of 64 tokens and a short one; offset 30: a large mean must not cancel */
    const LayerNormDims cases[] = {{2, 7, 70, 1e-5f}, {1, 32, 5, 1e-5f}, {3, 5, 1, 1e-6f}};
    const float offsets[] = {0.0f, 30.0f, 0.0f};
    for (int k = 0; k < 3; k++) {
        LnState s = ln_setup(cases[k], offsets[k], 10 + k);
        const size_t n = (size_t)s.d.B * s.d.C * s.d.N;
        ln_fwd(&s);
        double *want = malloc(n * sizeof(double));
        ln_ref_all(&s, want);
        char what[96];
        snprintf(what, sizeof what, "layernorm fwd C=%d N=%d offset %g", s.d.C, s.d.N,
                 (double)offsets[k]);
        /* offset 30: the inputs themselves carry float rounding of 30 * 2^-24 ~ 2e-6, which the
         * normalisation divides by a standard deviation of ~0.6 */
        close_fd(what, s.out, want, n, offsets[k] > 0 ? 1e-5 : FWD_ATOL, FWD_RTOL);
        /* the statistics: token n of example b */
        double *mu = malloc((size_t)s.d.B * s.d.N * sizeof(double));
        for (int b = 0; b < s.d.B; b++)
            for (int t = 0; t < s.d.N; t++) {
                double acc = 0.0;
                for (int c = 0; c < s.d.C; c++)
                    acc += s.xd[((size_t)b * s.d.C + c) * s.d.N + t];
                mu[(size_t)b * s.d.N + t] = acc / s.d.C;
            }
        snprintf(what, sizeof what, "layernorm mean C=%d N=%d", s.d.C, s.d.N);
        close_fd(what, s.mean, mu, (size_t)s.d.B * s.d.N, 0, 1e-7); /* the double mean, rounded */
        free(mu);
        free(want);
        ln_teardown(&s);
    }
}

static void ln_grad_case(LayerNormDims d, uint64_t seed) {
    LnState s = ln_setup(d, 0.0f, seed);
    const size_t n = (size_t)d.B * d.C * d.N;
    ln_fwd(&s);
    float *dx = zeros(n), *dg = zeros(d.C), *db = zeros(d.C);
    layernorm_backward(dx, dg, db, s.r, s.x, s.mean, s.rstd, s.gamma, &d, &s.c);
    RefProblem p = {ln_ref_all, &s, n, s.rd};
    char what[96];
    snprintf(what, sizeof what, "layernorm dx C=%d N=%d", d.C, d.N);
    grad_expect(what, &p, s.xd, dx, n);
    snprintf(what, sizeof what, "layernorm dgamma C=%d N=%d", d.C, d.N);
    grad_expect(what, &p, s.gd, dg, d.C);
    snprintf(what, sizeof what, "layernorm dbeta C=%d N=%d", d.C, d.N);
    grad_expect(what, &p, s.bd, db, d.C);
    /* backward accumulates: a second call doubles every gradient exactly */
    float *dx2 = malloc(n * sizeof(float));
    memcpy(dx2, dx, n * sizeof(float));
    layernorm_backward(dx2, NULL, NULL, s.r, s.x, s.mean, s.rstd, s.gamma, &d, &s.c);
    for (size_t i = 0; i < n; i++)
        dx[i] *= 2.0f;
    expect_close("layernorm dx accumulates", dx2, dx, n, 0, 0);
    free(dx);
    free(dx2);
    free(dg);
    free(db);
    ln_teardown(&s);
}

Test(nn_layernorm, grad, .init = suite_init) {
    ln_grad_case((LayerNormDims){2, 6, 67, 1e-5f}, 20);
    ln_grad_case((LayerNormDims){3, 9, 4, 1e-5f}, 21);
}

typedef struct {
    LnState s;
} LnPe;
static void ln_pe_bwd(void *st, int b0, int nb, float *dp, float *din, const OpCtx *c) {
    LnState *s = st;
    LayerNormDims d = s->d;
    const size_t CN = (size_t)d.C * d.N;
    d.B = nb;
    layernorm_backward(din, dp, dp + d.C, s->r + b0 * CN, s->x + b0 * CN, s->mean + b0 * d.N,
                       s->rstd + b0 * d.N, s->gamma, &d, c);
}
Test(nn_per_example, layernorm, .init = suite_init) {
    LayerNormDims d = {37, 6, 70, 1e-5f};
    LnState s = ln_setup(d, 0.0f, 22);
    ln_fwd(&s);
    PeProblem pe = {"layernorm", d.B, 2 * (size_t)d.C, 0, (size_t)d.C * d.N, ln_pe_bwd, &s};
    per_example_check(&pe);
    ln_teardown(&s);
}

static void ln_threads_run(void *st, float *res) {
    LnState *s = st;
    const LayerNormDims *d = &s->d;
    const size_t n = (size_t)d->B * d->C * d->N;
    ln_fwd(s);
    memcpy(res, s->out, n * sizeof(float));
    float *dx = res + n, *dg = dx + n, *db = dg + d->C;
    layernorm_backward(dx, dg, db, s->r, s->x, s->mean, s->rstd, s->gamma, d, &s->c);
}
Test(nn_threads, layernorm_bitwise, .init = suite_init) {
    LayerNormDims d = {37, 16, 100, 1e-5f};
    LnState s = ln_setup(d, 0.0f, 23);
    const size_t n = (size_t)d.B * d.C * d.N;
    threads_check("layernorm", ln_threads_run, &s, 2 * n + 2 * (size_t)d.C);
    ln_teardown(&s);
}

/* ---- GELU, quick GELU, GEGLU ---------------------------------------------------------------- */

/* x on a grid over [-10, 10] (the tails saturate: gelu -> 0 and -> x) */
static float *act_grid(size_t n) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = -10.0f + 20.0f * (float)i / (float)(n - 1);
    return x;
}

static void act_case(const char *name, void (*fwd)(float *, const float *, size_t),
                     void (*bwd)(float *, const float *, const float *, size_t),
                     double (*ref)(double), double (*ref_grad)(double), double atol, double rtol) {
    const size_t n = 20001;
    float *x = act_grid(n), *y = zeros(n), *dx = zeros(n), *ones = malloc(n * sizeof(float));
    double *want = malloc(n * sizeof(double)), *gwant = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        ones[i] = 1.0f;
        want[i] = ref(x[i]);
        gwant[i] = ref_grad(x[i]);
    }
    fwd(y, x, n);
    bwd(dx, ones, x, n);
    char what[96];
    snprintf(what, sizeof what, "%s forward on [-10, 10]", name);
    close_fd(what, y, want, n, atol, rtol);
    snprintf(what, sizeof what, "%s derivative on [-10, 10]", name);
    close_fd(what, dx, gwant, n, atol, rtol);
    /* the derivative also against central differences of the double reference */
    for (size_t i = 0; i < n; i++)
        gwant[i] = (ref(x[i] + REF_H) - ref(x[i] - REF_H)) / (2 * REF_H);
    snprintf(what, sizeof what, "%s derivative vs finite differences", name);
    close_fd(what, dx, gwant, n, GRAD_ATOL, GRAD_RTOL);
    /* accumulates into din, and 2 threads (n > the parallel threshold) equal 1 bitwise */
    float *dx2 = malloc(n * sizeof(float)), *y1 = zeros(n);
    memcpy(dx2, dx, n * sizeof(float));
    bwd(dx2, ones, x, n);
    for (size_t i = 0; i < n; i++)
        dx[i] *= 2.0f;
    snprintf(what, sizeof what, "%s backward accumulates", name);
    expect_close(what, dx2, dx, n, 0, 0);
    omp_set_num_threads(1);
    fwd(y1, x, n);
    omp_set_num_threads(2);
    snprintf(what, sizeof what, "%s 2 threads vs 1", name);
    expect_close(what, y, y1, n, 0, 0);
    free(x);
    free(y);
    free(y1);
    free(dx);
    free(dx2);
    free(ones);
    free(want);
    free(gwant);
}

Test(nn_gelu, exact_erf_form, .init = suite_init) {
    /* erfc by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7) times x/2, plus float
     * rounding: measured max abs 3.9e-7 on this grid (torch 2.15's own float F.gelu: 9.8e-7 from
     * the double formula on the same grid, its gradient 2.2e-7); 5e-7 absolute + 5e-7 relative.
     * A tanh-form GELU instead would be off by up to 5e-4 and fail. */
    act_case("gelu", gelu_forward, gelu_backward, gelu_ref, gelu_ref_grad, 5e-7, 5e-7);
}

Test(nn_gelu, quick_gelu, .init = suite_init) {
    /* nn_expf within a few ulp: 2e-7 + 2e-7 relative */
    act_case("quick_gelu", quick_gelu_forward, quick_gelu_backward, quick_gelu_ref,
             quick_gelu_ref_grad, 2e-7, 2e-7);
}

typedef struct {
    int B, F, N;
    float *in, *out, *r;
    double *ind, *rd;
} GegluState;
static void geglu_ref_all(void *st, double *out) {
    const GegluState *s = st;
    const size_t FN = (size_t)s->F * s->N;
    for (int b = 0; b < s->B; b++)
        for (int n = 0; n < s->N; n++)
            for (int f = 0; f < s->F; f++) {
                const double a = s->ind[b * 2 * FN + (size_t)f * s->N + n];
                const double g = s->ind[b * 2 * FN + FN + (size_t)f * s->N + n];
                out[b * FN + (size_t)f * s->N + n] = a * gelu_ref(g);
            }
}

Test(nn_gelu, geglu, .init = suite_init) {
    GegluState s = {2, 5, 9, NULL, NULL, NULL, NULL, NULL};
    rng_seed(30);
    const size_t nin = (size_t)s.B * 2 * s.F * s.N, nout = nin / 2;
    s.in = rand_buf(nin, 3.0f);
    s.out = zeros(nout);
    s.r = rand_buf(nout, 1.0f);
    s.ind = to_double(s.in, nin);
    s.rd = to_double(s.r, nout);
    geglu_forward(s.out, s.in, s.B, s.F, s.N);
    double *want = malloc(nout * sizeof(double));
    geglu_ref_all(&s, want);
    close_fd("geglu forward", s.out, want, nout, FWD_ATOL, FWD_RTOL);
    float *din = zeros(nin);
    geglu_backward(din, s.r, s.in, s.B, s.F, s.N);
    RefProblem p = {geglu_ref_all, &s, nout, s.rd};
    grad_expect("geglu din (value and gate halves)", &p, s.ind, din, nin);
    free(want);
    free(din);
    free(s.in);
    free(s.out);
    free(s.r);
    free(s.ind);
    free(s.rd);
}

Test(nn_threads, geglu_bitwise, .init = suite_init) {
    const int B = 3, F = 64, N = 256; /* above the parallel threshold */
    const size_t nin = (size_t)B * 2 * F * N, nout = nin / 2;
    rng_seed(31);
    float *in = rand_buf(nin, 3.0f), *g = rand_buf(nout, 1.0f);
    float *res[2];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        res[t] = zeros(nout + nin);
        geglu_forward(res[t], in, B, F, N);
        geglu_backward(res[t] + nout, g, in, B, F, N);
    }
    expect_close("geglu: 2 threads vs 1", res[1], res[0], nout + nin, 0, 0);
    free(res[0]);
    free(res[1]);
    free(in);
    free(g);
}

/* ---- multi-head attention ------------------------------------------------------------------- */

typedef struct {
    MhaDims d;
    int self; /* ctx is x */
    OpCtx c;
    float *x, *ctx, *w[8], *out, *saved, *r;
    double *xd, *ctxd, *wd[8], *rd;
    size_t numel[8], nparams;
} MhaState;

/* has_bias: bit i (0..3) = q, k, v, out projection has a bias */
static MhaState mha_setup(MhaDims d, int self, unsigned has_bias, uint64_t seed) {
    rng_seed(seed);
    MhaState s;
    memset(&s, 0, sizeof s);
    if (self) {
        d.Ckv = d.Cq;
        d.L = d.N;
    }
    s.d = d;
    s.self = self;
    const size_t nx = (size_t)d.B * d.Cq * d.N, nc = (size_t)d.B * d.Ckv * d.L;
    const size_t nout = (size_t)d.B * d.C * d.N;
    s.x = rand_buf(nx, 1.0f);
    s.ctx = self ? s.x : rand_buf(nc, 1.0f);
    const int cin[4] = {d.Cq, d.Ckv, d.Ckv, d.C};
    s.nparams = 0;
    for (int i = 0; i < 4; i++) {
        /* weights ~ U(-1, 1) * 0.7: scores of O(1), so that the softmax is neither flat nor
         * saturated and every term of its backward matters */
        s.numel[2 * i] = (size_t)d.C * cin[i];
        s.w[2 * i] = rand_buf(s.numel[2 * i], 0.7f);
        s.numel[2 * i + 1] = (has_bias >> i) & 1 ? (size_t)d.C : 0;
        s.w[2 * i + 1] = s.numel[2 * i + 1] ? rand_buf(d.C, 0.5f) : NULL;
        s.nparams += s.numel[2 * i] + s.numel[2 * i + 1];
    }
    for (int i = 0; i < 8; i++)
        s.wd[i] = s.w[i] ? to_double(s.w[i], s.numel[i]) : NULL;
    s.out = zeros(nout);
    s.saved = zeros(mha_saved_floats(&d));
    s.r = rand_buf(nout, 1.0f);
    s.xd = to_double(s.x, nx);
    s.ctxd = self ? s.xd : to_double(s.ctx, nc);
    s.rd = to_double(s.r, nout);
    s.c = ctx_make(mha_scratch_floats(&d), grad_slots_floats(d.B, s.nparams), 0);
    return s;
}
static void mha_teardown(MhaState *s) {
    free(s->x);
    if (!s->self) {
        free(s->ctx);
        free(s->ctxd);
    }
    for (int i = 0; i < 8; i++) {
        free(s->w[i]);
        free(s->wd[i]);
    }
    free(s->out);
    free(s->saved);
    free(s->r);
    free(s->xd);
    free(s->rd);
    ctx_free(&s->c);
}
static void mha_fwd(MhaState *s) {
    const float *const *w = (const float *const *)s->w;
    mha_forward(s->out, s->saved, s->x, s->ctx, w, &s->d, &s->c);
}
static void mha_ref_all(void *st, double *out) {
    const MhaState *s = st;
    const MhaDims *d = &s->d;
    RefAttn a = {d->Cq, d->Ckv, d->C, d->N, d->L, d->heads, d->causal};
    const double *const *w = (const double *const *)s->wd;
    for (int b = 0; b < d->B; b++)
        mha_ref(out + (size_t)b * d->C * d->N, 1, (size_t)d->N, s->xd + (size_t)b * d->Cq * d->N, 1,
                (size_t)d->N, s->ctxd + (size_t)b * d->Ckv * d->L, 1, (size_t)d->L, w, &a);
}
/* The gradient pointers of a parameter slab laid out in the order of w (NULL where no bias). */
static void mha_dw(const MhaState *s, float *slab, float *dw[8]) {
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        dw[i] = s->numel[i] ? slab + off : NULL;
        off += s->numel[i];
    }
}

static void mha_case(const char *name, MhaDims d, int self, unsigned has_bias, uint64_t seed) {
    MhaState s = mha_setup(d, self, has_bias, seed);
    d = s.d;
    const size_t nx = (size_t)d.B * d.Cq * d.N, nc = (size_t)d.B * d.Ckv * d.L;
    const size_t nout = (size_t)d.B * d.C * d.N;
    char what[128];
    mha_fwd(&s);
    double *want = malloc(nout * sizeof(double));
    mha_ref_all(&s, want);
    snprintf(what, sizeof what, "%s forward", name);
    close_fd(what, s.out, want, nout, FWD_ATOL, FWD_RTOL);

    float *slab = zeros(s.nparams), *dx = zeros(nx), *dc = self ? dx : zeros(nc), *dw[8];
    mha_dw(&s, slab, dw);
    mha_backward(dx, dc, dw, s.r, s.x, s.ctx, s.saved, (const float *const *)s.w, &d, &s.c);
    RefProblem p = {mha_ref_all, &s, nout, s.rd};
    snprintf(what, sizeof what, "%s dx%s", name, self ? " (both sides)" : "");
    grad_expect(what, &p, s.xd, dx, nx);
    if (!self) {
        snprintf(what, sizeof what, "%s dctx", name);
        grad_expect(what, &p, s.ctxd, dc, nc);
    }
    static const char *const pname[8] = {"wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"};
    for (int i = 0; i < 8; i++)
        if (s.numel[i]) {
            snprintf(what, sizeof what, "%s d%s", name, pname[i]);
            grad_expect(what, &p, s.wd[i], dw[i], s.numel[i]);
        }
    /* dx NULL and dctx NULL: the parameter gradients alone, the same values */
    float *slab2 = zeros(s.nparams), *dw2[8];
    mha_dw(&s, slab2, dw2);
    mha_backward(NULL, NULL, dw2, s.r, s.x, s.ctx, s.saved, (const float *const *)s.w, &d, &s.c);
    snprintf(what, sizeof what, "%s parameter gradients without dx, dctx", name);
    expect_close(what, slab2, slab, s.nparams, 0, 0);
    free(slab2);
    free(want);
    free(slab);
    free(dx);
    if (!self) free(dc);
    mha_teardown(&s);
}

/* MhaDims: B, Cq, Ckv, C, N, L, heads, causal */
Test(nn_mha, cross_attention_diffusers_biases, .init = suite_init) {
    /* attn2 of a BasicTransformerBlock: N != L, Cq != Ckv != C, to_q/k/v without bias */
    mha_case("mha cross 2 heads", (MhaDims){2, 6, 5, 8, 7, 4, 2, 0}, 0, 0x8, 40);
}
Test(nn_mha, cross_attention_all_biases_four_heads, .init = suite_init) {
    mha_case("mha cross 4 heads biases", (MhaDims){2, 6, 3, 8, 5, 6, 4, 0}, 0, 0xF, 41);
}
Test(nn_mha, one_head_context_of_two_tokens, .init = suite_init) {
    mha_case("mha cross 1 head L=2", (MhaDims){1, 4, 7, 4, 9, 2, 1, 0}, 0, 0x9, 42);
}
Test(nn_mha, one_query_one_key, .init = suite_init) {
    /* N = 1 (a 1x1 level) and L = 1 (a one-token context: the softmax is the constant 1, so dWq
     * and dWk are exactly 0, ldm.md 2.4) */
    mha_case("mha N=1 L=1", (MhaDims){2, 4, 3, 4, 1, 1, 2, 0}, 0, 0xF, 51);
    mha_case("mha N=1 L=3", (MhaDims){1, 4, 3, 4, 1, 3, 2, 0}, 0, 0x8, 52);
}
Test(nn_mha, self_attention_dctx_is_dx, .init = suite_init) {
    mha_case("mha self 2 heads", (MhaDims){2, 6, 0, 6, 8, 0, 2, 0}, 1, 0x8, 43);
}
Test(nn_mha, causal_self_attention_clip, .init = suite_init) {
    mha_case("mha causal self 2 heads biases", (MhaDims){2, 8, 0, 8, 6, 0, 2, 1}, 1, 0xF, 44);
}
/* The checks are sensitive: the correct dWk (the gradient that flows only through the softmax's
 * scores) uses a fraction of the tolerance, a 1% error in its largest entry does not pass; and a
 * backward that dropped the softmax's row correction (dS = P * dP instead of
 * P * (dP - rowsum(P * dP))) would give the key bias a gradient, where the true one is exactly 0
 * (adding the same q.bk to every score of a row does not change its softmax). */
Test(nn_mha, gradient_check_detects_errors, .init = suite_init) {
    MhaState s = mha_setup((MhaDims){2, 6, 5, 8, 7, 4, 2, 0}, 0, 0x8, 50);
    const MhaDims d = s.d;
    mha_fwd(&s);
    float *slab = zeros(s.nparams), *dw[8];
    mha_dw(&s, slab, dw);
    mha_backward(NULL, NULL, dw, s.r, s.x, s.ctx, s.saved, (const float *const *)s.w, &d, &s.c);
    RefProblem p = {mha_ref_all, &s, (size_t)d.B * d.C * d.N, s.rd};
    const size_t nk = s.numel[2];
    double *fd = malloc(nk * sizeof(double));
    ref_gradient(&p, s.wd[2], nk, fd);
    double worst_ok = 0.0;
    size_t big = 0;
    for (size_t i = 0; i < nk; i++) {
        worst_ok = fmax(worst_ok, fabs(dw[2][i] - fd[i]) / (GRAD_ATOL + GRAD_RTOL * fabs(fd[i])));
        if (fabs(fd[i]) > fabs(fd[big])) big = i;
    }
    const double off_1pct =
        fabs(dw[2][big] * 1.01 - fd[big]) / (GRAD_ATOL + GRAD_RTOL * fabs(fd[big]));
    if (verbose())
        fprintf(stderr, "  mha dWk: correct uses %.3g of the tolerance, 1%% off %.3g\n", worst_ok,
                off_1pct);
    cr_expect_lt(worst_ok, 0.2, "correct dWk uses %.3g of the tolerance", worst_ok);
    cr_expect_gt(off_1pct, 1.0, "a 1%% error in dWk uses only %.3g of the tolerance", off_1pct);
    double rowsum_bk = 0.0;
    {
        MhaState t = mha_setup((MhaDims){2, 6, 5, 8, 7, 4, 2, 0}, 0, 0xF, 50);
        mha_fwd(&t);
        float *sl = zeros(t.nparams), *dt[8];
        mha_dw(&t, sl, dt);
        mha_backward(NULL, NULL, dt, t.r, t.x, t.ctx, t.saved, (const float *const *)t.w, &t.d,
                     &t.c);
        for (int c = 0; c < t.d.C; c++)
            rowsum_bk = fmax(rowsum_bk, fabs(dt[3][c]));
        free(sl);
        mha_teardown(&t);
    }
    cr_expect_lt(rowsum_bk, 1e-6, "dbk should be 0 (softmax shift invariance), got %.3g",
                 rowsum_bk);
    free(fd);
    free(slab);
    mha_teardown(&s);
}

Test(nn_mha, causal_rows_ignore_later_keys, .init = suite_init) {
    /* changing the last token's context must not change any earlier output row */
    MhaState s = mha_setup((MhaDims){1, 4, 0, 4, 5, 0, 2, 1}, 1, 0xF, 45);
    mha_fwd(&s);
    const int N = s.d.N, C = s.d.C;
    float *before = malloc((size_t)C * N * sizeof(float));
    memcpy(before, s.out, (size_t)C * N * sizeof(float));
    for (int k = 0; k < s.d.Cq; k++)
        s.x[(size_t)k * N + N - 1] += 1.0f;
    mha_fwd(&s);
    int changed_early = 0, changed_last = 0;
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) {
            const int diff = before[(size_t)c * N + n] != s.out[(size_t)c * N + n];
            if (n < N - 1)
                changed_early += diff;
            else
                changed_last += diff;
        }
    cr_expect_eq(changed_early, 0, "causal: %d outputs of earlier tokens changed", changed_early);
    cr_expect_gt(changed_last, 0, "the last token's output did not change");
    free(before);
    mha_teardown(&s);
}
Test(nn_mha, large_scores_do_not_overflow, .init = suite_init) {
    /* inputs times 40: scores of several hundred, beyond expf's range without the row max
     * subtracted; the output must stay finite and match the reference */
    MhaState s = mha_setup((MhaDims){2, 6, 5, 8, 7, 4, 2, 0}, 0, 0xF, 53);
    const size_t nx = (size_t)s.d.B * s.d.Cq * s.d.N, nc = (size_t)s.d.B * s.d.Ckv * s.d.L;
    for (size_t i = 0; i < nx; i++)
        s.xd[i] = s.x[i] *= 40.0f;
    for (size_t i = 0; i < nc; i++)
        s.ctxd[i] = s.ctx[i] *= 40.0f;
    mha_fwd(&s);
    const size_t nout = (size_t)s.d.B * s.d.C * s.d.N;
    double *want = malloc(nout * sizeof(double));
    mha_ref_all(&s, want);
    /* |out| ~ 40 and scores ~ 500 whose float rounding (3e-5) moves the weights: 1e-3 relative */
    close_fd("mha large scores", s.out, want, nout, 1e-4, 1e-3);
    free(want);
    mha_teardown(&s);
}
Test(nn_mha, causal_needs_equal_lengths, .init = suite_init, .signal = SIGABRT) {
    MhaDims d = {1, 4, 4, 4, 5, 6, 2, 1};
    mha_saved_floats(&d);
}

static void mha_pe_bwd(void *st, int b0, int nb, float *dp, float *din, const OpCtx *c) {
    MhaState *s = st;
    MhaDims d = s->d;
    const size_t sx = (size_t)d.Cq * d.N, sc = (size_t)d.Ckv * d.L;
    d.B = 1;
    const size_t per = mha_saved_floats(&d);
    d.B = nb;
    float *dw[8];
    mha_dw(s, dp, dw);
    /* din: dx (dctx is an activation gradient like dx, checked against finite differences
     * above; here NULL, which must not change the parameter gradients) */
    mha_backward(din, NULL, dw, s->r + (size_t)b0 * d.C * d.N, s->x + b0 * sx, s->ctx + b0 * sc,
                 s->saved + b0 * per, (const float *const *)s->w, &d, c);
}
Test(nn_per_example, mha, .init = suite_init) {
    /* B = 37 > NN_GRAD_SLOTS: slots shared by groups of 3 in summed mode */
    const unsigned biases[2] = {0x8, 0xF};
    for (int k = 0; k < 2; k++) {
        MhaState s = mha_setup((MhaDims){37, 6, 5, 8, 7, 4, 2, 0}, 0, biases[k], 46 + k);
        mha_fwd(&s);
        PeProblem pe = {k ? "mha all biases" : "mha diffusers biases",
                        s.d.B,
                        s.nparams,
                        mha_scratch_floats(&s.d),
                        (size_t)s.d.Cq * s.d.N,
                        mha_pe_bwd,
                        &s};
        per_example_check(&pe);
        mha_teardown(&s);
    }
}

static void mha_threads_run(void *st, float *res) {
    MhaState *s = st;
    const MhaDims *d = &s->d;
    const size_t nx = (size_t)d->B * d->Cq * d->N, nc = (size_t)d->B * d->Ckv * d->L;
    const size_t nout = (size_t)d->B * d->C * d->N;
    mha_fwd(s);
    memcpy(res, s->out, nout * sizeof(float));
    float *dx = res + nout, *dc = s->self ? dx : dx + nx, *dw[8];
    mha_dw(s, (s->self ? dx + nx : dx + nx + nc), dw);
    mha_backward(dx, dc, dw, s->r, s->x, s->ctx, s->saved, (const float *const *)s->w, d, &s->c);
}
Test(nn_threads, mha_bitwise, .init = suite_init) {
    for (int k = 0; k < 2; k++) {
        MhaState s = k ? mha_setup((MhaDims){37, 8, 0, 8, 10, 0, 2, 1}, 1, 0xF, 49)
                       : mha_setup((MhaDims){37, 8, 6, 16, 20, 7, 4, 0}, 0, 0x8, 48);
        const MhaDims *d = &s.d;
        const size_t nx = (size_t)d->B * d->Cq * d->N, nc = (size_t)d->B * d->Ckv * d->L;
        const size_t nout = (size_t)d->B * d->C * d->N;
        threads_check(k ? "mha causal self" : "mha cross", mha_threads_run, &s,
                      nout + nx + (s.self ? 0 : nc) + s.nparams);
        mha_teardown(&s);
    }
}

/* ---- the graph nodes ------------------------------------------------------------------------ */

/* x (GC, GH, GW) image, context (GD, GL) given token-major (GL, GD):
 *   h = token_linear(geglu(token_linear(layernorm(x), 2 GF)), GC)      "ln", "ff1" (Linear
 *       weight (2GF, GC)), "ff2" (1x1 conv weight (GC, GF, 1, 1))
 *   a = mha(h, context) + x          "attn2", diffusers names: to_q/k/v without bias, to_out.0 with
 *   y = quick_gelu(gelu(mha_causal(a)))  "attn1", CLIP names, every bias */
enum { GC = 8, GH = 2, GW = 3, GN = GH * GW, GF = 6, GD = 5, GL = 3, GB = 3 };
static const char *const DIFFUSERS_NAMES[4] = {"to_q", "to_k", "to_v", "to_out.0"};
static const char *const CLIP_NAMES[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};

typedef struct {
    ParamLayout l;
    Graph g;
    float *params;
    double *pd;         /* the same parameters in double, for the reference */
    float *x, *ctx, *r; /* (GB,GC,GN), (GB,GL,GD) token-major, (GB,GC,GN) */
    double *xd, *ctxd, *rd;
} TGraph;

static void add_weight(ParamLayout *l, const char *name, int out, int in) {
    layout_add_init(l, name, 2, (const int[]){out, in}, (LayoutInit){LAYOUT_INIT_FAN_IN, in, 0});
}
static void add_bias(ParamLayout *l, const char *name, int out, int in) {
    layout_add_init(l, name, 1, (const int[]){out}, (LayoutInit){LAYOUT_INIT_FAN_IN, in, 0});
}

static void tgraph_init(TGraph *t) {
    ParamLayout *l = &t->l;
    layout_init(l);
    block_params_norm(l, "ln", GC);
    block_params_linear(l, "ff1", 2 * GF, GC);
    block_params_conv2d(l, "ff2", GC, GF, 1);
    add_weight(l, "attn2.to_q.weight", GC, GC);
    add_weight(l, "attn2.to_k.weight", GC, GD);
    add_weight(l, "attn2.to_v.weight", GC, GD);
    add_weight(l, "attn2.to_out.0.weight", GC, GC);
    add_bias(l, "attn2.to_out.0.bias", GC, GC);
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "attn1.%s.weight", CLIP_NAMES[i]);
        add_weight(l, name, GC, GC);
        snprintf(name, sizeof name, "attn1.%s.bias", CLIP_NAMES[i]);
        add_bias(l, name, GC, GC);
    }
    rng_seed(60);
    /* U(-0.6, 0.6) everywhere (norm weights included, so that they are not special) */
    t->params = rand_buf(l->total, 0.6f);
    t->pd = to_double(t->params, l->total);
    t->x = rand_buf((size_t)GB * GC * GN, 1.0f);
    t->ctx = rand_buf((size_t)GB * GL * GD, 1.0f);
    t->r = rand_buf((size_t)GB * GC * GN, 1.0f);
    t->xd = to_double(t->x, (size_t)GB * GC * GN);
    t->ctxd = to_double(t->ctx, (size_t)GB * GL * GD);
    t->rd = to_double(t->r, (size_t)GB * GC * GN);

    Graph *g = &t->g;
    graph_init(g, l);
    int x = graph_input(g, GRAPH_INPUT_IMAGE, GC, GH, GW);
    int c = graph_input(g, GRAPH_INPUT_CONTEXT, GD, GL, 1);
    int h = graph_layernorm(g, x, 1e-5f, "ln");
    h = graph_token_linear(g, h, 2 * GF, "ff1");
    h = graph_geglu(g, h);
    h = graph_token_linear(g, h, GC, "ff2");
    h = graph_mha(g, h, c, 2, 0, "attn2", DIFFUSERS_NAMES);
    h = graph_add(g, h, x, 1.0f);
    h = graph_mha(g, h, -1, 4, 1, "attn1", CLIP_NAMES);
    h = graph_unary(g, NODE_GELU, h);
    h = graph_unary(g, NODE_QUICK_GELU, h);
    cr_assert_eq(graph_output(g, h), 0);
}

static void tgraph_free(TGraph *t) {
    graph_free(&t->g);
    layout_free(&t->l);
    free(t->params);
    free(t->pd);
    free(t->x);
    free(t->ctx);
    free(t->r);
    free(t->xd);
    free(t->ctxd);
    free(t->rd);
}

static const double *pref(const TGraph *t, const char *name) {
    const int i = layout_find(&t->l, name);
    return i >= 0 ? t->pd + t->l.entries[i].offset : NULL;
}

/* The reference: the same network per example, token by token in double, the context read
 * token-major from t->ctxd as the caller hands it to graph_set_input. */
static void tgraph_ref(void *st, double *out) {
    const TGraph *t = st;
    double h1[GC * GN], h2[2 * GF * GN], h3[GF * GN], h4[GC * GN], a[GC * GN], y[GC * GN];
    const double *f1w = pref(t, "ff1.weight"), *f1b = pref(t, "ff1.bias");
    const double *f2w = pref(t, "ff2.weight"), *f2b = pref(t, "ff2.bias");
    const double *w2[8], *w1[8];
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "attn2.%s.weight", DIFFUSERS_NAMES[i]);
        w2[2 * i] = pref(t, name);
        snprintf(name, sizeof name, "attn2.%s.bias", DIFFUSERS_NAMES[i]);
        w2[2 * i + 1] = pref(t, name);
        snprintf(name, sizeof name, "attn1.%s.weight", CLIP_NAMES[i]);
        w1[2 * i] = pref(t, name);
        snprintf(name, sizeof name, "attn1.%s.bias", CLIP_NAMES[i]);
        w1[2 * i + 1] = pref(t, name);
    }
    const RefAttn a2 = {GC, GD, GC, GN, GL, 2, 0}, a1 = {GC, GC, GC, GN, GN, 4, 1};
    for (int b = 0; b < GB; b++) {
        const double *x = t->xd + (size_t)b * GC * GN; /* (GC, GN) channel-major, as the image */
        ln_ref(h1, x, pref(t, "ln.weight"), pref(t, "ln.bias"), GC, GN, 1, GN, 1e-5);
        for (int n = 0; n < GN; n++) {
            for (int o = 0; o < 2 * GF; o++) {
                double acc = f1b[o];
                for (int i = 0; i < GC; i++)
                    acc += f1w[o * GC + i] * h1[i * GN + n];
                h2[o * GN + n] = acc;
            }
            for (int f = 0; f < GF; f++)
                h3[f * GN + n] = h2[f * GN + n] * gelu_ref(h2[(GF + f) * GN + n]);
            for (int o = 0; o < GC; o++) {
                double acc = f2b[o];
                for (int i = 0; i < GF; i++)
                    acc += f2w[o * GF + i] * h3[i * GN + n];
                h4[o * GN + n] = acc;
            }
        }
        /* context token l, channel k at ctx[l * GD + k] */
        mha_ref(a, 1, GN, h4, 1, GN, t->ctxd + (size_t)b * GL * GD, GD, 1, w2, &a2);
        for (int i = 0; i < GC * GN; i++)
            a[i] += x[i];
        mha_ref(y, 1, GN, a, 1, GN, a, 1, GN, w1, &a1);
        for (int i = 0; i < GC * GN; i++)
            out[(size_t)b * GC * GN + i] = quick_gelu_ref(gelu_ref(y[i]));
    }
}

static GraphRun *tgraph_run(const TGraph *t, int B) {
    GraphRun *r;
    JtError err;
    cr_assert(graph_run_create(&r, &t->g, B, GRAPH_RUN_TRAIN, &err) == JT_OK, "%s", err.msg);
    return r;
}
static void tgraph_forward(GraphRun *r, const TGraph *t, int B, int b0) {
    graph_set_input(r, GRAPH_INPUT_IMAGE, B, t->x + (size_t)b0 * GC * GN);
    graph_set_input(r, GRAPH_INPUT_CONTEXT, B, t->ctx + (size_t)b0 * GL * GD);
    graph_forward(r, t->params, B);
}

Test(nn_graph, transformer_nodes_forward_and_gradients, .init = suite_init) {
    TGraph t;
    tgraph_init(&t);
    const size_t nout = (size_t)GB * GC * GN, P = t.l.total;
    GraphRun *run = tgraph_run(&t, GB);
    tgraph_forward(run, &t, GB, 0);
    float *out = zeros(nout);
    graph_get_output(run, 0, GB, out);
    double *want = malloc(nout * sizeof(double));
    tgraph_ref(&t, want);
    /* float through nine nodes: measured 2e-7; the forward tolerance */
    close_fd("graph forward vs reference", out, want, nout, FWD_ATOL, FWD_RTOL);

    float *dp = zeros(P), *dx = zeros(nout), *dc = zeros((size_t)GB * GD * GL);
    float *dinputs[GRAPH_INPUT_KINDS] = {0};
    dinputs[GRAPH_INPUT_IMAGE] = dx;
    dinputs[GRAPH_INPUT_CONTEXT] = dc;
    const float *douts[1] = {t.r};
    graph_backward(run, t.params, GB, dp, 0, douts, dinputs);
    RefProblem p = {tgraph_ref, &t, nout, t.rd};
    for (int e = 0; e < t.l.count; e++) {
        const LayoutEntry *le = &t.l.entries[e];
        char what[128];
        snprintf(what, sizeof what, "graph d %s", le->name);
        grad_expect(what, &p, t.pd + le->offset, dp + le->offset, le->numel);
    }
    grad_expect("graph d image", &p, t.xd, dx, nout);
    /* the context's gradient comes back channel-major (B, D, L); the reference's context is
     * token-major: transpose the finite differences */
    double *fdc = malloc((size_t)GB * GL * GD * sizeof(double));
    ref_gradient(&p, t.ctxd, (size_t)GB * GL * GD, fdc);
    double *fdc_t = malloc((size_t)GB * GL * GD * sizeof(double));
    for (int b = 0; b < GB; b++)
        for (int l = 0; l < GL; l++)
            for (int k = 0; k < GD; k++)
                fdc_t[((size_t)b * GD + k) * GL + l] = fdc[((size_t)b * GL + l) * GD + k];
    close_fd("graph d context (B, D, L)", dc, fdc_t, (size_t)GB * GL * GD, GRAD_ATOL, GRAD_RTOL);

    /* the context's gradient not asked for: every other gradient unchanged, bitwise */
    float *dp2 = zeros(P), *dx2 = zeros(nout);
    float *din2[GRAPH_INPUT_KINDS] = {0};
    din2[GRAPH_INPUT_IMAGE] = dx2;
    graph_backward(run, t.params, GB, dp2, 0, douts, din2);
    expect_close("graph dparams without the context gradient", dp2, dp, P, 0, 0);
    expect_close("graph d image without the context gradient", dx2, dx, nout, 0, 0);

    /* per-example gradients: example b's slab equals a B=1 pass on example b, and the slabs sum
     * to the batch gradient */
    float *pe = zeros((size_t)GB * P);
    graph_backward(run, t.params, GB, pe, P, douts, NULL);
    GraphRun *one = tgraph_run(&t, 1);
    float *sum = zeros(P);
    for (int b = 0; b < GB; b++) {
        float *g1 = zeros(P);
        tgraph_forward(one, &t, 1, b);
        const float *d1[1] = {t.r + (size_t)b * GC * GN};
        graph_backward(one, t.params, 1, g1, 0, d1, NULL);
        char what[64];
        snprintf(what, sizeof what, "graph per-example slab %d vs B=1", b);
        expect_close(what, pe + (size_t)b * P, g1, P, 0, 0);
        free(g1);
    }
    for (size_t i = 0; i < P; i++) {
        double acc = 0.0;
        for (int b = 0; b < GB; b++)
            acc += pe[(size_t)b * P + i];
        sum[i] = (float)acc;
    }
    report("graph summed vs sum of slabs",
           expect_close("graph summed vs sum of slabs", dp, sum, P, 1e-6, 1e-6));

    graph_run_free(one);
    graph_run_free(run);
    free(out);
    free(want);
    free(dp);
    free(dx);
    free(dc);
    free(fdc);
    free(fdc_t);
    free(dp2);
    free(dx2);
    free(pe);
    free(sum);
    tgraph_free(&t);
}

Test(nn_graph, context_is_stored_transposed, .init = suite_init) {
    /* the stored tensor itself, read through a node that maps it elementwise: token t channel k
     * of (B, L, D) data must land at (B, D, L) position (k, t) */
    ParamLayout l;
    layout_init(&l);
    Graph g;
    graph_init(&g, &l);
    int c = graph_input(&g, GRAPH_INPUT_CONTEXT, GD, GL, 1);
    int z = graph_unary(&g, NODE_CENTER, c); /* 2 c - 1: exact in float for these values */
    graph_output(&g, z);
    GraphRun *r;
    JtError err;
    cr_assert(graph_run_create(&r, &g, 2, GRAPH_RUN_FORWARD_ONLY, &err) == JT_OK, "%s", err.msg);
    float tok[2 * GL * GD], got[2 * GL * GD], want[2 * GL * GD];
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < GL; t++)
            for (int k = 0; k < GD; k++) {
                tok[(b * GL + t) * GD + k] = (float)(100 * b + 10 * t + k); /* (B, L, D) */
                want[(b * GD + k) * GL + t] = 2.0f * (float)(100 * b + 10 * t + k) - 1.0f;
            }
    graph_set_input(r, GRAPH_INPUT_CONTEXT, 2, tok);
    graph_forward(r, NULL, 2);
    graph_get_output(r, 0, 2, got);
    expect_close("context stored as (B, D, L)", got, want, 2 * GL * GD, 0, 0);
    graph_run_free(r);
    graph_free(&g);
    layout_free(&l);
}

static void tgraph_threads_run(void *st, float *res) {
    TGraph *t = st;
    const size_t nout = (size_t)GB * GC * GN;
    GraphRun *run = tgraph_run(t, GB);
    tgraph_forward(run, t, GB, 0);
    graph_get_output(run, 0, GB, res);
    float *din[GRAPH_INPUT_KINDS] = {0};
    din[GRAPH_INPUT_IMAGE] = res + nout;
    din[GRAPH_INPUT_CONTEXT] = res + 2 * nout;
    const float *douts[1] = {t->r};
    graph_backward(run, t->params, GB, res + 2 * nout + (size_t)GB * GD * GL, 0, douts, din);
    graph_run_free(run);
}
Test(nn_threads, transformer_graph_bitwise, .init = suite_init) {
    TGraph t;
    tgraph_init(&t);
    const size_t n = 2 * (size_t)GB * GC * GN + (size_t)GB * GD * GL + t.l.total;
    threads_check("transformer graph", tgraph_threads_run, &t, n);
    tgraph_free(&t);
}

Test(nn_graph, token_linear_of_a_wrong_shape_aborts, .init = suite_init, .signal = SIGABRT) {
    ParamLayout l;
    layout_init(&l);
    block_params_linear(&l, "proj", GC, 2 * GC); /* (GC, 2GC): not a GC -> GC projection */
    Graph g;
    graph_init(&g, &l);
    int x = graph_input(&g, GRAPH_INPUT_IMAGE, GC, GH, GW);
    graph_token_linear(&g, x, GC, "proj");
}

Test(nn_graph, mha_without_an_out_projection_aborts, .init = suite_init, .signal = SIGABRT) {
    ParamLayout l;
    layout_init(&l);
    add_weight(&l, "attn.to_q.weight", GC, GC);
    add_weight(&l, "attn.to_k.weight", GC, GC);
    add_weight(&l, "attn.to_v.weight", GC, GC);
    Graph g;
    graph_init(&g, &l);
    int x = graph_input(&g, GRAPH_INPUT_IMAGE, GC, GH, GW);
    graph_mha(&g, x, -1, 2, 0, "attn", DIFFUSERS_NAMES);
}

/* ---- against diffusers (tests/fixtures/nn/transformer_ops.safetensors) ---------------------- */

#define OPS_FIXTURE JTRAK_FIXTURES "/nn/transformer_ops.safetensors"

/* A fixture tensor by name (malloc'd), its element count checked. */
static float *fx_read(StFile *f, const char *name, size_t numel) {
    const int i = st_find(f, name);
    cr_assert(i >= 0, "%s: no tensor %s", OPS_FIXTURE, name);
    cr_assert_eq(f->tensors[i].numel, numel, "%s: %s has %llu values, expected %zu", OPS_FIXTURE,
                 name, (unsigned long long)f->tensors[i].numel, numel);
    float *p = malloc(numel * sizeof(float));
    JtError err;
    cr_assert(st_read_f32(f, i, p, &err) == JT_OK, "%s", err.msg);
    return p;
}

/* (B, N, C) token-major <-> (B, C, N) channel-major */
static float *to_channel_major(const float *t, int B, int N, int C) {
    float *o = malloc((size_t)B * N * C * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                o[((size_t)b * C + c) * N + n] = t[((size_t)b * N + n) * C + c];
    return o;
}

/* Registers every "<case>.param.<name>" of the fixture under "<rename><name>" with its shape and
 * reads the values into a slab (malloc'd, *slab). */
static void fx_layout(StFile *f, const char *cas, const char *rename, ParamLayout *l,
                      float **slab) {
    char pre[64];
    snprintf(pre, sizeof pre, "%s.param.", cas);
    layout_init(l);
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
        if (strncmp(t->name, pre, strlen(pre)) != 0) continue;
        int shape[LAYOUT_MAX_DIMS];
        for (int k = 0; k < t->ndim; k++)
            shape[k] = (int)t->shape[k];
        char name[LAYOUT_NAME_MAX];
        snprintf(name, sizeof name, "%s%s", rename, t->name + strlen(pre));
        layout_add(l, name, t->ndim, shape);
    }
    *slab = zeros(l->total);
    for (int e = 0; e < l->count; e++) {
        char name[LAYOUT_NAME_MAX];
        snprintf(name, sizeof name, "%s%s", pre, l->entries[e].name + strlen(rename));
        float *v = fx_read(f, name, l->entries[e].numel);
        memcpy(*slab + l->entries[e].offset, v, l->entries[e].numel * sizeof(float));
        free(v);
    }
}

/* Tolerances against diffusers: the same float32 arithmetic in another summation order (token-
 * major GEMMs, SDPA, torch's own erf and exp), a few ulp per op. Measured here: outputs 1.8e-7,
 * gradients 9.5e-7 absolute. ldm.md 2.8 (as ref/README.md for the U-Net): outputs 1e-4,
 * gradients 5e-6 + 1e-3 relative; these tighter ones keep a 5x margin: outputs 2e-6 + 1e-5
 * relative, gradients 5e-6 + 1e-4 relative. */
#define DIFF_OUT_ATOL 2e-6
#define DIFF_OUT_RTOL 1e-5
#define DIFF_GRAD_ATOL 5e-6
#define DIFF_GRAD_RTOL 1e-4

/* Runs graph g (output 0, C channels, N tokens) on the fixture case's inputs and compares the
 * output, the input gradients and every parameter gradient with diffusers'. */
static void fx_compare(StFile *f, const char *cas, const char *rename, const ParamLayout *l,
                       const Graph *g, const float *params, int B, int N, int C, int L, int D) {
    char name[128], what[160];
    snprintf(name, sizeof name, "%s.x", cas);
    float *x_t = fx_read(f, name, (size_t)B * N * C), *x = to_channel_major(x_t, B, N, C);
    snprintf(name, sizeof name, "%s.r", cas);
    float *r_t = fx_read(f, name, (size_t)B * N * C), *r = to_channel_major(r_t, B, N, C);
    snprintf(name, sizeof name, "%s.out", cas);
    float *want_t = fx_read(f, name, (size_t)B * N * C), *want = to_channel_major(want_t, B, N, C);
    float *ctx = NULL;
    if (L > 0) {
        snprintf(name, sizeof name, "%s.ctx", cas);
        ctx = fx_read(f, name, (size_t)B * L * D); /* token-major, as graph_set_input takes it */
    }
    GraphRun *run;
    JtError err;
    cr_assert(graph_run_create(&run, g, B, GRAPH_RUN_TRAIN, &err) == JT_OK, "%s", err.msg);
    graph_set_input(run, GRAPH_INPUT_IMAGE, B, x);
    if (ctx) graph_set_input(run, GRAPH_INPUT_CONTEXT, B, ctx);
    graph_forward(run, params, B);
    float *out = zeros((size_t)B * N * C);
    graph_get_output(run, 0, B, out);
    snprintf(what, sizeof what, "%s output vs diffusers", cas);
    report(what, expect_close(what, out, want, (size_t)B * N * C, DIFF_OUT_ATOL, DIFF_OUT_RTOL));

    float *dp = zeros(l->total), *dx = zeros((size_t)B * N * C);
    float *dc = L > 0 ? zeros((size_t)B * D * L) : NULL;
    float *dinputs[GRAPH_INPUT_KINDS] = {0};
    dinputs[GRAPH_INPUT_IMAGE] = dx;
    dinputs[GRAPH_INPUT_CONTEXT] = dc;
    const float *douts[1] = {r};
    graph_backward(run, params, B, dp, 0, douts, dinputs);
    snprintf(name, sizeof name, "%s.grad.x", cas);
    float *gx_t = fx_read(f, name, (size_t)B * N * C), *gx = to_channel_major(gx_t, B, N, C);
    snprintf(what, sizeof what, "%s grad x vs diffusers", cas);
    report(what, expect_close(what, dx, gx, (size_t)B * N * C, DIFF_GRAD_ATOL, DIFF_GRAD_RTOL));
    if (L > 0) {
        snprintf(name, sizeof name, "%s.grad.ctx", cas);
        float *gc_t = fx_read(f, name, (size_t)B * L * D), *gc = to_channel_major(gc_t, B, L, D);
        snprintf(what, sizeof what, "%s grad ctx vs diffusers", cas);
        report(what, expect_close(what, dc, gc, (size_t)B * L * D, DIFF_GRAD_ATOL, DIFF_GRAD_RTOL));
        free(gc_t);
        free(gc);
    }
    for (int e = 0; e < l->count; e++) {
        const LayoutEntry *le = &l->entries[e];
        snprintf(name, sizeof name, "%s.grad.%s", cas, le->name + strlen(rename));
        float *gp = fx_read(f, name, le->numel);
        snprintf(what, sizeof what, "%s grad %s vs diffusers", cas, le->name);
        report(what,
               expect_close(what, dp + le->offset, gp, le->numel, DIFF_GRAD_ATOL, DIFF_GRAD_RTOL));
        free(gp);
    }
    graph_run_free(run);
    free(x_t);
    free(x);
    free(r_t);
    free(r);
    free(want_t);
    free(want);
    free(ctx);
    free(out);
    free(dp);
    free(dx);
    free(dc);
    free(gx_t);
    free(gx);
}

Test(nn_diffusers, basic_transformer_block, .init = suite_init) {
    StFile f;
    JtError err;
    cr_assert(st_open(&f, OPS_FIXTURE, &err) == JT_OK, "%s", err.msg);
    enum { B = 2, H = 2, W = 3, C = 8, L = 4, D = 5, HEADS = 2 };
    ParamLayout l;
    float *params;
    fx_layout(&f, "block", "", &l, &params);
    Graph g;
    graph_init(&g, &l);
    /* BasicTransformerBlock, norm_type "layer_norm" (ldm.md 2.4) */
    int x = graph_input(&g, GRAPH_INPUT_IMAGE, C, H, W);
    int ctx = graph_input(&g, GRAPH_INPUT_CONTEXT, D, L, 1);
    int h = graph_layernorm(&g, x, 1e-5f, "norm1");
    int y = graph_add(&g, graph_mha(&g, h, -1, HEADS, 0, "attn1", DIFFUSERS_NAMES), x, 1.0f);
    h = graph_layernorm(&g, y, 1e-5f, "norm2");
    y = graph_add(&g, graph_mha(&g, h, ctx, HEADS, 0, "attn2", DIFFUSERS_NAMES), y, 1.0f);
    h = graph_layernorm(&g, y, 1e-5f, "norm3");
    h = graph_token_linear(&g, h, 8 * C, "ff.net.0.proj");
    h = graph_geglu(&g, h);
    h = graph_token_linear(&g, h, C, "ff.net.2");
    y = graph_add(&g, h, y, 1.0f);
    graph_output(&g, y);
    fx_compare(&f, "block", "", &l, &g, params, B, H * W, C, L, D);
    graph_free(&g);
    layout_free(&l);
    free(params);
    st_close(&f);
}

Test(nn_diffusers, causal_attention_all_biases_quick_gelu, .init = suite_init) {
    StFile f;
    JtError err;
    cr_assert(st_open(&f, OPS_FIXTURE, &err) == JT_OK, "%s", err.msg);
    enum { B = 2, H = 2, W = 3, C = 8, HEADS = 4 };
    ParamLayout l;
    float *params;
    fx_layout(&f, "causal", "attn.", &l, &params);
    Graph g;
    graph_init(&g, &l);
    int x = graph_input(&g, GRAPH_INPUT_IMAGE, C, H, W);
    int h = graph_mha(&g, x, -1, HEADS, 1, "attn", DIFFUSERS_NAMES);
    graph_output(&g, graph_unary(&g, NODE_QUICK_GELU, h));
    fx_compare(&f, "causal", "attn.", &l, &g, params, B, H * W, C, 0, 0);
    graph_free(&g);
    layout_free(&l);
    free(params);
    st_close(&f);
}
