"""make_ldm_fixtures.py: writes the UNet2DConditionModel fixtures the C tests compare against
(ldm.md section 6) and configs/{ldm-xs,jt-coco}.json (ldm.md 1.1 and 8.1).

For each small config below it builds diffusers' real UNet2DConditionModel with seeded random weights
(every GroupNorm and LayerNorm affine randomised too), runs one float32 forward/backward on a fixed batch
with a random text context (encoder_hidden_states) and 3 AdamW steps, and writes
tests/fixtures/unet_cond/<name>/ = config.json + diffusion_pytorch_model.safetensors (save_pretrained, F32)
+ io.safetensors (x, t, ctx, [class_labels], eps, out, loss, every gradient, parameters after AdamW).
Everything is re-loaded with UNet2DConditionModel.from_pretrained at the end and checked bit for bit, then
cross-checked against a second float32 implementation (diffusers with the classic AttnProcessor, 2 threads).

Run: python ref/make_ldm_fixtures.py [--out tests/fixtures/unet_cond] [--configs configs]
Results (tables) go to stdout, progress to stderr. Deterministic: fixed seeds, 1 thread.
"""

import argparse
import copy
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_unet_fixtures as mu  # noqa: E402  (shared: AdamW settings, atomic folder writes, tolerances)
import twin_common as tc  # noqa: E402

BATCH = 3

# The fixture configs (ldm.md section 6). in = out = 4 (a latent model's channels). Together they
# cover: cross-attention with a context width D different from every level's C (to_k/to_v are C x D),
# a context of L >= 2 tokens (with L = 1 the cross-attention softmax is the constant 1 and attn2.to_q /
# attn2.to_k get a gradient that is exactly zero: ldm.md 2.4), a non-square input, the 1x1-conv and the
# linear projections of Transformer2DModel, attention_head_dim as an int and as a per-level list
# (= NUMBER OF HEADS in UNet2DConditionModel; reversed for the up blocks, last entry for mid),
# class embeddings, layers_per_block 1 and 2 (L + 1 up resnets), only_cross_attention (attn1 takes
# k/v from the context too; the mid block ignores the flag) and transformer_layers_per_block 2.
FIXTURES = [
    dict(
        name="cond2_8x12",
        covers="(16,32), L=1, CrossAttnDown+Down / Up+CrossAttnUp, mid UNetMidBlock2DCrossAttn, "
        "2 heads (head dims 8 and 16), 4 groups, conv proj_in/proj_out, D=24 (!= C), ctx L=7, "
        "non-square 8x12 input",
        seed=7007,
        hw=(8, 12),
        t=[0.0, 999.0, 437.0],
        ctx_len=7,
        cfg=dict(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
            layers_per_block=1, norm_num_groups=4, attention_head_dim=2, cross_attention_dim=24,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        ),
    ),
    dict(
        name="cond3_lin_class",
        covers="(16,32,32), L=2 (3 up resnets per level), the JT pattern CrossAttnDown x2 + Down / "
        "Up + CrossAttnUp x2, use_linear_projection (2-D proj_in/proj_out), attention_head_dim "
        "[2,4,4] (heads per down level, reversed for up: up 1 has 4 heads, up 2 has 2; mid 4), "
        "num_class_embeds 5 (labels 4, 1, 4: the last row, two examples sharing it), D=12, ctx L=5",
        seed=8008,
        hw=(8, 8),
        t=[999.0, 0.0, 613.0],
        ctx_len=5,
        labels=[4, 1, 4],
        cfg=dict(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32),
            layers_per_block=2, norm_num_groups=4, attention_head_dim=[2, 4, 4], cross_attention_dim=12,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            use_linear_projection=True, num_class_embeds=5,
        ),
    ),
    dict(
        name="cond2_onlycross_t2",
        covers="cond2_8x12's pattern with only_cross_attention true (attn1 of the down/up "
        "transformers is cross-attention: to_k/to_v C x D; the mid block ignores the flag) and "
        "transformer_layers_per_block 2 (transformer_blocks.0 and .1 in every Transformer2D, mid "
        "included), D=20, ctx L=3, 2 heads",
        seed=9009,
        hw=(8, 8),
        t=[500.0, 0.0, 999.0],
        ctx_len=3,
        cfg=dict(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
            layers_per_block=1, norm_num_groups=4, attention_head_dim=2, cross_attention_dim=20,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            only_cross_attention=True, transformer_layers_per_block=2,
        ),
    ),
]

