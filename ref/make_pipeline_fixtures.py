"""make_pipeline_fixtures.py: a whole Stable Diffusion pipeline folder written by diffusers itself, and
what diffusers' StableDiffusionPipeline computes with it (ldm.md 1.4, 4, 5), for tests/test_sd_pipeline.c
(and the CLI-level checks that sample from a pipeline folder).

The pipeline is tiny and random (seeded PyTorch default initialisation; every GroupNorm and LayerNorm
affine then overwritten with 1 + 0.1 randn / 0.1 randn, as make_ldm_fixtures.py does, so that the C code
must apply them):

  text_encoder  transformers CLIPTextModel: hidden 32, MLP 37, 4 heads, 2 layers, quick_gelu,
                77 positions, vocab_size 869 = the small tokenizer's (ids 0..868), bos 867, eos 868
  tokenizer     CLIPTokenizer loaded from tests/fixtures/tokenizer/clip_small (the real CLIP BPE
                restricted to the merges its corpus uses; pads with <|endoftext|>, as SD-1)
  unet          UNet2DConditionModel (8, 16), layers_per_block 1, CrossAttnDown + Down / Up +
                CrossAttnUp, 2 heads, cross_attention_dim 32 (= the CLIP width), 4 groups, sample 8
  vae           AutoencoderKL (8, 16), layers_per_block 1, 3 -> 4 latent channels, 4 groups,
                sample 16 (f = 2: 3x16x16 images <-> 4x8x8 latents), scaling_factor 0.18215
  scheduler     DDIMScheduler with Stable Diffusion's settings: scaled_linear 0.00085..0.012, 1000
                steps, steps_offset 1, clip_sample False, set_alpha_to_one False, leading spacing.
                Every field is one jtrak's scheduler reader accepts. StableDiffusionPipeline.__init__
                rewrites steps_offset != 1 to 1 and clip_sample True to False (ldm.md 1.4); with these
                values it changes nothing (checked below: the saved config equals the built one).

save_pretrained(tests/fixtures/sd_pipeline/pipe/) with safety_checker None and
requires_safety_checker False (model_index.json, one folder per component).

Then the pipeline itself is run: 2 prompts (a short one, and one of 102 tokens that the tokenizer
truncates to 77), negative prompt "" for both, guidance_scale 3.0, 3 DDIM steps (eta 0), fixed N(0, 1) latents,
output_type "np"; callback_on_step_end records the latents after every step. Written to
tests/fixtures/sd_pipeline/:

  expect.safetensors  ids (2, 77) I64 and uncond_ids (2, 77) I64 (the tokenizer's), prompt_embeds and
                      negative_prompt_embeds (2, 77, 32) (pipe.encode_prompt), latents_in (2, 4, 8, 8),
                      timesteps (3) I64, step_latents (3, 2, 4, 8, 8) (after steps 0, 1, 2),
                      decoded (2, 3, 16, 16) = vae.decode(latents / scaling_factor) before the
                      (x / 2 + 0.5).clamp(0, 1) of the image processor, image (2, 16, 16, 3) after it
                      (the pipeline's "np" output), image_u8 (2, 16, 16, 3) U8 (numpy_to_pil's
                      round(x * 255))
  image.npy           the pipeline's "np" output (2, 16, 16, 3) float32, for end-to-end CLI checks
  sample_<i>.png      the pipeline's PIL output (numpy_to_pil), 16x16 RGB
  expect.json         prompts, negative prompts, guidance, steps, eta, timesteps, token counts,
                      versions

Checks: the saved folder is reloaded with StableDiffusionPipeline.from_pretrained and rerun; it must give
bit-identical latents and images. Deterministic (fixed seeds, 1 thread): reruns write the same bytes.
Usage: ref/.venv/bin/python ref/make_pipeline_fixtures.py
"""

import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin_common as tc  # noqa: E402

OUT = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "sd_pipeline")
TOKENIZER_DIR = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "tokenizer", "clip_small")
SEED = 14005
GUIDANCE = 3.0
STEPS = 3
# The second prompt is longer than 75 tokens with the small vocabulary: the pipeline truncates it.
BOAT = ("a highly detailed photograph of an old wooden boat drifting on a calm misty lake at dawn "
        "with mountains behind it and birds flying overhead")
PROMPTS = ["a photo of a cat", " ".join([BOAT] * 4)]  # 25 tokens per BOAT: 100 + 2 > 77
NEGATIVE = ["", ""]

CLIP_CFG = dict(vocab_size=869, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                layer_norm_eps=1e-5, projection_dim=16, bos_token_id=867, eos_token_id=868,
                pad_token_id=868)
UNET_CFG = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
                cross_attention_dim=32, norm_num_groups=4)
VAE_CFG = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
               latent_channels=4, norm_num_groups=4, sample_size=16,
               down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
SCHED_CFG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                 steps_offset=1, prediction_type="epsilon", timestep_spacing="leading")


