/* temb.c: the sinusoidal timestep embedding of diffusers' get_timestep_embedding (max_period 10000,
 * scale 1), unet2d.md section 3, in float32 and in diffusers' op order, which keeps it within an
 * ulp or so of torch: exponent_i = float32(-ln 10000) * float32(i); exponent_i /= float32(half -
 * freq_shift); freq_i = expf(exponent_i); a_i = t * freq_i; row = [sin(a), cos(a)], or [cos(a),
 * sin(a)] with flip_sin_to_cos; an odd dim gets a zero last column. */
#include "core/common.h"
#include "nn/nn.h"

#include <math.h>

void timestep_embedding(float *out /* (B,dim) */, const float *t /* (B) */, int B, int dim,
                        int flip_sin_to_cos, float freq_shift) {
    CHECK(B >= 1 && dim >= 1, "timestep_embedding B=%d dim=%d", B, dim);
    const int half = dim / 2;
    /* -math.log(10000) is a Python double; torch multiplies it into a float32 arange in float32. */
    const float neg_log_period = (float)(-log(10000.0));
    /* half_dim - downscale_freq_shift is a Python number, rounded to float32 when it divides. */
    const float denom = (float)((double)half - (double)freq_shift);
    CHECK(half == 0 || denom != 0.0f, "timestep_embedding: half (%d) - freq_shift (%g) is zero",
          half, (double)freq_shift);
    for (int b = 0; b < B; b++) {
        float *row = out + (size_t)b * dim;
        float *first = row, *second = row + half; /* [sin, cos], or [cos, sin] when flipped */
        for (int i = 0; i < half; i++) {
            float exponent = neg_log_period * (float)i;
            exponent = exponent / denom;
            float freq = expf(exponent);
            float a = t[b] * freq;
            float sa = sinf(a), ca = cosf(a);
            first[i] = flip_sin_to_cos ? ca : sa;
            second[i] = flip_sin_to_cos ? sa : ca;
        }
        if (dim % 2) row[dim - 1] = 0.0f;
    }
}
