/* pipeline.h: diffusers pipeline folders (ldm.md section 5): a model_index.json naming the
 * pipeline class and one [library, class] pair per component, and one subfolder per component:
 *   unet/          config.json + diffusion_pytorch_model.safetensors (UNet2DConditionModel)
 *   vae/           config.json + diffusion_pytorch_model.safetensors (AutoencoderKL)
 *   text_encoder/  config.json + model.safetensors (transformers' CLIPTextModel)
 *   tokenizer/     vocab.json + merges.txt, or tokenizer.json (+ tokenizer_config.json)
 *   scheduler/     scheduler_config.json (DDPMScheduler or DDIMScheduler; PNDMScheduler, SD-1.x's,
 *                  for its betas: jtrak samples with --sampler ddpm|ddim)
 * as StableDiffusionPipeline.save_pretrained writes it; DDPMPipeline and DDIMPipeline folders
 * (unet + scheduler, a pixel UNet2DModel) are read too.
 *
 * Wherever jtrak takes a model folder, a pipeline folder means its unet/ (model_load), its
 * scheduler/ as the schedule (sched_config_load_model, with StableDiffusionPipeline's rewrite of
 * the scheduler config, see pipeline_sched_config_load) and the files beside the U-Net
 * (training.json) in unet/ (pipeline_model_dir). */
#ifndef JTRAK_MODEL_PIPELINE_H
#define JTRAK_MODEL_PIPELINE_H

#include "core/common.h"
#include "diffusion/schedule.h"
#include "unet/config.h"

#define PIPELINE_INDEX_FILE "model_index.json"

/* An opened (validated) pipeline folder. Every path is malloc'd; a component that the folder
 * does not have ([null, null] in model_index.json) is NULL. */
typedef struct {
    char *dir;
    char *class_name; /* "StableDiffusionPipeline", "DDPMPipeline" or "DDIMPipeline" */
    char *unet_dir, *vae_dir, *text_encoder_dir, *tokenizer_dir, *scheduler_dir;
    char *scheduler_class; /* "DDPMScheduler", "DDIMScheduler" or "PNDMScheduler" (its betas) */
} PipelineFolder;

/* 1 when dir/model_index.json exists (dir is meant as a pipeline folder), else 0. */
int pipeline_is_folder(const char *dir);

/* Reads and validates dir/model_index.json and its components: the pipeline class (other
 * diffusers pipelines, e.g. StableDiffusionXLPipeline, are refused by name), each component's
 * [library, class] against what jtrak reads, each listed folder and its files, and the
 * cross-checks between components (text encoder width == the U-Net's cross_attention_dim, the
 * VAE's latent_channels == the U-Net's in_channels, the tokenizer's model_max_length <= the text
 * encoder's max_position_embeddings and its ids inside the text encoder's vocabulary). Only the
 * configs are read, not the weights. On error p is zeroed and err names the file and the field. */
int pipeline_open(const char *dir, PipelineFolder *p, JtError *err);
void pipeline_close(PipelineFolder *p);

/* dir/unet when dir is a pipeline folder, else dir itself (malloc'd): the folder of the U-Net and
 * of what jtrak keeps beside it (training.json). Does not validate. */
char *pipeline_model_dir(const char *dir);

/* The pipeline's schedule: scheduler/scheduler_config.json (diffusers' defaults for missing keys)
 * and, for a StableDiffusionPipeline, the rewrite its __init__ applies (steps_offset -> 1,
 * clip_sample -> false). */
int pipeline_sched_config_load(SchedConfig *cfg, const PipelineFolder *p, JtError *err);

/* What pipeline_write assembles. unet_dir is required (a model folder, not a pipeline); vae_dir,
 * text_encoder_dir and tokenizer_dir are NULL when absent. A UNet2DConditionModel makes a
 * StableDiffusionPipeline, a UNet2DModel a DDPMPipeline (no VAE, text encoder or tokenizer). */
typedef struct {
    const char *unet_dir;
    const char *vae_dir, *text_encoder_dir, *tokenizer_dir;
    const SchedConfig *scheduler; /* required: written as scheduler/scheduler_config.json */
} PipelineSources;

/* The checks pipeline_write makes of the sources before it writes anything: each a folder (not a
 * pipeline) with its files and configs, and the cross-checks of pipeline_open. unet_cfg, when not
 * NULL, stands for src->unet_dir's config (train checks the sources before it trains). */
int pipeline_check_sources(const PipelineSources *src, const UNetConfig *unet_cfg, JtError *err);

/* Writes the pipeline folder out: checks the sources first (the same checks as pipeline_open),
 * copies each component's files byte for byte into out/NAME/ (each file to a temporary name,
 * then renamed; out/unet is not copied when it is src->unet_dir itself, as train writes it),
 * writes scheduler/scheduler_config.json (for a StableDiffusionPipeline with the rewrite its
 * __init__ would apply, see pipeline_sched_config_load) and, last, model_index.json, then opens the
 * result again. An existing out/model_index.json is removed first, so that a folder being rewritten
 * or killed mid-write is never taken for a pipeline. On error what this call created is removed. */
int pipeline_write(const PipelineSources *src, const char *out, JtError *err);

#endif
