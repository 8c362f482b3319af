/* conv2d.c: 2-D cross-correlation as torch.nn.Conv2d (weights (cout, cin, k, k), optional bias),
 * k = 1 or 3, stride 1 or 2, with diffusers' two paddings: symmetric (k-1)/2 (Conv2d(padding=1))
 * and "right/bottom" (Downsample2D with downsample_padding=0: F.pad(x, (0, 1, 0, 1)) then padding
 * 0), unet2d.md sections 2 and 4.3.
 *
 * Per sample: cols (cin*k*k, Ho*Wo) = im2col(in_b); out_b (cout, Ho*Wo) = W (cout, cin*k*k) * cols
 * + bias. A 1x1 stride-1 unpadded conv uses in_b itself as cols. Backward per sample:
 * dW_b += dout_b * cols^T (through GradSlots), dcols = W^T * dout_b, din_b += col2im(dcols).
 * OpenMP over the batch, BLAS single-threaded, one cols buffer of per-thread scratch.
 * With jtrak's AVX-512 SGEMM, a stride-1 'same' convolution never builds cols: la_sgemm_im2col
 * packs them from the image, and din_b += conv2d(dout_b, W flipped) replaces dcols and col2im. */
#include "core/linalg.h"
#include "nn/nn_internal.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    int pt, pl;    /* zero rows above / columns left of the input */
    int pb, pr;    /* zero rows below / columns right */
    int Ho, Wo, K; /* output size, K = cin*k*k */
    int direct;    /* 1x1, stride 1, no padding: cols are the input itself */
} ConvGeom;

static void conv_check(const Conv2dDims *d) {
    CHECK(d->B >= 1 && d->cin >= 1 && d->cout >= 1 && d->H >= 1 && d->W >= 1,
          "conv2d dims B=%d cin=%d cout=%d H=%d W=%d", d->B, d->cin, d->cout, d->H, d->W);
    CHECK(d->k == 1 || d->k == 3, "conv2d kernel %d (1 or 3)", d->k);
    CHECK(d->stride == 1 || d->stride == 2, "conv2d stride %d (1 or 2)", d->stride);
    CHECK(d->pad == CONV_PAD_SAME || d->pad == CONV_PAD_RB, "conv2d pad mode %d", d->pad);
}

static ConvGeom conv_geom(const Conv2dDims *d) {
    conv_check(d);
    ConvGeom g;
    if (d->pad == CONV_PAD_SAME) {
        g.pt = g.pl = g.pb = g.pr = (d->k - 1) / 2;
    } else {
        g.pt = g.pl = 0;
        g.pb = g.pr = 1;
    }
    int hp = d->H + g.pt + g.pb, wp = d->W + g.pl + g.pr;
    CHECK(hp >= d->k && wp >= d->k, "conv2d input %dx%d too small for kernel %d", d->H, d->W, d->k);
    g.Ho = (hp - d->k) / d->stride + 1;
    g.Wo = (wp - d->k) / d->stride + 1;
    g.K = d->cin * d->k * d->k;
    g.direct = d->k == 1 && d->stride == 1 && d->pad == CONV_PAD_SAME;
    return g;
}

int conv2d_out_h(const Conv2dDims *d) {
    return conv_geom(d).Ho;
}

int conv2d_out_w(const Conv2dDims *d) {
    return conv_geom(d).Wo;
}

size_t conv2d_scratch_floats(const Conv2dDims *d) {
    ConvGeom g = conv_geom(d);
    if (g.direct) return 0;
    size_t cols = (size_t)g.K * g.Ho * g.Wo, flipped = (size_t)d->cout * g.K; /* conv2d_backward */
    return cols > flipped ? cols : flipped;
}

/* Stride 1, padding (k-1)/2, output as large as the input: la_sgemm_im2col can multiply by the
 * columns without building them, and din is the convolution of dout with the flipped weights. */
static int same_size(const Conv2dDims *d, const ConvGeom *g) {
    return d->k > 1 && d->stride == 1 && d->pad == CONV_PAD_SAME && g->Ho == d->H && g->Wo == d->W;
}

/* wf (cin, cout, k, k) = w (cout, cin, k, k) with cin and cout swapped and the kernel rotated by 180
 * degrees: din = conv2d(dout, wf) for a same_size convolution. */
