/* test_schedule.c: the DDPM/DDIM schedules and steps (src/diffusion/) against the fixtures that
 * ref/make_scheduler_fixtures.py writes with diffusers' real DDPMScheduler and DDIMScheduler
 * (the .npy files of tests/fixtures/sched, listed in that script), and the scheduler_config.json
 * parser on diffusers' own files and on malformed ones.
 *
 * Tolerances. Tables: bitwise (cumprod from the same betas) or 3e-7 relative (betas from the
 * config, measured bitwise; the slack covers a torch build that does not fuse linspace's
 * multiply-add). Steps: torch's CPU float32 sqrt is MKL's vsSqrt, which is not correctly rounded
 * (max 0.75 ulp, about 20% of inputs 1 ulp off), so the step's scalars may differ from C's
 * correctly rounded sqrtf by 1-2 ulp. Hence three checks per case: the scalars within 3e-7
 * relative; the per-element code fed torch's own scalars reproduces diffusers bit for bit (atol 0);
 * and the full C step within 1e-6 absolute + 1e-6 relative (the relative part is for unclipped x0
 * of magnitude up to ~1600 at t = 999). Run with --verbose to see every measured difference and
 * bitwise count. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "helpers/fixture_npy.h"
#include "helpers/numcheck.h"

#ifndef JTRAK_FIXTURES
#error "JTRAK_FIXTURES (the tests/fixtures folder) must be defined"
#endif
#define FIX(name) JTRAK_FIXTURES "/sched/" name

/* Config ids of the fixture script. */
static const char *const CONFIG_DIRS[] = {
    FIX("ddpm_linear"),  FIX("ddpm_cos"),     FIX("ddpm_scaled"),
    FIX("ddim_default"), FIX("ddim_offset1"), FIX("ddim_trailing"),
};
#define STEP_N 32 /* (2, 1, 4, 4) */

static void load_config_id(NoiseSchedule *s, int64_t cid) {
    cr_assert(cid >= 0 && cid < 6, "bad config id %ld", (long)cid);
    JtError err = {{0}};
    cr_assert_eq(sched_load(s, CONFIG_DIRS[cid], &err), JT_OK, "%s", err.msg);
}

/* expect_close plus a log line with the bitwise-equal count. */
static NumDiff compare(const char *what, const float *got, const float *want, size_t n, double atol,
                       double rtol) {
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += memcmp(&got[i], &want[i], sizeof(float)) == 0;
    NumDiff d = expect_close(what, got, want, n, atol, rtol);
    cr_log_info("%-40s max abs %.3g  max rel %.3g  bitwise %zu/%zu", what, d.max_abs, d.max_rel,
                same, n);
    return d;
}

/* ------------------------------------------------------------------------------------------ */
/* Tables                                                                                      */

static void check_tables(int cid, const char *tag, const char *betas_path, const char *ac_path) {
    NoiseSchedule s;
    load_config_id(&s, cid);
    NpyShape sh;
    float *betas = fixture_npy_f32(betas_path, &sh);
    cr_assert_eq(sh.n, (size_t)s.T);
    float *ac = fixture_npy_f32(ac_path, &sh);
    cr_assert_eq(sh.n, (size_t)s.T);
    char what[64];
    /* From the config: torch's linspace reproduced with its fused multiply-adds; rtol 3e-7 (about
     * 2 ulp) would absorb a torch build without contraction (unet2d.md 8.2: 1 ulp, 3e-7 on abar).
     */
    snprintf(what, sizeof what, "betas %s", tag);
    compare(what, s.betas, betas, (size_t)s.T, 0, 3e-7);
    snprintf(what, sizeof what, "alphas_cumprod %s", tag);
    compare(what, s.alphas_cumprod, ac, (size_t)s.T, 0, 3e-7);
    /* From the fixture betas: torch's double-accumulated cumprod is reproduced bitwise. */
    NoiseSchedule f;
    JtError err = {{0}};
    cr_assert_eq(sched_init_from_betas(&f, &s.cfg, betas, &err), JT_OK, "%s", err.msg);
    snprintf(what, sizeof what, "alphas_cumprod %s (fixture betas)", tag);
    compare(what, f.alphas_cumprod, ac, (size_t)s.T, 0, 0);
    sched_free(&f);
    sched_free(&s);
    free(betas);
    free(ac);
}

