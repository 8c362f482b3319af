/* transform.c: per-image uint8 transforms (see transform.h). The resize code follows Pillow's
 * src/libImaging/Resample.c (precompute_coeffs, normalize_coeffs_8bpc, two separable 8-bit passes
 * with 22-bit fixed-point coefficients) and Geometry.c (ImagingScaleAffine for NEAREST), so that
 * results equal Pillow 13.0.0's Image.resize bit for bit (checked by hand on random geometries;
 * the unit tests pin a few). */
#include "data/transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void data_color_convert(uint8_t *out, const DataRaw *img, int c_out) {
    CHECK(c_out == 1 || c_out == 3, "colour conversion to %d channels", c_out);
    size_t plane = (size_t)img->h * (size_t)img->w;
    int gray_in = img->c <= 2;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            const uint8_t *p = img->data + y * img->sy + x * img->sx;
            size_t o = (size_t)y * (size_t)img->w + (size_t)x;
            if (gray_in) {
                for (int ch = 0; ch < c_out; ch++)
                    out[(size_t)ch * plane + o] = p[0];
            } else if (c_out == 3) {
                for (int ch = 0; ch < 3; ch++)
                    out[(size_t)ch * plane + o] = p[ch * img->sc];
            } else {
                /* PIL Convert.c rgb2l: L24 = R*19595 + G*38470 + B*7471 + 0x8000, >> 16. */
                uint32_t r = p[0], g = p[img->sc], b = p[2 * img->sc];
                out[o] = (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
            }
        }
}

int data_pad_offset(int inner, int outer) {
    return (outer - inner) / 2;
}

int data_crop_offset(int outer, int inner) {
    /* torchvision: int(round((outer - inner) / 2.0)); Python rounds x.5 to the even integer. */
    int d = outer - inner;
    if (d % 2 == 0) return d / 2;
    int k = d / 2; /* d > 0 here, so this is floor(d / 2) and the exact value is k + 0.5 */
    return k % 2 == 0 ? k : k + 1;
}

void data_pad(uint8_t *out, int oh, int ow, const uint8_t *in, int c, int h, int w) {
    CHECK(h <= oh && w <= ow, "pad %dx%d into %dx%d", h, w, oh, ow);
    int top = data_pad_offset(h, oh), left = data_pad_offset(w, ow);
    memset(out, 0, (size_t)c * (size_t)oh * (size_t)ow);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            memcpy(out + ((size_t)ch * (size_t)oh + (size_t)(y + top)) * (size_t)ow + (size_t)left,
                   in + ((size_t)ch * (size_t)h + (size_t)y) * (size_t)w, (size_t)w);
}

void data_crop(uint8_t *out, int oh, int ow, const uint8_t *in, int c, int h, int w) {
    CHECK(h >= oh && w >= ow, "crop %dx%d to %dx%d", h, w, oh, ow);
    int top = data_crop_offset(h, oh), left = data_crop_offset(w, ow);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < oh; y++)
            memcpy(out + ((size_t)ch * (size_t)oh + (size_t)y) * (size_t)ow,
                   in + ((size_t)ch * (size_t)h + (size_t)(y + top)) * (size_t)w + (size_t)left,
                   (size_t)ow);
}

/* ---- bilinear (Pillow Resample.c) ------------------------------------------------------------ */

enum { RS_PRECISION_BITS = 32 - 8 - 2 };

static double rs_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static uint8_t rs_clip8(int32_t ss) {
    int32_t v = ss >> RS_PRECISION_BITS; /* arithmetic shift, as Pillow relies on */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Coefficients for one axis: for output o, taps bounds[2o] .. bounds[2o] + bounds[2o+1] - 1 with
 * weights kk[o * ksize + j] in fixed point. Returns ksize; *bounds, *kk malloc'd. */
static int rs_coeffs(int in_size, int out_size, int **bounds_out, int32_t **kk_out) {
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* BILINEAR support 1.0 */
    int ksize = (int)ceil(support) * 2 + 1;
    double *pre = xmalloc((size_t)out_size * (size_t)ksize * sizeof(double));
    int *bounds = xmalloc((size_t)out_size * 2 * sizeof(int));
    int32_t *kk = xmalloc((size_t)out_size * (size_t)ksize * sizeof(int32_t));
    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = pre + (size_t)xx * (size_t)ksize;
        int x = 0;
        for (; x < xmax; x++) {
            double wgt = rs_bilinear((x + xmin - center + 0.5) * ss);
            k[x] = wgt;
            ww += wgt;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * (size_t)ksize; i++)
        kk[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << RS_PRECISION_BITS))
                           : (int32_t)(0.5 + pre[i] * (1 << RS_PRECISION_BITS));
    free(pre);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

/* One pass along x: out (rows, ow) from in (rows, w). */
static void rs_pass_x(uint8_t *out, int ow, const uint8_t *in, int w, size_t rows) {
    int *b;
    int32_t *kk;
    int ksize = rs_coeffs(w, ow, &b, &kk);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = in + r * (size_t)w;
        uint8_t *orow = out + r * (size_t)ow;
        for (int xx = 0; xx < ow; xx++) {
            const int32_t *k = kk + (size_t)xx * (size_t)ksize;
            int xmin = b[2 * xx], xmax = b[2 * xx + 1];
            int32_t ss = 1 << (RS_PRECISION_BITS - 1);
            for (int x = 0; x < xmax; x++)
                ss += (int32_t)row[x + xmin] * k[x];
            orow[xx] = rs_clip8(ss);
        }
    }
    free(b);
    free(kk);
}

