/* test_npy.c: the .npy reader and writer: round trips for every dtype and shape kind, the exact
 * header numpy writes, reading version 2.0 headers, the row store, and one test per malformed
 * file (each checks that the message names the file). Files live in a mkdtemp() folder. */
#include "helpers/tmpdir.h"
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/npy.h"


TestSuite(npy, .init = test_tmp_setup, .fini = test_tmp_teardown);

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_tmp, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

/* A .npy built by hand: preamble for version `major`, header text, then n data bytes. */
static void write_raw_npy(const char *path, int major, const char *dict, const void *data,
                          size_t n) {
    size_t pre = major == 1 ? 10 : 12, hl = strlen(dict);
    unsigned char *buf = malloc(pre + hl + n);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(hl & 0xff);
    buf[9] = (unsigned char)(hl >> 8);
    if (major != 1) buf[10] = buf[11] = 0;
    memcpy(buf + pre, dict, hl);
    if (n) memcpy(buf + pre + hl, data, n);
    write_bytes(path, buf, pre + hl + n);
    free(buf);
}

static void expect_error_names(int rc, const JtError *err, const char *path, const char *what) {
    cr_assert_eq(rc, JT_ERR, "expected an error mentioning '%s'", what);
    cr_expect(strstr(err->msg, path) != NULL, "message does not name the file: %s", err->msg);
    cr_expect(strstr(err->msg, what) != NULL, "message lacks '%s': %s", what, err->msg);
}

