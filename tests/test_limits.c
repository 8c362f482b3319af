/* test_limits.c: what a file may ask for (issue 15 item 2). A header that declares more than this
 * machine can hold (a 10^12-element safetensors tensor, a .npy or CIFAR-10 file of terabytes, a
 * trajectory whose tensors would need terabytes, a PNG or JPEG of 100000x100000 or 65000x65000
 * pixels, a config of absurd widths, a manifest of gigabytes) is refused with the limit or the
 * memory estimate in the message, before anything of that size is allocated. The files that must
 * be that large are sparse (ftruncate), so they take no disk space; where the file system cannot
 * hold one the test is skipped. */
#include "attrib/store.h"
#include "core/common.h"
#include "data/source.h"
#include "diffusion/trajectory.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model_kind.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(limits, .init = test_tmp_setup, .fini = test_tmp_teardown);

static const char *tmp_path(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", test_tmp, name);
    return p[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* Extends path to `size` bytes without writing them (a sparse file); skips the test where the
 * file system refuses. */
static void make_sparse(const char *path, uint64_t size) {
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    cr_assert(fd >= 0, "%s", path);
    int rc = ftruncate(fd, (off_t)size);
    close(fd);
    if (rc != 0)
        cr_skip_test("this file system cannot hold a sparse file of %llu bytes",
                     (unsigned long long)size);
}

static void expect_words(int rc, const JtError *err, const char *const *want) {
    cr_assert_eq(rc, JT_ERR, "accepted");
    cr_assert_null(strchr(err->msg, '\n'), "message spans lines: %s", err->msg);
    for (; *want; want++)
        cr_assert(strstr(err->msg, *want) != NULL, "message lacks \"%s\": %s", *want, err->msg);
}

/* An 8-byte length and a JSON header, padded with spaces to a multiple of 8. */
static size_t st_bytes(const char *json, uint8_t *out, size_t cap) {
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    cr_assert(8 + padded <= cap);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(out + 8, json, n);
    memset(out + 8 + n, ' ', padded - n);
    return 8 + padded;
}

Test(limits, a_safetensors_tensor_of_10e12_elements_is_refused_with_its_size) {
    uint8_t buf[512];
    size_t n = st_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1000000,1000000],"
                        "\"data_offsets\":[0,4000000000000]}}",
                        buf, sizeof buf);
    const char *p = tmp_path("huge.safetensors");
    write_bytes(p, buf, n);
    StFile f;
    JtError err = {{0}};
    /* the file is a few bytes: refused for its size before the offsets are even compared */
    expect_words(st_open(&f, p, &err), &err,
                 (const char *const[]){p, "tensor 'w'", "[1000000,1000000]",
                                       "1000000000000 elements", "needs 3.6 TiB",
                                       "this machine has", NULL});
    /* and so when the file really holds (sparsely) all 4 TB the header announces */
    make_sparse(p, n + 4000000000000ull);
    expect_words(st_open(&f, p, &err), &err,
                 (const char *const[]){"tensor 'w'", "needs 3.6 TiB", "this machine has", NULL});
}

