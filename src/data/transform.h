/* transform.h: per-image transforms on uint8 pixels, each matching what torchvision/PIL do so
 * that the Python twin sees the same numbers: colour conversion (PIL convert("L") / ("RGB")),
 * centred padding, centre crop (torchvision CenterCrop), resize (PIL Image.resize with BILINEAR,
 * which widens the filter when shrinking, or NEAREST), and the horizontal flip. */
#ifndef JTRAK_DATA_TRANSFORM_H
#define JTRAK_DATA_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/source.h"

/* out (c_out, h, w) from img: c_out 1 or 3. From 1/2 channels to 3: replicated; from 3/4 to 1:
 * L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 (PIL's fixed-point 0.299/0.587/0.114); alpha is
 * dropped. */
void data_color_convert(uint8_t *out, const DataRaw *img, int c_out);

/* Offsets used by pad and crop (exposed for tests). Pad: top = (H - h) / 2 (floor). Crop: top =
 * round((h - H) / 2) with Python's round-half-to-even, as torchvision's center_crop. */
int data_pad_offset(int inner, int outer);
int data_crop_offset(int outer, int inner);

/* Each maps one (c, h, w) image to (c, oh, ow); the caller has checked that the mode applies. */
void data_pad(uint8_t *out, int oh, int ow, const uint8_t *in, int c, int h, int w);
void data_crop(uint8_t *out, int oh, int ow, const uint8_t *in, int c, int h, int w);
/* scratch: at least c * max(h * ow, oh * w) bytes (the result of the first pass). */
void data_resize_bilinear(uint8_t *out, int oh, int ow, const uint8_t *in, int c, int h, int w,
                          uint8_t *scratch);
/* Whether the bilinear resize runs its vertical pass first (Pillow 13's choice; see the .c). */
int data_resize_vertical_first(int oh, int ow, int h, int w);
void data_resize_nearest(uint8_t *out, int oh, int ow, const uint8_t *in, int c, int h, int w);

/* Mirror left-right in place: img (c, h, w). */
void data_flip_u8(uint8_t *img, int c, int h, int w);
void data_flip_f32(float *img, int c, int h, int w);

#endif
