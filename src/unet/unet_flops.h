/* unet_flops.h: the arithmetic of one U-Net pass, for achieved-GFLOP/s figures (make bench).
 *
 * Convention (the one fvcore, torch.utils.flop_counter and most papers use, with FLOPs = 2 x
 * multiply-adds):
 *   counted      the multiply-adds of the matrix products: every convolution
 *                (Cout * Cin * k * k * Ho * Wo), every linear layer (Cin * Cout: the time-embedding
 *                MLP and each resnet's time_emb_proj), and attention: the q, k, v and output
 *                projections (4 N C^2) and the two N x N products Q K^T and softmax(.) V
 *                (2 N^2 C, whatever the number of heads), with N = H * W of the block;
 *   not counted  elementwise work (group norm, SiLU, bias additions, residual adds, softmax,
 *                upsampling, concatenation, the sinusoidal embedding): O(activations), well under
 *                1% of the total for the shipped configs, and not what a GEMM peak measures;
 *   backward     2 x forward (one product for the input gradient and one for the weight gradient
 *                per forward product; exact for every counted op except conv_in, whose input
 *                gradient jtrak does not compute: under 0.1% for the shipped configs).
 * The counts are per image and exact integers (held in double: they stay far below 2^53). */
#ifndef JTRAK_UNET_FLOPS_H
#define JTRAK_UNET_FLOPS_H

#include "unet/unet.h"

/* Forward FLOPs of one image split by kind of op. */
typedef struct {
    double conv;        /* convolutions */
    double linear;      /* time-embedding MLP and time_emb_proj layers */
    double attn_proj;   /* attention q, k, v and output projections */
    double attn_matmul; /* attention Q K^T and softmax(.) V */
} UNetFlops;

#define UNET_BACKWARD_FLOPS_FACTOR 2.0

/* Walks the static graph that unet_forward runs for an H x W image (unet_graph.c) and counts its
 * forward FLOPs into *out. Returns the total, or -1 when H or W is not divisible by
 * 2^(n_levels-1) (the sizes unet_run_create refuses); out may be NULL. */
double unet_forward_flops_detail(const UNet *net, int H, int W, UNetFlops *out);
/* The same for a network with cross-attention (UNet2DConditionModel) and contexts of ctx_len
 * tokens: multi-head attention counts its q and output projections (2 N C^2), its k and v
 * projections of the Lk key tokens (2 Lk C_kv C) and Q K^T, softmax(.) V (2 N Lk C); token-wise
 * linears (proj_in/out, the feed-forward) count as the 1x1 convolutions they are. -1 also when
 * ctx_len is 0 for a network with cross-attention or nonzero for one without (as
 * unet_run_create_ctx refuses); unet_forward_flops_detail is this with ctx_len 0. */
double unet_forward_flops_ctx(const UNet *net, int H, int W, int ctx_len, UNetFlops *out);
/* Forward FLOPs of one H x W image (the total above). */
double unet_forward_flops(const UNet *net, int H, int W);
/* One training step per image: forward + backward = (1 + UNET_BACKWARD_FLOPS_FACTOR) x forward. */
double unet_train_flops(const UNet *net, int H, int W);

#endif
