/* cmd_tokenize.c: `jtrak tokenize --tokenizer DIR "text"` prints the CLIP token ids of a prompt
 * (text/tokenizer.h: the ids transformers' CLIPTokenizer gives), padded to the model's length. A
 * prompt longer than that is truncated, and stderr says so once. With --out IDS.npy the ids are
 * written as int32 (1, L) instead, what `jtrak encode-text --ids` takes (e.g. the empty prompt's
 * ids, whose encoding is a pipeline's unconditional context). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/npy.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_tokenize(int argc, char **argv) {
    Args a;
    args_init(&a, "tokenize", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak tokenize --tokenizer DIR [--max-length N] [--no-pad] [--out IDS.npy] "
               "TEXT\n"
               "DIR is a tokenizer folder (vocab.json + merges.txt, or tokenizer.json). Prints the "
               "ids,\n"
               "bos and eos included, padded to N (default: the folder's model_max_length) unless\n"
               "--no-pad. --out IDS.npy: write them as int32 (1, L) instead (for jtrak\n"
               "encode-text --ids).\n");
        args_free(&a);
        return 0;
    }
    const char *dir = args_str(&a, "tokenizer", NULL);
    int max_len = (int)args_long(&a, "max-length", 0, 2, 1 << 20);
    int no_pad = args_flag(&a, "no-pad");
    const char *out = args_str(&a, "out", NULL);
    const char *text = args_positional(&a, 0);
    int rc = args_finish(&a);
    if (rc == 0 && (!dir || !text)) {
        fprintf(stderr, "jtrak tokenize: missing %s (see 'jtrak tokenize --help')\n",
                !dir ? "--tokenizer DIR" : "TEXT");
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;

    JtError err;
    ClipTokenizer *t;
    if (clip_tokenizer_load(&t, dir, &err)) return cli_error("tokenize", &err);
    if (max_len == 0) max_len = clip_tokenizer_max_length(t);
    int *ids = xmalloc((size_t)max_len * sizeof *ids), n_real, truncated;
    if (clip_tokenize(t, text, max_len, ids, &n_real, &truncated, &err)) {
        free(ids);
        clip_tokenizer_free(t);
        return cli_error("tokenize", &err);
    }
    if (truncated)
        fprintf(stderr, "jtrak tokenize: the text is longer than %d tokens and was truncated\n",
                max_len);
    int n = no_pad ? n_real : max_len;
    rc = 0;
    if (out) {
        int32_t *ids32 = xmalloc((size_t)n * sizeof *ids32);
        for (int i = 0; i < n; i++)
            ids32[i] = ids[i];
        const size_t shape[2] = {1, (size_t)n};
        if (npy_write(out, NPY_I32, 2, shape, ids32, &err) != JT_OK)
            rc = cli_error("tokenize", &err);
        else
            printf("%s\n", out);
        free(ids32);
    } else {
        for (int i = 0; i < n; i++)
            printf("%d%c", ids[i], i + 1 < n ? ' ' : '\n');
    }
    free(ids);
    clip_tokenizer_free(t);
    return rc;
}
