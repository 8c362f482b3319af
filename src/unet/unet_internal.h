/* unet_internal.h: what the U-Net's files share: the model struct, the static graph of ops that a
 * run executes (forward in order, backward in reverse), and the parameter registration. */
#ifndef JTRAK_UNET_INTERNAL_H
#define JTRAK_UNET_INTERNAL_H

#include "nn/nn.h"
#include "unet/unet.h"

struct UNet {
    UNetConfig cfg;
    ParamLayout layout;
    float *params; /* (layout.total) */
};

typedef enum {
    NODE_CENTER,   /* out = 2 in - 1 (center_input_sample) */
    NODE_TIMESTEP, /* sinusoidal embedding of the run's timesteps; no input tensor */
    NODE_EMBED,    /* class_embedding row of the run's labels (T,1,1); no input tensor */
    NODE_LINEAR,   /* per-sample vector (C,1,1) -> (cout,1,1) */
    NODE_SILU,
    NODE_CONV,
    NODE_GROUPNORM,
    NODE_GN_SILU,   /* silu(groupnorm(in)) as one op (groupnorm_silu_forward) */
    NODE_ADD_CHVEC, /* in0 (C,H,W) + in1 (C,1,1) broadcast */
    NODE_ADD,       /* (in0 + in1) * scale */
    NODE_ATTN,      /* in0 = group-normed input, in1 = residual */
    NODE_UPSAMPLE,
    NODE_CONCAT /* [in0, in1] along channels */
} NodeKind;

typedef struct {
    int C, H, W;
    size_t off; /* in floats, in the activation arena (and the gradient arena) */
} Tensor;

typedef struct {
    NodeKind kind;
    int in0, in1, out; /* tensor ids, -1 for none */
    size_t w, b;       /* parameter offsets (conv, linear, norm); attention uses p[] */
    size_t p[8];       /* attention: wq bq wk bk wv bv wo bo */
    int k, stride, pad, groups, heads;
    float eps, scale;
    size_t aux; /* offset in the aux arena: groupnorm mean/rstd, attention saved tensors */
} Node;

struct UNetRun {
    int cap_B, H, W;
    Tensor *tensors;
    int n_tensors, cap_tensors;
    Node *nodes;
    int n_nodes, cap_nodes;
    int input, output;    /* tensor ids */
    size_t act_floats;    /* per-sample floats of all tensors */
    size_t aux_per_sample; /* aux floats per sample */
    float *act, *grad, *aux; /* arenas: act and grad (cap_B * act_floats), aux (cap_B * aux) */
    float *t;             /* (cap_B) timesteps of the last forward */
    int *labels;          /* (cap_B) class ids of the last forward (class-conditional models) */
    UNetRunMode mode;     /* UNET_RUN_FORWARD_ONLY: grad and grad_buf are NULL */
    OpCtx ctx;
    float *thread_buf, *grad_buf;
    int profile;            /* unet_run_profile: time the nodes */
    double conv_s, other_s; /* wall seconds in convolution nodes and in the others */
};

void unet_register_params(const UNetConfig *cfg, ParamLayout *l);
int unet_time_embed_dim(const UNetConfig *cfg);
/* Builds the run's graph for images of H x W (unet_graph.c). */
void unet_build_graph(const UNet *net, UNetRun *run);

#endif
