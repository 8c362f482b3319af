"""bench_traker.py: the traker side of `make bench-attrib`. Runs Journey-TRAK's featurization and
scoring with the traker library (PyPI `traker`, MadryLab/trak) on the CPU, for a diffusers model
folder (e.g. one written by `jtrak train`), and times it.

What is computed (method.md 1.3, 1.4, 2.1-2.3), the way MadryLab/journey-TRAK's `diffusion_trak`
drives traker:

* Featurize: for each of the first N Fashion-MNIST training images (IDX gz files read with gzip +
  numpy, scaled to [-1, 1]), S timesteps drawn uniformly from 0..999 with replacement, fresh noise
  per (example, timestep), output = F.mse_loss(eps_theta(x_t, t), eps) (mean), per-example
  gradients with torch.func.grad + vmap(randomness="different") over the batch (as traker's
  FunctionalGradientComputer and journey-TRAK's DiffusionGradientComputer), summed over the S
  timesteps, then projected by traker's BasicProjector (the projector TRAKer picks on the CPU:
  dense Gaussian entries, generated block by block for every batch), divided by sqrt(p) and stored
  by traker's MmapSaver. Then TRAKer.finalize_features (the kernel (X^T X + lambda I)^-1 / mean|.|
  and F = X A).
* Score: for N_t targets at each step t, x0_hat of step t (from a trajectory: jtrak's
  trajectory.safetensors, or sampled here with diffusers' DDPMScheduler) re-noised at level t with R
  fresh draws per target, gradients summed over R; TRAKer.start_scoring_checkpoint / score /
  finalize_scores, one experiment per step.

Where this departs from journey-TRAK's released code (nothing in traker is patched): its
DiffusionGradientComputer does not accept the grad_wrt= keyword that traker >= 0.3.0 passes, so the
same loops live here in a FunctionalGradientComputer subclass; its hard-coded .cuda() calls are
dropped; the scoring batch holds x0_hat of step t rather than the whole 1000-step trajectory indexed
inside the vmapped function (the same values); the demo's .half() cast of the trajectory is applied
only with --precision fp16.

Prints one JSON line per measurement on stdout (progress on stderr):

  {"impl": "traker", "what": "featurize"|"finalize"|"score", "n": N, "k": 2048, "S": 20, ...,
   "images_per_s": ..., "seconds": ..., "peak_rss_mb": ..., "precision": "fp32"|"fp16", ...}

featurize: seconds of the TRAKer.featurize calls (gradients + projection + store writes) over the N
images, images_per_s = N / seconds. finalize: TRAKer.finalize_features. score: all steps together
(start_scoring_checkpoint + score + finalize_scores); also per-step seconds. peak_rss_mb is the
process's peak resident set so far (ru_maxrss). other_cpu_cores: CPU time used by the rest of the
machine during the phase, in cores on average (should be near 0: otherwise the run shared the CPUs).

Run: python ref/bench_traker.py MODEL_DIR [--n 64] [--S 20] [--k 2048] [--batch 16] [--threads 2]
       [--trajectory FILE] [--targets 4] [--steps 900,500,100] [--R 20] [--lambda X]
       [--precision fp32|fp16]
"""

import argparse
import gzip
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class OtherCpu:
    """CPU time the rest of the machine used while a phase ran, in cores on average: busy jiffies of
    /proc/stat minus this process's own user+sys time, over the wall time. Near 0 on an idle
    machine; a sizeable value means the measurement shared the CPUs with something else."""

    HZ = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def busy():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / OtherCpu.HZ

    @staticmethod
    def own():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def __init__(self):
        self.t, self.b, self.o = time.perf_counter(), self.busy(), self.own()

    def cores(self):
        wall = time.perf_counter() - self.t
        other = (self.busy() - self.b) - (self.own() - self.o)
        return round(max(other, 0.0) / wall, 2) if wall > 0 else 0.0


