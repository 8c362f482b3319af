"""make_cfg_fixtures.py: classifier-free guidance against diffusers. Runs diffusers' DDIMScheduler
(eta 0) for 3 steps from fixed noise with the class-conditional fixture model cls_fm3_12x12
(num_class_embeds 11: classes 0..9, null class 10) and guidance weight 3.0, the loop of diffusers'
guided pipelines with jtrak's null-class convention:

    for t in timesteps:
        eps = model(cat([x, x]), t, class_labels=cat([null, labels])).sample
        eps_u, eps_c = eps.chunk(2)
        eps = eps_u + w * (eps_c - eps_u)
        x = sched.step(eps, t, x).prev_sample

and records x_T, the labels, every step's pred_original_sample and the final sample in
tests/fixtures/sampler/cfg_ddim_cls_fm3_12x12.safetensors. The C test runs jtrak's guided DDIM
(traj_sample with labels and guidance) from the same x_T and compares."""

import os

import torch
from diffusers import DDIMScheduler, UNet2DModel

import twin_common as tc

GUIDANCE = 3.0
STEPS = 3


def main():
    tc.set_determinism(2)
    tc.quiet_diffusers()
    model_dir = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "unet", "cls_fm3_12x12")
    out_dir = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "sampler")
    os.makedirs(out_dir, exist_ok=True)
    unet = UNet2DModel.from_pretrained(model_dir)
    unet.train()  # as the other fixtures (dropout 0: identical math)
    null = unet.config.num_class_embeds - 1
    sched = DDIMScheduler()  # defaults: linear betas, clip_sample, set_alpha_to_one, leading
    sched.set_timesteps(STEPS)
    g = torch.Generator().manual_seed(4321)
    labels = torch.tensor([0, 4, 9, null], dtype=torch.long)  # the last: the null class itself
    n = labels.shape[0]
    x = torch.randn(n, 1, 12, 12, generator=g)
    x_T = x.clone()
    nulls = torch.full_like(labels, null)
    x0_hats = []
    with torch.no_grad():
        for t in sched.timesteps:
            eps = unet(torch.cat([x, x]), t, class_labels=torch.cat([nulls, labels])).sample
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + GUIDANCE * (eps_c - eps_u)
            out = sched.step(eps, t, x, eta=0.0)
            x0_hats.append(out.pred_original_sample)
            x = out.prev_sample
    tensors = {
        "x_T": x_T.contiguous(),
        "x_0": x.contiguous(),
        "x0_hat": torch.stack(x0_hats, dim=1).contiguous(),  # (N, S, C, H, W)
        "timesteps": sched.timesteps.to(torch.int32).contiguous(),
        "class_labels": labels.to(torch.int32).contiguous(),
    }
    path = os.path.join(out_dir, "cfg_ddim_cls_fm3_12x12.safetensors")
    meta = {"steps": str(STEPS), "eta": "0", "guidance": repr(GUIDANCE)}
    tc.save_safetensors_sorted(tensors, path, meta)  # sorted metadata: reproducible bytes
    tc.log(f"wrote {path}")


if __name__ == "__main__":
    main()
