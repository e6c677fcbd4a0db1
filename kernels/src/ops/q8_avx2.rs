//! A q8_0 GEMV with integer dot products on AVX2 (the `avx2dot` level): the row of activations
//! is quantized per block of 32 exactly as on the `avx512vnni` level (f32 scale `max |x| / 127`,
//! values rounded to the nearest step, ties to even; a non-finite block gets a NaN scale). A
//! block's 32 products take three vector instructions (a sign and two multiply-adds) into eight
//! i32 lanes; four blocks' lanes are then folded into one vector, converted and scaled together
//! (see [`GROUP`]). Widening the weights to f32 takes twelve per block (four sign extensions,
//! four conversions, four FMAs).
//!
//! `vpmaddubsw` multiplies unsigned by signed bytes and adds neighbouring pairs into i16: x's
//! magnitudes are the unsigned operand and x's signs move onto the weights (`vpsignb`; q8_0
//! weights lie in -127..=127, so negating never overflows, and a pair sum stays within
//! 2 · 127 · 127 < 2^15, so it never saturates). `vpmaddwd` by ones then sums pairs of those into
//! the block's eight i32 lanes, which the fold gathers with three other blocks' before they are
//! converted and scaled by each block's `d_w · d_x` into the row's accumulator.
//!
//! Only decoding (one row) uses it. A prompt's rows keep the exact f32 GEMM on widened weights:
//! per 32 multiply-adds an integer tile on AVX2 needs about as many vector instructions (sign,
//! multiply-add, widen, add) as the f32 micro-kernel's four FMAs, so it would only add rounding.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::matmul::prefetch::PREFETCH_ROWS;
use super::matmul::rows::{BlockRows, Q8Rows};
use super::matmul::QuantMatmul;
use super::quantize_x256::quantize_block;
use crate::simd::x86::Avx2;
use crate::simd::Simd;
use crate::weight::Q8_BLOCK;

/// Activations quantized per block for one row, integer dots with `vpmaddubsw`.
pub(crate) struct MaddubsDots;

thread_local! {
    /// The calling thread's quantized row, reused between calls.
    static ROW: RefCell<QuantizedRow> = RefCell::new(QuantizedRow::default());
}

impl QuantMatmul for MaddubsDots {
    /// Each thread quantizes the row itself: K values, against the `(n1 - n0) × K` weights it
    /// then reads.
    #[inline(always)]
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
        // SAFETY: the trait's contract (at this level the CPU has AVX2, FMA and F16C; `x` is one
        // row of K, a multiple of 32; W holds rows `n0..n1`; out is valid at `n0..n1`) is what
        // `quantize` and `gemv_q8_maddubs` need.
        unsafe {
            ROW.with(|row| {
                let mut row = row.borrow_mut();
                row.quantize(x);
                gemv_q8_maddubs(&row, w, out, n0, n1)
            })
        }
    }

    /// Every format on byte multiply-adds ([`super::blocks_avx2::gemv`]).
    #[inline(always)]
    unsafe fn gemv_blocks<S: Simd>(x: &[f32], w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
        // SAFETY: the trait's contract (at this level the CPU has AVX2, FMA and F16C) is the
        // GEMV's.
        unsafe { super::blocks_avx2::gemv(x, w, out, n0, n1) }
    }

    // Prompts: the trait's exact GEMMs (see the module doc).
}

/// One row of activations in q8 blocks, and scratch for the weight tile's scales.
#[derive(Default)]
struct QuantizedRow {
    /// `round(x / d)` per element, K bytes: the signs `vpsignb` puts on the weights.
    q: Vec<i8>,
    /// `|round(x / d)|` per element, K bytes: the unsigned operand of `vpmaddubsw`.
    abs: Vec<u8>,
    /// `max |x| / 127` per block.
    d: Vec<f32>,
}

impl QuantizedRow {
    /// `x` (a whole number of blocks) in q8 blocks.
    ///
    /// # Safety
    /// The CPU has AVX2; `x.len()` is a multiple of 32.
    #[target_feature(enable = "avx2")]
    unsafe fn quantize(&mut self, x: &[f32]) {
        // SAFETY: the contract above: the buffers were just resized to K bytes, K bytes and K / 32
        // scales, and block b reads 32 floats of x and writes 32 bytes of each from `b · 32`.
        unsafe {
            self.q.resize(x.len(), 0);
            self.abs.resize(x.len(), 0);
            self.d.resize(x.len() / Q8_BLOCK, 0.0);
            for (b, d) in self.d.iter_mut().enumerate() {
                let at = b * Q8_BLOCK;
                let (q, scale) = quantize_block(x.as_ptr().add(at));
                *d = scale;
                _mm256_storeu_si256(self.q.as_mut_ptr().add(at) as *mut __m256i, q);
                _mm256_storeu_si256(self.abs.as_mut_ptr().add(at) as *mut __m256i, _mm256_abs_epi8(q));
            }
        }
    }

