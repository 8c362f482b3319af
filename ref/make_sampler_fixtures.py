"""make_sampler_fixtures.py: whole-sampler fixtures for the C tests. Runs diffusers' DDIMScheduler
(eta 0, deterministic) for 10 steps from fixed noise with the fm3_12x12 fixture model, the loop of
DDIMPipeline, and records x_T, every step's pred_original_sample and the final sample in
tests/fixtures/sampler/ddim_fm3_12x12.safetensors. The C test runs its own sampler from the same
x_T and compares (unet2d.md section 7: about 1e-3 over many steps)."""

import os

import torch
from diffusers import DDIMScheduler, UNet2DModel
from safetensors.torch import save_file

import twin_common as tc


def main():
    tc.set_determinism(2)
    tc.quiet_diffusers()
    model_dir = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "unet", "fm3_12x12")
    out_dir = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "sampler")
    os.makedirs(out_dir, exist_ok=True)
    unet = UNet2DModel.from_pretrained(model_dir)
    unet.train()  # the fixtures were made in train mode (no dropout: identical math, see README)
    sched = DDIMScheduler()  # defaults: linear betas, clip_sample, set_alpha_to_one, leading
    steps = 10
    sched.set_timesteps(steps)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(2, 1, 12, 12, generator=g)
    x_T = x.clone()
    x0_hats = []
    with torch.no_grad():
        for t in sched.timesteps:
            eps = unet(x, t).sample
            out = sched.step(eps, t, x, eta=0.0)
            x0_hats.append(out.pred_original_sample)
            x = out.prev_sample
    tensors = {
        "x_T": x_T.contiguous(),
        "x_0": x.contiguous(),
        "x0_hat": torch.stack(x0_hats, dim=1).contiguous(),  # (N, S, C, H, W)
        "timesteps": sched.timesteps.to(torch.int32).contiguous(),
    }
    path = os.path.join(out_dir, "ddim_fm3_12x12.safetensors")
    save_file(tensors, path, metadata={"steps": str(steps), "eta": "0"})
    tc.log(f"wrote {path}")


if __name__ == "__main__":
    main()
