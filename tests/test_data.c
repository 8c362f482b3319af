/* test_data.c: the data layer. Inputs are made at test time in a mkdtemp() folder: IDX files (raw
 * and gzip'd), CIFAR-10 binary batches, PNG folders (written with png_write_*), .npy stacks. The
 * real Fashion-MNIST is checked when Debian's dataset-fashion-mnist is installed (skipped
 * otherwise). Every bad input has a test that checks the error names the file and leaves the
 * Dataset empty. Resize and colour expectations are Pillow 13.0.0's output for the same input
 * (computed once with Image.resize / Image.convert and pasted here). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/dataset.h"
#include "data/transform.h"
#include "helpers/tmpdir.h"
#include "helpers/numcheck.h"
#include "io/npy.h"
#include "io/png.h"


TestSuite(data, .init = test_tmp_setup, .fini = test_tmp_teardown);

/* test_tmp/name; a few rotating buffers so that several can be live at once. */
static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_tmp, name);
    return buf[k];
}

static void write_file(const char *path, const void *data, size_t n, int gz) {
    if (gz) {
        gzFile g = gzopen(path, "wb");
        cr_assert_not_null(g);
        cr_assert_eq(gzwrite(g, data, (unsigned)n), (int)n);
        cr_assert_eq(gzclose(g), Z_OK);
    } else {
        FILE *fp = fopen(path, "wb");
        cr_assert_not_null(fp);
        cr_assert_eq(fwrite(data, 1, n, fp), n);
        fclose(fp);
    }
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* IDX images (n, h, w) with pixel (i, y, x) = pix(i, y, x). */
static uint8_t pix(size_t i, int y, int x) {
    return (uint8_t)(i * 31 + (size_t)y * 7 + (size_t)x);
}

static void write_idx_images(const char *path, uint32_t magic, size_t n, int h, int w, int gz) {
    size_t len = 16 + n * (size_t)h * (size_t)w;
    unsigned char *b = malloc(len);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)h);
    put_be32(b + 12, (uint32_t)w);
    for (size_t i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                b[16 + (i * (size_t)h + (size_t)y) * (size_t)w + (size_t)x] = pix(i, y, x);
    write_file(path, b, len, gz);
    free(b);
}

static void write_idx_labels(const char *path, const uint8_t *labels, size_t n, int gz) {
    unsigned char *b = malloc(8 + n);
    put_be32(b, 0x00000801);
    put_be32(b + 4, (uint32_t)n);
    memcpy(b + 8, labels, n);
    write_file(path, b, 8 + n, gz);
    free(b);
}

/* Labels 0,1,2,0,1,2,... */
static void labels_mod3(uint8_t *l, size_t n) {
    for (size_t i = 0; i < n; i++)
        l[i] = (uint8_t)(i % 3);
}

/* An MNIST-style directory test_tmp/name with n train and m test images of h x w. */
static const char *make_mnist_dir(const char *name, size_t n, size_t m, int h, int w) {
    const char *dir = tpath(name);
    mkdir(dir, 0755);
    char p[600];
    uint8_t lab[256];
    labels_mod3(lab, 256);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    write_idx_images(p, 0x803, n, h, w, 1);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    write_idx_labels(p, lab, n, 1);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    write_idx_images(p, 0x803, m, h, w, 0);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
    write_idx_labels(p, lab, m, 0);
    return dir;
}

static void spec_data(DatasetSpec *s, const char *fmt, const char *path) {
    char text[1024];
    snprintf(text, sizeof text, fmt, path);
    JtError err;
    cr_assert_eq(data_spec_set(s, "data", text, &err), JT_OK, "%s", err.msg);
}

static void spec_set(DatasetSpec *s, const char *key, const char *value) {
    JtError err;
    cr_assert_eq(data_spec_set(s, key, value, &err), JT_OK, "%s", err.msg);
}

static void load_ok(const DatasetSpec *s, Dataset *ds) {
    JtError err;
    cr_assert_eq(data_load(s, ds, &err), JT_OK, "%s", err.msg);
}

/* data_load must fail, name `file` and say `what`, and leave ds empty. */
static void load_fails(const DatasetSpec *s, const char *file, const char *what) {
    Dataset ds;
    JtError err = {{0}};
    cr_assert_eq(data_load(s, &ds, &err), JT_ERR, "expected an error mentioning '%s'", what);
    if (file)
        cr_expect(strstr(err.msg, file) != NULL, "message does not name %s: %s", file, err.msg);
    cr_expect(strstr(err.msg, what) != NULL, "message lacks '%s': %s", what, err.msg);
    cr_expect(ds.pixels == NULL && ds.n == 0 && ds.labels == NULL && ds.index == NULL,
              "a failed load left a partial dataset");
}

/* ---- IDX ------------------------------------------------------------------------------------- */

