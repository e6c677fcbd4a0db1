#!/usr/bin/env bash
# Memory-safety checks of the kernels' unsafe code (nightly toolchain; not part of CI):
#  1. Miri runs the kernel tests at the scalar level (Miri interprets no vector intrinsics), which
#     covers the raw-pointer code shared by every level: output splitting across threads, the
#     q8_0 slicing, the attention rows.
#  2. AddressSanitizer runs the same tests natively, at every level this CPU has (AVX2,
#     AVX-512 or NEON), catching out-of-bounds reads and writes of the SIMD kernels.
# Usage: tools/sanitize.sh [miri|asan|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
host=$(rustc -vV | sed -n 's/^host: //p')
if [ "$what" = miri ] || [ "$what" = all ]; then
    rustup +nightly component add miri >/dev/null 2>&1 || true
    echo "== Miri: quill-kernels tests (scalar level)"
    # Tree Borrows: under the default Stacked Borrows model Miri stops in crossbeam-epoch (rayon's
    # work-stealing deque; its intrusive list retags a pointer Stacked Borrows forbids), code
    # outside this project that Tree Borrows, the model proposed to replace it, accepts.
    # Deterministic floats: Miri otherwise adds a few ulps of random error to exp/tanh, which the
    # tests' tolerances (made for real libm) do not allow for. Large shapes are skipped under
    # Miri (too_big_for_miri in the tests). Ignore leaks: rayon's pool threads are still alive
    # when the test binary's main thread returns, which Miri would report (AddressSanitizer's
    # leak check below covers leaks).
    MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-tree-borrows -Zmiri-deterministic-floats -Zmiri-ignore-leaks" cargo +nightly miri test -p quill-kernels --lib --test against_scalar
fi
if [ "$what" = asan ] || [ "$what" = all ]; then
    echo "== AddressSanitizer: quill-kernels tests (every level of this CPU)"
    RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
        cargo +nightly test -p quill-kernels --target "$host" --target-dir target/asan --lib --test against_scalar
fi
