/* fuzz_npy.c: libFuzzer target for .npy files (src/io/npy.c) and the .npy image dataset reader
 * (src/data/npy_images.c): the input is read whole (npy_read), row by row (npy_open,
 * npy_read_rows), as an image array (data_open_npy), and, when its header says it is 1-D with at
 * most 4096 entries, as the labels of that many 1x1 images. */
#include "data/source.h"
#include "fuzz_util.h"
#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("array.npy", data, size);
    NpyHeader h;
    void *buf = NULL;
    JtError err = {{0}};
    int rc = npy_read(path, &h, &buf, &err);
    fuzz_expect_message(rc, &err, "npy_read");
    free(buf);
    if (rc != JT_OK) return 0;

    NpyFile f;
    rc = npy_open(&f, path, 0, &err);
    CHECK(rc == JT_OK, "npy_read accepts what npy_open refuses: %s", err.msg);
    if (f.rows > 0 && f.row_bytes > 0) {
        uint8_t *row = xmalloc(f.row_bytes);
        CHECK(npy_read_rows(&f, f.rows - 1, 1, row, &err) == JT_OK, "last row: %s", err.msg);
        free(row);
    }
    npy_close(&f, NULL);

    DataSource src;
    rc = data_open_npy(&src, path, NULL, &err);
    fuzz_expect_message(rc, &err, "data_open_npy");
    if (rc == JT_OK) {
        for (size_t i = 0; i < src.n && i < 4096; i++) {
            DataRaw img;
            CHECK(src.get(&src, i, &img, &err) == JT_OK, "get %zu: %s", i, err.msg);
        }
        data_source_free(&src);
    }
    if (h.ndim == 1 && h.shape[0] >= 1 && h.shape[0] <= 4096) {
        size_t shape[3] = {h.shape[0], 1, 1};
        uint8_t *img = xcalloc(h.shape[0], 1);
        const char *ipath = fuzz_path("images-1x1.npy");
        CHECK(npy_write(ipath, NPY_U8, 3, shape, img, &err) == JT_OK, "%s", err.msg);
        free(img);
        rc = data_open_npy(&src, ipath, path, &err);
        fuzz_expect_message(rc, &err, "data_open_npy (labels)");
        if (rc == JT_OK) {
            for (size_t i = 0; i < src.n; i++)
                CHECK(src.labels[i] >= 0 && src.labels[i] < src.n_classes, "label %d",
                      src.labels[i]);
            data_source_free(&src);
        }
    }
    return 0;
}
