/* cmd_encode_text.c: `jtrak encode-text --text-encoder DIR --ids FILE.npy --out FILE.npy
 * [--clip-skip K] [--batch B]` (the --captions SRC mode, a captioned dataset's captions tokenised
 * and encoded, is cli_encode_captions.c) runs a CLIPTextModel folder (text/clip_text.h) on token
 * ids (N, L) (int32 or int64 .npy, as a CLIP tokenizer pads them to L) and writes the contexts every
 * text-conditional stage reads with --cond npy:FILE: last_hidden_state (N, L, D) float32 (with
 * --clip-skip K, diffusers' clip_skip state), token-major as diffusers' encoder_hidden_states.
 * Beside it FILE.npy.json records the text encoder's model fingerprint (model/model.h), the ids
 * file's FNV-1a 64, the clip skip, the shape and the contexts' own FNV-1a 64. Every id is checked
 * before any work; the contexts are written under a temporary name and renamed after the
 * manifest, so a failed run leaves neither behind. Progress on stderr. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/encode_captions.h"
#include "core/hash.h"
#include "core/progress.h"
#include "data/context.h"
#include "io/jsonfile.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "text/clip_text.h"
#include "text/text_encode.h"
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* FNV-1a 64 of a whole file's bytes. */
static int hash_file(const char *path, uint64_t *out, JtError *err) {
    FILE *f = jt_fopen_regular(path, err);
    if (!f) return JT_ERR;
    uint64_t h = HASH_FNV_OFFSET;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        h = hash_fnv1a(h, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return jt_fail(err, "%s: read error", path);
    *out = h;
    return JT_OK;
}

/* The ids as int (N, L), every one checked against the vocabulary (naming the row and column). */
static int read_ids(const char *path, int vocab, int max_len, int **ids, size_t *N, int *L,
                    JtError *err) {
    NpyHeader h;
    void *data = NULL;
    if (npy_read(path, &h, &data, err) != JT_OK) return JT_ERR;
    int rc = JT_OK;
    char sh[128];
    if (h.dtype != NPY_I32 && h.dtype != NPY_I64)
        rc = jt_fail(err, "%s: token ids must be int32 or int64, not %s", path,
                     npy_dtype_descr(h.dtype));
    else if (h.ndim != 2 || h.shape[0] < 1 || h.shape[1] < 1)
        rc = jt_fail(err, "%s: token ids must be a (N, L) array with N, L >= 1, not %s", path,
                     npy_shape_str(&h, sh, sizeof sh));
    else if (h.shape[1] > (size_t)max_len)
        rc = jt_fail(err,
                     "%s: %zu tokens per prompt, but the text encoder takes at most %d "
                     "(max_position_embeddings)",
                     path, h.shape[1], max_len);
    if (rc != JT_OK) {
        free(data);
        return rc;
    }
    const size_t n = h.shape[0] * h.shape[1], cols = h.shape[1];
    int *v = xmalloc(n * sizeof *v);
    for (size_t k = 0; k < n && rc == JT_OK; k++) {
        int64_t id = h.dtype == NPY_I32 ? ((const int32_t *)data)[k] : ((const int64_t *)data)[k];
        if (id < 0 || id >= vocab)
            rc = jt_fail(err,
                         "%s: prompt %zu, position %zu: id %lld is outside the vocabulary 0..%d",
                         path, k / cols, k % cols, (long long)id, vocab - 1);
        v[k] = (int)id;
    }
    free(data);
    if (rc != JT_OK) {
        free(v);
        return rc;
    }
    *ids = v;
    *N = h.shape[0];
    *L = (int)cols;
    return JT_OK;
}

/* What every contexts manifest of encode-text says: the encoder, the clip skip, the shape and the
 * contexts' FNV-1a 64; each mode adds where the ids came from. */
static cJSON *contexts_manifest(const char *te_dir, const Model *m, int skip, size_t N, int L,
                                int D, uint64_t out_hash) {
    char fp[17], oh[17];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "text_contexts");
    cJSON_AddStringToObject(o, "text_encoder", te_dir);
    cJSON_AddStringToObject(o, "text_encoder_class", model_kind(m)->class_name);
    cJSON_AddStringToObject(o, "text_encoder_fingerprint",
                            model_fingerprint_hex(model_fingerprint(m), fp));
    cJSON_AddNumberToObject(o, "clip_skip", skip);
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)N));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(L));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(D));
    cJSON_AddStringToObject(o, "dtype", "float32");
    cJSON_AddStringToObject(o, "layout", "token-major (N, L, D): encoder_hidden_states");
    cJSON_AddStringToObject(o, "contexts_fnv1a64", model_fingerprint_hex(out_hash, oh));
    return o;
}

