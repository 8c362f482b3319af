/* test_prompt.c: prompts to contexts (src/text/text_encode.h) and `jtrak sample --prompt`, on the
 * fixture CLIP text encoder tests/fixtures/clip/clip2_quick (transformers-written: 2 layers, width
 * 32, vocabulary 1000) with the fixture tokenizer tests/fixtures/tokenizer/clip_small (869 ids, all
 * inside that vocabulary; model_max_length 77):
 *  - text_encode equals clip_tokenize + clip_text_forward one prompt at a time, bit for bit, with
 *    and without clip skip, and `jtrak tokenize` + `jtrak encode-text` of the same prompts;
 *  - a 100-word prompt is cut to 77 tokens and reported once (which prompt, how many tokens);
 *    the empty prompt is bos + eos + padding;
 *  - clip_tokenizer_fingerprint: the same data in both layouts gives one value, another pad id
 *    another;
 *  - the CLI: sampling with --prompt / --negative-prompt / --guidance on a tiny
 *    UNet2DConditionModel, the trajectory's records, the one truncation line, equality with
 *    --context of encode-text's contexts (same trajectory, same scores), and every refusal
 *    leaving nothing behind. */
#include "core/common.h"
#include "core/linalg.h"
#include "helpers/cli_run.h"
#include "helpers/tmpdir.h"
#include "model/model.h"
#include "text/clip_text.h"
#include "text/text_encode.h"
#include "text/tokenizer.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TE_DIR JTRAK_FIXTURES "/clip/clip2_quick"
#define TOK_DIR JTRAK_FIXTURES "/tokenizer/clip_small"
#define L 77
#define D 32

static void suite_init(void) {
    la_blas_single_threaded();
    test_tmp_setup();
}

TestSuite(prompt, .init = suite_init, .fini = test_tmp_teardown);

static ClipTokenizer *g_tok;
static Model *g_te;