static void flip_weights(float *wf, const float *w, const Conv2dDims *d) {
    const int k = d->k, kk = k * k;
    for (int c = 0; c < d->cin; c++)
        for (int o = 0; o < d->cout; o++)
            for (int t = 0; t < kk; t++)
                wf[((size_t)c * d->cout + o) * kk + t] = w[((size_t)o * d->cin + c) * kk + (kk - 1 - t)];
}

/* First output index o in [0, n) whose input index o*s + off is >= 0, and the first whose input
 * index is >= len: the valid outputs are [lo, hi). */
static void valid_range(int off, int s, int len, int n, int *lo, int *hi) {
    int a = off >= 0 ? 0 : (-off + s - 1) / s;
    int b = len - off <= 0 ? 0 : (len - off + s - 1) / s;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
    if (*hi < *lo) *hi = *lo;
}

/* Stride 1 with the output as wide as the input (3x3, padding 1): the valid part of every cols
 * row is the input channel shifted by one offset, so it is copied (or, in col2im, added) as one
 * contiguous run of rows instead of row by row; the entries that run picks up from the wrong side
 * of a row edge are exactly those outside [xlo, xhi), which are zeroed (im2col) or zeroed before
 * the add (col2im, whose cols are scratch). Returns the run: cols row offset dst, input offset
 * src (clipped to the channel), length n. */
static void shifted_run(int ylo, int yhi, int Wo, ptrdiff_t base0, int HW, ptrdiff_t *dst,
                        ptrdiff_t *src, ptrdiff_t *n) {
    ptrdiff_t d = (ptrdiff_t)ylo * Wo, s = base0, len = (ptrdiff_t)(yhi - ylo) * Wo;
    if (s < 0) { /* the first entry reads left of the channel: it is an ox < xlo entry */
        d -= s;
        len += s;
        s = 0;
    }
    if (s + len > HW) len = HW - s; /* the last entry reads right of it: an ox >= xhi entry */
    *dst = d;
    *src = s;
    *n = len > 0 ? len : 0;
}

/* Zero the entries outside columns [xlo, xhi) of rows [ylo, yhi) of a (Ho, Wo) cols row. */
static void zero_edges(float *row, int ylo, int yhi, int Wo, int xlo, int xhi) {
    for (int oy = ylo; oy < yhi; oy++) {
        float *r = row + (size_t)oy * Wo;
        for (int ox = 0; ox < xlo; ox++)
            r[ox] = 0.0f;
        for (int ox = xhi; ox < Wo; ox++)
            r[ox] = 0.0f;
    }
}

/* cols (K, Ho*Wo), row r = (c*k + i)*k + j holds in[c][oy*s + i - pt][ox*s + j - pl] (0 outside).
 */
static void im2col(float *cols, const float *in /* (cin,H,W) */, const Conv2dDims *d,
                   const ConvGeom *g) {
    int k = d->k, s = d->stride, H = d->H, W = d->W, Ho = g->Ho, Wo = g->Wo;
    const int run = s == 1 && Wo == W;
    for (int c = 0; c < d->cin; c++) {
        const float *inc = in + (size_t)c * H * W;
        for (int i = 0; i < k; i++) {
            int ylo, yhi;
            valid_range(i - g->pt, s, H, Ho, &ylo, &yhi);
            for (int j = 0; j < k; j++) {
                float *row = cols + (size_t)((c * k + i) * k + j) * Ho * Wo;
                int xlo, xhi;
                valid_range(j - g->pl, s, W, Wo, &xlo, &xhi);
                memset(row, 0, (size_t)ylo * Wo * sizeof(float));
                if (run) {
                    ptrdiff_t dst, src, n;
                    shifted_run(ylo, yhi, Wo, (ptrdiff_t)(ylo + i - g->pt) * W + (j - g->pl),
                                H * W, &dst, &src, &n);
                    memcpy(row + dst, inc + src, (size_t)n * sizeof(float));
                    zero_edges(row, ylo, yhi, Wo, xlo, xhi);
                } else {
                    for (int oy = ylo; oy < yhi; oy++) {
                        float *r = row + (size_t)oy * Wo;
                        /* in-bounds for ox in [xlo, xhi) (base itself may be -1) */
                        ptrdiff_t base = (ptrdiff_t)(oy * s + i - g->pt) * W + (j - g->pl);
                        for (int ox = 0; ox < xlo; ox++)
                            r[ox] = 0.0f;
                        for (int ox = xlo; ox < xhi; ox++)
                            r[ox] = inc[base + ox * s];
                        for (int ox = xhi; ox < Wo; ox++)
                            r[ox] = 0.0f;
                    }
                }
                memset(row + (size_t)yhi * Wo, 0, (size_t)(Ho - yhi) * Wo * sizeof(float));
            }
        }
    }
}

