//! Packing for the GEMMs: rows of x in blocks, `(in, out)` weight panels, and the per-thread
//! buffers they are packed into.

use std::cell::RefCell;

use crate::elem::Elem;
use crate::simd::Simd;

thread_local! {
    /// Per-thread packing buffers, grown once to the largest size seen and then reused.
    pub(super) static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// x `(M, K)` packed as `[⌈M / R⌉][K][R]` (rows past M zero). The `(in, out)` GEMM packs R = MR
/// rows, so that its micro-kernel reads them at one k as one contiguous run, with no per-row
/// address arithmetic in its loop; the `(out, in)` GEMM's xᵀ panels are R = NR rows.
#[inline(never)]
pub(super) fn pack_rows<const R: usize>(x: &[f32], m: usize, k: usize, dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), m.div_ceil(R) * R * k);
    for (b, block) in dst.chunks_exact_mut(R * k).enumerate() {
        let rows = R.min(m - b * R);
        for (kk, at) in block.chunks_exact_mut(R).enumerate() {
            for (i, v) in at.iter_mut().enumerate() {
                *v = if i < rows { x[(b * R + i) * k + kk] } else { 0.0 };
            }
        }
    }
}

/// Packs `W[k0..k0+kc, j0..j0+nc]` of an `(in, out)` W with `n` columns as one `[kc][NR]`
/// panel of f32, zero-padding columns past `nc`.
///
/// # Safety
/// The CPU supports `S`; `w` holds rows `k0..k0 + kc` of `n` elements, with `j0 + nc ≤ n` and
/// `nc ≤ NR` (NV · LANES); `panel` holds at least `kc × NR` floats.
#[inline(always)]
pub(super) unsafe fn pack_panel<S: Simd, E: Elem, const NV: usize>(
    w: *const E,
    n: usize,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    panel: &mut [f32],
) {
    // SAFETY: the contract above: row `k0 + kk` of W is read at columns `j0..j0 + nc` (whole
    // vectors when nc = NR), into row kk of the panel, NR floats.
    unsafe {
        let nr = NV * S::LANES;
        for kk in 0..kc {
            let (src, row) = (w.add((k0 + kk) * n + j0), panel.as_mut_ptr().add(kk * nr));
            if nc == nr {
                for v in 0..NV {
                    E::load::<S>(src.add(v * S::LANES)).store(row.add(v * S::LANES));
                }
            } else {
                for c in 0..nr {
                    *row.add(c) = if c < nc { (*src.add(c)).to_f32() } else { 0.0 };
                }
            }
        }
    }
}