Test(schedule, tables_linear) {
    check_tables(0, "linear", FIX("betas_linear.npy"), FIX("alphas_cumprod_linear.npy"));
}
Test(schedule, tables_squaredcos_cap_v2) {
    check_tables(1, "cos", FIX("betas_cos.npy"), FIX("alphas_cumprod_cos.npy"));
}
Test(schedule, tables_scaled_linear) {
    check_tables(2, "scaled", FIX("betas_scaled.npy"), FIX("alphas_cumprod_scaled.npy"));
}

/* unet2d.md 8.2, printed to 5-8 significant digits there: relative 1e-4 covers the rounding. */
Test(schedule, reference_values) {
    SchedConfig cfg;
    sched_config_default(&cfg);
    NoiseSchedule s;
    JtError err = {{0}};
    cr_assert_eq(sched_init(&s, &cfg, &err), JT_OK, "%s", err.msg);
    cr_assert(fabs(s.alphas_cumprod[0] - 0.99989998) < 1e-8, "abar_0 = %.9g", s.alphas_cumprod[0]);
    cr_assert(fabs(s.alphas_cumprod[999] / 4.0358e-5 - 1) < 1e-4, "abar_999 = %.6g",
              s.alphas_cumprod[999]);
    cr_assert(fabs(sqrtf(s.alphas_cumprod[999]) / 0.0063528 - 1) < 1e-4);
    cr_assert(fabs(sqrtf(1 - s.alphas_cumprod[999]) - 0.99997979) < 1e-8);
    cr_assert_eq(s.final_alpha_cumprod, 1.0f);
    cr_assert_eq(s.alphas[0], 1.0f - s.betas[0]);
    sched_free(&s);
}

/* ------------------------------------------------------------------------------------------ */
/* set_timesteps                                                                               */

Test(schedule, set_timesteps_all_spacings) {
    NpyShape sh, shi;
    int64_t *flat = fixture_npy_i64(FIX("timesteps.npy"), &sh);
    int64_t *idx = fixture_npy_i64(FIX("timesteps_index.npy"), &shi);
    cr_assert_eq(shi.ndim, 2);
    cr_assert_eq(shi.shape[1], 6u);
    int valid = 0, refused = 0;
    for (size_t r = 0; r < shi.shape[0]; r++) {
        const int64_t *row = idx + 6 * r; /* kind, spacing, offset, n, start, length */
        SchedConfig cfg;
        sched_config_default(&cfg);
        cfg.timestep_spacing = (SchedSpacing)row[1];
        cfg.steps_offset = (int)row[2];
        NoiseSchedule s;
        JtError err = {{0}};
        cr_assert_eq(sched_init(&s, &cfg, &err), JT_OK, "%s", err.msg);
        int n = (int)row[3];
        const int64_t *want = flat + row[4];
        int ok = row[5] == n;
        for (int64_t i = 0; i < row[5]; i++)
            ok &= want[i] >= 0 && want[i] < s.T;
        int *got = malloc(sizeof(int) * (size_t)n);
        int rc = sched_set_timesteps(&s, n, got, &err);
        const char *sp = sched_spacing_name(cfg.timestep_spacing);
        if (ok) {
            cr_assert_eq(rc, JT_OK, "%s n=%d offset=%d: %s", sp, n, cfg.steps_offset, err.msg);
            for (int i = 0; i < n; i++)
                cr_assert_eq(got[i], want[i],
                             "%s n=%d offset=%d: timesteps[%d] = %d, diffusers %ld", sp, n,
                             cfg.steps_offset, i, got[i], (long)want[i]);
            valid++;
        } else {
            /* diffusers gives a list that indexes outside alphas_cumprod: jtrak refuses it. */
            cr_assert_eq(rc, JT_ERR, "%s n=%d offset=%d: accepted an invalid diffusers list", sp, n,
                         cfg.steps_offset);
            cr_assert(strstr(err.msg, "steps_offset") || strstr(err.msg, "timestep_spacing"),
                      "error does not name the field: %s", err.msg);
            refused++;
        }
        free(got);
        sched_free(&s);
    }
    cr_log_info("set_timesteps: %d lists equal to diffusers, %d invalid ones refused", valid,
                refused);
    cr_assert(refused >= 2, "the fixture should contain leading+offset n=1000 and trailing n=61");
    free(flat);
    free(idx);
}

