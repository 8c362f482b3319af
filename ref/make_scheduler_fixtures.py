"""make_scheduler_fixtures.py: writes the DDPMScheduler / DDIMScheduler fixtures that
tests/test_schedule.c compares the C schedules and samplers against (unet2d.md sections 8 and 9).

Everything is computed by the real diffusers schedulers on the CPU in float32 and written as small
.npy files (numpy's format; tests/helpers/fixture_npy.c reads them) under tests/fixtures/sched/:

  <config>/scheduler_config.json   save_config of each scheduler below (the C parser reads them)
  betas_<s>.npy, alphas_cumprod_<s>.npy   float32 (1000,) tables, s = linear, cos, scaled
  timesteps.npy                    int64, all timestep lists of set_timesteps, concatenated
  timesteps_index.npy              int64 (L, 6): kind (0 DDPM, 1 DDIM), spacing (0 leading,
                                   1 linspace, 2 trailing), steps_offset, n, start, length
  ddpm_step_meta.npy               int64 (K, 4): config id, num_inference_steps (0: none), t, prev
  ddpm_step_{xt,eps,z,prev,x0}.npy float32 (K, 2, 1, 4, 4): inputs, the noise the step drew from its
                                   generator (re-drawn from a twin generator), outputs
  ddpm_step_coeffs.npy             float32 (K, 5): the step's scalars as torch computes them (0-dim
                                   float32 tensors): sqrt(beta_prod_t), sqrt(alpha_prod_t),
                                   pred_original_sample_coeff, current_sample_coeff, sqrt(variance)
  ddim_step_meta.npy               int64 (K, 4): config id, num_inference_steps, t, use_clipped
  ddim_step_eta.npy                float32 (K,)
  ddim_step_{xt,eps,z,prev,x0}.npy float32 (K, 2, 1, 4, 4) (z passed as variance_noise)
  ddim_step_coeffs.npy             float32 (K, 5): sqrt(beta_prod_t), sqrt(alpha_prod_t),
                                   sqrt(alpha_prod_t_prev), sqrt(1 - alpha_prod_t_prev - std^2), std
  add_noise_{x0,eps}.npy, add_noise_t.npy, add_noise_out_{linear,cos}.npy
  ddim_loop_{xT,timesteps,out}.npy 10 DDIM steps (eta 0) with the fake model eps = 0.1 x
  ddpm_loop_{xT,timesteps,z,out}.npy 10 DDPM steps with eps = 0.1 x + 0.05, one generator as
                                   DDPMPipeline (no draw at t = 0: z is zero there)

The coefficient fixtures exist because torch's float32 sqrt on the CPU is MKL's vsSqrt, which is
not correctly rounded (about 20% of inputs 1 ulp off on an AVX-512 machine): with torch's scalars
the C per-element code reproduces diffusers bit for bit; with its own correctly rounded sqrtf the
scalars are within 1-2 ulp.

Config ids: 0 ddpm_linear, 1 ddpm_cos, 2 ddpm_scaled, 3 ddim_default, 4 ddim_offset1,
5 ddim_trailing.

Run: /work/venv-ref/bin/python ref/make_scheduler_fixtures.py [--out tests/fixtures/sched]
     /work/venv-ref/bin/python ref/make_scheduler_fixtures.py --check-config DIR
       (loads a scheduler_config.json written by jtrak with DDPMScheduler and DDIMScheduler;
       exit status 1 if diffusers warns about a field)
Deterministic: fixed seeds, 1 thread.
"""

import argparse
import logging
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin_common as tc  # noqa: E402

from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

SHAPE = (2, 1, 4, 4)
SPACINGS = ["leading", "linspace", "trailing"]

CONFIGS = [
    ("ddpm_linear", DDPMScheduler, dict()),
    ("ddpm_cos", DDPMScheduler, dict(beta_schedule="squaredcos_cap_v2", clip_sample=False,
                                     timestep_spacing="trailing")),
    ("ddpm_scaled", DDPMScheduler, dict(beta_schedule="scaled_linear", beta_start=0.00085,
                                        beta_end=0.012, clip_sample_range=2.0,
                                        timestep_spacing="linspace", steps_offset=1)),
    ("ddim_default", DDIMScheduler, dict()),
    ("ddim_offset1", DDIMScheduler, dict(set_alpha_to_one=False, steps_offset=1)),
    ("ddim_trailing", DDIMScheduler, dict(timestep_spacing="trailing", clip_sample=False)),
]
CONFIG_ID = {name: i for i, (name, _, _) in enumerate(CONFIGS)}


def save(out, name, arr):
    arr = np.ascontiguousarray(arr)
    assert arr.dtype in (np.float32, np.int64), (name, arr.dtype)
    np.save(os.path.join(out, name + ".npy"), arr)


def make(out, cid):
    name, cls, kw = CONFIGS[cid]
    return cls.from_pretrained(os.path.join(out, name))


def randn(gen, shape=SHAPE, scale=1.0):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * scale


def write_configs(out):
    for name, cls, kw in CONFIGS:
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        cls(**kw).save_config(d)
        tc.log(f"wrote {d}/scheduler_config.json")


