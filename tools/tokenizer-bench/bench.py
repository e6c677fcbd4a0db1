#!/usr/bin/env python3
"""Encode/decode throughput of tiktoken and transformers' GPT2TokenizerFast on the tokenizer
benchmark corpus (benches/data/tokenizer-corpus/, the same text `cargo bench --bench tokenizer`
reads), one thread, in MB/s (10^6 bytes of UTF-8 text per second).

Not a test: run it by hand, on a quiet machine, next to the Quill bench (see run_all.sh).

    /root/venvs/tokbench/bin/python tools/tokenizer-bench/bench.py [--repeat 7] [--check-slow]

Both tokenizers are built offline from tests/data/gpt2-tokenizer/ (encoder.json = vocab.json,
vocab.bpe = merges.txt): tiktoken's Encoding from its own data-gym loader and GPT-2's pattern,
GPT2TokenizerFast from the two files. Before timing, the script checks that both give the same
ids on the corpus. `--check-slow` also runs the slow GPT2Tokenizer (the reference Quill is
tested against) and prints the token count and FNV-1a-64 digest of its ids, which
tests/tokenizer_props.rs checks Quill against.

Venv: python3 -m venv /root/venvs/tokbench &&
      /root/venvs/tokbench/bin/pip install tiktoken==0.14.0 transformers==4.46.3 tokenizers==0.20.3
"""
import argparse
import os
import platform
import statistics
import time

# One thread everywhere (tokenizers' rayon pool is only used by batch calls, but be sure).
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local files, cache nothing
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # no "PyTorch not found" notice

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "benches", "data", "tokenizer-corpus")
TOK_DIR = os.path.join(ROOT, "tests", "data", "gpt2-tokenizer")
# GPT-2's pre-tokenizer pattern (encoder.py in openai/gpt-2).
GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def corpus_names():
    """The regular files of the corpus folder, except *.md, in name order (as the Rust bench)."""
    return sorted(n for n in os.listdir(CORPUS) if not n.endswith(".md") and os.path.isfile(os.path.join(CORPUS, n)))


def corpus_text():
    """The corpus: its files concatenated."""
    return "".join(open(os.path.join(CORPUS, n), encoding="utf-8", newline="").read() for n in corpus_names())


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in i.to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def timeit(fn, repeat):
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--check-slow", action="store_true")
    ap.add_argument("--per-file", action="store_true", help="also tiktoken's encode MB/s on each corpus file")
    args = ap.parse_args()

    import tiktoken
    import tiktoken.load
    import tokenizers
    import transformers
    from transformers import GPT2Tokenizer, GPT2TokenizerFast

    transformers.logging.set_verbosity_error()  # "sequence longer than 1024" warnings
    text = corpus_text()
    nbytes = len(text.encode("utf-8"))

    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(TOK_DIR, "vocab.bpe"),
        encoder_json_file=os.path.join(TOK_DIR, "encoder.json"),
        # The hashes tiktoken's own gpt2 encoding checks: these are the official files.
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    )
    tik = tiktoken.Encoding(
        "gpt2-local", pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )
    fast = GPT2TokenizerFast(
        vocab_file=os.path.join(TOK_DIR, "encoder.json"), merges_file=os.path.join(TOK_DIR, "vocab.bpe")
    )

    # Special tokens written in the text (two Python files mention <|endoftext|>) are recognised
    # by all three tokenizers, as GPT2Tokenizer does by default.
    tik_ids = tik.encode(text, allowed_special="all")
    fast_ids = fast.encode(text)
    if tik_ids != fast_ids:
        first = next(i for i, (a, b) in enumerate(zip(tik_ids, fast_ids)) if a != b)
        raise SystemExit(f"tiktoken and GPT2TokenizerFast disagree at token {first}")
    print(f"corpus: {nbytes} bytes, {len(tik_ids)} tokens; tiktoken ids == GPT2TokenizerFast ids")
    if args.check_slow:
        slow = GPT2Tokenizer(
            vocab_file=os.path.join(TOK_DIR, "encoder.json"), merges_file=os.path.join(TOK_DIR, "vocab.bpe")
        )
        slow_ids = slow.encode(text)
        status = "==" if slow_ids == tik_ids else "!="
        print(f"GPT2Tokenizer (slow): {len(slow_ids)} tokens, fnv1a64 {fnv1a64(slow_ids)} ({status} tiktoken's)")

    print(f"python {platform.python_version()}, tiktoken {tiktoken.__version__}, "
          f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
    print(f"{'tokenizer':<36} {'median MB/s':>12} {'best MB/s':>10}")
    rows = [
        ("tiktoken encode", lambda: tik.encode(text, allowed_special="all")),
        ("tiktoken decode_bytes", lambda: tik.decode_bytes(tik_ids)),
        ("GPT2TokenizerFast encode", lambda: fast.encode(text)),
        ("GPT2TokenizerFast decode", lambda: fast.decode(fast_ids)),
    ]
    for name, fn in rows:
        med, best = timeit(fn, args.repeat)
        print(f"{name:<36} {nbytes / med / 1e6:>12.2f} {nbytes / best / 1e6:>10.2f}")
    if args.per_file:
        for name in corpus_names():
            t = open(os.path.join(CORPUS, name), encoding="utf-8", newline="").read()
            med, best = timeit(lambda: tik.encode(t, allowed_special="all"), max(3, 3_000_000 // len(t)))
            n = len(t.encode("utf-8"))
            print(f"{'tiktoken encode ' + name:<60} {n / med / 1e6:>8.2f}")


if __name__ == "__main__":
    main()