/* The adjoint of im2col: din (cin,H,W) += scatter of cols (K, Ho*Wo). cols is scratch: the stride-1
 * run path zeroes its entries outside [xlo, xhi) first. */
static void col2im_add(float *din, float *cols, const Conv2dDims *d, const ConvGeom *g) {
    int k = d->k, s = d->stride, H = d->H, W = d->W, Ho = g->Ho, Wo = g->Wo;
    const int run = s == 1 && Wo == W;
    for (int c = 0; c < d->cin; c++) {
        float *dc = din + (size_t)c * H * W;
        for (int i = 0; i < k; i++) {
            int ylo, yhi;
            valid_range(i - g->pt, s, H, Ho, &ylo, &yhi);
            for (int j = 0; j < k; j++) {
                float *row = cols + (size_t)((c * k + i) * k + j) * Ho * Wo;
                int xlo, xhi;
                valid_range(j - g->pl, s, W, Wo, &xlo, &xhi);
                if (run) {
                    zero_edges(row, ylo, yhi, Wo, xlo, xhi);
                    ptrdiff_t dst, src, n;
                    shifted_run(ylo, yhi, Wo, (ptrdiff_t)(ylo + i - g->pt) * W + (j - g->pl),
                                H * W, &dst, &src, &n);
                    float *restrict to = dc + src;
                    const float *restrict from = row + dst;
                    for (ptrdiff_t q = 0; q < n; q++)
                        to[q] += from[q];
                    continue;
                }
                for (int oy = ylo; oy < yhi; oy++) {
                    const float *r = row + (size_t)oy * Wo;
                    ptrdiff_t base = (ptrdiff_t)(oy * s + i - g->pt) * W + (j - g->pl);
                    for (int ox = xlo; ox < xhi; ox++)
                        dc[base + ox * s] += r[ox];
                }
            }
        }
    }
}

void conv2d_forward(float *out /* (B,cout,Ho,Wo) */, const float *in /* (B,cin,H,W) */,
                    const float *w /* (cout,cin,k,k) */, const float *bias /* (cout) or NULL */,
                    const Conv2dDims *d, const OpCtx *c) {
    ConvGeom g = conv_geom(d);
    size_t scratch = conv2d_scratch_floats(d);
    nn_check_ctx(c, scratch, "conv2d_forward");
    const int HWo = g.Ho * g.Wo, cout = d->cout;
    const size_t in_sz = (size_t)d->cin * d->H * d->W, out_sz = (size_t)cout * HWo;
    const int same = same_size(d, &g);
#pragma omp parallel for schedule(static) num_threads(nn_threads(c))
    for (int b = 0; b < d->B; b++) {
        const float *inb = in + (size_t)b * in_sz;
        float *outb = out + (size_t)b * out_sz; /* (cout, Ho*Wo) */
        /* Output starts as the bias, then the GEMM accumulates (beta = 1), as torch's CPU conv. */
        for (int o = 0; o < cout; o++) {
            float bo = bias ? bias[o] : 0.0f;
            float *r = outb + (size_t)o * HWo;
            for (int p = 0; p < HWo; p++)
                r[p] = bo;
        }
        if (same && la_sgemm_im2col(0, 0, cout, HWo, g.K, 1.0f, w, g.K, inb, d->H, d->W, d->k, 1.0f,
                                    outb, HWo))
            continue;
        const float *cols = inb; /* (K, Ho*Wo) */
        if (!g.direct) {
            float *buf = opctx_scratch(c);
            im2col(buf, inb, d, &g);
            cols = buf;
        }
        la_sgemm(0, 0, cout, HWo, g.K, 1.0f, w, g.K, cols, HWo, 1.0f, outb, HWo);
    }
}

