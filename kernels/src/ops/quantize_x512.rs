//! Activations quantized per block of 32 for the AVX-512 VNNI kernels (q8_0's in `q8_vnni`, the
//! block formats' in `blocks_vnni`): one rule, so that both round x alike.

use std::arch::x86_64::*;

/// One block of 32 values quantized: the rounded values `x / d` (signed, as two vectors of 16
/// i32) and the scale `d = max |x| / 127`. A block holding NaN or infinity gets a NaN scale, so
/// the outputs it touches are NaN as they would be with f32 activations (max drops NaN and
/// 0 · inf is NaN: the bytes alone would hide it). A block so small that `127 / max |x|`
/// overflows (max |x| below ~4e-37) quantizes to zeros.
///
/// # Safety
/// The CPU has AVX-512 F; `x` is valid for reading 32 floats.
#[inline(always)]
pub(crate) unsafe fn quantize_block(x: *const f32) -> (__m512i, __m512i, f32) {
    // SAFETY: the contract above: two loads of 16 floats from `x`, which holds 32.
    unsafe {
        let (lo, hi) = (_mm512_loadu_ps(x), _mm512_loadu_ps(x.add(16)));
        let (alo, ahi) = (_mm512_abs_ps(lo), _mm512_abs_ps(hi));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(alo, ahi));
        // Per element (a sum of |x| could overflow for a finite block): NaN is unordered, so
        // "not less than infinity" catches NaN and ±infinity.
        let inf = _mm512_set1_ps(f32::INFINITY);
        let bad = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(alo, inf) | _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(ahi, inf);
        let finite = bad == 0;
        let d = if finite { amax / 127.0 } else { f32::NAN };
        let inv = 127.0 / amax;
        let inv = _mm512_set1_ps(if finite && inv.is_finite() { inv } else { 0.0 });
        let round = |v: __m512| {
            _mm512_cvtps_epi32(_mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(v, inv),
            ))
        };
        (round(lo), round(hi), d)
    }
}