static void load_pair(void) {
    JtError err;
    cr_assert_eq(clip_tokenizer_load(&g_tok, TOK_DIR, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_load(TE_DIR, &g_te, &err), JT_OK, "%s", err.msg);
    cr_assert_not_null(model_text_encoder_const(g_te));
}

static void free_pair(void) {
    clip_tokenizer_free(g_tok);
    model_free(g_te);
}

/* "a photo a photo ...": 100 words, far more than 75 tokens */
static char *long_prompt(void) {
    char *s = xmalloc(100 * 8 + 1);
    s[0] = 0;
    for (int i = 0; i < 100; i++) {
        if (i) strcat(s, " ");
        strcat(s, i % 2 ? "photo" : "a");
    }
    return s;
}

/* One prompt at a time through the tokenizer and a batch-1 run: what text_encode must equal. */
static void encode_one(const char *text, int skip, float *out /* (L, D) */) {
    JtError err;
    int ids[L];
    cr_assert_eq(clip_tokenize(g_tok, text, L, ids, NULL, NULL, &err), JT_OK, "%s", err.msg);
    ClipTextRun *r;
    const ClipText *te = model_text_encoder_const(g_te);
    cr_assert_eq(clip_text_run_create(&r, te, 1, L, skip, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_text_forward(te, r, 1, ids, out, NULL, &err), JT_OK, "%s", err.msg);
    clip_text_run_free(r);
}

Test(prompt, equals_tokenize_then_encode) {
    load_pair();
    /* 18 prompts: more than one batch of TEXT_ENCODE_BATCH */
    const char *texts[18];
    char buf[18][64];
    for (int i = 0; i < 18; i++) {
        snprintf(buf[i], sizeof buf[i], "a photo of %d red dogs%s", i, i % 3 ? "!" : "");
        texts[i] = buf[i];
    }
    texts[4] = "";
    float *got = xmalloc(18 * L * D * sizeof *got), one[L * D];
    for (int skip = 0; skip <= 1; skip++) {
        JtError err;
        TextEncodeNotes notes;
        cr_assert_eq(
            text_encode(g_tok, model_text_encoder_const(g_te), texts, 18, skip, got, &notes, &err),
            JT_OK, "%s", err.msg);
        cr_assert_eq(notes.n_truncated, 0);
        cr_assert_eq(notes.kept_tokens, L);
        cr_assert_null(text_encode_truncation_message(&notes, texts, "prompt"));
        for (int i = 0; i < 18; i++) {
            encode_one(texts[i], skip, one);
            cr_assert_eq(memcmp(one, got + (size_t)i * L * D, sizeof one), 0,
                         "prompt %d (skip %d) differs from tokenize + encode", i, skip);
        }
    }
    free(got);
    free_pair();
}

Test(prompt, long_prompt_truncated_once) {
    load_pair();
    char *lp = long_prompt();
    const char *texts[4] = {"a dog", lp, "a cat", lp};
    float *got = xmalloc(4 * L * D * sizeof *got), one[L * D];
    JtError err;
    TextEncodeNotes notes;
    cr_assert_eq(text_encode(g_tok, model_text_encoder_const(g_te), texts, 4, 0, got, &notes, &err),
                 JT_OK, "%s", err.msg);
    cr_assert_eq(notes.n_truncated, 2);
    cr_assert_eq(notes.first_truncated, 1);
    cr_assert_eq(notes.kept_tokens, L);
    int n_real = 0, trunc = 0, *ids = xmalloc(4096 * sizeof *ids);
    cr_assert_eq(clip_tokenize(g_tok, lp, 4096, ids, &n_real, &trunc, &err), JT_OK);
    cr_assert_eq(trunc, 0);
    cr_assert_gt(n_real, L);
    cr_assert_eq(notes.first_total_tokens, n_real);
    /* the kept tokens are the first 75 ids between bos and eos: the context equals the one of the
     * 77 truncated ids */
    int cut[L];
    cr_assert_eq(clip_tokenize(g_tok, lp, L, cut, NULL, &trunc, &err), JT_OK);
    cr_assert_eq(trunc, 1);
    cr_assert_eq(memcmp(cut, ids, (L - 1) * sizeof(int)), 0);
    cr_assert_eq(cut[L - 1], clip_tokenizer_eos_id(g_tok));
    encode_one(lp, 0, one);
    cr_assert_eq(memcmp(one, got + L * D, sizeof one), 0);
    char *msg = text_encode_truncation_message(&notes, texts, "prompt");
    cr_assert_not_null(msg);
    char want[128];
    snprintf(want, sizeof want, "it has %d, the first 77 kept", n_real);
    cr_assert(strstr(msg, "prompt 1 (\"a photo") && strstr(msg, "...\")") &&
                  strstr(msg, "CLIP can only handle sequences up to 77 tokens") &&
                  strstr(msg, want) && strstr(msg, "(and 1 more prompt)"),
              "%s", msg);
    free(msg);
    free(ids), free(got), free(lp);
    free_pair();
}

Test(prompt, empty_prompt_is_bos_eos_pad) {
    load_pair();
    int ids[L];
    JtError err;
    int n_real;
    cr_assert_eq(clip_tokenize(g_tok, "", L, ids, &n_real, NULL, &err), JT_OK);
    cr_assert_eq(n_real, 2);
    cr_assert_eq(ids[0], clip_tokenizer_bos_id(g_tok));
    cr_assert_eq(ids[1], clip_tokenizer_eos_id(g_tok));
    for (int l = 2; l < L; l++)
        cr_assert_eq(ids[l], clip_tokenizer_pad_id(g_tok));
    const char *texts[2] = {"", "a dog"};
    float *got = xmalloc(2 * L * D * sizeof *got), one[L * D];
    cr_assert_eq(text_encode(g_tok, model_text_encoder_const(g_te), texts, 2, 0, got, NULL, &err),
                 JT_OK);
    encode_one("", 0, one);
    cr_assert_eq(memcmp(one, got, sizeof one), 0);
    cr_assert_neq(memcmp(got, got + L * D, sizeof one), 0, "\"\" and \"a dog\" give one context");
    free(got);
    free_pair();
}

Test(prompt, refusals) {
    load_pair();
    JtError err;
    float *out = xmalloc(L * D * sizeof *out);
    const char *bad[1] = {"caf\xc3"};
    cr_assert_eq(text_encode(g_tok, model_text_encoder_const(g_te), bad, 1, 0, out, NULL, &err),
                 JT_ERR);
    cr_assert(strstr(err.msg, "text 0") && strstr(err.msg, "UTF-8"), "%s", err.msg);
    const char *ok[1] = {"a dog"};
    cr_assert_eq(text_encode(g_tok, model_text_encoder_const(g_te), ok, 1, 2, out, NULL, &err),
                 JT_ERR);
    cr_assert(strstr(err.msg, "clip skip 2") && strstr(err.msg, "0 to 1"), "%s", err.msg);
    free(out);
    free_pair();
}

Test(prompt, tokenizer_fingerprint) {
    JtError err;
    ClipTokenizer *a, *b, *c, *a2;
    cr_assert_eq(clip_tokenizer_load(&a, TOK_DIR, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_load(&a2, TOK_DIR, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_load(&b, TOK_DIR "_tj", &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_load(&c, TOK_DIR "_bang", &err), JT_OK, "%s", err.msg);
    cr_assert_neq(clip_tokenizer_fingerprint(a), 0);
    cr_assert_eq(clip_tokenizer_fingerprint(a), clip_tokenizer_fingerprint(a2));
    cr_assert_eq(clip_tokenizer_fingerprint(a), clip_tokenizer_fingerprint(b),
                 "one vocabulary in two layouts: one fingerprint");
    cr_assert_neq(clip_tokenizer_fingerprint(a), clip_tokenizer_fingerprint(c),
                  "pad \"!\" instead of <|endoftext|>: another fingerprint");
    clip_tokenizer_free(a), clip_tokenizer_free(a2), clip_tokenizer_free(b), clip_tokenizer_free(c);
}
