/* tokenizer.h: the CLIP byte-level BPE tokenizer, giving the same ids as transformers 5.23's
 * CLIPTokenizer (tokenizers backend; ldm.md §4.2): NFC, whitespace runs to one space, lower case,
 * CLIP's split regex, GPT-2's byte-to-unicode map, BPE by merge rank with "</w>" closing each
 * word, then [bos] ids [eos], truncated and padded to max_len with the pad id.
 *
 * A ClipTokenizer is immutable after loading: one may be shared by threads (no global state). */
#ifndef JTRAK_TEXT_TOKENIZER_H
#define JTRAK_TEXT_TOKENIZER_H

#include "core/common.h"

#include <stdint.h>
#include <stddef.h>

typedef struct ClipTokenizer ClipTokenizer;

/* Loads a tokenizer folder: either vocab.json + merges.txt (a diffusers pipeline's tokenizer/,
 * with special_tokens_map.json and tokenizer_config.json) or tokenizer.json (+
 * tokenizer_config.json, what transformers 5 saves). Every malformed or missing file is one error
 * naming it. */
int clip_tokenizer_load(ClipTokenizer **out, const char *dir, JtError *err);
void clip_tokenizer_free(ClipTokenizer *t);

/* Tokenizes UTF-8 text into ids (max_len of them; max_len 0 = model_max_length; max_len >= 2):
 * [bos] + the first max_len-2 token ids + [eos], then the pad id. *n_real (optional) is the count
 * before padding (bos and eos included); *truncated (optional) is 1 when tokens were dropped.
 * Invalid UTF-8 is refused (err). */
int clip_tokenize(const ClipTokenizer *t, const char *text, int max_len, int *ids /* (max_len) */,
                  int *n_real, int *truncated, JtError *err);

int clip_tokenizer_bos_id(const ClipTokenizer *t);
int clip_tokenizer_eos_id(const ClipTokenizer *t);
int clip_tokenizer_pad_id(const ClipTokenizer *t);
int clip_tokenizer_max_length(const ClipTokenizer *t); /* model_max_length (77 by default) */
int clip_tokenizer_vocab_size(const ClipTokenizer *t); /* 1 + the largest id */
/* FNV-1a 64 (core/hash.h) over what determines the ids: the vocabulary, the merges, the added
 * tokens, the bos/eos/unk/pad ids and model_max_length, in a canonical order; not which layout was
 * read (the same data as vocab.json+merges.txt or tokenizer.json gives the same value). Computed at
 * load. */
uint64_t clip_tokenizer_fingerprint(const ClipTokenizer *t);
/* Which files were read: "vocab.json+merges.txt" or "tokenizer.json". */
const char *clip_tokenizer_layout(const ClipTokenizer *t);

/* GPT-2's bytes_to_unicode symbol of byte b as NUL-terminated UTF-8 in out; returns its length
 * (the vocabulary's first 256 ids are these symbols, in that table's order: tokenizer_build.h). */
size_t clip_byte_symbol(int b, char out[5]);
/* Strict UTF-8 check of n bytes: the offset of the first bad sequence, or n when all is well. */
size_t clip_utf8_check(const char *s, size_t n);

#endif
