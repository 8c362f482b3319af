/* fuzz_idx.c: libFuzzer target for IDX files (src/data/idx.c), raw or gzip'd (zlib reads both):
 * the input is read as an image file (idx3), and when it is a label file (idx1) of at most 4096
 * labels, as the labels of that many 1x1 images, with and without the 10 MNIST class names. Every
 * image of an accepted file is fetched. */
#include "data/source.h"
#include "fuzz_util.h"

static void fetch_all(DataSource *src) {
    for (size_t i = 0; i < src->n && i < 4096; i++) {
        DataRaw img;
        JtError err = {{0}};
        CHECK(src->get(src, i, &img, &err) == JT_OK, "get %zu: %s", i, err.msg);
        volatile uint8_t sink =
            img.data[(size_t)(img.h - 1) * (size_t)img.sy + (size_t)(img.w - 1) * (size_t)img.sx];
        (void)sink;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    const char *path = fuzz_write("images-idx3-ubyte", data, size);
    DataSource src;
    JtError err = {{0}};
    int rc = data_open_idx(&src, path, NULL, NULL, &err);
    fuzz_expect_message(rc, &err, "data_open_idx");
    if (rc == JT_OK) {
        fetch_all(&src);
        data_source_free(&src);
    }
    if (size < 8 || memcmp(data, "\0\0\x08\x01", 4) != 0) return 0;
    uint32_t n =
        (uint32_t)data[4] << 24 | (uint32_t)data[5] << 16 | (uint32_t)data[6] << 8 | data[7];
    if (n < 1 || n > 4096) return 0;
    uint8_t hdr[16] = {0, 0, 8, 3, data[4], data[5], data[6], data[7], 0, 0, 0, 1, 0, 0, 0, 1};
    uint8_t *img = xcalloc(16 + n, 1);
    memcpy(img, hdr, 16);
    const char *ipath = fuzz_write("images-1x1-idx3-ubyte", img, 16 + n);
    free(img);
    const char *lpath = fuzz_write("labels-idx1-ubyte", data, size);
    for (int named = 0; named < 2; named++) {
        rc = data_open_idx(&src, ipath, lpath, named ? names : NULL, &err);
        fuzz_expect_message(rc, &err, "data_open_idx (labels)");
        if (rc != JT_OK) continue;
        for (size_t i = 0; i < src.n; i++)
            CHECK(src.labels[i] >= 0 && src.labels[i] < src.n_classes, "label %d of %d classes",
                  src.labels[i], src.n_classes);
        fetch_all(&src);
        data_source_free(&src);
    }
    return 0;
}
