/* test_fuzz_regress.c: every input the fuzz targets (tests/fuzz/) found a defect with, committed
 * under tests/fuzz/regress/, fed through the reader it broke: each must now be refused with one
 * clear line naming the file and what is wrong (the fix is named beside each test). */
#include "core/common.h"
#include "data/source.h"
#include "diffusion/trajectory.h"
#include "helpers/tmpdir.h"
#include "io/npy.h"
#include "io/safetensors.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REGRESS JTRAK_SOURCE_DIR "/tests/fuzz/regress/"

TestSuite(fuzz_regress, .init = test_tmp_setup, .fini = test_tmp_teardown);

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    struct stat st;
    cr_assert_eq(fstat(fileno(f), &st), 0);
    *n = (size_t)st.st_size;
    uint8_t *b = malloc(*n ? *n : 1);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void expect_words(int rc, const JtError *err, const char *const *want) {
    cr_assert_eq(rc, JT_ERR, "accepted");
    cr_assert_null(strchr(err->msg, '\n'), "message spans lines: %s", err->msg);
    for (; *want; want++)
        cr_assert(strstr(err->msg, *want) != NULL, "message lacks \"%s\": %s", *want, err->msg);
}

/* fuzz_image: a JPEG whose Huffman table declares more than 256 codes; stb_image 2.27 wrote them
 * past its 257-entry table (UBSan: index 257 out of bounds in stbi__build_huffman). Fixed in
 * imagefolder.c (jpeg_check_huffman). */
Test(fuzz_regress, jpeg_huffman_counts_over_256) {
    size_t n;
    uint8_t *b = slurp(REGRESS "jpeg_huffman_counts_over_256.jpg", &n);
    DataImage img;
    JtError err = {{0}};
    expect_words(data_image_decode(b, n, "x.jpg", &img, &err), &err,
                 (const char *const[]){"x.jpg", "cannot decode", "corrupt JPEG", "Huffman table",
                                       "at most 256", NULL});
    free(b);
}