static void check_idx_load(int gz) {
    const char *img = tpath(gz ? "im.gz" : "im"), *lab = tpath(gz ? "lb.gz" : "lb");
    write_idx_images(img, 0x803, 5, 4, 3, gz);
    uint8_t l[5] = {4, 0, 2, 2, 1};
    write_idx_labels(lab, l, 5, gz);
    DatasetSpec s;
    data_spec_init(&s);
    char text[1200];
    snprintf(text, sizeof text, "idx:%s,%s", img, lab);
    spec_set(&s, "data", text);
    Dataset ds;
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 5);
    cr_expect_eq(ds.c, 1);
    cr_expect_eq(ds.h, 4);
    cr_expect_eq(ds.w, 3);
    cr_expect_eq(ds.n_source, 5);
    cr_expect_eq(ds.n_classes, 5, "generic IDX: classes 0..max label");
    for (size_t i = 0; i < 5; i++) {
        cr_expect_eq(ds.labels[i], l[i]);
        cr_expect_eq(ds.index[i], i);
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 3; x++)
                cr_expect_eq(ds.pixels[(i * 4 + (size_t)y) * 3 + (size_t)x], pix(i, y, x),
                             "image %zu (%d,%d)", i, y, x);
    }
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, idx_raw) {
    check_idx_load(0);
}
Test(data, idx_gzip) {
    check_idx_load(1);
}

Test(data, idx_without_labels_is_unlabelled) {
    const char *img = tpath("im");
    write_idx_images(img, 0x803, 3, 2, 2, 0);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "idx:%s", img);
    Dataset ds;
    load_ok(&s, &ds);
    cr_expect_eq(ds.n_classes, 0);
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(ds.labels[i], -1);
    cr_expect_null(data_class_name(&ds, 0));
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, mnist_dir_splits_and_fashion_names) {
    const char *dir = make_mnist_dir("fm", 12, 4, 5, 5);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "fashion-mnist:%s", dir);
    Dataset ds;
    load_ok(&s, &ds);
    cr_expect_eq(ds.n, 12);
    cr_expect_eq(ds.n_classes, 10);
    cr_expect_str_eq(data_class_name(&ds, 9), "Ankle boot");
    data_free(&ds);
    spec_data(&s, "mnist:%s,test", dir);
    cr_expect(s.test_split);
    load_ok(&s, &ds);
    cr_expect_eq(ds.n, 4, "the test split is the t10k files");
    cr_expect_str_eq(data_class_name(&ds, 3), "3");
    data_free(&ds);
    /* A bare directory is recognised as MNIST-style. */
    spec_data(&s, "%s", dir);
    cr_expect_eq(s.kind, DATA_SRC_MNIST);
    data_spec_free(&s);
}

Test(data, real_fashion_mnist) {
    if (access(DATA_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Debian's dataset-fashion-mnist is not installed");
    DatasetSpec s;
    data_spec_init(&s); /* the default is fashion-mnist, train split */
    Dataset ds;
    load_ok(&s, &ds);
    cr_expect_eq(ds.n, 60000);
    cr_expect_eq(ds.c, 1);
    cr_expect_eq(ds.h, 28);
    cr_expect_eq(ds.w, 28);
    /* Image 0 of Fashion-MNIST train is an ankle boot (label 9); its pixels sum to 76247 (both
     * checked with numpy on the same files). */
    cr_expect_eq(ds.labels[0], 9);
    cr_expect_str_eq(data_class_name(&ds, ds.labels[0]), "Ankle boot");
    long sum = 0;
    for (int k = 0; k < 28 * 28; k++)
        sum += ds.pixels[k];
    cr_expect_eq(sum, 76247);
    cr_expect_str_eq(ds.description,
                     "data=fashion-mnist:train;classes=all;limit=all;indices=none;fit=none;"
                     "size=28x28;channels=1;color=auto;flip=none");
    data_free(&ds);
    spec_set(&s, "data", "fashion-mnist:test");
    spec_set(&s, "limit", "10");
    load_ok(&s, &ds);
    cr_expect_eq(ds.n, 10);
    cr_expect_eq(ds.n_source, 10000);
    data_free(&ds);
    data_spec_free(&s);
}

/* ---- selection ------------------------------------------------------------------------------- */

Test(data, class_filter_keeps_original_indices) {
    const char *dir = make_mnist_dir("m", 12, 3, 2, 2);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "mnist:%s", dir);
    spec_set(&s, "classes", "2,0");
    Dataset ds;
    load_ok(&s, &ds);
    size_t want[8] = {0, 2, 3, 5, 6, 8, 9, 11}; /* labels are i % 3 */
    cr_assert_eq(ds.n, 8);
    for (size_t i = 0; i < 8; i++) {
        cr_expect_eq(ds.index[i], want[i], "row %zu", i);
        cr_expect_eq(ds.labels[i], (int)(want[i] % 3));
        cr_expect_eq(ds.pixels[i * 4 + 3], pix(want[i], 1, 1), "row %zu holds its image", i);
    }
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, class_filter_by_name) {
    const char *dir = make_mnist_dir("fm", 9, 3, 2, 2);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "fashion-mnist:%s", dir);
    spec_set(&s, "classes", "trouser, t-shirt/top");
    Dataset ds;
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 6);
    cr_expect(strstr(ds.description, ";classes=0,1;") != NULL, "names resolve to labels: %s",
              ds.description);
    cr_expect_eq(ds.index[0], 0);
    cr_expect_eq(ds.index[1], 1);
    cr_expect_eq(ds.index[2], 3);
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, limit_takes_first_n_after_filter) {
    const char *dir = make_mnist_dir("m", 12, 3, 2, 2);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "mnist:%s", dir);
    spec_set(&s, "limit", "3");
    Dataset ds;
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 3);
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(ds.index[i], i);
    data_free(&ds);
    spec_set(&s, "classes", "1");
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 3);
    cr_expect_eq(ds.index[0], 1);
    cr_expect_eq(ds.index[1], 4);
    cr_expect_eq(ds.index[2], 7);
    data_free(&ds);
    spec_set(&s, "limit", "1000"); /* a limit is a maximum */
    load_ok(&s, &ds);
    cr_expect_eq(ds.n, 4);
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, index_file_keeps_file_order) {
    const char *dir = make_mnist_dir("m", 12, 3, 2, 2);
    const char *idx = tpath("keep.txt");
    const char *text = "# rows for the test\n4\n  1  \n\n7 # trailing comment\n10\n";
    write_file(idx, text, strlen(text), 0);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "mnist:%s", dir);
    spec_set(&s, "indices", idx);
    Dataset ds;
    load_ok(&s, &ds);
    size_t want[4] = {4, 1, 7, 10};
    cr_assert_eq(ds.n, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_expect_eq(ds.index[i], want[i]);
        cr_expect_eq(ds.pixels[i * 4], pix(want[i], 0, 0));
    }
    data_free(&ds);
    spec_set(&s, "classes", "1"); /* labels of 4, 1, 7, 10 are 1, 1, 1, 1 */
    spec_set(&s, "limit", "2");
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 2);
    cr_expect_eq(ds.index[0], 4);
    cr_expect_eq(ds.index[1], 1);
    data_free(&ds);
    data_spec_free(&s);
}

