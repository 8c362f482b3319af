/* linear.c: torch.nn.Linear on a batch of B vectors, y_b = W x_b + b with W (out, in) (unet2d.md
 * section 2; the time MLP and time_emb_proj). One GEMV per sample, OpenMP over the batch, so a
 * sample's result does not depend on the batch size. Backward per sample: dx_b += W^T dy_b,
 * dW_b += dy_b x_b^T (outer product), db_b += dy_b, through GradSlots. */
#include "core/linalg.h"
#include "nn/nn_internal.h"

static void lin_check(const LinearDims *d) {
    CHECK(d->B >= 1 && d->in >= 1 && d->out >= 1, "linear dims B=%d in=%d out=%d", d->B, d->in,
          d->out);
}

void linear_forward(float *y /* (B,out) */, const float *x /* (B,in) */,
                    const float *w /* (out,in) */, const float *bias /* (out) or NULL */,
                    const LinearDims *d, const OpCtx *c) {
    lin_check(d);
    const int in = d->in, out = d->out;
#pragma omp parallel for schedule(static) num_threads(nn_threads(c))
    for (int b = 0; b < d->B; b++) {
        float *yb = y + (size_t)b * out;
        for (int o = 0; o < out; o++)
            yb[o] = bias ? bias[o] : 0.0f;
        la_sgemv(0, out, in, 1.0f, w, in, x + (size_t)b * in, 1.0f, yb);
    }
}

void linear_backward(float *dx /* (B,in) or NULL */, float *dw /* (out,in) */,
                     float *dbias /* (out) or NULL */, const float *dy /* (B,out) */,
                     const float *x /* (B,in) */, const float *w /* (out,in) */,
                     const LinearDims *d, const OpCtx *c) {
    lin_check(d);
    nn_check_ctx(c, 0, "linear_backward");
    const int in = d->in, out = d->out;
    GradSlots gs;
    float *dptr[2] = {dw, dbias};
    size_t numel[2] = {(size_t)out * in, (size_t)out};
    grad_slots_begin(&gs, c, d->B, 2, dptr, numel);
    if (!gs.any && !dx) return;
#pragma omp parallel for schedule(static, gs.group) num_threads(nn_threads(c))
    for (int b = 0; b < d->B; b++) {
        const float *dyb = dy + (size_t)b * out, *xb = x + (size_t)b * in;
        float *sw = grad_slot(&gs, b, 0); /* (out, in) or NULL */
        float *sb = grad_slot(&gs, b, 1); /* (out) or NULL */
        if (sw) la_sger(out, in, 1.0f, dyb, xb, sw, in);
        if (sb)
            for (int o = 0; o < out; o++)
                sb[o] += dyb[o];
        if (dx) la_sgemv(1, out, in, 1.0f, w, in, dyb, 1.0f, dx + (size_t)b * in);
    }
    grad_slots_end(&gs);
}