# configs/*.json: (file stem, UNet2DConditionModel kwargs, parameter count, tensor count)
CONFIGS = [
    # ldm.md 8.1: the demo's latent U-Net (4x8x8 latents, MiniLM context 16 x 384)
    ("ldm-xs", dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=4, cross_attention_dim=384, norm_num_groups=8), 905604, 208),
    # ldm.md 1.1: Journey-TRAK's MS-COCO U-Net (examples/utils.py::get_mscoco_model), 4x16x16 latents
    ("jt-coco", dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 256, 256), cross_attention_dim=1024,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=8), 57373316, 684),
]


def build_cond_unet(cfg, seed):
    """UNet2DConditionModel(**cfg) with PyTorch's default initialisation drawn after torch.manual_seed(seed)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**cfg)


def randomize_norms(model, gen):
    """Every GroupNorm AND LayerNorm: gamma = 1 + 0.1 randn, beta = 0.1 randn (the default 1/0 would leave
    the affine untested). Modules are visited in registration order, so the draw is deterministic."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def build_fixture_model(spec):
    model = build_cond_unet(spec["cfg"], spec["seed"])
    randomize_norms(model, torch.Generator().manual_seed(spec["seed"] + 1))
    model.train()
    return model


def make_inputs(spec, model):
    cfg = model.config
    gen = torch.Generator().manual_seed(spec["seed"] + 2)
    h, w = spec["hw"]
    x = -1.0 + 2.0 * torch.rand((BATCH, cfg.in_channels, h, w), generator=gen)
    eps = torch.randn((BATCH, cfg.out_channels, h, w), generator=gen)
    ctx = torch.randn((BATCH, spec["ctx_len"], cfg.cross_attention_dim), generator=gen)
    t = torch.tensor(spec["t"], dtype=torch.float32)
    labels = torch.tensor(spec["labels"], dtype=torch.int64) if "labels" in spec else None
    return x, t, ctx, eps, labels


def forward_loss(model, x, t, ctx, eps, labels=None):
    out = model(x, t, encoder_hidden_states=ctx, class_labels=labels).sample
    return out, F.mse_loss(out, eps)


def grads_of(model, x, t, ctx, eps, labels=None):
    model.zero_grad(set_to_none=True)
    out, loss = forward_loss(model, x, t, ctx, eps, labels)
    loss.backward()
    return out.detach(), loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def adamw_run(model, x, t, ctx, eps, labels=None):
    """mu.ADAMW_STEPS torch.optim.AdamW steps (foreach=False) on the same batch, as make_unet_fixtures does."""
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), foreach=False, **mu.ADAMW)
    losses = []
    for _ in range(mu.ADAMW_STEPS):
        opt.zero_grad(set_to_none=True)
        _, loss = forward_loss(m, x, t, ctx, eps, labels)
        loss.backward()
        opt.step()
        losses.append(loss.detach().item())
    return torch.tensor(losses, dtype=torch.float32), {n: p.detach().clone() for n, p in m.named_parameters()}


def metadata(spec, extra):
    md = mu.metadata(spec, extra)
    md["generator"] = "ref/make_ldm_fixtures.py"
    md["ctx"] = f"encoder_hidden_states (B, L={spec['ctx_len']}, D), N(0,1)"
    return md


def rel_err(a, b):
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)


