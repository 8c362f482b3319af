/* unet_flops.c: counts the multiply-adds of the U-Net forward by walking the same static graph
 * that unet_forward executes (unet_build_graph), so the count follows the model as built rather
 * than a second description of UNet2DModel. The convention is in unet_flops.h. */
#include "unet/unet_flops.h"

#include "unet/unet_internal.h"

double unet_forward_flops_detail(const UNet *net, int H, int W, UNetFlops *out) {
    return unet_forward_flops_ctx(net, H, W, 0, out);
}

double unet_forward_flops_ctx(const UNet *net, int H, int W, int ctx_len, UNetFlops *out) {
    UNetFlops f = {0, 0, 0, 0};
    if (out) *out = f;
    int div = 1 << (net->cfg.n_levels - 1);
    if (H < 1 || W < 1 || H % div || W % div) return -1.0;
    if ((unet_cross_attention_dim(net) > 0) != (ctx_len > 0)) return -1.0;

    /* Only the graph: no arenas are allocated (unet_run_create would also size them). */
    Graph g;
    unet_build_graph(net, &g, H, W, ctx_len);
    for (int i = 0; i < g.n_nodes; i++) {
        const Node *n = &g.nodes[i];
        const Tensor *in = n->in0 >= 0 ? &g.tensors[n->in0] : NULL;
        const Tensor *o = &g.tensors[n->out];
        switch (n->kind) {
        case NODE_CONV:
            f.conv += 2.0 * o->C * in->C * n->k * n->k * (double)o->H * o->W;
            break;
        case NODE_LINEAR:
            f.linear += 2.0 * in->C * o->C;
            break;
        case NODE_ATTN: {
            double C = in->C, N = (double)in->H * in->W;
            f.attn_proj += 2.0 * 4.0 * N * C * C;
            f.attn_matmul += 2.0 * 2.0 * N * N * C;
            break;
        }
        case NODE_MHA: { /* queries from in0's N tokens, keys/values from in1's Lk tokens */
            const Tensor *kv = &g.tensors[n->in1];
            double C = o->C, N = (double)in->H * in->W, Lk = (double)kv->H * kv->W;
            f.attn_proj += 2.0 * (2.0 * N * in->C * C + 2.0 * Lk * kv->C * C);
            f.attn_matmul += 2.0 * 2.0 * N * Lk * C;
            break;
        }
        default:
            break; /* elementwise: not counted (unet_flops.h) */
        }
    }
    graph_free(&g);
    if (out) *out = f;
    return f.conv + f.linear + f.attn_proj + f.attn_matmul;
}

double unet_forward_flops(const UNet *net, int H, int W) {
    return unet_forward_flops_detail(net, H, W, NULL);
}

double unet_train_flops(const UNet *net, int H, int W) {
    double f = unet_forward_flops(net, H, W);
    return f < 0 ? f : (1.0 + UNET_BACKWARD_FLOPS_FACTOR) * f;
}
