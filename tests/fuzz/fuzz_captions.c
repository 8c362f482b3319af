/* fuzz_captions.c: libFuzzer target for the captions readers (src/data/captions.c): the first byte
 * picks the format (COCO captions JSON, CSV, JSONL), the rest is the file. What is accepted must
 * be well formed: every image named, 1..CONTEXT_MAX_PER_ROW captions each, every caption non-empty
 * valid UTF-8 within CAPTIONS_MAX_TEXT, the grouping a partition of all the captions. */
#include "data/captions.h"
#include "data/context.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const CaptionsFormat fmts[3] = {CAPTIONS_COCO, CAPTIONS_CSV, CAPTIONS_JSONL};
    CaptionsFormat fmt = fmts[data[0] % 3];
    Captions c;
    JtError err = {{0}};
    int rc = captions_parse(&c, fmt, (const char *)data + 1, size - 1, "fuzz/captions", NULL, &err);
    fuzz_expect_message(rc, &err, "captions_parse");
    if (rc != JT_OK) return 0;
    CHECK(c.n >= 1 && c.first[0] == 0 && c.first[c.n] == c.n_texts, "grouping");
    for (size_t i = 0; i < c.n; i++) {
        size_t k = captions_count(&c, i);
        CHECK(k >= 1 && k <= CONTEXT_MAX_PER_ROW, "image %zu: %zu captions", i, k);
        CHECK(c.names[i] && c.names[i][0] && c.files[i], "image %zu: no name", i);
        CHECK(fmt != CAPTIONS_COCO || c.ids, "COCO without ids");
        for (size_t j = 0; j < k; j++) {
            const char *t = captions_text(&c, i, j);
            size_t n = strlen(t), bad;
            CHECK(n >= 1 && n <= CAPTIONS_MAX_TEXT && captions_utf8_valid(t, n, &bad),
                  "image %zu caption %zu", i, j);
        }
    }
    (void)captions_fingerprint_texts((const char *const *)c.texts, c.n_texts);
    captions_free(&c);
    return 0;
}