static int write_manifest(const char *path, const char *te_dir, const Model *m, const char *ids,
                          uint64_t ids_hash, int skip, size_t N, int L, int D, uint64_t out_hash,
                          JtError *err) {
    char ih[17];
    cJSON *o = contexts_manifest(te_dir, m, skip, N, L, D, out_hash);
    cJSON_AddStringToObject(o, "ids", ids);
    cJSON_AddStringToObject(o, "ids_fnv1a64", model_fingerprint_hex(ids_hash, ih));
    int rc = json_write_file(path, o, err);
    cJSON_Delete(o);
    return rc;
}

static int encode(const char *te_dir, const char *ids_path, const char *out, int skip, int batch,
                  JtError *err) {
    Model *m = NULL;
    if (model_load(te_dir, &m, err) != JT_OK) return JT_ERR;
    const ClipText *te = model_text_encoder_const(m);
    if (!te) {
        int rc = jt_fail(err, "--text-encoder %s: a %s folder, not a CLIPTextModel text encoder",
                         te_dir, model_kind(m)->class_name);
        model_free(m);
        return rc;
    }
    const ClipTextConfig *c = clip_text_config(te);
    const int D = c->hidden_size;
    int *ids = NULL, L = 0;
    size_t N = 0;
    uint64_t ids_hash = 0;
    int rc = read_ids(ids_path, c->vocab_size, c->max_position_embeddings, &ids, &N, &L, err);
    if (rc == JT_OK) rc = hash_file(ids_path, &ids_hash, err);
    if (rc == JT_OK && (skip < 0 || skip >= c->num_hidden_layers))
        rc = jt_fail(err, "--clip-skip %d: must be 0 to %d for a %d-layer text encoder", skip,
                     c->num_hidden_layers - 1, c->num_hidden_layers);
    const int Bc = (size_t)batch < N ? batch : (int)N;
    ClipTextRun *run = NULL;
    if (rc == JT_OK) rc = clip_text_run_create(&run, te, Bc, L, skip, err);

    char *tmp = xmalloc(strlen(out) + 40), *man = xmalloc(strlen(out) + 8);
    snprintf(tmp, strlen(out) + 40, "%s.tmp.%ld", out, (long)getpid());
    snprintf(man, strlen(out) + 8, "%s.json", out);
    NpyFile f = {.fd = -1};
    int created = 0;
    const size_t shape[3] = {N, (size_t)L, (size_t)D};
    if (rc == JT_OK) rc = npy_create(&f, tmp, NPY_F32, 3, shape, err);
    if (rc == JT_OK) created = 1;
    float *ctx = rc == JT_OK ? xmalloc((size_t)Bc * L * D * sizeof *ctx) : NULL;
    uint64_t out_hash = HASH_FNV_OFFSET;
    Progress p;
    progress_init(&p, "encode-text", N, 0, 1.0, "prompt");
    for (size_t b0 = 0; b0 < N && rc == JT_OK; b0 += (size_t)Bc) {
        int nb = (int)(N - b0 < (size_t)Bc ? N - b0 : (size_t)Bc);
        rc = clip_text_forward(te, run, nb, ids + b0 * L, ctx, NULL, err);
        if (rc == JT_OK) rc = npy_write_rows(&f, b0, (size_t)nb, ctx, err);
        if (rc == JT_OK) out_hash = hash_fnv1a(out_hash, ctx, (size_t)nb * L * D * sizeof *ctx);
        progress_update(&p, b0 + (size_t)nb, NULL, b0 + (size_t)nb == N);
    }
    if (created) {
        int crc = npy_close(&f, rc == JT_OK ? err : NULL);
        if (rc == JT_OK) rc = crc;
    }
    if (rc == JT_OK)
        rc = write_manifest(man, te_dir, m, ids_path, ids_hash, skip, N, L, D, out_hash, err);
    if (rc == JT_OK && rename(tmp, out) != 0) {
        rc = jt_fail(err, "%s: cannot rename %s into place: %s", out, tmp, strerror(errno));
        unlink(man);
    }
    if (rc != JT_OK && created) unlink(tmp);
    if (rc == JT_OK) printf("%s\n", out);
    free(ctx);
    free(tmp);
    free(man);
    free(ids);
    clip_text_run_free(run);
    model_free(m);
    return rc;
}

