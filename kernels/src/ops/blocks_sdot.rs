//! Block formats on aarch64's `sdot` (the `neondot` level), decoding and prompts alike: a tile
//! of weight rows becomes integer codes with a scale and an offset per group
//! ([`BlockFormat::codes`]), x is quantized per block of 32 as q8_0's `sdot` kernels quantize it
//! (keeping each half block's sum), and per group `dx · (alpha · Σ x·q + beta · Σ x)`. `sdot`
//! multiplies signed bytes, and every format's codes fit a signed byte.
//!
//! [`BlockFormat::codes`]: crate::formats::BlockFormat::codes

use std::arch::aarch64::*;
use std::cell::RefCell;

use super::matmul::prefetch::PREFETCH_ROWS;
use super::matmul::rows::{BlockRows, CodeTile};
use super::quantize_neon::{quantize_block, sdot};
use crate::simd::neon::Neon;
use crate::simd::Simd;
use crate::weight::Q8_BLOCK;

/// Weight rows per tile.
const W_ROWS: usize = 4;
/// Rows of x per tile in the GEMM (16 accumulators with four weight rows).
const GEMM_X_ROWS: usize = 4;

/// Rows of x quantized per block with their half-block sums, and the current weight tile.
#[derive(Default)]
struct Scratch {
    /// `round(x / d)`, M × K bytes.
    q: Vec<i8>,
    /// One scale per row and block, M × K / 32.
    d: Vec<f32>,
    /// Σ q per row and half block, M × K / 16.
    sum16: Vec<f32>,
    /// The current tile of [`W_ROWS`] weight rows.
    tile: CodeTile,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Scratch {
    /// # Safety
    /// `x.len()` is a multiple of 32.
    #[target_feature(enable = "neon")]
    unsafe fn quantize(&mut self, x: &[f32]) {
        // SAFETY: the contract above: the buffers were just resized, and block b reads 32 floats
        // and writes 32 bytes from `b · 32`.
        unsafe {
            self.q.resize(x.len(), 0);
            self.d.resize(x.len() / Q8_BLOCK, 0.0);
            self.sum16.resize(x.len() / 16, 0.0);
            for b in 0..x.len() / Q8_BLOCK {
                self.d[b] = quantize_block(x.as_ptr().add(b * Q8_BLOCK), self.q.as_mut_ptr().add(b * Q8_BLOCK));
                for h in 0..2 {
                    let v = vld1q_s8(self.q.as_ptr().add(b * Q8_BLOCK + 16 * h));
                    self.sum16[2 * b + h] = vaddlvq_s8(v) as f32;
                }
            }
        }
    }
}

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`: one row of x (decode).
///
/// # Safety
/// The CPU has NEON and dotprod; `x` holds K = `w.k` floats (whole blocks); `w` holds rows
/// `n0..n1`; `out` is valid for reads and writes at `n0..n1`.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn gemv(x: &[f32], w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: the contract above is the quantizer's and `tile_codes`'; with one row the output
    // stride is never used.
    unsafe {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.quantize(x);
            tile_codes::<1>(&mut s, 1, w, 0, out, n0, n1)
        })
    }
}

/// Columns `n0..n1` of `out[M, N] += x · Wᵀ`: several rows (a prompt).
///
/// # Safety
/// The CPU has NEON and dotprod; `x` holds `m` rows of K = `w.k` (whole blocks); `w` holds rows
/// `n0..n1`; `out` is valid for reads and writes of `m` rows of `n` at columns `n0..n1`, which no
/// other thread writes meanwhile.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn gemm(x: &[f32], m: usize, w: BlockRows, n: usize, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: as `gemv`.
    unsafe {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.quantize(x);
            tile_codes::<GEMM_X_ROWS>(&mut s, m, w, n, out, n0, n1)
        })
    }
}

/// Tiles of [`W_ROWS`] weight rows (as codes) × `XR` rows of x. A short tile repeats its first
/// row (results not stored): one code path.
///
/// # Safety
/// As [`gemm`] (any stride `n` if M = 1), with `s` holding x quantized.
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile_codes<const XR: usize>(
    s: &mut Scratch,
    m: usize,
    w: BlockRows,
    n: usize,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above: weight rows `row_of(r)` < n1 (row_bytes each) decode into the
    // tile (K codes and K / group groups per row); x rows `xrow(i)` < m, blocks below K / 32;
    // out rows `i0 + i` < m at columns `j0 + r` < n1; prefetches never fault.
    unsafe {
        let (k, format) = (w.k, w.format);
        let (group, blocks) = (format.group(), k / Q8_BLOCK);
        let groups = k / group;
        for j0 in (n0..n1).step_by(W_ROWS) {
            let jr = W_ROWS.min(n1 - j0);
            let row_of = |r: usize| j0 + if r < jr { r } else { 0 };
            if XR == 1 {
                // Decode streams the weights: the same bytes eight rows on keep enough lines in
                // flight.
                for r in 0..W_ROWS {
                    let row = w.data.add(row_of(r) * w.row_bytes);
                    for line in (0..w.row_bytes).step_by(64) {
                        Neon::prefetch(row.wrapping_add(PREFETCH_ROWS * w.row_bytes + line));
                    }
                }
            }
            let rows: [usize; W_ROWS] = std::array::from_fn(row_of);
            s.tile.decode(w, &rows);
            let wq: [*const i8; W_ROWS] = std::array::from_fn(|r| s.tile.q.as_ptr().add(r * k));
            for i0 in (0..m).step_by(XR) {
                let ir = XR.min(m - i0);
                let xrow = |i: usize| i0 + if i < ir { i } else { 0 };
                let mut acc = [[vdupq_n_f32(0.0); W_ROWS]; XR];
                let mut offsets = [[0.0f32; W_ROWS]; XR];
                for b in 0..blocks {
                    let at = b * Q8_BLOCK;
                    let wv: [[int8x16_t; 2]; W_ROWS] =
                        std::array::from_fn(|r| [vld1q_s8(wq[r].add(at)), vld1q_s8(wq[r].add(at + 16))]);
                    for i in 0..XR {
                        let t = xrow(i);
                        let xq = s.q.as_ptr().add(t * k + at);
                        let (x0, x1) = (vld1q_s8(xq), vld1q_s8(xq.add(16)));
                        let dx = s.d[t * blocks + b];
                        let halves = [s.sum16[t * 2 * blocks + 2 * b], s.sum16[t * 2 * blocks + 2 * b + 1]];
                        for r in 0..W_ROWS {
                            if group == Q8_BLOCK {
                                let g = r * groups + b;
                                let dot = sdot(sdot(vdupq_n_s32(0), wv[r][0], x0), wv[r][1], x1);
                                acc[i][r] = vfmaq_n_f32(acc[i][r], vcvtq_f32_s32(dot), dx * s.tile.alpha[g]);
                                offsets[i][r] += dx * s.tile.beta[g] * (halves[0] + halves[1]);
                            } else {
                                for (h, (wh, xh)) in wv[r].iter().zip([x0, x1]).enumerate() {
                                    let g = r * groups + 2 * b + h;
                                    let dot = sdot(vdupq_n_s32(0), *wh, xh);
                                    acc[i][r] = vfmaq_n_f32(acc[i][r], vcvtq_f32_s32(dot), dx * s.tile.alpha[g]);
                                    offsets[i][r] += dx * s.tile.beta[g] * halves[h];
                                }
                            }
                        }
                    }
                }
                for i in 0..ir {
                    let o = out.add((i0 + i) * n + j0);
                    for r in 0..jr {
                        *o.add(r) += vaddvq_f32(acc[i][r]) + offsets[i][r];
                    }
                }
            }
        }
    }
}
