"""check_pipeline.py: loads a pipeline folder that jtrak wrote (`jtrak pipeline` or
`jtrak train --pipeline`) with the real diffusers DiffusionPipeline.from_pretrained (offline, local
files only) and runs it for two steps, printing OK when everything holds:

  * the class named by model_index.json is what loads (StableDiffusionPipeline or DDPMPipeline);
  * the U-Net's weights are the bytes jtrak wrote (every tensor equal to unet/'s safetensors file);
  * a StableDiffusionPipeline rewrote the scheduler config as jtrak reads it (steps_offset 1,
    clip_sample False; ldm.md 1.4);
  * a 2-step call with classifier-free guidance (guidance_scale 3, a prompt, fixed latents) gives a
    finite image of the expected shape; a DDPMPipeline, a 2-step unconditional call.

usage: ref/.venv/bin/python ref/check_pipeline.py PIPE [--prompt TEXT]
"""

import argparse
import os
import sys

import torch

from twin_common import log, quiet_diffusers, set_determinism


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipe")
    ap.add_argument("--prompt", default="a photo of a trouser")
    args = ap.parse_args()
    set_determinism(2)
    quiet_diffusers()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file

    pipe = DiffusionPipeline.from_pretrained(args.pipe, local_files_only=True)
    name = type(pipe).__name__
    log(f"loaded {args.pipe} as {name}")
    want = load_file(os.path.join(args.pipe, "unet", "diffusion_pytorch_model.safetensors"))
    got = pipe.unet.state_dict()
    assert set(want) == set(got), f"unet tensors differ: {sorted(set(want) ^ set(got))[:5]}"
    for k, v in want.items():
        assert torch.equal(v.float(), got[k].float()), f"unet tensor {k} differs"
    gen = torch.Generator().manual_seed(0)
    cfg = pipe.unet.config
    if name == "StableDiffusionPipeline":
        sc = pipe.scheduler.config
        assert sc.steps_offset == 1 and sc.clip_sample is False, dict(sc)
        f = pipe.vae_scale_factor
        latents = torch.randn((1, cfg.in_channels, cfg.sample_size, cfg.sample_size), generator=gen)
        out = pipe(
            args.prompt,
            num_inference_steps=2,
            guidance_scale=3.0,
            latents=latents,
            output_type="np",
        ).images
        want_shape = (1, cfg.sample_size * f, cfg.sample_size * f, pipe.vae.config.out_channels)
    elif name == "DDPMPipeline":
        out = pipe(batch_size=1, num_inference_steps=2, generator=gen, output_type="np").images
        want_shape = (1, cfg.sample_size, cfg.sample_size, cfg.out_channels)
    else:
        raise SystemExit(f"{args.pipe}: {name}: not a pipeline class jtrak writes")
    assert tuple(out.shape) == want_shape, f"image shape {out.shape}, expected {want_shape}"
    assert torch.isfinite(torch.as_tensor(out)).all(), "non-finite image"
    log(f"2-step call: image {tuple(out.shape)}, range {out.min():.4f}..{out.max():.4f}")
    print("OK")


if __name__ == "__main__":
    sys.exit(main())
