/* cli_encode_captions.c: `jtrak encode-text --captions SRC ...`: the contexts of a captioned
 * dataset's captions, computed once for train and featurize (--cond npy:OUT). SRC is --data text
 * (coco:ANNOTATIONS.json[,IMAGEDIR] or captions:FILE.csv|FILE.jsonl[,IMAGEDIR]) and --limit and
 * --indices select rows exactly as they do for --data, so row i of OUT is row i of the dataset
 * train loads from the same options. No image is decoded.
 *
 * OUT is (N, K, L, D) float32, the first K captions of each row (K: --captions-per-image, default
 * the fewest any selected image has; COCO images have 5, a few 6 or 7), or (N, L, D) when K is 1.
 * Beside it: OUT.json manifest (text encoder and tokenizer fingerprints, the captions' FNV-1a 64
 * in row order, the dataset's description and the text fingerprint of its rows, which context.c
 * checks when train or featurize reads OUT), and FILE.json "captions" (OUT = FILE.npy: the N*K
 * texts, what context.h shows people). Written under temporary names, the .npy renamed last; a
 * failed run leaves none of the three. Progress on stderr (captions done/total, rate, ETA). */
#include "cli/encode_captions.h"

#include "core/hash.h"
#include "core/progress.h"
#include "data/captions.h"
#include "data/context.h"
#include "data/source.h"
#include "io/jsonfile.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "text/text_encode.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The selected rows of the captioned source: their names, their first K captions. */
typedef struct {
    DataSource src;
    const Captions *caps;
    size_t *rows; /* (n) source images */
    size_t n;
    int kmin, kmax;
    char *description;
} Rows;

static void rows_free(Rows *r) {
    data_source_free(&r->src);
    free(r->rows);
    free(r->description);
    memset(r, 0, sizeof *r);
}

static int rows_load(const EncodeCaptionsOptions *o, Rows *r, int *usage, JtError *err) {
    memset(r, 0, sizeof *r);
    DatasetSpec spec;
    data_spec_init(&spec);
    int rc = data_spec_set(&spec, "data", o->captions, err);
    if (rc == JT_OK && spec.kind != DATA_SRC_COCO && spec.kind != DATA_SRC_CAPTIONS)
        rc = jt_fail(err,
                     "--captions %s: not a captioned dataset (coco:ANNOTATIONS.json[,IMAGEDIR] or "
                     "captions:FILE.csv|FILE.jsonl[,IMAGEDIR])",
                     o->captions);
    if (rc == JT_OK && o->limit) rc = data_spec_set(&spec, "limit", o->limit, err);
    if (rc == JT_OK && o->indices) rc = data_spec_set(&spec, "indices", o->indices, err);
    if (rc != JT_OK) {
        *usage = 1;
        data_spec_free(&spec);
        return JT_ERR;
    }
    rc = data_open_captioned(&r->src, &spec, err);
    if (rc == JT_OK) rc = data_select(&spec, &r->src, &r->rows, &r->n, err);
    if (rc == JT_OK) {
        r->caps = data_source_captions(&r->src);
        r->description = data_spec_describe_abs(&spec);
        r->kmin = CONTEXT_MAX_PER_ROW;
        for (size_t i = 0; i < r->n; i++) {
            int k = (int)captions_count(r->caps, r->rows[i]);
            r->kmin = k < r->kmin ? k : r->kmin;
            r->kmax = k > r->kmax ? k : r->kmax;
        }
    }
    data_spec_free(&spec);
    if (rc != JT_OK) rows_free(r);
    return rc;
}

/* The per-image count the user asked for, or the smallest there is. */
static int pick_k(const EncodeCaptionsOptions *o, const Rows *r, int *K, JtError *err) {
    *K = o->per_image ? o->per_image : r->kmin;
    if (*K <= r->kmin) return JT_OK;
    for (size_t i = 0; i < r->n; i++) {
        size_t k = captions_count(r->caps, r->rows[i]);
        if (k < (size_t)*K)
            return jt_fail(err,
                           "--captions-per-image %d: row %zu (%s) has only %zu caption%s in %s", *K,
                           i, r->caps->names[r->rows[i]], k, k == 1 ? "" : "s", r->caps->what);
    }
    return JT_OK;
}

static char *hex(uint64_t h, char buf[17]) {
    snprintf(buf, 17, "%016llx", (unsigned long long)h);
    return buf;
}

typedef struct {
    const Model *m;
    const ClipTokenizer *tok;
    const Rows *r;
    int K, L, D;
    uint64_t captions_hash, rows_hash, out_hash;
    size_t n_truncated;
} ManifestInfo;

