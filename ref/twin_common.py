"""twin_common.py: helpers shared by the reference-twin scripts (make_unet_fixtures.py, bench_torch.py).

The twin drives the real diffusers UNet2DModel on the CPU; nothing here is used by jtrak at run time.
"""

import json
import os
import resource
import struct
import sys

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    """Logs go to stderr; stdout carries results (house style, convention 9)."""
    print(msg, file=sys.stderr, flush=True)


def set_determinism(threads):
    """Fixed thread count and deterministic kernels, so that a rerun on the same machine writes the
    same bytes. (Other CPUs may pick other SIMD paths and differ in the last bits.)"""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def quiet_diffusers():
    """Silences diffusers' info/warning chatter (e.g. the optional `accelerate` hint on from_pretrained)."""
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def load_config(path):
    """A diffusers config.json as a dict of UNet2DModel keyword arguments (private '_' keys dropped)."""
    with open(path) as f:
        cfg = json.load(f)
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def build_unet(cfg, seed):
    """UNet2DModel(**cfg) with PyTorch's default initialisation drawn after torch.manual_seed(seed)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(**cfg)


def config_json_text(model):
    """The exact text ModelMixin.save_config writes (to_json_file -> to_json_string): every field."""
    return model.to_json_string()


def peak_rss_mb():
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def save_safetensors_sorted(tensors, path, metadata):
    """safetensors.torch.save with the __metadata__ keys in sorted order. The Rust writer keeps
    metadata in a hash map, so with several keys their order (and the file's bytes) changes from run
    to run; re-emitting the header with sorted keys makes `make fixtures` reproducible. The tensor
    entries, the layout and the header length are left exactly as the library wrote them."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > n:
        raise RuntimeError(f"{path}: re-serialised safetensors header grew ({len(text)} > {n})")
    text += b" " * (n - len(text))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(raw[:8] + text + raw[8 + n:])
    os.rename(tmp, path)