def make_fixture(spec, out_root):
    model = build_fixture_model(spec)
    x, t, ctx, eps, labels = make_inputs(spec, model)
    out, loss, grads = grads_of(model, x, t, ctx, eps, labels)
    loss_pe = ((out - eps) ** 2).mean(dim=(1, 2, 3))

    # float64 run of the same weights and inputs (diffusers computes the sinusoidal embedding in float32
    # in both runs), to measure the float32 rounding of the network.
    m64 = copy.deepcopy(model).double()
    out64, loss64, grads64 = grads_of(m64, x.double(), t.double(), ctx.double(), eps.double(), labels)
    d_out = (out.double() - out64).abs().max().item()
    d_loss = abs(loss.item() - loss64.item())
    d_grad_abs = max((grads[n].double() - grads64[n]).abs().max().item() for n in grads)
    worst_rel_name, d_grad_rel = max(((n, rel_err(grads[n].double(), grads64[n])) for n in grads
                                      if grads64[n].abs().max().item() > 0), key=lambda p: p[1])
    adam_losses, adam_params = adamw_run(model, x, t, ctx, eps, labels)
    _, adam64 = adamw_run(copy.deepcopy(model).double(), x.double(), t.double(), ctx.double(),
                          eps.double(), labels)
    d_adam = max((adam_params[n].double() - adam64[n]).abs().max().item() for n in adam_params)
    smallest_g = min(grads[n].abs().max().item() for n in grads)

    io = {"x": x, "t": t, "ctx": ctx, "eps": eps, "out": out, "loss": loss.reshape(()),
          "loss_per_example": loss_pe, "adamw3_losses": adam_losses}
    for n in grads:
        io["grad." + n] = grads[n]
    for n in adam_params:
        io["adamw3." + n] = adam_params[n]
    io = {k: v.contiguous().float() for k, v in io.items()}
    if labels is not None:
        io["class_labels"] = labels.contiguous()
    stats = dict(max_abs_out_f32_vs_f64=f"{d_out:.3e}", abs_loss_f32_vs_f64=f"{d_loss:.3e}",
                 max_abs_grad_f32_vs_f64=f"{d_grad_abs:.3e}",
                 max_tensor_rel_grad_f32_vs_f64=f"{d_grad_rel:.3e}",
                 max_abs_adamw3_f32_vs_f64=f"{d_adam:.3e}")

    def writer(d):
        model.save_pretrained(d, safe_serialization=True)
        tc.save_safetensors_sorted(io, os.path.join(d, "io.safetensors"), metadata=metadata(spec, stats))

    mu.write_dir_atomically(os.path.join(out_root, spec["name"]), writer)
    return dict(name=spec["name"], params=tc.count_params(model), tensors=len(grads), hw=spec["hw"],
                out_absmax=out.abs().max().item(), loss=loss.item(), d_out=d_out, d_loss=d_loss,
                d_grad_abs=d_grad_abs, d_grad_rel=d_grad_rel, worst_rel_name=worst_rel_name,
                d_adam=d_adam, smallest_g=smallest_g, keys=len(io))


def verify_dir(d):
    """Loader-side check: from_pretrained the folder (train mode, as the fixture was computed) and
    recompute out, loss and every gradient from io.safetensors' inputs; the io keys must be exactly the
    parameter list. Returns max |difference| (must be 0)."""
    from diffusers import UNet2DConditionModel

    m = UNet2DConditionModel.from_pretrained(d, torch_dtype=torch.float32)
    m.train()
    io = load_file(os.path.join(d, "io.safetensors"))
    names = [n for n, _ in m.named_parameters()]
    want = {"x", "t", "ctx", "eps", "out", "loss", "loss_per_example", "adamw3_losses"}
    want |= {"grad." + n for n in names} | {"adamw3." + n for n in names}
    if m.config.num_class_embeds is not None:
        want |= {"class_labels"}
    assert set(io) == want, (d, sorted(set(io) ^ want)[:10])
    labels = io.get("class_labels")
    assert labels is None or labels.dtype == torch.int64, d
    out, loss, grads = grads_of(m, io["x"], io["t"], io["ctx"], io["eps"], labels)
    dmax = max((out - io["out"]).abs().max().item(), abs(loss.item() - io["loss"].item()))
    return max(dmax, max((grads[n] - io["grad." + n]).abs().max().item() for n in names))


def cross_check(spec, d):
    """A second correct float32 implementation as a stand-in for the C port: diffusers' classic
    AttnProcessor (explicit bmm + softmax instead of SDPA) on 2 threads. Returns its max differences
    from the fixture and the tensors outside the README tolerances (grads 5e-6 + 1e-3 rel; adamw3 as
    make_unet_fixtures.adamw3_tolerance)."""
    from diffusers.models.attention_processor import AttnProcessor

    io = load_file(os.path.join(d, "io.safetensors"))
    model = build_fixture_model(spec)
    model.set_attn_processor(AttnProcessor())
    torch.set_num_threads(2)
    try:
        labels = io.get("class_labels")
        out, loss, g = grads_of(model, io["x"], io["t"], io["ctx"], io["eps"], labels)
        _, a = adamw_run(model, io["x"], io["t"], io["ctx"], io["eps"], labels)
    finally:
        torch.set_num_threads(1)
    d_out = (out - io["out"]).abs().max().item()
    d_loss = abs(loss.item() - io["loss"].item())
    d_grad = max((g[n] - io["grad." + n]).abs().max().item() for n in g)
    d_adam = max((a[n] - io["adamw3." + n]).abs().max().item() for n in a)
    bad = [n for n in g
           if ((g[n] - io["grad." + n]).abs() > 5e-6 + 1e-3 * io["grad." + n].abs()).any()
           or ((a[n] - io["adamw3." + n]).abs() > mu.adamw3_tolerance(n, io["grad." + n])).any()]
    tight = sorted({n for n in a if ((a[n] - io["adamw3." + n]).abs() > 1e-5 + 1e-4 * io["adamw3." + n].abs()).any()})
    return d_out, d_loss, d_grad, d_adam, bad, tight


