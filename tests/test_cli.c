/* test_cli.c: the CLI on bad input, as a user meets it: one clear line on stderr naming what is
 * wrong and where, exit status 1 (2 for usage errors), no crash, and no output folder left behind.
 */
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/tmpdir.h"
#include "io/npy.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_err[8192];

TestSuite(cli, .init = test_tmp_setup, .fini = test_tmp_teardown);

static int exists(const char *sub) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Runs jtrak with printf-style arguments; checks the status and a single stderr line starting
 * "jtrak CMD:" that contains every `want` string. */
/* One clear error line and the exit status (tests/helpers/cli_run.h). */
#define expect_failure(...) cli_expect_failure(g_err, sizeof g_err, __VA_ARGS__)

/* 6 random 8x8 gray images with labels 0..2 as npy files in the temp folder. */
static void write_tiny_npy(void) {
    uint8_t pix[6 * 64];
    int64_t labels[6] = {0, 1, 2, 0, 1, 2};
    for (int i = 0; i < 6 * 64; i++)
        pix[i] = (uint8_t)(i * 37);
    char p[200];
    size_t shape[3] = {6, 8, 8}, ls[1] = {6};
    JtError err;
    snprintf(p, sizeof p, "%s/img.npy", test_tmp);
    cr_assert(npy_write(p, NPY_U8, 3, shape, pix, &err) == JT_OK);
    snprintf(p, sizeof p, "%s/lab.npy", test_tmp);
    cr_assert(npy_write(p, NPY_I64, 1, ls, labels, &err) == JT_OK);
}

static void write_file(const char *sub, const void *data, size_t n) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    FILE *f = fopen(p, "wb");
    cr_assert(f != NULL);
    cr_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

Test(cli, usage_errors_exit_2) {
    int got = cli_run("no-such-command", g_err, sizeof g_err);
    cr_expect_eq(got, 2, "%s", g_err);
    cr_expect(strstr(g_err, "unknown command 'no-such-command'"), "%s", g_err);
    expect_failure(2, "train", (const char *[]){"--bogus", NULL}, "train --bogus 1 --out %s/o",
                   test_tmp);
    expect_failure(2, "train", (const char *[]){"--out", NULL}, "train --steps 3");
    expect_failure(2, "train", (const char *[]){"--steps", NULL}, "train --steps x --out %s/o",
                   test_tmp);
    cr_expect(!exists("o"));
}

Test(cli, missing_dataset_file) {
    expect_failure(1, "train", (const char *[]){"/nonexistent/images.gz", NULL},
                   "train --data idx:/nonexistent/images.gz --out %s/o --quiet", test_tmp);
    cr_expect(!exists("o"), "an output folder was left behind");
}

Test(cli, wrong_magic_number) {
    unsigned char bad[16 + 64] = {0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 8};
    write_file("bad-idx3-ubyte", bad, sizeof bad);
    expect_failure(1, "train", (const char *[]){"bad-idx3-ubyte", "magic", NULL},
                   "train --data idx:%s/bad-idx3-ubyte --config t8 --out %s/o --quiet", test_tmp,
                   test_tmp);
    cr_expect(!exists("o"));
}

Test(cli, class_filter_that_leaves_nothing) {
    write_tiny_npy();
    expect_failure(
        1, "train", (const char *[]){"class", NULL},
        "train --data npy:%s/img.npy,%s/lab.npy --classes 7 --config t8 --out %s/o --quiet",
        test_tmp, test_tmp, test_tmp);
    cr_expect(!exists("o"));
}

/* A config file's sample_size is the model's (a shipped config would take the data's 8x8), and
 * --fit brings the data to a shipped config's own size rather than the data's. */
Test(cli, images_that_do_not_fit_the_model) {
    write_tiny_npy(); /* 8x8 */
    const char *cfg =
        "{\"_class_name\":\"UNet2DModel\",\"sample_size\":28,\"in_channels\":1,"
        "\"out_channels\":1,\"block_out_channels\":[8,16],\"layers_per_block\":1,"
        "\"norm_num_groups\":4,\"down_block_types\":[\"DownBlock2D\",\"AttnDownBlock2D\"],"
        "\"up_block_types\":[\"AttnUpBlock2D\",\"UpBlock2D\"],\"attention_head_dim\":null}";
    write_file("m28.json", cfg, strlen(cfg));
    expect_failure(1, "train", (const char *[]){"28x28", "--fit", NULL},
                   "train --data npy:%s/img.npy --config %s/m28.json --out %s/o --quiet", test_tmp,
                   test_tmp, test_tmp);
    expect_failure(1, "train",
                   (const char *[]){"larger than the model's 4x4", "--fit pad cannot", NULL},
                   "train --data npy:%s/img.npy --config %s/m28.json --size 4 --fit pad --out %s/o "
                   "--quiet",
                   test_tmp, test_tmp, test_tmp);
    cr_expect(!exists("o"));
}