/* ---- transforms ------------------------------------------------------------------------------ */

Test(data, scaling_maps_0_and_255_to_minus1_and_1) {
    cr_expect_eq(data_scale_u8(0), -1.0f);
    cr_expect_eq(data_scale_u8(255), 1.0f);
    /* torchvision: ToTensor (x / 255) then Normalize(0.5, 0.5), in float32. */
    float x = 128.0f / 255.0f;
    cr_expect_eq(data_scale_u8(128), (x - 0.5f) / 0.5f);
    for (int v = 1; v < 256; v++)
        cr_expect(data_scale_u8((uint8_t)v) > data_scale_u8((uint8_t)(v - 1)));
}

Test(data, pad_28_to_32_has_minus1_border) {
    /* 2 images of 28x28, every pixel 255 except one marker. */
    size_t n = 2, shape[3] = {2, 28, 28};
    uint8_t *px = malloc(n * 28 * 28);
    memset(px, 255, n * 28 * 28);
    px[0] = 10; /* image 0, (0, 0) */
    const char *p = tpath("pad.npy");
    JtError err;
    cr_assert_eq(npy_write(p, NPY_U8, 3, shape, px, &err), JT_OK);
    free(px);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "npy:%s", p);
    spec_set(&s, "size", "32");
    load_fails(&s, p, "model expects 32x32 (use --fit pad");
    spec_set(&s, "fit", "pad");
    Dataset ds;
    load_ok(&s, &ds);
    cr_assert_eq(ds.h, 32);
    cr_assert_eq(ds.w, 32);
    float *img = malloc(32 * 32 * sizeof(float)); /* (1, 32, 32) */
    data_image_f32(&ds, 0, 0, img);
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++) {
            int inside = y >= 2 && y < 30 && x >= 2 && x < 30;
            float want = !inside ? -1.0f : (y == 2 && x == 2) ? data_scale_u8(10) : 1.0f;
            cr_expect_eq(img[y * 32 + x], want, "(%d, %d)", y, x);
        }
    free(img);
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, flip_mirrors_left_right) {
    const char *img = tpath("im");
    write_idx_images(img, 0x803, 2, 3, 4, 0);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "idx:%s", img);
    Dataset plain, flipped;
    load_ok(&s, &plain);
    spec_set(&s, "flip", "all");
    load_ok(&s, &flipped);
    for (size_t i = 0; i < 2; i++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 4; x++)
                cr_expect_eq(flipped.pixels[(i * 3 + (size_t)y) * 4 + (size_t)x], pix(i, y, 3 - x));
    cr_expect_neq(plain.fingerprint, flipped.fingerprint);
    float a[12], b[12]; /* (1, 3, 4) */
    data_image_f32(&plain, 1, 1, a);
    data_image_f32(&flipped, 1, 0, b);
    expect_close("flip on the way out equals flip at load", a, b, 12, 0, 0);
    data_free(&plain);
    data_free(&flipped);
    data_spec_free(&s);
}

