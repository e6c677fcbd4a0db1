//! What aarch64's `sdot` kernels share (q8_0's in `q8_sdot`, the block formats' in
//! `blocks_sdot`): the activations' quantizer, so that both round x alike, and `sdot` itself.

use std::arch::aarch64::*;
use std::arch::asm;

/// Quantizes 32 values at `x` into 32 bytes at `q` and returns the scale (see the module doc).
///
/// # Safety
/// `x` is valid for reading 32 floats, `q` for writing 32 bytes.
#[inline(always)]
pub(crate) unsafe fn quantize_block(x: *const f32, q: *mut i8) -> f32 {
    // SAFETY: the contract above: eight loads of four floats from `x`, two stores of 16 bytes to
    // `q`.
    unsafe {
        let v: [float32x4_t; 8] = std::array::from_fn(|i| vld1q_f32(x.add(4 * i)));
        // FMAX propagates NaN, so a NaN or an infinity anywhere leaves `amax` non-finite.
        let amax = vmaxvq_f32(v.iter().fold(vdupq_n_f32(0.0), |m, &a| vmaxq_f32(m, vabsq_f32(a))));
        let finite = amax.is_finite();
        let d = if finite { amax / 127.0 } else { f32::NAN };
        // Zero for an all-zero block, and for one so small that 127 / amax overflows (< ~4e-37).
        let inv = 127.0 / amax;
        let inv = vdupq_n_f32(if finite && inv.is_finite() { inv } else { 0.0 });
        // FCVTNS rounds to nearest, ties to even; |x| · inv ≤ 127, so narrowing never saturates.
        let n: [int16x4_t; 8] = std::array::from_fn(|i| vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(v[i], inv))));
        for half in 0..2 {
            let lo = vqmovn_s16(vcombine_s16(n[4 * half], n[4 * half + 1]));
            let hi = vqmovn_s16(vcombine_s16(n[4 * half + 2], n[4 * half + 3]));
            vst1q_s8(q.add(16 * half), vcombine_s8(lo, hi));
        }
        d
    }
}

/// `acc + Σ` of the products of `a` and `b` taken four bytes per lane.
///
/// # Safety
/// The CPU has the dotprod extension.
#[target_feature(enable = "neon,dotprod")]
#[inline]
pub(crate) unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: a register-to-register instruction (no memory, no flags); the caller has dotprod.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    acc
}
