/* test_hostile.c: hostile input (issue 17 items 5, 6 and 8): absurd sizes are refused with the
 * stated limit or a memory estimate before any work, non-finite values in weights and artifacts are
 * refused naming the file, the tensor and the first bad index, and file-content bytes never make
 * an error message span lines. Each test failed before its fix. */
#include "core/common.h"
#include "diffusion/schedule.h"
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/tiny_unet.h"
#include "helpers/tmpdir.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "unet/config.h"
#include "unet/unet.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_err[8192];

TestSuite(hostile, .init = test_tmp_setup, .fini = test_tmp_teardown);

static void write_text(const char *sub, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    FILE *f = fopen(p, "wb");
    cr_assert(f != NULL);
    cr_assert(fwrite(text, 1, strlen(text), f) == strlen(text));
    fclose(f);
}

/* Runs jtrak; checks the status and one stderr line "jtrak CMD: ..." holding every `want`. */
/* One clear error line and the exit status (tests/helpers/cli_run.h). */
#define expect_failure(...) cli_expect_failure(g_err, sizeof g_err, __VA_ARGS__)

/* A 3-level config.json with the given channels, sample size and extra fields. */
static void write_config(const char *sub, const char *channels, const char *sample,
                         const char *extra) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"_class_name\":\"UNet2DModel\",\"block_out_channels\":[%s],"
             "\"down_block_types\":[\"DownBlock2D\",\"DownBlock2D\",\"DownBlock2D\"],"
             "\"up_block_types\":[\"UpBlock2D\",\"UpBlock2D\",\"UpBlock2D\"],"
             "\"sample_size\":%s%s}",
             channels, sample, extra);
    write_text(sub, text);
}

/* ---- item 5: absurd sizes ---- */

