//! x86_64 vectors: AVX2 (+FMA, +F16C) with 8 lanes, AVX-512F with 16.

use std::arch::x86_64::*;

use super::{add_transposed_by_elements, Simd};

#[derive(Clone, Copy)]
pub(crate) struct Avx2(pub(crate) __m256);

impl Simd for Avx2 {
    const LANES: usize = 8;
    const REGISTERS: usize = 16;
    type F16Gemv = Avx2;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_set1_ps(v)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C, and `p` is valid for reading 8 floats (the
        // trait's contract).
        unsafe { Avx2(_mm256_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C, and `p` is valid for reading 8 u16 (the trait's
        // contract).
        unsafe { Avx2(_mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))) }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C, and `p` is valid for reading 8 bytes (the trait's
        // contract).
        unsafe { Avx2(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)))) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the CPU has AVX2, FMA and F16C, and `p` is valid for writing 8 floats (the
        // trait's contract).
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_add_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_sub_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_mul_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_div_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_max_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_min_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_fmadd_ps(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    unsafe fn hsum(self) -> f32 {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
    }
    #[inline(always)]
    unsafe fn hmax(self) -> f32 {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe {
            let s = _mm_max_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_max_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe { Avx2(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0)) }
    }
    #[inline(always)]
    unsafe fn exp2_int(self) -> Self {
        // SAFETY: the CPU has AVX2, FMA and F16C (the trait's contract).
        unsafe {
            let n = _mm256_cvtps_epi32(self.0);
            Avx2(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n, _mm256_set1_epi32(127)))))
        }
    }
    #[inline(always)]
    unsafe fn prefetch<T>(p: *const T) {
        // SAFETY: `prefetcht1` needs only SSE, which every x86_64 CPU has, and never faults,
        // whatever `p`.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p as *const i8) }
    }
    /// Six rows at a time (the level's MR): each 6 × 8 block of the tile, padded with two zero
    /// rows, is transposed in registers (unpacks, shuffles, then 128-bit lane swaps) and added
    /// to 8 rows of `dst` as four floats and two, instead of 48 scalar read-add-writes.
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
        // SAFETY: the CPU has AVX2 (the trait's contract). With MR = rows = 6, column c of the tile
        // (c < cols) goes to `dst + c·ld` as four floats and two: the `rows` floats the caller
        // vouched for; the other cases take `add_transposed_by_elements`, whose contract is this
        // one.
        unsafe {
            if MR != 6 || rows != 6 {
                return add_transposed_by_elements(acc, rows, cols, dst, ld, accumulate, scratch);
            }
            let (lo, hi) = (_mm256_unpacklo_ps, _mm256_unpackhi_ps);
            let zero = _mm256_setzero_ps();
            // v picks one vector of every row: indexed, not iterated.
            #[allow(clippy::needless_range_loop)]
            for v in 0..NV {
                let r: [__m256; 6] = std::array::from_fn(|i| acc[i][v].0);
                // t[2q], t[2q + 1]: rows 2q and 2q + 1 interleaved, columns 0–1 and 2–3 per lane.
                let t = [lo(r[0], r[1]), hi(r[0], r[1]), lo(r[2], r[3]), hi(r[2], r[3])];
                let t2 = [lo(r[4], r[5]), hi(r[4], r[5]), zero, zero];
                // u[i]: rows 0–3 (w[i]: rows 4–7) of column 4·lane + i, in each 128-bit lane.
                let quad = |t: &[__m256; 4], i: usize| {
                    let (a, b) = (_mm256_castps_pd(t[i / 2]), _mm256_castps_pd(t[2 + i / 2]));
                    _mm256_castpd_ps(if i.is_multiple_of(2) {
                        _mm256_unpacklo_pd(a, b)
                    } else {
                        _mm256_unpackhi_pd(a, b)
                    })
                };
                for i in 0..4 {
                    let (u, w) = (quad(&t, i), quad(&t2, i));
                    // Columns i and 4 + i: rows 0–3 from u's lane, rows 4–5 from w's.
                    let columns =
                        [(i, _mm256_permute2f128_ps::<0x20>(u, w)), (4 + i, _mm256_permute2f128_ps::<0x31>(u, w))];
                    for (c, x) in columns {
                        let c = v * 8 + c;
                        if c < cols {
                            let d = dst.add(c * ld);
                            let (mut four, mut two) = (_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
                            // `loadl`/`storel_epi64` move 8 bytes at any alignment (`_mm_load_sd`
                            // and `_mm_store_sd` would read an f64 through the pointer: d may be
                            // 4-aligned).
                            if accumulate {
                                four = _mm_add_ps(four, _mm_loadu_ps(d));
                                two = _mm_add_ps(two, _mm_castsi128_ps(_mm_loadl_epi64(d.add(4) as *const __m128i)));
                            }
                            _mm_storeu_ps(d, four);
                            _mm_storel_epi64(d.add(4) as *mut __m128i, _mm_castps_si128(two));
                        }
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Avx512(__m512);

impl Simd for Avx512 {
    const LANES: usize = 16;
    const REGISTERS: usize = 32;
    type F16Gemv = Avx2;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_set1_ps(v)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C), and `p` is valid for
        // reading 16 floats (the trait's contract).
        unsafe { Avx512(_mm512_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C), and `p` is valid for
        // reading 16 u16 (the trait's contract).
        unsafe { Avx512(_mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))) }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C), and `p` is valid for
        // reading 16 bytes (the trait's contract).
        unsafe { Avx512(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)))) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C), and `p` is valid for
        // writing 16 floats (the trait's contract).
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_add_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_sub_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_mul_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_div_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_max_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_min_ps(self.0, o.0)) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_fmadd_ps(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    unsafe fn hsum(self) -> f32 {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { _mm512_reduce_add_ps(self.0) }
    }
    #[inline(always)]
    unsafe fn hmax(self) -> f32 {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { _mm512_reduce_max_ps(self.0) }
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe { Avx512(_mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0)) }
    }
    #[inline(always)]
    unsafe fn exp2_int(self) -> Self {
        // SAFETY: the CPU has AVX-512 F and BW (with AVX2, FMA and F16C) (the trait's contract).
        unsafe {
            let n = _mm512_cvtps_epi32(self.0);
            Avx512(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n, _mm512_set1_epi32(127)))))
        }
    }
    #[inline(always)]
    unsafe fn prefetch<T>(p: *const T) {
        // SAFETY: `prefetcht1` needs only SSE, which every x86_64 CPU has, and never faults,
        // whatever `p`.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p as *const i8) }
    }
    /// Eight rows at a time (the level's MR): each 8 × 16 block of the tile is transposed in
    /// registers (two rounds of unpacks, then 128-bit lane shuffles) and added to 16 rows of
    /// `dst` as 256-bit vectors, instead of 128 scalar read-add-writes.
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
        // SAFETY: the CPU has AVX-512 F (the trait's contract). With MR = rows = 8, column c of the
        // tile (c < cols) goes to `dst + c·ld` as eight floats: the `rows` floats the caller
        // vouched for; the other cases take `add_transposed_by_elements`, whose contract is this
        // one.
        unsafe {
            if MR != 8 || rows != 8 {
                return add_transposed_by_elements(acc, rows, cols, dst, ld, accumulate, scratch);
            }
            let (lo, hi) = (_mm512_unpacklo_ps, _mm512_unpackhi_ps);
            let pd = _mm512_castps_pd;
            // v picks one vector of every row: indexed, not iterated.
            #[allow(clippy::needless_range_loop)]
            for v in 0..NV {
                let r: [__m512; 8] = std::array::from_fn(|i| acc[i][v].0);
                // t[2q], t[2q + 1]: rows 2q and 2q + 1 interleaved, columns 0–1 and 2–3 per lane.
                let t = [lo(r[0], r[1]), hi(r[0], r[1]), lo(r[2], r[3]), hi(r[2], r[3])];
                let t2 = [lo(r[4], r[5]), hi(r[4], r[5]), lo(r[6], r[7]), hi(r[6], r[7])];
                // u[i]: rows 0–3 (w[i]: rows 4–7) of column 4·lane + i, in each 128-bit lane.
                let quad = |t: &[__m512; 4], i: usize| {
                    let (a, b) = (pd(t[i / 2]), pd(t[2 + i / 2]));
                    _mm512_castpd_ps(if i.is_multiple_of(2) {
                        _mm512_unpacklo_pd(a, b)
                    } else {
                        _mm512_unpackhi_pd(a, b)
                    })
                };
                for i in 0..4 {
                    let (u, w) = (quad(&t, i), quad(&t2, i));
                    // Lanes (u0, u1, w0, w1) reordered to (u0, w0, u1, w1), and the same for lanes
                    // 2 and 3: each 256-bit half is then one column.
                    let (first, last) = (_mm512_shuffle_f32x4::<0x44>(u, w), _mm512_shuffle_f32x4::<0xEE>(u, w));
                    let (low, high) =
                        (_mm512_shuffle_f32x4::<0xD8>(first, first), _mm512_shuffle_f32x4::<0xD8>(last, last));
                    for (half, col) in [(low, i), (high, 8 + i)] {
                        for (h, c) in [(0, col), (1, col + 4)] {
                            let c = v * 16 + c;
                            if c < cols {
                                let d = dst.add(c * ld);
                                let x = if h == 0 {
                                    _mm512_castps512_ps256(half)
                                } else {
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(half)))
                                };
                                _mm256_storeu_ps(d, if accumulate { _mm256_add_ps(_mm256_loadu_ps(d), x) } else { x });
                            }
                        }
                    }
                }
            }
        }
    }
}
