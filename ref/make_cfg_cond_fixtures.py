"""make_cfg_cond_fixtures.py: classifier-free guidance with a text context against diffusers. Runs diffusers'
DDIMScheduler (eta 0, clip_sample False: the latent-model convention, ldm.md 1.4) for 3 steps from fixed
noise with the text-conditional fixture model tests/fixtures/unet_cond/cond2_8x12 (UNet2DConditionModel,
context L = 7, D = 24) and guidance weight 3.0, in StableDiffusionPipeline's batch convention (ldm.md 5):

    ctx = cat([ctx_uncond.expand(N, L, D), ctx_cond])      # rows 0..N-1 unconditional, N..2N-1 conditional
    for t in timesteps:
        eps = model(cat([x, x]), t, encoder_hidden_states=ctx).sample
        eps_u, eps_c = eps.chunk(2)
        eps = eps_u + w * (eps_c - eps_u)
        x = sched.step(eps, t, x, eta=0).prev_sample

ctx_uncond is one explicit unconditional context row (1, L, D) broadcast to every sample (what a pipeline
gets by encoding the empty prompt ""); ctx_cond holds one context per sample (N, L, D). Writes
tests/fixtures/sampler/cfg_ddim_cond2_8x12.safetensors with x_T, ctx_cond, ctx_uncond, the timesteps, and
per step the state x_t after the step, the guided eps and x0_hat (pred_original_sample). It then reloads the
file and recomputes the loop with a second float32 implementation (the classic AttnProcessor, 2 threads) and
in float64 as cross-checks.

Run: python ref/make_cfg_cond_fixtures.py    (after make_ldm_fixtures.py)
"""

import copy
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin_common as tc  # noqa: E402

GUIDANCE = 3.0
STEPS = 3
MODEL = "cond2_8x12"
N = 3


def make_scheduler():
    from diffusers import DDIMScheduler

    # defaults (linear betas 1e-4..0.02, 1000 steps, set_alpha_to_one, timestep_spacing "leading",
    # steps_offset 0) except clip_sample: off for latent models
    sched = DDIMScheduler(clip_sample=False)
    sched.set_timesteps(STEPS)
    return sched


def guided_ddim(unet, x_T, ctx_cond, ctx_uncond):
    sched = make_scheduler()
    n = x_T.shape[0]
    ctx = torch.cat([ctx_uncond.expand(n, -1, -1), ctx_cond])
    x = x_T
    xs, epss, x0s = [], [], []
    with torch.no_grad():
        for t in sched.timesteps:
            eps = unet(torch.cat([x, x]), t, encoder_hidden_states=ctx).sample
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + GUIDANCE * (eps_c - eps_u)
            out = sched.step(eps, t, x, eta=0.0)
            x = out.prev_sample
            xs.append(x)
            epss.append(eps)
            x0s.append(out.pred_original_sample)
    return sched.timesteps, torch.stack(xs, 1), torch.stack(epss, 1), torch.stack(x0s, 1)


def main():
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor

    tc.set_determinism(1)
    tc.quiet_diffusers()
    model_dir = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "unet_cond", MODEL)
    out_dir = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "sampler")
    os.makedirs(out_dir, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(model_dir)
    unet.train()  # as the fixtures were computed (dropout 0: identical math)
    cfg = unet.config
    io = load_file(os.path.join(model_dir, "io.safetensors"))
    h, w = io["x"].shape[2:]
    L, D = io["ctx"].shape[1:]
    g = torch.Generator().manual_seed(2468)
    x_T = torch.randn(N, cfg.in_channels, h, w, generator=g)
    ctx_cond = torch.randn(N, L, D, generator=g)
    ctx_uncond = torch.randn(1, L, D, generator=g)
    timesteps, x_t, eps, x0_hat = guided_ddim(unet, x_T, ctx_cond, ctx_uncond)
    tensors = {
        "x_T": x_T.contiguous(),
        "ctx_cond": ctx_cond.contiguous(),
        "ctx_uncond": ctx_uncond.contiguous(),
        "timesteps": timesteps.to(torch.int32).contiguous(),
        "x_t": x_t.contiguous(),          # (N, S, C, H, W): the state after step s; x_t[:, -1] = x_0
        "eps": eps.contiguous(),          # (N, S, C, H, W): the guided eps of step s
        "x0_hat": x0_hat.contiguous(),    # (N, S, C, H, W): pred_original_sample of step s
        "x_0": x_t[:, -1].contiguous(),
    }
    path = os.path.join(out_dir, "cfg_ddim_cond2_8x12.safetensors")
    meta = {"model": f"tests/fixtures/unet_cond/{MODEL}", "steps": str(STEPS), "eta": "0", "guidance": repr(GUIDANCE),
            "clip_sample": "False", "scheduler": "DDIMScheduler(clip_sample=False), other fields default",
            "batch": "model(cat([x, x]), t, encoder_hidden_states=cat([ctx_uncond.expand(N, L, D), ctx_cond])); "
                     "eps_u, eps_c = chunk(2); eps = eps_u + guidance * (eps_c - eps_u)",
            "generator": "ref/make_cfg_cond_fixtures.py", "torch": torch.__version__.split("+")[0]}
    tc.save_safetensors_sorted(tensors, path, meta)
    tc.log(f"wrote {path}")

    # verify: reload the file, rerun from its inputs (bit for bit), then two independent recomputations
    f = load_file(path)
    assert set(f) == set(tensors)
    _, a, _, b = guided_ddim(unet, f["x_T"], f["ctx_cond"], f["ctx_uncond"])
    d_self = max((a - f["x_t"]).abs().max().item(), (b - f["x0_hat"]).abs().max().item())
    print(f"cfg_ddim_cond2_8x12: timesteps {f['timesteps'].tolist()}, max|x_0| {f['x_0'].abs().max().item():.3f}, "
          f"max|x0_hat| {f['x0_hat'].abs().max().item():.3f}; rerun from the file: max|diff| {d_self:.1e}")
    if d_self != 0.0:
        raise SystemExit("rerun differs from the written file")
    m2 = copy.deepcopy(unet)
    m2.set_attn_processor(AttnProcessor())
    torch.set_num_threads(2)
    _, a, e, b = guided_ddim(m2, f["x_T"], f["ctx_cond"], f["ctx_uncond"])
    torch.set_num_threads(1)
    print(f"  classic AttnProcessor, 2 threads: max|dx_t| {(a - f['x_t']).abs().max().item():.1e}  "
          f"max|deps| {(e - f['eps']).abs().max().item():.1e}  max|dx0_hat| {(b - f['x0_hat']).abs().max().item():.1e}")
    m64 = copy.deepcopy(unet).double()
    _, a, e, b = guided_ddim(m64, f["x_T"].double(), f["ctx_cond"].double(), f["ctx_uncond"].double())
    print(f"  float64 model:                    max|dx_t| {(a - f['x_t']).abs().max().item():.1e}  "
          f"max|deps| {(e - f['eps']).abs().max().item():.1e}  max|dx0_hat| {(b - f['x0_hat']).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
