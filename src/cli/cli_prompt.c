/* cli_prompt.c: see cli_prompt.h. */
#include "cli/cli_prompt.h"

#include "model/model.h"
#include "model/pipeline.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sample_text_dirs(const char *model_dir, const char *te_opt, const char *tok_opt,
                     const char **te_dir, const char **tok_dir, JtError *err) {
    /* one pair per process (a command samples one model); the options win over the pipeline's */
    static char *pipe_te, *pipe_tok;
    *te_dir = te_opt, *tok_dir = tok_opt;
    if ((!te_opt || !tok_opt) && model_dir && pipeline_is_folder(model_dir)) {
        PipelineFolder p;
        if (pipeline_open(model_dir, &p, err) != JT_OK) return JT_ERR;
        if (!pipe_te && p.text_encoder_dir) pipe_te = xstrdup(p.text_encoder_dir);
        if (!pipe_tok && p.tokenizer_dir) pipe_tok = xstrdup(p.tokenizer_dir);
        pipeline_close(&p);
        if (!*te_dir) *te_dir = pipe_te;
        if (!*tok_dir) *tok_dir = pipe_tok;
    }
    if (*te_dir && *tok_dir) return JT_OK;
    jt_fail(err, "--prompt needs the text encoder and its tokenizer: give --model a pipeline "
                 "folder with text_encoder/ and tokenizer/, or --text-encoder DIR (a "
                 "CLIPTextModel folder) and --tokenizer DIR");
    return 2;
}

int cli_read_prompts(const char *path, size_t max, char ***lines, size_t *n, JtError *err) {
    *lines = NULL, *n = 0;
    FILE *f = jt_fopen_regular(path, err);
    if (!f) return JT_ERR;
    size_t cap = 0, len = 0, count = 0, lcap = 16;
    char *buf = NULL, **out = xmalloc(lcap * sizeof *out);
    int c, rc = JT_OK, any = 0;
    while (rc == JT_OK) {
        c = fgetc(f);
        if (c == EOF && !any) break;
        if (c == 0) {
            rc = jt_fail(err, "%s: line %zu: a NUL byte (not a text file of prompts)", path,
                         count + 1);
            break;
        }
        if (c != EOF && c != '\n') {
            if (len + 2 > cap) cap = cap ? 2 * cap : 256, buf = realloc(buf, cap);
            CHECK(buf, "out of memory");
            buf[len++] = (char)c;
            any = 1;
            continue;
        }
        if (len && buf[len - 1] == '\r') len--;
        if (count == max) {
            rc = jt_fail(err, "%s: more than %zu prompts", path, max);
            break;
        }
        if (count == lcap) out = realloc(out, (lcap *= 2) * sizeof *out);
        CHECK(out, "out of memory");
        out[count] = xmalloc(len + 1);
        if (len) memcpy(out[count], buf, len);
        out[count++][len] = 0;
        len = 0, any = 0;
        if (c == EOF) break;
    }
    int bad = ferror(f);
    fclose(f);
    free(buf);
    if (rc == JT_OK && bad) rc = jt_fail(err, "%s: read error", path);
    if (rc == JT_OK && count == 0) rc = jt_fail(err, "%s: no prompts (an empty file)", path);
    if (rc != JT_OK) {
        cli_prompts_free(out, count);
        return rc;
    }
    *lines = out, *n = count;
    return JT_OK;
}

void cli_prompts_free(char **lines, size_t n) {
    for (size_t i = 0; lines && i < n; i++)
        free(lines[i]);
    free(lines);
}

int sample_prompts_encode(SamplePrompts *sp, const char *model_dir, int cross_attention_dim,
                          const char *te_dir, const char *tok_dir, const char *const *prompts,
                          size_t n, const char *negative, int guided, int clip_skip, JtError *err) {
    memset(sp, 0, sizeof *sp);
    Model *m = NULL;
    ClipTokenizer *tok = NULL;
    if (model_load(te_dir, &m, err) != JT_OK) return JT_ERR;
    const ClipText *te = model_text_encoder_const(m);
    int rc = JT_OK;
    if (!te)
        rc = jt_fail(err, "--text-encoder %s: a %s folder, not a CLIPTextModel text encoder",
                     te_dir, model_kind(m)->class_name);
    else if (clip_text_config(te)->hidden_size != cross_attention_dim)
        rc = jt_fail(err,
                     "--text-encoder %s: its contexts are %d wide (hidden_size) but %s's "
                     "cross_attention_dim is %d: not this model's text encoder",
                     te_dir, clip_text_config(te)->hidden_size, model_dir, cross_attention_dim);
    if (rc == JT_OK && clip_tokenizer_load(&tok, tok_dir, err) != JT_OK) rc = JT_ERR;
    if (rc == JT_OK) {
        rc = prompt_contexts(&sp->pc, tok, te, prompts, n, negative ? &negative : NULL,
                             negative ? 1 : 0, guided, clip_skip, err);
        if (rc != JT_OK) {
            JtError inner = *err;
            rc = jt_fail(err, "--text-encoder %s, --tokenizer %s: %s", te_dir, tok_dir, inner.msg);
        }
    }
    if (rc == JT_OK) {
        char fte[17], ftok[17];
        const char *fmt = "prompts;text_encoder=%s;text_encoder_fingerprint=%s;tokenizer=%s;"
                          "tokenizer_fingerprint=%s;tokenizer_files=%s;max_length=%d;clip_skip=%d";
        int len = snprintf(NULL, 0, fmt, te_dir, "0123456789abcdef", tok_dir, "0123456789abcdef",
                           clip_tokenizer_layout(tok), sp->pc.L, clip_skip);
        sp->source = xmalloc((size_t)len + 1);
        snprintf(sp->source, (size_t)len + 1, fmt, te_dir,
                 model_fingerprint_hex(model_fingerprint(m), fte), tok_dir,
                 model_fingerprint_hex(clip_tokenizer_fingerprint(tok), ftok),
                 clip_tokenizer_layout(tok), sp->pc.L, clip_skip);
    }
    clip_tokenizer_free(tok);
    model_free(m);
    return rc;
}

void sample_prompts_free(SamplePrompts *sp) {
    prompt_contexts_free(&sp->pc);
    free(sp->source);
    memset(sp, 0, sizeof *sp);
}
