/* cmd_pipeline.c: `jtrak pipeline --unet DIR [--vae DIR] [--text-encoder DIR] [--tokenizer DIR]
 * [--scheduler FILE] --out PIPE` assembles a diffusers pipeline folder from model folders (a
 * U-Net trained here or elsewhere, the frozen VAE, text encoder and tokenizer it goes with), so
 * that StableDiffusionPipeline.from_pretrained(PIPE) (DDPMPipeline for a UNet2DModel) and every
 * jtrak command that takes --model load it. The writer is model/pipeline.h's, shared with
 * `jtrak train --pipeline`. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/artifact.h"
#include "io/lock.h"
#include "model/pipeline.h"

#include <stdio.h>

static void help(void) {
    printf(
        "usage: jtrak pipeline --unet DIR --out PIPE [options]\n"
        "Writes PIPE as a diffusers pipeline folder: model_index.json, unet/, scheduler/ and\n"
        "the components given (each copied byte for byte). A UNet2DConditionModel makes a\n"
        "StableDiffusionPipeline, a UNet2DModel a DDPMPipeline.\n"
        "  --unet DIR          the U-Net model folder (required)\n"
        "  --from PIPE         take the VAE, text encoder and tokenizer of this pipeline folder\n"
        "                      (each replaced by the option below when given)\n"
        "  --vae DIR           the AutoencoderKL of a latent U-Net\n"
        "  --text-encoder DIR  the CLIPTextModel of a text-conditional U-Net\n"
        "  --tokenizer DIR     its CLIP tokenizer (vocab.json + merges.txt or tokenizer.json)\n"
        "  --scheduler FILE    a scheduler_config.json (default: the U-Net folder's own, else\n"
        "                      diffusers' DDPMScheduler defaults)\n");
}

int cmd_pipeline(int argc, char **argv) {
    Args a;
    args_init(&a, "pipeline", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    const char *out = args_str(&a, "out", NULL), *from = args_str(&a, "from", NULL);
    const char *sched_file = args_str(&a, "scheduler", NULL);
    PipelineSources src = {args_str(&a, "unet", NULL), args_str(&a, "vae", NULL),
                           args_str(&a, "text-encoder", NULL), args_str(&a, "tokenizer", NULL),
                           NULL};
    int rc = args_finish(&a);
    if (rc == 0 && (!src.unet_dir || !out)) {
        fprintf(stderr, "jtrak pipeline: --unet and --out are required (see 'jtrak pipeline "
                        "--help')\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;
    JtError err;
    PipelineFolder base = {0};
    if (from && pipeline_open(from, &base, &err) != JT_OK) return cli_error("pipeline", &err);
    if (!src.vae_dir) src.vae_dir = base.vae_dir;
    if (!src.text_encoder_dir) src.text_encoder_dir = base.text_encoder_dir;
    if (!src.tokenizer_dir) src.tokenizer_dir = base.tokenizer_dir;
    SchedConfig sc;
    rc =
        sched_file ? sched_config_load(&sc, sched_file, &err)
        : pipeline_is_folder(src.unet_dir)
            ? jt_fail(&err, "--unet %s: a pipeline folder, not a U-Net model folder (give %s/unet)",
                      src.unet_dir, src.unet_dir)
            : sched_config_load_model(&sc, src.unet_dir, &err);
    src.scheduler = &sc;
    /* an existing pipeline folder is rewritten; any other non-empty folder is refused (it may
     * be a model folder of another library, e.g. a text encoder's) */
    const ArtifactKind ok[] = {ARTIFACT_PIPELINE};
    char marker[200];
    if (rc == JT_OK) rc = artifact_check_out(out, "--out", "a pipeline folder", ok, 1, &err);
    if (rc == JT_OK && artifact_kind(out, marker, sizeof marker) == ARTIFACT_UNKNOWN)
        rc = jt_fail(&err,
                     "%s: --out holds other files (%s), not a pipeline folder: writing here "
                     "would mix them; give a new or empty --out",
                     out, marker);
    DirLock lock = {-1, NULL, 0};
    if (rc == JT_OK) rc = pipeline_check_sources(&src, NULL, &err);
    if (rc == JT_OK) rc = dir_lock(&lock, out, "pipeline", &err);
    if (rc == JT_OK) rc = pipeline_write(&src, out, &err);
    dir_unlock(&lock);
    pipeline_close(&base);
    if (rc != JT_OK) return cli_error("pipeline", &err);
    printf("%s\n", out);
    return 0;
}
