"""make_clip_fixtures.py: the CLIP text encoder (ldm.md 4.1) against the real transformers
CLIPTextModel, for tests/test_clip_text.c. Writes tests/fixtures/clip/<name>/ for two tiny configs
(ldm.md 6: hidden 32, intermediate 37, 4 heads, 2 layers, vocab 1000, 77 positions):

  clip2_quick: hidden_act "quick_gelu", eos_token_id 2 (the legacy value of SD-1/SD-2's hub configs:
               pooler_output is the row at argmax(ids)), saved the way transformers 4.x hub
               checkpoints are: every tensor under "text_model." plus the int64 buffer
               "text_model.embeddings.position_ids", and a 4.x-style config.json ("torch_dtype",
               "dropout", "_name_or_path");
  clip2_gelu:  hidden_act "gelu" (exact erf form, SD-2's), eos_token_id 999 (pooler_output is the row
               at the first id == eos_token_id), saved by transformers 5's save_pretrained (no prefix,
               no position_ids).

Weights: PyTorch/transformers' default initialisation after torch.manual_seed(seed); then every
LayerNorm affine (layer_norm1, layer_norm2, final_layer_norm) is overwritten with 1 + 0.1 randn /
0.1 randn, so that the C code must apply them. Eval mode (dropout 0 anyway).

io.safetensors: "ids" (3, 77) int64: bos 998, prompt tokens, eos 999, then padding with the eos id
(SD-1's tokenizer) in row 0, with id 0 (OpenCLIP's "!", SD-2's) in row 1, and a full row 2 (75 prompt
tokens, one of them id 0, eos last); "last_hidden_state" (3, 77, 32), "pooler_output" (3, 32) and
"clip_skip1" (3, 77, 32) = final_layer_norm(hidden_states[-2]) (what diffusers pipelines compute
for clip_skip=1). Deterministic (fixed seeds, 1 thread); each file is written to a temporary name
and renamed; every fixture is reloaded through from_pretrained and checked before the script ends.
"""

import json
import os
import shutil

import torch
from safetensors import safe_open
from transformers import CLIPTextConfig, CLIPTextModel
from transformers.utils import logging as tlogging

import twin_common as tc

OUT_DIR = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "clip")
B, L = 3, 77
BOS, EOS = 998, 999

COMMON = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=77, layer_norm_eps=1e-5,
              projection_dim=16)

SPECS = [
    dict(name="clip2_quick", seed=7101, legacy=True,
         cfg=dict(COMMON, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1)),
    dict(name="clip2_gelu", seed=7202, legacy=False,
         cfg=dict(COMMON, hidden_act="gelu", bos_token_id=BOS, eos_token_id=EOS, pad_token_id=0)),
]


def make_ids(gen):
    ids = torch.zeros((B, L), dtype=torch.int64)
    lens = [10, 5, L - 2]
    for b, n in enumerate(lens):
        toks = torch.randint(1, BOS, (n,), generator=gen)
        row = [BOS] + toks.tolist() + [EOS]
        pad = EOS if b == 0 else 0
        row += [pad] * (L - len(row))
        ids[b] = torch.tensor(row)
    ids[2, 40] = 0  # an id 0 inside a prompt
    return ids


def randomize_layernorms(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def outputs(model, ids):
    with torch.no_grad():
        o = model(input_ids=ids, output_hidden_states=True)
        skip1 = model.final_layer_norm(o.hidden_states[-2])
    return {"last_hidden_state": o.last_hidden_state.contiguous(),
            "pooler_output": o.pooler_output.contiguous(), "clip_skip1": skip1.contiguous()}


def write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def save_model(model, spec, d):
    tmp_dir = d + ".save.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    model.save_pretrained(tmp_dir)
    with open(os.path.join(tmp_dir, "config.json")) as f:
        cfg = json.load(f)
    if spec["legacy"]:
        # a transformers 4.x hub checkpoint: prefixed names, the position_ids buffer, 4.x config keys
        sd = {"text_model." + k: v.detach().contiguous() for k, v in model.state_dict().items()}
        sd["text_model.embeddings.position_ids"] = torch.arange(L, dtype=torch.int64)[None]
        tc.save_safetensors_sorted(sd, os.path.join(d, "model.safetensors"), {"format": "pt"})
        cfg["torch_dtype"] = cfg.pop("dtype")
        cfg["dropout"] = 0.0
        cfg["_name_or_path"] = "tiny-clip2-quick"
        cfg["transformers_version"] = "4.25.1"
    else:
        tmp = os.path.join(d, "model.safetensors.tmp")
        shutil.copyfile(os.path.join(tmp_dir, "model.safetensors"), tmp)
        os.rename(tmp, os.path.join(d, "model.safetensors"))
    write_text(os.path.join(d, "config.json"), json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(tmp_dir)


def make(spec):
    d = os.path.join(OUT_DIR, spec["name"])
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(spec["seed"])
    model = CLIPTextModel(CLIPTextConfig(**spec["cfg"])).eval()
    randomize_layernorms(model, torch.Generator().manual_seed(spec["seed"] + 1))
    ids = make_ids(torch.Generator().manual_seed(spec["seed"] + 2))
    out = outputs(model, ids)
    save_model(model, spec, d)
    io = {"ids": ids, **out}
    tc.save_safetensors_sorted(io, os.path.join(d, "io.safetensors"),
                               {"format": "pt", "seed": str(spec["seed"]),
                                "transformers": __import__("transformers").__version__})
    # pooled is the row at the first EOS (both conventions agree on these ids)
    first_eos = (ids == EOS).int().argmax(dim=-1)
    assert torch.equal(out["pooler_output"], out["last_hidden_state"][torch.arange(B), first_eos])
    tc.log(f"{spec['name']}: {tc.count_params(model)} parameters, first EOS at {first_eos.tolist()}, "
           f"|last_hidden| max {out['last_hidden_state'].abs().max().item():.3f}")
    return d, out


def check(d, out):
    """Reload through from_pretrained (which strips the 4.x prefix and drops position_ids) and the
    written io file; everything must be bit-identical."""
    model = CLIPTextModel.from_pretrained(d).eval()
    with safe_open(os.path.join(d, "io.safetensors"), "pt") as f:
        ids = f.get_tensor("ids")
        for k, v in out.items():
            assert torch.equal(f.get_tensor(k), v), (d, k)
    again = outputs(model, ids)
    for k, v in out.items():
        assert torch.equal(again[k], v), (d, k, (again[k] - v).abs().max().item())
    print(f"{os.path.relpath(d, tc.REPO_ROOT)}: reload check ok "
          f"({', '.join(f'{k} {tuple(v.shape)}' for k, v in out.items())})")


def main():
    tc.set_determinism(1)
    tlogging.set_verbosity_error()
    made = [make(s) for s in SPECS]
    for d, out in made:
        check(d, out)


if __name__ == "__main__":
    main()
