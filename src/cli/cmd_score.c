/* cmd_score.c: `jtrak score` scores generated samples (a trajectory file), or real images (the
 * --targets-* data options), against the training set of a feature store, per sampling step; see
 * attrib/score.h. The top-k table goes to stdout. */
#include "attrib/score.h"
#include "cli/cli_common.h"
#include "cli/cli_targets.h"
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

static void help(void) {
    printf("usage: jtrak score --store STORE --trajectory FILE --out DIR [options]\n"
           "       jtrak score --store STORE --targets-data SRC [--targets-limit N ...] --out DIR\n"
           "                   --method trak|dtrak|pixel [options]\n"
           "  --trajectory F   generated targets: the samples of a trajectory (jtrak sample)\n"
           "  --targets-data S real targets: images read like the training data (e.g. held-out\n"
           "                   test images, for the D-TRAK protocol's \"val\" LDS); final-image\n"
           "                   methods only (trak, dtrak, pixel on the image itself)\n"
           "  --method M       journey (default: x̂_0 of step t re-noised at t), trak (final image,\n"
           "                   loss at random t), dtrak (final image, squared-norm output; needs a\n"
           "                   store featurized with --output sqnorm), pixel (cosine similarity)\n"
           "  --steps S        all (default), a list 900,500,100, or START:STOP:STRIDE\n"
           "  --targets L      all (default) or a list of sample indices (image rows with\n"
           "                   --targets-data)\n"
           "  --R N            noise draws per target gradient (default 20)\n"
           "  --topk K         proponents and opponents kept per target and step (default 10)\n"
           "  --topk-only      do not write the dense score matrices\n"
           "  --tile N         training rows per tile (memory bound; default 4096)\n"
           "  --batch B        targets per gradient batch (default 16)\n"
           "  --ensemble M     use only the store's first M models (default: all)\n"
           "  --seed N         seed of the target draws (default 0)\n"
           "  --quiet          no progress line\n"
           "pixel works without --store when given the training data (--size N or HxW: the\n"
           "samples' size, to fit the images with --fit):\n");
    cli_data_help(stdout);
    cli_prefixed_data_help(stdout, "targets", "real target images");
}

int cmd_score(int argc, char **argv) {
    Args a;
    args_init(&a, "score", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    ScoreOptions o;
    score_options_default(&o);
    o.store_dir = args_str(&a, "store", NULL);
    o.traj_path = args_str(&a, "trajectory", NULL);
    o.out_dir = args_str(&a, "out", NULL);
    const char *method = args_str(&a, "method", "journey");
    o.steps = args_str(&a, "steps", o.steps);
    o.targets = args_str(&a, "targets", o.targets);
    o.R = (int)args_long(&a, "R", o.R, 1, 100000);
    o.topk = (int)args_long(&a, "topk", o.topk, 1, SCORE_MAX_TOPK);
    o.topk_only = args_flag(&a, "topk-only");
    o.tile_rows = (size_t)args_long(&a, "tile", (long)o.tile_rows, 1, 1L << 30);
    o.batch = (int)args_long(&a, "batch", o.batch, 1, 4096);
    o.ensemble = (int)args_long(&a, "ensemble", 0, 0, 1 << 20);
    o.seed = args_u64(&a, "seed", 0);
    o.quiet = args_flag(&a, "quiet");
    int want_data = args_str(&a, "data", NULL) != NULL; /* pixel without a store */
    JtError err, terr;
    DatasetSpec tspec;
    int real = 0, trc = cli_prefixed_data_spec(&a, "targets", &tspec, &real, &terr);
    Dataset data = {0};
    int data_rc = JT_OK;
    if (want_data) {
        /* The data options describe the training images; --size fits them to the samples. */
        UNetConfig cfg;
        unet_config_default(&cfg);
        const char *size = args_str(&a, "size", NULL);
        DatasetSpec sz;
        data_spec_init(&sz);
        data_rc = size ? data_spec_set(&sz, "size", size, &err) : JT_OK;
        unet_config_set_size(&cfg, sz.height, sz.width);
        data_spec_free(&sz);
        cfg.in_channels = 0;
        if (data_rc == JT_OK) data_rc = cli_load_dataset(&a, &cfg, &data, &err);
    }
    int rc = args_finish(&a);
    if (rc == 0 && trc == 2) {
        fprintf(stderr, "jtrak score: %s\n", terr.msg);
        rc = 2;
    }
    if (rc == 0 && (!o.traj_path == !real || !o.out_dir)) {
        fprintf(stderr, "jtrak score: --out and the targets, either --trajectory or "
                        "--targets-data, are required (see 'jtrak score --help')\n");
        rc = 2;
    }
    if (rc == 0 && score_method_parse(method, &o.method) != JT_OK) {
        fprintf(stderr, "jtrak score: --method must be journey, trak, dtrak or pixel, not '%s'\n", method);
        rc = 2;
    }
    args_free(&a);
    if (rc == 0 && trc == 1) rc = cli_error("score", &terr);
    if (rc == 0 && data_rc == 2) {
        fprintf(stderr, "jtrak score: %s\n", err.msg);
        rc = 2;
    }
    if (rc == 0 && data_rc != JT_OK) rc = cli_error("score", &err);
    if (rc) {
        data_free(&data);
        data_spec_free(&tspec);
        return rc;
    }
    o.target_data = real ? &tspec : NULL;
    rc = score_run(&o, want_data ? &data : NULL, &err);
    data_free(&data);
    data_spec_free(&tspec);
    if (rc != JT_OK) return cli_error("score", &err);
    fprintf(stderr, "score: wrote %s\n", o.out_dir);
    return 0;
}
