"""make_transformer_op_fixtures.py: the transformer ops of the text-conditional U-Net against the real
diffusers modules (ldm.md 2.4, 4.1), for tests/test_nn_transformer.c. Writes
tests/fixtures/nn/transformer_ops.safetensors with two cases, each with its inputs, a random loss
weight r, the output, and the gradient of sum(out * r) for the inputs and every parameter:

  block.*: diffusers BasicTransformerBlock(dim=8, num_attention_heads=2, attention_head_dim=4,
           cross_attention_dim=5, activation_fn="geglu", attention_bias=False) on x (B=2, N=6, 8) with
           encoder_hidden_states (2, L=4, 5): self-attention, cross-attention with N != L and
           Cq != Ckv, GEGLU feed-forward, three LayerNorms (eps 1e-5) whose affines are overwritten
           with 1 + 0.1 randn / 0.1 randn so that the C code must apply them;
  causal.*: quick_gelu(Attention(query_dim=8, heads=4, dim_head=2, bias=True)(x, causal mask)), the
           CLIP text encoder's attention (every projection with bias, key j > query i masked with
           torch.finfo(float32).min as transformers' causal mask does) and activation x*sigmoid(1.702x).

Tensor names: "<case>.x", "<case>.ctx" (block only), "<case>.r", "<case>.out", "<case>.grad.x",
"<case>.grad.ctx", "<case>.param.<diffusers name>", "<case>.grad.<diffusers name>". Everything is
token-major (B, N, C) as torch has it. Deterministic (seeded, 1 thread)."""

import os

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention

import twin_common as tc

B, H, W, C, L, D = 2, 2, 3, 8, 4, 5
N = H * W


def grads(module, inputs, out, r, prefix, tensors):
    (out * r).sum().backward()
    tensors[prefix + ".out"] = out.detach().contiguous()
    tensors[prefix + ".r"] = r.contiguous()
    for name, t in inputs.items():
        tensors[f"{prefix}.{name}"] = t.detach().contiguous()
        tensors[f"{prefix}.grad.{name}"] = t.grad.contiguous()
    for name, p in module.named_parameters():
        tensors[f"{prefix}.param.{name}"] = p.detach().contiguous()
        tensors[f"{prefix}.grad.{name}"] = p.grad.contiguous()


def block_case(tensors):
    torch.manual_seed(1301)
    blk = BasicTransformerBlock(C, 2, 4, cross_attention_dim=D, activation_fn="geglu",
                                attention_bias=False)
    with torch.no_grad():
        for name, p in blk.named_parameters():
            if name.startswith("norm"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
    x = torch.randn(B, N, C, requires_grad=True)
    ctx = torch.randn(B, L, D, requires_grad=True)
    r = torch.randn(B, N, C)
    out = blk(x, encoder_hidden_states=ctx)
    grads(blk, {"x": x, "ctx": ctx}, out, r, "block", tensors)
    tc.log(f"block: {sum(p.numel() for p in blk.parameters())} parameters, |out| max "
           f"{out.abs().max().item():.3f}")


def causal_case(tensors):
    torch.manual_seed(1302)
    attn = Attention(C, heads=4, dim_head=2, bias=True, out_bias=True)
    x = torch.randn(B, N, C, requires_grad=True)
    r = torch.randn(B, N, C)
    mask = torch.full((N, N), torch.finfo(torch.float32).min).triu(1)  # key j > query i
    mask = mask.expand(B, N, N).contiguous()
    y = attn(x, attention_mask=mask)
    out = y * torch.sigmoid(1.702 * y)
    grads(attn, {"x": x}, out, r, "causal", tensors)


def main():
    tc.set_determinism(1)
    tc.quiet_diffusers()
    tensors = {}
    block_case(tensors)
    causal_case(tensors)
    out_dir = os.path.join(tc.REPO_ROOT, "tests", "fixtures", "nn")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "transformer_ops.safetensors")
    meta = {"torch": torch.__version__, "script": "ref/make_transformer_op_fixtures.py"}
    import diffusers

    meta["diffusers"] = diffusers.__version__
    tc.save_safetensors_sorted(tensors, path, meta)
    print(f"{path}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
