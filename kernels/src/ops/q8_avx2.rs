//! A q8_0 GEMV with integer dot products on AVX2 (the `avx2dot` level): the row of activations
//! is quantized per block of 32 exactly as on the `avx512vnni` level (f32 scale `max |x| / 127`,
//! values rounded to the nearest step, ties to even; a non-finite block gets a NaN scale), and
//! a block's 32 products take five vector instructions (sign, two multiply-adds, a convert, an
//! FMA with the scales) where widening the weights to f32 takes twelve (four sign extensions,
//! four conversions, four FMAs).
//!
//! `vpmaddubsw` multiplies unsigned by signed bytes and adds neighbouring pairs into i16: x's
//! magnitudes are the unsigned operand and x's signs move onto the weights (`vpsignb`; q8_0
//! weights lie in -127..=127, so negating never overflows, and a pair sum stays within
//! 2 · 127 · 127 < 2^15, so it never saturates). `vpmaddwd` by ones then sums pairs of those into
//! eight i32 lanes, converted and scaled by the block's `d_w · d_x` into the row's accumulator.
//!
//! Only decoding (one row) uses it. A prompt's rows keep the exact f32 GEMM on widened weights:
//! per 32 multiply-adds an integer tile on AVX2 needs about as many vector instructions (sign,
//! multiply-add, widen, add) as the f32 micro-kernel's four FMAs, so it would only add rounding.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::matmul::{widen_f16, Q8Matmul, Q8Rows, PREFETCH_ROWS};
use crate::simd::x86::Avx2;
use crate::simd::Simd;
use crate::Q8_BLOCK;

/// Activations quantized per block for one row, integer dots with `vpmaddubsw`.
pub(crate) struct MaddubsDots;

thread_local! {
    /// The calling thread's quantized row, reused between calls.
    static ROW: RefCell<QuantizedRow> = RefCell::new(QuantizedRow::default());
}

impl Q8Matmul for MaddubsDots {
    /// Each thread quantizes the row itself: K values, against the `(n1 - n0) × K` weights it
    /// then reads.
    #[inline(always)]
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
        ROW.with(|row| {
            let mut row = row.borrow_mut();
            row.quantize(x);
            gemv_q8_maddubs(&mut row, w, out, n0, n1)
        })
    }

    // Prompts: the trait's exact GEMM (see the module doc).
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
    /// `d_w · d_x` per block for the [`ROWS`] weight rows of a tile.
    scales: Vec<f32>,
}

impl QuantizedRow {
    /// `x` (a whole number of blocks) in q8 blocks.
    ///
    /// # Safety
    /// The CPU has AVX2; `x.len()` is a multiple of 32.
    #[target_feature(enable = "avx2")]
    unsafe fn quantize(&mut self, x: &[f32]) {
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

/// 32 values at `x` quantized: their bytes in order, and the scale (see the module doc). A block
/// so small that `127 / max |x|` overflows (max |x| below ~4e-37) quantizes to zeros.
///
/// # Safety
/// The CPU has AVX2; `x` is valid for reading 32 floats.
#[inline(always)]
unsafe fn quantize_block(x: *const f32) -> (__m256i, f32) {
    // Loops, not closures: a closure would not inherit the caller's target features, and its
    // intrinsics became calls.
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let inf = _mm256_set1_ps(f32::INFINITY);
    let (mut v, mut amax, mut bad) = ([_mm256_setzero_ps(); 4], _mm256_setzero_ps(), 0);
    for (i, v) in v.iter_mut().enumerate() {
        *v = _mm256_loadu_ps(x.add(8 * i));
        let a = _mm256_and_ps(*v, magnitude);
        amax = _mm256_max_ps(amax, a);
        // NaN is unordered, so "not less than infinity" catches NaN and ±infinity.
        bad |= _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(a, inf));
    }
    let amax = Avx2(amax).hmax();
    let finite = bad == 0;
    let d = if finite { amax / 127.0 } else { f32::NAN };
    let inv = 127.0 / amax;
    let inv = _mm256_set1_ps(if finite && inv.is_finite() { inv } else { 0.0 });
    // Round to nearest, ties to even; |x| · inv ≤ 127, so the narrowing packs never saturate.
    let mut n = [_mm256_setzero_si256(); 4];
    for (n, v) in n.iter_mut().zip(v) {
        *n = _mm256_cvtps_epi32(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            v, inv,
        )));
    }
    // The packs interleave 128-bit lanes: 4-byte groups come out as 0 2 4 6 1 3 5 7.
    let packed = _mm256_packs_epi16(_mm256_packs_epi32(n[0], n[1]), _mm256_packs_epi32(n[2], n[3]));
    (_mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)), d)
}

/// Weight rows per tile: each load of an x block feeds this many rows.
const ROWS: usize = 4;

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W q8_0 `(N, K)`, x quantized.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; W holds N × K bytes and N × K / 32 scales; `out` is valid for
/// writes at `n0..n1`; `x` was quantized from K values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_q8_maddubs(x: &mut QuantizedRow, w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
    let (k, blocks) = (w.k, w.k / Q8_BLOCK);
    x.scales.resize(ROWS * blocks, 0.0);
    let ones = _mm256_set1_epi16(1);
    for j0 in (n0..n1).step_by(ROWS) {
        let jr = ROWS.min(n1 - j0);
        // A short last tile repeats its first row (results not stored): one code path.
        let row_of = |r: usize| j0 + if r < jr { r } else { 0 };
        for r in 0..ROWS {
            let s = &mut x.scales[r * blocks..(r + 1) * blocks];
            widen_f16::<Avx2>(w.scales.add(row_of(r) * blocks), s);
            s.iter_mut().zip(&x.d).for_each(|(s, d)| *s *= d);
        }
        let rows: [*const i8; ROWS] = std::array::from_fn(|r| w.q.add(row_of(r) * k));
        let mut acc = [_mm256_setzero_ps(); ROWS];
        for b in 0..blocks {
            let at = b * Q8_BLOCK;
            if b % 2 == 0 {
                for row in rows {
                    // The same line eight rows on keeps enough of them in flight; into L1 (T0)
                    // decoded 5% faster than into L2 (T1), and without it 25% slower.
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(at + PREFETCH_ROWS * k));
                }
            }
            let xq = _mm256_loadu_si256(x.q.as_ptr().add(at) as *const __m256i);
            let xa = _mm256_loadu_si256(x.abs.as_ptr().add(at) as *const __m256i);
            // Indexed, not iterated: a loop LLVM unrolls, with the accumulators in registers.
            #[allow(clippy::needless_range_loop)]
            for r in 0..ROWS {
                let wv = _mm256_sign_epi8(_mm256_loadu_si256(rows[r].add(at) as *const __m256i), xq);
                let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(xa, wv), ones);
                let scale = _mm256_broadcast_ss(&*x.scales.as_ptr().add(r * blocks + b));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[r]);
            }
        }
        for (r, a) in acc.into_iter().enumerate().take(jr) {
            *out.add(j0 + r) += Avx2(a).hsum();
        }
    }
}
