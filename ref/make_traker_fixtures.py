"""make_traker_fixtures.py: writes the fixtures that tests/test_kernel.c and tests/test_scoremat.c
compare jtrak's kernel (src/attrib/kernel.c) and scores (src/attrib/scoremat.c) against: the TRAK
kernel, features and ensemble scores as the real traker library (0.3.2, MadryLab/trak) computes
them from the same random features (method.md 2.1, 2.4).

How traker is driven. Its whole TRAKer flow runs on the CPU in float32 (use_half_precision=False):
load_checkpoint -> featurize -> finalize_features -> start_scoring_checkpoint -> score ->
finalize_scores, with the library's own MmapSaver (in a temporary folder) and BasicScoreComputer.
Only the gradients are injected: the "model" is a single 16-entry parameter (so p = k = 16), the
projector is traker's NoOpProjector, and a small gradient computer returns the drawn features times
sqrt(p) = 4 (exact in float32), which TRAKer divides by its normalize_factor sqrt(p) = 4 (exact
again). So grads.mmap holds exactly the drawn X, and everything after that (X^T X in float32,
torch.linalg.inv in float32, the division by mean|A|, F = X A, the per-model F Gamma^T accumulated
in float32, the division by the number of models times the averaged out-to-loss = 1) is traker's
code. A_m is read back through the same score computer: get_x_xtx_inv(I_k, get_xtx(X_m)) = I A_m,
exact. The script checks that the stored grads are bitwise the drawn X and that the stored features
are bitwise torch's X_m @ A_m.

Cases (folders under tests/fixtures/traker/):
  ens3   M = 3 models, n = 64 training rows, k = 16, N = 4 targets, lambda_reg = 0. Each model
         has its own overall scale (1, 0.3, 2.5) and per-column scales exp(0.5 z), so the mean-|A|
         rescaling changes the relative weight of the models in the average (method.md 2.4).
  ridge2 M = 2, n = 12 < k = 16 (X^T X singular), N = 3, lambda_reg = 0.5 (traker's ridge, added
         to X^T X before the inverse).

Files in each folder (all C order; float32 '<f4' unless noted):
  X.npy                (M, n, k)   training features X_m (as stored by traker: grads.mmap)
  Gamma.npy            (M, N, k)   target features Gamma_m (<exp>_grads.mmap)
  xtx.npy              (M, k, k)   X_m^T X_m as traker's get_xtx computes it (float32)
  A.npy                (M, k, k)   traker's rescaled inverse: inv(X^T X + lambda I) / mean|inv|
  rescale_divisor.npy  (M,)        mean|inv(X^T X + lambda I)| (float32, traker's expression)
  features.npy         (M, n, k)   traker's features F_m = X_m A_m (features.mmap)
  scores_per_model.npy (M, n, N)   finalize_scores(model_ids=[m]) = F_m Gamma_m^T
  scores.npy           (n, N)      finalize_scores over all models (the ensemble average)
  lambda.npy           ()          float64 scalar lambda_reg
  A_f64.npy            (M, k, k)   float64 '<f8': the same quantities in float64 NumPy (exact
  scores_f64.npy       (n, N)      '<f8'  reference for judging float32 rounding on both sides)

Run: /work/venv-ref/bin/python ref/make_traker_fixtures.py [--out tests/fixtures/traker]
Deterministic: numpy default_rng seeds, torch on 1 thread with deterministic algorithms; a rerun on
the same machine writes the same bytes. Versions: traker 0.3.2, torch and numpy of
ref/requirements.txt. About 2 s.
"""

import argparse
import logging
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin_common as tc  # noqa: E402

import trak  # noqa: E402
from trak import TRAKer  # noqa: E402
from trak.gradient_computers import AbstractGradientComputer  # noqa: E402
from trak.projectors import NoOpProjector  # noqa: E402

K = 16  # features = parameters of the stand-in model, so sqrt(p) = 4 exactly

CASES = [
    # name, seed, M, n, N, lambda_reg, per-model scales
    ("ens3", 20240601, 3, 64, 4, 0.0, [1.0, 0.3, 2.5]),
    ("ridge2", 20240602, 2, 12, 3, 0.5, [1.0, 1.7]),
]


