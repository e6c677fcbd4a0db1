//! What AVX2's byte-dot kernels share (q8_0's in `q8_avx2`, the block formats' in
//! `blocks_avx2`): the activations' quantizer, so that both round x alike.

use std::arch::x86_64::*;

use crate::simd::x86::Avx2;
use crate::simd::Simd;

/// 32 values at `x` quantized: their bytes in order, and the scale (see the module doc). A block
/// so small that `127 / max |x|` overflows (max |x| below ~4e-37) quantizes to zeros.
///
/// # Safety
/// The CPU has AVX2; `x` is valid for reading 32 floats.
#[inline(always)]
pub(crate) unsafe fn quantize_block(x: *const f32) -> (__m256i, f32) {
    // SAFETY: the contract above: four loads of eight floats from `x`, which holds 32.
    unsafe {
        // Loops, not closures: a closure would not inherit the caller's target features, and its
        // intrinsics would become calls.
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
            *n = _mm256_cvtps_epi32(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(v, inv),
            ));
        }
        // The packs interleave 128-bit lanes: 4-byte groups come out as 0 2 4 6 1 3 5 7.
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(n[0], n[1]), _mm256_packs_epi32(n[2], n[3]));
        (_mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)), d)
    }
}
