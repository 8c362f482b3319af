/* fuzz_indices.c: libFuzzer target for the index file of --indices (src/data/select.c: one source
 * index per line, '#' comments), selected from a labelled source of 100 images in 10 classes, with
 * and without a class filter; every selected row must be a source index, listed once. */
#include "data/source.h"
#include "fuzz_util.h"

static int fake_get(DataSource *src, size_t i, DataRaw *img, JtError *err) {
    (void)src, (void)i, (void)img;
    return jt_fail(err, "not used");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int labels[100];
    static const char *const names[10] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                          "sandal",  "shirt",   "sneaker",  "bag",   "boot"};
    for (int i = 0; i < 100; i++)
        labels[i] = i % 10;
    DataSource src = {.n = 100,
                      .labels = labels,
                      .n_classes = 10,
                      .class_names = (char **)names,
                      .what = "fake",
                      .get = fake_get};
    DatasetSpec spec;
    data_spec_init(&spec);
    spec.index_file = (char *)fuzz_write("indices.txt", data, size);
    for (int filtered = 0; filtered < 2; filtered++) {
        spec.classes = filtered ? "sneaker,3" : NULL;
        size_t *rows = NULL, n = 0;
        JtError err = {{0}};
        int rc = data_select(&spec, &src, &rows, &n, &err);
        fuzz_expect_message(rc, &err, "data_select");
        if (rc != JT_OK) continue;
        uint8_t seen[100] = {0};
        for (size_t i = 0; i < n; i++) {
            CHECK(rows[i] < 100 && !seen[rows[i]], "row %zu: source index %zu", i, rows[i]);
            seen[rows[i]] = 1;
        }
        free(rows);
    }
    return 0;
}
