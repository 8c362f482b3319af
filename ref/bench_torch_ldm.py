"""bench_torch_ldm.py: the PyTorch side of `make bench` for the latent, text-conditional networks. Times on
the CPU, for one diffusers config.json:

* UNet2DConditionModel (e.g. configs/ldm-xs.json): (a) forward under torch.no_grad, (b) one training step =
  forward + MSE loss against random noise (random timesteps) + backward + torch.optim.AdamW step, both with
  one random context (encoder_hidden_states) of --ctx-len tokens x cross_attention_dim per image (the demo's
  MiniLM caption states are 16 x 384);
* AutoencoderKL (e.g. configs/vae-fm.json): (a) encode forward (encoder + quant_conv; the moments, under
  torch.no_grad), (b) decode forward (post_quant_conv + decoder, from random latents), and with
  --what train_step one train-vae step (encode, posterior sample, decode, MSE + beta KL, backward, AdamW).

The class is read from the config's _class_name. Prints one JSON line per measurement on stdout, with the
fields of bench_torch.py (progress on stderr):

  {"impl": "diffusers", "config": "ldm-xs", "what": "forward"|"train_step"|"encode"|"decode", "batch": 64,
   "size": 8, "threads": 2, "iters": 10, "images_per_s": ..., "ms_per_image": ..., "peak_rss_mb": ...,
   "torch": "...", "ctx_len": 16}

images_per_s is batch / median seconds per iteration, after warm-up. size is the input's height = width
(latent size for the U-Net, pixel size for the VAE).

Run: python ref/bench_torch_ldm.py configs/ldm-xs.json [--batch 64] [--size 8] [--ctx-len 16] [--threads 2]
       [--iters 10] [--warmup 2] [--what forward,train_step]
     python ref/bench_torch_ldm.py configs/vae-fm.json [--size 32] [--what encode,decode]
"""

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin_common as tc  # noqa: E402
from bench_torch import timed  # noqa: E402

VAE_BETA = 1e-3


def main():
    ap = argparse.ArgumentParser(description="PyTorch/diffusers UNet2DConditionModel / AutoencoderKL CPU benchmark")
    ap.add_argument("config", help="diffusers config.json (configs/ldm-xs.json, configs/vae-fm.json)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=None, help="input height = width (default: sample_size)")
    ap.add_argument("--ctx-len", type=int, default=16, help="context tokens per image (U-Net only)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per measurement (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    ap.add_argument("--what", default=None,
                    help="comma-separated; U-Net: forward, train_step (default both); "
                         "VAE: encode, decode, train_step (default encode,decode)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.config) as f:
        cls = json.load(f).get("_class_name")
    cfg = tc.load_config(args.config)
    name = os.path.splitext(os.path.basename(args.config))[0]
    size = args.size or cfg["sample_size"]
    if isinstance(size, (list, tuple)):
        size = size[0]
    gen = torch.Generator().manual_seed(args.seed + 1)
    base = {"impl": "diffusers", "config": name, "batch": args.batch, "size": size, "threads": args.threads,
            "iters": args.iters, "torch": torch.__version__}

    def report(what, sec, **extra):
        row = dict(base, what=what, images_per_s=round(args.batch / sec, 2),
                   ms_per_image=round(1000.0 * sec / args.batch, 3), peak_rss_mb=round(tc.peak_rss_mb(), 1),
                   **extra)
        print(json.dumps(row), flush=True)

    if cls == "UNet2DConditionModel":
        from diffusers import UNet2DConditionModel

        whats = set((args.what or "forward,train_step").split(","))
        if whats - {"forward", "train_step"}:
            ap.error(f"--what: {sorted(whats - {'forward', 'train_step'})} not for {cls}")
        torch.manual_seed(args.seed)
        model = UNet2DConditionModel(**cfg)
        shape = (args.batch, cfg["in_channels"], size, size)
        x = torch.rand(shape, generator=gen) * 2 - 1
        noise = torch.randn(shape, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        ctx = torch.randn((args.batch, args.ctx_len, cfg["cross_attention_dim"]), generator=gen)
        tc.log(f"{name}: {tc.count_params(model):,} parameters, batch {args.batch}, {size}x{size}, context "
               f"{args.ctx_len}x{cfg['cross_attention_dim']}, {args.threads} threads, {args.warmup} warm-up + "
               f"{args.iters} timed iterations")
        if "forward" in whats:
            model.eval()

            def fwd():
                with torch.no_grad():
                    model(x, t, encoder_hidden_states=ctx).sample

            report("forward", timed(fwd, args.warmup, args.iters), ctx_len=args.ctx_len)
        if "train_step" in whats:
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = F.mse_loss(model(x, t, encoder_hidden_states=ctx).sample, noise)
                loss.backward()
                opt.step()

            report("train_step", timed(step, args.warmup, args.iters), ctx_len=args.ctx_len)
    elif cls == "AutoencoderKL":
        from diffusers import AutoencoderKL

        whats = set((args.what or "encode,decode").split(","))
        if whats - {"encode", "decode", "train_step"}:
            ap.error(f"--what: {sorted(whats - {'encode', 'decode', 'train_step'})} not for {cls}")
        torch.manual_seed(args.seed)
        model = AutoencoderKL(**cfg)
        f = 2 ** (len(cfg["block_out_channels"]) - 1)
        x = torch.rand((args.batch, cfg["in_channels"], size, size), generator=gen) * 2 - 1
        zshape = (args.batch, cfg["latent_channels"], size // f, size // f)
        z = torch.randn(zshape, generator=gen)
        tc.log(f"{name}: {tc.count_params(model):,} parameters, batch {args.batch}, {size}x{size} -> "
               f"{zshape[1]}x{zshape[2]}x{zshape[3]}, {args.threads} threads, {args.warmup} warm-up + "
               f"{args.iters} timed iterations")
        model.eval()
        if "encode" in whats:
            def enc():
                with torch.no_grad():
                    model.encode(x).latent_dist.parameters

            report("encode", timed(enc, args.warmup, args.iters))
        if "decode" in whats:
            def dec():
                with torch.no_grad():
                    model.decode(z).sample

            report("decode", timed(dec, args.warmup, args.iters))
        if "train_step" in whats:
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

            def step():
                opt.zero_grad(set_to_none=True)
                dist = model.encode(x).latent_dist
                out = model.decode(dist.mean + dist.std * torch.randn(zshape, generator=gen)).sample
                loss = F.mse_loss(out, x) + VAE_BETA * dist.kl().mean()
                loss.backward()
                opt.step()

            report("train_step", timed(step, args.warmup, args.iters), beta=VAE_BETA)
    else:
        raise SystemExit(f"{args.config}: _class_name {cls!r}; this script times UNet2DConditionModel and AutoencoderKL "
                         "(ref/bench_torch.py times UNet2DModel)")


if __name__ == "__main__":
    main()
