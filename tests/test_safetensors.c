/* test_safetensors.c: the safetensors reader and writer (src/io/safetensors.c) against the format
 * description of unet2d.md section 10 and the Rust reference: the worked 200-byte example byte by
 * byte, a mixed-dtype file whose header was produced by Python's safetensors 0.8 (save_file),
 * round trips, F16/BF16/F64 conversions of known values, atomic writes, and one test per malformed
 * input, each checking that the error names the file and the tensor or field. */
#include "io/safetensors.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jtrak_st_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL, "mkdtemp failed");
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(tmpdir);
}

TestSuite(safetensors, .init = make_tmpdir, .fini = remove_tmpdir);

static const char *tmp_path(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    cr_assert(fp != NULL, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    cr_assert(fread(buf, 1, (size_t)len, fp) == (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

/* Writes an 8-byte length field n, then hdr_len header bytes, then data_len bytes 0,1,2,... */
static void write_raw_n(const char *path, uint64_t n, const char *hdr, size_t hdr_len,
                        size_t data_len) {
    FILE *fp = fopen(path, "wb");
    cr_assert(fp != NULL);
    for (int i = 0; i < 8; i++)
        fputc((int)((n >> (8 * i)) & 0xff), fp);
    fwrite(hdr, 1, hdr_len, fp);
    for (size_t i = 0; i < data_len; i++)
        fputc((int)(i & 0xff), fp);
    fclose(fp);
}

static void write_raw(const char *path, const char *hdr, size_t data_len) {
    write_raw_n(path, strlen(hdr), hdr, strlen(hdr), data_len);
}

static int count_dir_entries(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* st_open must fail, naming the file and containing both substrings (NULL to skip). */
static void expect_open_error(const char *path, const char *s1, const char *s2) {
    StFile f;
    JtError err = {{0}};
    int rc = st_open(&f, path, &err);
    cr_assert_eq(rc, JT_ERR, "st_open accepted a malformed file (%s)", path);
    cr_log_info("%s", err.msg);
    cr_assert(strstr(err.msg, path) != NULL, "error does not name the file: %s", err.msg);
    if (s1) cr_assert(strstr(err.msg, s1) != NULL, "error lacks \"%s\": %s", s1, err.msg);
    if (s2) cr_assert(strstr(err.msg, s2) != NULL, "error lacks \"%s\": %s", s2, err.msg);
    cr_assert_null(f.fp, "a failed st_open left the file open");
}

/* ---- the worked example and Python's layout ---- */

Test(safetensors, worked_example_byte_by_byte) {
    const float bias[2] = {1.0f, -2.0f};
    const float weight[6] = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f};
    StWriter w;
    st_writer_init(&w);
    /* added in the "wrong" order: the writer sorts by name */
    st_writer_add_f32(&w, "a.weight", ST_F32, 2, (int64_t[]){2, 3}, weight);
    st_writer_add_f32(&w, "a.bias", ST_F32, 1, (int64_t[]){2}, bias);
    JtError err = {{0}};
    const char *path = tmp_path("example.safetensors");
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);

    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},\"a.bias\":{\"dtype\":\"F32\",\"shape\":"
        "[2],\"data_offsets\":[0,8]},\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],"
        "\"data_offsets\":[8,32]}}";
    cr_assert_eq(strlen(hdr), 153);
    unsigned char want[200];
    const unsigned char len8[8] = {0xa0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(want, len8, 8);
    memcpy(want + 8, hdr, 153);
    memset(want + 8 + 153, ' ', 7);
    memcpy(want + 168, bias, 8);
    memcpy(want + 176, weight, 24);

    size_t n;
    unsigned char *got = slurp(path, &n);
    cr_assert_eq(n, 200, "file is %zu bytes, want 200", n);
    for (size_t i = 0; i < 200; i++)
        cr_assert_eq(got[i], want[i], "byte %zu: got 0x%02x want 0x%02x", i, got[i], want[i]);
    free(got);
    cr_assert_eq(count_dir_entries(), 1, "a temporary file was left behind");

    StFile f;
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 2);
    cr_assert_eq(f.header_len, 160);
    cr_assert_str_eq(st_metadata_get(&f, "format"), "pt");
    int iw = st_find(&f, "a.weight");
    cr_assert_eq(f.tensors[iw].ndim, 2);
    cr_assert_eq(f.tensors[iw].shape[1], 3);
    float back[6];
    cr_assert_eq(st_read_f32(&f, iw, back, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(memcmp(back, weight, sizeof weight), 0);
    st_close(&f);
}

/* The exact bytes Python's safetensors.torch.save_file wrote for these four tensors: sorted by
 * dtype descending (Rust enum order) then name. */
Test(safetensors, mixed_dtypes_match_python_layout) {
    const int64_t d = 7;
    const double c = 0.25;
    const float b = 1.5f, a[2] = {1.0f, 2.0f};
    StWriter w;
    st_writer_init(&w);
    st_writer_add_f32(&w, "a", ST_F16, 1, (int64_t[]){2}, a);
    st_writer_add_f32(&w, "b", ST_F32, 1, (int64_t[]){1}, &b);
    st_writer_add(&w, "c", ST_F64, 1, (int64_t[]){1}, &c);
    st_writer_add(&w, "d", ST_I64, 1, (int64_t[]){1}, &d);
    JtError err = {{0}};
    const char *path = tmp_path("mixed.safetensors");
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);

    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},\"d\":{\"dtype\":\"I64\",\"shape\":[1],\"data_"
        "offsets\":[0,8]},\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},\"b\":{"
        "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},\"a\":{\"dtype\":\"F16\","
        "\"shape\":[2],\"data_offsets\":[20,24]}}       ";
    const unsigned char data[24] = {0x07, 0, 0,    0,    0, 0, 0,    0,    0,    0,    0,    0,
                                    0,    0, 0xd0, 0x3f, 0, 0, 0xc0, 0x3f, 0x00, 0x3c, 0x00, 0x40};
    size_t n, hl = strlen(hdr);
    unsigned char *got = slurp(path, &n);
    cr_assert_eq(n, 8 + hl + 24);
    cr_assert_eq((size_t)got[0] | (size_t)got[1] << 8, hl);
    cr_assert_eq(memcmp(got + 8, hdr, hl), 0, "header differs: %.*s", (int)hl, got + 8);
    cr_assert_eq(memcmp(got + 8 + hl, data, 24), 0, "data differs");
    free(got);

    StFile f;
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    float v[2];
    cr_assert_eq(st_read_f32(&f, st_find(&f, "a"), v, &err), JT_OK);
    cr_assert(v[0] == 1.0f && v[1] == 2.0f);
    cr_assert_eq(st_read_f32(&f, st_find(&f, "c"), v, &err), JT_OK);
    cr_assert(v[0] == 0.25f);
    int64_t dd = 0;
    cr_assert_eq(st_read_raw(&f, st_find(&f, "d"), &dd, &err), JT_OK);
    cr_assert_eq(dd, 7);
    /* an integer tensor is not converted to floats */
    cr_assert_eq(st_read_f32(&f, st_find(&f, "d"), v, &err), JT_ERR);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "'d'") && strstr(err.msg, "I64"), "%s",
              err.msg);
    st_close(&f);
}