static int write_manifest(const char *path, const EncodeCaptionsOptions *o, const ManifestInfo *mi,
                          JtError *err) {
    char h[17];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "text_contexts");
    cJSON_AddStringToObject(j, "source", "captions");
    cJSON_AddStringToObject(j, "text_encoder", o->text_encoder);
    cJSON_AddStringToObject(j, "text_encoder_class", model_kind(mi->m)->class_name);
    cJSON_AddStringToObject(j, "text_encoder_fingerprint",
                            model_fingerprint_hex(model_fingerprint(mi->m), h));
    cJSON_AddStringToObject(j, "tokenizer", o->tokenizer);
    cJSON_AddStringToObject(j, "tokenizer_fingerprint",
                            hex(clip_tokenizer_fingerprint(mi->tok), h));
    cJSON_AddNumberToObject(j, "clip_skip", o->clip_skip);
    cJSON_AddStringToObject(j, "captions", mi->r->caps->what);
    cJSON_AddStringToObject(j, "captions_format",
                            mi->r->caps->format == CAPTIONS_COCO  ? "coco"
                            : mi->r->caps->format == CAPTIONS_CSV ? "csv"
                                                                  : "jsonl");
    cJSON_AddNumberToObject(j, "captions_per_image", mi->K);
    cJSON_AddNumberToObject(j, "captions_per_image_min", mi->r->kmin);
    cJSON_AddNumberToObject(j, "captions_per_image_max", mi->r->kmax);
    char note[200];
    snprintf(note, sizeof note,
             "each row's first %d caption%s in file order (the images have %d to %d)", mi->K,
             mi->K == 1 ? "" : "s", mi->r->kmin, mi->r->kmax);
    cJSON_AddStringToObject(j, "captions_note", note);
    cJSON_AddStringToObject(j, "captions_fnv1a64", hex(mi->captions_hash, h));
    cJSON_AddNumberToObject(j, "captions_truncated", (double)mi->n_truncated);
    cJSON_AddStringToObject(j, "dataset", mi->r->description);
    cJSON_AddNumberToObject(j, "dataset_rows", (double)mi->r->n);
    cJSON_AddStringToObject(j, "dataset_text_fingerprint", hex(mi->rows_hash, h));
    cJSON *shape = cJSON_AddArrayToObject(j, "shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)mi->r->n));
    if (mi->K > 1) cJSON_AddItemToArray(shape, cJSON_CreateNumber(mi->K));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(mi->L));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(mi->D));
    cJSON_AddStringToObject(j, "dtype", "float32");
    cJSON_AddStringToObject(j, "layout",
                            mi->K > 1
                                ? "(N, K, L, D): K captions per row, each encoder_hidden_states"
                                : "token-major (N, L, D): encoder_hidden_states");
    cJSON_AddStringToObject(j, "contexts_fnv1a64", hex(mi->out_hash, h));
    int rc = json_write_file(path, j, err);
    cJSON_Delete(j);
    return rc;
}

/* FILE.json beside FILE.npy: {"captions": [the N*K texts in row order]} (context.h). */
static int write_texts(const char *path, const char *const *texts, size_t n, JtError *err) {
    cJSON *j = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(j, "captions");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(texts[i]));
    int rc = json_write_file(path, j, err);
    cJSON_Delete(j);
    return rc;
}

/* "X.npy" -> "X.json" (NULL when out does not end in .npy: no texts file). */
static char *texts_path(const char *out) {
    size_t n = strlen(out);
    if (n < 4 || strcmp(out + n - 4, ".npy") != 0) return NULL;
    char *p = xmalloc(n + 2);
    memcpy(p, out, n - 4);
    strcpy(p + n - 4, ".json");
    return p;
}

