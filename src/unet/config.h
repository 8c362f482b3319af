/* config.h: the diffusers UNet2DModel configuration (config.json), every field that changes
 * numerics (unet2d.md sections 1 and 12), and the UNet2DConditionModel one (ldm.md 2.7; cond = 1,
 * fields in config_cond.c): one struct, so that one network type (unet.h) serves both classes. A
 * value jtrak does not support is refused by the parser with an error naming the file and the
 * field; nothing is silently ignored. */
#ifndef JTRAK_UNET_CONFIG_H
#define JTRAK_UNET_CONFIG_H

#include "core/common.h"

#define UNET_MAX_LEVELS 8

typedef struct {
    int sample_size;        /* 0 = null; with a [height, width] sample_size: height if square */
    int sample_h, sample_w; /* sample_size given as [height, width]; 0, 0 when one integer */
    int in_channels, out_channels;
    int center_input_sample;   /* bool: x <- 2x - 1 first */
    int time_embedding_dim;    /* 0 = null: 4 * block_out_channels[0] */
    float freq_shift;          /* diffusers default 0 */
    int flip_sin_to_cos;       /* bool, diffusers default true */
    int n_levels;              /* len(block_out_channels) */
    int block_out_channels[UNET_MAX_LEVELS];
    int down_attn[UNET_MAX_LEVELS]; /* down_block_types[i]: 0 DownBlock2D, 1 AttnDownBlock2D */
    int up_attn[UNET_MAX_LEVELS];   /* up_block_types[i]: 0 UpBlock2D, 1 AttnUpBlock2D */
    int layers_per_block;
    float mid_block_scale_factor; /* default 1 */
    int downsample_padding;    /* 1: symmetric pad 1; 0: pad right/bottom then valid */
    int attention_head_dim;    /* 0 = null: one head of width C */
    int norm_num_groups;       /* default 32 */
    int attn_norm_num_groups;  /* 0 = null: norm_num_groups (mid-block attention only) */
    float norm_eps;            /* default 1e-5 */
    int add_attention;         /* bool: mid block has its attention, default true */
    int num_train_timesteps;   /* 0 = null; only used by the "learned" embedding, kept for round trip */
    int num_class_embeds;      /* 0 = null (unconditional); K: class_embedding (K, time_embed_dim) */

    /* UNet2DConditionModel (ldm.md section 2); all zero for a UNet2DModel. down_attn / up_attn
     * then read 0 DownBlock2D / UpBlock2D, 1 CrossAttnDownBlock2D / CrossAttnUpBlock2D. */
    int cond;                   /* bool: the class is UNet2DConditionModel */
    int mid_block_type;         /* 0 UNetMidBlock2DCrossAttn, 1 UNetMidBlock2D, -1 null */
    int heads[UNET_MAX_LEVELS]; /* attention_head_dim: the NUMBER of heads (diffusers #2011) */
    int n_heads;                /* 0: one integer for every level (heads[0]); else a list */
    int cross_attention_dim;    /* D, the context width */
    int use_linear_projection;  /* bool: proj_in/proj_out are Linear (else 1x1 conv) */
    int transformer_layers[UNET_MAX_LEVELS]; /* transformer_layers_per_block */
    int n_transformer_layers;          /* 0: one integer (transformer_layers[0]); else a list */
    int only_cross_attention;          /* bool: attn1 also attends to the context */
    int upcast_attention;              /* bool, accepted: a no-op in float32 */
    int addition_embed_type_num_heads; /* unused while addition_embed_type is null (round trip) */
    int encoder_hid_dim;      /* 0 = null; E: encoder_hid_proj maps the (L, E) context to (L, D) */
    int encoder_hid_dim_type; /* -1 null, 0 "text_proj" (what diffusers sets when only the dim is)
                               */
} UNetConfig;

/* UNet2DConditionModel: the heads and transformer depth of down level i, of up level i (the
 * reversed lists, as diffusers builds the up blocks) and of the mid block (the last entry). */
int unet_config_heads_down(const UNetConfig *cfg, int i);
int unet_config_heads_up(const UNetConfig *cfg, int i);
int unet_config_heads_mid(const UNetConfig *cfg);
int unet_config_tlayers_down(const UNetConfig *cfg, int i);
int unet_config_tlayers_up(const UNetConfig *cfg, int i);
int unet_config_tlayers_mid(const UNetConfig *cfg);
/* The most transformer blocks per Transformer2DModel jtrak accepts (SDXL uses 10). */
#define UNET_MAX_TRANSFORMER_LAYERS 64
/* The most context tokens a cross-attention run takes (CLIP's 77, T5's 512, with room). */
#define UNET_MAX_CONTEXT_LEN 4096

