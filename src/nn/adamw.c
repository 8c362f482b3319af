/* adamw.c: one step of torch.optim.AdamW with its defaults (amsgrad off, maximize off, the
 * single-tensor "for-loop" path), in torch's op order:
 *   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *   bc1 = 1 - b1^step;  bc2 = 1 - b2^step;  denom = sqrt(v) / sqrt(bc2) + eps;
 *   p -= (lr/bc1) * m / denom.
 * Scalars (1 - lr*wd, 1 - b1, bias corrections, step size) are computed in double, as Python does,
 * then rounded to float where torch passes them to a float32 kernel; tensor arithmetic is float.
 * (torch >= 2.0 writes the m update as m.lerp_(g, 1-b1): the same value up to an ulp.) */
#include "nn/nn_internal.h"

#include <math.h>

void adamw_step(float *p, float *m, float *v, const float *g, size_t n, const AdamWConfig *cfg,
                long step) {
    CHECK(step >= 1, "adamw step %ld (1-based)", step);
    const double lr = cfg->lr, b1 = cfg->beta1, b2 = cfg->beta2, wd = cfg->weight_decay;
    const float decay = (float)(1.0 - lr * wd);
    const float fb1 = cfg->beta1, fb2 = cfg->beta2;
    const float one_m_b1 = (float)(1.0 - b1), one_m_b2 = (float)(1.0 - b2);
    const double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    const float step_size = (float)(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float eps = cfg->eps;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * decay;
        float mi = m[i] * fb1;
        mi = mi + one_m_b1 * g[i];
        float vi = v[i] * fb2;
        vi = vi + one_m_b2 * g[i] * g[i];
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + (-step_size) * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}