static int encode(const EncodeCaptionsOptions *o, const Rows *r, int K, const Model *m,
                  const ClipText *te, const ClipTokenizer *tok, JtError *err) {
    const int L = clip_tokenizer_max_length(tok), D = clip_text_config(te)->hidden_size;
    const size_t N = r->n, total = N * (size_t)K, LD = (size_t)L * D;
    /* the N*K texts in row order, borrowed from the captions */
    const char **texts = xmalloc(total * sizeof *texts);
    char **firsts = xmalloc(N * sizeof *firsts), **names = xmalloc(N * sizeof *names);
    for (size_t i = 0; i < N; i++) {
        for (int k = 0; k < K; k++)
            texts[i * (size_t)K + (size_t)k] = captions_text(r->caps, r->rows[i], (size_t)k);
        firsts[i] = (char *)captions_text(r->caps, r->rows[i], 0);
        names[i] = r->caps->names[r->rows[i]];
    }
    ManifestInfo mi = {m,
                       tok,
                       r,
                       K,
                       L,
                       D,
                       captions_fingerprint_texts(texts, total),
                       data_text_fingerprint(N, names, firsts),
                       HASH_FNV_OFFSET,
                       0};
    free(firsts);
    free(names);

    const char *out = o->out;
    char *tmp = xmalloc(strlen(out) + 40), *man = xmalloc(strlen(out) + 8), *txt = texts_path(out);
    snprintf(tmp, strlen(out) + 40, "%s.tmp.%ld", out, (long)getpid());
    snprintf(man, strlen(out) + 8, "%s.json", out);
    const size_t shape4[4] = {N, (size_t)K, (size_t)L, (size_t)D},
                 shape3[3] = {N, (size_t)L, (size_t)D};
    NpyFile f = {.fd = -1};
    int rc = K > 1 ? npy_create(&f, tmp, NPY_F32, 4, shape4, err)
                   : npy_create(&f, tmp, NPY_F32, 3, shape3, err);
    const int created = rc == JT_OK;
    /* images per chunk: about --batch captions, at least one image */
    const size_t per = (size_t)o->batch > (size_t)K ? (size_t)o->batch / (size_t)K : 1;
    float *ctx = rc == JT_OK ? xmalloc(per * (size_t)K * LD * sizeof *ctx) : NULL;
    TextEncodeNotes all = {0, 0, L, 0};
    Progress p;
    progress_init(&p, "encode-text", total, 0, 1.0, "caption");
    for (size_t i0 = 0; i0 < N && rc == JT_OK; i0 += per) {
        const size_t ni = N - i0 < per ? N - i0 : per, t0 = i0 * (size_t)K;
        TextEncodeNotes nt;
        rc = text_encode(tok, te, texts + t0, ni * (size_t)K, o->clip_skip, ctx, &nt, err);
        if (rc != JT_OK) {
            JtError inner = *err;
            /* text_encode counts from the chunk's first text */
            const char *t = strstr(inner.msg, "text ");
            size_t rel = 0;
            if (t == inner.msg && sscanf(t + 5, "%zu", &rel) == 1 && rel < ni * (size_t)K)
                jt_fail(err, "%s: row %zu (%s), caption %zu: %s", r->caps->what,
                        i0 + rel / (size_t)K, r->caps->names[r->rows[i0 + rel / (size_t)K]],
                        rel % (size_t)K, inner.msg);
            else
                jt_fail(err, "%s: %s", r->caps->what, inner.msg);
            break;
        }
        if (nt.n_truncated && all.n_truncated == 0) {
            all.first_truncated = t0 + nt.first_truncated;
            all.first_total_tokens = nt.first_total_tokens;
        }
        all.n_truncated += nt.n_truncated;
        rc = npy_write_rows(&f, i0, ni, ctx, err);
        if (rc == JT_OK) mi.out_hash = hash_fnv1a(mi.out_hash, ctx, ni * (size_t)K * LD * 4);
        progress_update(&p, (i0 + ni) * (size_t)K, NULL, i0 + ni == N);
    }
    if (created) {
        int crc = npy_close(&f, rc == JT_OK ? err : NULL);
        if (rc == JT_OK) rc = crc;
    }
    mi.n_truncated = all.n_truncated;
    int wrote_man = 0, wrote_txt = 0;
    if (rc == JT_OK) rc = write_manifest(man, o, &mi, err);
    if (rc == JT_OK) wrote_man = 1;
    if (rc == JT_OK && txt) rc = write_texts(txt, texts, total, err);
    if (rc == JT_OK && txt) wrote_txt = 1;
    if (rc == JT_OK && rename(tmp, out) != 0)
        rc = jt_fail(err, "%s: cannot rename %s into place: %s", out, tmp, strerror(errno));
    if (rc != JT_OK) {
        if (created) unlink(tmp);
        if (wrote_man) unlink(man);
        if (wrote_txt) unlink(txt);
    } else {
        char *note = text_encode_truncation_message(&all, texts, "caption");
        if (note) fprintf(stderr, "jtrak encode-text: %s\n", note);
        free(note);
        printf("%s\n", out);
    }
    free(ctx);
    free(tmp);
    free(man);
    free(txt);
    free(texts);
    return rc;
}

int cli_encode_captions(const EncodeCaptionsOptions *o, int *usage, JtError *err) {
    *usage = 0;
    Rows r;
    if (rows_load(o, &r, usage, err) != JT_OK) return JT_ERR;
    int K = 0;
    int rc = pick_k(o, &r, &K, err);
    Model *m = NULL;
    ClipTokenizer *tok = NULL;
    const ClipText *te = NULL;
    if (rc == JT_OK) rc = model_load(o->text_encoder, &m, err);
    if (rc == JT_OK && !(te = model_text_encoder_const(m)))
        rc = jt_fail(err, "--text-encoder %s: a %s folder, not a CLIPTextModel text encoder",
                     o->text_encoder, model_kind(m)->class_name);
    if (rc == JT_OK) rc = clip_tokenizer_load(&tok, o->tokenizer, err);
    if (rc == JT_OK) rc = encode(o, &r, K, m, te, tok, err);
    clip_tokenizer_free(tok);
    model_free(m);
    rows_free(&r);
    return rc;
}