Test(npy, roundtrip_f32_matrix) {
    float a[2 * 3] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f}; /* (2, 3) */
    size_t shape[2] = {2, 3};
    JtError err = {{0}};
    const char *p = tpath("a.npy");
    cr_assert_eq(npy_write(p, NPY_F32, 2, shape, a, &err), JT_OK, "%s", err.msg);
    NpyHeader h;
    cr_assert_eq(npy_read_header(p, &h, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(h.dtype, NPY_F32);
    cr_expect_eq(h.ndim, 2);
    cr_expect_eq(h.shape[0], 2);
    cr_expect_eq(h.shape[1], 3);
    cr_expect_eq(h.count, 6);
    cr_expect_eq(h.data_offset % 64, 0, "data must start on a 64-byte boundary as numpy's does");
    void *back;
    cr_assert_eq(npy_read(p, &h, &back, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(memcmp(back, a, sizeof a), 0, "data differs after a round trip");
    free(back);
}

Test(npy, header_is_numpys) {
    /* numpy.save(numpy.arange(1, 7, dtype=numpy.uint8)) with numpy 2.4: a 128-byte header (dict,
     * 20 spaces of growth room for shape[0], 39 spaces of alignment, '\n'), then the 6 bytes. */
    uint8_t a[6] = {1, 2, 3, 4, 5, 6};
    size_t shape[1] = {6};
    JtError err;
    const char *p = tpath("h.npy");
    cr_assert_eq(npy_write(p, NPY_U8, 1, shape, a, &err), JT_OK, "%s", err.msg);
    FILE *fp = fopen(p, "rb");
    char buf[256];
    cr_assert_eq(fread(buf, 1, sizeof buf, fp), 128 + 6);
    fclose(fp);
    char want[128];
    memcpy(want, "\x93NUMPY\x01\x00\x76\x00", 10);
    const char *dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (6,), }";
    memcpy(want + 10, dict, strlen(dict));
    memset(want + 10 + strlen(dict), ' ', 128 - 10 - strlen(dict) - 1);
    want[127] = '\n';
    cr_expect_eq(memcmp(buf, want, 128), 0, "header differs from numpy's: %.118s", buf + 10);
    cr_expect_eq(memcmp(buf + 128, a, 6), 0);
}

Test(npy, roundtrip_every_dtype) {
    JtError err;
    int32_t i4[4] = {-1, 0, 2147483647, -2147483647 - 1};
    int64_t i8[2] = {-5, 1LL << 40};
    double f8[3] = {0.1, -1e300, 3.0};
    uint8_t u1[1] = {255};
    struct {
        NpyDtype t;
        const void *d;
        int ndim;
        size_t shape[3];
        size_t bytes;
    } cases[] = {{NPY_I32, i4, 2, {2, 2}, sizeof i4},
                 {NPY_I64, i8, 3, {1, 2, 1}, sizeof i8},
                 {NPY_F64, f8, 1, {3}, sizeof f8},
                 {NPY_U8, u1, 0, {0}, sizeof u1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *p = tpath("t.npy");
        cr_assert_eq(npy_write(p, cases[c].t, cases[c].ndim, cases[c].shape, cases[c].d, &err),
                     JT_OK, "%s", err.msg);
        NpyHeader h;
        void *back;
        cr_assert_eq(npy_read(p, &h, &back, &err), JT_OK, "%s", err.msg);
        cr_expect_eq(h.dtype, cases[c].t, "case %zu", c);
        cr_expect_eq(h.ndim, cases[c].ndim, "case %zu", c);
        for (int d = 0; d < h.ndim; d++)
            cr_expect_eq(h.shape[d], cases[c].shape[d]);
        cr_expect_eq(h.count * npy_dtype_size(h.dtype), cases[c].bytes, "case %zu", c);
        cr_expect_eq(memcmp(back, cases[c].d, cases[c].bytes), 0, "case %zu data", c);
        free(back);
    }
}

Test(npy, reads_version2_any_key_order) {
    const char *p = tpath("v2.npy");
    /* Version 2.0, keys in another order, extra spaces, a Python 2 long: all legal. The header
     * length plus the 12-byte preamble need not be aligned for reading. */
    const char *dict = "{ 'shape' : (2L, 2), \"fortran_order\": False,'descr':'<i8' }  \n";
    int64_t d[4] = {1, 2, 3, -4};
    write_raw_npy(p, 2, dict, d, sizeof d);
    NpyHeader h;
    void *back;
    JtError err;
    cr_assert_eq(npy_read(p, &h, &back, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(h.version, 2);
    cr_expect_eq(h.dtype, NPY_I64);
    cr_expect_eq(h.shape[0], 2);
    cr_expect_eq(h.shape[1], 2);
    cr_expect_eq(((int64_t *)back)[3], -4);
    free(back);
}

Test(npy, refuses_fortran_order) {
    const char *p = tpath("f.npy");
    float d[4] = {0};
    write_raw_npy(p, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", d,
                  sizeof d);
    NpyHeader h;
    JtError err;
    expect_error_names(npy_read_header(p, &h, &err), &err, p, "Fortran");
}

Test(npy, refuses_unsupported_dtypes) {
    const char *p = tpath("d.npy");
    uint16_t d[2] = {0};
    NpyHeader h;
    JtError err;
    write_raw_npy(p, 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }\n", d, sizeof d);
    expect_error_names(npy_read_header(p, &h, &err), &err, p, "'<f2' is not supported");
    float f[2] = {0};
    write_raw_npy(p, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", f, sizeof f);
    expect_error_names(npy_read_header(p, &h, &err), &err, p, "big-endian");
    write_raw_npy(p, 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }\n", f,
                  sizeof f);
    expect_error_names(npy_read_header(p, &h, &err), &err, p, "structured");
}

Test(npy, refuses_wrong_dtype_when_asked) {
    const char *p = tpath("w.npy");
    size_t shape[1] = {2};
    double d[2] = {1, 2};
    JtError err;
    cr_assert_eq(npy_write(p, NPY_F64, 1, shape, d, &err), JT_OK);
    NpyHeader h;
    void *data;
    expect_error_names(npy_read_as(p, NPY_F32, &h, &data, &err), &err, p,
                       "dtype is <f8, expected <f4");
    cr_expect_null(data);
}

Test(npy, refuses_truncated_and_padded_files) {
    const char *p = tpath("t.npy");
    float d[3] = {1, 2, 3};
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n";
    write_raw_npy(p, 1, dict, d, sizeof d); /* 3 of 4 floats */
    NpyHeader h;
    void *data;
    JtError err;
    expect_error_names(npy_read(p, &h, &data, &err), &err, p, "truncated");
    float e[5] = {0};
    write_raw_npy(p, 1, dict, e, sizeof e); /* one float too many */
    expect_error_names(npy_read(p, &h, &data, &err), &err, p, "after the end");
    write_raw_npy(p, 1, "{'descr': '<f4', 'fortran_", NULL, 0);
    expect_error_names(npy_read(p, &h, &data, &err), &err, p, "malformed");
}

Test(npy, refuses_bad_magic_and_missing_file) {
    const char *p = tpath("m.npy");
    write_bytes(p, "PK\x03\x04 not an npy file", 20);
    NpyHeader h;
    JtError err;
    expect_error_names(npy_read_header(p, &h, &err), &err, p, "bad magic");
    const char *q = tpath("absent.npy");
    expect_error_names(npy_read_header(q, &h, &err), &err, q, "cannot open");
}

Test(npy, write_failure_leaves_nothing) {
    char p[512];
    snprintf(p, sizeof p, "%s/no/such/dir/x.npy", test_tmp);
    size_t shape[1] = {1};
    float d = 1;
    JtError err;
    expect_error_names(npy_write(p, NPY_F32, 1, shape, &d, &err), &err, p, "cannot create");
    /* A successful write leaves exactly the one file: no temporary behind. */
    cr_assert_eq(npy_write(tpath("ok.npy"), NPY_F32, 1, shape, &d, &err), JT_OK);
    DIR *dir = opendir(test_tmp);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.') {
            files++;
            cr_expect_str_eq(e->d_name, "ok.npy");
        }
    closedir(dir);
    cr_expect_eq(files, 1);
}

Test(npy, row_store_fill_out_of_order_and_resume) {
    const char *p = tpath("store.npy");
    size_t shape[2] = {5, 3}; /* 5 rows of 3 floats */
    NpyFile f;
    JtError err;
    cr_assert_eq(npy_create(&f, p, NPY_F32, 2, shape, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(f.row_bytes, 3 * sizeof(float));
    float r3[3] = {30, 31, 32}, r0[6] = {0, 1, 2, 10, 11, 12};
    cr_assert_eq(npy_write_rows(&f, 3, 1, r3, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(npy_write_rows(&f, 0, 2, r0, &err), JT_OK, "%s", err.msg);
    expect_error_names(npy_write_rows(&f, 4, 2, r0, &err), &err, p, "out of range");
    cr_assert_eq(npy_close(&f, &err), JT_OK);

    /* Resume: reopen writable, fill the last row. */
    cr_assert_eq(npy_open(&f, p, 1, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(f.rows, 5);
    float r4[3] = {40, 41, 42};
    cr_assert_eq(npy_write_rows(&f, 4, 1, r4, &err), JT_OK);
    float got[3];
    cr_assert_eq(npy_read_rows(&f, 3, 1, got, &err), JT_OK);
    cr_expect_eq(memcmp(got, r3, sizeof got), 0);
    cr_assert_eq(npy_close(&f, &err), JT_OK);

    NpyHeader h;
    float *all;
    cr_assert_eq(npy_read(p, &h, (void **)&all, &err), JT_OK, "%s", err.msg);
    float want[15] = {0, 1, 2, 10, 11, 12, 0, 0, 0, 30, 31, 32, 40, 41, 42};
    cr_expect_eq(memcmp(all, want, sizeof want), 0, "row 2 was never written and must read 0");
    free(all);
}