Test(cli, model_that_does_not_match_the_data_channels) {
    write_tiny_npy(); /* gray; this config wants 3 channels */
    const char *cfg =
        "{\"_class_name\":\"UNet2DModel\",\"sample_size\":8,\"in_channels\":3,"
        "\"out_channels\":3,\"block_out_channels\":[8,16],\"layers_per_block\":1,"
        "\"norm_num_groups\":4,\"down_block_types\":[\"DownBlock2D\",\"AttnDownBlock2D\"],"
        "\"up_block_types\":[\"AttnUpBlock2D\",\"UpBlock2D\"],\"attention_head_dim\":null}";
    write_file("rgb.json", cfg, strlen(cfg));
    expect_failure(1, "train", (const char *[]){"channel", NULL},
                   "train --data npy:%s/img.npy --config %s/rgb.json --out %s/o --quiet", test_tmp,
                   test_tmp, test_tmp);
    cr_expect(!exists("o"));
}

Test(cli, unsupported_config_value) {
    const char *cfg = "{\"sample_size\":8,\"in_channels\":1,\"out_channels\":1,"
                      "\"block_out_channels\":[8,16],\"layers_per_block\":1,\"norm_num_groups\":4,"
                      "\"down_block_types\":[\"DownBlock2D\",\"AttnDownBlock2D\"],"
                      "\"up_block_types\":[\"AttnUpBlock2D\",\"UpBlock2D\"],\"act_fn\":\"mish\"}";
    write_file("mish.json", cfg, strlen(cfg));
    expect_failure(1, "info", (const char *[]){"mish.json", "act_fn", NULL}, "info %s/mish.json",
                   test_tmp);
}

Test(cli, sample_from_a_missing_or_corrupt_model) {
    expect_failure(1, "sample", (const char *[]){"nomodel", NULL},
                   "sample --model %s/nomodel --out %s/o --quiet", test_tmp, test_tmp);
    cr_expect(!exists("o"));
    /* A model folder whose weights file is cut short. */
    char args[512], weights[300];
    snprintf(args, sizeof args, "init --config t8 --out %s/bad", test_tmp);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(weights, sizeof weights, "%s/bad/diffusion_pytorch_model.safetensors", test_tmp);
    cr_assert(truncate(weights, 1000) == 0);
    expect_failure(1, "sample", (const char *[]){"diffusion_pytorch_model.safetensors", NULL},
                   "sample --model %s/bad --out %s/o --quiet", test_tmp, test_tmp);
    cr_expect(!exists("o"));
}

/* Real target images (score --targets-data, lds --heldout-data): the usage errors, a value the data
 * layer refuses, journey on images without a trajectory, and images of another size or colour than
 * the training images, each named with the prefixed option that fixes it. */