/* ---- round trips ---- */

Test(safetensors, f32_round_trip_is_bit_exact) {
    enum { N = 1000 };
    float *x = malloc(N * sizeof *x);
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        memcpy(&x[i], &s, 4); /* arbitrary bit patterns: NaNs, infs, subnormals included */
    }
    StWriter w;
    st_writer_init(&w);
    st_writer_set_metadata(&w, "note", "jtrak \"test\" \\ \xc3\xa9");
    st_writer_add_f32(&w, "z.big", ST_F32, 3, (int64_t[]){10, 10, 10}, x);
    st_writer_add_f32(&w, "scalar", ST_F32, 0, NULL, x + 7);
    st_writer_add_f32(&w, "empty", ST_F32, 2, (int64_t[]){0, 5}, x);
    st_writer_add_f32(&w, "weird \"name\"/\xe2\x82\xac", ST_F32, 1, (int64_t[]){3}, x + 1);
    JtError err = {{0}};
    const char *path = tmp_path("rt.safetensors");
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);

    StFile f;
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 4);
    cr_assert_eq(f.data_start % 8, 0, "data start %llu not 8-aligned",
                 (unsigned long long)f.data_start);
    cr_assert_str_eq(st_metadata_get(&f, "note"), "jtrak \"test\" \\ \xc3\xa9");
    cr_assert_str_eq(st_metadata_get(&f, "format"), "pt");
    float *y = calloc(N, sizeof *y);
    int i = st_find(&f, "z.big");
    cr_assert_eq(st_read_f32(&f, i, y, &err), JT_OK);
    cr_assert_eq(memcmp(x, y, N * sizeof *x), 0, "F32 data changed in the round trip");
    i = st_find(&f, "scalar");
    cr_assert_eq(f.tensors[i].ndim, 0);
    cr_assert_eq(f.tensors[i].numel, 1);
    cr_assert_eq(st_read_f32(&f, i, y, &err), JT_OK);
    cr_assert_eq(memcmp(x + 7, y, 4), 0);
    i = st_find(&f, "empty");
    cr_assert_eq(f.tensors[i].numel, 0);
    cr_assert_eq(f.tensors[i].begin, f.tensors[i].end);
    i = st_find(&f, "weird \"name\"/\xe2\x82\xac");
    cr_assert_geq(i, 0, "escaped name not found");
    cr_assert_eq(st_read_f32(&f, i, y, &err), JT_OK);
    cr_assert_eq(memcmp(x + 1, y, 12), 0);
    /* a range read: elements [123, 123+456) of z.big */
    i = st_find(&f, "z.big");
    cr_assert_eq(st_read_f32_range(&f, i, 123, 456, y, &err), JT_OK);
    cr_assert_eq(memcmp(x + 123, y, 456 * 4), 0);
    st_close(&f);
    free(x);
    free(y);
}

