//! A small vector abstraction. Every SIMD kernel in [`crate::ops`] is written once, generic over
//! [`Simd`], and instantiated per ISA inside a `#[target_feature]` function (see `crate::isa`),
//! where the `#[inline(always)]` methods below inline into straight-line vector code.

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// `LANES` f32 values in one register. Every method is `unsafe`: it may only run on a CPU with
/// the ISA's features, and pointer arguments must be valid for `LANES` elements.
pub(crate) trait Simd: Copy {
    const LANES: usize;
    /// Vector registers of the ISA (kernels size their register tiles by it).
    const REGISTERS: usize;
    /// The vectors decoding's f16 GEMV streams with: 256-bit ones on AVX-512 too, which stream
    /// f16 weights faster than 512-bit ones (docs/PERFORMANCE.md, "Decoding: GEMVs that stream"). It runs inside
    /// `Self`'s `#[target_feature]` functions, so it must need no CPU feature beyond `Self`'s.
    type F16Gemv: Simd;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn zero() -> Self;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn splat(v: f32) -> Self;
    /// # Safety
    /// The CPU has `Self`'s features; `p` is valid for reading `LANES` floats.
    unsafe fn load(p: *const f32) -> Self;
    /// `LANES` IEEE half-precision values (as bits), widened exactly to f32.
    ///
    /// # Safety
    /// The CPU has `Self`'s features; `p` is valid for reading `LANES` u16.
    unsafe fn load_f16(p: *const u16) -> Self;
    /// `LANES` signed bytes, widened exactly to f32 (q8_0 weights).
    ///
    /// # Safety
    /// The CPU has `Self`'s features; `p` is valid for reading `LANES` bytes.
    unsafe fn load_i8(p: *const i8) -> Self;
    /// # Safety
    /// The CPU has `Self`'s features; `p` is valid for writing `LANES` floats.
    unsafe fn store(self, p: *mut f32);
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn add(self, o: Self) -> Self;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn sub(self, o: Self) -> Self;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn mul(self, o: Self) -> Self;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn div(self, o: Self) -> Self;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn max(self, o: Self) -> Self;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn min(self, o: Self) -> Self;
    /// `self * b + c`, fused.
    ///
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn hsum(self) -> f32;
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn hmax(self) -> f32;
    /// Rounds to the nearest integer (ties to even), as a float.
    ///
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn round(self) -> Self;
    /// `2^n` for integer-valued `n` in `[-126, 127]`.
    ///
    /// # Safety
    /// The CPU has `Self`'s features.
    unsafe fn exp2_int(self) -> Self;
    /// Hints that the cache line at `p` will be read soon (into L2). Never faults, so `p` may
    /// point anywhere.
    ///
    /// # Safety
    /// The CPU has `Self`'s features (`p` itself may be any address).
    unsafe fn prefetch<T>(p: *const T);
    /// `dst[c·ld + r] += tile[r][c]` (`=` when `!accumulate`) for `r < rows` and
    /// `c < cols`, where row r of the tile is `acc[r]`, `NV` vectors along c: the tile of an
    /// `(out, in)` GEMM, computed transposed against out. By default through `scratch`
    /// (`MR × NV·LANES` floats), element by element; a level with shuffles to spare transposes
    /// in registers.
    ///
    /// # Safety
    /// The CPU has `Self`'s features; `rows ≤ MR` and `cols ≤ NV · LANES`; for every `c < cols`,
    /// `dst + c·ld` is valid for reading and writing `rows` floats; `scratch` is valid for writing
    /// `MR × NV · LANES` floats.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn add_transposed<const MR: usize, const NV: usize>(
        acc: &[[Self; NV]; MR],
        rows: usize,
        cols: usize,
        dst: *mut f32,
        ld: usize,
        accumulate: bool,
        scratch: *mut f32,
    ) {
        // SAFETY: the caller meets this method's contract, which is the function's.
        unsafe { add_transposed_by_elements(acc, rows, cols, dst, ld, accumulate, scratch) }
    }
}

/// [`Simd::add_transposed`], element by element through `scratch`.
///
/// # Safety
/// As [`Simd::add_transposed`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn add_transposed_by_elements<S: Simd, const MR: usize, const NV: usize>(
    acc: &[[S; NV]; MR],
    rows: usize,
    cols: usize,
    dst: *mut f32,
    ld: usize,
    accumulate: bool,
    scratch: *mut f32,
) {
    // SAFETY: the CPU has `S`'s features (the contract above); the tile goes to `scratch`, which
    // holds MR × NR floats (NR = NV · LANES), and element (r, c) goes to `dst + c·ld + r` with
    // `r < rows` and `c < cols`, inside what the caller vouched for.
    unsafe {
        let nr = NV * S::LANES;
        for (r, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate() {
                a.store(scratch.add(r * nr + v * S::LANES));
            }
        }
        for c in 0..cols {
            let d = dst.add(c * ld);
            for r in 0..rows {
                let v = *scratch.add(r * nr + c);
                *d.add(r) = if accumulate { *d.add(r) + v } else { v };
            }
        }
    }
}

/// `e^x` to about 1 ulp (Cephes' expf polynomial on a range-reduced argument).
///
/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(crate) unsafe fn exp<S: Simd>(x: S) -> S {
    // SAFETY: the CPU has `S`'s features (the contract above); no memory is touched.
    unsafe {
        let x = x.max(S::splat(-87.3)).min(S::splat(88.7));
        let n = x.mul(S::splat(std::f32::consts::LOG2_E)).round();
        // ln 2 split in two so that x - n·ln2 is exact.
        let r = n.mul_add(S::splat(-0.693_359_4), x);
        let r = n.mul_add(S::splat(2.121_944_4e-4), r);
        let mut p = S::splat(1.987_569_1e-4);
        p = p.mul_add(r, S::splat(1.398_2e-3));
        p = p.mul_add(r, S::splat(8.333_452e-3));
        p = p.mul_add(r, S::splat(4.166_579_6e-2));
        p = p.mul_add(r, S::splat(1.666_666_5e-1));
        p = p.mul_add(r, S::splat(0.5));
        let r2 = r.mul(r);
        let e = p.mul_add(r2, r).add(S::splat(1.0));
        e.mul(n.exp2_int())
    }
}

/// `tanh(x)` as `(e^2x − 1) / (e^2x + 1)`; saturated beyond |x| = 9, where tanh is 1 in f32.
///
/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(crate) unsafe fn tanh<S: Simd>(x: S) -> S {
    // SAFETY: the CPU has `S`'s features (the contract above); no memory is touched.
    unsafe {
        let x = x.max(S::splat(-9.0)).min(S::splat(9.0));
        let e = exp(x.add(x));
        e.sub(S::splat(1.0)).div(e.add(S::splat(1.0)))
    }
}