Test(cli, real_target_images) {
    write_tiny_npy(); /* 8x8 gray: the training images of pixel without a store */
    const char *t = test_tmp;
    uint8_t big[2 * 10 * 10], rgb[2 * 8 * 8 * 3];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 13);
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7);
    char p[200];
    size_t sb[3] = {2, 10, 10}, sr[4] = {2, 8, 8, 3};
    JtError err;
    snprintf(p, sizeof p, "%s/big.npy", t);
    cr_assert(npy_write(p, NPY_U8, 3, sb, big, &err) == JT_OK);
    snprintf(p, sizeof p, "%s/rgb.npy", t);
    cr_assert(npy_write(p, NPY_U8, 4, sr, rgb, &err) == JT_OK);

    expect_failure(2, "score", (const char *[]){"--trajectory", "--targets-data", NULL},
                   "score --method pixel --data npy:%s/img.npy --targets-data npy:%s/img.npy "
                   "--trajectory %s/x.safetensors --out %s/o",
                   t, t, t, t);
    expect_failure(2, "score", (const char *[]){"--targets-limit needs --targets-data", NULL},
                   "score --trajectory %s/x.safetensors --targets-limit 2 --out %s/o", t, t);
    expect_failure(2, "score", (const char *[]){"--targets-fit", NULL},
                   "score --method pixel --data npy:%s/img.npy --targets-data npy:%s/img.npy "
                   "--targets-fit sideways --out %s/o",
                   t, t, t);
    expect_failure(1, "score", (const char *[]){"method journey", "trak, dtrak or pixel", NULL},
                   "score --store %s/nostore --targets-data npy:%s/img.npy --out %s/o", t, t, t);
    expect_failure(1, "score", (const char *[]){"big.npy", "10x10", "8x8", "--targets-fit", NULL},
                   "score --method pixel --data npy:%s/img.npy --targets-data npy:%s/big.npy "
                   "--out %s/o --quiet",
                   t, t, t);
    expect_failure(1, "score", (const char *[]){"rgb.npy", "--targets-color gray", NULL},
                   "score --method pixel --data npy:%s/img.npy --targets-data npy:%s/rgb.npy "
                   "--out %s/o --quiet",
                   t, t, t);
    cr_expect(!exists("o"), "a refused score left its output folder");

    /* Scores of real targets make a report (final images only), and a target file changed since
     * is refused by name. */
    char args[1024];
    snprintf(args, sizeof args,
             "score --method pixel --data npy:%s/img.npy --targets-data npy:%s/big.npy "
             "--targets-fit resize --topk 2 --out %s/real --quiet",
             t, t, t);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(args, sizeof args, "report --scores %s/real", t);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    cr_expect(exists("real/report.html") && exists("real/figure.png"));
    snprintf(p, sizeof p, "%s/real/report.html", t);
    FILE *f = fopen(p, "r");
    cr_assert(f != NULL);
    char html[65536];
    size_t n_html = fread(html, 1, sizeof html - 1, f);
    html[n_html] = 0;
    fclose(f);
    cr_expect(strstr(html, "targets: real images") && strstr(html, "big.npy"),
              "the report does not name the real targets");
    cr_expect(strstr(html, "one real image") && strstr(html, "target image") &&
                  !strstr(html, "final sample"),
              "the report calls real targets generated samples");
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(255 - big[i]);
    snprintf(p, sizeof p, "%s/big.npy", t);
    cr_assert(npy_write(p, NPY_U8, 3, sb, big, &err) == JT_OK);
    expect_failure(1, "report", (const char *[]){"target images", "big.npy", "changed since", NULL},
                   "report --scores %s/real", t);

    expect_failure(2, "lds", (const char *[]){"--heldout-fit needs --heldout-data", NULL},
                   "lds --model %s/m --trajectory %s/x.safetensors --out %s/l --heldout-fit resize",
                   t, t, t);
    cr_expect(!exists("l"));
}

/* A class-conditional config for the tiny 8x8 gray data (3 classes): num_class_embeds K. */
static void write_cond_config(const char *sub, int K) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"_class_name\":\"UNet2DModel\",\"sample_size\":8,\"in_channels\":1,"
             "\"out_channels\":1,\"block_out_channels\":[8,16],\"layers_per_block\":1,"
             "\"norm_num_groups\":4,\"down_block_types\":[\"DownBlock2D\",\"AttnDownBlock2D\"],"
             "\"up_block_types\":[\"AttnUpBlock2D\",\"UpBlock2D\"],\"attention_head_dim\":null,"
             "\"num_class_embeds\":%d}",
             K);
    write_file(sub, cfg, strlen(cfg));
}

/* Conditioning in train and sample: the refusals (each one line, nothing left behind), then a
 * class-conditional run whose record, model and trajectory carry the conditioning. */
