/* cmd_counterfactual.c: `jtrak counterfactual` retrains without the top-k attributed images (and,
 * for comparison, without k random and k pixel-nearest ones) and measures how far the regenerated
 * samples move; see eval/counterfactual.h. Under mpirun (a build with MPI) the models are shared
 * among the processes. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/comm.h"
#include "eval/counterfactual.h"

#include <stdio.h>

int cmd_counterfactual(int argc, char **argv) {
    Args a;
    args_init(&a, "counterfactual", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak counterfactual --model DIR --trajectory FILE --scores DIR --step T --out DIR\n"
               "  --k N          training images removed (default 10)\n"
               "  --targets L    all (default) or sample indices\n"
               "  --seed N       seed of the random removal (default 0)\n"
               "  --quiet\n"
               "For each target, three models are trained from scratch with the model's recipe and\n"
               "seed: without the top-k images by the scores at step T, without k random images,\n"
               "and without the k images nearest in pixels; each regenerates the sample with the\n"
               "same sampler noise from x_T and from the stored x_t of step T.\n"
               "Under mpirun (when jtrak was built with MPI) the models are shared among the\n"
               "processes; once all are done, process 0 writes the results, the same as one\n"
               "process writes.\n");
        args_free(&a);
        return 0;
    }
    CounterfactualOptions o;
    counterfactual_options_default(&o);
    o.model_dir = args_str(&a, "model", NULL);
    o.traj_path = args_str(&a, "trajectory", NULL);
    o.scores_dir = args_str(&a, "scores", NULL);
    o.out_dir = args_str(&a, "out", NULL);
    o.step = (int)args_long(&a, "step", -1, 0, 1 << 20);
    o.k = (int)args_long(&a, "k", o.k, 1, 1 << 30);
    o.targets = args_str(&a, "targets", o.targets);
    o.seed = args_u64(&a, "seed", 0);
    o.quiet = args_flag(&a, "quiet");
    int rc = args_finish(&a);
    if (rc == 0 && (!o.model_dir || !o.traj_path || !o.scores_dir || !o.out_dir || o.step < 0)) {
        fprintf(stderr, "jtrak counterfactual: --model, --trajectory, --scores, --step and --out are "
                        "required (see 'jtrak counterfactual --help')\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;
    JtError err;
    comm_init(NULL, NULL);
    int status = counterfactual_run(&o, &err) != JT_OK ? cli_error("counterfactual", &err) : 0;
    comm_finalize();
    return status;
}
