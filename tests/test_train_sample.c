/* test_train_sample.c: training and sampling end to end on a tiny U-Net and tiny synthetic data:
 * a run stopped twice and resumed ends bitwise identical to an uninterrupted one (and to a run
 * with another thread count); every output file loads; a trajectory replays exactly through the
 * sampler steps and round-trips through its file; DDIM (eta 0) from fixed noise reproduces
 * diffusers' DDIMScheduler loop. */
#include "diffusion/sampler.h"
#include "diffusion/train.h"
#include "diffusion/trajectory.h"
#include "helpers/tiny_unet.h"
#include "helpers/tmpdir.h"
#include "helpers/numcheck.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "unet/unet.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* 24 random 8x8 uint8 images with labels 0..2, written as npy and loaded as a Dataset. */
static void tiny_data(Dataset *ds) {
    enum { N = 24 };
    uint8_t pix[N * 64];
    int64_t labels[N];
    for (int i = 0; i < N * 64; i++) pix[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int i = 0; i < N; i++) labels[i] = i % 3;
    char img[128], lab[128], src[300];
    snprintf(img, sizeof img, "%s/images.npy", test_tmp);
    snprintf(lab, sizeof lab, "%s/labels.npy", test_tmp);
    size_t shape[3] = {N, 8, 8}, lshape[1] = {N};
    JtError err;
    cr_assert(npy_write(img, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(lab, NPY_I64, 1, lshape, labels, &err) == JT_OK, "%s", err.msg);
    DatasetSpec spec;
    data_spec_init(&spec);
    snprintf(src, sizeof src, "npy:%s,%s", img, lab);
    cr_assert(data_spec_set(&spec, "data", src, &err) == JT_OK, "%s", err.msg);
    cr_assert(data_load(&spec, ds, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&spec);
}

static void tiny_recipe(TrainRecipe *r) {
    train_recipe_default(r);
    r->batch = 4;
    r->steps = 6;
    r->lr = 1e-3;
    r->warmup = 2;
    r->random_flip = 1;
    r->seed = 7;
}

static int train_into(const char *sub, const TrainRecipe *r, long stop_after, int *stopped,
                      JtError *err) {
    UNetConfig cfg;
    test_tiny_unet_config(&cfg);
    SchedConfig sc;
    sched_config_default(&sc);
    Dataset ds = {0};
    tiny_data(&ds);
    char out[200];
    snprintf(out, sizeof out, "%s/%s", test_tmp, sub);
    TrainControl ctl = {out, 0, 2, stop_after, 1};
    int rc = train_run(&cfg, &sc, &ds, r, &ctl, stopped, err);
    data_free(&ds);
    return rc;
}

/* The four slabs of a state file, concatenated. */
static float *read_state(const char *sub, size_t *n) {
    char path[200];
    snprintf(path, sizeof path, "%s/%s/train_state.safetensors", test_tmp, sub);
    StFile f;
    JtError err;
    cr_assert(st_open(&f, path, &err) == JT_OK, "%s", err.msg);
    size_t total = 0;
    for (int i = 0; i < f.n_tensors; i++) total += (size_t)f.tensors[i].numel;
    float *all = malloc(total * sizeof *all);
    size_t at = 0;
    for (int i = 0; i < f.n_tensors; i++) { /* header order is the sorted name order */
        cr_assert(st_read_f32(&f, i, all + at, &err) == JT_OK, "%s", err.msg);
        at += (size_t)f.tensors[i].numel;
    }
    cr_assert(strcmp(st_metadata_get(&f, "step"), "6") == 0);
    st_close(&f);
    *n = total;
    return all;
}

TestSuite(train, .init = test_tmp_setup, .fini = test_tmp_teardown);

Test(train, resumed_run_equals_uninterrupted_run) {
    TrainRecipe r;
    tiny_recipe(&r);
    JtError err;
    int stopped;
    cr_assert(train_into("full", &r, 0, &stopped, &err) == JT_OK, "%s", err.msg);
    cr_assert(stopped == 0);
    /* Killed twice: after 2 steps, after 3 more; then finished. */
    cr_assert(train_into("resumed", &r, 2, &stopped, &err) == JT_OK, "%s", err.msg);
    cr_assert(stopped == 1);
    cr_assert(train_into("resumed", &r, 3, &stopped, &err) == JT_OK, "%s", err.msg);
    cr_assert(stopped == 1);
    cr_assert(train_into("resumed", &r, 0, &stopped, &err) == JT_OK, "%s", err.msg);
    cr_assert(stopped == 0);
    /* One thread instead of two: the same draws and fixed-order reductions. */
    omp_set_num_threads(1);
    cr_assert(train_into("one_thread", &r, 0, &stopped, &err) == JT_OK, "%s", err.msg);
    omp_set_num_threads(2);

    size_t na, nb, nc;
    float *a = read_state("full", &na), *b = read_state("resumed", &nb), *c = read_state("one_thread", &nc);
    cr_assert(na == nb && na == nc);
    cr_assert(memcmp(a, b, na * sizeof *a) == 0, "resumed run differs from the uninterrupted one");
    cr_assert(memcmp(a, c, na * sizeof *a) == 0, "1-thread run differs from the 2-thread one");
    free(a), free(b), free(c);

    /* Every output file is there and loads. */
    char path[300];
    UNet *net;
    snprintf(path, sizeof path, "%s/full", test_tmp);
    cr_assert(model_load(path, &net, &err) == JT_OK, "%s", err.msg);
    unet_free(net);
    snprintf(path, sizeof path, "%s/full/raw", test_tmp);
    cr_assert(model_load(path, &net, &err) == JT_OK, "%s", err.msg);
    unet_free(net);
    SchedConfig sc;
    sched_config_default(&sc);
    snprintf(path, sizeof path, "%s/full/scheduler_config.json", test_tmp);
    cr_assert(sched_config_load(&sc, path, &err) == JT_OK, "%s", err.msg);

    snprintf(path, sizeof path, "%s/full/training.json", test_tmp);
    cJSON *rec = json_load_file(path, &err);
    cr_assert(rec != NULL, "%s", err.msg);
    cr_expect_eq(cJSON_GetObjectItem(rec, "step")->valueint, 6);
    cr_expect(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "dataset"), "fingerprint")));
    cJSON_Delete(rec);

    snprintf(path, sizeof path, "%s/full/log.jsonl", test_tmp);
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL);
    char buf[4096];
    int lines = 0;
    while (fgets(buf, sizeof buf, f)) {
        cJSON *line = cJSON_Parse(buf);
        cr_assert(line && cJSON_GetObjectItem(line, "loss"), "log.jsonl line %d: %s", lines, buf);
        cJSON_Delete(line);
        lines++;
    }
    fclose(f);
    cr_expect_eq(lines, 3, "log.jsonl: %d lines, want one per 2 steps", lines);
}