Test(cli, class_conditional_train_and_sample) {
    write_tiny_npy();
    const char *t = test_tmp;
    char data[400];
    snprintf(data, sizeof data, "--data npy:%s/img.npy,%s/lab.npy", t, t);
    write_cond_config("k3.json", 3);
    write_cond_config("k4.json", 4);
    expect_failure(2, "train", (const char *[]){"--cond", "none, class or npy:FILE", NULL},
                   "train %s --config t8 --cond text --out %s/o --quiet", data, t);
    expect_failure(2, "train", (const char *[]){"--uncond-prob", "--cond class", NULL},
                   "train %s --config t8 --uncond-prob 0.2 --out %s/o --quiet", data, t);
    expect_failure(2, "train", (const char *[]){"--uncond-prob", NULL},
                   "train %s --config t8 --cond class --uncond-prob 1.5 --out %s/o --quiet", data,
                   t);
    expect_failure(1, "train", (const char *[]){"--cond class", "no labels", NULL},
                   "train --data npy:%s/img.npy --config t8 --cond class --out %s/o --quiet", t, t);
    expect_failure(1, "train",
                   (const char *[]){"num_class_embeds 3", "null class", "at least 4", NULL},
                   "train %s --config %s/k3.json --cond class --out %s/o --quiet", data, t, t);
    expect_failure(1, "train", (const char *[]){"num_class_embeds is 4", "--cond class", NULL},
                   "train %s --config %s/k4.json --out %s/o --quiet", data, t, t);
    cr_expect(!exists("o"), "a refused train left its output folder");

    /* t8 gets num_class_embeds = 3 classes + 1. */
    char args[1024];
    snprintf(args, sizeof args,
             "train %s --config t8 --cond class --uncond-prob 0.25 --steps 2 --batch 3 "
             "--warmup 0 --out %s/m --quiet",
             data, t);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    char p[300];
    snprintf(p, sizeof p, "%s/m/training.json", t);
    FILE *f = fopen(p, "r");
    cr_assert(f != NULL);
    char text[8192];
    size_t nt = fread(text, 1, sizeof text - 1, f);
    text[nt] = 0;
    fclose(f);
    cr_expect(strstr(text, "\"cond\":\t\"class\"") && strstr(text, "\"uncond_prob\":\t0.25"),
              "training.json lacks the conditioning: %s", text);
    snprintf(p, sizeof p, "%s/m/config.json", t);
    f = fopen(p, "r");
    cr_assert(f != NULL);
    nt = fread(text, 1, sizeof text - 1, f);
    text[nt] = 0;
    fclose(f);
    cr_expect(strstr(text, "\"num_class_embeds\":4") || strstr(text, "\"num_class_embeds\": 4") ||
                  strstr(text, "\"num_class_embeds\":\t4"),
              "config.json: %s", text);

    /* Sampling refusals. */
    const char *s = "--sampler ddim --steps 3 --quiet";
    expect_failure(1, "sample",
                   (const char *[]){"class-conditional", "--class", "all", "null", NULL},
                   "sample --model %s/m --out %s/o %s", t, t, s);
    expect_failure(1, "sample", (const char *[]){"class 7", "out of range", "0..2", NULL},
                   "sample --model %s/m --class 7 --out %s/o %s", t, t, s);
    expect_failure(2, "sample", (const char *[]){"--class", "'x1'", NULL},
                   "sample --model %s/m --class x1 --out %s/o %s", t, t, s);
    expect_failure(2, "sample", (const char *[]){"--class lists 2", "--n is 3", NULL},
                   "sample --model %s/m --class 0,1 --n 3 --out %s/o %s", t, t, s);
    expect_failure(2, "sample", (const char *[]){"--guidance needs --class", NULL},
                   "sample --model %s/m --guidance 2 --out %s/o %s", t, t, s);
    snprintf(args, sizeof args, "init --config t8 --out %s/u", t);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    expect_failure(1, "sample", (const char *[]){"--class", "unconditional", NULL},
                   "sample --model %s/u --class 1 --guidance 2 --out %s/o %s", t, t, s);
    cr_expect(!exists("o"), "a refused sample left its output folder");

    /* --class all with guidance: the trajectory records labels i mod 3, cond and guidance. */
    snprintf(args, sizeof args,
             "sample --model %s/m --class all --guidance 2.5 --n 4 --out %s/s %s", t, t, s);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(p, sizeof p, "%s/s/trajectory.safetensors", t);
    Trajectory tr;
    JtError err;
    cr_assert(traj_load(&tr, p, &err) == JT_OK, "%s", err.msg);
    cr_assert(tr.n == 4 && tr.labels != NULL);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(tr.labels[i], i % 3);
    cr_expect(tr.guidance == 2.5f);
    traj_free(&tr);
    /* A list, and null (the null class 3) without guidance. */
    snprintf(args, sizeof args, "sample --model %s/m --class 2,0 --out %s/s2 %s", t, t, s);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(p, sizeof p, "%s/s2/trajectory.safetensors", t);
    cr_assert(traj_load(&tr, p, &err) == JT_OK, "%s", err.msg);
    cr_assert(tr.n == 2 && tr.labels && tr.labels[0] == 2 && tr.labels[1] == 0);
    cr_expect(tr.guidance == 1.0f);
    traj_free(&tr);
    snprintf(args, sizeof args, "sample --model %s/m --class null --n 2 --out %s/s3 %s", t, t, s);
    cr_assert_eq(cli_run(args, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(p, sizeof p, "%s/s3/trajectory.safetensors", t);
    cr_assert(traj_load(&tr, p, &err) == JT_OK, "%s", err.msg);
    cr_assert(tr.labels && tr.labels[0] == 3 && tr.labels[1] == 3);
    traj_free(&tr);
}
