#!/usr/bin/env python3
"""The shipped q8_0 demo model (a Quill file) back to an f32 Hugging Face GPT-2 folder.

    python3 tools/train-demo/dequantize_demo.py models/kjv-demo.safetensors /tmp/demo-f32

Dev-time only (numpy and safetensors). Each q8_0 matrix becomes its stored values (int8 times
its block's f16 scale), Conv1D matrices go back to transformers' (in, out), and the config and
tokenizer come out of the metadata. The result is the base docs/QUALITY.md measures the 4-bit
types against: quantizing it to q8_0 again gives the shipped file's values exactly.
"""
import json, os, struct, sys
import numpy as np
from safetensors.numpy import save_file

src, out = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n]); meta = header.pop("__metadata__")
data = raw[8 + n:]
def tensor(name):
    h = header[name]; s, e = h["data_offsets"]
    dt = {"F32": np.float32, "F16": np.float16, "I8": np.int8}[h["dtype"]]
    return np.frombuffer(data[s:e], dtype=dt).reshape(h["shape"])
conv = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
t = {}
for name, h in header.items():
    if name.endswith(".scale"):
        continue
    v = tensor(name)
    if h["dtype"] == "I8":
        d = tensor(name + ".scale").astype(np.float32)
        v = (v.astype(np.float32).reshape(v.shape[0], -1, 32) * d[:, :, None]).reshape(v.shape)
    v = v.astype(np.float32)
    if name.endswith(conv):
        v = np.ascontiguousarray(v.T)  # (out, in) -> Conv1D (in, out)
    t[name] = v
os.makedirs(out, exist_ok=True)
save_file(t, os.path.join(out, "model.safetensors"))
open(os.path.join(out, "config.json"), "w").write(meta["quill.config"])
open(os.path.join(out, "vocab.json"), "w").write(meta["quill.vocab"])
open(os.path.join(out, "merges.txt"), "w").write(meta["quill.merges"])
print("wrote", out, len(t), "tensors")
