"""make_vae_fixtures.py: writes the AutoencoderKL fixtures the C tests compare against (ldm.md sections 3
and 6) and configs/vae-fm.json (the demo VAE, ldm.md 8.2).

vae3_32: diffusers' real AutoencoderKL with seeded random weights (every GroupNorm affine randomised), a
fixed batch x (3, 1, 32, 32) in [-1, 1], one float32 forward/backward of jtrak train-vae's loss and 3 AdamW
steps:

    moments = quant_conv(encoder(x))                       # (B, 2z, h, w), before the split
    mean, logvar = moments.chunk(2, dim=1); logvar = clamp(logvar, -30, 20)   (DiagonalGaussianDistribution)
    z   = mean + exp(0.5 * logvar) * noise                 # noise ~ N(0, I) from a fixed generator
    dec = decoder(post_quant_conv(z))
    kl  = 0.5 * sum_{C,H,W}(mean^2 + exp(logvar) - 1 - logvar)          # per example (diffusers .kl())
    loss = F.mse_loss(dec, x) + beta * kl.mean()           # beta = 1e-3

tests/fixtures/vae/vae3_32/ = config.json + diffusion_pytorch_model.safetensors (save_pretrained, F32) +
io.safetensors. vae_legacy/ holds the same weights with the mid-block attentions saved under the legacy
names query/key/value/proj_attn (what diffusers 0.42.1's ModelMixin._fix_state_dict_keys_on_load renames
back, for modules built with _from_deprecated_attn_block: the VAE's two mid-block attentions) and the
forward-only io. Both folders are re-loaded with AutoencoderKL.from_pretrained at the end and checked bit
for bit, then cross-checked against a second float32 implementation (the classic AttnProcessor, 2 threads).

Run: python ref/make_vae_fixtures.py [--out tests/fixtures/vae] [--configs configs]
Results (tables) go to stdout, progress to stderr. Deterministic: fixed seeds, 1 thread.
"""

import argparse
import copy
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_unet_fixtures as mu  # noqa: E402  (AdamW settings, atomic folder writes, tolerances)
import twin_common as tc  # noqa: E402

BATCH = 3
BETA = 1e-3

SPEC = dict(
    name="vae3_32",
    covers="AutoencoderKL 3 levels (16,32,32), layers_per_block 1 (2 resnets per decoder level), "
    "in=out=1, latent_channels 4, norm_num_groups 4 (eps 1e-6), 32x32 -> 4x8x8 latents (two "
    "Downsample2D with padding 0 = pad right/bottom), mid attention (1 head, d = 32) in encoder and "
    "decoder, quant_conv and post_quant_conv, conv_shortcut 16->32",
    seed=10010,
    hw=(32, 32),
    cfg=dict(
        in_channels=1, out_channels=1, block_out_channels=(16, 32, 32), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    ),
)
LEGACY_NAME = "vae_legacy"

# configs/vae-fm.json: the demo VAE (f = 4: 1x32x32 -> 4x8x8), ldm.md 3 and 8.1: 953,413 parameters
CONFIGS = [
    ("vae-fm", dict(
        in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
        latent_channels=4, norm_num_groups=8, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3), 953413, 152),
]


def build_vae(cfg, seed):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**cfg)


def build_fixture_model(spec):
    model = build_vae(spec["cfg"], spec["seed"])
    mu.randomize_groupnorms(model, torch.Generator().manual_seed(spec["seed"] + 1))
    model.train()
    return model


