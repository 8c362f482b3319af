/* cmd_info.c: `jtrak info MODEL` describes a model (a shipped config name, a config.json, a model
 * folder or a pipeline folder, whose components are listed before its U-Net): its class (from the
 * model class table), architecture, parameter count, the memory a training batch needs (and a
 * forward batch, for a UNet2DConditionModel, with its context length), and for a folder with
 * weights the model fingerprint that every artifact derived from it records.
 */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/model_folder.h"
#include "model/model.h"
#include "model/pipeline.h"
#include "text/tokenizer.h"
#include "unet/presets.h"
#include "unet/unet.h"
#include "unet/unet_flops.h"
#include "vae/vae.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* An AutoencoderKL: its latent shape at its sample_size and the scaling factor the caller applies. */
static int info_vae(const char *spec, Model *m, int have_weights, int B) {
    const VaeConfig *cfg = vae_config(model_vae_const(m));
    const int H = vae_config_height(cfg), W = vae_config_width(cfg), f = vae_config_factor(cfg);
    JtError err;
    VaeRun *run;
    if (vae_run_create(&run, model_vae_const(m), B, H, W, VAE_RUN_TRAIN, &err)) {
        model_free(m);
        return cli_error("info", &err);
    }
    char fp[17];
    printf("model: %s\nclass: %s\n", spec, model_kind(m)->class_name);
    printf("fingerprint: %s\n", have_weights ? model_fingerprint_hex(model_fingerprint(m), fp)
                                             : "none (a config without weights)");
    printf("image: %d channel(s) in, %d out, %dx%d (sample_size)\n", cfg->in_channels,
           cfg->out_channels, H, W);
    printf("levels:");
    for (int i = 0; i < cfg->n_levels; i++)
        printf(" %d", cfg->block_out_channels[i]);
    printf(" (layers per block %d, groups %d)\n", cfg->layers_per_block, cfg->norm_num_groups);
    printf("latent: %dx%dx%d (factor %d)\n", cfg->latent_channels, H / f, W / f, f);
    printf("scaling_factor: %.7g (latent = z * scaling_factor)\n", (double)cfg->scaling_factor);
    const ParamLayout *l = model_layout(m);
    printf("parameters: %zu in %d tensors (%.1f MB as float32)\n", l->total, l->count,
           4.0 * (double)l->total / 1e6);
    printf("training memory at batch %d: %.1f MB (activations, gradients, scratch)\n", B,
           (double)vae_run_bytes(run) / 1e6);
    vae_run_free(run);
    model_free(m);
    return 0;
}

/* One line per component of a pipeline folder; its U-Net is described after them. */
static int info_pipeline(const PipelineFolder *p) {
    JtError err;
    char fp[17];
    printf("pipeline: %s (%s)\n", p->dir, p->class_name);
    printf("  unet: %s (described below)\n", p->unet_dir);
    Model *m = NULL;
    if (p->vae_dir) {
        if (model_load(p->vae_dir, &m, &err) != JT_OK) return cli_error("info", &err);
        const VaeConfig *vc = vae_config(model_vae_const(m));
        printf("  vae: %s (%s, fingerprint %s, latent_channels %d, factor %d, scaling_factor "
               "%.7g)\n",
               p->vae_dir, model_kind(m)->class_name,
               model_fingerprint_hex(model_fingerprint(m), fp), vc->latent_channels,
               vae_config_factor(vc), (double)vc->scaling_factor);
        model_free(m);
    } else {
        printf("  vae: none\n");
    }
    if (p->text_encoder_dir) {
        if (model_load(p->text_encoder_dir, &m, &err) != JT_OK) return cli_error("info", &err);
        const ClipTextConfig *tc = clip_text_config(model_text_encoder_const(m));
        printf("  text_encoder: %s (%s, fingerprint %s, width %d, %d layers, %d positions)\n",
               p->text_encoder_dir, model_kind(m)->class_name,
               model_fingerprint_hex(model_fingerprint(m), fp), tc->hidden_size,
               tc->num_hidden_layers, tc->max_position_embeddings);
        model_free(m);
    } else {
        printf("  text_encoder: none\n");
    }
    if (p->tokenizer_dir) {
        ClipTokenizer *t;
        if (clip_tokenizer_load(&t, p->tokenizer_dir, &err) != JT_OK)
            return cli_error("info", &err);
        printf("  tokenizer: %s (%s, %d ids, model_max_length %d)\n", p->tokenizer_dir,
               clip_tokenizer_layout(t), clip_tokenizer_vocab_size(t),
               clip_tokenizer_max_length(t));
        clip_tokenizer_free(t);
    } else {
        printf("  tokenizer: none\n");
    }
    SchedConfig sc;
    if (pipeline_sched_config_load(&sc, p, &err) != JT_OK) return cli_error("info", &err);
    printf("  scheduler: %s (%s: %s betas %g..%g, %d steps; as the pipeline loads it: "
           "steps_offset %d, clip_sample %s)\n",
           p->scheduler_dir, p->scheduler_class, sched_beta_schedule_name(sc.beta_schedule),
           sc.beta_start, sc.beta_end, sc.num_train_timesteps, sc.steps_offset,
           sc.clip_sample ? "true" : "false");
    return 0;
}

