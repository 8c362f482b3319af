/* decode.h: the images of a report on a latent model (ldm.md 1.3: x̂_0 and the samples of a latent
 * trajectory are latents; "the VAE is not needed for scoring, only to show images"). A VAE folder
 * (AutoencoderKL) is opened and checked against the latent training data (its fingerprint is the
 * store's vae_fingerprint, its latent_channels the U-Net's in_channels, the latent size a decoder
 * input), then diffusion latents are decoded as diffusers' pipelines do: decode(x /
 * scaling_factor). The training rows are shown as the original images when the store's dataset
 * still loads (what a user recognises), else as their decoded posterior means. Unlike the rest of
 * src/report this file reads a model folder. */
#ifndef JTRAK_REPORT_DECODE_H
#define JTRAK_REPORT_DECODE_H

#include "core/common.h"
#include "data/dataset.h"

#include <stddef.h>

typedef struct ReportVae ReportVae;

/* Opens the AutoencoderKL in dir for the latent dataset `data` (data->latent non-NULL) and latents
 * of (z, h, w) = (latent_c, data->h, data->w) (latent_c: the trajectory's channels, the U-Net's
 * in_channels). Refusals, one line each naming dir: not an AutoencoderKL, latent_channels differs
 * from latent_c, out_channels not 1 or 3, a fingerprint other than the store's vae_fingerprint. */
int report_vae_open(ReportVae **out, const char *dir, const Dataset *data, int latent_c,
                    JtError *err);
void report_vae_close(ReportVae *rv);
/* The decoded image shape (out_channels, h * factor, w * factor). */
void report_vae_image_shape(const ReportVae *rv, int *C, int *H, int *W);
/* The VAE's fingerprint as 16 hex digits. */
const char *report_vae_fingerprint(const ReportVae *rv, char buf[17]);
/* out (n, C, H, W) = decode(lat / scaling_factor), lat (n, z, h, w) diffusion latents. */
void report_vae_decode(ReportVae *rv, const float *lat, size_t n, float *out);
/* The training images of the rows in rows[0..k) (others untouched) into train (n, C, H, W): the
 * original images when the store's dataset reloaded with the decoded shape, else the decoded
 * scaling_factor * mean. Returns 1 for original images, 0 for decoded means. */
int report_vae_train_images(ReportVae *rv, const Dataset *data, const size_t *rows, size_t k,
                            float *train);

#endif