Test(schedule, set_timesteps_documented_values) {
    SchedConfig cfg;
    sched_config_default(&cfg);
    NoiseSchedule s;
    JtError err = {{0}};
    cr_assert_eq(sched_init(&s, &cfg, &err), JT_OK);
    int ts[50];
    cr_assert_eq(sched_set_timesteps(&s, 50, ts, &err), JT_OK);
    cr_assert_eq(ts[0], 980);
    cr_assert_eq(ts[49], 0);
    cr_assert_eq(ddim_prev_timestep(&s, 0, 50), -20);
    cr_assert_eq(ddpm_prev_timestep(ts, 50, 0), 960);
    cr_assert_eq(ddpm_prev_timestep(ts, 50, 49), -1);
    cr_assert_eq(sched_set_timesteps(&s, 0, ts, &err), JT_ERR);
    cr_assert_eq(sched_set_timesteps(&s, 1001, ts, &err), JT_ERR);
    sched_free(&s);
}

/* ------------------------------------------------------------------------------------------ */
/* Steps                                                                                       */

typedef struct {
    float *xt, *eps, *z, *prev, *x0;
    size_t k;
} StepFixture;

static StepFixture load_steps(const char *prefix) {
    StepFixture f;
    const char *names[] = {"xt", "eps", "z", "prev", "x0"};
    float **dst[] = {&f.xt, &f.eps, &f.z, &f.prev, &f.x0};
    for (int i = 0; i < 5; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/sched/%s_%s.npy", JTRAK_FIXTURES, prefix, names[i]);
        NpyShape sh;
        *dst[i] = fixture_npy_f32(path, &sh);
        cr_assert_eq(sh.n % STEP_N, 0u);
        f.k = sh.n / STEP_N;
    }
    return f;
}

static void free_steps(StepFixture *f) {
    free(f->xt);
    free(f->eps);
    free(f->z);
    free(f->prev);
    free(f->x0);
}

Test(ddpm, step_matches_diffusers) {
    NpyShape sh;
    int64_t *meta = fixture_npy_i64(FIX("ddpm_step_meta.npy"), &sh);
    float *tc = fixture_npy_f32(FIX("ddpm_step_coeffs.npy"), NULL);
    StepFixture f = load_steps("ddpm_step");
    cr_assert_eq(sh.shape[0], f.k);
    for (size_t c = 0; c < f.k; c++) {
        const int64_t *m = meta + 4 * c; /* config id, n (0 = none), t, prev_t */
        NoiseSchedule s;
        load_config_id(&s, m[0]);
        int n = (int)m[1], t = (int)m[2], prev;
        if (n == 0) {
            prev = t - 1; /* before set_timesteps */
        } else {
            int *ts = malloc(sizeof(int) * (size_t)n);
            JtError err = {{0}};
            cr_assert_eq(sched_set_timesteps(&s, n, ts, &err), JT_OK, "%s", err.msg);
            int i = 0;
            while (i < n && ts[i] != t)
                i++;
            cr_assert(i < n, "t = %d not in the list", t);
            prev = ddpm_prev_timestep(ts, n, i);
            free(ts);
        }
        cr_assert_eq(prev, m[3], "case %zu: prev %d, diffusers %ld", c, prev, (long)m[3]);
        size_t o = c * STEP_N;
        char what[96];
        /* The scalars: C's vs torch's (MKL sqrt: 1-2 ulp). */
        DdpmCoeffs k = ddpm_coeffs(&s, t, prev);
        float mine[5] = {k.sqrt_beta_prod_t, k.sqrt_alpha_prod_t, k.pred_original_sample_coeff,
                         k.current_sample_coeff, k.std};
        snprintf(what, sizeof what, "ddpm cfg%ld n=%d t=%d scalars", (long)m[0], n, t);
        compare(what, mine, tc + 5 * c, t > 0 ? 5 : 4, 0, 3e-7);
        /* The per-element code with torch's scalars: bitwise. */
        float x_prev[STEP_N], x0[STEP_N];
        k.sqrt_beta_prod_t = tc[5 * c];
        k.sqrt_alpha_prod_t = tc[5 * c + 1];
        k.pred_original_sample_coeff = tc[5 * c + 2];
        k.current_sample_coeff = tc[5 * c + 3];
        k.std = tc[5 * c + 4];
        ddpm_step_apply(x_prev, x0, f.xt + o, f.eps + o, t > 0 ? f.z + o : NULL, STEP_N, &k);
        snprintf(what, sizeof what, "ddpm cfg%ld n=%d t=%d prev (torch scalars)", (long)m[0], n, t);
        compare(what, x_prev, f.prev + o, STEP_N, 0, 0);
        snprintf(what, sizeof what, "ddpm cfg%ld n=%d t=%d x0 (torch scalars)", (long)m[0], n, t);
        compare(what, x0, f.x0 + o, STEP_N, 0, 0);
        /* The whole C step. At t == 0 the step must not read z: pass NULL there. */
        ddpm_step(x_prev, x0, f.xt + o, f.eps + o, t > 0 ? f.z + o : NULL, STEP_N, &s, t, prev);
        snprintf(what, sizeof what, "ddpm cfg%ld n=%d t=%d prev_sample", (long)m[0], n, t);
        compare(what, x_prev, f.prev + o, STEP_N, 1e-6, 1e-6);
        snprintf(what, sizeof what, "ddpm cfg%ld n=%d t=%d pred_original", (long)m[0], n, t);
        compare(what, x0, f.x0 + o, STEP_N, 1e-6, 1e-6);
        /* In place (x_prev aliasing x_t) gives the same result. */
        float inplace[STEP_N];
        memcpy(inplace, f.xt + o, sizeof inplace);
        ddpm_step(inplace, NULL, inplace, f.eps + o, f.z + o, STEP_N, &s, t, prev);
        cr_assert(memcmp(inplace, x_prev, sizeof inplace) == 0, "in-place step differs");
        sched_free(&s);
    }
    free(meta);
    free(tc);
    free_steps(&f);
}

