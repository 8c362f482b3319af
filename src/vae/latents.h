/* latents.h: a latent store, the posterior moments of a dataset under an AutoencoderKL, as a
 * latent diffusion model trains on them (issue 13 item 4, the writing half):
 *   FILE.npy       float32 (N, 2 * latent_channels, h, w): channels [0, z) the posterior mean,
 *                  [z, 2z) the clamped log-variance (unscaled: a diffusion latent is
 *                  sample * scaling_factor), rows in the dataset's selection order;
 *   FILE.npy.json  the manifest: {"kind": "jtrak-latents", "vae_fingerprint", "scaling_factor",
 *                  "latent_channels", "latent_height", "latent_width", "rows", "dataset": {"spec",
 *                  "fingerprint", "n"} (as feature stores record their data), "layout":
 *                  "mean|logvar", ...}.
 * Both are written to temporary names and renamed; a failure leaves neither. */
#ifndef JTRAK_VAE_LATENTS_H
#define JTRAK_VAE_LATENTS_H

#include "core/common.h"
#include "data/dataset.h"
#include "vae/vae.h"

#include <stdint.h>

#define LATENTS_KIND "jtrak-latents"
#define LATENTS_MANIFEST_SUFFIX ".json"

/* Encodes every row of data (its size must be divisible by the VAE's factor, its channels the
 * VAE's in_channels) in batches of `batch` and writes path and path + ".json". vae_fp is the
 * VAE's model fingerprint (model/model.h), vae_dir where it was read from (recorded). Progress on
 * stderr unless quiet. */
int vae_write_latents(const Vae *vae, uint64_t vae_fp, const char *vae_dir, const Dataset *data,
                      int batch, const char *path, int quiet, JtError *err);

#endif
