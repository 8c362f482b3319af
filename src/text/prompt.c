/* prompt.c: see prompt.h. The distinct texts are found by sorting indices (O(n log n) string
 * compares), encoded once each by text_encode, and copied to every sample that uses them, so
 * contexts are bit-identical to encoding every sample's text on its own. Truncation notes count
 * distinct texts (one --prompt for 16 samples is one prompt). */
#include "text/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *text;
    size_t sample;
} TextUse;

static int use_cmp(const void *a, const void *b) {
    const TextUse *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    return c ? c : (x->sample > y->sample) - (x->sample < y->sample);
}

static int size_cmp(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* Encodes texts[0..n) into out (n, L, D), each distinct text once. *message: the truncation line
 * (malloc'd, naming `what` i by its first sample) or NULL. */
static int encode_distinct(const ClipTokenizer *tok, const ClipText *te, const char *const *texts,
                           size_t n, int skip, const char *what, float *out, char **message,
                           JtError *err) {
    const size_t LD = (size_t)clip_tokenizer_max_length(tok) * clip_text_config(te)->hidden_size;
    TextUse *use = xmalloc(n * sizeof *use);
    for (size_t i = 0; i < n; i++)
        use[i] = (TextUse){texts[i], i};
    qsort(use, n, sizeof *use, use_cmp);
    /* first[r]: the first sample of the r-th distinct text, distinct texts in order of it */
    size_t *first = xmalloc(n * sizeof *first), nu = 0;
    for (size_t k = 0; k < n; k++)
        if (k == 0 || strcmp(use[k - 1].text, use[k].text) != 0) first[nu++] = use[k].sample;
    qsort(first, nu, sizeof *first, size_cmp);
    const char **uniq = xmalloc(nu * sizeof *uniq);
    for (size_t r = 0; r < nu; r++)
        uniq[r] = texts[first[r]];
    /* each sample's distinct text: the r whose first sample holds the same text (binary search
     * over the sorted uses gives the group's first sample, then over first[]) */
    size_t *text_of = xmalloc(n * sizeof *text_of);
    for (size_t k = 0, g = 0; k < n; k++) {
        if (k == 0 || strcmp(use[k - 1].text, use[k].text) != 0) g = use[k].sample;
        size_t *r = bsearch(&g, first, nu, sizeof *first, size_cmp);
        text_of[use[k].sample] = (size_t)(r - first);
    }
    float *enc = xmalloc(nu * LD * sizeof *enc);
    TextEncodeNotes notes;
    int rc = text_encode(tok, te, uniq, nu, skip, enc, &notes, err);
    if (rc != JT_OK) {
        /* text_encode names "text r": say which sample's it is */
        JtError inner = *err;
        size_t r = 0;
        const char *colon = strchr(inner.msg, ':');
        if (sscanf(inner.msg, "text %zu:", &r) == 1 && r < nu && colon)
            jt_fail(err, "%s %zu%s", what, first[r], colon);
    } else {
        for (size_t i = 0; i < n; i++)
            memcpy(out + i * LD, enc + text_of[i] * LD, LD * sizeof *out);
        if (notes.n_truncated) notes.first_truncated = first[notes.first_truncated];
        *message = text_encode_truncation_message(&notes, texts, what);
    }
    free(enc), free(text_of), free(uniq), free(first), free(use);
    return rc;
}

int prompt_contexts(PromptContexts *out, const ClipTokenizer *tok, const ClipText *te,
                    const char *const *prompts, size_t n, const char *const *negatives,
                    size_t n_neg, int guided, int clip_skip, JtError *err) {
    memset(out, 0, sizeof *out);
    CHECK(n >= 1 && (n_neg == 0 || n_neg == 1 || n_neg == n) && (n_neg == 0 || negatives),
          "prompt_contexts: %zu negative prompts for %zu prompts", n_neg, n);
    const int L = clip_tokenizer_max_length(tok), D = clip_text_config(te)->hidden_size;
    const size_t LD = (size_t)L * D;
    float *cond = xmalloc(n * LD * sizeof *cond), *uncond = NULL;
    char *m1 = NULL, *m2 = NULL;
    int rc = encode_distinct(tok, te, prompts, n, clip_skip, "prompt", cond, &m1, err);
    size_t nu = 0;
    if (rc == JT_OK && guided) {
        static const char *const empty[1] = {""};
        nu = n_neg == 0 ? 1 : n_neg;
        uncond = xmalloc(nu * LD * sizeof *uncond);
        /* clip skip 0: diffusers 0.42.1's encode_prompt applies clip_skip to the prompts only;
         * negative_prompt_embeds is always text_encoder(...)[0], the last_hidden_state */
        rc = encode_distinct(tok, te, n_neg ? negatives : empty, nu, 0, "negative prompt", uncond,
                             &m2, err);
    }
    if (rc != JT_OK) {
        free(cond), free(uncond), free(m1), free(m2);
        return rc;
    }
    if (m1 && m2) {
        size_t len = strlen(m1) + strlen(m2) + 3;
        out->truncation = xmalloc(len);
        snprintf(out->truncation, len, "%s; %s", m1, m2);
        free(m1), free(m2);
    } else {
        out->truncation = m1 ? m1 : m2;
    }
    out->n = n, out->n_uncond = nu, out->L = L, out->D = D;
    out->cond = cond, out->uncond = uncond;
    return JT_OK;
}

void prompt_contexts_free(PromptContexts *pc) {
    free(pc->cond);
    free(pc->uncond);
    free(pc->truncation);
    memset(pc, 0, sizeof *pc);
}
