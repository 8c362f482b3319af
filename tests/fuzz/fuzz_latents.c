/* fuzz_latents.c: libFuzzer target for latent stores (src/data/latents.c, the latents:FILE.npy
 * source): the input is the manifest FILE.npy.json, the line "#jtrak-file#", then FILE.npy. The
 * store loads through data_load as `--data latents:FILE.npy` does (manifest fields, the array
 * against the manifest, the dataset it was encoded from reloaded from its description); an
 * accepted store is drawn from in both latent modes. */
#include "data/dataset.h"
#include "fuzz_util.h"

static const char SEP[] = "\n#jtrak-file#\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const size_t sep = sizeof SEP - 1;
    size_t cut = size;
    for (size_t i = 0; i + sep <= size; i++)
        if (memcmp(data + i, SEP, sep) == 0) {
            cut = i;
            break;
        }
    fuzz_write("latents.npy.json", data, cut);
    const char *npy = cut < size ? fuzz_write("latents.npy", data + cut + sep, size - cut - sep)
                                 : fuzz_write("latents.npy", data, 0);
    char src[600];
    snprintf(src, sizeof src, "latents:%s", npy);
    for (int mode = 0; mode < 2; mode++) {
        DatasetSpec spec;
        data_spec_init(&spec);
        JtError err = {{0}};
        CHECK(data_spec_set(&spec, "data", src, &err) == JT_OK, "%s: %s", src, err.msg);
        CHECK(data_spec_set(&spec, "latent", mode ? "mean" : "sample", &err) == JT_OK, "%s",
              err.msg);
        Dataset ds;
        int rc = data_load(&spec, &ds, &err);
        data_spec_free(&spec);
        fuzz_expect_message(rc, &err, "data_load(latents)");
        if (rc != JT_OK) return 0;
        CHECK(ds.latent && ds.n >= 1 && ds.c >= 1 && ds.h >= 1 && ds.w >= 1, "rows %zu", ds.n);
        const size_t per = (size_t)ds.c * (size_t)ds.h * (size_t)ds.w;
        if (per <= (1u << 16)) {
            float *out = xmalloc(per * sizeof(float));
            const size_t rows[1] = {ds.n - 1};
            const uint8_t flips[1] = {0};
            data_batch_draw(&ds, rows, flips, 1, 7, 1, 0, out);
            free(out);
        }
        data_free(&ds);
    }
    return 0;
}
