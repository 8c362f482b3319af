/* clip_text.h: transformers' CLIPTextModel (ldm.md 4.1), the frozen text encoder of Stable
 * Diffusion, forward only. For ids (B, L):
 *
 *   h = token_embedding[ids] + position_embedding[0..L)            (done in C, before the graph)
 *   for each of the num_hidden_layers layers (pre-LN):
 *       h = h + out_proj(causal_mha(layer_norm1(h)))               (q/k/v/out projections with
 * bias) h = h + fc2(act(fc1(layer_norm2(h))))                      (act: quick_gelu or gelu)
 *   last_hidden_state = final_layer_norm(h)                        (B, L, D)
 *   pooler_output     = last_hidden_state at the first EOS         (B, D)
 *
 * The first EOS is argmax(ids) when eos_token_id == 2 (the legacy value of the SD-1/SD-2 hub
 * configs, as transformers keeps it) and otherwise the first position whose id == eos_token_id (0
 * when there is none, as torch's argmax of an all-false row gives). clip_skip k >= 1 (diffusers
 * pipelines) is final_layer_norm(hidden_states[-(k+1)]), the state after num_hidden_layers - k
 * layers. SD-2's "penultimate layer" needs no skip: its HF export already has 23 of OpenCLIP's 24
 * layers.
 *
 * The layout holds transformers 5's names ("embeddings.token_embedding.weight", ...,
 * "final_layer_norm.bias"), in named_parameters() order; a model.safetensors written with
 * transformers 4's "text_model." prefix loads too, and the "position_ids" buffer 4.x saved is
 * ignored. Parameters registered here take PyTorch's module defaults (blocks.h); `jtrak init`
 * draws transformers' _init_weights distribution instead (clip_text_init_params). */
#ifndef JTRAK_TEXT_CLIP_TEXT_H
#define JTRAK_TEXT_CLIP_TEXT_H

#include "core/common.h"
#include "core/layout.h"

#include <stddef.h>

#define CLIP_TEXT_CLASS "CLIPTextModel"
#define CLIP_TEXT_WEIGHTS_FILE "model.safetensors" /* transformers' save_pretrained */

/* Limits, checked when a config is read (SD-2's encoder: 1024 wide, 4096 MLP, 23 layers, 16 heads,
 * 49408 tokens, 77 positions). */
#define CLIP_TEXT_MAX_HIDDEN 8192
#define CLIP_TEXT_MAX_INTERMEDIATE 32768
#define CLIP_TEXT_MAX_LAYERS 64
#define CLIP_TEXT_MAX_HEADS 128
#define CLIP_TEXT_MAX_VOCAB 1048576
#define CLIP_TEXT_MAX_POSITIONS 4096

typedef enum { CLIP_ACT_QUICK_GELU = 0, CLIP_ACT_GELU = 1 } ClipTextAct;

/* transformers' CLIPTextConfig fields (the ones the forward reads, plus the token ids). */
typedef struct {
    int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    int max_position_embeddings;
    int hidden_act; /* ClipTextAct */
    float layer_norm_eps;
    int bos_token_id, eos_token_id, pad_token_id;
    int projection_dim; /* accepted, unused (CLIPTextModelWithProjection's) */
} ClipTextConfig;

/* transformers' CLIPTextConfig defaults (49408 tokens, 512 wide, 12 layers, 8 heads, quick_gelu).
 */
void clip_text_config_default(ClipTextConfig *cfg);
/* Strict parse of a transformers config.json object (root: const cJSON *): every field of
 * CLIPTextConfig that jtrak implements is read and checked, bookkeeping keys ("architectures",
 * "model_type", "transformers_version", "dtype"/"torch_dtype", "_*") are accepted, anything else is
 * an error naming the field. Validates. */
int clip_text_config_from_json(ClipTextConfig *cfg, const void *root, const char *path,
                               JtError *err);
/* Cross-field checks and limits: heads divide the width, ids within the vocabulary. */
int clip_text_config_validate(const ClipTextConfig *cfg, const char *path, JtError *err);
/* Canonical config text (malloc'd): sorted keys, every field; used for the model fingerprint. */
char *clip_text_config_to_json(const ClipTextConfig *cfg);