def randomize_norms(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def build_pipeline():
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_CFG)).eval()
    randomize_norms(text_encoder, torch.Generator().manual_seed(SEED + 1))
    torch.manual_seed(SEED + 10)
    unet = UNet2DConditionModel(**UNET_CFG).eval()
    randomize_norms(unet, torch.Generator().manual_seed(SEED + 11))
    torch.manual_seed(SEED + 20)
    vae = AutoencoderKL(**VAE_CFG).eval()
    randomize_norms(vae, torch.Generator().manual_seed(SEED + 21))
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    scheduler = DDIMScheduler(**SCHED_CFG)
    before = dict(scheduler.config)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    # ldm.md 1.4: the pipeline's scheduler fix-up must not have touched this config
    assert dict(pipe.scheduler.config) == before, "StableDiffusionPipeline rewrote the scheduler config"
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, latents):
    steps = []

    def record(p, i, t, kw):
        steps.append(kw["latents"].detach().clone())
        return kw

    with torch.no_grad():
        out = pipe(PROMPTS, negative_prompt=NEGATIVE, guidance_scale=GUIDANCE, num_inference_steps=STEPS,
                   eta=0.0, latents=latents.clone(), output_type="np", callback_on_step_end=record,
                   callback_on_step_end_tensor_inputs=["latents"])
    return torch.stack(steps), out.images


def tokenize(pipe, texts):
    tok = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    return tok.input_ids, [len(pipe.tokenizer.tokenize(t)) + 2 for t in texts]  # + bos, eos


def main():
    tc.set_determinism(1)
    tc.quiet_diffusers()
    from transformers.utils import logging as tlogging

    tlogging.set_verbosity_error()
    import diffusers
    import transformers
    from diffusers import StableDiffusionPipeline

    pipe = build_pipeline()
    gen = torch.Generator().manual_seed(SEED + 30)
    latents = torch.randn((len(PROMPTS), 4, 8, 8), generator=gen)

    ids, n_tokens = tokenize(pipe, PROMPTS)
    uncond_ids, _ = tokenize(pipe, NEGATIVE)
    with torch.no_grad():
        prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
            PROMPTS, "cpu", 1, True, negative_prompt=NEGATIVE)
        direct = pipe.text_encoder(ids)[0]
    assert torch.equal(direct, prompt_embeds)
    step_latents, image = run(pipe, latents)
    with torch.no_grad():
        decoded = pipe.vae.decode(step_latents[-1] / pipe.vae.config.scaling_factor, return_dict=False)[0]
    post = (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(post, image), "manual decode differs from the pipeline's image"
    image_u8 = (image * 255).round().astype("uint8")
    pipe.scheduler.set_timesteps(STEPS)
    timesteps = pipe.scheduler.timesteps.clone()

    def write(tmp):
        pipe.save_pretrained(os.path.join(tmp, "pipe"), safe_serialization=True)
        tensors = {
            "ids": ids.contiguous(), "uncond_ids": uncond_ids.contiguous(),
            "prompt_embeds": prompt_embeds.contiguous(),
            "negative_prompt_embeds": negative_prompt_embeds.contiguous(),
            "latents_in": latents.contiguous(), "timesteps": timesteps.to(torch.int64).contiguous(),
            "step_latents": step_latents.contiguous(), "decoded": decoded.contiguous(),
            "image": torch.from_numpy(image.copy()).contiguous(),
            "image_u8": torch.from_numpy(image_u8.copy()).contiguous(),
        }
        tc.save_safetensors_sorted(tensors, os.path.join(tmp, "expect.safetensors"), {
            "format": "pt", "generator": "ref/make_pipeline_fixtures.py", "seed": str(SEED),
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0]})
        np.save(os.path.join(tmp, "image.npy"), image.astype("<f4"))
        for i, im in enumerate(pipe.numpy_to_pil(image)):
            im.save(os.path.join(tmp, f"sample_{i}.png"))
        meta = {"generator": "ref/make_pipeline_fixtures.py", "diffusers": diffusers.__version__,
                "transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
                "prompts": PROMPTS, "negative_prompts": NEGATIVE, "guidance_scale": GUIDANCE,
                "num_inference_steps": STEPS, "eta": 0.0, "timesteps": timesteps.tolist(),
                "latents_seed": SEED + 30, "prompt_tokens_before_truncation": n_tokens,
                "image_shape": list(image.shape), "output_type": "np"}
        with open(os.path.join(tmp, "expect.json"), "w") as f:
            f.write(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write(tmp)
    shutil.rmtree(OUT, ignore_errors=True)
    os.rename(tmp, OUT)

    # reload what was written and run it again: every number must be identical
    again = StableDiffusionPipeline.from_pretrained(os.path.join(OUT, "pipe"), safety_checker=None,
                                                    requires_safety_checker=False)
    again.set_progress_bar_config(disable=True)
    assert type(again.scheduler).__name__ == "DDIMScheduler"
    s2, im2 = run(again, latents)
    assert torch.equal(s2, step_latents) and np.array_equal(im2, image), "reloaded pipeline differs"

    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"tests/fixtures/sd_pipeline: {size} bytes; unet {tc.count_params(pipe.unet)}, vae "
          f"{tc.count_params(pipe.vae)}, text_encoder {tc.count_params(pipe.text_encoder)} parameters; "
          f"timesteps {timesteps.tolist()}; prompt tokens {n_tokens} (max 77); "
          f"|latents| max {step_latents[-1].abs().max().item():.3f}; decoded range "
          f"[{decoded.min().item():.3f}, {decoded.max().item():.3f}], "
          f"{(np.abs(post - (decoded.permute(0, 2, 3, 1).numpy() / 2 + 0.5)) > 0).mean() * 100:.1f}% "
          f"of pixels clamped; reload check ok")


if __name__ == "__main__":
    main()
