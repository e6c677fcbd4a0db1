//! q8_0 matmuls with integer dot products on AVX-512 VNNI: the activations are quantized per
//! block of 32 like the weights (f32 scale), and `vpdpbusd` multiplies 64 byte pairs per
//! instruction, where widening the weights to f32 takes twelve instructions for as many.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes. The GEMV (one row) makes x's magnitudes the
//! unsigned operand and moves x's signs onto the weights (negated where x < 0; q8_0 weights lie
//! in -127..=127, so negation never overflows); each 32-bit lane then holds the sum of four
//! products, lanes 0–7 of a pair's first block and 8–15 of its second, scaled by those blocks'
//! `d_w · d_x` before they join the f32 accumulator. The GEMM (several rows) keeps sixteen rows
//! of x in the lanes, offset by 128 to make them unsigned, and broadcasts four weight bytes per
//! step straight from the mapped file; the offset adds `128 · Σ w` per block, subtracted at the
//! block's end.

use std::arch::x86_64::*;
use std::cell::RefCell;

use half::f16;

use super::matmul::prefetch::PREFETCH_ROWS;
use super::matmul::rows::{BlockRows, Q8Rows};
use super::matmul::QuantMatmul;
use super::quantize_x512::{quantize_block, QuantizedPanels, PANEL};
use crate::simd::Simd;
use crate::weight::{Weight, Q8_BLOCK};

/// Activations quantized per block, integer dots with `vpdpbusd` (the `avx512vnni` level).
pub(crate) struct VnniDots;

thread_local! {
    /// The calling thread's quantized row, reused between calls.
    static ROW: RefCell<QuantizedRow> = RefCell::new(QuantizedRow::default());
    /// The calling thread's quantized rows for the GEMM, reused between calls.
    static PANELS: RefCell<QuantizedPanels> = RefCell::new(QuantizedPanels::default());
}

