//! The q8_0 GEMV with integer dot products on AVX-512 VNNI: the activations are quantized per
//! block of 32 like the weights (f32 scale), and `vpdpbusd` multiplies 64 byte pairs (two blocks)
//! per instruction, where widening the weights to f32 takes twelve instructions for as many.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: x's magnitudes are the unsigned operand and
//! x's signs move onto the weights (negated where x < 0; q8_0 weights lie in -127..=127, so
//! negation never overflows). Each 32-bit lane then holds the sum of four products; lanes 0–7
//! belong to the pair's first block, 8–15 to its second, and are scaled by those blocks'
//! `d_w · d_x` before they join the f32 accumulator.

use std::arch::x86_64::*;
use std::cell::RefCell;

use half::f16;

use super::matmul::{Q8Decode, Q8Rows};
use crate::simd::Simd;
use crate::Q8_BLOCK;

/// Activations quantized per block, integer dots with `vpdpbusd` (the `avx512vnni` level).
pub(crate) struct VnniDots;

thread_local! {
    /// The calling thread's quantized row, reused between calls.
    static ROW: RefCell<QuantizedRow> = RefCell::new(QuantizedRow::default());
}

impl Q8Decode for VnniDots {
    /// Each thread quantizes the row itself: K values, against the `(n1 - n0) × K` weights it
    /// then reads.
    #[inline(always)]
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
        ROW.with(|row| {
            let mut row = row.borrow_mut();
            row.quantize(x);
            gemv_q8_vnni(&row, w.q, w.scales, w.k, out, n0, n1)
        })
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
    /// `x` (a whole number of blocks) in q8 blocks: scale max |x| / 127, each |x| / scale rounded
    /// to the nearest integer (ties to even).
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn quantize(&mut self, x: &[f32]) {
        let blocks = x.len() / Q8_BLOCK;
        self.abs.resize(x.len(), 0);
        self.negative.clear();
        self.negative.resize(x.len().div_ceil(64), 0);
        self.d.resize(blocks, 0.0);
        let sign = _mm512_set1_epi32(i32::MIN);
        for b in 0..blocks {
            let at = b * Q8_BLOCK;
            let (lo, hi) = (_mm512_loadu_ps(x.as_ptr().add(at)), _mm512_loadu_ps(x.as_ptr().add(at + 16)));
            let (alo, ahi) = (_mm512_abs_ps(lo), _mm512_abs_ps(hi));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(alo, ahi));
            // A NaN or infinity would vanish in the bytes (max drops NaN, 0 · inf is NaN): the
            // block's scale becomes NaN instead, so the output is NaN as with f32 activations.
            let finite = _mm512_reduce_add_ps(_mm512_add_ps(alo, ahi)).is_finite();
            self.d[b] = if finite { amax / 127.0 } else { f32::NAN };
            let inv = _mm512_set1_ps(if finite && amax > 0.0 { 127.0 / amax } else { 0.0 });
            for (half, a) in [alo, ahi].into_iter().enumerate() {
                let q =
                    _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(a, inv));
                // 0..=127 (|x| · 127 / max |x| ≤ 127), narrowed to bytes.
                let bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q));
                _mm_storeu_si128(self.abs.as_mut_ptr().add(at + 16 * half) as *mut __m128i, bytes);
            }
            // The sign bits of the 32 values.
            let neg_lo = _mm512_test_epi32_mask(_mm512_castps_si512(lo), sign) as u64;
            let neg_hi = _mm512_test_epi32_mask(_mm512_castps_si512(hi), sign) as u64;
            self.negative[at / 64] |= (neg_lo | neg_hi << 16) << (at % 64);
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
                    // The same pair of blocks four rows further: keeps enough lines in flight.
                    _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(4 * k));
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
