/* cmd_lds.c: `jtrak lds` trains models on random subsets of a model's training set, measures the
 * per-step ground truth on them (and the D-TRAK protocol's, of generated targets and of held-out
 * real images) and reports the linear datamodeling score of score folders, with confidence
 * intervals, a permuted control and the noise ceiling; see eval/lds.h. Under mpirun (a build with
 * MPI) the subset models are shared among the processes. */
#include "cli/cli_common.h"
#include "cli/cli_targets.h"
#include "cli/commands.h"
#include "core/comm.h"
#include "eval/lds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: jtrak lds --model DIR --trajectory FILE --out DIR [--scores DIR[,DIR...]] [options]\n"
           "  --model DIR            the full model (trained by jtrak train: its recipe and data are\n"
           "                         reused for every subset model)\n"
           "  --trajectory FILE      the targets, sampled from that model\n"
           "  --scores LIST          score folders (jtrak score) to evaluate, e.g. journey,trak,pixel;\n"
           "                         folders of real targets (score --targets-data) are evaluated\n"
           "                         against the held-out ground truth, on the same images\n"
           "  --K N                  subsets (default 64)\n"
           "  --alpha X              subset fraction (default 0.5)\n"
           "  --subset-seed N        (default 0)\n"
           "  --no-crn               give each subset model its own seed (default: the full\n"
           "                         model's, so only the data differs)\n"
           "  --seeds-per-subset N   models per subset, ground truth averaged (default 1)\n"
           "  --ceiling N            subsets also trained with another seed (noise ceiling; 4)\n"
           "  --steps S              ground-truth steps (default 900,700,500,300,100,0)\n"
           "  --R-eval N             noise draws per target and step (default 100)\n"
           "  --grid N               timesteps of the D-TRAK-protocol ground truth (default 10)\n"
           "  --gt-seed N            (default 0)\n"
           "  --replicates N         bootstrap replicates (default 1000)\n"
           "  --stop-after-models N  train at most N subset models now (per process; resume\n"
           "                         later)\n"
           "  --quiet\n"
           "With --heldout-data, every subset model also gets the D-TRAK-protocol ground truth of\n"
           "held-out real images (same grid, same fixed noise for every model), the \"val\" targets\n"
           "of the D-TRAK benchmark, in OUT/gt-heldout/ (truth \"dtrak-heldout\"). Adding it to a\n"
           "finished folder measures the models there without retraining them.\n"
           "Under mpirun (when jtrak was built with MPI) the subset models are shared among the\n"
           "processes (model q goes to process q %% N, also when resuming); once all are done,\n"
           "process 0 evaluates and writes the results, the same as one process writes.\n");
    cli_prefixed_data_help(stdout, "heldout", "held-out images");
}

int cmd_lds(int argc, char **argv) {
    Args a;
    args_init(&a, "lds", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    LdsOptions o;
    lds_options_default(&o);
    o.model_dir = args_str(&a, "model", NULL);
    o.traj_path = args_str(&a, "trajectory", NULL);
    o.out_dir = args_str(&a, "out", NULL);
    const char *scores = args_str(&a, "scores", NULL);
    o.K = (int)args_long(&a, "K", o.K, 2, 1 << 20);
    o.alpha = args_double(&a, "alpha", o.alpha, 0, 1);
    o.subset_seed = args_u64(&a, "subset-seed", 0);
    o.crn = !args_flag(&a, "no-crn");
    o.seeds_per_subset = (int)args_long(&a, "seeds-per-subset", 1, 1, 1000);
    o.ceiling = (int)args_long(&a, "ceiling", o.ceiling, 0, 1 << 20);
    o.steps = args_str(&a, "steps", o.steps);
    o.R_eval = (int)args_long(&a, "R-eval", o.R_eval, 1, 1 << 20);
    o.grid = (int)args_long(&a, "grid", o.grid, 1, 100000);
    o.gt_seed = args_u64(&a, "gt-seed", 0);
    o.replicates = (int)args_long(&a, "replicates", o.replicates, 10, 1 << 24);
    o.stop_after_models = args_long(&a, "stop-after-models", 0, 0, 1L << 40);
    o.quiet = args_flag(&a, "quiet");
    JtError err;
    DatasetSpec held;
    int have_held = 0, hrc = cli_prefixed_data_spec(&a, "heldout", &held, &have_held, &err);
    int rc = args_finish(&a);
    if (rc == 0 && hrc == 2) {
        fprintf(stderr, "jtrak lds: %s\n", err.msg);
        rc = 2;
    }
    if (rc == 0 && (!o.model_dir || !o.traj_path || !o.out_dir)) {
        fprintf(stderr, "jtrak lds: --model, --trajectory and --out are required (see 'jtrak lds --help')\n");
        rc = 2;
    }
    args_free(&a);
    if (rc == 0 && hrc == 1) rc = cli_error("lds", &err);
    if (rc) {
        data_spec_free(&held);
        return rc;
    }
    o.heldout = have_held ? &held : NULL;
    char *list = scores ? xstrdup(scores) : NULL;
    const char *dirs[64];
    int n = 0;
    for (char *tok = list ? strtok(list, ",") : NULL; tok && n < 64; tok = strtok(NULL, ","))
        dirs[n++] = tok;
    o.score_dirs = dirs;
    o.n_scores = n;
    comm_init(NULL, NULL);
    rc = lds_run(&o, &err);
    free(list);
    data_spec_free(&held);
    int status = rc != 0 ? cli_error("lds", &err) : 0;
    comm_finalize();
    return status;
}