def make_inputs(spec, model):
    gen = torch.Generator().manual_seed(spec["seed"] + 2)
    h, w = spec["hw"]
    x = -1.0 + 2.0 * torch.rand((BATCH, model.config.in_channels, h, w), generator=gen)
    f = 2 ** (len(model.config.block_out_channels) - 1)
    noise = torch.randn((BATCH, model.config.latent_channels, h // f, w // f), generator=gen)
    return x, noise


def vae_forward(model, x, noise):
    """Returns the dict of every intermediate the fixture stores (and the loss), through diffusers' own
    AutoencoderKL.encode / DiagonalGaussianDistribution / decode."""
    dist = model.encode(x).latent_dist
    z = dist.mean + dist.std * noise  # = dist.sample(generator) with the generator that drew noise
    dec = model.decode(z).sample
    kl = dist.kl()  # (B,): 0.5 * sum(mean^2 + var - 1 - logvar) over (C, H, W)
    recon = F.mse_loss(dec, x)
    loss = recon + BETA * kl.mean()
    return dict(moments=dist.parameters, mean=dist.mean, logvar=dist.logvar, z=z, dec=dec, kl=kl,
                recon=recon.reshape(()), loss=loss.reshape(()))


def grads_of(model, x, noise):
    model.zero_grad(set_to_none=True)
    r = vae_forward(model, x, noise)
    r["loss"].backward()
    return ({k: v.detach() for k, v in r.items()},
            {n: p.grad.detach().clone() for n, p in model.named_parameters()})


def adamw_run(model, x, noise):
    """mu.ADAMW_STEPS torch.optim.AdamW steps (foreach=False) on the same x and the same posterior noise."""
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), foreach=False, **mu.ADAMW)
    losses = []
    for _ in range(mu.ADAMW_STEPS):
        opt.zero_grad(set_to_none=True)
        loss = vae_forward(m, x, noise)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.detach().item())
    return torch.tensor(losses, dtype=torch.float32), {n: p.detach().clone() for n, p in m.named_parameters()}


def metadata(spec, extra):
    md = mu.metadata(spec, extra)
    md.update({"generator": "ref/make_vae_fixtures.py",
               "loss": "F.mse_loss(dec, x) + beta * kl.mean(), kl = DiagonalGaussianDistribution.kl() per example",
               "beta": repr(BETA)})
    return md


FWD_KEYS = ("moments", "mean", "logvar", "z", "dec", "kl", "recon", "loss")


def make_fixture(spec, out_root):
    model = build_fixture_model(spec)
    x, noise = make_inputs(spec, model)
    # noise is what DiagonalGaussianDistribution.sample draws from the same generator state
    gen = torch.Generator().manual_seed(spec["seed"] + 2)
    torch.rand(x.shape, generator=gen)
    with torch.no_grad():
        s = model.encode(x).latent_dist.sample(generator=gen)
        d_sample = (s - vae_forward(model, x, noise)["z"]).abs().max().item()

    r, grads = grads_of(model, x, noise)
    m64 = copy.deepcopy(model).double()
    r64, grads64 = grads_of(m64, x.double(), noise.double())
    d_fwd = {k: (r[k].double() - r64[k]).abs().max().item() for k in FWD_KEYS}
    d_grad_abs = max((grads[n].double() - grads64[n]).abs().max().item() for n in grads)
    worst_rel_name, d_grad_rel = max(((n, mu.rel_err(grads[n].double(), grads64[n])) for n in grads
                                      if not n.endswith("to_k.bias")), key=lambda p: p[1])
    tok = max(grads[n].abs().max().item() for n in grads if n.endswith("to_k.bias"))
    adam_losses, adam_params = adamw_run(model, x, noise)
    _, adam64 = adamw_run(copy.deepcopy(model).double(), x.double(), noise.double())
    d_adam = {n: (adam_params[n].double() - adam64[n]).abs().max().item() for n in adam_params}
    d_adam_main = max(v for n, v in d_adam.items() if not n.endswith("to_k.bias"))
    d_adam_tok = max(v for n, v in d_adam.items() if n.endswith("to_k.bias"))

    io = {"x": x, "noise": noise, "beta": torch.tensor(BETA), "adamw3_losses": adam_losses}
    io.update({k: r[k] for k in FWD_KEYS})
    for n in grads:
        io["grad." + n] = grads[n]
    for n in adam_params:
        io["adamw3." + n] = adam_params[n]
    io = {k: v.contiguous().float() for k, v in io.items()}
    stats = {f"max_abs_{k}_f32_vs_f64": f"{v:.3e}" for k, v in d_fwd.items()}
    stats.update(max_abs_grad_f32_vs_f64=f"{d_grad_abs:.3e}", max_tensor_rel_grad_f32_vs_f64=f"{d_grad_rel:.3e}",
                 max_abs_adamw3_f32_vs_f64_except_to_k_bias=f"{d_adam_main:.3e}",
                 max_abs_adamw3_f32_vs_f64_to_k_bias=f"{d_adam_tok:.3e}")

    def writer(d):
        model.save_pretrained(d, safe_serialization=True)
        tc.save_safetensors_sorted(io, os.path.join(d, "io.safetensors"), metadata=metadata(spec, stats))

    mu.write_dir_atomically(os.path.join(out_root, spec["name"]), writer)
    row = dict(name=spec["name"], params=tc.count_params(model), tensors=len(grads), keys=len(io),
               d_fwd=d_fwd, d_grad_abs=d_grad_abs, d_grad_rel=d_grad_rel, worst_rel_name=worst_rel_name,
               tok=tok, d_adam_main=d_adam_main, d_adam_tok=d_adam_tok, d_sample=d_sample,
               loss=r["loss"].item(), recon=r["recon"].item(), kl=r["kl"].mean().item(),
               dec_absmax=r["dec"].abs().max().item(), logvar_range=(r["logvar"].min().item(), r["logvar"].max().item()))
    return model, (x, noise), row


