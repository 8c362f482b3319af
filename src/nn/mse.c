/* mse.c: torch.nn.functional.mse_loss(pred, target, reduction="mean"), the diffusers training
 * objective (unet2d.md section 8.3). The forward sums in double, serially, so the loss does not
 * depend on the thread count; the backward follows torch's (pred - target) * (2/n) * grad. */
#include "nn/nn_internal.h"

double mse_forward(const float *pred, const float *target, size_t n) {
    CHECK(n > 0, "mse over 0 elements");
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)pred[i] - (double)target[i];
        acc += e * e;
    }
    return acc / (double)n;
}

void mse_backward(float *dpred, const float *pred, const float *target, size_t n, float scale) {
    CHECK(n > 0, "mse over 0 elements");
    const float norm = (float)(2.0 / (double)n);
#pragma omp parallel for schedule(static) if (n >= 16384)
    for (size_t i = 0; i < n; i++)
        dpred[i] += (pred[i] - target[i]) * norm * scale;
}