Test(ddim, step_matches_diffusers) {
    NpyShape sh;
    int64_t *meta = fixture_npy_i64(FIX("ddim_step_meta.npy"), &sh);
    float *tc = fixture_npy_f32(FIX("ddim_step_coeffs.npy"), NULL);
    float *eta = fixture_npy_f32(FIX("ddim_step_eta.npy"), NULL);
    StepFixture f = load_steps("ddim_step");
    cr_assert_eq(sh.shape[0], f.k);
    for (size_t c = 0; c < f.k; c++) {
        const int64_t *m = meta + 4 * c; /* config id, n, t, use_clipped_model_output */
        NoiseSchedule s;
        load_config_id(&s, m[0]);
        int n = (int)m[1], t = (int)m[2];
        size_t o = c * STEP_N;
        char what[96], tag[64];
        snprintf(tag, sizeof tag, "ddim cfg%ld n=%d t=%d eta=%.1f clip=%ld", (long)m[0], n, t,
                 (double)eta[c], (long)m[3]);
        /* The scalars: C's vs torch's (MKL sqrt: 1-2 ulp). */
        DdimCoeffs k = ddim_coeffs(&s, t, n, eta[c]);
        float mine[5] = {k.sqrt_beta_prod_t, k.sqrt_alpha_prod_t, k.sqrt_alpha_prod_t_prev,
                         k.direction_coeff, k.std_dev_t};
        snprintf(what, sizeof what, "%s scalars", tag);
        compare(what, mine, tc + 5 * c, 5, 0, 3e-7);
        /* The per-element code with torch's scalars: bitwise. */
        float x_prev[STEP_N], x0[STEP_N];
        k.sqrt_beta_prod_t = tc[5 * c];
        k.sqrt_alpha_prod_t = tc[5 * c + 1];
        k.sqrt_alpha_prod_t_prev = tc[5 * c + 2];
        k.direction_coeff = tc[5 * c + 3];
        k.std_dev_t = tc[5 * c + 4];
        ddim_step_apply(x_prev, x0, f.xt + o, f.eps + o, eta[c] > 0 ? f.z + o : NULL, STEP_N, &k,
                        m[3] != 0);
        snprintf(what, sizeof what, "%s prev (torch scalars)", tag);
        compare(what, x_prev, f.prev + o, STEP_N, 0, 0);
        snprintf(what, sizeof what, "%s x0 (torch scalars)", tag);
        compare(what, x0, f.x0 + o, STEP_N, 0, 0);
        /* The whole C step. */
        ddim_step(x_prev, x0, f.xt + o, f.eps + o, eta[c] > 0 ? f.z + o : NULL, STEP_N, &s, t, n,
                  eta[c], m[3] != 0);
        snprintf(what, sizeof what, "%s prev", tag);
        compare(what, x_prev, f.prev + o, STEP_N, 1e-6, 1e-6);
        snprintf(what, sizeof what, "%s x0", tag);
        compare(what, x0, f.x0 + o, STEP_N, 1e-6, 1e-6);
        sched_free(&s);
    }
    free(meta);
    free(tc);
    free(eta);
    free_steps(&f);
}

