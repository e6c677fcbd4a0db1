#!/usr/bin/env bash
# `quill tokenize --file` end to end on 10 MB: wall time and peak memory (max RSS) of the whole
# command (load, read, encode, print), for one or more quill binaries, alternated, 5 runs each.
#
#   tools/tokenizer-bench/tokenize_file.sh [QUILL ...]    (default: target/release/quill)
#
# The text: the corpus's files (benches/data/tokenizer-corpus/) concatenated and repeated to
# 10 MB or more. The model: tests/data/tiny-gpt2-hub (GPT-2's real tokenizer files).
set -euo pipefail
cd "$(dirname "$0")/../.."
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/quill)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=(benches/data/tokenizer-corpus/*.{txt,rs,py,html,json})
while [ "$(stat -c %s "$tmp/text" 2>/dev/null || echo 0)" -lt 10000000 ]; do cat "${files[@]}" >> "$tmp/text"; done
echo "== $(stat -c %s "$tmp/text") bytes, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
model=tests/data/tiny-gpt2-hub
for args in "--json --threads 1" "--threads 1" "--count --threads 1" "--json --threads 2"; do
  for bin in "${bins[@]}"; do : > "$tmp/$(basename "$bin").times"; done
  for _ in 1 2 3 4 5; do
    for bin in "${bins[@]}"; do
      # shellcheck disable=SC2086
      /usr/bin/time -f "%e %M" -a -o "$tmp/$(basename "$bin").times" "$bin" tokenize -m $model --file "$tmp/text" $args \
        > /dev/null 2>&1 || echo "failed" >> "$tmp/$(basename "$bin").times"
    done
  done
  for bin in "${bins[@]}"; do
    if grep -q failed "$tmp/$(basename "$bin").times"; then
      printf "%-28s %-22s fails (an option it lacks?)\n" "$bin" "$args"
      continue
    fi
    grep -v '^Command' "$tmp/$(basename "$bin").times" | sort -n | awk -v b="$bin" -v a="$args" \
      'NR==3 { printf "%-28s %-22s median %.2f s, max RSS %d MB\n", b, a, $1, $2/1024 }'
  done
done
