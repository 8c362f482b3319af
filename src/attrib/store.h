/* store.h: the feature store of attribution (architecture.md, method.md 2.1, 2.5): a folder that
 * every tool can read (JSON + NumPy .npy), filled by `jtrak featurize` over time and possibly by
 * several processes at once, read by `jtrak score`.
 *
 *   STORE/manifest.json          what the features were derived from (below)
 *   STORE/model_<m>/features.npy (n, k) float32: row i is x_i = P_m^T phi_i / sqrt(p)
 *   STORE/model_<m>/done.npy     (n,) uint8: 1 once row i of features.npy is written (a done byte
 *                                is written only after its row has been synced)
 *   STORE/model_<m>/kernel.npy   (k, k) float32: A_m = (X_m^T X_m + lambda I)^{-1} / mean|.|
 *   STORE/log.jsonl              progress lines of featurize runs
 *
 * manifest.json (format "jtrak-features-v1"; 64-bit seeds are strings, fingerprints 16 hex digits):
 *   {"format", "models": [{"path", "fingerprint", "params"}], "dataset": {"spec", "fingerprint",
 *    "n"}, "output_function": "loss"|"sqnorm", "S", "k", "projector": {"kind":
 *    "rademacher"|"sparse"|"hadamard", "seed"}, "draw_seed", "draws": "shared"|"independent",
 *    "sgemm_kernel": "avx512"|"openblas" (the arithmetic the rows were computed with; absent in
 *    older stores), "conditioning": "none"|"own-class"|"null-class" (how each row's class was
 *    chosen for a class-conditional model; absent in older stores: "none"; "own-context" for a
 *    model with cross-attention, with "context": {"spec", "fingerprint"}), "kernel": {"lambda",
 * "auto_ridge", "rescale", "per_model": [null |
 *    {"lambda_used", "rescale_divisor", "ridge_added"}]}, "done": [{"featurized", "finalized"}],
 *    "gradient_params": "all" | the --params patterns (attrib/paramsel.h; absent in older stores:
 *    "all"), and with patterns each models[m] also has "grad_params" (the selected count: the
 *    projection's input dimension p) and "grad_params_fingerprint" (of the selected names)}
 * The manifest is written last when a store is created and rewritten atomically on every change,
 * so a folder with a manifest is always a well-formed store. */
#ifndef JTRAK_STORE_H
#define JTRAK_STORE_H

#include "attrib/kernel.h"
#include "attrib/outfn.h"
#include "attrib/project.h"
#include "core/common.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_FORMAT "jtrak-features-v1"
#define STORE_MANIFEST "manifest.json"

/* How the rows of a class-conditional model were conditioned (the store's "conditioning"). */
typedef enum {
    COND_NONE = 0,      /* an unconditional model */
    COND_OWN_CLASS = 1, /* each row with its own label (Journey-TRAK, ldm.md 1.2) */
    COND_NULL_CLASS = 2, /* every row with the null class K - 1: the unconditional score */
    COND_OWN_CONTEXT = 3 /* each row with its own text context (a model with cross-attention;
                            one of the row's contexts picked by a keyed draw when it has several) */
} CondPolicy;

const char *cond_policy_name(CondPolicy c); /* "none", "own-class", "null-class", "own-context" */
int cond_policy_parse(const char *name, CondPolicy *c);

/* What a store is derived from and how: given to store_create, compared by store_check. */
typedef struct {
    int n_models;
    const char *const *model_paths;     /* (n_models) model folders (stored as absolute paths) */
    const uint64_t *model_fingerprints; /* (n_models) model_fingerprint */
    const size_t *model_params;         /* (n_models) parameter counts p */
    size_t n;                           /* training rows */
    uint64_t data_fingerprint;
    const char *data_spec; /* Dataset.description */
    OutFn outfn;
    int S, k;
    ProjKind proj_kind;
    uint64_t proj_seed, draw_seed;
    int shared_draws; /* 1: every row uses the same draws (ATTRIB_SHARED_ITEM) */
    KernelOptions kernel;
    const char *sgemm_kernel; /* la_sgemm_kernel() of the run: rows of two kernels differ ~1e-6 */
    CondPolicy cond;
    /* COND_OWN_CONTEXT: the ContextSet's description and fingerprint (data/context.h) */
    const char *context_spec;
    uint64_t context_fingerprint;
    /* the gradient's parameter selection (attrib/paramsel.h): NULL or "all" for every parameter;
     * otherwise the canonical patterns with, per model, the selected count and names' fingerprint
     */
    const char *grad_params;
    const size_t *model_grad_params;         /* (n_models), or NULL with "all" */
    const uint64_t *model_grad_fingerprints; /* (n_models), or NULL with "all" */
} StoreSpec;

