"""bench_torch.py: the PyTorch side of `make bench`. Times diffusers' UNet2DModel on the CPU for one
config.json: (a) forward only under torch.no_grad, (b) one training step = forward + MSE loss against
random noise (random timesteps) + backward + torch.optim.AdamW step, (c) sampling: diffusers'
DDIMScheduler (default config, eta 0) for --sample-steps steps on n = batch samples under
torch.no_grad, for each of --sample-batches (as bench/bench_unet.c runs traj_sample), (d) flops:
torch.utils.flop_counter's count of one forward and of one forward + backward, per image (a check
of jtrak's unet/unet_flops.c: the same convention, 2 x multiply-adds of convs, matmuls and
attention). Prints one JSON line per measurement on stdout (progress on stderr):

  {"impl": "diffusers", "config": "fm-s", "what": "forward"|"train_step"|"sample", "batch": 64,
   "size": 28, "threads": 2, "iters": 5, "images_per_s": ..., "ms_per_image": ..., "peak_rss_mb": ...,
   "torch": "..."}

images_per_s is batch / median seconds per iteration, after warm-up; for sample it is U-Net
evaluations (image-steps) per second. peak_rss_mb is the process's peak resident set so far (run
one --what per process for a figure of its own; scripts/bench.sh does).

--class-embeds K makes the model class-conditional (num_class_embeds K; rows name the config
"<config>-clsK"): each training step draws its batch's class_labels in 0..K-1 (the null class K-1
included, as condition dropout feeds it), as bench/bench_unet.c --class-embeds does; forward uses
fixed labels, sampling gives sample i the class i mod (K - 1).

Run: python ref/bench_torch.py configs/fm-s.json [--batch 64] [--size 28] [--threads 2] [--iters 10]
       [--warmup 2] [--what forward,train_step,sample,flops] [--sample-batches 16,64] [--sample-steps 10]
       [--class-embeds K]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin_common as tc  # noqa: E402


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description="PyTorch/diffusers UNet2DModel CPU benchmark")
    ap.add_argument("config", help="diffusers config.json (e.g. configs/fm-s.json)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=None, help="image height = width (default: sample_size)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per measurement (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    ap.add_argument("--what", default="forward,train_step",
                    help="comma-separated: forward, train_step, sample, flops (both = forward,train_step)")
    ap.add_argument("--sample-batches", default="16,64", help="sampler batch sizes (what=sample)")
    ap.add_argument("--sample-steps", type=int, default=10, help="DDIM steps (what=sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--class-embeds", type=int, default=0,
                    help="num_class_embeds K: a class-conditional variant of the config (0 = as given)")
    args = ap.parse_args()
    whats = set(args.what.replace("both", "forward,train_step").split(","))
    unknown = whats - {"forward", "train_step", "sample", "flops"}
    if unknown:
        ap.error(f"--what: unknown {sorted(unknown)}")

    torch.set_num_threads(args.threads)
    cfg = tc.load_config(args.config)
    name = os.path.splitext(os.path.basename(args.config))[0]
    K = args.class_embeds
    if K > 0:
        cfg["num_class_embeds"] = K
        name += f"-cls{K}"
    size = args.size or cfg["sample_size"]
    if isinstance(size, (list, tuple)):
        size = size[0]
    model = tc.build_unet(cfg, args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    shape = (args.batch, cfg.get("in_channels", 3), size, size)
    x = torch.rand(shape, generator=gen) * 2 - 1
    noise = torch.randn(shape, generator=gen)
    t = torch.randint(0, 1000, (args.batch,), generator=gen)
    # class-conditional: fixed labels for forward and flops; each training step draws its own
    labels = torch.randint(0, K, (args.batch,), generator=gen) if K > 0 else None

    def draw_labels():
        return torch.randint(0, K, (args.batch,), generator=gen) if K > 0 else None
    tc.log(f"{name}: {tc.count_params(model):,} parameters, batch {args.batch}, {size}x{size}, "
           f"{args.threads} threads, {args.warmup} warm-up + {args.iters} timed iterations")

    base = {"impl": "diffusers", "config": name, "batch": args.batch, "size": size, "threads": args.threads,
            "iters": args.iters, "torch": torch.__version__}

    def report(what, sec, batch=args.batch, **extra):
        row = dict(base, what=what, batch=batch, images_per_s=round(batch / sec, 2),
                   ms_per_image=round(1000.0 * sec / batch, 3), peak_rss_mb=round(tc.peak_rss_mb(), 1),
                   **extra)
        print(json.dumps(row), flush=True)

    if "flops" in whats:
        from torch.utils.flop_counter import FlopCounterMode

        model.eval()
        with FlopCounterMode(display=False) as fc:
            with torch.no_grad():
                model(x, t, class_labels=labels).sample
        fwd = fc.get_total_flops() / args.batch
        model.train()
        with FlopCounterMode(display=False) as fc:
            model(x, t, class_labels=labels).sample.square().mean().backward()
        model.zero_grad(set_to_none=True)
        print(json.dumps(dict(base, what="flops", forward_flops=fwd,
                              train_flops=fc.get_total_flops() / args.batch,
                              counter="torch.utils.flop_counter")), flush=True)

    if "forward" in whats:
        model.eval()

        def fwd():
            with torch.no_grad():
                model(x, t, class_labels=labels).sample

        report("forward", timed(fwd, args.warmup, args.iters))

    if "train_step" in whats:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x, t, class_labels=draw_labels()).sample, noise)
            loss.backward()
            opt.step()

        report("train_step", timed(step, args.warmup, args.iters))

    if "sample" in whats:
        from diffusers import DDIMScheduler

        model.eval()
        sched = DDIMScheduler()
        for sb in [int(b) for b in args.sample_batches.split(",")]:
            x_T = torch.randn((sb,) + shape[1:], generator=gen)
            sl = torch.arange(sb) % max(K - 1, 1) if K > 0 else None

            def sample():
                sched.set_timesteps(args.sample_steps)
                xs = x_T
                with torch.no_grad():
                    for ts in sched.timesteps:
                        eps = model(xs, ts, class_labels=sl).sample
                        xs = sched.step(eps, ts, xs, eta=0.0).prev_sample
                return xs

            sec = timed(sample, args.warmup, args.iters) / args.sample_steps
            report("sample", sec, batch=sb, sampler="ddim", steps=args.sample_steps)


if __name__ == "__main__":
    main()
