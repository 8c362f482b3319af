/* unet_internal.h: what the U-Net's files share: the model struct, its run (a Graph of the
 * network for one image size and a GraphRun over it, nn/graph.h), and the parameter
 * registration. */
#ifndef JTRAK_UNET_INTERNAL_H
#define JTRAK_UNET_INTERNAL_H

#include "nn/blocks.h"
#include "nn/graph.h"
#include "unet/unet.h"

struct UNet {
    UNetConfig cfg;
    ParamLayout layout;
    float *params; /* (layout.total) */
};

struct UNetRun {
    int H, W;
    int ctx_len; /* L context tokens (0: no cross-attention) */
    UNetRunMode mode;
    Graph graph; /* inputs: image (in_channels, H, W), timestep, labels (class-conditional) */
    GraphRun *run;
};

void unet_register_params(const UNetConfig *cfg, ParamLayout *l);
int unet_time_embed_dim(const UNetConfig *cfg);
/* Builds the graph of UNet2DModel.forward (UNet2DConditionModel.forward with contexts of ctx_len
 * tokens when cfg.cond) for images of H x W (unet_graph.c): one output, eps. */
void unet_build_graph(const UNet *net, Graph *g, int H, int W, int ctx_len);
/* UNet2DConditionModel (unet_params_cond.c, unet_graph_cond.c) */
void unet_register_params_cond(const UNetConfig *cfg, ParamLayout *l);
void unet_build_graph_cond(const UNet *net, Graph *g, int H, int W, int ctx_len);
/* The Transformer2DModel of down level i, up level i and the mid block. */
TransformerSpec unet_cond_spec_down(const UNetConfig *cfg, int i);
TransformerSpec unet_cond_spec_up(const UNetConfig *cfg, int i);
TransformerSpec unet_cond_spec_mid(const UNetConfig *cfg);

#endif
