/* cli_prompt.h: `jtrak sample --prompt`'s text side: where the text encoder and tokenizer come
 * from, the --prompts file, and the contexts (text/prompt.h) with what the trajectory records of
 * them. */
#ifndef JTRAK_CLI_PROMPT_H
#define JTRAK_CLI_PROMPT_H

#include "core/common.h"
#include "text/prompt.h"

#include <stddef.h>

/* The one place the text encoder and tokenizer folders are chosen: --text-encoder and
 * --tokenizer as given (te_opt, tok_opt; NULL when absent), else, when model_dir is a pipeline
 * folder, its text_encoder/ and tokenizer/. Returns JT_OK, 2 when an
 * option is missing (a usage error; err holds it) or JT_ERR. */
int sample_text_dirs(const char *model_dir, const char *te_opt, const char *tok_opt,
                     const char **te_dir, const char **tok_dir, JtError *err);

/* A --prompts file: one prompt per line (UTF-8; "\n" or "\r\n" ends a line, an empty line is the
 * empty prompt, a last line without a newline counts). *lines (n, malloc'd strings in one malloc'd
 * array) for cli_prompts_free. An empty file, a NUL byte or more than max lines is an error naming
 * the file (and the line). */
int cli_read_prompts(const char *path, size_t max, char ***lines, size_t *n, JtError *err);
void cli_prompts_free(char **lines, size_t n);

typedef struct {
    PromptContexts pc;
    char *source; /* the trajectory's context_source: encoder and tokenizer, with fingerprints */
} SamplePrompts;

/* Loads the text encoder (a CLIPTextModel folder) and the tokenizer, refuses an encoder whose
 * hidden_size is not cross_attention_dim (model_dir's, named in the message), and encodes the
 * prompts (n), the negative prompt (NULL: "") when guided. */
int sample_prompts_encode(SamplePrompts *sp, const char *model_dir, int cross_attention_dim,
                          const char *te_dir, const char *tok_dir, const char *const *prompts,
                          size_t n, const char *negative, int guided, int clip_skip, JtError *err);
void sample_prompts_free(SamplePrompts *sp);

#endif