static int info_model(const char *spec, int B, int ctx_arg);

int cmd_info(int argc, char **argv) {
    Args a;
    args_init(&a, "info", argc, argv);
    if (args_flag(&a, "help")) {
        printf("usage: jtrak info MODEL [--batch B] [--context-len L]\n"
               "MODEL is a shipped config (fm-s, fm-xs, t8, ldm-xs, jt-coco, vae-fm), a "
               "config.json or a model folder.\n"
               "--context-len: context tokens of a cross-attention model's batch (default 77, "
               "CLIP's).\n");
        args_free(&a);
        return 0;
    }
    int B = (int)args_long(&a, "batch", 64, 1, 1 << 20);
    int ctx_arg = (int)args_long(&a, "context-len", 77, 1, UNET_MAX_CONTEXT_LEN);
    const char *spec = args_positional(&a, 0);
    int rc = args_finish(&a);
    if (rc == 0 && !spec) {
        fprintf(stderr, "jtrak info: missing MODEL (see 'jtrak info --help')\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;
    if (!pipeline_is_folder(spec)) return info_model(spec, B, ctx_arg);
    PipelineFolder p;
    JtError err;
    if (pipeline_open(spec, &p, &err) != JT_OK) return cli_error("info", &err);
    rc = info_pipeline(&p);
    if (rc == 0) rc = info_model(p.unet_dir, B, ctx_arg);
    pipeline_close(&p);
    return rc;
}

/* A model: a shipped config, a config.json or a model folder. */
/* A model of any class from its config alone (zero weights): a shipped preset (U-Net, VAE or
 * CLIP text encoder) or a config.json, given as the file or as a folder without weights. */
static int config_model(const char *spec, Model **m, JtError *err) {
    VaeConfig vc;
    ClipTextConfig tc;
    if (vae_config_preset(spec, &vc))
        return model_create_kind(m, model_kind_find(VAE_CLASS), &vc, err);
    if (clip_text_config_preset(spec, &tc))
        return model_create_kind(m, model_kind_find(CLIP_TEXT_CLASS), &tc, err);
    UNetConfig uc;
    struct stat sb;
    if (unet_config_preset(spec, &uc) || stat(spec, &sb) != 0) /* the presets' message */
        return cli_model_config(spec, &uc, err) || model_create(m, &uc, err) ? JT_ERR : JT_OK;
    char *path = S_ISDIR(sb.st_mode) ? path_join(spec, MODEL_CONFIG_FILE) : xstrdup(spec);
    const ModelKind *kind;
    void *cfg = NULL;
    int rc = model_kind_load_config(path, &kind, &cfg, err);
    if (rc == JT_OK) rc = model_create_kind(m, kind, cfg, err);
    free(cfg);
    free(path);
    return rc;
}

static int info_model(const char *spec, int B, int ctx_arg) {
    JtError err;
    Model *m = NULL;
    /* A folder with weights is loaded (and fingerprinted); otherwise the config alone. */
    struct stat sb;
    char *weights = path_join(spec, MODEL_WEIGHTS_FILE);
    char *tweights = path_join(spec, CLIP_TEXT_WEIGHTS_FILE); /* transformers' folders */
    int have_weights = stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode) &&
                       (stat(weights, &sb) == 0 || stat(tweights, &sb) == 0);
    free(weights);
    free(tweights);
    if (have_weights) {
        if (model_load(spec, &m, &err) != JT_OK) return cli_error("info", &err);
        if (model_vae(m)) return info_vae(spec, m, 1, B);
    } else {
        if (config_model(spec, &m, &err) != JT_OK) return cli_error("info", &err);
        if (model_vae(m)) return info_vae(spec, m, 0, B);
    }
    const ClipText *te = model_text_encoder_const(m);
    if (te) {
        const ClipTextConfig *tc = clip_text_config(te);
        const ParamLayout *tl = model_layout(m);
        char fp[17];
        printf("model: %s\nclass: %s\nfingerprint: %s\n", spec, model_kind(m)->class_name,
               have_weights ? model_fingerprint_hex(model_fingerprint(m), fp)
                            : "none (a config without weights)");
        printf("text encoder: %d layers, width %d, %d heads, MLP %d, %s, vocabulary %d, %d "
               "positions\n",
               tc->num_hidden_layers, tc->hidden_size, tc->num_attention_heads,
               tc->intermediate_size, tc->hidden_act == CLIP_ACT_GELU ? "gelu" : "quick_gelu",
               tc->vocab_size, tc->max_position_embeddings);
        printf("parameters: %zu in %d tensors (%.1f MB as float32)\n", tl->total, tl->count,
               4.0 * (double)tl->total / 1e6);
        model_free(m);
        return 0;
    }
    const UNet *net = model_unet_const(m);
    const UNetConfig cfg = *unet_config(net);
    const int H = unet_config_height(&cfg), W = unet_config_width(&cfg);
    const int D = unet_cross_attention_dim(net), ctx_len = D > 0 ? ctx_arg : 0;
    UNetRun *run, *fwd = NULL;
    if (unet_run_create_ctx(&run, net, B, H, W, ctx_len, UNET_RUN_TRAIN, &err) ||
        (cfg.cond &&
         unet_run_create_ctx(&fwd, net, B, H, W, ctx_len, UNET_RUN_FORWARD_ONLY, &err))) {
        unet_run_free(run);
        model_free(m);
        return cli_error("info", &err);
    }
    printf("model: %s\n", spec);
    printf("class: %s\n", model_kind(m)->class_name);
    if (have_weights) {
        char fp[17];
        printf("fingerprint: %s\n", model_fingerprint_hex(model_fingerprint(m), fp));
    } else {
        printf("fingerprint: none (a config without weights)\n");
    }
    printf("image: %d channel(s), %dx%d\n", cfg.in_channels, H, W);
    printf("levels:");
    for (int i = 0; i < cfg.n_levels; i++) {
        printf(" %d%s", cfg.block_out_channels[i],
               cfg.down_attn[i] ? (cfg.cond ? "+xattn" : "+attn") : "");
        if (cfg.cond && cfg.down_attn[i]) printf("(%d heads)", unet_config_heads_down(&cfg, i));
    }
    printf(" (layers per block %d, groups %d)\n", cfg.layers_per_block, cfg.norm_num_groups);
    if (cfg.num_class_embeds) printf("classes: %d (class-conditional)\n", cfg.num_class_embeds);
    if (cfg.cond)
        printf("mid block: %s\n", cfg.mid_block_type == 0   ? "UNetMidBlock2DCrossAttn"
                                  : cfg.mid_block_type == 1 ? "UNetMidBlock2D"
                                                            : "none");
    if (D > 0)
        printf("context: %d tokens of width %d (cross-attention; set with --context-len)\n",
               ctx_len, D);
    const ParamLayout *l = model_layout(m);
    printf("parameters: %zu in %d tensors (%.1f MB as float32)\n", l->total, l->count,
           4.0 * (double)l->total / 1e6);
    printf("training memory at batch %d: %.1f MB (activations, gradients, scratch)\n", B,
           (double)unet_run_bytes(run) / 1e6);
    if (cfg.cond)
        printf("forward: %.3f GFLOP per image (%dx%d%s; 2 x multiply-adds, unet_flops.h)\n",
               unet_forward_flops_ctx(net, H, W, ctx_len, NULL) / 1e9, H, W,
               D > 0 ? ", the context above" : "");
    if (fwd)
        printf("forward memory at batch %d: %.1f MB (sampling: activations, scratch)\n", B,
               (double)unet_run_bytes(fwd) / 1e6);
    unet_run_free(run);
    unet_run_free(fwd);
    model_free(m);
    return 0;
}
