"""make_attrib_fixtures.py: per-example gradient fixtures for jtrak's attribution output functions
(src/attrib/outfn.h, method.md 1.3, 1.4, 2.2).

With the fm3_12x12 fixture model (diffusers UNet2DModel.from_pretrained, train mode as the other
fixtures) and diffusers' DDPMScheduler() schedule, for N = 2 examples x0 with S = 2 draws each
(timesteps t include 0 and 999, noise eps), it computes exactly as Journey-TRAK's
gradient_computers.py does: torch.func.vmap over the examples of torch.func.grad of
functional_call(model, (params, buffers), x_t[None], t[None]) -> scalar, one vmapped call per draw
slot, accumulated over the draws (a sum), every parameter flattened in named_parameters() order
and concatenated into (N, P). Two output functions:
    loss    F.mse_loss(eps_theta, eps)      (Journey-TRAK / TRAK, method.md 1.4)
    sqnorm  (eps_theta ** 2).mean()         (D-TRAK's "square" output)
x_t = scheduler.add_noise(x0, eps, t) is computed outside the vmap (it holds no parameter).

Written to tests/fixtures/attrib/fm3_12x12_grads.safetensors (about 600 KB):
    x0 (N,1,12,12), t (N,S) int32, eps (N,S,1,12,12), x_t (N,S,1,12,12),
    value_loss (N,), value_sqnorm (N,)                 f summed over the draws
    grad_loss (N,P)                                    full per-example gradients, loss
    grad_sqnorm (1,P)                                  full gradient of example SQNORM_FULL, sqnorm
    grad_sqnorm_sumsq (N,n_tensors)                    per-tensor sums of squares, sqnorm, float64
metadata: param_names (comma-separated, named_parameters() order) and the float32-vs-float64 and
vmap-vs-plain-autograd differences that justify the C test's tolerances.

Run (from the repository root): /work/venv-ref/bin/python ref/make_attrib_fixtures.py
(or ref/.venv/bin/python). Deterministic: fixed seed, 1 thread.
"""

import argparse
import copy
import os
import sys
import warnings

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin_common as tc  # noqa: E402

SEED = 5005
N, S = 2, 2
TIMESTEPS = [[0, 617], [999, 250]]  # (N, S): both ends of the schedule and two interior steps
SQNORM_FULL = 1  # the example whose full sqnorm gradient is stored (size budget)


def load_model(model_dir):
    from diffusers import UNet2DModel

    model = UNet2DModel.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.train()  # the unet fixtures were made in train mode (no dropout: same math, see ref/README.md)
    return model


def make_inputs(in_ch, h, w):
    from diffusers import DDPMScheduler

    gen = torch.Generator().manual_seed(SEED)
    x0 = 2.0 * torch.rand((N, in_ch, h, w), generator=gen) - 1.0
    eps = torch.randn((N, S, in_ch, h, w), generator=gen)
    t = torch.tensor(TIMESTEPS, dtype=torch.int64)
    sched = DDPMScheduler()  # defaults = Journey-TRAK's schedule = jtrak's sched_config_default
    x_t = sched.add_noise(x0[:, None].expand(N, S, in_ch, h, w).reshape(N * S, in_ch, h, w),
                          eps.reshape(N * S, in_ch, h, w), t.reshape(N * S))
    return x0, t, eps, x_t.reshape(N, S, in_ch, h, w)


def out_loss(out, eps):
    return F.mse_loss(out, eps)


def out_sqnorm(out, eps):
    return (out ** 2).mean()


OUTFNS = {"loss": out_loss, "sqnorm": out_sqnorm}