Test(safetensors, overwrite_is_atomic_and_leaves_no_temporary) {
    const float a[3] = {1, 2, 3}, b[2] = {4, 5};
    const char *path = tmp_path("over.safetensors");
    JtError err = {{0}};
    StWriter w;
    st_writer_init(&w);
    st_writer_add_f32(&w, "a", ST_F32, 1, (int64_t[]){3}, a);
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    st_writer_init(&w);
    st_writer_add_f32(&w, "b", ST_F32, 1, (int64_t[]){2}, b);
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    cr_assert_eq(count_dir_entries(), 1);
    StFile f;
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 1);
    cr_assert_str_eq(f.tensors[0].name, "b");
    st_close(&f);
}

Test(safetensors, write_into_missing_folder_fails_cleanly) {
    const float a[1] = {1};
    StWriter w;
    st_writer_init(&w);
    st_writer_add_f32(&w, "a", ST_F32, 1, (int64_t[]){1}, a);
    JtError err = {{0}};
    const char *path = tmp_path("no/such/folder/x.safetensors");
    cr_assert_eq(st_writer_write(&w, path, &err), JT_ERR);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    st_writer_free(&w);
    cr_assert_eq(count_dir_entries(), 0);
}

/* ---- conversions ---- */

Test(safetensors, f16_known_values) {
    const struct {
        uint16_t h;
        float f;
    } cases[] = {
        {0x0000, 0.0f},
        {0x8000, -0.0f},
        {0x3c00, 1.0f},
        {0xc000, -2.0f},
        {0x3555, 0.333251953125f},
        {0x7bff, 65504.0f},
        {0x0400, 6.103515625e-05f /* 2^-14, smallest normal */},
        {0x0001, 5.9604644775390625e-08f /* 2^-24, smallest subnormal */},
        {0x03ff, 6.097555160522461e-05f /* largest subnormal */},
        {0x7c00, INFINITY},
        {0xfc00, -INFINITY},
        {0x3bff, 0.99951171875f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float f = st_f16_to_f32(cases[i].h);
        cr_assert(memcmp(&f, &cases[i].f, 4) == 0, "f16 0x%04x -> %.9g, want %.9g", cases[i].h,
                  (double)f, (double)cases[i].f);
        cr_assert_eq(st_f32_to_f16(cases[i].f), cases[i].h, "f32 %.9g -> 0x%04x, want 0x%04x",
                     (double)cases[i].f, st_f32_to_f16(cases[i].f), cases[i].h);
    }
    cr_assert(isnan(st_f16_to_f32(0x7e00)));
    cr_assert_eq(st_f32_to_f16(NAN) & 0x7e00, 0x7e00, "NaN must stay a (quiet) NaN");
    /* rounding to nearest even */
    cr_assert_eq(st_f32_to_f16(1.0f + 0x1p-11f), 0x3c00, "tie rounds to even (down)");
    cr_assert_eq(st_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02, "tie rounds to even (up)");
    cr_assert_eq(st_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01, "above the tie rounds up");
    cr_assert_eq(st_f32_to_f16(65519.0f), 0x7bff, "just below 65520 stays finite");
    cr_assert_eq(st_f32_to_f16(65520.0f), 0x7c00, "65520 rounds to inf");
    cr_assert_eq(st_f32_to_f16(0x1p-25f), 0x0000, "half the smallest subnormal ties to 0");
    cr_assert_eq(st_f32_to_f16(0x1p-25f * 3), 0x0002, "1.5 subnormal ulps ties to 2");
    cr_assert_eq(st_f32_to_f16(-0x1p-30f), 0x8000, "underflow keeps the sign");
    cr_assert_eq(st_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400, "rounds up into the normals");
}

Test(safetensors, bf16_known_values) {
    cr_assert(st_bf16_to_f32(0x3f80) == 1.0f);
    cr_assert(st_bf16_to_f32(0xc040) == -3.0f);
    cr_assert(st_bf16_to_f32(0x7f80) == INFINITY);
    cr_assert(st_bf16_to_f32(0x0001) == 0x1p-133f);
    cr_assert(isnan(st_bf16_to_f32(0x7fc0)));
    cr_assert_eq(st_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(st_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80, "tie rounds to even (down)");
    cr_assert_eq(st_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82, "tie rounds to even (up)");
    cr_assert_eq(st_f32_to_bf16(3.0e38f), 0x7f62);
    cr_assert_eq(st_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));
}

/* F16, BF16 and F64 tensors written raw are read as float32. */
Test(safetensors, reads_f16_bf16_f64_tensors) {
    const uint16_t h[4] = {0x3c00, 0xc000, 0x3555, 0x0001};
    const uint16_t bf[3] = {0x3f80, 0xc040, 0x4049};
    const double dv[3] = {0.1, -1e-40, 3e38};
    StWriter w;
    st_writer_init(&w);
    st_writer_add(&w, "h", ST_F16, 2, (int64_t[]){2, 2}, h);
    st_writer_add(&w, "bf", ST_BF16, 1, (int64_t[]){3}, bf);
    st_writer_add(&w, "d", ST_F64, 1, (int64_t[]){3}, dv);
    JtError err = {{0}};
    const char *path = tmp_path("conv.safetensors");
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    StFile f;
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    float v[4];
    cr_assert_eq(st_read_f32(&f, st_find(&f, "h"), v, &err), JT_OK);
    cr_assert(v[0] == 1.0f && v[1] == -2.0f && v[2] == 0.333251953125f && v[3] == 0x1p-24f);
    cr_assert_eq(st_read_f32(&f, st_find(&f, "bf"), v, &err), JT_OK);
    cr_assert(v[0] == 1.0f && v[1] == -3.0f && v[2] == 3.140625f);
    cr_assert_eq(st_read_f32(&f, st_find(&f, "d"), v, &err), JT_OK);
    cr_assert(v[0] == 0.1f && v[1] == (float)-1e-40 && v[2] == 3e38f);
    cr_assert_eq(st_read_f32_range(&f, st_find(&f, "h"), 2, 2, v, &err), JT_OK);
    cr_assert(v[0] == 0.333251953125f && v[1] == 0x1p-24f);
    st_close(&f);
}

/* Floats written as F16 / BF16 come back as their rounded values (the conversion functions are
 * checked above); 20000 elements cross the writer's and reader's chunk boundaries. */
Test(safetensors, write_f32_as_f16_and_bf16) {
    enum { N = 20000 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++)
        x[i] = (float)sin(0.37 * i) * (float)(1 + i % 97);
    StWriter w;
    st_writer_init(&w);
    st_writer_add_f32(&w, "h", ST_F16, 2, (int64_t[]){100, 200}, x);
    st_writer_add_f32(&w, "b", ST_BF16, 1, (int64_t[]){N}, x);
    st_writer_add_f32(&w, "d", ST_F64, 1, (int64_t[]){N}, x);
    JtError err = {{0}};
    const char *path = tmp_path("half.safetensors");
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    StFile f;
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(f.tensors[st_find(&f, "h")].dtype, ST_F16);
    cr_assert_eq(f.tensors[st_find(&f, "h")].end - f.tensors[st_find(&f, "h")].begin, 2 * N);
    cr_assert_eq(st_read_f32(&f, st_find(&f, "h"), y, &err), JT_OK);
    for (int i = 0; i < N; i++)
        cr_assert(y[i] == st_f16_to_f32(st_f32_to_f16(x[i])), "F16 element %d", i);
    cr_assert_eq(st_read_f32(&f, st_find(&f, "b"), y, &err), JT_OK);
    for (int i = 0; i < N; i++)
        cr_assert(y[i] == st_bf16_to_f32(st_f32_to_bf16(x[i])), "BF16 element %d", i);
    cr_assert_eq(st_read_f32(&f, st_find(&f, "d"), y, &err), JT_OK);
    cr_assert_eq(memcmp(x, y, N * sizeof *x), 0, "F64 round trip must be exact");
    st_close(&f);
    free(x);
    free(y);
}

/* ---- malformed files: one test each ---- */

#define T1_ENTRY "\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"
#define T1 "{" T1_ENTRY "}"

Test(safetensors, missing_file) {
    expect_open_error(tmp_path("nope.safetensors"), "cannot open", NULL);
}

Test(safetensors, file_shorter_than_length_field) {
    const char *path = tmp_path("short.safetensors");
    FILE *fp = fopen(path, "wb");
    fwrite("\x10\0\0", 1, 3, fp);
    fclose(fp);
    expect_open_error(path, "too short", NULL);
}

Test(safetensors, truncated_data) {
    const char *path = tmp_path("trunc.safetensors");
    write_raw(path, T1, 10); /* 16 bytes promised */
    expect_open_error(path, "tensor 't'", "past the end");
}

Test(safetensors, truncated_header) {
    const char *path = tmp_path("trunch.safetensors");
    write_raw_n(path, strlen(T1), T1, 20, 0);
    expect_open_error(path, "header length", "past the end of the file");
}

Test(safetensors, header_length_larger_than_file) {
    const char *path = tmp_path("hlen.safetensors");
    write_raw_n(path, 5000, T1, strlen(T1), 16);
    expect_open_error(path, "header length 5000", "past the end of the file");
}

Test(safetensors, header_length_over_limit) {
    const char *path = tmp_path("huge.safetensors");
    write_raw_n(path, 100000001ull, T1, strlen(T1), 16);
    expect_open_error(path, "100000001", "limit");
    write_raw_n(path, UINT64_MAX, T1, strlen(T1), 16);
    expect_open_error(path, "limit", NULL);
}

Test(safetensors, invalid_json) {
    const char *path = tmp_path("badjson.safetensors");
    write_raw(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]", 16);
    expect_open_error(path, "not valid JSON", NULL);
}

Test(safetensors, trailing_garbage_after_json) {
    const char *path = tmp_path("trail.safetensors");
    write_raw(path, T1 "  x", 16);
    expect_open_error(path, "not valid JSON", NULL);
}

Test(safetensors, header_not_an_object) {
    const char *path = tmp_path("array.safetensors");
    write_raw(path, "[1,2,3]", 0);
    expect_open_error(path, "not a JSON object", NULL);
}

Test(safetensors, header_not_utf8) {
    const char *path = tmp_path("utf8.safetensors");
    write_raw(path, "{\"t\xc3\x28\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
              16);
    expect_open_error(path, "UTF-8", NULL);
}

Test(safetensors, entry_not_an_object) {
    const char *path = tmp_path("entry.safetensors");
    write_raw(path, "{\"t\":[1,2]}", 0);
    expect_open_error(path, "tensor 't'", "not a JSON object");
}

Test(safetensors, missing_dtype) {
    const char *path = tmp_path("nodtype.safetensors");
    write_raw(path, "{\"t\":{\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    expect_open_error(path, "tensor 't'", "'dtype'");
}

Test(safetensors, dtype_not_a_string) {
    const char *path = tmp_path("dtypenum.safetensors");
    write_raw(path, "{\"t\":{\"dtype\":4,\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    expect_open_error(path, "tensor 't'", "'dtype' is not a string");
}

Test(safetensors, unknown_dtype) {
    const char *path = tmp_path("f33.safetensors");
    write_raw(path, "{\"t\":{\"dtype\":\"F33\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    expect_open_error(path, "tensor 't'", "unknown dtype 'F33'");
}

Test(safetensors, shape_not_integers) {
    const char *path = tmp_path("shape.safetensors");
    write_raw(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}", 16);
    expect_open_error(path, "tensor 't'", "shape entry 1");
    write_raw(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2.5],\"data_offsets\":[0,16]}}", 16);
    expect_open_error(path, "tensor 't'", "shape entry 1");
    write_raw(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16);
    expect_open_error(path, "tensor 't'", "'shape' is not a JSON array");
}

Test(safetensors, data_offsets_wrong_type) {
    const char *path = tmp_path("offs.safetensors");
    write_raw(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16,32]}}", 32);
    expect_open_error(path, "tensor 't'", "'data_offsets'");
    write_raw(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":\"0,16\"}}", 16);
    expect_open_error(path, "tensor 't'", "'data_offsets'");
    write_raw(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2]}}", 16);
    expect_open_error(path, "tensor 't'", "missing field 'data_offsets'");
}

