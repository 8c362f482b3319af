/* prompt.h: the contexts StableDiffusionPipeline.encode_prompt gives for a sampling run (ldm.md
 * §5): each sample's prompt encoded (text_encode.h) and, when classifier-free guidance is on, the
 * unconditional context: the text encoder applied to "" or to the negative prompt, tokenised to the
 * same max_length tokens (diffusers pads uncond_tokens to prompt_embeds' length), and, as there,
 * always the last_hidden_state: diffusers 0.42.1 applies clip_skip to the prompts only. Prompts
 * that repeat (one --prompt for every sample) are encoded once. */
#ifndef JTRAK_TEXT_PROMPT_H
#define JTRAK_TEXT_PROMPT_H

#include "core/common.h"
#include "text/text_encode.h"

#include <stddef.h>

typedef struct {
    size_t n, n_uncond; /* samples; unconditional contexts: 0 (unguided), 1 or n */
    int L, D;
    float *cond;   /* (n, L, D) */
    float *uncond; /* (n_uncond, L, D), or NULL */
    /* Texts longer than the tokenizer allows (cut to L tokens): one line naming the first sample
     * that has one and counting the others, prompts and negative prompts, or NULL. Library code
     * does not print it; the caller says it once. */
    char *truncation;
} PromptContexts;

/* prompts (n >= 1); negatives: NULL or n_neg = 0 for "", n_neg = 1 for one negative prompt of all
 * samples (diffusers allows a single one), n_neg = n for one each. guided: whether the
 * unconditional contexts are made at all (StableDiffusionPipeline: guidance_scale > 1). Errors
 * (text_encode's, naming "prompt i" or "negative prompt i") leave *out empty. */
int prompt_contexts(PromptContexts *out, const ClipTokenizer *tok, const ClipText *te,
                    const char *const *prompts, size_t n, const char *const *negatives,
                    size_t n_neg, int guided, int clip_skip, JtError *err);
void prompt_contexts_free(PromptContexts *pc);

#endif
