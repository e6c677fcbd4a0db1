#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ (cargo fuzz, nightly toolchain) for a bounded time, with seed
# corpora made from the committed fixtures. Not part of CI. Usage:
#   tools/fuzz.sh [SECONDS_PER_TARGET (default 600)] [TARGET...]
# Prints each target's executions; crashes land in fuzz/artifacts/<target>/ (keep each one as a
# regression test in tests/ once fixed). Needs: rustup toolchain nightly, cargo install cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
per=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(safetensors_header config_json tokenizer_files tokenizer_encode_decode quill_file cli_args)
fi

corpus=fuzz/corpus
mkdir -p "$corpus" fuzz/logs
seed() { # seed TARGET FILE...
    local t=$1
    shift
    mkdir -p "$corpus/$t"
    for f in "$@"; do cp "$f" "$corpus/$t/seed-$(basename "$(dirname "$f")")-$(basename "$f")"; done
}
seed safetensors_header tests/data/forward/*/model.safetensors
seed config_json tests/data/*/config.json tests/data/forward/*/config.json
seed tokenizer_encode_decode tests/data/score-text.txt
python3 - "$repo" <<'PY'
import json, os, sys
repo = sys.argv[1]
tok = os.path.join(repo, "tests/data/gpt2-tokenizer")
vocab = json.load(open(os.path.join(tok, "encoder.json"), encoding="utf-8"))
merges = open(os.path.join(tok, "vocab.bpe"), encoding="utf-8").read().split("\n")
# A small consistent tokenizer: the 256 byte tokens and the first 200 merges.
small_merges = merges[:201]
keep = {k: v for k, v in vocab.items() if v < 256}
for m in small_merges[1:]:
    a, b = m.split(" ")
    keep.setdefault(a + b, len(keep))
out = os.path.join(repo, "fuzz/corpus/tokenizer_files")
os.makedirs(out, exist_ok=True)
data = json.dumps(keep, ensure_ascii=False).encode() + b"\xff" + "\n".join(small_merges).encode()
open(os.path.join(out, "seed-small-vocab-merges"), "wb").write(data)
os.makedirs(os.path.join(repo, "fuzz/corpus/cli_args"), exist_ok=True)
for i, line in enumerate([
    "generate\0-m\0m\0hi\0--top-p\0 0.9\0--threads\0 2",
    "bench\0-m\0m\0--threads\0 1,2\0-p\0 128",
    "score\0-m\0m\0f\0--ctx\0 32\0--stride\0 16",
    "generate\0hi\0--num-beams\0 4\0--length-penalty\0 -1.5",
]):
    open(os.path.join(repo, f"fuzz/corpus/cli_args/seed-{i}"), "w").write(line)
PY
# Tiny one-file models for the Quill-file target, written by the quantize tool.
cargo build --release -q -p quantize
for t in f32 f16 q8_0; do
    mkdir -p "$corpus/quill_file"
    target/release/quantize tests/data/forward/gpt2 "$corpus/quill_file/seed-gpt2-$t.safetensors" --type "$t" --force 2>/dev/null
done

cd fuzz
for t in "${targets[@]}"; do
    echo "== $t (${per}s)"
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$per" -rss_limit_mb=4096 -max_len=262144 \
        >"logs/$t.log" 2>&1 || { echo "   FAILED: see fuzz/logs/$t.log and fuzz/artifacts/$t/"; continue; }
    grep -E "^Done [0-9]+ runs" "logs/$t.log" | sed 's/^/   /'
done
