/* text_encode.h: prompts (UTF-8 texts) to the contexts a text-conditional U-Net reads, as
 * StableDiffusionPipeline.encode_prompt does (ldm.md §5): each text tokenised to the tokenizer's
 * model_max_length (padding "max_length", truncation on), the ids run through the CLIPTextModel
 * (batched), last_hidden_state, or with clip_skip k the state
 * final_layer_norm(hidden_states[-(k+1)]) (clip_text.h). The results equal `jtrak tokenize` +
 * `jtrak encode-text` of the same texts bit for bit (one per-example graph: a prompt's context does
 * not depend on its batch).
 *
 * Library code does not print: what diffusers warns about (texts longer than the tokenizer allows,
 * cut to max_length tokens) is reported in TextEncodeNotes, and text_encode_truncation_message
 * turns it into the one line the CLI prints. */
#ifndef JTRAK_TEXT_TEXT_ENCODE_H
#define JTRAK_TEXT_TEXT_ENCODE_H

#include "core/common.h"
#include "text/clip_text.h"
#include "text/tokenizer.h"

#include <stddef.h>

typedef struct {
    size_t n_truncated;     /* texts longer than max_length tokens (bos and eos included) */
    size_t first_truncated; /* index of the first of them (meaningful when n_truncated > 0) */
    int kept_tokens;        /* tokens kept of each (max_length: bos, max_length-2 ids, eos) */
    int first_total_tokens; /* tokens the first truncated text has before truncation */
} TextEncodeNotes;

/* Batch of text-encoder forwards text_encode runs at once (as `jtrak encode-text`'s default). */
#define TEXT_ENCODE_BATCH 16

/* texts (n >= 1) -> contexts out (n, L, D), L = clip_tokenizer_max_length(tok), D = the encoder's
 * hidden_size. Checked before any work: L <= max_position_embeddings, clip_skip in
 * [0, num_hidden_layers), and the tokenizer's ids within the encoder's vocabulary (one error naming
 * the text and the id). notes (optional) is always filled on success. Deterministic, independent of
 * the thread count. */
int text_encode(const ClipTokenizer *tok, const ClipText *te, const char *const *texts, size_t n,
                int clip_skip, float *out /* (n, L, D) */, TextEncodeNotes *notes, JtError *err);

/* The one truncation line (malloc'd; NULL when nothing was truncated), in diffusers' words:
 * "<what> <i> (\"<first 60 bytes>...\") was truncated because CLIP can only handle sequences up to
 * L tokens: N tokens, kept L" plus " (and k more)" when several were. what: e.g. "prompt". */
char *text_encode_truncation_message(const TextEncodeNotes *notes, const char *const *texts,
                                     const char *what);

#endif