void conv2d_backward(float *din /* (B,cin,H,W) or NULL */, float *dw /* (cout,cin,k,k) */,
                     float *dbias /* (cout) or NULL */, const float *dout /* (B,cout,Ho,Wo) */,
                     const float *in /* (B,cin,H,W) */, const float *w /* (cout,cin,k,k) */,
                     const Conv2dDims *d, const OpCtx *c) {
    ConvGeom g = conv_geom(d);
    size_t scratch = conv2d_scratch_floats(d);
    nn_check_ctx(c, scratch, "conv2d_backward");
    const int HWo = g.Ho * g.Wo, cout = d->cout, K = g.K;
    const size_t in_sz = (size_t)d->cin * d->H * d->W, out_sz = (size_t)cout * HWo;
    const int same = same_size(d, &g);

    GradSlots gs;
    float *dptr[2] = {dw, dbias};
    size_t numel[2] = {(size_t)cout * K, (size_t)cout};
    grad_slots_begin(&gs, c, d->B, 2, dptr, numel);
    if (!gs.any && !din) return; /* nothing asked of this op */

#pragma omp parallel num_threads(nn_threads(c))
    {
        int flipped = 0; /* this thread's scratch holds W flipped (once per call, not per image) */
#pragma omp for schedule(static, gs.group)
        for (int b = 0; b < d->B; b++) {
            const float *inb = in + (size_t)b * in_sz;
            const float *doutb = dout + (size_t)b * out_sz; /* (cout, Ho*Wo) */
            float *sw = grad_slot(&gs, b, 0);               /* (cout, K) or NULL: not needed */
            float *sb = grad_slot(&gs, b, 1);               /* (cout) or NULL */
            float *dinb = din ? din + (size_t)b * in_sz : NULL;
            if (sb) {
                for (int o = 0; o < cout; o++) /* in double: robust to the order of Ho*Wo terms */
                    sb[o] += (float)nn_sum_double(doutb + (size_t)o * HWo, (size_t)HWo);
            }
            if (g.direct) {
                /* cols = in_b (cin, HW): dW_b += dout_b in_b^T; din_b += W^T dout_b. */
                if (sw) la_sgemm(0, 1, cout, K, HWo, 1.0f, doutb, HWo, inb, HWo, 1.0f, sw, K);
                if (dinb) la_sgemm(1, 0, K, HWo, cout, 1.0f, w, K, doutb, HWo, 1.0f, dinb, HWo);
                continue;
            }
            /* The fused path (no columns built) when the kernel has it: dW first, then din from
             * the flipped weights. Without dW the din call itself says whether it ran. */
            int fused = 0;
            if (same && sw)
                fused = la_sgemm_im2col(0, 1, cout, K, HWo, 1.0f, doutb, HWo, inb, d->H, d->W, d->k,
                                        1.0f, sw, K);
            if (same && dinb && (fused || !sw)) { /* din_b += conv2d(dout_b, flipped W) */
                float *wf = opctx_scratch(c);     /* (cin, cout*k*k) */
                const int kf = cout * d->k * d->k;
                if (!flipped) flip_weights(wf, w, d), flipped = 1;
                const int ran = la_sgemm_im2col(0, 0, d->cin, HWo, kf, 1.0f, wf, kf, doutb, d->H,
                                                d->W, d->k, 1.0f, dinb, HWo);
                if (!sw) fused = ran;
                if (!ran) flipped = 0; /* the columns below reuse the scratch */
            }
            if (fused || (!sw && !dinb)) continue;
            float *cols = opctx_scratch(c); /* (K, Ho*Wo), reused for dcols */
            flipped = 0;
            if (sw) {
                im2col(cols, inb, d, &g);
                la_sgemm(0, 1, cout, K, HWo, 1.0f, doutb, HWo, cols, HWo, 1.0f, sw, K);
            }
            if (dinb) {
                la_sgemm(1, 0, K, HWo, cout, 1.0f, w, K, doutb, HWo, 0.0f, cols, HWo);
                col2im_add(dinb, cols, d, &g);
            }
        }
    }
    grad_slots_end(&gs);
}