def make_legacy(spec, model, inputs, out_root):
    """Same weights, mid-block attention keys renamed to query/key/value/proj_attn."""
    x, noise = inputs
    with torch.no_grad():
        r = vae_forward(model, x, noise)
    sd = {}
    for k, v in model.state_dict().items():
        if ".attentions." in k:
            for new, old in mu.LEGACY_RENAME.items():
                if ("." + new + ".") in k:
                    k = k.replace("." + new + ".", "." + old + ".")
                    break
        sd[k] = v.contiguous()
    n_renamed = sum(1 for k in sd if any("." + o + "." in k for o in mu.LEGACY_RENAME.values()))
    io = {"x": x, "noise": noise, "beta": torch.tensor(BETA)}
    io.update({k: r[k] for k in FWD_KEYS})
    io = {k: v.contiguous().float() for k, v in io.items()}

    def writer(d):
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(tc.config_json_text(model))
        save_file(sd, os.path.join(d, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        tc.save_safetensors_sorted(io, os.path.join(d, "io.safetensors"), metadata=metadata(
            dict(spec, name=LEGACY_NAME), {"variant": "vae3_32 weights, legacy attention key names (query/key/value/proj_attn)"}))

    mu.write_dir_atomically(os.path.join(out_root, LEGACY_NAME), writer)
    return n_renamed


def verify_dir(d, expect_grads):
    """from_pretrained the folder (train mode) and recompute every stored forward tensor (and gradient).
    Returns max |difference| (must be 0)."""
    from diffusers import AutoencoderKL

    m = AutoencoderKL.from_pretrained(d, torch_dtype=torch.float32)
    m.train()
    io = load_file(os.path.join(d, "io.safetensors"))
    names = [n for n, _ in m.named_parameters()]
    want = {"x", "noise", "beta"} | set(FWD_KEYS)
    if expect_grads:
        want |= {"adamw3_losses"} | {"grad." + n for n in names} | {"adamw3." + n for n in names}
    assert set(io) == want, (d, sorted(set(io) ^ want)[:10])
    assert io["beta"].item() == torch.tensor(BETA).item()
    r, grads = grads_of(m, io["x"], io["noise"])
    dmax = max((r[k] - io[k]).abs().max().item() for k in FWD_KEYS)
    if expect_grads:
        dmax = max(dmax, max((grads[n] - io["grad." + n]).abs().max().item() for n in names))
    return dmax


def cross_check(spec, d):
    """diffusers with the classic AttnProcessor (bmm + softmax) on 2 threads vs the fixture."""
    from diffusers.models.attention_processor import AttnProcessor

    io = load_file(os.path.join(d, "io.safetensors"))
    model = build_fixture_model(spec)
    model.set_attn_processor(AttnProcessor())
    torch.set_num_threads(2)
    try:
        r, g = grads_of(model, io["x"], io["noise"])
        _, a = adamw_run(model, io["x"], io["noise"])
    finally:
        torch.set_num_threads(1)
    d_fwd = {k: (r[k] - io[k]).abs().max().item() for k in FWD_KEYS}
    d_grad = max((g[n] - io["grad." + n]).abs().max().item() for n in g)
    d_adam = max((a[n] - io["adamw3." + n]).abs().max().item() for n in a)
    bad = [n for n in g
           if ((g[n] - io["grad." + n]).abs() > 5e-6 + 1e-3 * io["grad." + n].abs()).any()
           or ((a[n] - io["adamw3." + n]).abs() > mu.adamw3_tolerance(n, io["grad." + n])).any()]
    return d_fwd, d_grad, d_adam, bad


def write_configs(cfg_root):
    os.makedirs(cfg_root, exist_ok=True)
    rows = []
    for stem, cfg, expected, expected_tensors in CONFIGS:
        m = build_vae(cfg, 0)
        n, nt = tc.count_params(m), len(list(m.parameters()))
        if (n, nt) != (expected, expected_tensors):
            raise SystemExit(f"configs/{stem}.json: {n} parameters in {nt} tensors, expected {expected} in {expected_tensors}")
        enc = sum(p.numel() for k, p in m.named_parameters() if k.startswith("encoder.") or k.startswith("quant_conv."))
        path = os.path.join(cfg_root, stem + ".json")
        with open(path + ".tmp", "w") as f:
            f.write(tc.config_json_text(m))
        os.rename(path + ".tmp", path)
        rows.append((stem, n, nt, enc))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(tc.REPO_ROOT, "tests", "fixtures", "vae"))
    ap.add_argument("--configs", default=os.path.join(tc.REPO_ROOT, "configs"))
    args = ap.parse_args()
    tc.set_determinism(1)
    tc.quiet_diffusers()
    os.makedirs(args.out, exist_ok=True)

    print("## configs/ (AutoencoderKL)")
    for stem, n, nt, enc in write_configs(args.configs):
        print(f"{stem:8s} {n:>10,d} parameters in {nt} tensors (encoder + quant_conv {enc:,d}, "
              f"post_quant_conv + decoder {n - enc:,d})")

    tc.log(f"fixture {SPEC['name']} ...")
    model, inputs, r = make_fixture(SPEC, args.out)
    n_renamed = make_legacy(SPEC, model, inputs, args.out)

    print("\n## fixture: float32 vs float64 (same weights, same inputs)")
    print(f"{r['name']}: {r['params']:,d} parameters in {r['tensors']} tensors, {r['keys']} io keys; loss {r['loss']:.6f} "
          f"= recon {r['recon']:.6f} + beta * kl.mean() {r['kl']:.4f}; max|dec| {r['dec_absmax']:.3f}; "
          f"logvar in [{r['logvar_range'][0]:.3f}, {r['logvar_range'][1]:.3f}]")
    print("  max |f32 - f64|: " + ", ".join(f"{k} {v:.1e}" for k, v in r["d_fwd"].items()))
    print(f"  grads: max abs {r['d_grad_abs']:.1e}, max per-tensor rel {r['d_grad_rel']:.1e} ({r['worst_rel_name']}); "
          f"|grad to_k.bias| (true value 0) <= {r['tok']:.1e}")
    print(f"  AdamW x3: all but to_k.bias {r['d_adam_main']:.1e}, to_k.bias {r['d_adam_tok']:.1e}")
    print(f"  mean + std * noise vs latent_dist.sample(generator): max|diff| {r['d_sample']:.1e}")
    print(f"{LEGACY_NAME}: {n_renamed} tensors renamed to query/key/value/proj_attn")

    print("\n## loader check (AutoencoderKL.from_pretrained, train mode, recompute every stored tensor)")
    total = 0
    for name, full in ((SPEC["name"], True), (LEGACY_NAME, False)):
        d = os.path.join(args.out, name)
        dmax = verify_dir(d, full)
        size = mu.dir_size(d)
        total += size
        status = "ok" if dmax == 0.0 else "MISMATCH"
        print(f"{name:12s} {size:>10,d} bytes  max|diff| {dmax:.1e}  {status}")
        if status != "ok":
            raise SystemExit(f"{d}: reloaded model differs from io.safetensors by {dmax}")
    print(f"{'total':12s} {total:>10,d} bytes")

    print("\n## cross-check: diffusers with the classic AttnProcessor (bmm + softmax), 2 threads, vs the fixture")
    d_fwd, d_grad, d_adam, bad = cross_check(SPEC, os.path.join(args.out, SPEC["name"]))
    print(f"{SPEC['name']}: " + ", ".join(f"{k} {v:.1e}" for k, v in d_fwd.items())
          + f"; max|dgrad| {d_grad:.1e}; max|dadamw3| {d_adam:.1e}; outside README tolerances: {len(bad)}")
    if bad:
        raise SystemExit(f"{SPEC['name']}: {bad} outside the README tolerances")


if __name__ == "__main__":
    main()
