/* unet_params.c: the parameter table of a UNet2DModel, registered in PyTorch's named_parameters()
 * order with diffusers' key names (unet2d.md section 6 and Appendix A), and PyTorch's default
 * initialisation (section 7). The graph builder (unet_graph.c) looks tensors up by name. */
#include "unet/unet_internal.h"

#include "core/rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void add(ParamLayout *l, const char *prefix, const char *leaf, int ndim, int d0, int d1,
                int d2, int d3) {
    char name[LAYOUT_NAME_MAX];
    snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
    int shape[4] = {d0, d1, d2, d3};
    layout_add(l, name, ndim, shape);
}

static void add_conv(ParamLayout *l, const char *prefix, int cout, int cin, int k) {
    add(l, prefix, "weight", 4, cout, cin, k, k);
    add(l, prefix, "bias", 1, cout, 0, 0, 0);
}

static void add_vec2(ParamLayout *l, const char *prefix, int c) { /* norms: weight + bias */
    add(l, prefix, "weight", 1, c, 0, 0, 0);
    add(l, prefix, "bias", 1, c, 0, 0, 0);
}

static void add_linear(ParamLayout *l, const char *prefix, int out, int in) {
    add(l, prefix, "weight", 2, out, in, 0, 0);
    add(l, prefix, "bias", 1, out, 0, 0, 0);
}

static void add_resnet(ParamLayout *l, const char *prefix, int cin, int cout, int tdim) {
    char p[LAYOUT_NAME_MAX];
    snprintf(p, sizeof p, "%s.norm1", prefix);
    add_vec2(l, p, cin);
    snprintf(p, sizeof p, "%s.conv1", prefix);
    add_conv(l, p, cout, cin, 3);
    snprintf(p, sizeof p, "%s.time_emb_proj", prefix);
    add_linear(l, p, cout, tdim);
    snprintf(p, sizeof p, "%s.norm2", prefix);
    add_vec2(l, p, cout);
    snprintf(p, sizeof p, "%s.conv2", prefix);
    add_conv(l, p, cout, cout, 3);
    if (cin != cout) {
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix);
        add_conv(l, p, cout, cin, 1);
    }
}

static void add_attention(ParamLayout *l, const char *prefix, int c) {
    static const char *const leaves[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    char p[LAYOUT_NAME_MAX];
    snprintf(p, sizeof p, "%s.group_norm", prefix);
    add_vec2(l, p, c);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s.%s", prefix, leaves[i]);
        add_linear(l, p, c, c);
    }
}

void unet_register_params(const UNetConfig *cfg, ParamLayout *l) {
    const int n = cfg->n_levels, L = cfg->layers_per_block;
    const int *ch = cfg->block_out_channels;
    const int tdim = unet_time_embed_dim(cfg);
    char p[LAYOUT_NAME_MAX];

    add_conv(l, "conv_in", ch[0], cfg->in_channels, 3);
    add_linear(l, "time_embedding.linear_1", tdim, ch[0]);
    add_linear(l, "time_embedding.linear_2", tdim, tdim);
    /* nn.Embedding(num_class_embeds, time_embed_dim), registered right after time_embedding (as
     * named_parameters() lists it in diffusers 0.42.1) */
    if (cfg->num_class_embeds > 0)
        add(l, "", "class_embedding.weight", 2, cfg->num_class_embeds, tdim, 0, 0);

    /* PyTorch registers a block's attentions before its resnets, and up_blocks before mid_block. */
    int prev = ch[0];
    for (int i = 0; i < n; i++) {
        int cout = ch[i];
        if (cfg->down_attn[i])
            for (int j = 0; j < L; j++) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                add_attention(l, p, cout);
            }
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            add_resnet(l, p, j == 0 ? prev : cout, cout, tdim);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            add_conv(l, p, cout, cout, 3);
        }
        prev = cout;
    }

    int prev_out = ch[n - 1];
    for (int i = 0; i < n; i++) {
        int out = ch[n - 1 - i];
        int in = ch[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
        if (cfg->up_attn[i])
            for (int j = 0; j <= L; j++) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                add_attention(l, p, out);
            }
        for (int j = 0; j <= L; j++) {
            int res_skip = (j == L) ? in : out;
            int res_in = (j == 0) ? prev_out : out;
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            add_resnet(l, p, res_in + res_skip, out, tdim);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            add_conv(l, p, out, out, 3);
        }
        prev_out = out;
    }

    int cm = ch[n - 1];
    if (cfg->add_attention) add_attention(l, "mid_block.attentions.0", cm);
    add_resnet(l, "mid_block.resnets.0", cm, cm, tdim);
    add_resnet(l, "mid_block.resnets.1", cm, cm, tdim);

    add_vec2(l, "conv_norm_out", ch[0]);
    add_conv(l, "conv_out", cfg->out_channels, ch[0], 3);
}

static int is_norm_tensor(const char *name) {
    return strstr(name, "norm1.") || strstr(name, "norm2.") || strstr(name, "group_norm.") ||
           strncmp(name, "conv_norm_out.", 14) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

void unet_init_params(UNet *net, uint64_t seed) {
    const ParamLayout *l = &net->layout;
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        float *p = net->params + e->offset;
        if (strcmp(e->name, "class_embedding.weight") == 0) { /* nn.Embedding: N(0, 1) */
            rng_fill_normal(p, e->numel, seed, rng_stream(RNG_TAG_INIT, (uint64_t)i, 0), 0);
            continue;
        }
        if (is_norm_tensor(e->name)) {
            float v = ends_with(e->name, ".weight") ? 1.0f : 0.0f;
            for (size_t k = 0; k < e->numel; k++) p[k] = v;
            continue;
        }
        /* A bias takes the fan-in of its weight, as torch's Conv2d/Linear reset_parameters. */
        const LayoutEntry *w = e;
        if (ends_with(e->name, ".bias")) {
            char wname[LAYOUT_NAME_MAX];
            snprintf(wname, sizeof wname, "%.*s.weight", (int)(strlen(e->name) - 5), e->name);
            int wi = layout_find(l, wname);
            CHECK(wi >= 0, "bias %s has no weight", e->name);
            w = &l->entries[wi];
        }
        size_t fan_in = w->numel / (size_t)w->shape[0];
        float bound = (float)(1.0 / sqrt((double)fan_in));
        rng_fill_uniform(p, e->numel, seed, rng_stream(RNG_TAG_INIT, (uint64_t)i, 0), 0);
        for (size_t k = 0; k < e->numel; k++) p[k] = (2.0f * p[k] - 1.0f) * bound;
    }
}