Test(data, crop_offsets_follow_torchvision) {
    /* round((outer - inner) / 2) with ties to even: 3/2 -> 2, 5/2 -> 2, 7/2 -> 4, 1/2 -> 0. */
    cr_expect_eq(data_crop_offset(6, 4), 1);
    cr_expect_eq(data_crop_offset(5, 2), 2);
    cr_expect_eq(data_crop_offset(7, 2), 2);
    cr_expect_eq(data_crop_offset(9, 2), 4);
    cr_expect_eq(data_crop_offset(3, 2), 0);
    cr_expect_eq(data_pad_offset(28, 32), 2);
    cr_expect_eq(data_pad_offset(27, 32), 2);
    uint8_t in[6 * 6], out[4 * 4];
    for (int i = 0; i < 36; i++)
        in[i] = (uint8_t)i;
    data_crop(out, 4, 4, in, 1, 6, 6);
    cr_expect_eq(out[0], 7);
    cr_expect_eq(out[15], 28);
}

/* Source image for the resize tests: (6, 5), pixel i = (i*37 + (i/5)*11) % 256. */
static void resize_src(uint8_t *src) {
    for (int i = 0; i < 30; i++)
        src[i] = (uint8_t)((i * 37 + (i / 5) * 11) % 256);
}

static void expect_bytes(const char *what, const uint8_t *got, const uint8_t *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(got[i], want[i], "%s [%zu]: got %d want %d", what, i, got[i], want[i]);
}

Test(data, resize_bilinear_matches_pillow) {
    uint8_t src[30], out[63], scratch[9 * 7];
    resize_src(src);
    /* Image.fromarray(src, "L").resize((w, h), Image.BILINEAR), Pillow 13.0.0 */
    static const uint8_t want34[12] = {112, 110, 90, 105, 115, 145, 170, 141, 118, 116, 95, 138};
    static const uint8_t want97[63] = {
        0,   21,  48,  74,  100, 127, 148, 98,  119, 109, 44,  70, 97,  118, 186, 207,
        172, 47,  73,  81,  78,  146, 167, 182, 177, 203, 139, 38, 106, 127, 154, 180,
        206, 178, 126, 66,  87,  114, 140, 166, 193, 214, 26,  47, 74,  100, 126, 153,
        174, 114, 135, 125, 60,  86,  113, 134, 212, 233, 186, 30, 56,  83,  104};
    static const uint8_t want63[18] = {16, 74,  132, 212, 71, 72,  152, 210, 122,
                                       92, 150, 208, 32,  90, 148, 228, 87,  88};
    data_resize_bilinear(out, 3, 4, src, 1, 6, 5, scratch);
    expect_bytes("6x5 -> 3x4", out, want34, 12);
    data_resize_bilinear(out, 9, 7, src, 1, 6, 5, scratch);
    expect_bytes("6x5 -> 9x7", out, want97, 63);
    data_resize_bilinear(out, 6, 3, src, 1, 6, 5, scratch);
    expect_bytes("6x5 -> 6x3", out, want63, 18);
}

Test(data, resize_nearest_matches_pillow) {
    uint8_t src[30], out[63];
    resize_src(src);
    static const uint8_t want34[12] = {196, 233, 51, 88, 76, 113, 187, 224, 212, 249, 67, 104};
    static const uint8_t want63[18] = {0,  74,  148, 196, 14, 88,  136, 210, 28,
                                       76, 150, 224, 16,  90, 164, 212, 30,  104};
    data_resize_nearest(out, 3, 4, src, 1, 6, 5);
    expect_bytes("6x5 -> 3x4", out, want34, 12);
    data_resize_nearest(out, 6, 3, src, 1, 6, 5);
    expect_bytes("6x5 -> 6x3", out, want63, 18);
}

Test(data, color_conversion_matches_pillow) {
    /* (2, 2, 3) RGB -> L with Image.convert("L"): 124, 91, 2, 91 */
    const uint8_t rgb[12] = {10, 200, 30, 255, 0, 128, 1, 2, 3, 90, 91, 92};
    DataRaw img = {rgb, 2, 2, 3, 6, 3, 1};
    uint8_t gray[4], back[12];
    data_color_convert(gray, &img, 1);
    const uint8_t want[4] = {124, 91, 2, 91};
    expect_bytes("RGB -> L", gray, want, 4);
    DataRaw g = {gray, 2, 2, 1, 2, 1, 0};
    data_color_convert(back, &g, 3);
    for (int ch = 0; ch < 3; ch++)
        expect_bytes("L -> RGB plane", back + ch * 4, gray, 4);
}

/* ---- other sources --------------------------------------------------------------------------- */

Test(data, npy_stacks_gray_and_rgb_with_labels) {
    size_t shape[4] = {3, 2, 2, 3}; /* (N, H, W, C) */
    uint8_t px[36];
    for (int i = 0; i < 36; i++)
        px[i] = (uint8_t)(i * 7);
    int64_t lab[3] = {2, 0, 5};
    size_t lshape[1] = {3};
    JtError err;
    const char *p = tpath("rgb.npy"), *l = tpath("lab.npy");
    cr_assert_eq(npy_write(p, NPY_U8, 4, shape, px, &err), JT_OK);
    cr_assert_eq(npy_write(l, NPY_I64, 1, lshape, lab, &err), JT_OK);
    DatasetSpec s;
    data_spec_init(&s);
    char text[1200];
    snprintf(text, sizeof text, "npy:%s,%s", p, l);
    spec_set(&s, "data", text);
    Dataset ds;
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 3);
    cr_assert_eq(ds.c, 3);
    cr_expect_eq(ds.n_classes, 6);
    cr_expect_eq(ds.labels[2], 5);
    /* HWC in the file, CHW in the dataset: row 1, channel 2, (1, 0) */
    cr_expect_eq(ds.pixels[1 * 12 + 2 * 4 + 1 * 2 + 0], px[12 + (1 * 2 + 0) * 3 + 2]);
    data_free(&ds);
    spec_set(&s, "color", "gray");
    spec_set(&s, "channels", "1");
    load_ok(&s, &ds);
    cr_expect_eq(ds.c, 1);
    data_free(&ds);
    data_spec_free(&s);
}

