#!/usr/bin/env bash
# The tokenizer figures of docs/PERFORMANCE.md in one run: tiktoken and transformers'
# GPT2TokenizerFast (bench.py), then Quill (cargo bench --bench tokenizer), back to back on the
# same corpus, with the machine's load before, between and after. Run it when the machine is
# quiet (`uptime`, `ps aux --sort=-%cpu | head`).
#
#   tools/tokenizer-bench/run_all.sh [CRITERION FILTER, e.g. 'corpus|5MB']
#
# PY: the venv's python (default /root/venvs/tokbench/bin/python; see bench.py for the pins).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/root/venvs/tokbench/bin/python}
load() { echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u +%H:%M:%SZ)"; }
echo "== $(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
nice -n 19 cargo bench --bench tokenizer --no-run >/dev/null 2>&1
load
nice -n 19 "$PY" tools/tokenizer-bench/bench.py --per-file
load
nice -n 19 cargo bench --bench tokenizer -- --noplot "$@" 2>&1 | grep -v -E '^Benchmarking|%|^Found|^ +[0-9]+ \(|^$|change:|regressed|improved|No change|noise threshold|^Warning'
load