Test(train, resume_refuses_another_recipe) {
    TrainRecipe r;
    tiny_recipe(&r);
    JtError err;
    int stopped;
    cr_assert(train_into("run", &r, 2, &stopped, &err) == JT_OK, "%s", err.msg);
    r.lr = 5e-4;
    cr_assert(train_into("run", &r, 0, &stopped, &err) == JT_ERR);
    cr_assert(strstr(err.msg, "another recipe") && strstr(err.msg, "train_state.safetensors"), "%s",
              err.msg);
}

/* Loads the tiny model trained by train_into("m"). */
static UNet *trained_model(void) {
    TrainRecipe r;
    tiny_recipe(&r);
    JtError err;
    int stopped;
    cr_assert(train_into("m", &r, 0, &stopped, &err) == JT_OK, "%s", err.msg);
    char path[200];
    snprintf(path, sizeof path, "%s/m", test_tmp);
    UNet *net;
    cr_assert(model_load(path, &net, &err) == JT_OK, "%s", err.msg);
    return net;
}

Test(train, trajectory_replays_exactly_and_round_trips) {
    UNet *net = trained_model();
    NoiseSchedule sched;
    SchedConfig sc;
    sched_config_default(&sc);
    JtError err;
    cr_assert(sched_init(&sched, &sc, &err) == JT_OK);
    SampleOptions opt = {SAMPLER_DDPM, 10, 0.0f, 3, 3, 2, 1, NULL, 1.0f};
    Trajectory tr, tr1, back;
    cr_assert(traj_sample(net, &sched, &opt, NULL, &tr, &err) == JT_OK, "%s", err.msg);
    opt.batch = 1; /* batching must not change any sample */
    cr_assert(traj_sample(net, &sched, &opt, NULL, &tr1, &err) == JT_OK, "%s", err.msg);
    size_t D = 64, nSD = (size_t)tr.n * tr.S * D;
    cr_assert(memcmp(tr.x_t, tr1.x_t, nSD * sizeof(float)) == 0, "batch size changed x_t");
    cr_assert(memcmp(tr.x_0, tr1.x_0, tr.n * D * sizeof(float)) == 0);

    /* Replay: step k from the stored x_t with the stored noise gives the stored x0_hat and the
     * next x_t (the last step gives x_0), bit for bit. */
    UNetRun *run;
    cr_assert(unet_run_create(&run, net, 1, 8, 8, UNET_RUN_FORWARD_ONLY, &err) == JT_OK);
    float eps[64], xp[64], x0[64];
    for (int i = 0; i < tr.n; i++)
        for (int k = 0; k < tr.S; k++) {
            const float *xt = tr.x_t + ((size_t)i * tr.S + k) * D;
            float t = (float)tr.timesteps[k];
            unet_forward(net, run, 1, eps, xt, &t, NULL);
            ddpm_step(xp, x0, xt, eps, tr.noise + ((size_t)i * tr.S + k) * D, D, &sched,
                      tr.timesteps[k], ddpm_prev_timestep(tr.timesteps, tr.S, k));
            const float *next = k + 1 < tr.S ? tr.x_t + ((size_t)i * tr.S + k + 1) * D : tr.x_0 + i * D;
            cr_assert(memcmp(xp, next, sizeof xp) == 0, "sample %d step %d does not replay", i, k);
            cr_assert(memcmp(x0, tr.x0_hat + ((size_t)i * tr.S + k) * D, sizeof x0) == 0);
        }
    unet_run_free(run);
    /* The last DDPM step (t = 0) adds no noise. */
    for (size_t e = 0; e < D; e++) cr_assert(tr.noise[(size_t)(tr.S - 1) * D + e] == 0.0f);

    /* Regeneration with the same model replays the stored noise: from x_T and from a middle step
     * it lands exactly on x_0. */
    float regen[64];
    for (int k0 = 0; k0 < tr.S; k0 += tr.S / 2) {
        cr_assert(traj_replay(net, &sched, &tr, 2, k0, regen, &err) == JT_OK, "%s", err.msg);
        cr_assert(memcmp(regen, tr.x_0 + 2 * D, sizeof regen) == 0, "replay from step %d differs", k0);
    }

    char path[200];
    snprintf(path, sizeof path, "%s/traj.safetensors", test_tmp);
    cr_assert(traj_save(&tr, path, &err) == JT_OK, "%s", err.msg);
    cr_assert(traj_load(&back, path, &err) == JT_OK, "%s", err.msg);
    cr_assert(back.n == tr.n && back.S == tr.S && back.seed == tr.seed);
    cr_assert(back.model_fingerprint == traj_model_fingerprint(net));
    cr_assert(memcmp(back.timesteps, tr.timesteps, tr.S * sizeof(int)) == 0);
    cr_assert(memcmp(back.x_t, tr.x_t, nSD * sizeof(float)) == 0);
    cr_assert(memcmp(back.x0_hat, tr.x0_hat, nSD * sizeof(float)) == 0);
    cr_assert(memcmp(back.noise, tr.noise, nSD * sizeof(float)) == 0);
    cr_assert(memcmp(back.x_T, tr.x_T, tr.n * D * sizeof(float)) == 0);
    traj_free(&tr), traj_free(&tr1), traj_free(&back);
    sched_free(&sched);
    unet_free(net);
}