typedef struct {
    char *dir;
    int n_models;
    size_t n;
    int k, S;
    OutFn outfn;
    uint64_t proj_seed, draw_seed;
    int shared_draws; /* manifest "draws": "shared" or "independent" */
    ProjKind proj_kind;
    char sgemm_kernel[16]; /* manifest "sgemm_kernel"; "" in stores made before it was kept */
    CondPolicy cond;       /* manifest "conditioning" */
    char *context_spec;    /* manifest "context": {"spec", "fingerprint"} with own-context */
    uint64_t context_fingerprint;
    char **model_paths;           /* (n_models) */
    uint64_t *model_fingerprints; /* (n_models) */
    size_t *model_params;         /* (n_models) */
    char *grad_params;            /* manifest "gradient_params": "all" or the patterns */
    size_t *model_grad_params;    /* (n_models) p of the projection: model_params with "all" */
    uint64_t *model_grad_fingerprints; /* (n_models) 0 with "all" */
    uint64_t data_fingerprint;
    char *data_spec;
    KernelOptions kernel;    /* the options the kernels were (or will be) computed with */
    KernelInfo *kernel_info; /* (n_models) valid where model_finalized */
    int *featurized;         /* (n_models) every row written */
    int *model_finalized;    /* (n_models) kernel.npy written */
    int finalized;           /* every model finalized: the store can be scored */
    void *priv;              /* open files */
} FeatureStore;

/* Opens an existing store read-only (writes open their files on demand): the manifest is parsed
 * and checked, and every model's features.npy and done.npy (and kernel.npy where finalized) must
 * exist with the shapes it announces. Errors name the file and the field. On error st is left
 * closed (store_close-safe). */
int store_open(FeatureStore *st, const char *dir, JtError *err);
/* Creates dir (if needed) with zero-filled features.npy and done.npy for every model and then the
 * manifest; st is left open. A folder that exists and holds anything but a store's files is
 * refused (it is not ours to fill). */
int store_create(FeatureStore *st, const char *dir, const StoreSpec *spec, JtError *err);
/* Closes files and frees; safe on a zeroed or closed store. */
void store_close(FeatureStore *st);

/* Whether st holds what spec describes (models and their order, dataset, output function, S, k,
 * projector, draw seed). The message names the field and what to do: "STORE/manifest.json: k is
 * 2048 but --k 1024 was given; use a new --out". Kernel options are not compared. */
int store_check(const FeatureStore *st, const StoreSpec *spec, JtError *err);

/* Whether the store's gradients are over every parameter (gradient_params "all"). */
int store_grad_params_all(const FeatureStore *st);
/* Whether a model's parameter selection (attrib/paramsel.h's count and fingerprint, resolved from
 * st->grad_params) is the one model `model` was featurized with: JT_ERR naming the field if not
 * (with "all": count must be models[m].params). For score. */
int store_check_grad_params(const FeatureStore *st, int model, size_t count, uint64_t fingerprint,
                            JtError *err);

/* FNV-1a over the identity fields (models' fingerprints, dataset, output function, S, k, projector,
 * draw seed, the conditioning when it is not none and the parameter selection when it is not all,
 * so older stores keep their fingerprint): what a scores manifest records to name the store it
 * used. */
uint64_t store_fingerprint(const FeatureStore *st);

/* ---- reading ---- */

/* out (rows, k) = rows [row0, row0 + rows) of model's features. */
int store_read_features(const FeatureStore *st, int model, size_t row0, size_t rows, float *out,
                        JtError *err);
/* A (k, k): model's kernel; an error if the model is not finalized. */
int store_read_kernel(const FeatureStore *st, int model, float *A, JtError *err);
/* mask (n) = done.npy of model; *count (may be NULL) = rows done. */
int store_rows_done(const FeatureStore *st, int model, uint8_t *mask, size_t *count, JtError *err);

/* ---- writing (featurize) ---- */

/* Writes rows [row0, row0 + rows) of model's features from X (rows, k). */
int store_write_rows(FeatureStore *st, int model, size_t row0, size_t rows, const float *X,
                     JtError *err);
/* Marks rows [row0, row0 + rows) done: first syncs features.npy (so that a done byte never reaches
 * the disk before its row), then writes the done bytes (not synced: see store_sync). A process
 * killed after this returns keeps the rows. */
int store_mark_done(FeatureStore *st, int model, size_t row0, size_t rows, JtError *err);
/* Marks row `row` not done (written and synced): featurize found it damaged. */
int store_mark_undone(FeatureStore *st, int model, size_t row, JtError *err);
/* Syncs model's done.npy (against power loss; a killed process loses nothing already written). */
int store_sync(FeatureStore *st, int model, JtError *err);
/* Writes kernel.npy (atomically), records info and marks the model finalized in the manifest. */
int store_write_kernel(FeatureStore *st, int model, const float *A, const KernelInfo *info,
                       JtError *err);
/* Sets model's featurized flag and rewrites the manifest. */
int store_mark_featurized(FeatureStore *st, int model, JtError *err);
/* Records new kernel options: every model must then be finalized again (flags cleared, kernel info
 * dropped; the old kernel files stay until replaced). Rewrites the manifest. */
int store_set_kernel_options(FeatureStore *st, const KernelOptions *opt, JtError *err);
/* Rewrites manifest.json from st (atomically). */
int store_write_manifest(const FeatureStore *st, JtError *err);

/* "STORE/model_<m>/<name>" (malloc'd). */
char *store_model_path(const FeatureStore *st, int model, const char *name);

#endif