def per_example_grads(model, outfn, x_t, t, eps):
    """Journey-TRAK's featurizing gradient: vmap over examples of grad of the scalar output, one call
    per draw slot, summed over the slots. Returns ({name: (N, *shape)}, values (N,))."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def f(p, xt, ts, e):
        out = functional_call(model, (p, buffers), args=(xt[None], ts[None])).sample
        v = outfn(out, e[None])
        return v, v

    g_fn = vmap(grad(f, has_aux=True), in_dims=(None, 0, 0, 0))
    total, values = None, torch.zeros(N, dtype=torch.float64)
    for s in range(S):
        g, v = g_fn(params, x_t[:, s], t[:, s], eps[:, s])
        values += v.double()
        total = g if total is None else {n: total[n] + g[n] for n in total}
    return total, values


def plain_grads(model, outfn, x_t, t, eps):
    """The same gradients one example and one draw at a time with ordinary autograd (cross-check)."""
    rows = {n: torch.zeros((N,) + p.shape, dtype=p.dtype) for n, p in model.named_parameters()}
    for b in range(N):
        for s in range(S):
            model.zero_grad(set_to_none=True)
            out = model(x_t[b, s][None], t[b, s][None]).sample
            outfn(out, eps[b, s][None]).backward()
            for n, p in model.named_parameters():
                rows[n][b] += p.grad
    model.zero_grad(set_to_none=True)
    return rows


def flat(g, names):
    return torch.cat([g[n].reshape(N, -1) for n in names], dim=1).contiguous()


def rel_err_per_tensor(a, b, names):
    """max over tensors (to_k.bias left out: its true gradient is 0) and examples of
    max|a - b| / max|b| within the tensor, and the tensor where it happens."""
    worst = (0.0, "")
    for n in names:
        if n.endswith("to_k.bias"):
            continue
        for e in range(N):
            scale = b[n][e].abs().max().item()
            r = (a[n][e].double() - b[n][e].double()).abs().max().item() / max(scale, 1e-30)
            worst = max(worst, (r, n))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(tc.REPO_ROOT, "tests", "fixtures", "unet", "fm3_12x12"))
    ap.add_argument("--out", default=os.path.join(tc.REPO_ROOT, "tests", "fixtures", "attrib"))
    args = ap.parse_args()
    tc.set_determinism(1)
    tc.quiet_diffusers()
    # vmap has no batching rule for CPU SDPA yet and falls back to a loop (slower, same values).
    warnings.filterwarnings("ignore", message="There is a performance drop")
    import diffusers

    model = load_model(args.model)
    cfg = model.config
    names = [n for n, _ in model.named_parameters()]
    P = tc.count_params(model)
    x0, t, eps, x_t = make_inputs(cfg.in_channels, cfg.sample_size, cfg.sample_size)

    io = {"x0": x0, "t": t.to(torch.int32), "eps": eps, "x_t": x_t}
    stats = {}
    m64 = copy.deepcopy(model).double()
    print(f"## {os.path.basename(args.model)}: P = {P:,d} in {len(names)} tensors, N = {N}, S = {S}, t = {TIMESTEPS}")
    for fname, outfn in OUTFNS.items():
        g, values = per_example_grads(model, outfn, x_t, t, eps)
        g64, values64 = per_example_grads(m64, outfn, x_t.double(), t, eps.double())
        gp = plain_grads(model, outfn, x_t, t, eps)
        r64, n64 = rel_err_per_tensor(g, g64, names)
        rp, npl = rel_err_per_tensor(g, gp, names)
        a64 = max((g[n].double() - g64[n]).abs().max().item() for n in names)
        gmax = max(g[n].abs().max().item() for n in names)
        dval = (values - values64).abs().max().item()
        stats[f"{fname}_max_tensor_rel_grad_f32_vs_f64"] = f"{r64:.3e}"
        stats[f"{fname}_max_abs_grad_f32_vs_f64"] = f"{a64:.3e}"
        stats[f"{fname}_max_tensor_rel_grad_vmap_vs_autograd"] = f"{rp:.3e}"
        stats[f"{fname}_max_abs_grad"] = f"{gmax:.3e}"
        stats[f"{fname}_abs_value_f32_vs_f64"] = f"{dval:.3e}"
        print(f"{fname:7s} values {values.tolist()}  max|g| {gmax:.3e}")
        print(f"        f32 vs f64: max|dg| {a64:.2e}, max per-tensor rel {r64:.2e} ({n64}), |dvalue| {dval:.1e}")
        print(f"        vmap vs plain autograd: max per-tensor rel {rp:.2e} ({npl})")
        io["value_" + fname] = values.float()
        G = flat(g, names)
        if fname == "loss":
            io["grad_loss"] = G
        else:
            io["grad_sqnorm"] = G[SQNORM_FULL:SQNORM_FULL + 1].clone()
            io["grad_sqnorm_sumsq"] = torch.stack(
                [torch.stack([(g[n][e].double() ** 2).sum() for n in names]) for e in range(N)]).contiguous()

    md = {
        "format": "pt",
        "generator": "ref/make_attrib_fixtures.py",
        "model": "tests/fixtures/unet/fm3_12x12",
        "torch": torch.__version__.split("+")[0],
        "diffusers": diffusers.__version__,
        "seed": str(SEED),
        "scheduler": "DDPMScheduler() defaults",
        "method": "vmap over examples of torch.func.grad(functional_call), one call per draw, summed",
        "sqnorm_full_example": str(SQNORM_FULL),
        "param_names": ",".join(names),
    }
    md.update(stats)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "fm3_12x12_grads.safetensors")
    tc.save_safetensors_sorted({k: v.contiguous() for k, v in io.items()}, path, metadata=md)
    print(f"wrote {path} ({os.path.getsize(path):,d} bytes)")


if __name__ == "__main__":
    main()