Test(limits, a_npy_of_absurd_shape_is_refused_before_reading) {
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (262144, "
                              "1048576), }";
    char text[128];
    size_t hl = 118; /* 10 + 118 = 128: aligned as numpy writes it */
    memset(text, ' ', sizeof text);
    memcpy(text, "\x93NUMPY\x01\x00", 8);
    text[8] = (char)hl, text[9] = 0;
    memcpy(text + 10, hdr, strlen(hdr));
    text[127] = '\n';
    const char *p = tmp_path("huge.npy");
    write_bytes(p, text, sizeof text);
    NpyHeader h;
    void *data = NULL;
    JtError err = {{0}};
    /* a short file: the header's size is compared with the file's */
    expect_words(npy_read(p, &h, &data, &err), &err,
                 (const char *const[]){p, "(262144, 1048576)", "needs 1099511627776 bytes", NULL});
    /* a sparse file of the full 1 TiB: refused for memory, not read */
    make_sparse(p, sizeof text + (1ull << 40));
    expect_words(npy_read(p, &h, &data, &err), &err,
                 (const char *const[]){p, "(262144, 1048576)", "<f4", "needs 1.0 TiB",
                                       "this machine has", NULL});
    cr_assert_null(data);
    /* the image dataset reader on top of it says the same */
    DataSource src;
    cr_assert_eq(data_open_npy(&src, p, NULL, &err), JT_ERR);
}

Test(limits, a_cifar_file_of_terabytes_is_refused_with_its_size) {
    const char *p = tmp_path("data_batch_1.bin");
    make_sparse(p, 3073ull << 30); /* 2^30 records: 3 TiB */
    DataSource src;
    JtError err = {{0}};
    expect_words(data_open_cifar10(&src, p, 0, &err), &err,
                 (const char *const[]){p, "1073741824 records of 3073 bytes", "needs 3.0 TiB",
                                       "this machine has", NULL});
}

/* A trajectory whose x_t holds no elements (zero steps) but whose images would be 10^12 pixels:
 * before the fix the reader allocated x_T and x_0 from x_t's shape (4 TB each) and aborted. */
Test(limits, a_trajectory_is_checked_tensor_by_tensor_before_allocating) {
    StWriter w;
    st_writer_init(&w);
    st_writer_set_metadata(&w, "format", "jtrak-trajectory-v1");
    st_writer_set_metadata(&w, "sampler", "ddim");
    st_writer_set_metadata(&w, "seed", "0");
    st_writer_set_metadata(&w, "eta", "0");
    st_writer_set_metadata(&w, "model_fingerprint", "0000000000000000");
    const int64_t seq[5] = {1, 0, 1, 1000000, 1000000}, t0[1] = {0}, img[4] = {1, 1, 1, 1};
    float one = 0;
    st_writer_add(&w, "x_t", ST_F32, 5, seq, NULL);
    st_writer_add(&w, "x0_hat", ST_F32, 5, seq, NULL);
    st_writer_add(&w, "noise", ST_F32, 5, seq, NULL);
    st_writer_add(&w, "timesteps", ST_I32, 1, t0, NULL);
    st_writer_add(&w, "x_T", ST_F32, 4, img, &one);
    st_writer_add(&w, "x_0", ST_F32, 4, img, &one);
    const char *p = tmp_path("trajectory.safetensors");
    JtError err = {{0}};
    cr_assert_eq(st_writer_write(&w, p, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    Trajectory tr;
    expect_words(traj_load(&tr, p, &err), &err,
                 (const char *const[]){p, "tensor 'x_T' has the wrong shape", NULL});
}

/* A PNG header (IHDR) of w x h RGB pixels, one empty IDAT, IEND: what stbi_info reads. */
static size_t png_header(uint32_t w, uint32_t h, uint8_t *out) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(out, sig, 8), n = 8;
    uint8_t ihdr[25] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    for (int i = 0; i < 4; i++)
        ihdr[8 + i] = (uint8_t)(w >> (24 - 8 * i)), ihdr[12 + i] = (uint8_t)(h >> (24 - 8 * i));
    ihdr[16] = 8, ihdr[17] = 2; /* 8-bit RGB; CRCs are not checked by stb */
    memcpy(out + n, ihdr, 25), n += 25;
    static const uint8_t tail[] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0, 0, 0, 0,
                                   0, 0, 0, 0, 'I', 'E', 'N', 'D', 0, 0, 0, 0};
    memcpy(out + n, tail, sizeof tail), n += sizeof tail;
    return n;
}

Test(limits, a_png_of_100000x100000_pixels_is_refused_before_decoding) {
    uint8_t png[64];
    size_t n = png_header(100000, 100000, png);
    DataImage img;
    JtError err = {{0}};
    expect_words(data_image_decode(png, n, "big.png", &img, &err), &err,
                 (const char *const[]){"big.png", "100000x100000 pixels", "28 GiB",
                                       "at most 65536 pixels a side", "67108864 pixels in all",
                                       NULL});
    cr_assert_null(img.pixels);
    /* through the image-folder reader: the message names the image and the folder */
    const char *dir = tmp_path("folder");
    cr_assert_eq(mkdir(dir, 0755), 0);
    char p[600];
    snprintf(p, sizeof p, "%s/big.png", dir);
    write_bytes(p, png, n);
    DataSource src;
    cr_assert_eq(data_open_folder(&src, dir, &err), JT_OK, "%s", err.msg);
    DataRaw raw;
    expect_words(src.get(&src, 0, &raw, &err), &err,
                 (const char *const[]){"image 0 of", p, "100000x100000 pixels", NULL});
    data_source_free(&src);
}

Test(limits, a_jpeg_of_65000x65000_pixels_is_refused_before_decoding) {
    /* SOI, SOF0 (8-bit, 65000x65000, one component), EOI: what stbi_info reads */
    static const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0xfd, 0xe8,
                                  0xfd, 0xe8, 0x01, 0x01, 0x11, 0x00, 0xff, 0xd9};
    DataImage img;
    JtError err = {{0}};
    expect_words(data_image_decode(jpg, sizeof jpg, "big.jpg", &img, &err), &err,
                 (const char *const[]){"big.jpg", "65000x65000 pixels", "3.9 GiB",
                                       "67108864 pixels in all", NULL});
}

Test(limits, a_width_beyond_the_limit_is_refused_through_the_model_table) {
    const char *p = tmp_path("config.json");
    static const char cfg[] =
        "{\"_class_name\":\"UNet2DModel\",\"block_out_channels\":[1000000000,64],"
        "\"down_block_types\":[\"DownBlock2D\",\"DownBlock2D\"],"
        "\"up_block_types\":[\"UpBlock2D\",\"UpBlock2D\"],\"sample_size\":8}";
    write_bytes(p, cfg, strlen(cfg));
    const ModelKind *kind;
    void *c;
    JtError err = {{0}};
    expect_words(model_kind_load_config(p, &kind, &c, &err), &err,
                 (const char *const[]){p, "block_out_channels", "1000000000", NULL});
    cr_assert_null(c);
}

Test(limits, a_manifest_of_gigabytes_is_refused_before_reading) {
    const char *dir = tmp_path("store");
    cr_assert_eq(mkdir(dir, 0755), 0);
    char p[600];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    make_sparse(p, 2ull << 30);
    FeatureStore st;
    JtError err = {{0}};
    expect_words(store_open(&st, dir, &err), &err,
                 (const char *const[]){p, "2.0 GiB", "too large for a store manifest",
                                       "at most 1024 MiB", NULL});
    cr_assert_null(json_load_file(p, &err));
    cr_assert(strstr(err.msg, "too large for a JSON file") != NULL, "%s", err.msg);
}
