/* fuzz_bpe.c: libFuzzer target for OpenCLIP BPE merges files (src/text/tokenizer_build.c,
 * clip_bpe_build, what `jtrak tokenizer --bpe FILE` reads): the input is the file (plain text or
 * gzip: zlib reads both), built into a tokenizer folder that is then loaded back and must tokenize
 * a prompt with ids inside its vocabulary. The folder is removed after each input. */
#include <sys/stat.h>

#include "fuzz_util.h"
#include "text/tokenizer.h"
#include "text/tokenizer_build.h"

static void remove_folder(const char *dir) {
    static const char *const names[] = {"vocab.json", "merges.txt", "special_tokens_map.json",
                                        "tokenizer_config.json"};
    char p[700];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *bpe = fuzz_write("bpe.txt", data, size);
    char out[600];
    snprintf(out, sizeof out, "%s/tok", fuzz_dir());
    remove_folder(out);
    ClipBpeInfo info;
    JtError err = {{0}};
    int rc = clip_bpe_build(bpe, out, NULL, &info, &err);
    fuzz_expect_message(rc, &err, "clip_bpe_build");
    if (rc == JT_OK) {
        ClipTokenizer *t = NULL;
        CHECK(clip_tokenizer_load(&t, out, &err) == JT_OK, "built folder does not load: %s",
              err.msg);
        CHECK(clip_tokenizer_vocab_size(t) == info.vocab_size, "vocab %d vs %d",
              clip_tokenizer_vocab_size(t), info.vocab_size);
        int ids[16], real = 0, trunc = 0;
        if (clip_tokenize(t, "a photo of a t-shirt, 42", 16, ids, &real, &trunc, &err) == JT_OK)
            for (int i = 0; i < 16; i++)
                CHECK(ids[i] >= 0 && ids[i] < info.vocab_size, "id %d", ids[i]);
        clip_tokenizer_free(t);
    }
    remove_folder(out);
    return 0;
}
