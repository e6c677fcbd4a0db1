//! The register-blocked micro-kernel of both GEMMs (and of attention's tiles): an `MR × NR`
//! tile of accumulators over a run of k, prefetching weight lines for the next panel on the way.

use super::prefetch::LineFetch;
use crate::simd::Simd;

/// `tile[MR][NR] = a[MR rows, kc] · panel[kc][NR]`, row i of a at `a + i·lda`.
///
/// # Safety
/// The CPU supports `S`; row `i < MR` of a holds `kc` floats at `a + i·lda`; `panel` holds
/// `kc × NR` floats (NR = NV · LANES); `tile` is valid for writing `MR × NR` floats.
#[inline(always)]
pub(crate) unsafe fn micro_kernel<S: Simd, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    panel: *const f32,
    tile: *mut f32,
) {
    // SAFETY: the contract above is `micro_tile`'s (rows at lda, inputs at 1) and `store_tile`'s;
    // nothing is fetched.
    unsafe {
        let acc = micro_tile::<S, MR, NV>(kc, a, lda, 1, panel, &mut LineFetch::none(), 0);
        store_tile::<S, MR, NV>(&acc, tile);
    }
}

/// k steps of [`micro_tile`] between two prefetches (lines left over are issued after the
/// tile). At the `(in, out)` GEMM's depth `KC` that spreads 32 lines over a micro-tile: what one
/// AVX-512 panel of f32 weights (256 rows × 128 bytes) needs over the 16 micro-tiles of a
/// 128-row prompt.
const FETCH_EVERY: usize = 8;

/// `a[MR rows, kc] · panel[kc][NR]` in MR·NV accumulator registers: element (i, kk) of a is at
/// `a + i·row_step + kk·k_step` (rows in place: lda and 1; packed by
/// [`pack_rows`](super::pack::pack_rows): 1 and MR). On the way it prefetches `lines` lines of
/// `fetch`, one every [`FETCH_EVERY`] k steps (any left over at the end), so that only a few are
/// in flight at a time.
///
/// # Safety
/// The CPU supports `S`; element (i, kk) of a, for `i < MR` and `kk < kc`, is readable at
/// `a + i·row_step + kk·k_step`; `panel` holds `kc × NR` floats. (The lines of `fetch` may be any
/// addresses: prefetches never fault.)
#[inline(always)]
pub(super) unsafe fn micro_tile<S: Simd, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    row_step: usize,
    k_step: usize,
    panel: *const f32,
    fetch: &mut LineFetch,
    lines: usize,
) -> [[S; NV]; MR] {
    // SAFETY: the contract above: step kk < kc reads a at `kk·k_step` and the panel's row kk.
    unsafe {
        let mut acc = [[S::zero(); NV]; MR];
        let mut left = lines;
        let mut kk = 0;
        while kk + FETCH_EVERY <= kc {
            if left > 0 {
                fetch.next::<S>();
                left -= 1;
            }
            for kk in kk..kk + FETCH_EVERY {
                mac_step::<S, MR, NV>(&mut acc, a.add(kk * k_step), row_step, panel.add(kk * NV * S::LANES));
            }
            kk += FETCH_EVERY;
        }
        for kk in kk..kc {
            mac_step::<S, MR, NV>(&mut acc, a.add(kk * k_step), row_step, panel.add(kk * NV * S::LANES));
        }
        for _ in 0..left {
            fetch.next::<S>();
        }
        acc
    }
}

/// One k step of [`micro_tile`]: `acc[i] += a[i·row_step] · b[..NR]`.
///
/// # Safety
/// The CPU supports `S`; `a + i·row_step` is readable for `i < MR`; `b` holds NR floats.
#[inline(always)]
unsafe fn mac_step<S: Simd, const MR: usize, const NV: usize>(
    acc: &mut [[S; NV]; MR],
    a: *const f32,
    row_step: usize,
    b: *const f32,
) {
    // SAFETY: the contract above.
    unsafe {
        let mut bv = [S::zero(); NV];
        for (v, slot) in bv.iter_mut().enumerate() {
            *slot = S::load(b.add(v * S::LANES));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let av = S::splat(*a.add(i * row_step));
            for (slot, bvv) in row.iter_mut().zip(bv) {
                *slot = av.mul_add(bvv, *slot);
            }
        }
    }
}

/// The accumulators of [`micro_tile`] into `tile[MR][NR]`.
///
/// # Safety
/// The CPU supports `S`; `tile` is valid for writing `MR × NR` floats.
#[inline(always)]
pub(super) unsafe fn store_tile<S: Simd, const MR: usize, const NV: usize>(acc: &[[S; NV]; MR], tile: *mut f32) {
    // SAFETY: the contract above: row i < MR, vector v < NV at `i·NR + v·LANES`.
    unsafe {
        let nr = NV * S::LANES;
        for (i, row) in acc.iter().enumerate() {
            for (v, slot) in row.iter().enumerate() {
                slot.store(tile.add(i * nr + v * S::LANES));
            }
        }
    }
}