Test(safetensors, size_does_not_match_shape) {
    const char *path = tmp_path("model/diffusion_pytorch_model.safetensors");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/model", tmpdir);
    mkdir(dir, 0755);
    write_raw(path,
              "{\"conv_in.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3],\"data_offsets\":[0,"
              "100]}}",
              100);
    char want[700];
    snprintf(want, sizeof want,
             "%s: tensor 'conv_in.weight': data_offsets [0,100] but shape [4,1,3,3] of F32 needs "
             "144 bytes",
             path);
    StFile f;
    JtError err = {{0}};
    cr_assert_eq(st_open(&f, path, &err), JT_ERR);
    cr_assert_str_eq(err.msg, want);
    unlink(path);
    rmdir(dir);
}

Test(safetensors, offsets_out_of_bounds) {
    const char *path = tmp_path("oob.safetensors");
    write_raw(path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              12);
    expect_open_error(path, "tensor 'b'", "past the end of the data buffer");
}

Test(safetensors, offsets_end_before_begin) {
    const char *path = tmp_path("rev.safetensors");
    write_raw(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8);
    expect_open_error(path, "tensor 't'", "end before they begin");
}

Test(safetensors, overlapping_offsets) {
    const char *path = tmp_path("overlap.safetensors");
    write_raw(path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
              24);
    expect_open_error(path, "tensor 'b'", "overlap tensor 'a'");
}