Test(hostile, config_sizes_beyond_the_stated_limits_are_refused) {
    static const struct {
        const char *channels, *sample, *extra, *field, *why;
    } cases[] = {
        {"1000000,64,64", "32", "", "block_out_channels[0]", "at most 16384 channels"},
        {"64,64,64", "30000", "", "sample_size", "at most 8192 pixels"},
        {"64,64,64", "[32, 9000]", "", "sample_size[1]", "at most 8192 pixels"},
        {"64,64,64", "32", ",\"layers_per_block\":100000", "layers_per_block", "at most 32"},
        {"64,64,64", "32", ",\"time_embedding_dim\":1000000", "time_embedding_dim",
         "at most 65536"},
        {"64,64,64", "32", ",\"in_channels\":5000", "in_channels", "at most 1024"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_config("c.json", cases[i].channels, cases[i].sample, cases[i].extra);
        char field[96];
        snprintf(field, sizeof field, "field '%s'", cases[i].field);
        expect_failure(1, "info", (const char *[]){"c.json", field, cases[i].why, NULL},
                       "info %s/c.json", test_tmp);
    }
}

Test(hostile, validate_states_the_limits_too) {
    UNetConfig c;
    test_tiny_unet_config(&c);
    c.block_out_channels[0] = 1 << 20;
    JtError err;
    cr_assert_eq(unet_config_validate(&c, "cfg", &err), JT_ERR);
    cr_expect(strstr(err.msg, "at most 16384") != NULL, "%s", err.msg);
    test_tiny_unet_config(&c);
    c.layers_per_block = 1000;
    cr_assert_eq(unet_config_validate(&c, "cfg", &err), JT_ERR);
    cr_expect(strstr(err.msg, "'layers_per_block'") != NULL, "%s", err.msg);
}

/* Sizes within the limits whose memory no machine has: the estimate is refused before any
 * allocation (before the fix: SIGABRT from xmalloc, or signed overflow under UBSan). */
Test(hostile, memory_beyond_this_machine_is_refused_with_the_estimate) {
    write_config("big.json", "64,64,64", "[4096, 4096]", "");
    expect_failure(1, "info",
                   (const char *[]){"a training batch of 64 at 4096x4096", "needs", "PiB",
                                    "this machine has", NULL},
                   "info %s/big.json", test_tmp);
    write_config("wide.json", "16384,16384,16384", "32", "");
    expect_failure(1, "info", (const char *[]){"parameters needs", "GiB", "this machine has", NULL},
                   "info %s/wide.json", test_tmp);
}

Test(hostile, many_layers_per_block_build_within_the_limit) {
    /* the skip stack was a fixed 256 entries: 8 levels x 32 layers overflowed it (a CHECK) */
    UNetConfig c;
    test_tiny_unet_config(&c);
    c.layers_per_block = UNET_MAX_LAYERS_PER_BLOCK;
    c.n_levels = 8;
    for (int i = 0; i < 8; i++) {
        c.block_out_channels[i] = 8;
        c.down_attn[i] = c.up_attn[i] = 0;
    }
    c.norm_num_groups = 4;
    c.add_attention = 0;
    JtError err;
    UNet *net;
    cr_assert_eq(unet_create(&net, &c, &err), JT_OK, "%s", err.msg);
    UNetRun *run;
    cr_assert_eq(unet_run_create(&run, net, 1, 128, 128, UNET_RUN_FORWARD_ONLY, &err), JT_OK, "%s",
                 err.msg);
    unet_run_free(run);
    unet_free(net);
}

Test(hostile, size_helpers) {
    size_t r;
    cr_expect(!jt_add_size(SIZE_MAX, 1, &r));
    cr_expect(jt_add_size(2, 3, &r) && r == 5);
    cr_expect_eq(jt_sat_mul(SIZE_MAX / 2, 3), SIZE_MAX);
    cr_expect_eq(jt_sat_add(SIZE_MAX, 1), SIZE_MAX);
    char b[32];
    cr_expect_str_eq(jt_format_bytes((size_t)812 << 30, b, sizeof b), "812 GiB");
    cr_expect_str_eq(jt_format_bytes(SIZE_MAX, b, sizeof b), "more than 16 EiB");
    JtError err;
    cr_expect_eq(jt_check_memory(SIZE_MAX, "the thing", &err), JT_ERR);
    cr_expect(strstr(err.msg, "the thing needs more than 16 EiB; this machine has") != NULL, "%s",
              err.msg);
    float x[4] = {1, 2, NAN, INFINITY};
    cr_expect_eq(jt_first_nonfinite(x, 4), 2);
    cr_expect_eq(jt_first_nonfinite(x, 2), 2);
}

/* 6 random 8x8 gray images (labels 0..2) as img.npy/lab.npy, and an 8x8 gray model folder m. */
static const char *TINY_CFG =
    "{\"_class_name\":\"UNet2DModel\",\"sample_size\":8,\"in_channels\":1,\"out_channels\":1,"
    "\"block_out_channels\":[8,16],\"layers_per_block\":1,\"norm_num_groups\":4,"
    "\"down_block_types\":[\"DownBlock2D\",\"DownBlock2D\"],"
    "\"up_block_types\":[\"UpBlock2D\",\"UpBlock2D\"]}";

static void write_tiny_data(void) {
    uint8_t pix[6 * 64];
    int64_t labels[6] = {0, 1, 2, 0, 1, 2};
    for (int i = 0; i < 6 * 64; i++)
        pix[i] = (uint8_t)(i * 37);
    char p[512];
    size_t shape[3] = {6, 8, 8}, ls[1] = {6};
    JtError err;
    snprintf(p, sizeof p, "%s/img.npy", test_tmp);
    cr_assert(npy_write(p, NPY_U8, 3, shape, pix, &err) == JT_OK);
    snprintf(p, sizeof p, "%s/lab.npy", test_tmp);
    cr_assert(npy_write(p, NPY_I64, 1, ls, labels, &err) == JT_OK);
}

static void make_tiny_model(void) {
    write_text("tiny.json", TINY_CFG);
    char args[1024];
    snprintf(args, sizeof args, "init --config %s/tiny.json --out %s/m", test_tmp, test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
}

static int exists(const char *sub) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    struct stat sb;
    return stat(p, &sb) == 0;
}

Test(hostile, featurize_checks_k_before_any_row) {
    write_tiny_data();
    make_tiny_model();
    /* k > n without a ridge: singular for sure, said before the rows are computed (before the
     * fix: every row, then the kernel's refusal) */
    expect_failure(1, "featurize",
                   (const char *[]){"--k 64 with 6 training images", "use --k 6 or less",
                                    "--auto-ridge", NULL},
                   "featurize --models %s/m --data npy:%s/img.npy --k 64 --S 1 --out %s/s --quiet",
                   test_tmp, test_tmp, test_tmp);
    cr_expect(!exists("s"), "a refused featurize left its store");
    /* the kernel's k x k memory (before the fix: every row, then out of memory) */
    expect_failure(1, "featurize",
                   (const char *[]){"--k 1048576", "kernel", "TiB", "this machine has", NULL},
                   "featurize --models %s/m --data npy:%s/img.npy --k 1048576 --S 1 "
                   "--auto-ridge --out %s/s --quiet",
                   test_tmp, test_tmp, test_tmp);
    cr_expect(!exists("s"), "a refused featurize left its store");
}

/* Rewrites "topk": N in a score folder's topk.json. */
static void patch_topk(const char *folder, const char *value) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s/topk.json", test_tmp, folder);
    FILE *f = fopen(p, "rb");
    cr_assert(f != NULL);
    static char text[1 << 20], out[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *k = strstr(text, "\"topk\":");
    cr_assert(k != NULL, "no topk field in %s", text);
    char *end = k + 7;
    while (*end == ' ' || *end == '\t' || (*end >= '0' && *end <= '9'))
        end++;
    snprintf(out, sizeof out, "%.*s\"topk\": %s%s", (int)(k - text), text, value, end);
    f = fopen(p, "wb");
    cr_assert(f != NULL);
    fputs(out, f);
    fclose(f);
}

Test(hostile, report_refuses_an_absurd_topk) {
    write_tiny_data();
    char args[1024];
    snprintf(args, sizeof args,
             "score --method pixel --data npy:%s/img.npy --targets-data npy:%s/img.npy "
             "--targets-limit 2 --topk 2 --out %s/sc --quiet",
             test_tmp, test_tmp, test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    patch_topk("sc", "1000000000000");
    /* before the fix: valueint saturated at INT_MAX and the cells allocation aborted */
    expect_failure(1, "report", (const char *[]){"topk.json", "'topk'", "100000", NULL},
                   "report --scores %s/sc", test_tmp);
    cr_expect(!exists("sc/report.html"));
    /* more than the training rows, within the limit: the lists cannot hold more, so it reports */
    patch_topk("sc", "50000");
    snprintf(args, sizeof args, "report --scores %s/sc", test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
}

/* ---- item 6: NaN and Inf ---- */

/* Overwrites float32 entry `index` of safetensors tensor `name` in test_tmp/sub with v. */
static void poke_st(const char *sub, const char *name, size_t index, float v) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    StFile f;
    JtError err;
    cr_assert_eq(st_open(&f, p, &err), JT_OK, "%s", err.msg);
    int i = st_find(&f, name);
    cr_assert(i >= 0 && f.tensors[i].dtype == ST_F32, "%s: no F32 tensor %s", p, name);
    long off = (long)(f.data_start + f.tensors[i].begin + 4 * index);
    st_close(&f);
    FILE *fp = fopen(p, "r+b");
    cr_assert(fp && fseek(fp, off, SEEK_SET) == 0 && fwrite(&v, 4, 1, fp) == 1);
    fclose(fp);
}

/* Overwrites float32 entry `index` of the .npy test_tmp/sub with v. */
static void poke_npy(const char *sub, size_t index, float v) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    NpyHeader h;
    JtError err;
    cr_assert_eq(npy_read_header(p, &h, &err), JT_OK, "%s", err.msg);
    FILE *fp = fopen(p, "r+b");
    cr_assert(fp && fseek(fp, (long)(h.data_offset + 4 * index), SEEK_SET) == 0 &&
              fwrite(&v, 4, 1, fp) == 1);
    fclose(fp);
}

Test(hostile, nan_weights_are_refused_at_load) {
    make_tiny_model();
    poke_st("m/diffusion_pytorch_model.safetensors", "conv_in.weight", 5, NAN);
    /* before the fix: exit 0 and NaN samples */
    expect_failure(1, "sample",
                   (const char *[]){"diffusion_pytorch_model.safetensors",
                                    "tensor 'conv_in.weight'", "entry 5 is NaN", NULL},
                   "sample --model %s/m --n 2 --steps 2 --sampler ddim --out %s/s --quiet",
                   test_tmp, test_tmp);
    cr_expect(!exists("s"));
}

Test(hostile, nan_sampler_inputs_and_outputs_stop_the_run) {
    make_tiny_model();
    float noise[2 * 64];
    for (int i = 0; i < 128; i++)
        noise[i] = 0.01f * (float)(i % 7);
    noise[70] = INFINITY;
    char p[512];
    size_t shape[4] = {2, 1, 8, 8};
    JtError err;
    snprintf(p, sizeof p, "%s/noise.npy", test_tmp);
    cr_assert_eq(npy_write(p, NPY_F32, 4, shape, noise, &err), JT_OK);
    expect_failure(1, "sample", (const char *[]){"noise.npy", "entry 70 is +Inf", NULL},
                   "sample --model %s/m --noise %s --steps 2 --sampler ddim --out %s/s --quiet",
                   test_tmp, p, test_tmp);
    cr_expect(!exists("s"));

    /* a network whose prediction is NaN (weights set in memory): the sampler stops */
    UNetConfig c;
    test_tiny_unet_config(&c);
    UNet *net;
    cr_assert_eq(unet_create(&net, &c, &err), JT_OK, "%s", err.msg);
    float *P = unet_params(net);
    for (size_t i = 0; i < unet_num_params(net); i++)
        P[i] = NAN;
    SchedConfig sc;
    sched_config_default(&sc);
    NoiseSchedule sched;
    cr_assert_eq(sched_init(&sched, &sc, &err), JT_OK, "%s", err.msg);
    SampleOptions o = {.sampler = SAMPLER_DDIM, .steps = 3, .n = 2, .batch = 2, .quiet = 1};
    Trajectory tr = {0};
    cr_assert_eq(traj_sample(net, &sched, &o, NULL, &tr, &err), JT_ERR);
    cr_expect(strstr(err.msg, "sample 0") && strstr(err.msg, "not finite"), "%s", err.msg);
    traj_free(&tr);
    sched_free(&sched);
    unet_free(net);
}

/* A tiny model, two DDIM samples and a feature store of the 6 tiny images. */
static void make_store(void) {
    write_tiny_data();
    make_tiny_model();
    char args[2048];
    snprintf(args, sizeof args,
             "sample --model %s/m --n 2 --steps 2 --sampler ddim --out %s/s --quiet", test_tmp,
             test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(args, sizeof args,
             "featurize --models %s/m --data npy:%s/img.npy --k 4 --S 1 --auto-ridge "
             "--out %s/f --quiet",
             test_tmp, test_tmp, test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
}

Test(hostile, nan_in_artifacts_is_refused_naming_the_file) {
    make_store();
    const char *score = "score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/o "
                        "--R 1 --quiet";
    char args[2048];
    snprintf(args, sizeof args, score, test_tmp, test_tmp, test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "the unpoked store scores: %s", g_err);
    test_rm_tree(strcat(strcpy(args, test_tmp), "/o"));

    poke_npy("f/model_0/features.npy", 4 * 3 + 1, NAN); /* row 3, feature 1 */
    expect_failure(1, "score",
                   (const char *[]){"features.npy", "training row 3", "entry 1 is NaN", NULL},
                   score, test_tmp, test_tmp, test_tmp);
    cr_expect(!exists("o"));
    poke_npy("f/model_0/features.npy", 4 * 3 + 1, 0.5f);

    poke_npy("f/model_0/kernel.npy", 6, -INFINITY);
    expect_failure(1, "score",
                   (const char *[]){"kernel.npy", "the kernel", "entry 6 is -Inf", NULL}, score,
                   test_tmp, test_tmp, test_tmp);
    cr_expect(!exists("o"));
    poke_npy("f/model_0/kernel.npy", 6, 0.0f);

    poke_st("s/trajectory.safetensors", "x0_hat", 3, NAN);
    expect_failure(
        1, "score",
        (const char *[]){"trajectory.safetensors", "tensor 'x0_hat'", "entry 3 is NaN", NULL},
        score, test_tmp, test_tmp, test_tmp);
    cr_expect(!exists("o"));
}

/* ---- item 8: smaller ---- */

Test(hostile, a_bad_data_option_is_reported_as_itself) {
    /* before the fix: "unexpected argument '--fit'" (the options after it were left unread) */
    static const struct {
        const char *opts, *want;
    } cases[] = {
        {"--data bogus:x --fit pad", "--data bogus:x"},
        {"--limit -3 --fit pad", "--limit -3"},
        {"--data npy: --fit pad", "--data npy:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        expect_failure(2, "train", (const char *[]){cases[i].want, NULL},
                       "train --config t8 %s --out %s/o --quiet", cases[i].opts, test_tmp);
        cr_expect(strstr(g_err, "unexpected argument") == NULL, "%s", g_err);
    }
    expect_failure(1, "train", (const char *[]){"nonesuch", NULL},
                   "train --config nonesuch --data npy:x --out %s/o --quiet", test_tmp);
    cr_expect(!exists("o"));
}

Test(hostile, file_bytes_never_break_the_message_line) {
    write_config("c.json", "64,64,64", "32", ",\"act_fn\":\"si\\nlu\\u001b[31m\\r\"");
    expect_failure(1, "info", (const char *[]){"field 'act_fn'", "si\\x0alu\\x1b[31m\\x0d", NULL},
                   "info %s/c.json", test_tmp);
    JtError err;
    jt_fail(&err, "a%cb%cc", '\n', '\t');
    cr_expect_str_eq(err.msg, "a\\x0ab\\x09c");
}

Test(hostile, a_fifo_in_place_of_a_file_is_refused, .timeout = 30) {
    make_tiny_model();
    char p[512];
    snprintf(p, sizeof p, "%s/m/diffusion_pytorch_model.safetensors", test_tmp);
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(mkfifo(p, 0600), 0);
    /* before the fix: fopen blocked forever waiting for a writer */
    expect_failure(
        1, "sample",
        (const char *[]){"diffusion_pytorch_model.safetensors", "not a regular file", "FIFO", NULL},
        "sample --model %s/m --n 1 --steps 2 --sampler ddim --out %s/s --quiet", test_tmp,
        test_tmp);
    snprintf(p, sizeof p, "%s/fifo.json", test_tmp);
    cr_assert_eq(mkfifo(p, 0600), 0);
    expect_failure(1, "info", (const char *[]){"fifo.json", "FIFO", NULL}, "info %s", p);
    snprintf(p, sizeof p, "%s/fifo.npy", test_tmp);
    cr_assert_eq(mkfifo(p, 0600), 0);
    JtError err;
    NpyHeader h;
    cr_expect_eq(npy_read_header(p, &h, &err), JT_ERR);
    cr_expect(strstr(err.msg, "not a regular file") != NULL, "%s", err.msg);
}

Test(hostile, trailing_garbage_after_json_is_refused) {
    write_tiny_data();
    char args[1024];
    snprintf(args, sizeof args,
             "score --method pixel --data npy:%s/img.npy --targets-data npy:%s/img.npy "
             "--targets-limit 2 --topk 2 --out %s/sc --quiet",
             test_tmp, test_tmp, test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    char p[512];
    snprintf(p, sizeof p, "%s/sc/topk.json", test_tmp);
    FILE *f = fopen(p, "ab");
    cr_assert(f && fputs("\n{\"extra\": 1}\n", f) >= 0);
    fclose(f);
    /* before the fix: cJSON_Parse stopped after the first value and the report was written */
    expect_failure(1, "report", (const char *[]){"topk.json", "cannot read it as JSON", NULL},
                   "report --scores %s/sc", test_tmp);
    cr_expect(!exists("sc/report.html"));
}

Test(hostile, a_file_size_limit_is_a_clear_write_error) {
    write_text("tiny.json", TINY_CFG);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "ulimit -f 8; exec \"%s\" init --config %s/tiny.json --out %s/m 2>%s/err.txt",
             JTRAK_CLI, test_tmp, test_tmp, test_tmp);
    int st = system(cmd);
    /* before the fix: killed by SIGXFSZ (the shell reports 128 + 25), no message */
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
    char p[512], msg[1024] = "";
    snprintf(p, sizeof p, "%s/err.txt", test_tmp);
    FILE *f = fopen(p, "r");
    cr_assert(f != NULL);
    size_t n = fread(msg, 1, sizeof msg - 1, f);
    msg[n] = 0;
    fclose(f);
    cr_expect(strstr(msg, "jtrak init: ") == msg && strstr(msg, "File too large"), "%s", msg);
    cr_expect(!exists("m/diffusion_pytorch_model.safetensors"));
}

Test(hostile, stale_temporaries_of_dead_processes_are_swept) {
    char p[512], stale[600], live[600], other[600];
    snprintf(p, sizeof p, "%s/out.npy", test_tmp);
    /* pid 2^22 + 12345 is beyond Linux's pid_max default: no such process */
    snprintf(stale, sizeof stale, "%s.tmp.4206649.0", p);
    snprintf(live, sizeof live, "%s.tmp.%ld.7", p, (long)getpid());
    snprintf(other, sizeof other, "%s/out.npyx.tmp.4206649.0", test_tmp);
    write_text("out.npy.tmp.4206649.0", "stale");
    write_text(strrchr(live, '/') + 1, "live");
    write_text("out.npyx.tmp.4206649.0", "another file's");
    size_t shape[1] = {3};
    float v[3] = {1, 2, 3};
    JtError err;
    cr_assert_eq(npy_write(p, NPY_F32, 1, shape, v, &err), JT_OK, "%s", err.msg);
    struct stat sb;
    cr_expect(stat(stale, &sb) != 0, "the dead process's temporary was left");
    cr_expect(stat(live, &sb) == 0, "a live process's temporary was removed");
    cr_expect(stat(other, &sb) == 0, "another file's temporary was removed");
}
