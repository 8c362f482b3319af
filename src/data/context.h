/* context.h: text conditioning read from files: the encoder hidden states ("contexts", (L, D) per
 * caption) that a network with cross-attention is conditioned on (ldm.md 1.2, 2.1; issue 13 item
 * 5). jtrak does not run a text encoder here: contexts are computed once, by any encoder, and
 * stored as float32 .npy. A ContextSet is a table of contexts and, for the rows of a dataset, which
 * table rows each row may use.
 *
 * Forms of the context file (--cond npy:FILE in train and featurize, --context npy:FILE in sample):
 *   (N, L, D)     one context per dataset row (N = the rows as selected)
 *   (N, K, L, D)  K contexts per row (COCO's 5 captions per image); a draw picks one, keyed
 *   (M, L, D)     a table with an index: "labels" (each row's class label is its table row: class
 *                 names as captions) or an int32/int64 .npy (N,) of table rows
 * For sample, the file is a prompt table (any of the forms, read as its M (or N*K) contexts) and
 * --prompt-index picks rows.
 *
 * The unconditional context (caption dropout in training, the unconditional branch of classifier-
 * free guidance; StableDiffusionPipeline encodes "" for it, ldm.md 5) is explicit: a row of the
 * table ("row:R") or its own file ("npy:FILE", (L, D) or (1, L, D)). Without one, training has no
 * caption dropout and sampling no guidance.
 *
 * The texts: a context file FILE.npy may have FILE.json beside it whose "captions" is an array of
 * one string per table row (the captions the contexts encode, as data/fm-captions/ ships them);
 * they are read for people (the prompts a trajectory records and the report shows), not for the
 * numbers.
 *
 * The dataset: when FILE.npy.json (the manifest of encode-text --captions) names the dataset the
 * contexts were made for ("dataset_text_fingerprint", data_rows_text_fingerprint of its rows), a
 * dataset whose rows have other names or captions is refused, even with the same row count.
 *
 * The fingerprint covers the contexts, each row's candidates and the unconditional context, so an
 * artifact made with one context set refuses another. */
#ifndef JTRAK_CONTEXT_H
#define JTRAK_CONTEXT_H

#include "core/common.h"
#include "data/dataset.h"

#include <stddef.h>
#include <stdint.h>

/* Stated limits: a context of more tokens or a wider one than any published text encoder (77 x
 * 1024 for SD-2, 4096 wide for T5-XXL) is refused as a likely mistake. */
#define CONTEXT_MAX_LEN 4096
#define CONTEXT_MAX_DIM 16384
#define CONTEXT_MAX_PER_ROW 1024

/* The options as the user gave them (NULL = absent). */
typedef struct {
    const char *file;   /* "npy:FILE" */
    const char *index;  /* NULL, "labels" or "npy:FILE" (with an (M, L, D) table) */
    const char *uncond; /* NULL, "row:R" or "npy:FILE" */
} ContextSpec;

typedef struct {
    const float *table; /* (m, L, D), in the file's read-only mapping (or src's, for a subset) */
    void *map;          /* the mapping, NULL when borrowed */
    size_t map_bytes;
    size_t m;
    int L, D;
    size_t n;      /* dataset rows served; 0 for a prompt table (no dataset) */
    int k;         /* candidates per row */
    size_t *cand;  /* (n, k) table rows; NULL when n == 0 */
    float *uncond; /* (L, D), or NULL */
    uint64_t fingerprint;
    char *description; /* "file=...;index=...;uncond=...", for manifests and messages */
    char **captions;   /* (m) the texts of the table rows (FILE.json "captions"), or NULL */
} ContextSet;

/* Reads and checks the files. data: the dataset the rows belong to (its n; its labels for
 * index "labels"), or NULL for a prompt table. Every disagreement (rows vs the data, a label or
 * index outside the table, a bad shape or dtype, non-finite values, limits) is one JT_ERR naming
 * the file. */
int context_load(ContextSet *cs, const ContextSpec *spec, const Dataset *data, JtError *err);
void context_free(ContextSet *cs);

/* Reads back a ContextSet.description ("file=...;index=...;uncond=...", e.g. from training.json)
 * and loads it for `data`: what lds and counterfactual do to retrain a model's recipe. */
int context_load_described(ContextSet *cs, const char *description, const Dataset *data,
                           JtError *err);
/* A new set serving rows[0..k) of src (an LDS subset, as data_subset): the same table (borrowed
 * from src, which must outlive it) and unconditional context, each kept row's candidates, its own
 * fingerprint. */
void context_subset(const ContextSet *src, const size_t *rows, size_t k, ContextSet *out);

/* JT_OK when the contexts fit a network with cross_attention_dim D (0: no cross-attention, which
 * is an error), else JT_ERR naming `what` (the model) and both widths. */
int context_check_model(const ContextSet *cs, int cross_attention_dim, const char *what,
                        JtError *err);

/* Table row `r` (L, D). */
const float *context_table_row(const ContextSet *cs, size_t r);
/* Candidate `k` of dataset row `row` (L, D). */
const float *context_of_row(const ContextSet *cs, size_t row, int k);
/* Which candidate of `row` the draw keyed (seed, stream, index) uses: 0 when the row has one,
 * else uniform on 0..k-1 (rng_randint). */
int context_pick(const ContextSet *cs, uint64_t seed, uint64_t stream, uint64_t index);
/* 16 lower-case hex digits. */
const char *context_fingerprint_hex(const ContextSet *cs, char buf[17]);

#endif