Test(schedule, add_noise_matches_diffusers) {
    NpyShape sh;
    float *x0 = fixture_npy_f32(FIX("add_noise_x0.npy"), &sh);
    float *eps = fixture_npy_f32(FIX("add_noise_eps.npy"), NULL);
    int64_t *t64 = fixture_npy_i64(FIX("add_noise_t.npy"), NULL);
    size_t B = sh.shape[0], per = sh.n / B;
    int t[16];
    cr_assert(B <= 16);
    for (size_t b = 0; b < B; b++)
        t[b] = (int)t64[b];
    const char *outs[] = {FIX("add_noise_out_linear.npy"), FIX("add_noise_out_cos.npy")};
    for (int c = 0; c < 2; c++) {
        NoiseSchedule s;
        load_config_id(&s, c);
        float *want = fixture_npy_f32(outs[c], NULL);
        float *got = malloc(sizeof(float) * sh.n);
        sched_add_noise(got, x0, eps, t, B, per, &s);
        /* sqrt(abar) by MKL in torch: 1 ulp on |values| <= ~4 */
        compare(c ? "add_noise cos" : "add_noise linear", got, want, sh.n, 1e-6, 0);
        free(want);
        free(got);
        sched_free(&s);
    }
    free(x0);
    free(eps);
    free(t64);
}

/* 10 DDIM steps (eta 0) with the fake model eps = 0.1 x: deterministic, compared at every step. */
Test(ddim, ten_step_loop_matches_diffusers) {
    NpyShape sh;
    float *x = fixture_npy_f32(FIX("ddim_loop_xT.npy"), NULL);
    int64_t *ts = fixture_npy_i64(FIX("ddim_loop_timesteps.npy"), &sh);
    float *want = fixture_npy_f32(FIX("ddim_loop_out.npy"), NULL);
    int n = (int)sh.n;
    NoiseSchedule s;
    load_config_id(&s, 3);
    int mine[64];
    JtError err = {{0}};
    cr_assert_eq(sched_set_timesteps(&s, n, mine, &err), JT_OK);
    float eps[STEP_N];
    for (int k = 0; k < n; k++) {
        cr_assert_eq(mine[k], ts[k]);
        for (int i = 0; i < STEP_N; i++)
            eps[i] = 0.1f * x[i];
        ddim_step(x, NULL, x, eps, NULL, STEP_N, &s, mine[k], n, 0.0f, false);
        char what[64];
        snprintf(what, sizeof what, "ddim loop step %d (t=%d)", k, mine[k]);
        /* 1-ulp scalar differences (MKL sqrt) do not grow over 10 contracting steps: 1e-6 */
        compare(what, x, want + (size_t)k * STEP_N, STEP_N, 1e-6, 0);
    }
    sched_free(&s);
    free(x);
    free(ts);
    free(want);
}

