/* fuzz_context.c: libFuzzer target for context files (src/data/context.c): the .npy table, its
 * manifest FILE.npy.json (the dataset it was made for) and its texts FILE.json ("captions"). The
 * input is [u16 LE a][a bytes: FILE.npy.json][u16 LE b][b bytes: FILE.json][the rest: FILE.npy]
 * (a shorter input is the .npy alone). It is loaded as a prompt table, for a dataset of as many
 * rows as the file has (with and without a "labels" index and an unconditional row), and for a
 * dataset of 2 rows; whatever loads must serve every row's every candidate inside the table. */
#include "data/context.h"
#include "fuzz_util.h"
#include "io/npy.h"

#include <sys/stat.h>

static size_t take(const uint8_t **p, size_t *left, const uint8_t **part) {
    if (*left < 2) return (size_t)-1;
    size_t n = (size_t)(*p)[0] | (size_t)(*p)[1] << 8;
    if (n > *left - 2) return (size_t)-1;
    *part = *p + 2;
    *p += 2 + n;
    *left -= 2 + n;
    return n;
}

static void check_set(const ContextSet *cs) {
    CHECK(cs->k >= 1 && cs->L >= 1 && cs->D >= 1 && cs->m >= 1, "set shape");
    for (size_t i = 0; i < cs->n; i++)
        for (int k = 0; k < cs->k; k++)
            CHECK(cs->cand[i * (size_t)cs->k + (size_t)k] < cs->m, "row %zu candidate %d", i, k);
    for (size_t i = 0; cs->captions && i < cs->m; i++)
        CHECK(cs->captions[i] != NULL, "caption %zu", i);
    if (cs->n) (void)context_of_row(cs, cs->n - 1, cs->k - 1);
}

static void try_load(const char *file, const char *index, const char *uncond, const Dataset *ds) {
    ContextSpec spec = {file, index, uncond};
    ContextSet cs;
    JtError err = {{0}};
    int rc = context_load(&cs, &spec, ds, &err);
    fuzz_expect_message(rc, &err, "context_load");
    if (rc != JT_OK) return;
    check_set(&cs);
    context_free(&cs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = data, *a = NULL, *b = NULL;
    size_t left = size, na = take(&p, &left, &a), nb = na == (size_t)-1 ? na : take(&p, &left, &b);
    const char *npy = fuzz_path("ctx.npy"), *man = fuzz_path("ctx.npy.json"),
               *txt = fuzz_path("ctx.json");
    unlink(man);
    unlink(txt);
    if (nb == (size_t)-1) {
        fuzz_write("ctx.npy", data, size);
    } else {
        fuzz_write("ctx.npy.json", a, na);
        fuzz_write("ctx.json", b, nb);
        fuzz_write("ctx.npy", p, left);
    }
    char file[600];
    snprintf(file, sizeof file, "npy:%s", npy);
    try_load(file, NULL, NULL, NULL);
    try_load(file, NULL, "row:0", NULL);
    /* datasets of 2 rows and of the file's own row count (when small), labelled 0..1, named */
    NpyHeader h;
    JtError err;
    size_t rows = npy_read_header(npy, &h, &err) == JT_OK && h.ndim >= 1 ? h.shape[0] : 2;
    if (rows < 1 || rows > 256) rows = 2;
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass ? rows : 2;
        int labels[256];
        char *names[256], *caps[256];
        for (size_t i = 0; i < n; i++) {
            labels[i] = (int)(i % 2);
            names[i] = "img.png";
            caps[i] = "a caption";
        }
        Dataset ds = {0};
        ds.n = n;
        ds.labels = labels;
        ds.n_classes = 2;
        ds.item_names = names;
        ds.captions = caps;
        ds.description = "fuzz";
        try_load(file, NULL, NULL, &ds);
        try_load(file, "labels", "row:1", &ds);
    }
    return 0;
}