static void write_cifar(const char *path, size_t n, uint8_t label0) {
    size_t len = n * 3073;
    uint8_t *b = malloc(len);
    for (size_t r = 0; r < n; r++) {
        b[r * 3073] = (uint8_t)((label0 + r) % 10);
        for (int k = 0; k < 3072; k++)
            b[r * 3073 + 1 + (size_t)k] = (uint8_t)(k + 3 * r);
    }
    write_file(path, b, len, 0);
    free(b);
}

Test(data, cifar10_file_and_directory) {
    const char *f = tpath("one.bin");
    write_cifar(f, 2, 7);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "cifar10:%s", f);
    Dataset ds;
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 2);
    cr_expect_eq(ds.c, 3);
    cr_expect_eq(ds.h, 32);
    cr_expect_eq(ds.w, 32);
    cr_expect_eq(ds.labels[1], 8);
    cr_expect_str_eq(data_class_name(&ds, 8), "ship");
    /* record 1: byte k of the pixels is (k + 3) % 256; CHW order is the file's order */
    for (int k = 0; k < 3072; k += 101)
        cr_expect_eq(ds.pixels[3072 + k], (uint8_t)(k + 3));
    data_free(&ds);

    const char *dir = tpath("cifar");
    mkdir(dir, 0755);
    char p[600];
    for (int b = 1; b <= 5; b++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, b);
        write_cifar(p, 1, (uint8_t)b);
    }
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    write_cifar(p, 3, 0);
    spec_data(&s, "%s", dir); /* recognised as CIFAR-10 */
    cr_expect_eq(s.kind, DATA_SRC_CIFAR10);
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 5);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(ds.labels[i], i + 1, "batches in order 1..5");
    data_free(&ds);
    spec_data(&s, "cifar10:%s,test", dir);
    load_ok(&s, &ds);
    cr_expect_eq(ds.n, 3);
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, png_folder_flat_and_classes) {
    const char *dir = tpath("flat");
    mkdir(dir, 0755);
    uint8_t img[3][6]; /* (2, 3) each */
    const char *names[3] = {"b.png", "a.png", "c.PNG"};
    JtError err;
    char p[600];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 6; i++)
            img[k][i] = (uint8_t)(40 * k + i);
        snprintf(p, sizeof p, "%s/%s", dir, names[k]);
        cr_assert_eq(png_write_gray(p, img[k], 3, 2, &err), JT_OK, "%s", err.msg);
    }
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    write_file(p, "x", 1, 0);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "folder:%s", dir);
    Dataset ds;
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 3);
    cr_expect_eq(ds.c, 1);
    cr_expect_eq(ds.h, 2);
    cr_expect_eq(ds.w, 3);
    cr_expect_eq(ds.n_classes, 0);
    cr_expect_eq(ds.labels[0], -1);
    /* byte order of names: "a.png" (img 1), "b.png" (img 0), "c.PNG" (img 2) */
    expect_bytes("row 0", ds.pixels, img[1], 6);
    expect_bytes("row 1", ds.pixels + 6, img[0], 6);
    expect_bytes("row 2", ds.pixels + 12, img[2], 6);
    data_free(&ds);

    const char *cdir = tpath("classes");
    mkdir(cdir, 0755);
    const char *cls[2] = {"dog", "cat"};
    uint8_t rgb[2 * 3 * 3]; /* (2, 3, 3) HWC */
    for (int i = 0; i < 18; i++)
        rgb[i] = (uint8_t)(i * 13);
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", cdir, cls[k]);
        mkdir(p, 0755);
        for (int j = 0; j <= k; j++) {
            snprintf(p, sizeof p, "%s/%s/%d.png", cdir, cls[k], j);
            cr_assert_eq(png_write_rgb(p, rgb, 3, 2, &err), JT_OK, "%s", err.msg);
        }
    }
    spec_data(&s, "folder:%s", cdir);
    load_ok(&s, &ds);
    cr_assert_eq(ds.n, 3);
    cr_expect_eq(ds.c, 3);
    cr_expect_eq(ds.n_classes, 2);
    cr_expect_str_eq(data_class_name(&ds, 0), "cat");
    cr_expect_eq(ds.labels[0], 0);
    cr_expect_eq(ds.labels[1], 0);
    cr_expect_eq(ds.labels[2], 1);
    /* HWC in the PNG, CHW in the dataset: green (channel 1) at (y 0, x 1) */
    cr_expect_eq(ds.pixels[1 * 6 + 0 * 3 + 1], rgb[(0 * 3 + 1) * 3 + 1]);
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, png_write_image_f32_round_trip) {
    float x[2 * 3] = {-1.0f, 1.0f, 0.0f, -0.5f, 2.0f, -3.0f}; /* (1, 2, 3) */
    uint8_t u[6];
    png_f32_to_u8(u, x, 1, 2, 3);
    /* (x/2 + 0.5) * 255 rounded half to even: 0, 255, 127.5 -> 128, 63.75 -> 64, clamped */
    const uint8_t want[6] = {0, 255, 128, 64, 255, 0};
    expect_bytes("f32 -> u8", u, want, 6);
    const char *dir = tpath("one");
    mkdir(dir, 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/x.png", dir);
    JtError err;
    cr_assert_eq(png_write_image_f32(p, x, 1, 2, 3, &err), JT_OK);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "folder:%s", dir);
    Dataset ds;
    load_ok(&s, &ds);
    expect_bytes("decoded", ds.pixels, want, 6);
    data_free(&ds);
    data_spec_free(&s);
}

