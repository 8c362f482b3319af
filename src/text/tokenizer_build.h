/* tokenizer_build.h: a CLIP tokenizer folder from OpenCLIP's BPE merges file
 * (bpe_simple_vocab_16e6.txt.gz), offline, by ldm.md 4.2's rebuild recipe, which is what OpenCLIP's
 * SimpleTokenizer does with that file:
 *   merges = lines 1 .. 48,894 of the file (line 0 is a header; fewer when the file is shorter),
 *            each "A B", two symbols separated by one space;
 *   vocab  = the 256 byte symbols of GPT-2's bytes_to_unicode (in that table's order), the same
 *            256 with "</w>", one token per merge (A and B concatenated), then <|startoftext|> and
 *            <|endoftext|> (ids 49406 and 49407 for the real file).
 * The folder is the hub's layout of an SD-1/SD-2 tokenizer/ (vocab.json, merges.txt,
 * special_tokens_map.json, tokenizer_config.json), which transformers' CLIPTokenizer and
 * clip_tokenizer_load read with the same ids. */
#ifndef JTRAK_TEXT_TOKENIZER_BUILD_H
#define JTRAK_TEXT_TOKENIZER_BUILD_H

#include "core/common.h"

/* OpenCLIP's count: 49152 - 256 - 2 merges (49,408 tokens with the 512 symbols and 2 specials). */
#define CLIP_BPE_MAX_MERGES 48894
/* The largest BPE file read (uncompressed); the real one is 3.6 MB. */
#define CLIP_BPE_MAX_BYTES (256u << 20)

typedef struct {
    int n_merges, vocab_size;
} ClipBpeInfo;

/* Reads bpe_path (gzip, or plain text: zlib reads both) and writes the tokenizer folder out_dir,
 * padding with pad_token (NULL: "<|endoftext|>" as SD-1; "!" as SD-2's OpenCLIP tokenizer; it must
 * be a token of the vocabulary). out_dir must not exist or be an empty folder: the files are
 * written into a temporary folder beside it, loaded back with clip_tokenizer_load, and renamed into
 * place, so nothing half-written is left. Every malformed line is an error naming the file and the
 * line. info (optional) gets the counts. */
int clip_bpe_build(const char *bpe_path, const char *out_dir, const char *pad_token,
                   ClipBpeInfo *info, JtError *err);

#endif
