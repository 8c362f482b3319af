/* fuzz_cifar.c: libFuzzer target for the CIFAR-10 binary reader (src/data/cifar.c): the input is
 * one batch file (records of a label byte and 3x32x32 pixels); every image of an accepted file is
 * fetched and its label checked against the class table. */
#include "data/source.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("data_batch_1.bin", data, size);
    DataSource src;
    JtError err = {{0}};
    int rc = data_open_cifar10(&src, path, 0, &err);
    fuzz_expect_message(rc, &err, "data_open_cifar10");
    if (rc != JT_OK) return 0;
    for (size_t i = 0; i < src.n; i++) {
        DataRaw img;
        CHECK(src.get(&src, i, &img, &err) == JT_OK, "get %zu: %s", i, err.msg);
        CHECK(src.labels[i] >= 0 && src.labels[i] < src.n_classes, "label %d", src.labels[i]);
        volatile uint8_t sink = img.data[31 * img.sy + 31 * img.sx + (img.c - 1) * img.sc];
        (void)sink;
    }
    data_source_free(&src);
    return 0;
}
