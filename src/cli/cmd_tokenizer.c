/* cmd_tokenizer.c: `jtrak tokenizer --bpe FILE.txt.gz --out DIR [--pad TOKEN]` builds a CLIP
 * tokenizer folder (vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json) from
 * OpenCLIP's BPE merges file, offline (text/tokenizer_build.h). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "text/tokenizer_build.h"

#include <stdio.h>

int cmd_tokenizer(int argc, char **argv) {
    Args a;
    args_init(&a, "tokenizer", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak tokenizer --bpe FILE.txt.gz --out DIR [--pad TOKEN]\n"
               "Builds a CLIP tokenizer folder from OpenCLIP's BPE merges file\n"
               "(open_clip/bpe_simple_vocab_16e6.txt.gz): its first 48,894 merges, the 512 byte\n"
               "symbols and <|startoftext|>, <|endoftext|> (49,408 tokens for the real file).\n"
               "--pad: the padding token, <|endoftext|> (SD-1, the default) or ! (SD-2).\n"
               "DIR must be new or empty.\n");
        args_free(&a);
        return 0;
    }
    const char *bpe = args_str(&a, "bpe", NULL), *out = args_str(&a, "out", NULL);
    const char *pad = args_str(&a, "pad", "<|endoftext|>");
    int rc = args_finish(&a);
    if (rc == 0 && (!bpe || !out)) {
        fprintf(stderr, "jtrak tokenizer: --bpe and --out are required (see 'jtrak tokenizer "
                        "--help')\n");
        rc = 2;
    }
    if (rc) {
        args_free(&a);
        return rc;
    }
    JtError err;
    ClipBpeInfo info;
    rc = clip_bpe_build(bpe, out, pad, &info, &err);
    args_free(&a);
    if (rc) return cli_error("tokenizer", &err);
    printf("%s\n", out);
    fprintf(stderr, "tokenizer: wrote %s (%d tokens: 512 byte symbols, %d merges, 2 specials)\n",
            out, info.vocab_size, info.n_merges);
    return 0;
}
