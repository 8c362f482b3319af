/* featurize.h: TRAK's featurize and finalize steps (method.md 1.4, 2.1-2.5) for an ensemble of
 * model folders: for every model m and training row i,
 *   x_i = P_m^T phi_i / sqrt(p),  phi_i = sum_{s<S} grad_theta f(theta_m; x_i, t_s, eps_s)
 * with (t_s, eps_s) = attrib_draws(draw seed, m, i) and P_m the Rademacher matrix of
 * (projector seed, m); then A_m = (X_m^T X_m + lambda I)^{-1} / mean|.| . Everything goes to a
 * feature store (attrib/store.h).
 *
 * Rows are computed in chunks of `batch` consecutive rows; a chunk's rows are written, synced and
 * then marked done, so a run that is killed or stopped loses at most the chunk in flight and the
 * same call resumes it. Every draw is keyed by (seed, model, row), the projection by (seed, model,
 * parameter row), and a row's gradient and projection are bitwise independent of the other rows of
 * its batch (attrib/outfn.c, attrib/project.c), so the features do not depend on how the work is
 * split: a resumed run (with any --batch), a run on several MPI ranks and an uninterrupted one
 * write identical files.
 *
 * Conditioning: a class-conditional model (num_class_embeds K, real classes 0..K-2 and the null
 * class K-1, diffusion/denoiser.h) featurizes every row with its own label (Journey-TRAK
 * featurizes every COCO image with its own caption, ldm.md 1.2), or with --cond null every row with
 * the null class (the unconditional score function). A model with cross-attention featurizes every
 * row with its own text context (opt->context; a row with several contexts uses the one picked by
 * context_pick keyed (draw seed, (CONTEXT_PICK, row, 1), 0), the same for all S draws, as
 * Journey-TRAK draws one caption per image). The policy is recorded in the store.
 *
 * MPI (when built with JTRAK_MPI and MPI was initialised, see core/comm.h): rank r of size
 * computes the chunks c with c % size == r and writes its rows into the shared files (pwrite at
 * row offsets); rank 0 creates or checks the store first and computes each model's kernel once
 * every rank has finished the model's rows. Without MPI the same code runs as rank 0 of 1. */
#ifndef JTRAK_FEATURIZE_H
#define JTRAK_FEATURIZE_H

#include "attrib/kernel.h"
#include "attrib/outfn.h"
#include "attrib/project.h"
#include "core/common.h"
#include "data/context.h"
#include "data/dataset.h"

#include <stddef.h>
#include <stdint.h>

/* --cond: how the rows of a class-conditional ensemble are conditioned (store.h's CondPolicy). */
typedef enum {
    FEATURIZE_COND_DEFAULT = 0, /* own-class for a class-conditional ensemble, none otherwise */
    FEATURIZE_COND_OWN = 1,     /* --cond own: each row with its own label */
    FEATURIZE_COND_NULL = 2     /* --cond null: the null class for every row */
} FeaturizeCond;

typedef struct {
    const char *const *model_dirs; /* (n_models) model folders: the ensemble, model_id = index */
    int n_models;
    const char *out_dir;    /* the store */
    int k;                  /* projection dimension (default 2048) */
    int S;                  /* draws (timestep, noise) per training row (default 20) */
    OutFn outfn;            /* default OUTFN_LOSS */
    ProjKind proj_kind;     /* default PROJ_RADEMACHER (--projection) */
    uint64_t proj_seed;     /* default 0 */
    uint64_t draw_seed;     /* default 0 */
    int shared_draws;       /* same draws for every row (ATTRIB_SHARED_ITEM); default 0 */
    int batch;              /* rows per chunk (default 16); does not change the features:
                               per-example gradients and projections are batch-invariant */
    KernelOptions kernel;   /* lambda 0, auto_ridge off, rescale on */
    FeaturizeCond cond;     /* --cond; the models must all be conditional with the same
                               num_class_embeds K, or all unconditional */
    const ContextSet *context; /* text contexts of the rows, exactly for models with
                                  cross-attention (each row with its own; featurize.c) */
    const char *params;        /* --params: the parameters whose gradients are featurized
                                  (attrib/paramsel.h patterns); NULL or "all" for every one */
    size_t stop_after_rows; /* stop after the chunk that reaches this many rows computed by
                               this process in this call (0 = no limit): for tests */
    int quiet;              /* no progress line, estimates or notes */
    int *stopped;           /* out, may be NULL: 0 complete, 1 stop_after_rows, 2 signal */
} FeaturizeOptions;

void featurize_options_default(FeaturizeOptions *o);

/* Featurizes (or resumes) and finalizes every model on `data` (the rows as selected: row i of the
 * store is row i of data). An existing store must describe the same models, data, output function,
 * S, k, projector, draw seed and parameter selection (--params), or it is refused naming the
 * field; changed kernel options
 * recompute the kernels from the stored features. Returns JT_OK when the run ended (complete or
 * stopped: see opt->stopped), JT_ERR with err filled otherwise. */
int featurize_run(const FeaturizeOptions *opt, const Dataset *data, JtError *err);

/* The context row `row` is featurized with (one of its candidates, keyed by the draw seed). */
const float *featurize_row_context(const ContextSet *ctx, uint64_t draw_seed, size_t row);

/* Bytes of memory a process needs per model, the estimate featurize prints: grad engine, gradient
 * slab (batch x P floats, P the selected parameter count with --params), projector scratch, draws
 * (eps, and x0: x0_draws = S for a latent dataset's posterior sample per draw, else 1), contexts
 * (context_floats = L x D per example, 0 without), features, model, Gram (k x k doubles) and
 * kernel, with the grad engine's and the projector's bytes given (grad_engine_bytes,
 * proj_scratch_bytes). */
size_t featurize_bytes(size_t engine_bytes, size_t P, int batch, int S, size_t D, int x0_draws,
                       size_t context_floats, int k, size_t proj_bytes);

#endif