Test(safetensors, hole_in_buffer) {
    const char *path = tmp_path("hole.safetensors");
    write_raw(path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
              20);
    expect_open_error(path, "tensor 'b'", "hole");
}

Test(safetensors, buffer_not_fully_covered) {
    const char *path = tmp_path("tail.safetensors");
    write_raw(path, T1, 20);
    expect_open_error(path, "tensor 't'", "trailing bytes");
    write_raw(path, "{}", 4);
    expect_open_error(path, "no tensors", NULL);
}

Test(safetensors, duplicate_key) {
    const char *path = tmp_path("dup.safetensors");
    write_raw(path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              16);
    expect_open_error(path, "tensor 'a'", "appears twice");
}

Test(safetensors, metadata_value_not_string) {
    const char *path = tmp_path("meta.safetensors");
    write_raw(path, "{\"__metadata__\":{\"format\":\"pt\",\"step\":5}," T1_ENTRY "}", 16);
    expect_open_error(path, "__metadata__", "'step' is not a string");
    write_raw(path, "{\"__metadata__\":[\"pt\"]," T1_ENTRY "}", 16);
    expect_open_error(path, "'__metadata__'", "not a JSON object");
}

Test(safetensors, control_byte_in_header) {
    const char *path = tmp_path("ctl.safetensors");
    write_raw(path, "{\"t\x01\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    expect_open_error(path, "control byte", NULL);
}

/* Accepted by the Rust reader too: padding spaces, null metadata, an empty file. */
Test(safetensors, accepts_valid_variants) {
    const char *path = tmp_path("ok.safetensors");
    StFile f;
    JtError err = {{0}};
    write_raw(path, "{\"__metadata__\":null," T1_ENTRY "}     ", 16);
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(f.n_meta, 0);
    st_close(&f);
    write_raw(path, "{}", 0);
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 0);
    st_close(&f);
    /* zero-sized tensors may share an offset with the tensor that follows */
    write_raw(path,
              "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
              "\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
              16);
    cr_assert_eq(st_open(&f, path, &err), JT_OK, "%s", err.msg);
    st_close(&f);
}
