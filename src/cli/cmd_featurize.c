/* cmd_featurize.c: `jtrak featurize --models DIR[,DIR...] --out STORE` computes the TRAK features
 * of every training row for every model of an ensemble and each model's kernel, into a feature
 * store (see attrib/featurize.h and attrib/store.h). Re-running the same command resumes; under
 * mpirun (a build with MPI) the rows are shared among the processes. */
#include "attrib/featurize.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf(
        "usage: jtrak featurize --models DIR[,DIR...] --out STORE [options]\n\n"
        "  --models LIST        model folders (an ensemble; model m gets projection m), trained\n"
        "                       on the data given below\n"
        "  --out STORE          the feature store folder (created, or resumed if it exists)\n"
        "features (a resumed store must use the same):\n"
        "  --k N                projection dimension (default 2048)\n"
        "  --S N                (timestep, noise) draws per training image (default 20)\n"
        "  --output F           loss (default: TRAK / Journey-TRAK) or sqnorm (D-TRAK)\n"
        "  --projection P       rademacher (default: dense +-1, as TRAK), sparse (a sparse JL\n"
        "                       transform, 8 nonzeros per parameter) or hadamard (block "
        "randomized\n"
        "                       Hadamard); the same feature scale, sparse and hadamard are much\n"
        "                       faster on large models\n"
        "  --proj-seed N        seed of the projection matrices (default 0)\n"
        "  --draws D            independent (default: fresh (t, eps) per row, as Journey-TRAK) or\n"
        "                       shared (the same draws for every row and target, as D-TRAK)\n"
        "  --seed N             seed of the timestep and noise draws (default 0)\n"
        "  --cond C             class-conditional models: own (default: each image with its\n"
        "                       own label, as Journey-TRAK) or null (the null class for every\n"
        "                       image: the unconditional score function); models with\n"
        "                       cross-attention: npy:FILE, the rows' text contexts as in 'jtrak\n"
        "                       train' (each image with its own caption; one picked per image\n"
        "                       when it has several)\n"
        "  --cond-index I       with a context table: labels or npy:FILE (as in 'jtrak train')\n"
        "  --params PATTERNS    the parameters whose gradients are featurized: all (default) or\n"
        "                       a comma-separated list of diffusers name patterns; a parameter\n"
        "                       is selected when its full name contains a pattern as whole\n"
        "                       dot-separated components ('attn2.to_k,attn2.to_v' selects every\n"
        "                       '...attn2.to_k.weight' and '...attn2.to_v.weight'; 'attn' alone\n"
        "                       matches no 'attn1'); every pattern must match. The projection is\n"
        "                       over the selected gradient (p = the selected count); 'jtrak\n"
        "                       score' uses the store's selection\n"
        "kernel (may change on a finished store: the kernels are recomputed):\n"
        "  --lambda X           ridge added to X^T X before inversion (default 0)\n"
        "  --auto-ridge         if X^T X + lambda I is singular, add the smallest ridge that "
        "works\n"
        "  --no-rescale         keep A = (X^T X + lambda I)^-1 (default: divide by mean |A| as "
        "TRAK)\n"
        "run control:\n"
        "  --batch N            training images per gradient batch (default 16; results do not\n"
        "                       depend on it)\n"
        "  --stop-after-rows N  stop after about N rows of this invocation (whole batches)\n"
        "  --quiet              no progress line\n\n"
        "Under mpirun (when jtrak was built with MPI) every process computes a share of the "
        "rows.\n\n");
    cli_data_help(stdout);
}

/* Splits "a,b,c" into a NULL-terminated malloc'd array of malloc'd strings. */
static char **split_list(const char *s, int *count) {
    int n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **out = xcalloc((size_t)n + 1, sizeof *out);
    int i = 0;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == ',' || *p == 0) {
            size_t len = (size_t)(p - start);
            if (len > 0) {
                out[i] = xmalloc(len + 1);
                memcpy(out[i], start, len);
                out[i][len] = 0;
                i++;
            }
            if (*p == 0) break;
            start = p + 1;
        }
    }
    *count = i;
    return out;
}

static void free_list(char **l) {
    if (!l) return;
    for (char **p = l; *p; p++)
        free(*p);
    free(l);
}

