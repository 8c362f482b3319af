/* cmd_demo.c: `jtrak demo`, the main job on the embedded default (Debian's Fashion-MNIST): train a
 * small U-Net, sample from it keeping full trajectories, featurize the training set, score the
 * samples at a grid of steps with Journey-TRAK, and write the report; then the same journey for a
 * class-conditional model (condition dropout for classifier-free guidance, one guided sample per
 * class) in DIR/cond. It runs the same subcommands a user would (printing each command line first),
 * so every stage resumes or redoes its part when the demo is run again after an interruption. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/png.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_demo(int argc, char **argv) {
    Args a;
    args_init(&a, "demo", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak demo [--out DIR] [--quick]\n"
               "Trains fm-xs on the first 5000 Fashion-MNIST training images\n"
               "(/usr/share/datasets/fashion-mnist), samples 8 images with DDPM keeping their\n"
               "trajectories, featurizes the 5000 images (k 2048, S 5), scores the samples at\n"
               "t = 900, 700, 500, 300, 100, 0 with Journey-TRAK and writes DIR/report.html and\n"
               "DIR/figure.png. Then the class-conditional part: the same recipe with the class\n"
               "labels (--cond class, condition dropout 0.1), one guided sample per class\n"
               "(guidance 3), their attributions and DIR/cond/report.html.\n"
               "--quick: a smoke test on 64 images (seconds, not a useful model).\n");
        args_free(&a);
        return 0;
    }
    const char *out = args_str(&a, "out", "out/demo");
    int quick = args_flag(&a, "quick");
    int rc = args_finish(&a);
    args_free(&a);
    if (rc) return rc;

    char model[512], samples[512], traj[512], store[512], scores[512];
    snprintf(model, sizeof model, "%s/model", out);
    snprintf(samples, sizeof samples, "%s/samples", out);
    snprintf(traj, sizeof traj, "%s/samples/trajectory.safetensors", out);
    snprintf(store, sizeof store, "%s/features", out);
    snprintf(scores, sizeof scores, "%s/scores", out);
    const char *limit = quick ? "64" : "5000", *steps = quick ? "4" : "1500";
    const char *k = quick ? "64" : "2048", *S = quick ? "2" : "5";
    const char *sample_steps = quick ? "20" : "1000", *R = quick ? "2" : "20";
    const char *score_steps = quick ? "all" : "900,700,500,300,100,0";

    const char *train_args[] = {"--config", "fm-xs", "--limit", limit, "--steps", steps,
                                "--lr", "2e-3", "--warmup", quick ? "1" : "100", "--out", model, NULL};
    const char *sample_args[] = {"--model", model, "--out", samples, "--n", "8", "--steps",
                                 sample_steps, NULL};
    const char *feat_args[] = {"--models", model, "--limit", limit, "--k", k, "--S", S,
                               "--batch", "32", "--out", store, NULL};
    const char *score_args[] = {"--store", store, "--trajectory", traj, "--out", scores,
                                "--steps", score_steps, "--R", R, "--topk", "6", NULL};
    const char *report_args[] = {"--scores", scores, "--out", NULL, "--png", NULL, NULL};
    char html[512], png[512];
    snprintf(html, sizeof html, "%s/report.html", out);
    snprintf(png, sizeof png, "%s/figure.png", out);
    report_args[3] = html;
    report_args[5] = png;

    if ((rc = cli_run_subcommand(cmd_train, "train", train_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_sample, "sample", sample_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_featurize, "featurize", feat_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_score, "score", score_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_report, "report", report_args))) return rc;

    /* The class-conditional part: the same recipe, labels from the data with condition dropout,
     * one guided sample per class, each attributed with its own class (as Journey-TRAK scores its
     * COCO samples with their prompt). */
    char cmodel[512], csamples[512], ctraj[512], cstore[512], cscores[512], chtml[512], cpng[512];
    snprintf(cmodel, sizeof cmodel, "%s/cond/model", out);
    snprintf(csamples, sizeof csamples, "%s/cond/samples", out);
    snprintf(ctraj, sizeof ctraj, "%s/cond/samples/trajectory.safetensors", out);
    snprintf(cstore, sizeof cstore, "%s/cond/features", out);
    snprintf(cscores, sizeof cscores, "%s/cond/scores", out);
    snprintf(chtml, sizeof chtml, "%s/cond/report.html", out);
    snprintf(cpng, sizeof cpng, "%s/cond/figure.png", out);
    const char *ctrain_args[] = {"--config", "fm-xs", "--limit", limit, "--steps", steps, "--lr",
                                 "2e-3", "--warmup", quick ? "1" : "100", "--cond", "class",
                                 "--uncond-prob", "0.1", "--out", cmodel, NULL};
    const char *csample_args[] = {"--model", cmodel, "--out", csamples, "--n", "10", "--class",
                                  "all", "--guidance", "3", "--steps", sample_steps, NULL};
    const char *cfeat_args[] = {"--models", cmodel, "--limit", limit, "--k", k, "--S", S,
                                "--batch", "32", "--out", cstore, NULL};
    const char *cscore_args[] = {"--store", cstore, "--trajectory", ctraj, "--out", cscores,
                                 "--steps", score_steps, "--R", R, "--topk", "6", NULL};
    const char *creport_args[] = {"--scores", cscores, "--out", chtml, "--png", cpng, NULL};
    if ((rc = cli_run_subcommand(cmd_train, "train", ctrain_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_sample, "sample", csample_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_featurize, "featurize", cfeat_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_score, "score", cscore_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_report, "report", creport_args))) return rc;
    printf("demo: done. Open %s (figure: %s); samples in %s, scores in %s\n", html, png, samples,
           scores);
    printf("demo: class-conditional part: %s (figure: %s), one guided sample per class in %s\n",
           chtml, cpng, csamples);
    return 0;
}