def write_tables(out):
    for tag, cid in (("linear", 0), ("cos", 1), ("scaled", 2)):
        s = make(out, cid)
        save(out, f"betas_{tag}", s.betas.numpy())
        save(out, f"alphas_cumprod_{tag}", s.alphas_cumprod.numpy())
        print(f"table {tag}: abar[0] = {s.alphas_cumprod[0].item():.8g}, "
              f"abar[999] = {s.alphas_cumprod[-1].item():.6g}")


def write_timesteps(out):
    flat, index = [], []
    lists = []
    for kind, n_list in ((0, (1000, 50)), (1, (50, 10))):
        for n in n_list:
            for sp in range(3):
                for off in (0, 1):
                    lists.append((kind, sp, off, n))
    for n in (1, 2, 3, 7, 13, 61, 333):  # odd counts; trailing 61 is numpy's n+1 quirk
        for sp in range(3):
            lists.append((1, sp, 0, n))
    for kind, sp, off, n in lists:
        cls = DDPMScheduler if kind == 0 else DDIMScheduler
        s = cls(timestep_spacing=SPACINGS[sp], steps_offset=off)
        s.set_timesteps(n)
        ts = s.timesteps.numpy().astype(np.int64)
        index.append([kind, sp, off, n, len(flat), len(ts)])
        flat.extend(ts.tolist())
    save(out, "timesteps", np.array(flat, dtype=np.int64))
    save(out, "timesteps_index", np.array(index, dtype=np.int64))
    print(f"timesteps: {len(index)} lists, {len(flat)} entries")


def ddpm_coeffs(s, t, prev):
    """The scalars of DDPMScheduler.step as torch computes them (0-dim float32 tensors)."""
    ap = s.alphas_cumprod[t]
    app = s.alphas_cumprod[prev] if prev >= 0 else s.one
    bp, bpp = 1 - ap, 1 - app
    ca = ap / app
    cb = 1 - ca
    c0 = (app ** (0.5) * cb) / bp
    c1 = ca ** (0.5) * bpp / bp
    std = s._get_variance(torch.tensor(t)) ** 0.5
    return [v.item() for v in (bp ** (0.5), ap ** (0.5), c0, c1, std)]


def ddim_coeffs(s, t, n, eta):
    """The scalars of DDIMScheduler.step as torch computes them (0-dim float32 tensors)."""
    prev = t - s.config.num_train_timesteps // n
    ap = s.alphas_cumprod[t]
    app = s.alphas_cumprod[prev] if prev >= 0 else s.final_alpha_cumprod
    bp = 1 - ap
    std = eta * s._get_variance(t, prev) ** (0.5)
    dc = (1 - app - std**2) ** (0.5)
    return [v.item() for v in (bp ** (0.5), ap ** (0.5), app ** (0.5), dc, std)]


def write_ddpm_steps(out):
    # (config id, num_inference_steps or 0 for none, t)
    cases = [(0, 0, 999), (0, 0, 500), (0, 0, 1), (0, 0, 0),
             (0, 50, 980), (0, 50, 20), (0, 50, 0),
             (1, 50, 999), (1, 50, 19), (1, 0, 300),
             (2, 50, 999), (2, 50, 0)]
    meta, coeffs, cols = [], [], {k: [] for k in ("xt", "eps", "z", "prev", "x0")}
    g = torch.Generator().manual_seed(1234)
    for k, (cid, n, t) in enumerate(cases):
        s = make(out, cid)
        if n:
            s.set_timesteps(n)
            assert t in s.timesteps.tolist(), (cid, n, t)
        prev = int(s.previous_timestep(torch.tensor(t)))
        xt = randn(g, scale=1.5)
        eps = randn(g)
        seed = 100 + k
        res = s.step(eps, torch.tensor(t), xt, generator=torch.Generator().manual_seed(seed))
        # The noise DDPMScheduler.step drew: randn_tensor(shape, generator) = torch.randn of the
        # same shape from the same generator state (only when t > 0).
        z = randn(torch.Generator().manual_seed(seed)) if t > 0 else torch.zeros(SHAPE)
        meta.append([cid, n, t, prev])
        coeffs.append(ddpm_coeffs(s, t, prev))
        for key, v in (("xt", xt), ("eps", eps), ("z", z), ("prev", res.prev_sample),
                       ("x0", res.pred_original_sample)):
            cols[key].append(v.numpy())
    save(out, "ddpm_step_meta", np.array(meta, dtype=np.int64))
    save(out, "ddpm_step_coeffs", np.array(coeffs, dtype=np.float32))
    for key, v in cols.items():
        save(out, f"ddpm_step_{key}", np.stack(v).astype(np.float32))
    print(f"ddpm steps: {len(cases)} cases")