Test(sampler, ddim_eta0_matches_diffusers_loop) {
    char path[400];
    snprintf(path, sizeof path, "%s/unet/fm3_12x12", JTRAK_FIXTURES);
    UNet *net;
    JtError err;
    cr_assert(model_load(path, &net, &err) == JT_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/sampler/ddim_fm3_12x12.safetensors", JTRAK_FIXTURES);
    StFile f;
    cr_assert(st_open(&f, path, &err) == JT_OK, "%s", err.msg);
    float x_T[2 * 144], x_0[2 * 144], x0_hat[2 * 10 * 144];
    cr_assert(st_read_f32(&f, st_find(&f, "x_T"), x_T, &err) == JT_OK);
    cr_assert(st_read_f32(&f, st_find(&f, "x_0"), x_0, &err) == JT_OK);
    cr_assert(st_read_f32(&f, st_find(&f, "x0_hat"), x0_hat, &err) == JT_OK);
    st_close(&f);
    NoiseSchedule sched;
    SchedConfig sc;
    sched_config_default(&sc);
    cr_assert(sched_init(&sched, &sc, &err) == JT_OK);
    SampleOptions opt = {SAMPLER_DDIM, 10, 0.0f, 0, 2, 2, 1, NULL, 1.0f};
    Trajectory tr;
    cr_assert(traj_sample(net, &sched, &opt, x_T, &tr, &err) == JT_OK, "%s", err.msg);
    /* unet2d.md section 7: ~1e-4 per U-Net evaluation, compounding over 10 steps: 1e-3. */
    expect_close("DDIM x0_hat vs diffusers", tr.x0_hat, x0_hat, 2 * 10 * 144, 1e-3, 1e-3);
    expect_close("DDIM x_0 vs diffusers", tr.x_0, x_0, 2 * 144, 1e-3, 1e-3);
    traj_free(&tr);
    sched_free(&sched);
    unet_free(net);
}
