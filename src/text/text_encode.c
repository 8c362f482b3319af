/* text_encode.c: texts -> CLIP contexts (see text_encode.h), StableDiffusionPipeline.encode_prompt
 * without the device and dtype handling: tokenizer(padding="max_length", truncation=True) then
 * text_encoder(ids) (no attention mask: SD's encoders have use_attention_mask unset). */
#include "text/text_encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokens a text has before truncation: every byte is at most one token, so max_len = bytes + 2
 * (bos, eos) never truncates. */
static int count_tokens(const ClipTokenizer *tok, const char *text, JtError *err, int *count) {
    size_t len = strlen(text) + 2;
    if (len > (1u << 30)) len = 1u << 30;
    int *ids = xmalloc(len * sizeof *ids);
    int rc = clip_tokenize(tok, text, (int)len, ids, count, NULL, err);
    free(ids);
    return rc;
}

int text_encode(const ClipTokenizer *tok, const ClipText *te, const char *const *texts, size_t n,
                int clip_skip, float *out, TextEncodeNotes *notes, JtError *err) {
    CHECK(n >= 1 && texts && out, "text_encode: no texts");
    const ClipTextConfig *c = clip_text_config(te);
    const int L = clip_tokenizer_max_length(tok), D = c->hidden_size, V = c->vocab_size;
    if (L > c->max_position_embeddings)
        return jt_fail(err,
                       "the tokenizer pads to %d tokens (model_max_length) but the text encoder "
                       "takes at most %d (max_position_embeddings)",
                       L, c->max_position_embeddings);
    if (clip_tokenizer_vocab_size(tok) > V)
        return jt_fail(err,
                       "the tokenizer's vocabulary has %d tokens but the text encoder's only %d "
                       "(vocab_size): not a matching tokenizer and text encoder",
                       clip_tokenizer_vocab_size(tok), V);
    if (clip_skip < 0 || clip_skip >= c->num_hidden_layers)
        return jt_fail(err, "clip skip %d: must be 0 to %d for a %d-layer text encoder", clip_skip,
                       c->num_hidden_layers - 1, c->num_hidden_layers);
    TextEncodeNotes nt = {0, 0, L, 0};
    int *ids = xmalloc(n * (size_t)L * sizeof *ids);
    int rc = JT_OK;
    for (size_t i = 0; i < n && rc == JT_OK; i++) {
        int truncated = 0;
        int *row = ids + i * (size_t)L;
        if (clip_tokenize(tok, texts[i], L, row, NULL, &truncated, err) != JT_OK) {
            JtError inner = *err;
            rc = jt_fail(err, "text %zu: %s", i, inner.msg);
            break;
        }
        for (int l = 0; l < L && rc == JT_OK; l++)
            if (row[l] < 0 || row[l] >= V)
                rc = jt_fail(err,
                             "text %zu: token %d has id %d, outside the text encoder's "
                             "vocabulary 0..%d",
                             i, l, row[l], V - 1);
        if (rc == JT_OK && truncated && nt.n_truncated++ == 0) {
            nt.first_truncated = i;
            rc = count_tokens(tok, texts[i], err, &nt.first_total_tokens);
        }
    }
    const int B = n < TEXT_ENCODE_BATCH ? (int)n : TEXT_ENCODE_BATCH;
    ClipTextRun *run = NULL;
    if (rc == JT_OK) rc = clip_text_run_create(&run, te, B, L, clip_skip, err);
    for (size_t b0 = 0; b0 < n && rc == JT_OK; b0 += (size_t)B) {
        int nb = (int)(n - b0 < (size_t)B ? n - b0 : (size_t)B);
        rc = clip_text_forward(te, run, nb, ids + b0 * (size_t)L, out + b0 * (size_t)L * D, NULL,
                               err);
    }
    clip_text_run_free(run);
    free(ids);
    if (rc == JT_OK && notes) *notes = nt;
    return rc;
}

char *text_encode_truncation_message(const TextEncodeNotes *notes, const char *const *texts,
                                     const char *what) {
    if (!notes || notes->n_truncated == 0) return NULL;
    const char *t = texts[notes->first_truncated];
    /* the first 60 bytes, cut back to a UTF-8 character boundary */
    size_t shown = strlen(t) > 60 ? 60 : strlen(t);
    while (shown > 0 && shown < strlen(t) && ((unsigned char)t[shown] & 0xC0) == 0x80)
        shown--;
    char more[64] = "";
    if (notes->n_truncated > 1)
        snprintf(more, sizeof more, " (and %zu more %s%s)", notes->n_truncated - 1, what,
                 notes->n_truncated > 2 ? "s" : "");
    size_t cap = shown + strlen(what) + 256;
    char *msg = xmalloc(cap);
    snprintf(msg, cap,
             "%s %zu (\"%.*s%s\") was truncated because CLIP can only handle sequences up to %d "
             "tokens: it has %d, the first %d kept (bos, %d ids, eos)%s",
             what, notes->first_truncated, (int)shown, t, shown < strlen(t) ? "..." : "",
             notes->kept_tokens, notes->first_total_tokens, notes->kept_tokens,
             notes->kept_tokens - 2, more);
    return msg;
}
