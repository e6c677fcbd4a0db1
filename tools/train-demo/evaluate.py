#!/usr/bin/env python3
"""Check a trained demo model (train.py's out/model) with transformers.

1. Held-out perplexity on Revelation (revelation.txt beside this script; the strided recipe of
   train.py: windows of 512 tokens, stride 256, token-weighted) with the f32 weights, and with
   the weights rounded as Quill's `quantize` stores them, activations staying f32:
     f16   every matmul weight (wte = tied lm_head, c_attn, c_proj, c_fc, mlp.c_proj) and wpe
           rounded to f16; LayerNorms and biases f32
     q8_0  the matmul weights in blocks of 32 along each output's inputs, one f16 scale
           (max |w| / 127) a block, round(w / scale) half away from zero (kernels/src/lib.rs
           quantize_q8_0); wpe f16; LayerNorms and biases f32
   This simulates the weights' rounding only; the Rust kernels' own summation order is not.
2. Greedy and sampled continuations of a few prompts (sampling with the model's
   generation_config.json: temperature, top_k; seeded).

    python3 tools/train-demo/evaluate.py tools/train-demo/out/model
"""
import argparse
import copy
import math
import os
import sys

import torch
from transformers import GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402  (tokenizer paths, heldout_loss)

PROMPTS = ["And God said", "In the beginning", "The LORD is my shepherd", "Jesus answered and said unto them"]
Q8_BLOCK = 32


def round_f16(w):
    return w.to(torch.float16).to(torch.float32)


def q8_0(w_nk):
    """q8_0 round trip of an [n, k] matrix, blocks of 32 along k, as Quill's quantize does."""
    n, k = w_nk.shape
    assert k % Q8_BLOCK == 0
    b = w_nk.reshape(n, k // Q8_BLOCK, Q8_BLOCK)
    amax = b.abs().amax(dim=-1, keepdim=True)
    d = (amax / 127.0).to(torch.float16).to(torch.float32)
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    y = b * inv
    q = (torch.sign(y) * torch.floor(y.abs() + 0.5)).clamp(-127, 127)
    return (q * d).reshape(n, k)


def quantized(model, kind):
    m = copy.deepcopy(model)
    with torch.no_grad():
        t = m.transformer
        t.wpe.weight.copy_(round_f16(t.wpe.weight))
        # wte is [vocab, n_embd] = [n, k] for the tied lm_head; Conv1D weights are [k, n].
        if kind == "f16":
            t.wte.weight.copy_(round_f16(t.wte.weight))
        else:
            t.wte.weight.copy_(q8_0(t.wte.weight))
        for block in t.h:
            for conv in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                w = conv.weight
                w.copy_(round_f16(w) if kind == "f16" else q8_0(w.t().contiguous()).t())
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=os.path.join(HERE, "out", "model"))
    ap.add_argument("--heldout", default=os.path.join(HERE, "revelation.txt"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=int, default=2, help="sampled continuations per prompt")
    ap.add_argument("--no-quant", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tok = train.load_tokenizer()
    model = GPT2LMHeadModel.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    ids = train.encode_heldout(tok, args.heldout)

    base, n = train.heldout_loss(model, ids)
    print(f"held-out: {os.path.relpath(args.heldout)}, {len(ids)} tokens, {n} scored (max_length 512, stride 256)")
    print(f"f32   loss {base:.5f}  perplexity {math.exp(base):.4f}")
    if not args.no_quant:
        for kind in ("f16", "q8_0"):
            loss, _ = train.heldout_loss(quantized(model, kind), ids)
            rel = math.exp(loss) / math.exp(base) - 1
            print(f"{kind:5} loss {loss:.5f}  perplexity {math.exp(loss):.4f}  ({rel * 100:+.3f}% vs f32)")

    gc = model.generation_config
    print(f"\nsampling: temperature {gc.temperature}, top_k {gc.top_k}, max_new_tokens {gc.max_new_tokens}, "
          f"seed {args.seed}")
    for prompt in PROMPTS:
        x = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            greedy = model.generate(**x, do_sample=False, max_new_tokens=gc.max_new_tokens,
                                    pad_token_id=train.EOT_ID)
        print(f"\n=== {prompt!r} greedy:\n{tok.decode(greedy[0])}")
        for i in range(args.samples):
            torch.manual_seed(args.seed + i)
            with torch.no_grad():
                out = model.generate(**x, pad_token_id=train.EOT_ID)
            print(f"--- {prompt!r} sampled (seed {args.seed + i}):\n{tok.decode(out[0])}")


if __name__ == "__main__":
    main()
