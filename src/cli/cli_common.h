/* cli_common.h: what several subcommands share: printing a JtError as the command's one error
 * line, resolving a model config (shipped name, config.json or model folder), and turning the
 * data options into a loaded Dataset. */
#ifndef JTRAK_CLI_COMMON_H
#define JTRAK_CLI_COMMON_H

#include "cli/args.h"
#include "core/common.h"
#include "data/dataset.h"
#include "diffusion/trajectory.h"
#include "unet/config.h"

#include <stdio.h>

/* Prints "jtrak CMD: <message>" on stderr and returns 1 (the exit status of bad input). */
int cli_error(const char *cmd, const JtError *err);
/* spec: a shipped config name (fm-s, fm-xs, t8, ldm-xs, jt-coco), a config.json path, or a model
 * folder (UNet2DModel or UNet2DConditionModel). */
int cli_model_config(const char *spec, UNetConfig *cfg, JtError *err);
/* Reads --data --classes --limit --indices --fit --color into a spec sized for cfg and loads it.
 * Returns JT_OK, 2 for a bad option value (a usage error: err holds it) or JT_ERR when the data
 * cannot be loaded. */
int cli_load_dataset(Args *a, const UNetConfig *cfg, Dataset *ds, JtError *err);
/* Marks the data options as read without loading anything (a command that fails before it). */
void cli_skip_dataset(Args *a);
/* The data options' help text. */
void cli_data_help(FILE *f);
/* x̂_0 of the first (up to) 8 samples at (up to) 10 evenly spaced sampler steps, each row ending
 * with the final sample: how the image emerges along the trajectory. */
int cli_write_trajectory_strip(const char *path, const Trajectory *tr, JtError *err);
/* The same with the tiles decoded through the AutoencoderKL in vae_dir (a latent model's
 * trajectory; vae_dir NULL: as cli_write_trajectory_strip). */
int cli_write_trajectory_strip_vae(const char *path, const Trajectory *tr, const char *vae_dir,
                                   JtError *err);
/* out (n, oc, oh, ow), malloc'd = decode(lat / scaling_factor) for latents lat (n, c, h, w),
 * through the AutoencoderKL folder vae_dir (cli_decode.c); refused when it is not one or its
 * latent_channels is not c. */
int cli_decode_latents(const char *vae_dir, const float *lat, int n, int c, int h, int w,
                       float **out, int *oc, int *oh, int *ow, JtError *err);
/* JT_OK when vae_dir is an AutoencoderKL with c latent channels (checked before sampling). */
int cli_check_vae(const char *vae_dir, int c, JtError *err);
/* The vae/ folder of the pipeline folder `model` (model/pipeline.h), or NULL when model is not a
 * pipeline folder, has no VAE or does not open (the command's model_load then says why). The
 * string stays valid until the program exits. */
const char *cli_pipeline_vae(const char *model);
/* Runs `jtrak <cmd> <args...>` in-process (args NULL-terminated), printing the command line on
 * stderr first, as the demos do. */
int cli_run_subcommand(int (*fn)(int, char **), const char *cmd, const char *const *args);

#endif