class ParamOnly(torch.nn.Module):
    """A model with exactly K parameters; TRAKer only counts them (p = K) and loads state dicts."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(K))


class InjectedGradients(AbstractGradientComputer):
    """Per-example 'gradients' are the batch itself: batch = (G,) with G (B, K) float32, already
    multiplied by sqrt(p) so that TRAKer's division by normalize_factor gives back the drawn rows.
    Out-to-loss terms are 1 (Q = 1, as in Journey-TRAK)."""

    def __init__(self, model, task, grad_dim=None, dtype=torch.float32, device="cpu", grad_wrt=None):
        super().__init__(model, task, grad_dim, dtype, device)

    def load_model_params(self, model):
        pass

    def compute_per_sample_grad(self, batch):
        return batch[0].clone()

    def compute_loss_grad(self, batch, batch_size=None):
        return torch.ones(batch[0].shape[0], 1)


def draw_case(seed, M, n, N, scales):
    rng = np.random.default_rng(seed)
    X = np.empty((M, n, K), np.float32)
    G = np.empty((M, N, K), np.float32)
    for m in range(M):
        col = np.exp(0.5 * rng.standard_normal(K))
        X[m] = (scales[m] * col * rng.standard_normal((n, K))).astype(np.float32)
        G[m] = (scales[m] * col * rng.standard_normal((N, K))).astype(np.float32)
    return X, G


def run_traker(X, G, lam, workdir):
    """The TRAKer flow over M models; returns what traker computed (see the docstring)."""
    M, n, _ = X.shape
    N = G.shape[1]
    model = ParamOnly()
    traker = TRAKer(
        model=model,
        task="image_classification",  # unused: the gradient computer ignores it
        train_set_size=n,
        save_dir=workdir,
        load_from_save_dir=True,  # False skips creating experiments.json, which scoring needs
        device="cpu",
        gradient_computer=InjectedGradients,
        projector=NoOpProjector(device="cpu"),
        use_half_precision=False,
        lambda_reg=lam,
        logging_level=logging.ERROR,
    )
    norm = float(traker.normalize_factor)
    assert norm == 4.0, norm
    ckpt = model.state_dict()
    for m in range(M):
        traker.load_checkpoint(ckpt, model_id=m)
        half = n // 2  # two featurize batches, as a data loader would
        traker.featurize(batch=(torch.from_numpy(X[m, :half] * norm),), num_samples=half)
        traker.featurize(batch=(torch.from_numpy(X[m, half:] * norm),), num_samples=n - half)
    traker.finalize_features()

    sc = traker.score_computer
    out = {"xtx": [], "A": [], "div": [], "features": []}
    for m in range(M):
        traker.saver.load_current_store(m)
        grads = np.array(traker.saver.current_store["grads"])
        assert np.array_equal(grads, X[m]), "stored grads differ from the drawn X"
        xtx = sc.get_xtx(torch.from_numpy(grads))
        A = sc.get_x_xtx_inv(torch.eye(K), xtx)  # I @ A: traker's rescaled inverse, exactly
        # traker's own expression for the divisor (score_computers.py, get_x_xtx_inv)
        inv = torch.linalg.inv((xtx + lam * torch.eye(K)).to(torch.float32))
        div = inv.abs().mean()
        feats = np.array(traker.saver.current_store["features"])
        # the same torch matmul as get_x_xtx_inv's `block @ xtx_inv` (one block: n < 20000)
        assert np.array_equal(feats, (torch.from_numpy(grads) @ A).numpy()), "features != X A"
        out["xtx"].append(xtx.numpy())
        out["A"].append(A.numpy())
        out["div"].append(div.numpy())
        out["features"].append(feats)

    exp = "fixture"
    for m in range(M):
        traker.start_scoring_checkpoint(exp, ckpt, model_id=m, num_targets=N)
        traker.score(batch=(torch.from_numpy(G[m] * norm),), num_samples=N)
    per_model = []
    for m in range(M):
        per_model.append(np.array(traker.finalize_scores(exp, model_ids=[m])))
    scores = np.array(traker.finalize_scores(exp))
    out = {key: np.stack(v) for key, v in out.items()}
    out["scores_per_model"] = np.stack(per_model)
    out["scores"] = scores
    return out


def f64_reference(X, G, lam):
    M, n, k = X.shape
    A64 = np.empty((M, k, k))
    S = np.zeros((n, G.shape[1]))
    for m in range(M):
        x = X[m].astype(np.float64)
        inv = np.linalg.inv(x.T @ x + lam * np.eye(k))
        A64[m] = inv / np.abs(inv).mean()
        S += x @ A64[m] @ G[m].astype(np.float64).T
    return A64, S / M


def save(folder, name, arr):
    np.save(os.path.join(folder, name), np.ascontiguousarray(arr) if arr.ndim else arr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(tc.REPO_ROOT, "tests", "fixtures", "traker"))
    args = ap.parse_args()
    tc.set_determinism(1)
    tc.log(f"traker {trak.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    print("case     M   n   N  lambda  max|A-A64|/max|A64|  max|S-S64|/max|S64|  mean|A| divisors")
    for name, seed, M, n, N, lam, scales in CASES:
        X, G = draw_case(seed, M, n, N, scales)
        with tempfile.TemporaryDirectory(prefix="jtrak_traker_") as work:
            r = run_traker(X, G, lam, os.path.join(work, "trak_results"))
        A64, S64 = f64_reference(X, G, lam)
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        save(folder, "X.npy", X)
        save(folder, "Gamma.npy", G)
        save(folder, "xtx.npy", r["xtx"].astype(np.float32))
        save(folder, "A.npy", r["A"].astype(np.float32))
        save(folder, "rescale_divisor.npy", r["div"].astype(np.float32))
        save(folder, "features.npy", r["features"].astype(np.float32))
        save(folder, "scores_per_model.npy", r["scores_per_model"].astype(np.float32))
        save(folder, "scores.npy", r["scores"].astype(np.float32))
        save(folder, "lambda.npy", np.array(lam, dtype=np.float64))
        save(folder, "A_f64.npy", A64)
        save(folder, "scores_f64.npy", S64)
        ea = np.abs(r["A"] - A64).max() / np.abs(A64).max()
        es = np.abs(r["scores"] - S64).max() / np.abs(S64).max()
        divs = " ".join(f"{d:.6g}" for d in r["div"])
        print(f"{name:7s} {M:2d} {n:3d} {N:3d} {lam:7.3g}  {ea:19.3e}  {es:19.3e}  {divs}")
        tc.log(f"wrote {folder}")


if __name__ == "__main__":
    main()