    /// Block `b`'s values and magnitudes.
    ///
    /// # Safety
    /// The CPU has AVX; `b` is below the number of blocks quantized.
    #[inline(always)]
    unsafe fn block(&self, b: usize) -> (__m256i, __m256i) {
        // SAFETY: the contract above: block b's 32 bytes of each buffer lie inside the blocks
        // quantized.
        unsafe {
            let at = b * Q8_BLOCK;
            (
                _mm256_loadu_si256(self.q.as_ptr().add(at) as *const __m256i),
                _mm256_loadu_si256(self.abs.as_ptr().add(at) as *const __m256i),
            )
        }
    }
}

/// Blocks whose integer sums are gathered into one vector (two unpack-and-add rounds leave one
/// lane per block in each 128-bit half) before a single conversion and FMA with their scales.
/// The two multiply-adds per block share one pipe on Zen 1 and bound the loop there; a
/// conversion and an FMA per block would add work to that pipe and to the conversion's single
/// one, while the folding runs on the shuffle and add pipes (docs/PERFORMANCE.md,
/// "q8_0: int8 weights, and int8 activations where it pays").
const GROUP: usize = 4;

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W q8_0 `(N, K)`, x quantized.
///
/// One weight row at a time: one weight stream in flight. Tiles of two or four rows would share
/// each x block's registers, but x's blocks are L1 loads either way, and the extra streams cost
/// more than that saves (docs/PERFORMANCE.md, "q8_0: int8 weights, and int8 activations where it pays").
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; W holds N × K bytes and N × K / 32 scales; `out` is valid for
/// writes at `n0..n1`; `x` was quantized from K values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_q8_maddubs(x: &QuantizedRow, w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: the contract above: row j < n1 of W (K bytes, K / 32 scales), blocks below K / 32
    // (groups of four below `grouped`, their four f16 scales read as one unaligned 8-byte load); x's
    // buffers hold K bytes and K / 32 scales (its four scales of a group read unaligned);
    // prefetches never fault.
    unsafe {
        let (k, blocks) = (w.k, w.k / Q8_BLOCK);
        let grouped = blocks - blocks % GROUP;
        let ones = _mm256_set1_epi16(1);
        for j in n0..n1 {
            let (row, scales) = (w.q.add(j * k), w.scales.add(j * blocks));
            let mut acc = _mm256_setzero_ps();
            for b in (0..grouped).step_by(GROUP) {
                let at = b * Q8_BLOCK;
                // The same lines eight rows on keep enough of them in flight; into L1 (T0), as
                // this loop reads them soon after (docs/PERFORMANCE.md, "Decoding: GEMVs that stream").
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(at + PREFETCH_ROWS * k));
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(at + 64 + PREFETCH_ROWS * k));
                let dot = |i: usize| {
                    let (xq, xa) = x.block(b + i);
                    block_dot(row.add(at + i * Q8_BLOCK), xq, xa, ones)
                };
                // Per 128-bit half: lanes of blocks b, b + 1, b, b + 1 (and b + 2, b + 3).
                let fold = |v0: __m256i, v1: __m256i| {
                    _mm256_add_epi32(_mm256_unpacklo_epi32(v0, v1), _mm256_unpackhi_epi32(v0, v1))
                };
                let (s01, s23) = (fold(dot(0), dot(1)), fold(dot(2), dot(3)));
                // Per 128-bit half: one lane per block, b .. b + 4; exact, as |sum| < 2^24.
                let sums = _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
                // The row's four f16 scales, twice (one 64-bit load, duplicated), and x's four
                // scales, twice.
                let dw = _mm256_cvtph_ps(_mm_set1_epi64x((scales.add(b) as *const i64).read_unaligned()));
                let dx = _mm256_broadcast_ps(&_mm_loadu_ps(x.d.as_ptr().add(b)));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(dw, dx), acc);
            }
            // The last blocks (K / 32 not a multiple of four) one at a time.
            for b in grouped..blocks {
                let (xq, xa) = x.block(b);
                let dot = block_dot(row.add(b * Q8_BLOCK), xq, xa, ones);
                let scale = _mm256_set1_ps((*scales.add(b)).to_f32() * *x.d.get_unchecked(b));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc);
            }
            *out.add(j) += Avx2(acc).hsum();
        }
    }
}

/// One weight block's 32 products with x's block, summed in pairs of pairs: eight i32 lanes.
///
/// # Safety
/// The CPU has AVX2; `w` is valid for reading 32 bytes.
#[inline(always)]
unsafe fn block_dot(w: *const i8, xq: __m256i, xa: __m256i, ones: __m256i) -> __m256i {
    // SAFETY: the contract above: one 32-byte load from `w`.
    unsafe {
        let signed = _mm256_sign_epi8(_mm256_loadu_si256(w as *const __m256i), xq);
        _mm256_madd_epi16(_mm256_maddubs_epi16(xa, signed), ones)
    }
}
