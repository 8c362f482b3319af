/* fuzz_tokenizer.c: libFuzzer target for CLIP tokenizer folders (src/text/tokenizer.c,
 * clip_tokenizer_load + clip_tokenize). The input is several files in one: parts separated by the
 * line "#jtrak-file#". When the first part is "tokenizer.json" the folder is transformers 5's
 * layout (tokenizer.json, tokenizer_config.json), otherwise a diffusers pipeline's (vocab.json,
 * merges.txt, special_tokens_map.json, tokenizer_config.json), each part that file's bytes in that
 * order; a missing part means a missing file. The part after the files is tokenized as a prompt
 * when the folder loads, at two lengths (truncation and padding). */
#include <sys/stat.h>

#include "fuzz_util.h"
#include "text/tokenizer.h"

static const char SEP[] = "\n#jtrak-file#\n";

/* The next part of [*p, end): its bytes up to the separator (or the end); NULL when none left. */
static const uint8_t *next_part(const uint8_t **p, const uint8_t *end, size_t *n) {
    if (!*p) return NULL;
    const uint8_t *start = *p;
    const size_t sep = sizeof SEP - 1;
    for (const uint8_t *q = start; q + sep <= end; q++)
        if (memcmp(q, SEP, sep) == 0) {
            *n = (size_t)(q - start);
            *p = q + sep;
            return start;
        }
    *n = (size_t)(end - start);
    *p = NULL;
    return start;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const slow_names[] = {"vocab.json", "merges.txt", "special_tokens_map.json",
                                             "tokenizer_config.json"};
    static const char *const fast_names[] = {"tokenizer.json", "tokenizer_config.json"};
    const uint8_t *p = data, *end = data + size;
    size_t n;
    const uint8_t *first = next_part(&p, end, &n);
    int fast = first && n == 14 && memcmp(first, "tokenizer.json", 14) == 0;
    const char *const *names = fast ? fast_names : slow_names;
    const int n_names = fast ? 2 : 4;
    const char *dir = fuzz_dir();
    /* Every file of both layouts is removed first: a part absent from this input is a missing file,
     * not the last input's. */
    for (int i = 0; i < 4; i++)
        unlink(fuzz_path(slow_names[i]));
    unlink(fuzz_path("tokenizer.json"));
    if (fast) first = next_part(&p, end, &n);
    for (int i = 0; i < n_names && first; i++) {
        fuzz_write(names[i], first, n);
        first = i + 1 < n_names ? next_part(&p, end, &n) : NULL;
    }
    const uint8_t *text = next_part(&p, end, &n);
    char prompt[512];
    size_t len = text ? (n < sizeof prompt - 1 ? n : sizeof prompt - 1) : 0;
    if (len) memcpy(prompt, text, len);
    prompt[len] = 0;

    ClipTokenizer *t = NULL;
    JtError err = {{0}};
    int rc = clip_tokenizer_load(&t, dir, &err);
    fuzz_expect_message(rc, &err, "clip_tokenizer_load");
    if (rc != JT_OK) return 0;
    const int vocab = clip_tokenizer_vocab_size(t);
    const int max_len = clip_tokenizer_max_length(t);
    CHECK(vocab >= 1 && max_len >= 2, "vocab %d, max length %d", vocab, max_len);
    const int lens[2] = {max_len < 8 ? max_len : 8, max_len < 77 ? max_len : 77};
    int ids[77];
    for (int k = 0; k < 2; k++) {
        int real = 0, truncated = 0;
        JtError e2 = {{0}};
        rc = clip_tokenize(t, prompt, lens[k], ids, &real, &truncated, &e2);
        fuzz_expect_message(rc, &e2, "clip_tokenize");
        if (rc != JT_OK) continue;
        CHECK(real >= 2 && real <= lens[k], "%d real tokens of %d", real, lens[k]);
        for (int i = 0; i < lens[k]; i++)
            CHECK(ids[i] >= 0 && ids[i] < vocab, "id %d at %d outside 0..%d", ids[i], i, vocab - 1);
    }
    clip_tokenizer_free(t);
    return 0;
}