/* ---- fingerprint, description, subset -------------------------------------------------------- */

Test(data, fingerprint_and_description_round_trip) {
    const char *dir = make_mnist_dir("m", 6, 2, 3, 3);
    DatasetSpec s, back;
    data_spec_init(&s);
    spec_data(&s, "mnist:%s", dir);
    spec_set(&s, "classes", "0,1");
    spec_set(&s, "fit", "pad");
    spec_set(&s, "size", "4x5");
    Dataset a, b;
    load_ok(&s, &a);
    cr_expect_eq(a.h, 4);
    cr_expect_eq(a.w, 5);
    JtError err;
    cr_assert_eq(data_spec_parse(&back, a.description, &err), JT_OK, "%s", err.msg);
    load_ok(&back, &b);
    cr_expect_eq(a.fingerprint, b.fingerprint);
    cr_expect_str_eq(a.description, b.description);
    char hex[17];
    cr_expect_eq(strlen(data_fingerprint_hex(&a, hex)), 16);
    data_free(&b);
    /* The same pixels from an .npy give the same fingerprint only with the same labels. */
    spec_set(&s, "limit", "2");
    load_ok(&s, &b);
    cr_expect_neq(a.fingerprint, b.fingerprint);
    data_free(&b);

    Dataset sub;
    size_t rows[2] = {3, 0};
    cr_assert_eq(data_subset(&a, rows, 2, &sub, &err), JT_OK);
    cr_expect_eq(sub.index[0], a.index[3]);
    cr_expect_eq(sub.labels[1], a.labels[0]);
    cr_expect_eq(memcmp(sub.pixels, a.pixels + 3 * 20, 20), 0);
    cr_expect(strstr(sub.description, ";rows=2:") != NULL);
    size_t bad[1] = {99};
    Dataset sub2;
    cr_expect_eq(data_subset(&a, bad, 1, &sub2, &err), JT_ERR);
    cr_expect(strstr(err.msg, "out of range") != NULL);
    data_free(&sub);
    data_free(&a);
    data_spec_free(&s);
    data_spec_free(&back);
}

Test(data, spec_options_reject_bad_values) {
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    cr_expect_eq(data_spec_set(&s, "fit", "stretch", &err), JT_ERR);
    cr_expect(strstr(err.msg, "--fit stretch") != NULL, "%s", err.msg);
    cr_expect_eq(data_spec_set(&s, "size", "0", &err), JT_ERR);
    cr_expect_eq(data_spec_set(&s, "size", "32x", &err), JT_ERR);
    cr_expect_eq(data_spec_set(&s, "limit", "-1", &err), JT_ERR);
    cr_expect_eq(data_spec_set(&s, "channels", "2", &err), JT_ERR);
    cr_expect_eq(data_spec_set(&s, "flip", "yes", &err), JT_ERR);
    cr_expect_eq(data_spec_set(&s, "data", "imagenet:/x", &err), JT_ERR);
    cr_expect(strstr(err.msg, "unknown dataset kind 'imagenet'") != NULL, "%s", err.msg);
    cr_expect_eq(data_spec_set(&s, "data", "mnist", &err), JT_ERR);
    cr_expect_eq(data_spec_set(&s, "data", "/no/such/path", &err), JT_ERR);
    cr_expect(strstr(err.msg, "/no/such/path") != NULL, "%s", err.msg);
    cr_expect_eq(data_spec_set(&s, "data", "fashion-mnist:test", &err), JT_OK);
    cr_expect(s.test_split && s.path == NULL);
    cr_expect_eq(data_spec_set(&s, "size", "32x28", &err), JT_OK);
    cr_expect(s.height == 32 && s.width == 28);
    cr_expect_eq(data_spec_set(&s, "bogus", "1", &err), JT_ERR);
    data_spec_free(&s);
}

/* ---- bad input ------------------------------------------------------------------------------- */

Test(data, bad_missing_files) {
    DatasetSpec s;
    data_spec_init(&s);
    const char *img = tpath("absent-images-idx3-ubyte.gz");
    spec_data(&s, "idx:%s", img);
    load_fails(&s, img, "cannot open");
    const char *dir = tpath("nodir");
    spec_data(&s, "fashion-mnist:%s", dir);
    load_fails(&s, dir, "cannot open");
    const char *empty = tpath("emptydir");
    mkdir(empty, 0755);
    spec_data(&s, "mnist:%s", empty);
    load_fails(&s, empty, "no train-images-idx3-ubyte");
    data_spec_free(&s);
}

