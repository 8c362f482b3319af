/* main.c: the jtrak command table. `jtrak CMD [options]` runs one subcommand; `jtrak help` lists
 * them. Results go to stdout, logs and progress to stderr (house-style convention 9). */
#include "cli/commands.h"
#include "core/fpenv.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"counterfactual", cmd_counterfactual, "retrain without the top-k attributed images and regenerate"},
    {"demo", cmd_demo, "the main job on the embedded Fashion-MNIST default"},
    {"demo-ldm", cmd_demo_ldm, "the latent, text-conditional system on Fashion-MNIST (offline)"},
    {"encode", cmd_encode, "posterior moments of a dataset under an AutoencoderKL (latents .npy)"},
    {"encode-text", cmd_encode_text, "CLIP text-encoder contexts (N, L, D) of token ids"},
    {"export", cmd_export, "write a dataset's rows as PNGs + captions.csv (a captions: source)"},
    {"featurize", cmd_featurize, "TRAK features and kernels of the training set for an ensemble"},
    {"info", cmd_info, "describe a model folder (config, parameters, memory per batch)"},
    {"init", cmd_init, "create a model folder with freshly initialised weights from a config.json"},
    {"lds", cmd_lds, "linear datamodeling score: retrain on subsets, measure, correlate"},
    {"pipeline", cmd_pipeline, "assemble a diffusers pipeline folder (model_index.json) from model folders"},
    {"report", cmd_report, "an HTML page and a PNG figure of the top proponents and opponents"},
    {"sample", cmd_sample, "draw samples (DDPM or DDIM) and save their full trajectories"},
    {"score", cmd_score, "attribution scores of generated samples, per sampling step"},
    {"tokenize", cmd_tokenize, "the CLIP token ids of a prompt (a tokenizer folder's vocabulary)"},
    {"tokenizer", cmd_tokenizer, "a CLIP tokenizer folder from OpenCLIP's BPE merges file (offline)"},
    {"train", cmd_train, "train a DDPM U-Net on a dataset (resumable)"},
    {"train-vae", cmd_train_vae, "train an AutoencoderKL (MSE + beta KL) on a dataset (resumable)"},
};

static void print_help(FILE *f) {
    fprintf(f, "jtrak: which training images made a diffusion model generate this image?\n\n"
               "usage: jtrak COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-15s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n'jtrak COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    fpenv_flush_denormals();
    /* A file size limit (ulimit -f) would kill us with SIGXFSZ and no message; ignored, the write
     * fails with EFBIG and the writer reports it naming the file ("File too large"). */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "jtrak: unknown command '%s' (see 'jtrak help')\n", argv[1]);
    return 2;
}
