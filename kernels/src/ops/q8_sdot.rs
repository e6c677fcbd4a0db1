//! q8_0 matmuls with integer dot products on aarch64 (the `neondot` level: NEON + dotprod). The
//! activations are quantized per block of 32 exactly as on the `avx512vnni` level (f32 scale
//! `max |x| / 127`, values rounded to the nearest step, ties to even; a non-finite block gets a
//! NaN scale), and `sdot` multiplies 16 byte pairs into four i32 lanes per instruction, where
//! widening the weights to f32 takes about four instructions for four products.
//!
//! `sdot` multiplies signed by signed bytes, so the x86 level's sign and offset tricks are not
//! needed and one tile kernel serves both shapes: four weight rows against one row of x (decode)
//! or against four rows (a prompt). A block's four lanes are partial sums of the same block, so
//! they take the block's scale `d_w · d_x` together and are only summed at the end of the row.
//!
//! Rust's `vdotq_s32` is not stable yet: `sdot` is written as inline assembly inside functions
//! compiled with the `dotprod` feature, which `dispatch` only hands out where the CPU has it.

use std::arch::aarch64::*;
use std::cell::RefCell;

use super::matmul::gemv::widen_f16;
use super::matmul::prefetch::PREFETCH_ROWS;
use super::matmul::rows::{BlockRows, Q8Rows};
use super::matmul::QuantMatmul;
use super::quantize_neon::{quantize_block, sdot};
use crate::simd::neon::Neon;
use crate::simd::Simd;
use crate::weight::{Weight, Q8_BLOCK};

/// Activations quantized per block, integer dots with `sdot` (the `neondot` level).
pub(crate) struct SdotDots;

thread_local! {
    /// The calling thread's quantized rows and widened weight scales, reused between calls.
    static SCRATCH: RefCell<QuantizedRows> = RefCell::new(QuantizedRows::default());
}

impl QuantMatmul for SdotDots {
    /// Every format on `sdot` ([`super::blocks_sdot::gemv`]).
    #[inline(always)]
    unsafe fn gemv_blocks<S: Simd>(x: &[f32], w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
        // SAFETY: the trait's contract (at this level the CPU has NEON and dotprod) is the GEMV's.
        unsafe { super::blocks_sdot::gemv(x, w, out, n0, n1) }
    }

    /// Every format on `sdot` ([`super::blocks_sdot::gemm`]).
    #[inline(always)]
    unsafe fn gemm_blocks<S: Simd, const MR: usize, const NV: usize>(
        x: &[f32],
        m: usize,
        rows: BlockRows,
        shape: Weight,
        out: *mut f32,
        n0: usize,
        n1: usize,
    ) {
        // SAFETY: as above, for the GEMM.
        unsafe { super::blocks_sdot::gemm(x, m, rows, shape.n, out, n0, n1) }
    }

    /// Each thread quantizes the row itself: K values, against the `(n1 - n0) × K` weights it
    /// then reads.
    #[inline(always)]
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
        // SAFETY: the trait's contract (at this level the CPU has NEON and dotprod; `x` is one row
        // of K, a multiple of 32; W holds rows `n0..n1`; out is valid at `n0..n1`) is what
        // `quantize` and `tile_dots` need; with one row the output stride is not used.
        unsafe {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                s.quantize(x);
                // One row: the output stride is never used.
                tile_dots::<1>(&mut s, 1, w, 0, out, n0, n1)
            })
        }
    }

    /// Each thread quantizes the M rows itself (M × K values, against M × K × (n1 - n0) products).
    #[inline(always)]
    unsafe fn gemm<S: Simd, const MR: usize, const NV: usize>(
        x: &[f32],
        m: usize,
        rows: Q8Rows,
        shape: Weight,
        out: *mut f32,
        n0: usize,
        n1: usize,
    ) {
        // SAFETY: the trait's contract (at this level the CPU has NEON and dotprod; `x` holds `m`
        // rows of K, a multiple of 32; out is valid for `m` rows of N at columns `n0..n1`) is what
        // `quantize` and `tile_dots` need.
        unsafe {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                s.quantize(x);
                tile_dots::<GEMM_X_ROWS>(&mut s, m, rows, shape.n, out, n0, n1)
            })
        }
    }
}

/// Rows of x quantized per block, and the current weight tile's scales widened to f32.
#[derive(Default)]
struct QuantizedRows {
    /// `round(x / d)` per element, M × K bytes.
    q: Vec<i8>,
    /// One scale per row and block, M × K / 32.
    d: Vec<f32>,
    /// The scales of the weight rows of one tile, `W_ROWS × K / 32`.
    wd: Vec<f32>,
}

