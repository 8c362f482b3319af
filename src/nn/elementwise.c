/* elementwise.c: the data-movement and broadcast ops of the U-Net (unet2d.md sections 2, 4.1, 5):
 *  - add_channel_vec: h + v[:, :, None, None], the resnet time projection added after conv1;
 *  - add_scaled: (a + b) * scale, residual sums with scale = 1/output_scale_factor
 *    (torch divides by the factor; identical for the factors 1 and 2 used here);
 *  - concat: torch.cat([a, b], dim=1) (up-block "h first, then the skip");
 *  - upsample2x: F.interpolate(scale_factor=2, mode="nearest").
 * Backwards accumulate (+=); NULL activation gradients are skipped. OpenMP over rows. */
#include "nn/nn_internal.h"

#include <string.h>

/* Below this many elements the OpenMP fork costs more than the loop. */
#define EW_PAR_MIN 16384

void add_channel_vec_forward(float *out /* (B,C,HW) */, const float *in /* (B,C,HW) */,
                             const float *v /* (B,C) */, int B, int C, int HW) {
    const int rows = B * C;
#pragma omp parallel for schedule(static) if ((size_t)rows * HW >= EW_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float vr = v[r];
        const float *x = in + (size_t)r * HW;
        float *y = out + (size_t)r * HW;
        for (int p = 0; p < HW; p++)
            y[p] = x[p] + vr;
    }
}

void add_channel_vec_backward(float *din /* (B,C,HW) or NULL */, float *dv /* (B,C) */,
                              const float *dout /* (B,C,HW) */, int B, int C, int HW) {
    const int rows = B * C;
#pragma omp parallel for schedule(static) if ((size_t)rows * HW >= EW_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *g = dout + (size_t)r * HW;
        if (dv) dv[r] += (float)nn_sum_double(g, (size_t)HW); /* a sum over HW positions */
        if (din) {
            float *dx = din + (size_t)r * HW;
            for (int p = 0; p < HW; p++)
                dx[p] += g[p];
        }
    }
}

void add_scaled_forward(float *out, const float *a, const float *b, float scale, size_t n) {
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = (a[i] + b[i]) * scale;
}

void add_scaled_backward(float *da, float *db, const float *dout, float scale, size_t n) {
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float g = dout[i] * scale;
        if (da) da[i] += g;
        if (db) db[i] += g;
    }
}

void concat_forward(float *out /* (B,Ca+Cb,HW) */, const float *a /* (B,Ca,HW) */,
                    const float *b /* (B,Cb,HW) */, int B, int Ca, int Cb, int HW) {
    const size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    for (int s = 0; s < B; s++) {
        float *o = out + (size_t)s * (na + nb);
        memcpy(o, a + (size_t)s * na, na * sizeof(float));
        memcpy(o + na, b + (size_t)s * nb, nb * sizeof(float));
    }
}

void concat_backward(float *da /* (B,Ca,HW) or NULL */, float *db /* (B,Cb,HW) or NULL */,
                     const float *dout /* (B,Ca+Cb,HW) */, int B, int Ca, int Cb, int HW) {
    const size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
#pragma omp parallel for schedule(static) if ((size_t)B * (na + nb) >= EW_PAR_MIN)
    for (int s = 0; s < B; s++) {
        const float *g = dout + (size_t)s * (na + nb);
        if (da) {
            float *d = da + (size_t)s * na;
            for (size_t i = 0; i < na; i++)
                d[i] += g[i];
        }
        if (db) {
            float *d = db + (size_t)s * nb;
            for (size_t i = 0; i < nb; i++)
                d[i] += g[na + i];
        }
    }
}

void upsample2x_forward(float *out /* (B,C,2H,2W) */, const float *in /* (B,C,H,W) */, int B, int C,
                        int H, int W) {
    const int planes = B * C, W2 = 2 * W;
#pragma omp parallel for schedule(static) if ((size_t)planes * H * W >= EW_PAR_MIN / 4)
    for (int pc = 0; pc < planes; pc++) {
        const float *x = in + (size_t)pc * H * W;
        float *y = out + (size_t)pc * 4 * H * W;
        for (int r = 0; r < H; r++) {
            float *y0 = y + (size_t)(2 * r) * W2;
            for (int q = 0; q < W; q++)
                y0[2 * q] = y0[2 * q + 1] = x[(size_t)r * W + q];
            memcpy(y0 + W2, y0, (size_t)W2 * sizeof(float)); /* row 2r+1 repeats row 2r */
        }
    }
}

void upsample2x_backward(float *din /* (B,C,H,W) */, const float *dout /* (B,C,2H,2W) */, int B,
                         int C, int H, int W) {
    if (!din) return;
    const int planes = B * C, W2 = 2 * W;
#pragma omp parallel for schedule(static) if ((size_t)planes * H * W >= EW_PAR_MIN / 4)
    for (int pc = 0; pc < planes; pc++) {
        float *dx = din + (size_t)pc * H * W;
        const float *g = dout + (size_t)pc * 4 * H * W;
        for (int r = 0; r < H; r++) {
            const float *g0 = g + (size_t)(2 * r) * W2, *g1 = g0 + W2;
            for (int q = 0; q < W; q++)
                dx[(size_t)r * W + q] += (g0[2 * q] + g0[2 * q + 1]) + (g1[2 * q] + g1[2 * q + 1]);
        }
    }
}