Test(data, bad_magic) {
    const char *lab = tpath("labels");
    uint8_t l[3] = {0, 1, 2};
    write_idx_labels(lab, l, 3, 0);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "idx:%s", lab); /* a label file where images are expected */
    load_fails(&s, lab, "bad magic 0x00000801, expected 0x00000803 (IDX images)");
    const char *img = tpath("images");
    write_idx_images(img, 0x803, 3, 2, 2, 0);
    char text[1200];
    snprintf(text, sizeof text, "idx:%s,%s", img, img); /* images where labels are expected */
    spec_set(&s, "data", text);
    load_fails(&s, img, "bad magic 0x00000803, expected 0x00000801 (IDX labels)");
    data_spec_free(&s);
}

Test(data, bad_truncated_idx_raw) {
    const char *img = tpath("t-images-idx3-ubyte");
    write_idx_images(img, 0x803, 10, 4, 4, 0);
    cr_assert_eq(truncate(img, 16 + 5 * 16), 0); /* half the images */
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "idx:%s", img);
    load_fails(&s, img, "truncated: header announces 10 images of 4x4 (160 bytes), file has 80");
    cr_assert_eq(truncate(img, 10), 0); /* inside the header */
    load_fails(&s, img, "truncated");
    data_spec_free(&s);
}

Test(data, bad_truncated_gzip) {
    const char *img = tpath("t-images-idx3-ubyte.gz");
    /* Incompressible-ish pixels so that the compressed stream is long enough to cut. */
    size_t n = 50, len = 16 + n * 28 * 28;
    unsigned char *b = malloc(len);
    put_be32(b, 0x803);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, 28);
    put_be32(b + 12, 28);
    uint32_t r = 12345;
    for (size_t i = 16; i < len; i++) {
        r = r * 1103515245u + 12345u;
        b[i] = (uint8_t)(r >> 24);
    }
    write_file(img, b, len, 1);
    free(b);
    struct stat st;
    stat(img, &st);
    cr_assert_eq(truncate(img, st.st_size / 2), 0);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "idx:%s", img);
    load_fails(&s, img, "truncated");
    /* A corrupt stream (bytes flipped in the middle) is an error too. */
    write_idx_images(img, 0x803, 50, 28, 28, 1);
    FILE *fp = fopen(img, "r+b");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, size / 2, SEEK_SET);
    fwrite("\xff\x00\xff\x00\xff\x00\xff\x00", 1, 8, fp);
    fclose(fp);
    load_fails(&s, img, "gzip");
    data_spec_free(&s);
}

Test(data, bad_label_count) {
    const char *img = tpath("im"), *lab = tpath("lb");
    write_idx_images(img, 0x803, 5, 2, 2, 0);
    uint8_t l[4] = {0, 1, 2, 3};
    write_idx_labels(lab, l, 4, 0);
    DatasetSpec s;
    data_spec_init(&s);
    char text[1200];
    snprintf(text, sizeof text, "idx:%s,%s", img, lab);
    spec_set(&s, "data", text);
    load_fails(&s, lab, "4 labels, but");
    data_spec_free(&s);
}

Test(data, bad_npy_dtype_and_shape) {
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    const char *p = tpath("f.npy");
    size_t shape3[3] = {2, 2, 2};
    float f[8] = {0};
    cr_assert_eq(npy_write(p, NPY_F32, 3, shape3, f, &err), JT_OK);
    spec_data(&s, "npy:%s", p);
    load_fails(&s, p, "dtype is <f4, expected |u1");
    size_t shape2[2] = {2, 4};
    uint8_t u[8] = {0};
    cr_assert_eq(npy_write(p, NPY_U8, 2, shape2, u, &err), JT_OK);
    load_fails(&s, p, "shape (2, 4) is not (N, H, W) or (N, H, W, C)");
    size_t shape4[4] = {1, 2, 2, 2};
    cr_assert_eq(npy_write(p, NPY_U8, 4, shape4, u, &err), JT_OK);
    load_fails(&s, p, "has 2 channels");
    /* labels of the wrong length */
    cr_assert_eq(npy_write(p, NPY_U8, 3, shape3, u, &err), JT_OK);
    const char *l = tpath("l.npy");
    int32_t lab[3] = {0, 1, 2};
    size_t lshape[1] = {3};
    cr_assert_eq(npy_write(l, NPY_I32, 1, lshape, lab, &err), JT_OK);
    char text[1200];
    snprintf(text, sizeof text, "npy:%s,%s", p, l);
    spec_set(&s, "data", text);
    load_fails(&s, l, "expected (2,)");
    data_spec_free(&s);
}

