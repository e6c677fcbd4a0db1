//! The GEMVs: one row of x (decoding) against either layout, or a few rows (a short prompt)
//! against `(out, in)` weights. Each streams the weights once per pass; the weights do not fit
//! in cache, so memory bandwidth bounds them.

use half::f16;

use super::prefetch::PREFETCH_ROWS;
use super::rows::{BlockRows, Q8Rows};
use crate::elem::Elem;
use crate::simd::Simd;
use crate::weight::Q8_BLOCK;

/// `out[i, j] += x[i, :] · W[j, :]` for every row `i` of x and `j` in `n0..n1`, W stored `(N, K)`:
/// tiles of four weight rows × `XR` rows of x, so the weights stream once per `XR` rows of x.
/// `XR = 1` is decoding's GEMV for f32 weights (f16 has [`gemv_one_row_out_in`]); a few rows
/// more (a short prompt) use a larger `XR` rather than the GEMM, whose panels of `NR` rows of x
/// would mostly hold padding. A short last tile repeats its first row (results not stored): one
/// code path.
///
/// # Safety
/// The CPU supports `S`; `x` holds M rows of `k`; `w` holds rows `n0..n1` of `k` elements; `out` is
/// valid for reads and writes at columns `n0..n1` of M rows of `n`.
#[inline(always)]
pub(super) unsafe fn gemv_out_in<S: Simd, E: Elem, const XR: usize>(
    x: &[f32],
    w: *const E,
    k: usize,
    n: usize,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above: a tile reads rows `i0..i0 + XR` of x (a short tile repeats its
    // first row) and weight rows `j..j + 4` below n1 (likewise), inputs below `full ≤ k` in vectors
    // and the rest one by one, and writes only the rows and columns it owns; prefetches never
    // fault.
    unsafe {
        let m = x.len() / k;
        let full = k / S::LANES * S::LANES;
        let tail =
            |xr: *const f32, row: *const E| -> f32 { (full..k).map(|i| *xr.add(i) * (*row.add(i)).to_f32()).sum() };
        for i0 in (0..m).step_by(XR) {
            let ir = XR.min(m - i0);
            let xs: [*const f32; XR] = std::array::from_fn(|i| x.as_ptr().add((i0 + if i < ir { i } else { 0 }) * k));
            for j in (n0..n1).step_by(4) {
                let jr = 4.min(n1 - j);
                let rows: [*const E; 4] = std::array::from_fn(|r| w.add((j + if r < jr { r } else { 0 }) * k));
                let mut acc = [[S::zero(); 4]; XR];
                let mut i = 0;
                while i < full {
                    // Indexed, not iterated: loops LLVM unrolls, accumulators in registers.
                    #[allow(clippy::needless_range_loop)]
                    for r in 0..4 {
                        // The same column eight rows on: keeps enough lines in flight.
                        S::prefetch(rows[r].wrapping_add(PREFETCH_ROWS * k + i));
                        let wv = E::load::<S>(rows[r].add(i));
                        for xi in 0..XR {
                            acc[xi][r] = wv.mul_add(S::load(xs[xi].add(i)), acc[xi][r]);
                        }
                    }
                    i += S::LANES;
                }
                for xi in 0..ir {
                    for r in 0..jr {
                        *out.add((i0 + xi) * n + j + r) += acc[xi][r].hsum() + tail(xs[xi], rows[r]);
                    }
                }
            }
        }
    }
}

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W stored `(N, K)`: decoding's GEMV, one weight
/// row per pass with four accumulators along K. Unlike tiles of four rows (the few-row path's
/// shape at one row of x) it keeps one weight stream in flight at a time, as the q8_0 GEMVs do.
/// It runs on the level's [`Simd::F16Gemv`] vectors: 256-bit ones on AVX-512 too, which stream
/// f16 weights faster than 512-bit ones (docs/PERFORMANCE.md, "Decoding: GEMVs that stream").
///
/// # Safety
/// The CPU supports `S`; `x` holds at least `k` floats; `w` holds rows `n0..n1` of `k` elements;
/// `out` is valid for reads and writes at `n0..n1`.
#[inline(always)]
pub(super) unsafe fn gemv_one_row_out_in<S: Simd, E: Elem>(
    x: &[f32],
    w: *const E,
    k: usize,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above: every load is below `k` in row j < n1 of W and in x (whole steps
    // below `full4`, vectors below `full`, single elements after); prefetches never fault.
    unsafe {
        let step = 4 * S::LANES;
        let (full4, full) = (k / step * step, k / S::LANES * S::LANES);
        let px = x.as_ptr();
        for j in n0..n1 {
            let row = w.add(j * k);
            let mut acc = [S::zero(); 4];
            let mut i = 0;
            while i < full4 {
                // Each line of the step, eight rows on: keeps enough lines in flight.
                for line in (0..step * std::mem::size_of::<E>()).step_by(64) {
                    S::prefetch(row.wrapping_add(PREFETCH_ROWS * k + i).cast::<u8>().wrapping_add(line));
                }
                // Indexed, not iterated: a loop LLVM unrolls, with the accumulators in registers.
                #[allow(clippy::needless_range_loop)]
                for a in 0..4 {
                    let at = i + a * S::LANES;
                    acc[a] = E::load::<S>(row.add(at)).mul_add(S::load(px.add(at)), acc[a]);
                }
                i += step;
            }
            while i < full {
                acc[0] = E::load::<S>(row.add(i)).mul_add(S::load(px.add(i)), acc[0]);
                i += S::LANES;
            }
            let tail: f32 = (full..k).map(|i| *px.add(i) * (*row.add(i)).to_f32()).sum();
            *out.add(j) += acc[0].add(acc[1]).add(acc[2].add(acc[3])).hsum() + tail;
        }
    }
}

/// Scales widened per call of [`gemv_q8`]: enough for K up to 32 · 256 = 8192 per pass.
const Q8_SCALE_RUN: usize = 256;

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W q8_0 `(N, K)`: four rows at a time, each
/// block's 32 products summed in f32 and then multiplied by its scale. The weights are widened
/// to f32 (exact); the activations stay f32.
///
/// # Safety
/// The CPU supports `S`; `x` holds K = `w.k` floats, a multiple of 32; `w` holds rows `n0..n1` (K
/// bytes and K / 32 scales each); `out` is valid for reads and writes at `n0..n1`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // block b indexes the weights, x and four rows' scales
pub(super) unsafe fn gemv_q8<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: the contract above: rows `j + r` < n1 of W, blocks below K / 32 (their scales widened
    // in runs of at most `Q8_SCALE_RUN`, which `d` holds), x inside its K floats; prefetches never
    // fault.
    unsafe {
        let (k, px) = (w.k, x.as_ptr());
        let blocks = k / Q8_BLOCK;
        let mut d = [[0.0f32; Q8_SCALE_RUN]; 4];
        let mut j = n0;
        while j < n1 {
            let nr = 4.min(n1 - j);
            let mut acc = [S::zero(); 4];
            for b0 in (0..blocks).step_by(Q8_SCALE_RUN) {
                let bn = Q8_SCALE_RUN.min(blocks - b0);
                for (r, dr) in d.iter_mut().enumerate().take(nr) {
                    widen_f16::<S>(w.scales.add((j + r) * blocks + b0), &mut dr[..bn]);
                }
                for b in 0..bn {
                    let i0 = (b0 + b) * Q8_BLOCK;
                    for (r, a) in acc.iter_mut().enumerate().take(nr) {
                        let row = w.q.add((j + r) * k + i0);
                        // The same block eight rows on: keeps enough lines in flight.
                        S::prefetch(row.wrapping_add(PREFETCH_ROWS * k));
                        let mut t = S::zero();
                        let mut i = 0;
                        while i < Q8_BLOCK {
                            t = S::load_i8(row.add(i)).mul_add(S::load(px.add(i0 + i)), t);
                            i += S::LANES;
                        }
                        *a = S::splat(d[r][b]).mul_add(t, *a);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(nr) {
                *out.add(j + r) += a.hsum();
            }
            j += nr;
        }
    }
}

/// `src[..dst.len()]` f16 values widened into `dst`.
///
/// # Safety
/// The CPU supports `S`; `src` is valid for reading `dst.len()` values.
#[inline(always)]
pub(crate) unsafe fn widen_f16<S: Simd>(src: *const f16, dst: &mut [f32]) {
    // SAFETY: the contract above: vectors below `full ≤ dst.len()`, then single values.
    unsafe {
        let full = dst.len() / S::LANES * S::LANES;
        for i in (0..full).step_by(S::LANES) {
            S::load_f16(src.add(i) as *const u16).store(dst.as_mut_ptr().add(i));
        }
        for (i, o) in dst.iter_mut().enumerate().skip(full) {
            *o = (*src.add(i)).to_f32();
        }
    }
}

/// `out[n0..n1] += Σ_k x[k] · W[k, n0..n1]`, W stored `(K, N)`: the output slice stays in L1
/// while four weight rows at a time stream through, each read once, in order.
///
/// # Safety
/// The CPU supports `S`; `w` holds `x.len()` rows of `n` elements, with `n0 ≤ n1 ≤ n`; `out` is
/// valid for reads and writes at `n0..n1`.
#[inline(always)]
pub(super) unsafe fn gemv_in_out<S: Simd, E: Elem>(
    x: &[f32],
    w: *const E,
    n: usize,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above: row kk < K of W and out are read at columns `n0..n1` (vectors
    // below `full`, then single elements); prefetches never fault.
    unsafe {
        let k = x.len();
        let width = n1 - n0;
        let full = width / S::LANES * S::LANES;
        let o = out.add(n0);
        let mut kk = 0;
        while kk + 4 <= k {
            let rows =
                [w.add(kk * n + n0), w.add((kk + 1) * n + n0), w.add((kk + 2) * n + n0), w.add((kk + 3) * n + n0)];
            let xs = [S::splat(x[kk]), S::splat(x[kk + 1]), S::splat(x[kk + 2]), S::splat(x[kk + 3])];
            let mut j = 0;
            while j < full {
                let mut acc = S::load(o.add(j));
                for (xv, r) in xs.iter().zip(rows) {
                    // The same columns four rows further: keeps enough lines in flight.
                    S::prefetch(r.wrapping_add(4 * n + j));
                    acc = xv.mul_add(E::load::<S>(r.add(j)), acc);
                }
                acc.store(o.add(j));
                j += S::LANES;
            }
            for j in full..width {
                for (r, row) in rows.iter().enumerate() {
                    *o.add(j) += x[kk + r] * (*row.add(j)).to_f32();
                }
            }
            kk += 4;
        }
        while kk < k {
            let row = w.add(kk * n + n0);
            let xv = S::splat(x[kk]);
            let mut j = 0;
            while j < full {
                xv.mul_add(E::load::<S>(row.add(j)), S::load(o.add(j))).store(o.add(j));
                j += S::LANES;
            }
            for j in full..width {
                *o.add(j) += x[kk] * (*row.add(j)).to_f32();
            }
            kk += 1;
        }
    }
}

/// Weights a block-format GEMV decodes at a time: one k-quant block, eight of 32.
const DECODE_RUN: usize = 256;

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W in a block format `(N, K)`: each row decoded
/// [`DECODE_RUN`] weights at a time into an f32 buffer (the format's reference decoder), then
/// multiplied with x in vectors. Exact with respect to the stored weights; the formats' integer
/// kernels are faster.
///
/// # Safety
/// The CPU supports `S`; `x` holds K = `w.k` floats, whole blocks; `w` holds rows `n0..n1`; `out`
/// is valid for reads and writes at `n0..n1`.
#[inline(always)]
pub(crate) unsafe fn gemv_blocks<S: Simd>(x: &[f32], w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: the contract above: each run is whole blocks below K (K is a multiple of the block,
    // and DECODE_RUN of every block size), decoded into `buf`, which holds DECODE_RUN floats, a
    // multiple of the lanes; x is read below K.
    unsafe {
        let k = w.k;
        let run = DECODE_RUN.min(k);
        let mut buf = [0.0f32; DECODE_RUN];
        let px = x.as_ptr();
        for j in n0..n1 {
            let mut acc = [S::zero(); 2];
            for k0 in (0..k).step_by(run) {
                let kc = run.min(k - k0);
                w.decode(j, k0, kc, buf.as_mut_ptr());
                // Blocks are 32 or 256 weights: whole vectors of every level.
                debug_assert!(kc.is_multiple_of(2 * S::LANES));
                for i in (0..kc).step_by(2 * S::LANES) {
                    for (a, acc) in acc.iter_mut().enumerate() {
                        let at = i + a * S::LANES;
                        *acc = S::load(buf.as_ptr().add(at)).mul_add(S::load(px.add(k0 + at)), *acc);
                    }
                }
            }
            *out.add(j) += acc[0].add(acc[1]).hsum();
        }
    }
}