def write_configs(cfg_root):
    os.makedirs(cfg_root, exist_ok=True)
    rows = []
    for stem, cfg, expected, expected_tensors in CONFIGS:
        m = build_cond_unet(cfg, 0)
        n, nt = tc.count_params(m), len(list(m.parameters()))
        if (n, nt) != (expected, expected_tensors):
            raise SystemExit(f"configs/{stem}.json: {n} parameters in {nt} tensors, ldm.md says "
                             f"{expected} in {expected_tensors}")
        path = os.path.join(cfg_root, stem + ".json")
        with open(path + ".tmp", "w") as f:
            f.write(tc.config_json_text(m))
        os.rename(path + ".tmp", path)
        rows.append((stem, n, nt))
        del m
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(tc.REPO_ROOT, "tests", "fixtures", "unet_cond"))
    ap.add_argument("--configs", default=os.path.join(tc.REPO_ROOT, "configs"))
    args = ap.parse_args()
    tc.set_determinism(1)
    tc.quiet_diffusers()
    os.makedirs(args.out, exist_ok=True)

    print("## configs/ (UNet2DConditionModel)")
    for stem, n, nt in write_configs(args.configs):
        print(f"{stem:8s} {n:>12,d} parameters in {nt} tensors")

    rows = []
    for spec in FIXTURES:
        tc.log(f"fixture {spec['name']} ...")
        rows.append(make_fixture(spec, args.out))

    print("\n## fixtures: float32 vs float64 (same weights, same inputs)")
    print(f"{'fixture':20s} {'params':>7s} {'tensors':>7s} {'keys':>5s} {'HxW':>5s} {'max|out|':>8s} {'loss':>8s} "
          f"{'|dout|':>9s} {'|dloss|':>9s} {'|dgrad|':>9s} {'rel dgrad':>9s} {'|dadamw3|':>9s} min max|g|")
    for r in rows:
        print(f"{r['name']:20s} {r['params']:>7d} {r['tensors']:>7d} {r['keys']:>5d} {'%dx%d' % r['hw']:>5s} "
              f"{r['out_absmax']:8.4f} {r['loss']:8.5f} {r['d_out']:9.2e} {r['d_loss']:9.2e} "
              f"{r['d_grad_abs']:9.2e} {r['d_grad_rel']:9.2e} {r['d_adam']:9.2e} {r['smallest_g']:.1e}"
              f"   (worst rel: {r['worst_rel_name']})")

    print("\n## loader check (UNet2DConditionModel.from_pretrained, train mode, recompute out, loss, every grad)")
    total = 0
    for spec in FIXTURES:
        d = os.path.join(args.out, spec["name"])
        dmax = verify_dir(d)
        size = mu.dir_size(d)
        total += size
        status = "ok" if dmax == 0.0 else "MISMATCH"
        print(f"{spec['name']:20s} {size:>10,d} bytes  max|diff| {dmax:.1e}  {status}")
        if status != "ok":
            raise SystemExit(f"{d}: reloaded model differs from io.safetensors by {dmax}")
    print(f"{'total':20s} {total:>10,d} bytes")

    print("\n## cross-check: diffusers with the classic AttnProcessor (bmm + softmax), 2 threads, vs the fixtures")
    for spec in FIXTURES:
        d_out, d_loss, d_grad, d_adam, bad, tight = cross_check(spec, os.path.join(args.out, spec["name"]))
        print(f"{spec['name']:20s} max|dout| {d_out:.1e}  |dloss| {d_loss:.1e}  max|dgrad| {d_grad:.1e}  "
              f"max|dadamw3| {d_adam:.1e}  outside README tolerances: {len(bad)}  "
              f"adamw3 tensors outside atol 1e-5 + rtol 1e-4: {len(tight)}" + (f" ({', '.join(tight)})" if tight else ""))
        if bad:
            raise SystemExit(f"{spec['name']}: {bad} outside the README tolerances")


if __name__ == "__main__":
    main()