typedef struct ClipText ClipText;

/* A network with zero parameters. */
int clip_text_create(ClipText **out, const ClipTextConfig *cfg, JtError *err);
void clip_text_free(ClipText *net);
const ClipTextConfig *clip_text_config(const ClipText *net);
const ParamLayout *clip_text_layout(const ClipText *net);
float *clip_text_params(ClipText *net);
const float *clip_text_params_const(const ClipText *net);
size_t clip_text_num_params(const ClipText *net);

/* Reads a transformers model.safetensors into the network: tensor names with or without the
 * "text_model." prefix (all one way), "position_ids" ignored, F32/F16/BF16/F64 converted; a missing
 * tensor, an unknown tensor or a wrong shape is an error naming the file and the tensor, and leaves
 * the parameters unchanged. */
int clip_text_load_weights(ClipText *net, const char *path, JtError *err);
/* config.json + model.safetensors of a transformers folder. */
int clip_text_load(ClipText **out, const char *dir, JtError *err);

/* ---- init and save (clip_text_init.c) ---- */

/* Shipped configs: "clip-tiny" (hidden 32, MLP 37, 4 heads, 2 layers, the default vocabulary of
 * 49408 tokens, 77 positions, quick_gelu, transformers' default token ids). Returns 1 and fills
 * cfg for a shipped name, else 0. */
int clip_text_config_preset(const char *name, ClipTextConfig *cfg);
const char *clip_text_config_preset_names(void);
/* Random weights as transformers 5.23's CLIPPreTrainedModel._init_weights with
 * initializer_factor 1 (the distribution; the draws are jtrak's Philox streams keyed by (seed,
 * tensor index)): embeddings N(0, 0.02^2), q/k/v and fc2 N(0, 1/(2 N D)), out_proj N(0, 1/D),
 * fc1 N(0, 1/(2D)), biases 0, LayerNorms weight 1 and bias 0. */
void clip_text_init_params(ClipText *net, uint64_t seed);
/* The std clip_text_init_params draws the named tensor with (0: a constant tensor), -1 for a
 * name it has no rule for. */
double clip_text_init_std(const ClipTextConfig *cfg, const char *name);
/* transformers' config.json of a CLIPTextModel (architectures, model_type "clip_text_model",
 * every CLIPTextConfig field; malloc'd), which CLIPTextModel.from_pretrained and
 * clip_text_config_from_json both read. */
char *clip_text_config_to_transformers_json(const ClipTextConfig *cfg);
/* Writes dir/config.json (above) and dir/model.safetensors (F32, transformers 5 names, metadata
 * format "pt"), creating dir and its parents; each file atomically. */
int clip_text_save(const ClipText *net, const char *dir, JtError *err);

/* ---- forward ---- */
typedef struct ClipTextRun ClipTextRun;

/* Buffers for batches of up to B prompts of exactly L tokens (1 <= L <= max_position_embeddings);
 * skip: 0 for last_hidden_state, k in [1, num_hidden_layers) for clip_skip k. */
int clip_text_run_create(ClipTextRun **out, const ClipText *net, int B, int L, int skip,
                         JtError *err);
void clip_text_run_free(ClipTextRun *r);
int clip_text_run_capacity(const ClipTextRun *r);
int clip_text_run_tokens(const ClipTextRun *r);

/* Encodes B <= capacity prompts: ids (B, L) row-major; last_hidden (B, L, D) token-major (what
 * diffusers pipelines pass as encoder_hidden_states; with the run's skip k >= 1 the clip_skip
 * state); pooled (B, D) or NULL: pooler_output (always from the last layer, as transformers). An
 * id outside [0, vocab_size) is an error naming its prompt and position, and nothing is written.
 * Results do not depend on the thread count. */
int clip_text_forward(const ClipText *net, ClipTextRun *r, int B, const int *ids,
                      float *last_hidden, float *pooled, JtError *err);

/* The position pooler_output reads in one prompt of L ids (see the top of this file). */
int clip_text_pool_position(const ClipTextConfig *cfg, const int *ids, int L);

#endif