/* 10 DDPM steps with eps = 0.1 x + 0.05 and the noise diffusers' generator drew at each step. */
Test(ddpm, ten_step_loop_matches_diffusers) {
    NpyShape sh;
    float *x = fixture_npy_f32(FIX("ddpm_loop_xT.npy"), NULL);
    int64_t *ts = fixture_npy_i64(FIX("ddpm_loop_timesteps.npy"), &sh);
    float *z = fixture_npy_f32(FIX("ddpm_loop_z.npy"), NULL);
    float *want = fixture_npy_f32(FIX("ddpm_loop_out.npy"), NULL);
    int n = (int)sh.n;
    NoiseSchedule s;
    load_config_id(&s, 0);
    int mine[64];
    JtError err = {{0}};
    cr_assert_eq(sched_set_timesteps(&s, n, mine, &err), JT_OK);
    float eps[STEP_N];
    for (int k = 0; k < n; k++) {
        cr_assert_eq(mine[k], ts[k]);
        for (int i = 0; i < STEP_N; i++)
            eps[i] = 0.1f * x[i] + 0.05f;
        ddpm_step(x, NULL, x, eps, z + (size_t)k * STEP_N, STEP_N, &s, mine[k],
                  ddpm_prev_timestep(mine, n, k));
        char what[64];
        snprintf(what, sizeof what, "ddpm loop step %d (t=%d)", k, mine[k]);
        compare(what, x, want + (size_t)k * STEP_N, STEP_N, 1e-6, 0);
    }
    sched_free(&s);
    free(x);
    free(ts);
    free(z);
    free(want);
}

/* ------------------------------------------------------------------------------------------ */
/* scheduler_config.json                                                                       */

Test(config, diffusers_files_parse) {
    SchedConfig c;
    JtError err = {{0}};
    cr_assert_eq(sched_config_load(&c, FIX("ddpm_linear/scheduler_config.json"), &err), JT_OK, "%s",
                 err.msg);
    SchedConfig d;
    sched_config_default(&d);
    cr_assert_eq(c.num_train_timesteps, d.num_train_timesteps);
    cr_assert_eq(c.beta_start, d.beta_start);
    cr_assert_eq(c.beta_end, d.beta_end);
    cr_assert_eq(c.beta_schedule, SCHED_BETA_LINEAR);
    cr_assert(c.clip_sample);
    cr_assert_eq(c.timestep_spacing, SCHED_SPACING_LEADING);
    /* a folder works too */
    cr_assert_eq(sched_config_load(&c, FIX("ddim_offset1"), &err), JT_OK, "%s", err.msg);
    cr_assert(!c.set_alpha_to_one);
    cr_assert_eq(c.steps_offset, 1);
    cr_assert_eq(sched_config_load(&c, FIX("ddpm_scaled"), &err), JT_OK, "%s", err.msg);
    cr_assert_eq(c.beta_schedule, SCHED_BETA_SCALED_LINEAR);
    cr_assert_eq(c.beta_start, 0.00085);
    cr_assert_eq(c.clip_sample_range, 2.0);
    cr_assert_eq(c.timestep_spacing, SCHED_SPACING_LINSPACE);
    cr_assert_eq(sched_config_load(&c, FIX("ddpm_cos"), &err), JT_OK, "%s", err.msg);
    cr_assert_eq(c.beta_schedule, SCHED_BETA_SQUAREDCOS_CAP_V2);
    cr_assert(!c.clip_sample);
    cr_assert_eq(c.timestep_spacing, SCHED_SPACING_TRAILING);
}

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jtrak_sched_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL);
}

static void remove_tmpdir(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/scheduler_config.json", tmpdir);
    remove(p);
    rmdir(tmpdir);
}