/* One pass along y: out (c, oh, w) from in (c, h, w). */
static void rs_pass_y(uint8_t *out, int oh, const uint8_t *in, int c, int h, int w) {
    int *b;
    int32_t *kk;
    int ksize = rs_coeffs(h, oh, &b, &kk);
    for (int ch = 0; ch < c; ch++) {
        const uint8_t *plane = in + (size_t)ch * (size_t)h * (size_t)w;
        for (int yy = 0; yy < oh; yy++) {
            const int32_t *k = kk + (size_t)yy * (size_t)ksize;
            int ymin = b[2 * yy], ymax = b[2 * yy + 1];
            uint8_t *orow = out + ((size_t)ch * (size_t)oh + (size_t)yy) * (size_t)w;
            for (int xx = 0; xx < w; xx++) {
                int32_t ss = 1 << (RS_PRECISION_BITS - 1);
                for (int y = 0; y < ymax; y++)
                    ss += (int32_t)plane[(size_t)(y + ymin) * (size_t)w + (size_t)xx] * k[y];
                orow[xx] = rs_clip8(ss);
            }
        }
    }
    free(b);
    free(kk);
}

int data_resize_vertical_first(int oh, int ow, int h, int w) {
    return oh < h && (h - oh) > 2 * (w - ow);
}

void data_resize_bilinear(uint8_t *out, int oh, int ow, const uint8_t *in, int c, int h, int w,
                          uint8_t *scratch) {
    /* Pillow runs a pass only on an axis whose size changes, each rounding to 8 bits, so the
     * order matters in the last bit. Older Pillow always ran the horizontal pass first;
     * Pillow 13.0.0 runs the vertical pass first when data_resize_vertical_first says so (that
     * rule reproduces its output on 4000 random geometries, up and down, both orders checked). */
    int need_x = ow != w, need_y = oh != h;
    if (!need_x && !need_y) {
        memcpy(out, in, (size_t)c * (size_t)h * (size_t)w);
    } else if (!need_y) {
        rs_pass_x(out, ow, in, w, (size_t)c * (size_t)h);
    } else if (!need_x) {
        rs_pass_y(out, oh, in, c, h, w);
    } else if (data_resize_vertical_first(oh, ow, h, w)) {
        rs_pass_y(scratch, oh, in, c, h, w); /* (c, oh, w) */
        rs_pass_x(out, ow, scratch, w, (size_t)c * (size_t)oh);
    } else {
        rs_pass_x(scratch, ow, in, w, (size_t)c * (size_t)h); /* (c, h, ow) */
        rs_pass_y(out, oh, scratch, c, h, ow);
    }
}

/* ---- nearest (Pillow Geometry.c, ImagingScaleAffine) ----------------------------------------- */

static void nn_table(int *tab, int in_size, int out_size) {
    /* Pillow accumulates the source position in double, starting half a step in, and truncates
     * (COORD); replicating the accumulation keeps ties where Pillow puts them. */
    double a = (double)in_size / out_size;
    double xo = a * 0.5;
    for (int x = 0; x < out_size; x++) {
        int xin = xo < 0.0 ? -1 : (int)xo;
        tab[x] = xin < 0 ? 0 : xin >= in_size ? in_size - 1 : xin;
        xo += a;
    }
}

void data_resize_nearest(uint8_t *out, int oh, int ow, const uint8_t *in, int c, int h, int w) {
    int *xt = xmalloc((size_t)ow * sizeof(int)), *yt = xmalloc((size_t)oh * sizeof(int));
    nn_table(xt, w, ow);
    nn_table(yt, h, oh);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < oh; y++) {
            const uint8_t *row = in + ((size_t)ch * (size_t)h + (size_t)yt[y]) * (size_t)w;
            uint8_t *orow = out + ((size_t)ch * (size_t)oh + (size_t)y) * (size_t)ow;
            for (int x = 0; x < ow; x++)
                orow[x] = row[xt[x]];
        }
    free(xt);
    free(yt);
}

/* ---- flip ------------------------------------------------------------------------------------ */

void data_flip_u8(uint8_t *img, int c, int h, int w) {
    for (size_t r = 0; r < (size_t)c * (size_t)h; r++) {
        uint8_t *row = img + r * (size_t)w;
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            uint8_t t = row[a];
            row[a] = row[b];
            row[b] = t;
        }
    }
}

void data_flip_f32(float *img, int c, int h, int w) {
    for (size_t r = 0; r < (size_t)c * (size_t)h; r++) {
        float *row = img + r * (size_t)w;
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            float t = row[a];
            row[a] = row[b];
            row[b] = t;
        }
    }
}
