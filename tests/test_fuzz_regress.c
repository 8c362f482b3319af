/* test_fuzz_regress.c: every input the fuzz targets (tests/fuzz/) found a defect with, committed
 * under tests/fuzz/regress/, fed through the reader it broke: each must now be refused with one
 * clear line naming the file and what is wrong (the fix is named beside each test); and the defects
 * found by reading those readers beside the fuzzers. */
#include "core/common.h"
#include "data/context.h"
#include "data/source.h"
#include "diffusion/trajectory.h"
#include "helpers/read_file.h"
#include "helpers/tmpdir.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "text/tokenizer.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REGRESS JTRAK_SOURCE_DIR "/tests/fuzz/regress/"

TestSuite(fuzz_regress, .init = test_tmp_setup, .fini = test_tmp_teardown);

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
    uint8_t *b = (uint8_t *)test_read_file(REGRESS "jpeg_huffman_counts_over_256.jpg", &n);
    DataImage img;
    JtError err = {{0}};
    expect_words(data_image_decode(b, n, "x.jpg", &img, &err), &err,
                 (const char *const[]){"x.jpg", "cannot decode", "corrupt JPEG", "Huffman table",
                                       "at most 256", NULL});
    free(b);
}

/* A one-sample, one-step trajectory with the given metadata. */
static const char *write_traj(const char *sampler, const char *seed, const char *eta,
                              const char *fp) {
    static char p[600];
    snprintf(p, sizeof p, "%s/trajectory.safetensors", test_tmp);
    StWriter w;
    st_writer_init(&w);
    st_writer_set_metadata(&w, "format", "jtrak-trajectory-v1");
    st_writer_set_metadata(&w, "sampler", sampler);
    st_writer_set_metadata(&w, "seed", seed);
    st_writer_set_metadata(&w, "eta", eta);
    st_writer_set_metadata(&w, "model_fingerprint", fp);
    static const int64_t seq[5] = {1, 1, 1, 1, 1}, img[4] = {1, 1, 1, 1}, one[1] = {1};
    static const float x = 0.5f;
    static const int32_t t = 7;
    st_writer_add(&w, "x_t", ST_F32, 5, seq, &x);
    st_writer_add(&w, "x0_hat", ST_F32, 5, seq, &x);
    st_writer_add(&w, "noise", ST_F32, 5, seq, &x);
    st_writer_add(&w, "x_T", ST_F32, 4, img, &x);
    st_writer_add(&w, "x_0", ST_F32, 4, img, &x);
    st_writer_add(&w, "timesteps", ST_I32, 1, one, &t);
    JtError err = {{0}};
    cr_assert_eq(st_writer_write(&w, p, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    return p;
}

/* Review: traj_load read the sampler, seed, eta and model fingerprint without checking them (a
 * sampler "foo" loaded as DDPM, a seed "x" as 0). Fixed in trajectory.c (check_settings). */
Test(fuzz_regress, trajectory_settings_are_checked) {
    Trajectory tr;
    JtError err = {{0}};
    const char *p = write_traj("ddim", "12", "0", "00000000000000ab");
    cr_assert_eq(traj_load(&tr, p, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(tr.sampler, SAMPLER_DDIM);
    cr_assert_eq(tr.seed, 12);
    cr_assert_eq(tr.model_fingerprint, 0xab);
    traj_free(&tr);
    p = write_traj("foo", "12", "0", "00000000000000ab");
    expect_words(traj_load(&tr, p, &err), &err,
                 (const char *const[]){p, "metadata 'sampler' is 'foo'", "ddpm or ddim", NULL});
    p = write_traj("ddpm", "-1", "0", "00000000000000ab");
    expect_words(traj_load(&tr, p, &err), &err,
                 (const char *const[]){p, "metadata 'seed' is '-1'", "unsigned", NULL});
    p = write_traj("ddpm", "1", "nan", "00000000000000ab");
    expect_words(traj_load(&tr, p, &err), &err,
                 (const char *const[]){p, "metadata 'eta' is 'nan'", "finite", NULL});
    p = write_traj("ddpm", "1", "0", "xyz");
    expect_words(traj_load(&tr, p, &err), &err,
                 (const char *const[]){p, "metadata 'model_fingerprint' is 'xyz'", "16 hex", NULL});
}

/* Review: the IDX and CIFAR-10 readers opened their files with gzopen / fopen, which block
 * forever on a FIFO. Fixed in idx.c (S_ISREG) and cifar.c (jt_fopen_regular). */
Test(fuzz_regress, idx_and_cifar_refuse_a_fifo, .timeout = 30) {
    char p[600];
    snprintf(p, sizeof p, "%s/fifo", test_tmp);
    cr_assert_eq(mkfifo(p, 0600), 0);
    DataSource src;
    JtError err = {{0}};
    expect_words(data_open_idx(&src, p, NULL, NULL, &err), &err,
                 (const char *const[]){p, "not a regular file", NULL});
    expect_words(data_open_cifar10(&src, p, 0, &err), &err,
                 (const char *const[]){p, "not a regular file", NULL});
}

/* Found running test_limits under UBSan: st_writer_write passed a zero-size tensor's NULL data to
 * fwrite (declared nonnull). Fixed in safetensors.c (write_tensor_data); caught by `make asan`. */
Test(fuzz_regress, an_empty_tensor_without_data_is_written) {
    char p[600];
    snprintf(p, sizeof p, "%s/empty.safetensors", test_tmp);
    StWriter w;
    st_writer_init(&w);
    const int64_t shape[2] = {3, 0};
    st_writer_add(&w, "e", ST_F32, 2, shape, NULL);
    JtError err = {{0}};
    cr_assert_eq(st_writer_write(&w, p, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    StFile f;
    cr_assert_eq(st_open(&f, p, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 1);
    cr_assert_eq(f.tensors[0].numel, 0);
    st_close(&f);
}

/* fuzz_image: inputs that reach benign undefined behaviour inside stb_image 2.27
 * (tests/fuzz/known/): not preventable from jtrak's side; the reader must stay well-defined on
 * them: decode, or refuse with a message naming the file, and never crash. */
static void stays_well_defined(const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/tests/fuzz/known/%s", JTRAK_SOURCE_DIR, name);
    size_t n;
    uint8_t *b = (uint8_t *)test_read_file(path, &n);
    DataImage img;
    JtError err = {{0}};
    if (data_image_decode(b, n, name, &img, &err) == JT_OK) {
        cr_assert(img.w >= 1 && img.h >= 1 && img.c >= 1 && img.c <= 4);
        data_image_free(&img);
    } else {
        cr_assert(strstr(err.msg, name) != NULL, "%s", err.msg);
    }
    free(b);
}

Test(fuzz_regress, stb227_jpeg_dc_overflow_stays_well_defined) {
    stays_well_defined("stb227_jpeg_dc_overflow.jpg");
}

/* fuzz_image: a PNG whose first IDAT chunk is empty; stb_image 2.27 computes NULL + 0 on it. */
Test(fuzz_regress, stb227_png_empty_idat_stays_well_defined) {
    stays_well_defined("stb227_png_empty_idat.png");
}

/* fuzz_image: a corrupt JPEG on which stb_image 2.27 shifts a 32-bit value by 34. */
Test(fuzz_regress, stb227_jpeg_shift_exponent_stays_well_defined) {
    stays_well_defined("stb227_jpeg_shift_exponent.jpg");
}

/* Writes a tokenizer folder: the small fixture's files, with vocab.json and tokenizer_config.json
 * replaced when given. */
static const char *tokenizer_dir_with(const char *vocab, const char *config) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/tok", test_tmp);
    mkdir(dir, 0755);
    const char *names[] = {"vocab.json", "merges.txt", "special_tokens_map.json",
                           "tokenizer_config.json"};
    const char *over[] = {vocab, NULL, NULL, config};
    for (int i = 0; i < 4; i++) {
        char src[700], dst[700];
        snprintf(src, sizeof src, "%s/tests/fixtures/tokenizer/clip_small/%s", JTRAK_SOURCE_DIR,
                 names[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        size_t n;
        uint8_t *b = over[i] ? NULL : (uint8_t *)test_read_file(src, &n);
        FILE *f = fopen(dst, "wb");
        cr_assert_not_null(f, "%s", dst);
        if (b) fwrite(b, 1, n, f);
        else fputs(over[i], f);
        fclose(f);
        free(b);
    }
    return dir;
}

/* fuzz_tokenizer: a vocabulary id of 4.4e130 was cast to long long before its range was checked
 * (UBSan: outside the range of representable values); the same for model_max_length. Fixed in
 * tokenizer.c (json_is_int_in checks the range first). */
Test(fuzz_regress, tokenizer_huge_numbers_are_refused) {
    ClipTokenizer *t = NULL;
    JtError err = {{0}};
    expect_words(clip_tokenizer_load(&t, tokenizer_dir_with("{\"a\": 4.44444e130}", NULL), &err),
                 &err, (const char *const[]){"vocab.json", "\"a\"", "not an integer", NULL});
    expect_words(clip_tokenizer_load(&t,
                                     tokenizer_dir_with(NULL, "{\"model_max_length\": -1e300}"),
                                     &err),
                 &err, (const char *const[]){"tokenizer_config.json", "model_max_length", NULL});
    cr_assert_null(t);
}

/* fuzz_context: a context .npy whose header does not end on a multiple of 4 bytes was mapped and
 * its floats read misaligned (UBSan: load of misaligned address). Fixed in context.c (read_table
 * refuses such a file, naming the offset; numpy.save pads headers to 64 bytes). */
Test(fuzz_regress, context_file_with_misaligned_data_is_refused) {
    char path[600];
    snprintf(path, sizeof path, "%s/ctx.npy", test_tmp);
    /* a v1 header of 67 bytes: the data starts at 10 + 67 = 77 */
    enum { HL = 67 };
    char hdr[HL + 1];
    snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2), }");
    size_t hl = strlen(hdr);
    cr_assert(hl < HL, "header text of %zu bytes", hl);
    memset(hdr + hl, ' ', HL - hl);
    hdr[HL - 1] = '\n';
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    const unsigned char len[2] = {HL, 0};
    fwrite(magic, 1, 8, f);
    fwrite(len, 1, 2, f);
    fwrite(hdr, 1, HL, f);
    const float v[4] = {0.5f, -1.0f, 2.0f, 0.25f};
    fwrite(v, sizeof(float), 4, f);
    fclose(f);
    char file[620];
    snprintf(file, sizeof file, "npy:%s", path);
    ContextSpec spec = {file, NULL, NULL};
    ContextSet cs;
    JtError err = {{0}};
    expect_words(context_load(&cs, &spec, NULL, &err), &err,
                 (const char *const[]){"ctx.npy", "byte 77", "not a multiple of 4", NULL});
}
