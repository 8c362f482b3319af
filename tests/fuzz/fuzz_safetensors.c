/* fuzz_safetensors.c: libFuzzer target for the safetensors reader (src/io/safetensors.c): the
 * input is a whole file; st_open validates the header, then every tensor's bytes are read, and
 * those of float type converted to float32 (st_read_raw, st_read_f32). */
#include "fuzz_util.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.safetensors", data, size);
    StFile f;
    JtError err = {{0}};
    int rc = st_open(&f, path, &err);
    fuzz_expect_message(rc, &err, "st_open");
    if (rc != JT_OK) return 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        void *raw = xmalloc((size_t)(t->end - t->begin));
        rc = st_read_raw(&f, i, raw, &err);
        fuzz_expect_message(rc, &err, "st_read_raw");
        free(raw);
        if (st_dtype_is_float(t->dtype)) {
            float *x = xmalloc((size_t)t->numel * sizeof(float));
            rc = st_read_f32(&f, i, x, &err);
            fuzz_expect_message(rc, &err, "st_read_f32");
            free(x);
        }
    }
    (void)st_metadata_get(&f, "format");
    st_close(&f);
    return 0;
}