/* --text TEXT: one text (the empty prompt for --uncond, most often) tokenised and encoded as
 * StableDiffusionPipeline.encode_prompt does, written as (1, L, D) with its manifest and FILE.json
 * (the text), so that `--uncond npy:FILE` and `--context npy:FILE` read it. */
static int encode_text(const char *te_dir, const char *tok_dir, const char *text, const char *out,
                       int skip, JtError *err) {
    Model *m = NULL;
    ClipTokenizer *tok = NULL;
    if (model_load(te_dir, &m, err) != JT_OK) return JT_ERR;
    const ClipText *te = model_text_encoder_const(m);
    int rc = te ? clip_tokenizer_load(&tok, tok_dir, err)
                : jt_fail(err, "--text-encoder %s: a %s folder, not a CLIPTextModel text encoder",
                          te_dir, model_kind(m)->class_name);
    const int L = rc == JT_OK ? clip_tokenizer_max_length(tok) : 0;
    const int D = te ? clip_text_config(te)->hidden_size : 0;
    float *ctx = rc == JT_OK ? xmalloc((size_t)L * D * sizeof *ctx) : NULL;
    TextEncodeNotes notes;
    if (rc == JT_OK) rc = text_encode(tok, te, &text, 1, skip, ctx, &notes, err);
    if (rc == JT_OK && notes.n_truncated) {
        char *msg = text_encode_truncation_message(&notes, &text, "text");
        fprintf(stderr, "encode-text: warning: %s\n", msg);
        free(msg);
    }
    char *man = xmalloc(strlen(out) + 8);
    snprintf(man, strlen(out) + 8, "%s.json", out);
    char *texts = NULL;
    if (rc == JT_OK) {
        char tf[17];
        const uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, ctx, (size_t)L * D * sizeof *ctx);
        cJSON *o = contexts_manifest(te_dir, m, skip, 1, L, D, h);
        cJSON_AddStringToObject(o, "text", text);
        cJSON_AddStringToObject(o, "tokenizer", tok_dir);
        cJSON_AddStringToObject(o, "tokenizer_fingerprint",
                                model_fingerprint_hex(clip_tokenizer_fingerprint(tok), tf));
        rc = json_write_file(man, o, err);
        cJSON_Delete(o);
    }
    /* FILE.json beside FILE.npy lists the text (data/context.h), for the trajectory and report */
    size_t n = strlen(out);
    if (rc == JT_OK && n > 4 && strcmp(out + n - 4, ".npy") == 0) {
        texts = xmalloc(n + 2);
        memcpy(texts, out, n - 4);
        strcpy(texts + n - 4, ".json");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "captions"), cJSON_CreateString(text));
        rc = json_write_file(texts, o, err);
        cJSON_Delete(o);
    }
    const size_t shape[3] = {1, (size_t)L, (size_t)D};
    if (rc == JT_OK) rc = npy_write(out, NPY_F32, 3, shape, ctx, err);
    if (rc != JT_OK) {
        unlink(man);
        if (texts) unlink(texts);
    } else {
        printf("%s\n", out);
    }
    free(man), free(texts), free(ctx);
    clip_tokenizer_free(tok);
    model_free(m);
    return rc;
}

