/* png.h: writing PNG files through stb_image_write (Debian libstb-dev, linked as libstb), each
 * written to a temporary name and renamed when complete. Reading images is the data layer's job
 * (src/data/imagefolder.c, through stb_image). */
#ifndef JTRAK_PNG_H
#define JTRAK_PNG_H

#include <stdint.h>

#include "core/common.h"

/* pix: (h, w, comp) uint8, rows top to bottom, comp 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA). */
int png_write(const char *path, const uint8_t *pix, int w, int h, int comp, JtError *err);
/* pix: (h, w) */
int png_write_gray(const char *path, const uint8_t *pix, int w, int h, JtError *err);
/* pix: (h, w, 3) */
int png_write_rgb(const char *path, const uint8_t *pix, int w, int h, JtError *err);

/* One model-space image x: (c, h, w) float in [-1, 1], c = 1 or 3, converted as diffusers'
 * pipelines do (x / 2 + 0.5, clamped to [0, 1], times 255, rounded half to even) and written as a
 * gray or RGB PNG. */
int png_write_image_f32(const char *path, const float *x, int c, int h, int w, JtError *err);
/* The conversion alone: out (h, w, c) uint8 from x (c, h, w). */
void png_f32_to_u8(uint8_t *out, const float *x, int c, int h, int w);

/* A grid of images x (n, c, h, w) in [-1, 1] as one PNG with `cols` columns, 2-pixel gaps. Small
 * images are scaled up by an integer factor (nearest neighbour, png_grid_scale) so that the grid
 * is at least PNG_GRID_MIN_WIDTH pixels wide: 8 samples of 8x8 are not something a person can see. */
#define PNG_GRID_MIN_WIDTH 512
int png_grid_scale(int cols, int w);
int png_write_grid(const char *path, const float *x, int n, int c, int h, int w, int cols,
                   JtError *err);

#endif