/* Writes `text` as tmpdir/scheduler_config.json, loads it, expects failure; returns the message. */
static const char *load_bad(const char *text, JtError *err) {
    char p[512];
    snprintf(p, sizeof p, "%s/scheduler_config.json", tmpdir);
    FILE *f = fopen(p, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    fclose(f);
    SchedConfig c;
    cr_assert_eq(sched_config_load(&c, p, err), JT_ERR, "accepted: %s", text);
    cr_assert(strstr(err->msg, p) != NULL, "error does not name the file: %s", err->msg);
    cr_log_info("rejected as expected: %s", err->msg);
    return err->msg;
}

TestSuite(config_errors, .init = make_tmpdir, .fini = remove_tmpdir);

Test(config_errors, invalid_json) {
    JtError err = {{0}};
    load_bad("{\"num_train_timesteps\": 1000,, }", &err);
    cr_assert(strstr(err.msg, "invalid JSON"), "%s", err.msg);
}

Test(config_errors, unsupported_variance_type) {
    JtError err = {{0}};
    load_bad("{\"_class_name\": \"DDPMScheduler\", \"variance_type\": \"fixed_large\"}", &err);
    cr_assert(strstr(err.msg, "\"variance_type\"") && strstr(err.msg, "fixed_large"), "%s",
              err.msg);
}

Test(config_errors, unknown_field) {
    JtError err = {{0}};
    load_bad("{\"num_train_timesteps\": 1000, \"beta_shedule\": \"linear\"}", &err);
    cr_assert(strstr(err.msg, "\"beta_shedule\"") && strstr(err.msg, "unknown"), "%s", err.msg);
}

Test(config_errors, wrong_type) {
    JtError err = {{0}};
    load_bad("{\"num_train_timesteps\": \"1000\"}", &err);
    cr_assert(strstr(err.msg, "\"num_train_timesteps\"") && strstr(err.msg, "integer"), "%s",
              err.msg);
    load_bad("{\"clip_sample\": 1}", &err);
    cr_assert(strstr(err.msg, "\"clip_sample\""), "%s", err.msg);
    load_bad("{\"num_train_timesteps\": 1000.5}", &err);
    cr_assert(strstr(err.msg, "\"num_train_timesteps\""), "%s", err.msg);
}

Test(config_errors, unsupported_numerics) {
    JtError err = {{0}};
    load_bad("{\"prediction_type\": \"v_prediction\"}", &err);
    cr_assert(strstr(err.msg, "\"prediction_type\""), "%s", err.msg);
    load_bad("{\"thresholding\": true}", &err);
    cr_assert(strstr(err.msg, "\"thresholding\""), "%s", err.msg);
    load_bad("{\"rescale_betas_zero_snr\": true}", &err);
    cr_assert(strstr(err.msg, "\"rescale_betas_zero_snr\""), "%s", err.msg);
    load_bad("{\"beta_schedule\": \"sigmoid\"}", &err);
    cr_assert(strstr(err.msg, "\"beta_schedule\""), "%s", err.msg);
    load_bad("{\"timestep_spacing\": \"karras\"}", &err);
    cr_assert(strstr(err.msg, "\"timestep_spacing\""), "%s", err.msg);
    load_bad("{\"trained_betas\": [0.1, 0.2]}", &err);
    cr_assert(strstr(err.msg, "\"trained_betas\""), "%s", err.msg);
    load_bad("{\"num_train_timesteps\": 1}", &err);
    cr_assert(strstr(err.msg, "\"num_train_timesteps\""), "%s", err.msg);
    load_bad("{\"beta_end\": 1.5}", &err);
    cr_assert(strstr(err.msg, "\"beta_end\""), "%s", err.msg);
    load_bad("{\"steps_offset\": 1, \"steps_offset\": 0}", &err);
    cr_assert(strstr(err.msg, "\"steps_offset\""), "%s", err.msg);
    load_bad("[1, 2]", &err);
}

Test(config_errors, missing_file) {
    SchedConfig c;
    JtError err = {{0}};
    cr_assert_eq(sched_config_load(&c, "/nonexistent/jtrak/scheduler_config.json", &err), JT_ERR);
    cr_assert(strstr(err.msg, "/nonexistent/jtrak/scheduler_config.json"), "%s", err.msg);
}

/* Save then load: every field survives; the file has no temporary left beside it. */
Test(config_errors, save_round_trip) {
    SchedConfig c, back;
    sched_config_default(&c);
    c.num_train_timesteps = 500;
    c.beta_start = 0.00085;
    c.beta_end = 0.012;
    c.beta_schedule = SCHED_BETA_SCALED_LINEAR;
    c.clip_sample = false;
    c.clip_sample_range = 1.5;
    c.timestep_spacing = SCHED_SPACING_TRAILING;
    c.steps_offset = 1;
    c.set_alpha_to_one = false;
    JtError err = {{0}};
    cr_assert_eq(sched_config_save(&c, tmpdir, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(sched_config_load(&back, tmpdir, &err), JT_OK, "%s", err.msg);
    cr_assert(memcmp(&c, &back, sizeof c) == 0, "round trip changed the config");
    sched_config_default(&c);
    cr_assert_eq(sched_config_save(&c, tmpdir, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(sched_config_load(&back, tmpdir, &err), JT_OK, "%s", err.msg);
    cr_assert(memcmp(&c, &back, sizeof c) == 0, "round trip changed the default config");
}