def write_ddim_steps(out):
    # (config id, num_inference_steps, t, eta, use_clipped_model_output)
    cases = [(3, 50, 980, 0.0, 0), (3, 50, 20, 0.0, 0), (3, 50, 0, 0.0, 0),
             (3, 50, 980, 0.5, 0), (3, 50, 0, 0.5, 0), (3, 50, 480, 0.3, 0),
             (3, 50, 480, 0.5, 1),
             (4, 10, 901, 0.0, 0), (4, 10, 1, 0.0, 0), (4, 10, 1, 0.5, 0), (4, 10, 501, 1.0, 1),
             (5, 10, 999, 0.0, 0), (5, 10, 99, 0.5, 0)]
    meta, etas, coeffs, cols = [], [], [], {k: [] for k in ("xt", "eps", "z", "prev", "x0")}
    g = torch.Generator().manual_seed(5678)
    for cid, n, t, eta, clipped in cases:
        s = make(out, cid)
        s.set_timesteps(n)
        assert t in s.timesteps.tolist(), (cid, n, t)
        xt = randn(g, scale=1.5)
        eps = randn(g)
        z = randn(g)
        res = s.step(eps, torch.tensor(t), xt, eta=eta, use_clipped_model_output=bool(clipped),
                     variance_noise=z)
        meta.append([cid, n, t, clipped])
        etas.append(eta)
        coeffs.append(ddim_coeffs(s, t, n, eta))
        for key, v in (("xt", xt), ("eps", eps), ("z", z), ("prev", res.prev_sample),
                       ("x0", res.pred_original_sample)):
            cols[key].append(v.numpy())
    save(out, "ddim_step_meta", np.array(meta, dtype=np.int64))
    save(out, "ddim_step_eta", np.array(etas, dtype=np.float32))
    save(out, "ddim_step_coeffs", np.array(coeffs, dtype=np.float32))
    for key, v in cols.items():
        save(out, f"ddim_step_{key}", np.stack(v).astype(np.float32))
    print(f"ddim steps: {len(cases)} cases")


def write_add_noise(out):
    g = torch.Generator().manual_seed(42)
    x0 = torch.rand((4, 3, 2, 2), generator=g) * 2 - 1
    eps = torch.randn((4, 3, 2, 2), generator=g)
    t = torch.tensor([0, 1, 500, 999], dtype=torch.int64)
    save(out, "add_noise_x0", x0.numpy())
    save(out, "add_noise_eps", eps.numpy())
    save(out, "add_noise_t", t.numpy())
    for tag, cid in (("linear", 0), ("cos", 1)):
        save(out, f"add_noise_out_{tag}", make(out, cid).add_noise(x0, eps, t).numpy())


def write_loops(out):
    g = torch.Generator().manual_seed(99)
    # DDIM, eta 0, 10 steps, fake model eps = 0.1 x.
    s = make(out, CONFIG_ID["ddim_default"])
    s.set_timesteps(10)
    x = randn(g)
    save(out, "ddim_loop_xT", x.numpy())
    save(out, "ddim_loop_timesteps", s.timesteps.numpy().astype(np.int64))
    outs = []
    for t in s.timesteps:
        x = s.step(0.1 * x, t, x, eta=0.0).prev_sample
        outs.append(x.numpy())
    save(out, "ddim_loop_out", np.stack(outs))
    # DDPM, 10 steps, eps = 0.1 x + 0.05, one generator for the whole loop (as DDPMPipeline).
    s = make(out, CONFIG_ID["ddpm_linear"])
    s.set_timesteps(10)
    x = randn(g, scale=1.2)
    save(out, "ddpm_loop_xT", x.numpy())
    save(out, "ddpm_loop_timesteps", s.timesteps.numpy().astype(np.int64))
    gen, twin = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    outs, zs = [], []
    for t in s.timesteps:
        x = s.step(0.1 * x + 0.05, t, x, generator=gen).prev_sample
        zs.append((randn(twin) if int(t) > 0 else torch.zeros(SHAPE)).numpy())
        outs.append(x.numpy())
    save(out, "ddpm_loop_z", np.stack(zs))
    save(out, "ddpm_loop_out", np.stack(outs))


def check_config(path):
    """Loads a jtrak-written scheduler_config.json with both diffusers classes.

    Exit status 1 if diffusers logs a warning (an unexpected or dropped field)."""
    records = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Catch(level=logging.WARNING)
    logging.getLogger("diffusers").addHandler(handler)
    ddpm = DDPMScheduler.from_pretrained(path)
    ddim = DDIMScheduler.from_config(ddpm.config)
    logging.getLogger("diffusers").removeHandler(handler)
    for r in records:
        print(f"warning: {r.getMessage()}")
    print(dict(ddpm.config))
    print(f"DDIM set_alpha_to_one = {ddim.config.set_alpha_to_one}")
    return 1 if records else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(tc.REPO_ROOT, "tests", "fixtures", "sched"))
    ap.add_argument("--check-config", metavar="DIR")
    args = ap.parse_args()
    if args.check_config:
        sys.exit(check_config(args.check_config))
    tc.set_determinism(1)
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    write_configs(args.out)
    write_tables(args.out)
    write_timesteps(args.out)
    write_ddpm_steps(args.out)
    write_ddim_steps(args.out)
    write_add_noise(args.out)
    write_loops(args.out)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(args.out) for f in fs)
    print(f"fixtures: {args.out}, {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