def read_idx_images(path, n):
    """The first n images of an IDX3 gz file as float32 (n, 1, H, W) in [-1, 1] (x / 255 * 2 - 1)."""
    with gzip.open(path, "rb") as f:
        head = f.read(16)
        magic, count, rows, cols = np.frombuffer(head, dtype=">u4")
        if magic != 2051:
            raise SystemExit(f"{path}: not an IDX3 image file (magic {magic})")
        n = min(n, int(count))
        raw = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8).reshape(n, 1, rows, cols)
    return torch.from_numpy((raw.astype(np.float32) / 255.0) * 2.0 - 1.0)


# --- Journey-TRAK's model output function and gradient computer (journey-TRAK's diffusion_trak, ---
# --- adapted to traker 0.3.2's constructor signature, grad_wrt=, and to the CPU)                ---

from trak import TRAKer  # noqa: E402
from trak.gradient_computers import FunctionalGradientComputer  # noqa: E402
from trak.modelout_functions import AbstractModelOutput  # noqa: E402


class JourneyModelOutput(AbstractModelOutput):
    """diffusion_trak.DiffusionModelOutput, unconditional pixel-space branch."""

    def __init__(self):
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
        self.featurizing = False

    def get_output(self, *args, **kwargs):
        if self.featurizing:
            return self._output_featurizing(*args, **kwargs)
        return self._output_scoring(*args, **kwargs)

    def _output_featurizing(self, model, weights, buffers, image, label, timestep):
        latent = image.unsqueeze(0)
        noise = torch.randn(latent.shape)  # fresh per (example, timestep): vmap randomness="different"
        noisy = self.noise_scheduler.add_noise(latent, noise, timestep)
        pred = torch.func.functional_call(model, (weights, buffers), args=(noisy, timestep),
                                          kwargs={"return_dict": False})[0]
        return F.mse_loss(pred, noise)

    def _output_scoring(self, model, weights, buffers, tstep, noise, x0_hat, label):
        # journey-TRAK passes the whole x0_hat trajectory and indexes [tstep] inside; here the batch
        # already holds x0_hat of step t (the same values, without copying 1000 steps per target).
        noise = noise.unsqueeze(0)
        latent = x0_hat.unsqueeze(0)
        noisy = self.noise_scheduler.add_noise(latent, noise, tstep)
        pred = torch.func.functional_call(model, (weights, buffers), args=(noisy, tstep),
                                          kwargs={"return_dict": False})[0]
        return F.mse_loss(pred, noise)

    def get_out_to_loss_grad(self, model, weights, buffers, batch):
        return torch.ones(batch[0].shape[0], 1)  # Q = 1


def accumulate_vectorize(g, arr):
    """diffusion_trak.utils._accumulate_vectorize: arr[b] += concat of g's flattened tensors."""
    pointer = 0
    for param in g.values():
        num = param[0].numel()
        arr[:, pointer:pointer + num] += param.flatten(start_dim=1).data
        pointer += num


class JourneyGradientComputer(FunctionalGradientComputer):
    """diffusion_trak.DiffusionGradientComputer: traker's FunctionalGradientComputer pattern
    (torch.func.grad w.r.t. the named-parameter dict, vmapped over the batch with
    randomness="different"), looped over the S timesteps (featurizing) or the R noise draws
    (scoring), summed into one dense [batch, p] array in named_parameters() order."""

    def compute_per_sample_grad(self, batch):
        grad_fn = torch.func.grad(self.modelout_fn.get_output, has_aux=False, argnums=1)
        if self.modelout_fn.featurizing:
            images, labels, timesteps = batch
            grads = torch.zeros(images.shape[0], self.num_params, dtype=images.dtype)
            for s in range(timesteps.shape[1]):
                g = torch.func.vmap(grad_fn, in_dims=(None, None, None, 0, 0, 0),
                                    randomness="different")(
                    self.model, self.func_weights, self.func_buffers, images, labels,
                    timesteps[:, s:s + 1])
                accumulate_vectorize(g, grads)
            return grads
        x0_hats, labels, tstep, n_iters = batch
        grads = torch.zeros(x0_hats.shape[0], self.num_params, dtype=x0_hats.dtype)
        for _ in range(n_iters):
            noise = torch.randn(x0_hats.shape)  # fresh per (target, draw)
            g = torch.func.vmap(grad_fn, in_dims=(None, None, None, None, 0, 0, 0),
                                randomness="different")(
                self.model, self.func_weights, self.func_buffers, tstep, noise, x0_hats, labels)
            accumulate_vectorize(g, grads)
        return grads