int cmd_featurize(int argc, char **argv) {
    Args a;
    args_init(&a, "featurize", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    FeaturizeOptions o;
    featurize_options_default(&o);
    const char *models = args_str(&a, "models", NULL);
    o.out_dir = args_str(&a, "out", NULL);
    o.k = (int)args_long(&a, "k", o.k, 1, 1 << 20);
    o.S = (int)args_long(&a, "S", o.S, 1, 1 << 20);
    const char *output = args_str(&a, "output", "loss");
    const char *projection = args_str(&a, "projection", proj_kind_name(o.proj_kind));
    o.proj_seed = args_u64(&a, "proj-seed", o.proj_seed);
    o.draw_seed = args_u64(&a, "seed", o.draw_seed);
    const char *draws = args_str(&a, "draws", "independent");
    if (strcmp(draws, "shared") == 0) {
        o.shared_draws = 1;
    } else if (strcmp(draws, "independent") != 0) {
        fprintf(stderr, "jtrak featurize: --draws must be independent or shared, not '%s'\n",
                draws);
        args_free(&a);
        return 2;
    }
    const char *cond = args_str(&a, "cond", NULL);
    ContextSpec cspec = {NULL, args_str(&a, "cond-index", NULL), NULL};
    if (cond && strncmp(cond, "npy:", 4) == 0) {
        cspec.file = cond;
    } else if (cspec.index) {
        fprintf(stderr, "jtrak featurize: --cond-index goes with --cond npy:FILE\n");
        args_free(&a);
        return 2;
    } else if (cond && strcmp(cond, "own") == 0) {
        o.cond = FEATURIZE_COND_OWN;
    } else if (cond && strcmp(cond, "null") == 0) {
        o.cond = FEATURIZE_COND_NULL;
    } else if (cond) {
        fprintf(stderr, "jtrak featurize: --cond must be own, null or npy:FILE, not '%s'\n", cond);
        args_free(&a);
        return 2;
    }
    o.params = args_str(&a, "params", NULL);
    o.batch = (int)args_long(&a, "batch", o.batch, 1, 1 << 16);
    o.kernel.lambda = args_double(&a, "lambda", 0, 0, 1e300);
    o.kernel.auto_ridge = args_flag(&a, "auto-ridge");
    o.kernel.rescale = !args_flag(&a, "no-rescale");
    o.stop_after_rows = (size_t)args_long(&a, "stop-after-rows", 0, 0, 1L << 50);
    o.quiet = args_flag(&a, "quiet");
    int stopped = 0;
    o.stopped = &stopped;

    int rc = 0;
    if (!models || !o.out_dir) {
        fprintf(stderr, "jtrak featurize: --models DIR[,DIR...] and --out STORE are required (see "
                        "'jtrak featurize --help')\n");
        args_free(&a);
        return 2;
    }
    if (!outfn_parse(output, &o.outfn)) {
        fprintf(stderr, "jtrak featurize: --output must be loss or sqnorm, not '%s'\n", output);
        args_free(&a);
        return 2;
    }
    if (!proj_kind_parse(projection, &o.proj_kind)) {
        fprintf(stderr,
                "jtrak featurize: --projection must be rademacher, sparse or hadamard, not '%s'\n",
                projection);
        args_free(&a);
        return 2;
    }
    char **dirs = split_list(models, &o.n_models);
    o.model_dirs = (const char *const *)dirs;
    if (o.n_models == 0) {
        fprintf(stderr, "jtrak featurize: --models '%s' names no folder\n", models);
        free_list(dirs);
        args_free(&a);
        return 2;
    }

    /* The data are loaded at the size of the first model; featurize_run checks every model. */
    JtError err;
    UNetConfig cfg;
    Dataset data = {0};
    /* A bad model folder is reported as such, not as the data options left unread. */
    if (cli_model_config(dirs[0], &cfg, &err) != JT_OK) {
        args_free(&a);
        free_list(dirs);
        return cli_error("featurize", &err);
    }
    int drc = cli_load_dataset(&a, &cfg, &data, &err), loaded_data = drc == JT_OK;
    rc = args_finish(&a);
    args_free(&a);
    if (rc) {
        data_free(&data);
        free_list(dirs);
        return rc;
    }
    if (drc == 2) {
        free_list(dirs);
        fprintf(stderr, "jtrak featurize: %s\n", err.msg);
        return 2;
    }
    if (!loaded_data) {
        free_list(dirs);
        return cli_error("featurize", &err);
    }

    ContextSet ctx;
    if (cspec.file) {
        if (context_load(&ctx, &cspec, &data, &err) != JT_OK) {
            data_free(&data);
            free_list(dirs);
            return cli_error("featurize", &err);
        }
        o.context = &ctx;
    }
    comm_init(NULL, NULL);
    int rank = comm_rank();
    rc = featurize_run(&o, &data, &err);
    data_free(&data);
    if (cspec.file) context_free(&ctx);
    free_list(dirs);
    int status = 0;
    if (rc != JT_OK) {
        status = cli_error("featurize", &err);
    } else {
        if (rank == 0) printf("%s\n", o.out_dir);
        status = stopped == 2 ? 130 : 0; /* 130: interrupted, as shells report SIGINT */
    }
    comm_finalize();
    return status;
}