int cmd_encode_text(int argc, char **argv) {
    Args a;
    args_init(&a, "encode-text", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak encode-text --text-encoder DIR --ids FILE.npy --out FILE.npy "
               "[--clip-skip K] [--batch B]\n"
               "       jtrak encode-text --text TEXT --text-encoder DIR --tokenizer DIR "
               "--out FILE.npy [--clip-skip K]\n"
               "       jtrak encode-text --captions SRC --text-encoder DIR --tokenizer DIR "
               "--out FILE.npy\n"
               "                         [--captions-per-image K] [--limit N] [--indices FILE] "
               "[--clip-skip K] [--batch B]\n"
               "DIR is a transformers CLIPTextModel folder (config.json + model.safetensors);\n"
               "FILE.npy holds token ids (N, L), int32 or int64. Writes last_hidden_state\n"
               "(N, L, D) float32 (with --clip-skip K: final_layer_norm(hidden_states[-(K+1)]))\n"
               "and a manifest OUT.json; read them with --cond npy:OUT.\n"
               "--captions SRC: a captioned dataset as --data takes it (coco:ANNOTATIONS.json\n"
               "[,IMAGEDIR] or captions:FILE.csv|FILE.jsonl[,IMAGEDIR]; --limit and --indices\n"
               "select rows as for --data), each row's first K captions tokenised with the\n"
               "CLIP tokenizer in --tokenizer DIR and encoded: (N, K, L, D) (K default: the\n"
               "fewest captions any row has), or (N, L, D) when K is 1; OUT.json records the\n"
               "encoder, tokenizer, captions and dataset fingerprints; FILE.json the texts.\n"
               "--text TEXT: one text (e.g. \"\" for the unconditional context: --uncond\n"
               "npy:OUT) tokenised and encoded as StableDiffusionPipeline does: (1, L, D).\n");
        args_free(&a);
        return 0;
    }
    const char *te = args_str(&a, "text-encoder", NULL), *ids = args_str(&a, "ids", NULL);
    const char *out = args_str(&a, "out", NULL), *caps = args_str(&a, "captions", NULL);
    const char *text = args_str(&a, "text", NULL);
    const char *text_tok = text ? args_str(&a, "tokenizer", NULL) : NULL;
    int skip = (int)args_long(&a, "clip-skip", 0, 0, CLIP_TEXT_MAX_LAYERS);
    int batch = (int)args_long(&a, "batch", 16, 1, 4096);
    EncodeCaptionsOptions co = {0};
    if (caps) {
        co.captions = caps;
        co.tokenizer = args_str(&a, "tokenizer", NULL);
        co.limit = args_str(&a, "limit", NULL);
        co.indices = args_str(&a, "indices", NULL);
        co.per_image = (int)args_long(&a, "captions-per-image", 0, 1, CONTEXT_MAX_PER_ROW);
    }
    int rc = args_finish(&a);
    if (rc == 0 && (!!caps + !!ids + !!text) > 1) {
        fprintf(stderr, "jtrak encode-text: give one of --ids, --captions and --text\n");
        rc = 2;
    } else if (rc == 0 && text && (!te || !text_tok || !out)) {
        fprintf(stderr, "jtrak encode-text: --text needs --text-encoder, --tokenizer and --out\n");
        rc = 2;
    } else if (rc == 0 && caps && (!te || !co.tokenizer || !out)) {
        fprintf(stderr, "jtrak encode-text: --captions needs --text-encoder, --tokenizer and "
                        "--out\n");
        rc = 2;
    } else if (rc == 0 && !caps && !text && (!te || !ids || !out)) {
        fprintf(stderr, "jtrak encode-text: --text-encoder, --ids and --out are required (or "
                        "--captions SRC with --tokenizer)\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;
    JtError err;
    if (caps) {
        co.text_encoder = te;
        co.out = out;
        co.clip_skip = skip;
        co.batch = batch;
        int usage = 0;
        if (cli_encode_captions(&co, &usage, &err) != JT_OK) {
            if (!usage) return cli_error("encode-text", &err);
            fprintf(stderr, "jtrak encode-text: %s\n", err.msg);
            return 2;
        }
        return 0;
    }
    if (text) {
        if (encode_text(te, text_tok, text, out, skip, &err) != JT_OK)
            return cli_error("encode-text", &err);
        return 0;
    }
    if (encode(te, ids, out, skip, batch, &err) != JT_OK) return cli_error("encode-text", &err);
    return 0;
}
