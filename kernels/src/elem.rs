//! Weight element types the kernels read in place: f32 and IEEE f16.

use half::f16;

use crate::simd::Simd;

pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// Whether the element is f32 itself (so a pointer to it can be read as `*const f32`).
    const IS_F32: bool;
    fn to_f32(self) -> f32;
    /// `S::LANES` elements from `p`, widened to f32.
    ///
    /// # Safety
    /// `p` must be valid for `S::LANES` reads and the CPU must support `S`.
    unsafe fn load<S: Simd>(p: *const Self) -> S;
}

impl Elem for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const f32) -> S {
        // SAFETY: as `Elem::load` requires of the caller, which `Simd::load` asks for.
        unsafe { S::load(p) }
    }
}

impl Elem for f16 {
    const IS_F32: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const f16) -> S {
        // SAFETY: as `Elem::load` requires of the caller: `p` holds `LANES` f16, which
        // `Simd::load_f16` reads as bits.
        unsafe { S::load_f16(p as *const u16) }
    }
}
