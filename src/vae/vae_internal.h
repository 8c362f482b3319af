/* vae_internal.h: what the AutoencoderKL files share: the model struct, its run (the encoder and
 * decoder graphs for one image size, their GraphRuns, and the loss's saved tensors), the
 * parameter registration and the graph builders. */
#ifndef JTRAK_VAE_INTERNAL_H
#define JTRAK_VAE_INTERNAL_H

#include "nn/graph.h"
#include "vae/vae.h"

struct Vae {
    VaeConfig cfg;
    ParamLayout layout;
    float *params; /* (layout.total) */
};

struct VaeRun {
    int B, H, W;    /* capacity, image size */
    int zc, zh, zw; /* latent (channels, height, width) */
    VaeRunMode mode;
    Graph enc, dec; /* image (in_channels,H,W) -> moments (2z,h,w); latent (z,h,w) -> image */
    GraphRun *enc_run, *dec_run;
    /* the last vae_loss (training runs): (B, z, h, w) each, moments (B, 2z, h, w), image-sized
     * x and dec (B, C, H, W), and the batch and beta it used */
    float *moments, *mean, *logvar, *noise, *z, *x, *decoded;
    int loss_B;
    float beta;
};

/* Registers every AutoencoderKL parameter in PyTorch's named_parameters() order (vae_params.c). */
void vae_register_params(const VaeConfig *cfg, ParamLayout *l);
/* Encoder(x) [+ quant_conv] for H x W images: one output, the moments (vae_graph.c). */
void vae_build_encoder(const Vae *vae, Graph *g, int H, int W);
/* [post_quant_conv +] Decoder(z) for h x w latents: one output, the image. */
void vae_build_decoder(const Vae *vae, Graph *g, int h, int w);

#endif
