/* test_unet_flops.c: the FLOP counter behind make bench's GFLOP/s figures (unet/unet_flops.h)
 * against a count written out by hand, layer by layer, for configs/t8.json (2 levels, 32/64
 * channels, attention at 4x4) at 8x8, and at a second size to check how each term scales. A wrong
 * counter would report a false GFLOP/s, so the hand count is independent of the graph code. */
#include "unet/unet.h"
#include "unet/unet_flops.h"

#include <criterion/criterion.h>

static UNet *load_t8(void) {
    UNetConfig cfg;
    JtError err;
    UNet *net;
    cr_assert(unet_config_load(&cfg, JTRAK_SOURCE_DIR "/configs/t8.json", &err) == JT_OK, "%s",
              err.msg);
    cr_assert(unet_create(&net, &cfg, &err) == JT_OK, "%s", err.msg);
    return net;
}

/* Multiply-adds of a k x k convolution and of a linear layer. */
static double conv(double cout, double cin, double k, double hw) {
    return cout * cin * k * k * hw;
}
static double lin(double cin, double cout) {
    return cin * cout;
}

/* t8 at s x s (s divisible by 2): level 0 at s x s with 32 channels, level 1 at s/2 x s/2 with 64
 * channels and attention; time embedding 4 * 32 = 128; layers_per_block 1. */
static void hand_count(int s, UNetFlops *f) {
    double A = (double)s * s, B = A / 4; /* positions at level 0 and level 1 */
    double temb = 128;
    double c = 0, l = 0;
    l += lin(32, temb) + lin(temb, temb); /* time_embedding.linear_1, linear_2 */
    c += conv(32, 1, 3, A);               /* conv_in */
    /* down_blocks.0.resnets.0: 32 -> 32 */
    c += conv(32, 32, 3, A) + conv(32, 32, 3, A), l += lin(temb, 32);
    c += conv(32, 32, 3, B); /* down_blocks.0.downsamplers.0: stride 2 */
    /* down_blocks.1.resnets.0: 32 -> 64 with a 1x1 shortcut */
    c += conv(64, 32, 3, B) + conv(64, 64, 3, B) + conv(64, 32, 1, B), l += lin(temb, 64);
    /* mid_block.resnets.0 and .1: 64 -> 64 */
    c += 2 * (conv(64, 64, 3, B) + conv(64, 64, 3, B)), l += 2 * lin(temb, 64);
    /* up_blocks.0 (64 out, at s/2); skips popped: down_blocks.1 output (64), downsampler (32) */
    c += conv(64, 128, 3, B) + conv(64, 64, 3, B) + conv(64, 128, 1, B), l += lin(temb, 64);
    c += conv(64, 96, 3, B) + conv(64, 64, 3, B) + conv(64, 96, 1, B), l += lin(temb, 64);
    c += conv(64, 64, 3, A); /* up_blocks.0.upsamplers.0: conv after the 2x upsample */
    /* up_blocks.1 (32 out, at s); skips: down_blocks.0 resnet (32), conv_in (32) */
    c += conv(32, 96, 3, A) + conv(32, 32, 3, A) + conv(32, 96, 1, A), l += lin(temb, 32);
    c += conv(32, 64, 3, A) + conv(32, 32, 3, A) + conv(32, 64, 1, A), l += lin(temb, 32);
    c += conv(1, 32, 3, A); /* conv_out */
    /* attentions at level 1 (C = 64, N = B): down_blocks.1, mid_block, up_blocks.0 (x2) */
    double n_attn = 4;
    f->conv = 2 * c;
    f->linear = 2 * l;
    f->attn_proj = 2 * n_attn * 4 * B * 64 * 64;
    f->attn_matmul = 2 * n_attn * 2 * B * B * 64;
}

Test(unet_flops, t8_matches_the_hand_count) {
    UNet *net = load_t8();
    for (int s = 8; s <= 16; s += 8) {
        UNetFlops got, want;
        double total = unet_forward_flops_detail(net, s, s, &got);
        hand_count(s, &want);
        /* Exact: every term is an integer far below 2^53, summed in the same double arithmetic. */
        cr_expect_eq(got.conv, want.conv, "%dx%d conv: %.0f, hand count %.0f", s, s, got.conv,
                     want.conv);
        cr_expect_eq(got.linear, want.linear, "%dx%d linear: %.0f, hand count %.0f", s, s,
                     got.linear, want.linear);
        cr_expect_eq(got.attn_proj, want.attn_proj, "%dx%d attention projections: %.0f vs %.0f", s,
                     s, got.attn_proj, want.attn_proj);
        cr_expect_eq(got.attn_matmul, want.attn_matmul, "%dx%d attention products: %.0f vs %.0f", s,
                     s, got.attn_matmul, want.attn_matmul);
        cr_expect_eq(total, got.conv + got.linear + got.attn_proj + got.attn_matmul);
        cr_expect_eq(unet_train_flops(net, s, s), 3 * total, "backward is 2x forward");
    }
    unet_free(net);
}

Test(unet_flops, refuses_sizes_the_unet_refuses) {
    UNet *net = load_t8();
    cr_expect_eq(unet_forward_flops(net, 7, 8), -1.0, "7 is not divisible by 2");
    cr_expect_eq(unet_forward_flops(net, 0, 0), -1.0);
    unet_free(net);
}