impl QuantizedRows {
    /// Rows of values (a whole number of blocks) quantized.
    ///
    /// # Safety
    /// `x.len()` is a multiple of 32.
    #[target_feature(enable = "neon")]
    unsafe fn quantize(&mut self, x: &[f32]) {
        // SAFETY: the contract above: the buffers were just resized to `x.len()` bytes and
        // `x.len() / 32` scales, and block b reads 32 floats and writes 32 bytes from `b · 32`.
        unsafe {
            self.q.resize(x.len(), 0);
            self.d.resize(x.len() / Q8_BLOCK, 0.0);
            for (b, d) in self.d.iter_mut().enumerate() {
                *d = quantize_block(x.as_ptr().add(b * Q8_BLOCK), self.q.as_mut_ptr().add(b * Q8_BLOCK));
            }
        }
    }
}

/// Weight rows per tile: each load of an x block feeds this many pairs of `sdot`.
const W_ROWS: usize = 4;

/// Rows of x per tile in the GEMM: with four weight rows, 16 accumulators + 8 weight vectors
/// stay within the 32 registers.
const GEMM_X_ROWS: usize = 4;

/// Columns `n0..n1` of `out[M, N] += x · Wᵀ`, W q8_0 `(N, K)`, x quantized (all M rows), in tiles
/// of [`W_ROWS`] weight rows × `XR` rows of x. A short tile repeats its first row (results not
/// stored): one code path.
///
/// # Safety
/// The CPU has NEON and dotprod; W holds N × K bytes and N × K / 32 scales; `out` is valid for
/// M rows of stride `n` (any stride if M = 1), columns `n0..n1` written by no other thread
/// meanwhile; `x` holds `m` rows quantized from K values each.
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile_dots<const XR: usize>(
    x: &mut QuantizedRows,
    m: usize,
    w: Q8Rows,
    n: usize,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above: weight rows `row_of(r)` < n1 (K bytes and K / 32 scales each), x
    // rows `xrow(i)` < m, blocks below K / 32 (32 bytes from `b · 32`), and out rows `i0 + i` < m
    // at columns `j0 + r` < n1 (stride n, unused with one row); prefetches never fault.
    unsafe {
        let (k, blocks) = (w.k, w.k / Q8_BLOCK);
        x.wd.resize(W_ROWS * blocks, 0.0);
        for j0 in (n0..n1).step_by(W_ROWS) {
            let jr = W_ROWS.min(n1 - j0);
            let row_of = |r: usize| j0 + if r < jr { r } else { 0 };
            for r in 0..W_ROWS {
                widen_f16::<Neon>(w.scales.add(row_of(r) * blocks), &mut x.wd[r * blocks..(r + 1) * blocks]);
            }
            let wq: [*const i8; W_ROWS] = std::array::from_fn(|r| w.q.add(row_of(r) * k));
            let wd: [*const f32; W_ROWS] = std::array::from_fn(|r| x.wd.as_ptr().add(r * blocks));
            for i0 in (0..m).step_by(XR) {
                let ir = XR.min(m - i0);
                let xrow = |i: usize| i0 + if i < ir { i } else { 0 };
                let xq: [*const i8; XR] = std::array::from_fn(|i| x.q.as_ptr().add(xrow(i) * k));
                let xd: [*const f32; XR] = std::array::from_fn(|i| x.d.as_ptr().add(xrow(i) * blocks));
                let mut acc = [[vdupq_n_f32(0.0); W_ROWS]; XR];
                for b in 0..blocks {
                    let at = b * Q8_BLOCK;
                    let wv: [[int8x16_t; 2]; W_ROWS] = std::array::from_fn(|r| {
                        if XR == 1 && b % 2 == 0 {
                            // Decode streams the weights: the same line eight rows on keeps
                            // enough of them in flight.
                            Neon::prefetch(wq[r].wrapping_add(at + PREFETCH_ROWS * k));
                        }
                        [vld1q_s8(wq[r].add(at)), vld1q_s8(wq[r].add(at + 16))]
                    });
                    for i in 0..XR {
                        let (x0, x1) = (vld1q_s8(xq[i].add(at)), vld1q_s8(xq[i].add(at + 16)));
                        let dx = *xd[i].add(b);
                        for r in 0..W_ROWS {
                            let dot = sdot(sdot(vdupq_n_s32(0), wv[r][0], x0), wv[r][1], x1);
                            acc[i][r] = vfmaq_n_f32(acc[i][r], vcvtq_f32_s32(dot), dx * *wd[r].add(b));
                        }
                    }
                }
                for (i, row) in acc.iter().enumerate().take(ir) {
                    let o = out.add((i0 + i) * n + j0);
                    for (r, a) in row.iter().enumerate().take(jr) {
                        *o.add(r) += vaddvq_f32(*a);
                    }
                }
            }
        }
    }
}
