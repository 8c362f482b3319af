/* silu.c: SiLU(x) = x * sigmoid(x) = x / (1 + exp(-x)) (torch.nn.functional.silu) and its
 * derivative sigmoid(x) * (1 + x * (1 - sigmoid(x))). Elementwise, OpenMP over elements. */
#include "nn/nn_internal.h"

/* Below this many elements the OpenMP fork costs more than the loop. */
#define SILU_PAR_MIN 16384

void silu_forward(float *out /* (n) */, const float *in /* (n) */, size_t n) {
#pragma omp parallel for schedule(static) if (n >= SILU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] / (1.0f + nn_expf(-in[i]));
}

void silu_backward(float *din /* (n) */, const float *dout /* (n) */, const float *in /* (n) */,
                   size_t n) {
    if (!din) return;
#pragma omp parallel for schedule(static) if (n >= SILU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float s = 1.0f / (1.0f + nn_expf(-x));
        din[i] += dout[i] * (s * (1.0f + x * (1.0f - s)));
    }
}