Test(data, bad_cifar_size) {
    const char *f = tpath("bad.bin");
    write_cifar(f, 2, 0);
    cr_assert_eq(truncate(f, 3073 * 2 - 100), 0);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "cifar10:%s", f);
    load_fails(&s, f, "is not a positive multiple of 3073");
    uint8_t rec[3073] = {42}; /* label 42: not CIFAR-10 */
    write_file(f, rec, sizeof rec, 0);
    load_fails(&s, f, "label 42");
    const char *dir = tpath("partial");
    mkdir(dir, 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/data_batch_1.bin", dir);
    write_cifar(p, 1, 0);
    spec_data(&s, "cifar10:%s", dir);
    load_fails(&s, "data_batch_2.bin", "cannot open");
    data_spec_free(&s);
}

Test(data, bad_empty_folder_and_undecodable_image) {
    const char *dir = tpath("empty");
    mkdir(dir, 0755);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "folder:%s", dir);
    load_fails(&s, dir, "no PNG or JPEG images");
    char p[600];
    snprintf(p, sizeof p, "%s/broken.png", dir);
    write_file(p, "this is not a PNG", 17, 0);
    load_fails(&s, p, "cannot decode");
    /* A class folder without images */
    const char *cdir = tpath("cls");
    mkdir(cdir, 0755);
    snprintf(p, sizeof p, "%s/a", cdir);
    mkdir(p, 0755);
    spec_data(&s, "folder:%s", cdir);
    load_fails(&s, p, "class folder has no PNG or JPEG images");
    data_spec_free(&s);
}

Test(data, bad_size_does_not_fit_model) {
    const char *dir = tpath("big");
    mkdir(dir, 0755);
    uint8_t *img = calloc(40 * 40, 1);
    char p[600];
    snprintf(p, sizeof p, "%s/17.png", dir);
    JtError err;
    cr_assert_eq(png_write_gray(p, img, 40, 40, &err), JT_OK);
    free(img);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "folder:%s", dir);
    spec_set(&s, "size", "28");
    load_fails(&s, p, "is 40x40, model expects 28x28 (use --fit pad, --fit crop or --fit resize)");
    spec_set(&s, "fit", "pad");
    load_fails(&s, p, "--fit pad cannot shrink it");
    spec_set(&s, "fit", "crop");
    Dataset ds;
    load_ok(&s, &ds);
    cr_expect_eq(ds.h, 28);
    data_free(&ds);
    spec_set(&s, "channels", "3");
    load_fails(&s, dir, "model expects 3 (use --color rgb)");
    data_spec_free(&s);
}

Test(data, bad_mixed_gray_and_rgb_folder) {
    const char *dir = tpath("mixed");
    mkdir(dir, 0755);
    uint8_t px[3 * 2 * 2] = {0};
    char p[600];
    JtError err;
    snprintf(p, sizeof p, "%s/a.png", dir);
    cr_assert_eq(png_write_gray(p, px, 2, 2, &err), JT_OK);
    snprintf(p, sizeof p, "%s/b.png", dir);
    cr_assert_eq(png_write_rgb(p, px, 2, 2, &err), JT_OK);
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "folder:%s", dir);
    load_fails(&s, p, "is RGB but image 0 is gray");
    spec_set(&s, "color", "rgb");
    Dataset ds;
    load_ok(&s, &ds);
    cr_expect_eq(ds.c, 3);
    data_free(&ds);
    data_spec_free(&s);
}

Test(data, bad_class_filter) {
    const char *dir = make_mnist_dir("m", 6, 2, 2, 2); /* labels 0, 1, 2 only */
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "mnist:%s", dir);
    spec_set(&s, "classes", "3,7");
    load_fails(&s, NULL, "class filter 3,7 leaves no images");
    load_fails(&s, dir, "labels are 0..9");
    spec_set(&s, "classes", "3,11");
    load_fails(&s, dir, "class 11 is not in");
    spec_set(&s, "classes", "sandal");
    load_fails(&s, dir, "'sandal' is not a class");
    const char *img = tpath("im");
    write_idx_images(img, 0x803, 3, 2, 2, 0);
    spec_data(&s, "idx:%s", img);
    spec_set(&s, "classes", "0");
    load_fails(&s, img, "has no labels");
    data_spec_free(&s);
}

Test(data, bad_index_file) {
    const char *dir = make_mnist_dir("m", 6, 2, 2, 2);
    const char *idx = tpath("idx.txt");
    DatasetSpec s;
    data_spec_init(&s);
    spec_data(&s, "mnist:%s", dir);
    spec_set(&s, "indices", idx);
    load_fails(&s, idx, "cannot open index file");
    write_file(idx, "1\n6\n", 4, 0);
    load_fails(&s, idx, ":2: index 6 is out of range");
    write_file(idx, "1\n2x\n", 5, 0);
    load_fails(&s, idx, ":2: '2x' is not an index");
    write_file(idx, "-1\n", 3, 0);
    load_fails(&s, idx, ":1: '-1' is not an index");
    write_file(idx, "3\n1\n3\n", 6, 0);
    load_fails(&s, idx, ":3: index 3 is listed twice (first on line 1)");
    write_file(idx, "# nothing\n\n", 11, 0);
    load_fails(&s, idx, "lists no indices");
    write_file(idx, "0\n3\n", 4, 0); /* labels 0 and 0 */
    spec_set(&s, "classes", "1");
    load_fails(&s, idx, "class filter 1 leaves no images (of the 2 listed in");
    data_spec_free(&s);
}
