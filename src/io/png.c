/* png.c: see png.h. stb_image_write encodes into memory callbacks; this file owns the file
 * handling (temporary name, error checks, fsync, rename) so that a failed write leaves nothing. */
#include "io/png.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

typedef struct {
    FILE *fp;
    int failed;
} PngSink;

static void png_sink(void *ctx, void *data, int size) {
    PngSink *s = ctx;
    if (!s->failed && size > 0 && fwrite(data, 1, (size_t)size, s->fp) != (size_t)size)
        s->failed = 1;
}

int png_write(const char *path, const uint8_t *pix, int w, int h, int comp, JtError *err) {
    CHECK(w > 0 && h > 0 && comp >= 1 && comp <= 4, "bad PNG geometry %dx%dx%d", w, h, comp);
    CHECK((size_t)w * (size_t)comp <= (size_t)INT32_MAX, "PNG row too wide");
    char *tmp = NULL;
    int fd = jt_tmp_open(path, &tmp, err);
    if (fd < 0) return JT_ERR;
    PngSink sink = {fdopen(fd, "wb"), 0};
    if (!sink.fp) {
        jt_fail(err, "%s: fdopen failed: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return JT_ERR;
    }
    int ok = stbi_write_png_to_func(png_sink, &sink, w, h, comp, pix, w * comp);
    int rc = JT_OK;
    if (!ok) {
        rc = jt_fail(err, "%s: PNG encoding failed", path);
    } else if (sink.failed || fflush(sink.fp) != 0 || fsync(fileno(sink.fp)) != 0) {
        rc = jt_fail(err, "%s: write failed: %s", path, strerror(errno));
    }
    if (fclose(sink.fp) != 0 && rc == JT_OK)
        rc = jt_fail(err, "%s: close failed: %s", path, strerror(errno));
    if (rc == JT_OK && rename(tmp, path) != 0)
        rc = jt_fail(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (rc != JT_OK) unlink(tmp);
    free(tmp);
    return rc;
}

int png_write_gray(const char *path, const uint8_t *pix, int w, int h, JtError *err) {
    return png_write(path, pix, w, h, 1, err);
}

int png_write_rgb(const char *path, const uint8_t *pix, int w, int h, JtError *err) {
    return png_write(path, pix, w, h, 3, err);
}

void png_f32_to_u8(uint8_t *out, const float *x, int c, int h, int w) {
    size_t plane = (size_t)h * (size_t)w;
    for (int ch = 0; ch < c; ch++)
        for (size_t p = 0; p < plane; p++) {
            /* float32 throughout, as torch/numpy compute it; nearbyintf rounds half to even
             * like numpy's round(). A NaN maps to 0. */
            float v = x[(size_t)ch * plane + p] / 2.0f + 0.5f;
            v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
            out[p * (size_t)c + (size_t)ch] = (uint8_t)nearbyintf(v * 255.0f);
        }
}

int png_write_image_f32(const char *path, const float *x, int c, int h, int w, JtError *err) {
    CHECK(c == 1 || c == 3, "png_write_image_f32: %d channels", c);
    size_t n;
    CHECK(jt_mul_size((size_t)h * (size_t)w, (size_t)c, &n), "image too large");
    uint8_t *pix = xmalloc(n);
    png_f32_to_u8(pix, x, c, h, w);
    int rc = png_write(path, pix, w, h, c, err);
    free(pix);
    return rc;
}

int png_grid_scale(int cols, int w) {
    const long span = (long)cols * w; /* the images' width without gaps */
    long s = span > 0 ? (PNG_GRID_MIN_WIDTH + span - 1) / span : 1;
    return s < 1 ? 1 : s > 32 ? 32 : (int)s;
}

int png_write_grid(const char *path, const float *x, int n, int c, int h, int w, int cols,
                   JtError *err) {
    const int gap = 2;
    if (cols < 1) cols = 1;
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    const int s = png_grid_scale(cols, w), h0 = h, w0 = w;
    h *= s;
    w *= s;
    int W = cols * w + (cols + 1) * gap, H = rows * h + (rows + 1) * gap;
    uint8_t *pix = xcalloc((size_t)W * H * c, 1);
    uint8_t *tile = xmalloc((size_t)h0 * w0 * c);
    for (int i = 0; i < n; i++) {
        png_f32_to_u8(tile, x + (size_t)i * c * h0 * w0, c, h0, w0);
        int oy = gap + (i / cols) * (h + gap), ox = gap + (i % cols) * (w + gap);
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++)
                memcpy(pix + (((size_t)(oy + y) * W + ox + xx) * c),
                       tile + ((size_t)(y / s) * w0 + (size_t)(xx / s)) * c, (size_t)c);
    }
    int rc = png_write(path, pix, W, H, c, err);
    free(pix);
    free(tile);
    return rc;
}