/* The largest num_class_embeds accepted (a stated limit: the class table is K x time_embed_dim
 * floats, and a summed-mode backward keeps up to NN_GRAD_SLOTS copies of its gradient). */
#define UNET_MAX_CLASS_EMBEDS 100000

/* Stated size limits (diffusers accepts any positive value; jtrak refuses larger ones in the
 * parser and in unet_config_validate). Published diffusers U-Nets stay far below them: widths up
 * to 1280 (Stable Diffusion) and a few thousand at most, 3 to 9 image or latent channels, pixel
 * sample sizes up to 1024, 1 to 3 layers per block, time embeddings 4 x the first width. With
 * them every tensor size (C x H x W, concatenations included), conv column count and parameter
 * count fits a size_t and every int the ops use; whether the memory a batch needs fits this
 * machine is checked separately, before it is allocated (unet_create, unet_run_create). */
#define UNET_MAX_CHANNELS 16384       /* block_out_channels entries */
#define UNET_MAX_IO_CHANNELS 1024     /* in_channels, out_channels */
#define UNET_MAX_SAMPLE_SIZE 8192     /* sample_size (each of height and width) */
#define UNET_MAX_LAYERS_PER_BLOCK 32  /* layers_per_block */
#define UNET_MAX_TIME_EMBED_DIM 65536 /* time_embedding_dim (4 x UNET_MAX_CHANNELS) */

/* diffusers' UNet2DModel defaults (as in unet2d.md section 1.1, with attention_head_dim null). */
void unet_config_default(UNetConfig *cfg);
/* Parses config.json text; `path` is only used in error messages. Also validates (below). A
 * "_class_name" other than "UNet2DModel" is refused (model/model_kind.h dispatches on it first;
 * UNet2DConditionModel is unet_config_cond_from_json's). */
int unet_config_parse(UNetConfig *cfg, const char *json_text, const char *path, JtError *err);
/* The same from an already parsed cJSON object (`root` is a const cJSON *). */
int unet_config_from_json(UNetConfig *cfg, const void *root, const char *path, JtError *err);
int unet_config_load(UNetConfig *cfg, const char *path, JtError *err);
/* Checks the combination: group counts divide every channel count (including up-block concats),
 * head_dim divides attention channels, levels within limits. */
int unet_config_validate(const UNetConfig *cfg, const char *path, JtError *err);
/* The image height and width the model is configured for: sample_size, or its [height, width];
 * 0 when sample_size is null. Every stage reads the geometry through these, never sample_size. */
int unet_config_height(const UNetConfig *cfg);
int unet_config_width(const UNetConfig *cfg);
/* Sets the configured size: one integer in config.json when square, [height, width] otherwise. */
void unet_config_set_size(UNetConfig *cfg, int height, int width);
/* Image sides the architecture takes are multiples of this: 2^(n_levels - 1), one halving per
 * down block but the last. */
int unet_config_size_divisor(const UNetConfig *cfg);
/* JT_OK when height x width is a size the architecture takes; else JT_ERR naming the divisor and
 * the nearest sizes that work, with `what` (e.g. "--size 30x30", "the data (30x30)") first. */
int unet_config_check_size(const UNetConfig *cfg, int height, int width, const char *what,
                           JtError *err);
/* diffusers-style config.json text (malloc'd, caller frees), loadable by UNet2DModel.from_config
 * (UNet2DConditionModel.from_config when cfg->cond). */
char *unet_config_to_json(const UNetConfig *cfg);

/* ---- UNet2DConditionModel (config_cond.c) ---- */
/* diffusers' UNet2DConditionModel defaults (cond = 1). */
void unet_config_cond_default(UNetConfig *cfg);
/* Strict parse of a UNet2DConditionModel config.json object (a const cJSON *), validated; every
 * field ldm.md 2.7 refuses is refused naming the file, the field and the value. */
int unet_config_cond_from_json(UNetConfig *cfg, const void *root, const char *path, JtError *err);
int unet_config_cond_validate(const UNetConfig *cfg, const char *path, JtError *err);
char *unet_config_cond_to_json(const UNetConfig *cfg);

#endif