# --- targets ---------------------------------------------------------------------------------

def load_trajectory_x0hat(path, targets, steps):
    """{t: x0_hat of step t for the chosen targets, (N_t, C, H, W)} from a jtrak trajectory file
    (safetensors: x0_hat (n, S, C, H, W) in sampler order, timesteps (S,))."""
    from safetensors.torch import load_file

    tr = load_file(path)
    ts = tr["timesteps"].tolist()
    out = {}
    for t in steps:
        if t not in ts:
            raise SystemExit(f"{path}: step {t} is not in the trajectory's timesteps")
        out[t] = tr["x0_hat"][targets, ts.index(t)].contiguous().float()
    return out


def sample_x0hat(model, n, steps, seed):
    """A 1000-step DDPM trajectory with diffusers (as journey-TRAK's demo), keeping x0_hat."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(1000)
    g = torch.Generator().manual_seed(seed)
    c, s = model.config.in_channels, model.config.sample_size
    x = torch.randn((n, c, s, s), generator=g)
    keep = {}
    with torch.no_grad():
        for t in sched.timesteps:
            eps = model(x, t).sample
            d = sched.step(eps, t, x, generator=g)
            if int(t) in steps:
                keep[int(t)] = d.pred_original_sample.clone()
            x = d.prev_sample
    return keep


# --- main ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="traker (PyPI) Journey-TRAK featurize + score on the CPU")
    ap.add_argument("model", help="diffusers UNet2DModel folder (e.g. written by `jtrak train`)")
    ap.add_argument("--n", type=int, default=64, help="training images (the first N of Fashion-MNIST train)")
    ap.add_argument("--S", type=int, default=20, help="timesteps per training image")
    ap.add_argument("--k", type=int, default=2048, help="projection dimension")
    ap.add_argument("--batch", type=int, default=16, help="training images per featurize batch")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--trajectory", default=None,
                    help="jtrak trajectory.safetensors to take x0_hat from (default: sample one here)")
    ap.add_argument("--targets", type=int, default=4, help="targets: samples 0..N_t-1")
    ap.add_argument("--steps", default="900,500,100", help="steps t to score")
    ap.add_argument("--R", type=int, default=20, help="noise draws per target gradient")
    ap.add_argument("--lambda", dest="lam", type=float, default=0.0,
                    help="traker's lambda_reg (needed when N < k: X^T X is singular)")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                    help="fp16 = traker's default use_half_precision=True; fp32 = use_half_precision=False")
    ap.add_argument("--data", default=os.path.join(FMNIST, "train-images-idx3-ubyte.gz"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="traker save_dir parent (default: a temporary folder)")
    ap.add_argument("--scores-out", default=None, help="save the score matrices here (.npz)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    logging.getLogger().setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    from diffusers import UNet2DModel
    from diffusers.utils import logging as dlogging
    import trak

    dlogging.set_verbosity_error()
    steps = [int(s) for s in args.steps.split(",") if s]

    model = UNet2DModel.from_pretrained(args.model)
    model.eval()
    p = sum(q.numel() for q in model.parameters())
    images = read_idx_images(args.data, args.n)
    n = images.shape[0]
    labels = torch.zeros(n, dtype=torch.int32)  # unconditional: dummy labels, as journey-TRAK
    log(f"traker {trak.__version__}, torch {torch.__version__}: {args.model}, p = {p:,}, n = {n}, "
        f"S = {args.S}, k = {args.k}, batch {args.batch}, {args.threads} threads, {args.precision}")

    work = args.workdir or tempfile.mkdtemp(prefix="jtrak_bench_traker_")
    save_dir = os.path.join(work, "trak_results")
    shutil.rmtree(save_dir, ignore_errors=True)
    task = JourneyModelOutput()
    traker = TRAKer(model=model, task=task, train_set_size=n, save_dir=save_dir,
                    load_from_save_dir=True, device="cpu", gradient_computer=JourneyGradientComputer,
                    proj_dim=args.k, use_half_precision=(args.precision == "fp16"),
                    lambda_reg=args.lam, logging_level=logging.WARNING)
    proj = traker.projector
    proj_desc = f"{type(proj).__name__}/{getattr(proj.proj_type, 'value', proj.proj_type)}"
    log(f"projector: {proj_desc}, block {getattr(proj, 'block_size', '-')}, dtype {proj.dtype}")
    base = {"impl": "traker", "n": n, "k": args.k, "S": args.S, "batch": args.batch,
            "threads": args.threads, "params": p, "precision": args.precision,
            "projector": proj_desc, "traker": trak.__version__, "torch": torch.__version__}

    # time traker's two stages separately (wrappers only add a clock around the library calls)
    stage = {"grad": 0.0, "project": 0.0}

    def timed_stage(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            r = fn(*a, **kw)
            stage[name] += time.perf_counter() - t0
            return r
        return wrapper

    traker.gradient_computer.compute_per_sample_grad = timed_stage(
        "grad", traker.gradient_computer.compute_per_sample_grad)
    traker.projector.project = timed_stage("project", traker.projector.project)
    base["rss_after_load_mb"] = round(current_rss_mb(), 1)

    def emit(what, **kw):
        print(json.dumps(dict(base, what=what, peak_rss_mb=round(peak_rss_mb(), 1), **kw)), flush=True)

    # featurize
    ckpt = model.state_dict()
    traker.load_checkpoint(ckpt, model_id=0)
    task.featurizing = True
    t_feat = 0.0
    oc = OtherCpu()
    for b0 in range(0, n, args.batch):
        x = images[b0:b0 + args.batch]
        bs = x.shape[0]
        ts = torch.from_numpy(np.random.choice(np.arange(0, 1000), size=[bs, args.S], replace=True))
        t0 = time.perf_counter()
        traker.featurize(batch=[x, labels[b0:b0 + bs], ts], num_samples=bs)
        t_feat += time.perf_counter() - t0
        log(f"traker featurize {b0 + bs}/{n} {(b0 + bs) / t_feat:.2f} img/s elapsed {t_feat:.0f}s")
    emit("featurize", images_per_s=round(n / t_feat, 3), seconds=round(t_feat, 2), other_cpu_cores=oc.cores(),
         grad_seconds=round(stage["grad"], 2), project_seconds=round(stage["project"], 2))

    t0 = time.perf_counter()
    traker.finalize_features()
    t_fin = time.perf_counter() - t0
    emit("finalize", seconds=round(t_fin, 2), **{"lambda": args.lam})

    # targets
    tgt = list(range(args.targets))
    if args.trajectory:
        x0 = load_trajectory_x0hat(args.trajectory, tgt, steps)
        src = args.trajectory
    else:
        log(f"sampling {len(tgt)} targets with 1000-step DDPM (diffusers)")
        x0 = sample_x0hat(model, len(tgt), steps, args.seed)
        src = "diffusers DDPM 1000 steps"
    task.featurizing = False
    stage["grad"] = stage["project"] = 0.0
    dt = torch.float16 if args.precision == "fp16" else torch.float32  # the demo casts to .half()
    scores = {}
    per_step = {}
    t_score = 0.0
    oc = OtherCpu()
    for t in steps:
        exp = f"T={t}"
        t0 = time.perf_counter()
        traker.start_scoring_checkpoint(exp_name=exp, checkpoint=ckpt, model_id=0, num_targets=len(tgt))
        traker.score(batch=[x0[t].to(dt), torch.zeros(len(tgt)), torch.tensor(t), args.R],
                     num_samples=len(tgt))
        scores[t] = np.array(traker.finalize_scores(exp_name=exp))
        dts = time.perf_counter() - t0
        t_score += dts
        per_step[str(t)] = round(dts, 2)
        log(f"traker score t={t}: {dts:.1f}s")
    emit("score", targets=len(tgt), steps=steps, R=args.R, seconds=round(t_score, 2), other_cpu_cores=oc.cores(),
         step_seconds=per_step, target_grads_per_s=round(len(tgt) * len(steps) / t_score, 3),
         grad_seconds=round(stage["grad"], 2), project_seconds=round(stage["project"], 2), trajectory=src)
    if args.scores_out:
        np.savez(args.scores_out, **{f"t{t}": s for t, s in scores.items()})
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
