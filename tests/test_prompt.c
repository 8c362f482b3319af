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
#include "diffusion/trajectory.h"
#include "helpers/cli_run.h"
#include "helpers/model_unet.h"
#include "helpers/read_file.h"
#include "helpers/tiny_cond.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "io/npy.h"
#include "model/model.h"
#include "model/model_kind.h"
#include "text/clip_text.h"
#include "text/prompt.h"
#include "text/text_encode.h"
#include "text/tokenizer.h"
#include "unet/unet.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TE_DIR JTRAK_FIXTURES "/clip/clip2_quick"
#define TOK_DIR JTRAK_FIXTURES "/tokenizer/clip_small"
#define L 77
#define D 32

static void suite_init(void) {
    la_blas_single_threaded();
    test_tmp_setup();
}

TestSuite(prompt, .init = suite_init, .fini = test_tmp_teardown, .timeout = 300);

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

Test(prompt, negative_prompt_changes_the_uncond_context) {
    load_pair();
    const char *p[3] = {"a dog", "a cat", "a dog"}, *neg[1] = {"blurry"};
    PromptContexts a, b, c;
    JtError err;
    const ClipText *te = model_text_encoder_const(g_te);
    cr_assert_eq(prompt_contexts(&a, g_tok, te, p, 3, NULL, 0, 1, 0, &err), JT_OK);
    cr_assert_eq(prompt_contexts(&b, g_tok, te, p, 3, neg, 1, 1, 0, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(prompt_contexts(&c, g_tok, te, p, 3, NULL, 0, 0, 0, &err), JT_OK);
    float one[L * D];
    cr_assert_eq(a.n_uncond, 1);
    encode_one("", 0, one);
    cr_assert_eq(memcmp(a.uncond, one, sizeof one), 0, "no negative prompt: the context of \"\"");
    encode_one("blurry", 0, one);
    cr_assert_eq(memcmp(b.uncond, one, sizeof one), 0, "the negative prompt's context");
    cr_assert_neq(memcmp(a.uncond, b.uncond, sizeof one), 0);
    cr_assert_eq(memcmp(a.cond, b.cond, 3 * sizeof one), 0, "the prompts' contexts do not change");
    cr_assert_null(c.uncond, "unguided: no unconditional context");
    cr_assert_eq(c.n_uncond, 0);
    /* repeated prompts are encoded once and copied: still each prompt's own context */
    for (int i = 0; i < 3; i++) {
        encode_one(p[i], 0, one);
        cr_assert_eq(memcmp(a.cond + i * L * D, one, sizeof one), 0, "prompt %d", i);
    }
    prompt_contexts_free(&a), prompt_contexts_free(&b), prompt_contexts_free(&c);
    /* clip skip applies to the prompts only (diffusers 0.42.1's encode_prompt: the negative
     * embeddings are always text_encoder(ids)[0]) */
    cr_assert_eq(prompt_contexts(&a, g_tok, te, p, 3, neg, 1, 1, 1, &err), JT_OK, "%s", err.msg);
    encode_one("a cat", 1, one);
    cr_assert_eq(memcmp(a.cond + L * D, one, sizeof one), 0, "clip skip 1 prompt");
    encode_one("blurry", 0, one);
    cr_assert_eq(memcmp(a.uncond, one, sizeof one), 0, "the negative prompt without clip skip");
    prompt_contexts_free(&a);
    /* one truncation line over prompts and negative prompt; a repeated prompt counts once */
    char *lp = long_prompt();
    const char *p2[3] = {"a dog", lp, lp}, *neg2[1] = {lp};
    cr_assert_eq(prompt_contexts(&a, g_tok, te, p2, 3, neg2, 1, 1, 0, &err), JT_OK);
    cr_assert_not_null(a.truncation);
    cr_assert(strstr(a.truncation, "prompt 1 (") && !strstr(a.truncation, "more prompt") &&
                  strstr(a.truncation, "; negative prompt 0 ("),
              "%s", a.truncation);
    prompt_contexts_free(&a);
    /* an error names the sample */
    const char *bad[3] = {"a dog", "a dog", "caf\xc3"};
    cr_assert_eq(prompt_contexts(&a, g_tok, te, bad, 3, NULL, 0, 1, 0, &err), JT_ERR);
    cr_assert(strstr(err.msg, "prompt 2:") && strstr(err.msg, "UTF-8"), "%s", err.msg);
    cr_assert_null(a.cond);
    free(lp);
    free_pair();
}

/* ---------------------------------------------------------------- the CLI */

enum { N_ROWS = 6 };
static char g_model[300], g_model24[300], g_img[300], g_lab[300], g_ctx[300];
static char g_err[16384], g_out[16384];

static void path_of(char *buf, size_t cap, const char *sub) {
    snprintf(buf, cap, "%s/%s", test_tmp, sub);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The tiny UNet2DConditionModel of test_context (the cond2_8x12 fixture's architecture, 1
 * channel, 8x8) with cross_attention_dim X, saved to dir. */
static void write_cond_model(const char *dir, int X) {
    char cfgp[400];
    snprintf(cfgp, sizeof cfgp, "%s.config.json", dir);
    test_write_tiny_cond_model(cfgp, dir, 1, 8, X);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* models, a small training set (images, labels) and its contexts (N_ROWS, L, D) */
static void cli_setup(void) {
    path_of(g_model, sizeof g_model, "model");
    path_of(g_model24, sizeof g_model24, "model24");
    path_of(g_img, sizeof g_img, "images.npy");
    path_of(g_lab, sizeof g_lab, "labels.npy");
    path_of(g_ctx, sizeof g_ctx, "train_ctx.npy");
    write_cond_model(g_model, D);
    write_cond_model(g_model24, 24);
    uint8_t pix[N_ROWS * 64];
    int64_t labels[N_ROWS];
    for (int i = 0; i < N_ROWS * 64; i++)
        pix[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int i = 0; i < N_ROWS; i++)
        labels[i] = i % 2;
    float *ctx = xmalloc(N_ROWS * L * D * sizeof *ctx);
    for (int i = 0; i < N_ROWS * L * D; i++)
        ctx[i] = (float)((i * 2654435761u) >> 20) / 4096.0f - 0.5f;
    JtError err;
    size_t shape[3] = {N_ROWS, 8, 8}, lshape[1] = {N_ROWS}, cshape[3] = {N_ROWS, L, D};
    cr_assert(npy_write(g_img, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(g_lab, NPY_I64, 1, lshape, labels, &err) == JT_OK, "%s", err.msg);
    cr_assert(npy_write(g_ctx, NPY_F32, 3, cshape, ctx, &err) == JT_OK, "%s", err.msg);
    free(ctx);
}

/* ids (n, L) of texts written as int32 .npy, as `jtrak tokenize` prints them */
static void write_ids(const char *path, const char *const *texts, int n) {
    ClipTokenizer *t;
    JtError err;
    cr_assert_eq(clip_tokenizer_load(&t, TOK_DIR, &err), JT_OK);
    int32_t *ids = xmalloc((size_t)n * L * sizeof *ids);
    int row[L];
    for (int i = 0; i < n; i++) {
        cr_assert_eq(clip_tokenize(t, texts[i], L, row, NULL, NULL, &err), JT_OK);
        for (int l = 0; l < L; l++)
            ids[i * L + l] = row[l];
    }
    size_t shape[2] = {(size_t)n, L};
    cr_assert_eq(npy_write(path, NPY_I32, 2, shape, ids, &err), JT_OK, "%s", err.msg);
    free(ids);
    clip_tokenizer_free(t);
}

#define TEXT_ARGS "--text-encoder " TE_DIR " --tokenizer " TOK_DIR
#define SAMPLE_ARGS "--sampler ddim --steps 3 --quiet"

/* sample --prompts with a negative prompt and guidance 3, the same through tokenize +
 * encode-text + --context: identical trajectories, identical scores; the report and score's
 * table show the prompts. */
Test(prompt, cli_sample_score_report) {
    cli_setup();
    char cmd[4096], plist[300], s1[300], s2[300], ids[300], nids[300], ctx[300], neg[300];
    char store[300], sc1[300], sc2[300];
    path_of(plist, sizeof plist, "prompts.txt");
    path_of(s1, sizeof s1, "s1");
    path_of(s2, sizeof s2, "s2");
    path_of(ids, sizeof ids, "ids.npy");
    path_of(nids, sizeof nids, "neg_ids.npy");
    path_of(ctx, sizeof ctx, "ctx.npy");
    path_of(neg, sizeof neg, "neg.npy");
    path_of(store, sizeof store, "store");
    path_of(sc1, sizeof sc1, "sc1");
    path_of(sc2, sizeof sc2, "sc2");
    write_text(plist, "a photo of a dog\r\na red cat <sitting>\n");
    snprintf(
        cmd, sizeof cmd,
        "sample --model %s --out %s --prompts %s --negative-prompt blurry --guidance 3 " TEXT_ARGS
        " " SAMPLE_ARGS,
        g_model, s1, plist);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    cr_assert_null(strstr(g_err, "truncated"), "%s", g_err);
    char tp1[400], tp2[400];
    snprintf(tp1, sizeof tp1, "%s/trajectory.safetensors", s1);
    snprintf(tp2, sizeof tp2, "%s/trajectory.safetensors", s2);
    Trajectory t1, t2;
    JtError err;
    cr_assert_eq(traj_load(&t1, tp1, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(t1.n, 2, "the prompts file's 2 lines set --n");
    cr_assert(t1.prompts && strcmp(t1.prompts[0], "a photo of a dog") == 0 &&
              strcmp(t1.prompts[1], "a red cat <sitting>") == 0);
    cr_assert(t1.negative_prompt && strcmp(t1.negative_prompt, "blurry") == 0);
    cr_assert_eq(t1.guidance, 3.0f);
    cr_assert(t1.ctx_len == L && t1.ctx_dim == D && t1.uncond_context);
    load_pair();
    char fte[17], ftok[17], want[128];
    snprintf(want, sizeof want, "text_encoder_fingerprint=%s",
             model_fingerprint_hex(model_fingerprint(g_te), fte));
    cr_assert(t1.context_source && strstr(t1.context_source, want), "%s", t1.context_source);
    snprintf(want, sizeof want, "tokenizer_fingerprint=%s",
             model_fingerprint_hex(clip_tokenizer_fingerprint(g_tok), ftok));
    cr_assert(strstr(t1.context_source, want) && strstr(t1.context_source, "clip_skip=0"), "%s",
              t1.context_source);
    free_pair();

    /* the same contexts through tokenize + encode-text, sampled with --context */
    const char *texts[2] = {"a photo of a dog", "a red cat <sitting>"}, *negs[1] = {"blurry"};
    write_ids(ids, texts, 2);
    write_ids(nids, negs, 1);
    snprintf(cmd, sizeof cmd, "encode-text --text-encoder " TE_DIR " --ids %s --out %s", ids, ctx);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(cmd, sizeof cmd, "encode-text --text-encoder " TE_DIR " --ids %s --out %s", nids, neg);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(cmd, sizeof cmd,
             "sample --model %s --out %s --context npy:%s --prompt-index 0,1 --uncond npy:%s "
             "--guidance 3 " SAMPLE_ARGS,
             g_model, s2, ctx, neg);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    cr_assert_eq(traj_load(&t2, tp2, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(memcmp(t1.context, t2.context, 2 * L * D * sizeof(float)), 0,
                 "--prompt and encode-text give other contexts");
    cr_assert_eq(memcmp(t1.uncond_context, t2.uncond_context, L * D * sizeof(float)), 0);
    cr_assert_eq(t1.fingerprint, t2.fingerprint, "identical contexts, identical trajectory");
    traj_free(&t1), traj_free(&t2);

    /* score both against one store: the same scores */
    snprintf(cmd, sizeof cmd,
             "featurize --models %s --out %s --data npy:%s,%s --cond npy:%s --k 4 --S 2 "
             "--batch 3 --quiet",
             g_model, store, g_img, g_lab, g_ctx);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    snprintf(cmd, sizeof cmd,
             "score --store %s --trajectory %s --out %s --R 2 --topk 2 --steps all --quiet", store,
             tp1, sc1);
    cr_assert_eq(cli_run_out(cmd, g_out, sizeof g_out, g_err, sizeof g_err), 0, "%s", g_err);
    cr_assert(strstr(g_out, "target 0 (sample 0) prompt \"a photo of a dog\" guidance 3 "
                            "negative prompt \"blurry\"") &&
                  strstr(g_out, "target 1 (sample 1) prompt \"a red cat <sitting>\""),
              "%s", g_out);
    snprintf(cmd, sizeof cmd,
             "score --store %s --trajectory %s --out %s --R 2 --topk 2 --steps all --quiet", store,
             tp2, sc2);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    char f1[400], f2[400];
    snprintf(f1, sizeof f1, "%s/topk.json", sc1);
    snprintf(f2, sizeof f2, "%s/topk.json", sc2);
    size_t n1, n2;
    char *b1 = test_read_file(f1, &n1), *b2 = test_read_file(f2, &n2);
    cr_assert(n1 == n2 && memcmp(b1, b2, n1) == 0, "the two trajectories score differently");
    free(b1), free(b2);

    /* the report shows each target's prompt, the guidance and the negative prompt */
    char html[400];
    snprintf(html, sizeof html, "%s/r.html", sc1);
    snprintf(cmd, sizeof cmd, "report --scores %s --out %s", sc1, html);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    size_t nh;
    char *h = test_read_file(html, &nh);
    cr_assert(strstr(h, "prompt &ldquo;a photo of a dog&rdquo;, guidance 3, negative prompt "
                        "&ldquo;blurry&rdquo;") &&
                  strstr(h, "prompt &ldquo;a red cat &lt;sitting&gt;&rdquo;"),
              "the report does not show the prompts");
    free(h);
}

/* one --prompt for all samples: a 100-word prompt is cut to 77 tokens, said once for the run */
Test(prompt, cli_truncation_said_once) {
    cli_setup();
    char cmd[4096], s[300];
    path_of(s, sizeof s, "s");
    char *lp = long_prompt();
    snprintf(cmd, sizeof cmd,
             "sample --model %s --out %s --prompt '%s' --n 3 --guidance 2 " TEXT_ARGS
             " --sampler ddim --steps 3",
             g_model, s, lp);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    const char *first = strstr(g_err, "truncated");
    cr_assert(first, "%s", g_err);
    cr_assert_null(strstr(first + 1, "truncated"), "said more than once: %s", g_err);
    cr_assert(strstr(g_err, "sample: warning: prompt 0 (\"a photo a photo") &&
                  strstr(g_err, "up to 77 tokens") && strstr(g_err, "the first 77 kept") &&
                  !strstr(g_err, "more prompt"),
              "%s", g_err);
    char tp[400];
    snprintf(tp, sizeof tp, "%s/trajectory.safetensors", s);
    Trajectory t;
    JtError err;
    cr_assert_eq(traj_load(&t, tp, &err), JT_OK, "%s", err.msg);
    cr_assert(t.n == 3 && t.prompts && strcmp(t.prompts[2], lp) == 0,
              "the whole prompt is recorded");
    cr_assert(t.negative_prompt && t.negative_prompt[0] == 0, "no negative prompt: \"\"");
    /* the context is the one of the 77 kept tokens, the unconditional one of "" */
    load_pair();
    float one[L * D];
    encode_one(lp, 0, one);
    cr_assert_eq(memcmp(t.context + 2 * L * D, one, sizeof one), 0);
    encode_one("", 0, one);
    cr_assert_eq(memcmp(t.uncond_context, one, sizeof one), 0);
    free_pair();
    traj_free(&t);
    free(lp);
}

/* --guidance W <= 1 is StableDiffusionPipeline's "no guidance": one conditional eps, no
 * unconditional context, recorded as guidance 1 */
Test(prompt, cli_guidance_at_most_one_is_unguided) {
    cli_setup();
    char cmd[4096], s[300], s1[300];
    path_of(s, sizeof s, "s");
    path_of(s1, sizeof s1, "s1");
    snprintf(cmd, sizeof cmd,
             "sample --model %s --out %s --prompt 'a dog' --n 2 --guidance 0.5 " TEXT_ARGS
             " --sampler ddim --steps 3",
             g_model, s);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    cr_assert(strstr(g_err, "no classifier-free guidance"), "%s", g_err);
    snprintf(cmd, sizeof cmd,
             "sample --model %s --out %s --prompt 'a dog' --n 2 " TEXT_ARGS " " SAMPLE_ARGS,
             g_model, s1);
    cr_assert_eq(cli_run(cmd, g_err, sizeof g_err), 0, "%s", g_err);
    char tp[400], tp1[400];
    snprintf(tp, sizeof tp, "%s/trajectory.safetensors", s);
    snprintf(tp1, sizeof tp1, "%s/trajectory.safetensors", s1);
    Trajectory t, t1;
    JtError err;
    cr_assert_eq(traj_load(&t, tp, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(traj_load(&t1, tp1, &err), JT_OK, "%s", err.msg);
    cr_assert(t.guidance == 1.0f && !t.uncond_context && !t.negative_prompt);
    cr_assert_eq(t.fingerprint, t1.fingerprint, "--guidance 0.5 and no --guidance: one run");
    traj_free(&t), traj_free(&t1);
}

static void expect_refused(int status, const char *const *want, const char *extra) {
    char s[300];
    path_of(s, sizeof s, "refused");
    cli_expect_failure(g_err, sizeof g_err, status, "sample", want,
                       "sample --model %s --out %s " SAMPLE_ARGS " %s", g_model, s, extra);
    cr_assert(!exists(s), "%s: the refused run left %s behind", extra, s);
}

Test(prompt, cli_refusals) {
    cli_setup();
    char extra[2048], plist[300], empty[300], ctx[300];
    path_of(plist, sizeof plist, "p.txt");
    path_of(empty, sizeof empty, "empty.txt");
    path_of(ctx, sizeof ctx, "ctx.npy");
    write_text(plist, "a\nb\nc");
    write_text(empty, "");
    size_t cs[3] = {1, L, D};
    float *z = xcalloc(L * D, sizeof *z);
    JtError err;
    cr_assert_eq(npy_write(ctx, NPY_F32, 3, cs, z, &err), JT_OK);
    free(z);
    /* usage errors (exit 2) */
    snprintf(extra, sizeof extra, "--prompt 'a dog' --context npy:%s " TEXT_ARGS, ctx);
    expect_refused(2, (const char *const[]){"--prompt and --context", "give one", NULL}, extra);
    snprintf(extra, sizeof extra, "--prompt 'a dog' --prompts %s " TEXT_ARGS, plist);
    expect_refused(2, (const char *const[]){"--prompt and --prompts", NULL}, extra);
    expect_refused(2, (const char *const[]){"--negative-prompt needs --guidance W > 1", NULL},
                   "--prompt 'a dog' --negative-prompt ugly --guidance 1 " TEXT_ARGS);
    expect_refused(2, (const char *const[]){"go with --prompt", NULL}, TEXT_ARGS);
    expect_refused(2, (const char *const[]){"--text-encoder DIR", "--tokenizer DIR", NULL},
                   "--prompt 'a dog' --text-encoder " TE_DIR);
    snprintf(extra, sizeof extra, "--prompts %s --n 2 " TEXT_ARGS, plist);
    expect_refused(2, (const char *const[]){"holds 3 prompts but --n is 2", NULL}, extra);
    /* bad input (exit 1) */
    char ex24[2048];
    snprintf(ex24, sizeof ex24,
             "sample --model %s --out %s/r24 --prompt 'a dog' " TEXT_ARGS " " SAMPLE_ARGS,
             g_model24, test_tmp);
    cli_expect_failure(
        g_err, sizeof g_err, 1, "sample",
        (const char *const[]){"32 wide (hidden_size)", "cross_attention_dim is 24", NULL}, "%s",
        ex24);
    snprintf(ex24, sizeof ex24, "%s/r24", test_tmp);
    cr_assert(!exists(ex24), "the width mismatch left %s behind", ex24);
    snprintf(extra, sizeof extra, "--prompts %s " TEXT_ARGS, empty);
    expect_refused(1, (const char *const[]){"empty.txt", "no prompts", NULL}, extra);
    expect_refused(1, (const char *const[]){"prompt 0", "UTF-8", NULL},
                   "--prompt $(printf 'caf\\303') " TEXT_ARGS);
    expect_refused(1, (const char *const[]){"clip skip 2", "0 to 1", NULL},
                   "--prompt 'a dog' --clip-skip 2 " TEXT_ARGS);
    snprintf(extra, sizeof extra, "--prompt 'a dog' --text-encoder %s --tokenizer " TOK_DIR,
             g_model24);
    expect_refused(1, (const char *const[]){"not a CLIPTextModel", NULL}, extra);
    expect_refused(1, (const char *const[]){"tokenizer", "no-such-dir", NULL},
                   "--prompt 'a dog' --text-encoder " TE_DIR " --tokenizer /no-such-dir");
}