impl QuantMatmul for VnniDots {
    /// Every format on integer dots ([`super::blocks_vnni::gemm`]).
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
        // SAFETY: the trait's contract (at this level the CPU has AVX-512 F, BW, VL and VNNI) is
        // the block GEMM's.
        unsafe { super::blocks_vnni::gemm(x, m, rows, shape.n, out, n0, n1) }
    }

    /// The formats [`super::blocks_vnni`] reads directly; the others (q5_0, q5_1, q8_0 blocks:
    /// the k-quants' fallbacks) on AVX2's codes GEMV ([`super::blocks_avx2::gemv`]).
    #[inline(always)]
    unsafe fn gemv_blocks<S: Simd>(x: &[f32], w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
        // SAFETY: the trait's contract (at this level the CPU has AVX-512 F, BW, VL, VNNI, and
        // AVX2, FMA and F16C) is what either GEMV needs.
        unsafe {
            if super::blocks_vnni::has_kernel(w.format) {
                super::blocks_vnni::gemv(x, w, out, n0, n1)
            } else {
                super::blocks_avx2::gemv(x, w, out, n0, n1)
            }
        }
    }

    /// Each thread quantizes the row itself: K values, against the `(n1 - n0) × K` weights it
    /// then reads.
    #[inline(always)]
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
        // SAFETY: the trait's contract (at this level the CPU has AVX-512 F, BW, VL and VNNI; `x`
        // is one row of K, a multiple of 32; W holds rows `n0..n1`; out is valid at `n0..n1`) is
        // what `quantize` and `gemv_q8_vnni` need.
        unsafe {
            ROW.with(|row| {
                let mut row = row.borrow_mut();
                row.quantize(x);
                gemv_q8_vnni(&row, w.q, w.scales, w.k, out, n0, n1)
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
        // SAFETY: the trait's contract (at this level the CPU has AVX-512 F, BW, VL and VNNI; `x`
        // holds `m` rows of K, a multiple of 32; out is valid for `m` rows of N at columns
        // `n0..n1`) is what `quantize` and `gemm_q8_vnni` need.
        unsafe {
            PANELS.with(|panels| {
                let mut panels = panels.borrow_mut();
                panels.quantize(x, m, rows.k);
                gemm_q8_vnni(&panels, m, rows, shape.n, out, n0, n1)
            })
        }
    }
}

/// One row of activations in q8 blocks: magnitudes, signs, scales.
#[derive(Default)]
pub(crate) struct QuantizedRow {
    /// |round(x / d)| per element, K bytes.
    abs: Vec<u8>,
    /// One bit per element, set where x < 0: one mask per 64 elements (two blocks).
    negative: Vec<u64>,
    /// max |x| / 127 per block.
    d: Vec<f32>,
}

impl QuantizedRow {
    /// `x` (a whole number of blocks) in q8 blocks (see [`quantize_block`]).
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn quantize(&mut self, x: &[f32]) {
        // SAFETY: the contract above: block b < K / 32 reads 32 floats of x from `b · 32` and
        // writes 16 + 16 bytes of `abs` there, which was just resized to K.
        unsafe {
            let blocks = x.len() / Q8_BLOCK;
            self.abs.resize(x.len(), 0);
            self.negative.clear();
            self.negative.resize(x.len().div_ceil(64), 0);
            self.d.resize(blocks, 0.0);
            for b in 0..blocks {
                let at = b * Q8_BLOCK;
                let (lo, hi, d) = quantize_block(x.as_ptr().add(at));
                self.d[b] = d;
                let mut signs = 0u64;
                for (half, q) in [lo, hi].into_iter().enumerate() {
                    let bytes = _mm512_cvtepi32_epi8(_mm512_abs_epi32(q));
                    _mm_storeu_si128(self.abs.as_mut_ptr().add(at + 16 * half) as *mut __m128i, bytes);
                    signs |= (_mm512_cmplt_epi32_mask(q, _mm512_setzero_si512()) as u64) << (16 * half);
                }
                self.negative[at / 64] |= signs << (at % 64);
            }
        }
    }
}

/// Weight rows per GEMM tile: each broadcast of x's panel feeds this many `vpdpbusd`.
const GEMM_ROWS: usize = 8;

/// Columns `n0..n1` of `out[M, N] += x · Wᵀ`, W q8_0 `(N, K)`, x quantized in panels.
///
/// # Safety
/// The CPU has AVX-512 F, BW, VL and VNNI; W holds N × K bytes and N × K / 32 scales; `out` is
/// valid for M × N floats, columns `n0..n1` of it written by no other thread meanwhile; `x`
/// holds `m` rows quantized from K values each.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_q8_vnni(x: &QuantizedPanels, m: usize, w: Q8Rows, n: usize, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: the contract above: rows `row_of(r)` < n1 of W (K bytes and K / 32 scales each),
    // panel p < ⌈m / 16⌉ of x (`K × 16` bytes, `blocks × 16` scales), and out rows `p·16 + lane` <
    // m at columns `j0 + r` < n1.
    unsafe {
        let k = w.k;
        let blocks = k / Q8_BLOCK;
        // Per tile row and block: its scale and the offset's contribution, 128 · Σ w.
        let mut wd = vec![0.0f32; GEMM_ROWS * blocks];
        let mut wc = vec![0.0f32; GEMM_ROWS * blocks];
        let mut tile = [[0.0f32; PANEL]; GEMM_ROWS];
        for j0 in (n0..n1).step_by(GEMM_ROWS) {
            let jr = GEMM_ROWS.min(n1 - j0);
            // A short last tile repeats its first row (results not stored): one code path.
            let row_of = |r: usize| j0 + if r < jr { r } else { 0 };
            for r in 0..GEMM_ROWS {
                let j = row_of(r);
                for b in 0..blocks {
                    wd[r * blocks + b] = (*w.scales.add(j * blocks + b)).to_f32();
                    let q = std::slice::from_raw_parts(w.q.add(j * k + b * Q8_BLOCK), Q8_BLOCK);
                    wc[r * blocks + b] = 128.0 * q.iter().map(|&v| v as i32).sum::<i32>() as f32;
                }
            }
            let rows: [*const i8; GEMM_ROWS] = std::array::from_fn(|r| w.q.add(row_of(r) * k));
            for p in 0..m.div_ceil(PANEL) {
                let panel = x.bytes.as_ptr().add(p * k * PANEL);
                let mut acc = [_mm512_setzero_ps(); GEMM_ROWS];
                for b in 0..blocks {
                    let mut dots = [_mm512_setzero_si512(); GEMM_ROWS];
                    for quad in 0..Q8_BLOCK / 4 {
                        let kk = b * Q8_BLOCK + 4 * quad;
                        let xv = _mm512_loadu_si512(panel.add(kk * PANEL) as *const _);
                        for (dot, row) in dots.iter_mut().zip(rows) {
                            let wv = _mm512_set1_epi32((row.add(kk) as *const i32).read_unaligned());
                            *dot = _mm512_dpbusd_epi32(*dot, xv, wv);
                        }
                    }
                    let xd = _mm512_loadu_ps(x.d.as_ptr().add((p * blocks + b) * PANEL));
                    for (r, (a, dot)) in acc.iter_mut().zip(dots).enumerate() {
                        let exact = _mm512_sub_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(wc[r * blocks + b]));
                        *a = _mm512_fmadd_ps(exact, _mm512_mul_ps(xd, _mm512_set1_ps(wd[r * blocks + b])), *a);
                    }
                }
                for (t, a) in tile.iter_mut().zip(acc) {
                    _mm512_storeu_ps(t.as_mut_ptr(), a);
                }
                for lane in 0..PANEL.min(m - p * PANEL) {
                    let o = out.add((p * PANEL + lane) * n + j0);
                    for (r, t) in tile.iter().enumerate().take(jr) {
                        *o.add(r) += t[lane];
                    }
                }
            }
        }
    }
}

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W q8_0 `(N, K)` (`q`, `scales`), x quantized.
///
/// # Safety
/// The CPU has AVX-512 F, BW, VL and VNNI; `q` holds N × K bytes and `scales` N × K / 32 values;
/// `out` is valid for writes at `n0..n1`; `x` was quantized from K values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn gemv_q8_vnni(
    x: &QuantizedRow,
    q: *const i8,
    scales: *const f16,
    k: usize,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above: rows `j + r` < n1 of W; pair p of blocks reads 64 bytes of the
    // row and of x's magnitudes from `p · 64`, masked to 32 where the pair's second block is past K
    // / 32 (masked lanes are not read), and scale groups of 16 blocks are loaded under the mask of
    // the blocks present; prefetches never fault.
    unsafe {
        let blocks = k / Q8_BLOCK;
        let pairs = blocks.div_ceil(2);
        // Lane l of pair p takes the scale of block 2p + l / 8.
        let upper = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let mut j = n0;
        while j < n1 {
            let nr = 4.min(n1 - j);
            let mut acc = [_mm512_setzero_ps(); 4];
            // Groups of 16 blocks: one vector of scales per row.
            for g in (0..blocks).step_by(16) {
                let gn = 16.min(blocks - g);
                let smask: __mmask16 = if gn == 16 { 0xffff } else { (1u16 << gn) - 1 };
                let xd = _mm512_maskz_loadu_ps(smask, x.d.as_ptr().add(g));
                let mut s = [_mm512_setzero_ps(); 4];
                for (r, sr) in s.iter_mut().enumerate().take(nr) {
                    let wd = _mm256_maskz_loadu_epi16(smask, scales.add((j + r) * blocks + g) as *const i16);
                    *sr = _mm512_mul_ps(_mm512_cvtph_ps(wd), xd);
                }
                for p in g / 2..(g + gn).div_ceil(2).min(pairs) {
                    let i0 = p * 64;
                    let bmask: __mmask64 = if 2 * p + 1 < blocks { u64::MAX } else { u32::MAX as u64 };
                    let xa = _mm512_maskz_loadu_epi8(bmask, x.abs.as_ptr().add(i0) as *const i8);
                    let neg: __mmask64 = x.negative[p];
                    let idx = _mm512_add_epi32(_mm512_set1_epi32((2 * p - g) as i32), upper);
                    for r in 0..nr {
                        let row = q.add((j + r) * k + i0);
                        // The same pair of blocks eight rows on: keeps enough lines in flight.
                        _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(PREFETCH_ROWS * k));
                        let w = _mm512_maskz_loadu_epi8(bmask, row);
                        let w = _mm512_mask_sub_epi8(w, neg, _mm512_setzero_si512(), w);
                        let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), xa, w);
                        let scale = _mm512_permutexvar_ps(idx, s[r]);
                        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[r]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(nr) {
                *out.add(j + r) += _mm512_reduce_add_ps(*a);
            }
            j += nr;
        }
    }
}
