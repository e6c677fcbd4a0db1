//! aarch64 NEON vectors, 4 lanes.

use std::arch::aarch64::*;
use std::arch::asm;

use super::Simd;

#[derive(Clone, Copy)]
pub(crate) struct Neon(float32x4_t);

impl Simd for Neon {
    const LANES: usize = 4;
    const REGISTERS: usize = 32;
    type F16Gemv = Neon;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vdupq_n_f32(0.0)) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vdupq_n_f32(v)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the CPU has NEON, and `p` is valid for reading 4 floats (the trait's contract).
        unsafe { Neon(vld1q_f32(p)) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        // SAFETY: the CPU has NEON, and `p` is valid for reading 4 u16 (the trait's contract); the
        // conversion is a pure register-to-register instruction, no memory or flags touched.
        unsafe {
            // FCVTL is base ARMv8 AdvSIMD; Rust's f16 vector intrinsics are not stable yet.
            let h = vld1_u16(p);
            let out: float32x4_t;
            asm!("fcvtl {o:v}.4s, {i:v}.4h", o = lateout(vreg) out, i = in(vreg) h, options(pure, nomem, nostack));
            Neon(out)
        }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        // SAFETY: the CPU has NEON, and `p` is valid for reading 4 bytes (the trait's contract).
        unsafe {
            // Four bytes, sign-extended twice to 32 bits.
            let b = vcreate_s8(u64::from((p as *const u32).read_unaligned()));
            Neon(vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(b)))))
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the CPU has NEON, and `p` is valid for writing 4 floats (the trait's contract).
        unsafe { vst1q_f32(p, self.0) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vaddq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vsubq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vmulq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vdivq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vmaxq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vminq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vfmaq_f32(c.0, self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn hsum(self) -> f32 {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { vaddvq_f32(self.0) }
    }
    #[inline(always)]
    unsafe fn hmax(self) -> f32 {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { vmaxvq_f32(self.0) }
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe { Neon(vrndnq_f32(self.0)) }
    }
    #[inline(always)]
    unsafe fn exp2_int(self) -> Self {
        // SAFETY: the CPU has NEON (the trait's contract).
        unsafe {
            let n = vcvtnq_s32_f32(self.0);
            Neon(vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n, vdupq_n_s32(127)))))
        }
    }
    #[inline(always)]
    unsafe fn prefetch<T>(p: *const T) {
        // SAFETY: PRFM is a hint: it never faults and changes no architectural state.
        unsafe { asm!("prfm pldl2keep, [{p}]", p = in(reg) p, options(nostack, readonly, preserves_flags)) };
    }
}
