//! Block-format GEMVs with integer dot products on AVX-512 VNNI (the `avx512vnni` level).
//!
//! The row of activations is quantized once per call to signed bytes per block of 32 (scale
//! `dx = max |x| / 127`, as q8_0's GEMV does), keeping the sum of bytes of each block and of
//! each half block. The weights' unsigned codes `q` (nibbles, or five or six bits) meet x's
//! signed bytes in `vpdpbusd`, each lane summing four products; the lanes of one sub-block are
//! scaled by its weight scale times x's block scale and added to an f32 accumulator. What the
//! codes leave out, the offset (q4_0's `− 8`, q6_k's `− 32`) or the min (q4_k, q5_k's
//! `− dmin·m`), is `offset · Σ x` per sub-block: one product per sub-block, from the sums kept.
//!
//! - q4_0 and q5_0: each pair of blocks (64 weights) is one 512-bit dot, against x laid out per
//!   call in the order the pair's low and high nibbles come out (q5_0's fifth bits set through a
//!   byte mask; an odd last block: one 256-bit dot);
//! - q8_0 blocks: a pair of blocks per 512-bit dot, the signed bytes made unsigned as `q + 128`;
//! - q4_k, q5_k: each pair of sub-blocks (64 weights) is one 512-bit dot: the low nibbles of 32
//!   bytes are the first sub-block, the high ones the second (plus, for q5_k, a bit of `qh`);
//! - q6_k: each 64 weights (four sub-blocks of 16) is one 512-bit dot: nibbles of 64 bytes of
//!   `ql` with two bits of 32 bytes of `qh` shifted per half.
//!
//! Prompts ([`gemm`]) take every format the same way: a tile of weight rows is turned into
//! integer codes with a scale and an offset per group ([`BlockFormat::codes`]) once, then meets
//! sixteen rows of x at a time as q8_0's GEMM does (x offset by 128 to be unsigned, four code
//! bytes broadcast per step), each group's sum scaled by its `alpha` and x's scale, the offset
//! `beta · Σ x` and the `128 · Σ q` the x offset added taken off per group.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::matmul::prefetch::PREFETCH_ROWS;
use super::matmul::rows::{BlockRows, CodeTile};
use super::quantize_x512::{quantize_block, QuantizedPanels, PANEL};
use crate::formats::BlockFormat;
use crate::weight::Q8_BLOCK;

/// One row of activations in signed q8 blocks.
#[derive(Default)]
pub(crate) struct SignedRow {
    /// round(x / dx) per element, K bytes.
    q: Vec<i8>,
    /// dx per block.
    d: Vec<f32>,
    /// Σ q per block.
    sum: Vec<i32>,
    /// Σ q per half block (16 values), as f32.
    sum16: Vec<f32>,
}

thread_local! {
    /// The calling thread's quantized row, reused between calls.
    static ROW: RefCell<SignedRow> = RefCell::new(SignedRow::default());
    /// The calling thread's quantized rows and decoded weight tile for the GEMM.
    static GEMM: RefCell<(QuantizedPanels, GemmTile)> = RefCell::new(Default::default());
}

impl SignedRow {
    /// `x` (whole blocks of 32) quantized.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn quantize(&mut self, x: &[f32]) {
        // SAFETY: the contract above: block b < K / 32 reads 32 floats of x from `b · 32` and
        // writes 16 + 16 bytes of `q` there, which was just resized to K.
        unsafe {
            let blocks = x.len() / Q8_BLOCK;
            self.q.resize(x.len(), 0);
            self.d.resize(blocks, 0.0);
            self.sum.resize(blocks, 0);
            self.sum16.resize(2 * blocks, 0.0);
            for b in 0..blocks {
                let at = b * Q8_BLOCK;
                let (lo, hi, d) = quantize_block(x.as_ptr().add(at));
                self.d[b] = d;
                let (slo, shi) = (_mm512_reduce_add_epi32(lo), _mm512_reduce_add_epi32(hi));
                self.sum[b] = slo + shi;
                (self.sum16[2 * b], self.sum16[2 * b + 1]) = (slo as f32, shi as f32);
                for (half, v) in [lo, hi].into_iter().enumerate() {
                    _mm_storeu_si128(self.q.as_mut_ptr().add(at + 16 * half) as *mut __m128i, _mm512_cvtepi32_epi8(v));
                }
            }
        }
    }
}

/// Whether [`gemv`] has an integer kernel for `format` (the others decode).
pub(crate) fn has_kernel(format: BlockFormat) -> bool {
    !matches!(format, BlockFormat::Q5_1)
}

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W in a format [`has_kernel`] covers.
///
/// # Safety
/// The CPU has AVX-512 F, BW, VL and VNNI and F16C; `x` holds K = `w.k` floats (whole blocks);
/// `w` holds rows `n0..n1`; `out` is valid for reads and writes at `n0..n1`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn gemv(x: &[f32], w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    debug_assert!(has_kernel(w.format));
    // SAFETY: the contract above is the quantizer's and `gemv_q4_0`'s.
    unsafe {
        ROW.with(|row| {
            let mut row = row.borrow_mut();
            row.quantize(x);
            match w.format {
                BlockFormat::Q4_0 => gemv_q4_0::<false>(&row, w, out, n0, n1),
                BlockFormat::Q5_0 => gemv_q4_0::<true>(&row, w, out, n0, n1),
                BlockFormat::Q8_0 => gemv_q8_0(&row, w, out, n0, n1),
                BlockFormat::Q4K => gemv_k::<false>(&row, w, out, n0, n1),
                BlockFormat::Q5K => gemv_k::<true>(&row, w, out, n0, n1),
                BlockFormat::Q6K => gemv_q6_k(&row, w, out, n0, n1),
                other => unreachable!("no integer kernel for {}", other.name()),
            }
        })
    }
}

/// x laid out for q4_0's pairs of blocks, built per call: pair p's 64 bytes are block 2p's first
/// 16 values, block 2p + 1's first 16, then both blocks' last 16 (the order the weights' low and
/// high nibbles come out in), with each lane's block sum and scale in that order.
#[derive(Default)]
struct PairedRow {
    q: Vec<i8>,
    sum: Vec<i32>,
    d: Vec<f32>,
}

thread_local! {
    static PAIRED: RefCell<PairedRow> = RefCell::new(PairedRow::default());
}

/// Weight rows per step of the q4_0 GEMV.
const Q4_0_ROWS: usize = 2;

/// q4_0 rows: four at a time, a pair of blocks of each per 512-bit dot (an odd last block on
/// 256 bits).
///
/// # Safety
/// As [`gemv`], with `x` quantized from K values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn gemv_q4_0<const FIVE: bool>(x: &SignedRow, w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    // q5_0: the scale, four bytes of fifth bits, then the nibbles; its offset is 16, not 8.
    let (bytes, qs_at, offset) = if FIVE { (22, 6, 2) } else { (18, 2, 1) };
    // SAFETY: the contract above: rows `j + r` < n1 of W, each K / 32 blocks of 18 bytes (the f16
    // scale, then 16 bytes of nibbles), read below the row's end; x's block b at `b · 32`, pair p
    // at `p · 64` of the paired copy (K bytes, 16 sums and scales per pair); prefetches never
    // fault.
    unsafe {
        let blocks = w.k / Q8_BLOCK;
        let pairs = blocks / 2;
        PAIRED.with(|paired| {
            let pr = &mut *paired.borrow_mut();
            pr.q.resize(64 * pairs, 0);
            pr.sum.resize(16 * pairs, 0);
            pr.d.resize(16 * pairs, 0.0);
            for p in 0..pairs {
                let (b0, b1) = (2 * p, 2 * p + 1);
                for (slot, (b, half)) in [(b0, 0), (b1, 0), (b0, 1), (b1, 1)].into_iter().enumerate() {
                    let from = x.q.as_ptr().add(b * Q8_BLOCK + 16 * half);
                    std::ptr::copy_nonoverlapping(from, pr.q.as_mut_ptr().add(64 * p + 16 * slot), 16);
                    for lane in 0..4 {
                        pr.sum[16 * p + 4 * slot + lane] = x.sum[b];
                        pr.d[16 * p + 4 * slot + lane] = x.d[b];
                    }
                }
            }
            let low = _mm256_set1_epi8(0x0F);
            let idx = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
            let mut j = n0;
            while j < n1 {
                let nr = Q4_0_ROWS.min(n1 - j);
                // A short last group repeats its first row (results not stored): one code path.
                let rows: [*const u8; Q4_0_ROWS] =
                    std::array::from_fn(|r| w.data.add((j + if r < nr { r } else { 0 }) * w.row_bytes));
                let mut acc = [_mm512_setzero_ps(); Q4_0_ROWS];
                for p in 0..pairs {
                    let xq = _mm512_loadu_si512(pr.q.as_ptr().add(64 * p) as *const _);
                    let xsum = _mm512_loadu_si512(pr.sum.as_ptr().add(16 * p) as *const _);
                    let xsum = _mm512_mullo_epi32(xsum, _mm512_set1_epi32(offset));
                    let dx = _mm512_loadu_ps(pr.d.as_ptr().add(16 * p));
                    for (a, row) in acc.iter_mut().zip(rows) {
                        let b0 = row.add(2 * p * bytes);
                        // The same blocks eight rows on: keeps enough lines in flight.
                        _mm_prefetch::<_MM_HINT_T0>(b0.wrapping_add(PREFETCH_ROWS * w.row_bytes) as *const i8);
                        let qs = _mm256_inserti128_si256::<1>(
                            _mm256_castsi128_si256(_mm_loadu_si128(b0.add(qs_at) as *const __m128i)),
                            _mm_loadu_si128(b0.add(bytes + qs_at) as *const __m128i),
                        );
                        let lo = _mm256_and_si256(qs, low);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(qs), low);
                        let mut wq = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                        if FIVE {
                            // The fifth bits in the pair's order: block 2p's first 16, block
                            // 2p + 1's first 16, then both blocks' last 16.
                            let (h0, h1) = (
                                u64::from((b0.add(2) as *const u32).read_unaligned()),
                                u64::from((b0.add(bytes + 2) as *const u32).read_unaligned()),
                            );
                            let mask = (h0 & 0xFFFF) | ((h1 & 0xFFFF) << 16) | ((h0 >> 16) << 32) | ((h1 >> 16) << 48);
                            wq = _mm512_or_si512(wq, _mm512_maskz_set1_epi8(mask, 0x10));
                        }
                        let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, xq);
                        // Σ x·(q − 8) per block (− 16 for q5_0): each of a block's eight lanes
                        // gives up Σ x (2 Σ x).
                        let exact = _mm512_sub_epi32(dot, xsum);
                        let bits = (b0 as *const u16).read_unaligned() as i32
                            | (((b0.add(bytes) as *const u16).read_unaligned() as i32) << 16);
                        let d01 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
                        let scale = _mm512_mul_ps(_mm512_permutexvar_ps(idx, d01), dx);
                        *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, *a);
                    }
                }
                let mut tail = [0.0f32; Q4_0_ROWS];
                if blocks % 2 == 1 {
                    let b = blocks - 1;
                    let xq = _mm256_loadu_si256(x.q.as_ptr().add(b * Q8_BLOCK) as *const __m256i);
                    let xsum = _mm256_set1_epi32(offset * x.sum[b]);
                    for (t, row) in tail.iter_mut().zip(rows) {
                        let block = row.add(b * bytes);
                        let qs = _mm_loadu_si128(block.add(qs_at) as *const __m128i);
                        let lo = _mm_and_si128(qs, _mm256_castsi256_si128(low));
                        let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), _mm256_castsi256_si128(low));
                        let mut wq = _mm256_set_m128i(hi, lo);
                        if FIVE {
                            let high = (block.add(2) as *const u32).read_unaligned();
                            wq = _mm256_or_si256(wq, _mm256_maskz_set1_epi8(high, 0x10));
                        }
                        let dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, xq);
                        let exact = _mm256_cvtepi32_ps(_mm256_sub_epi32(dot, xsum));
                        *t = hsum(_mm512_zextps256_ps512(exact)) * f16_at(block) * x.d[b];
                    }
                }
                for (r, a) in acc.iter().enumerate().take(nr) {
                    *out.add(j + r) += hsum(*a) + tail[r];
                }
                j += nr;
            }
        })
    }
}

/// q8_0 block rows (the q6_k fallback's), one at a time, a pair of blocks per 512-bit dot: the
/// signed weights become unsigned as `q + 128` (`q ^ 0x80`), which adds `128 · Σ x` per block,
/// taken off as `16 · Σ x` from each of the block's eight lanes.
///
/// # Safety
/// As [`gemv`], with `x` quantized from K values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn gemv_q8_0(x: &SignedRow, w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    const BYTES: usize = 34;
    // SAFETY: the contract above: row j < n1 of W holds K / 32 blocks of 34 bytes (the f16 scale,
    // then 32 signed bytes), read below the row's end; x's block b at `b · 32`; prefetches never
    // fault.
    unsafe {
        let blocks = w.k / Q8_BLOCK;
        let pairs = blocks / 2;
        let flip = _mm512_set1_epi8(-128);
        let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let halves = |a: __m256i, b: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
        for j in n0..n1 {
            let row = w.data.add(j * w.row_bytes);
            let mut acc = _mm512_setzero_ps();
            for p in 0..pairs {
                let b0 = row.add(2 * p * BYTES);
                _mm_prefetch::<_MM_HINT_T0>(b0.wrapping_add(PREFETCH_ROWS * w.row_bytes) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(b0.wrapping_add(PREFETCH_ROWS * w.row_bytes + 64) as *const i8);
                let wq = halves(
                    _mm256_loadu_si256(b0.add(2) as *const __m256i),
                    _mm256_loadu_si256(b0.add(BYTES + 2) as *const __m256i),
                );
                let xq = _mm512_loadu_si512(x.q.as_ptr().add(64 * p) as *const _);
                let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(wq, flip), xq);
                let (s0, s1) = (x.sum[2 * p], x.sum[2 * p + 1]);
                let xsum = halves(_mm256_set1_epi32(16 * s0), _mm256_set1_epi32(16 * s1));
                let exact = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, xsum));
                let bits = (b0 as *const u16).read_unaligned() as i32
                    | (((b0.add(BYTES) as *const u16).read_unaligned() as i32) << 16);
                let d01 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
                let dx = _mm512_castps128_ps512(_mm_setr_ps(x.d[2 * p], x.d[2 * p + 1], 0.0, 0.0));
                let scale = _mm512_permutexvar_ps(idx, _mm512_mul_ps(d01, dx));
                acc = _mm512_fmadd_ps(exact, scale, acc);
            }
            let mut tail = 0.0;
            if blocks % 2 == 1 {
                let b = blocks - 1;
                let block = row.add(b * BYTES);
                let wq = _mm256_xor_si256(_mm256_loadu_si256(block.add(2) as *const __m256i), _mm256_set1_epi8(-128));
                let xq = _mm256_loadu_si256(x.q.as_ptr().add(b * Q8_BLOCK) as *const __m256i);
                let dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, xq);
                let exact = _mm256_cvtepi32_ps(_mm256_sub_epi32(dot, _mm256_set1_epi32(16 * x.sum[b])));
                tail = hsum(_mm512_zextps256_ps512(exact)) * f16_at(block) * x.d[b];
            }
            *out.add(j) += hsum(acc) + tail;
        }
    }
}

/// The f16 at `p` (unaligned) as f32.
///
/// # Safety
/// The CPU has F16C; `p` is valid for reading 2 bytes.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the contract above.
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from((p as *const u16).read_unaligned())))) }
}

/// The sum of the 16 lanes.
///
/// # Safety
/// The CPU has AVX-512 F.
#[inline(always)]
unsafe fn hsum(v: __m512) -> f32 {
    // SAFETY: the contract above.
    unsafe { _mm512_reduce_add_ps(v) }
}

/// The eight 6-bit scales and mins of a q4_k / q5_k block (the 12 bytes at `p`), as f32: the
/// layout of `formats::k_scales` unpacked four at a time in 32-bit words.
///
/// # Safety
/// The CPU has AVX2; `p` is valid for reading 12 bytes.
#[inline(always)]
unsafe fn unpack_k_scales(p: *const u8) -> (__m256, __m256) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    // SAFETY: the contract above: three unaligned 4-byte reads inside the 12.
    unsafe {
        let word = |i: usize| (p.add(4 * i) as *const u32).read_unaligned();
        let (w0, w1, w2) = (word(0), word(1), word(2));
        // Scales 0–3 and mins 0–3: the low six bits of bytes 0–3 and 4–7; scales and mins 4–7:
        // the nibbles of bytes 8–11 with the top two bits of bytes 0–3 (scales) or 4–7 (mins).
        let sc = [w0 & LOW6, (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4)];
        let m = [w1 & LOW6, ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4)];
        let widen =
            |v: [u32; 2]| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, v[1] as i32, v[0] as i32)));
        (widen(sc), widen(m))
    }
}

/// q4_k rows, or q5_k's (`FIVE`): per 256-weight block the eight sub-block scales `d·sc_j` and
/// mins `dmin·m_j` (times x's block scale), then four 512-bit dots of 64 weights.
///
/// # Safety
/// As [`gemv`], with `x` quantized from K values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn gemv_k<const FIVE: bool>(x: &SignedRow, w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    let (bytes, qs_at) = if FIVE { (176, 48) } else { (144, 16) };
    // SAFETY: the contract above: row j < n1 of W holds K / 256 blocks of `bytes` (d, dmin, 12
    // bytes of scales, for q5_k 32 bytes of fifth bits, 128 bytes of nibbles), read inside the
    // block; x's bytes and scales of block b (eight of 32) at `b · 256` and `b · 8`; prefetches
    // never fault.
    unsafe {
        let blocks = w.k / 256;
        let low = _mm256_set1_epi8(0x0F);
        let one = _mm256_set1_epi8(0x01);
        // Lanes 0–7 take sub-block 2c's scale, 8–15 sub-block 2c + 1's.
        let pair: [__m512i; 4] = std::array::from_fn(|c| {
            let (a, b) = (2 * c as i32, 2 * c as i32 + 1);
            _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a)
        });
        for j in n0..n1 {
            let row = w.data.add(j * w.row_bytes);
            let mut acc = _mm512_setzero_ps();
            let mut mins = _mm256_setzero_ps();
            for b in 0..blocks {
                let blk = row.add(b * bytes);
                _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PREFETCH_ROWS * w.row_bytes) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PREFETCH_ROWS * w.row_bytes + 64) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PREFETCH_ROWS * w.row_bytes + 128) as *const i8);
                let (d, dmin) = (f16_at(blk), f16_at(blk.add(2)));
                let (sc, m) = unpack_k_scales(blk.add(4));
                let dx = _mm256_loadu_ps(x.d.as_ptr().add(8 * b));
                let xsum = _mm256_cvtepi32_ps(_mm256_loadu_si256(x.sum.as_ptr().add(8 * b) as *const __m256i));
                let sv = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_mul_ps(sc, _mm256_set1_ps(d)), dx));
                let mv = _mm256_mul_ps(_mm256_mul_ps(m, _mm256_set1_ps(dmin)), dx);
                mins = _mm256_fmadd_ps(mv, xsum, mins);
                let qs = blk.add(qs_at);
                let qh = if FIVE { _mm256_loadu_si256(blk.add(16) as *const __m256i) } else { _mm256_setzero_si256() };
                for (c, idx) in pair.iter().enumerate() {
                    let q = _mm256_loadu_si256(qs.add(32 * c) as *const __m256i);
                    let mut lo = _mm256_and_si256(q, low);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
                    if FIVE {
                        let bit = |shift: i32| {
                            let h = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(shift)), one);
                            _mm256_slli_epi16::<4>(h)
                        };
                        lo = _mm256_or_si256(lo, bit(2 * c as i32));
                        hi = _mm256_or_si256(hi, bit(2 * c as i32 + 1));
                    }
                    let wq = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                    let xq = _mm512_loadu_si512(x.q.as_ptr().add(256 * b + 64 * c) as *const _);
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, xq);
                    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(*idx, sv), acc);
                }
            }
            *out.add(j) += hsum(acc) - hsum(_mm512_zextps256_ps512(mins));
        }
    }
}

/// q6_k rows: per 256-weight block the sixteen sub-block scales `d·sc_s` (times x's block
/// scale), then four 512-bit dots of 64 weights; the codes' offset of 32 comes off through x's
/// half-block sums.
///
/// # Safety
/// As [`gemv`], with `x` quantized from K values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn gemv_q6_k(x: &SignedRow, w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    const BYTES: usize = 210;
    // SAFETY: the contract above: row j < n1 of W holds K / 256 blocks of 210 bytes (128 of
    // `ql`, 64 of `qh`, 16 scales, the f16 d), read inside the block; x's bytes, scales and half
    // sums of block b at `b · 256`, `b · 8` and `b · 16`; prefetches never fault.
    unsafe {
        let blocks = w.k / 256;
        let low = _mm512_set1_epi8(0x0F);
        let three = _mm512_set1_epi8(0x03);
        // Lane i of the t-th 64 weights takes sub-block 4t + i / 4's scale.
        let quad: [__m512i; 4] = std::array::from_fn(|t| {
            let s = |i: i32| 4 * t as i32 + i / 4;
            _mm512_set_epi32(
                s(15),
                s(14),
                s(13),
                s(12),
                s(11),
                s(10),
                s(9),
                s(8),
                s(7),
                s(6),
                s(5),
                s(4),
                s(3),
                s(2),
                s(1),
                s(0),
            )
        });
        // x's block scale for each sub-block of 16: block s / 2.
        let halves = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
        // The qh shifts for the first and second 32 weights of a 64: (0, 2), then (4, 6).
        let shifts = [
            _mm512_inserti64x4::<1>(_mm512_set1_epi16(0), _mm256_set1_epi16(2)),
            _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_set1_epi16(6)),
        ];
        for j in n0..n1 {
            let row = w.data.add(j * w.row_bytes);
            let mut acc = _mm512_setzero_ps();
            let mut offsets = _mm512_setzero_ps();
            for b in 0..blocks {
                let blk = row.add(b * BYTES);
                for line in [0, 64, 128, 192] {
                    _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PREFETCH_ROWS * w.row_bytes + line) as *const i8);
                }
                let d = f16_at(blk.add(208));
                let sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(192) as *const __m128i)));
                let dx =
                    _mm512_permutexvar_ps(halves, _mm512_castps256_ps512(_mm256_loadu_ps(x.d.as_ptr().add(8 * b))));
                let s = _mm512_mul_ps(_mm512_mul_ps(sc, _mm512_set1_ps(d)), dx);
                offsets = _mm512_fmadd_ps(s, _mm512_loadu_ps(x.sum16.as_ptr().add(16 * b)), offsets);
                for h in 0..2 {
                    let ql = _mm512_loadu_si512(blk.add(64 * h) as *const _);
                    let qh256 = _mm256_loadu_si256(blk.add(128 + 32 * h) as *const __m256i);
                    let qh = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qh256), qh256);
                    for (half, shift) in shifts.iter().enumerate() {
                        let nib = if half == 0 {
                            _mm512_and_si512(ql, low)
                        } else {
                            _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low)
                        };
                        let top = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(qh, *shift), three));
                        let wq = _mm512_or_si512(nib, top);
                        let t = 2 * h + half;
                        let xq = _mm512_loadu_si512(x.q.as_ptr().add(256 * b + 64 * t) as *const _);
                        let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, xq);
                        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(quad[t], s), acc);
                    }
                }
            }
            *out.add(j) += hsum(acc) - 32.0 * hsum(offsets);
        }
    }
}

/// Weight rows per GEMM tile: each broadcast of x's panel feeds this many `vpdpbusd`.
const GEMM_ROWS: usize = 8;

/// A tile of [`GEMM_ROWS`] weight rows as codes, and per group `128 · Σ q` (what x's offset of
/// 128 adds), `[GEMM_ROWS][groups]`.
#[derive(Default)]
pub(crate) struct GemmTile {
    codes: CodeTile,
    offset: Vec<f32>,
}

/// Columns `n0..n1` of `out[M, N] += x · Wᵀ` for W in any block format.
///
/// # Safety
/// The CPU has AVX-512 F, BW, VL and VNNI; `x` holds `m` rows of K = `w.k` (whole blocks);
/// `w` holds rows `n0..n1`; `out` is valid for reads and writes of `m` rows of `n` at columns
/// `n0..n1`, which no other thread writes meanwhile.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn gemm(x: &[f32], m: usize, w: BlockRows, n: usize, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: the contract above is the quantizer's and `gemm_codes`'.
    unsafe {
        GEMM.with(|cell| {
            let (panels, tile) = &mut *cell.borrow_mut();
            panels.quantize(x, m, w.k);
            gemm_codes(panels, tile, m, w, n, out, n0, n1);
        })
    }
}

/// # Safety
/// As [`gemm`], with `x` quantized from `m` rows of K.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_codes(
    x: &QuantizedPanels,
    tile: &mut GemmTile,
    m: usize,
    w: BlockRows,
    n: usize,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above: rows `row_of(r)` < n1 of W (row_bytes each) are decoded into
    // the tile (K codes and K / group groups per row); panel p < ⌈m / 16⌉ of x holds `K × 16`
    // bytes, `blocks × 16` scales and `2 · blocks × 16` half sums; out rows `p·16 + lane` < m at
    // columns `j0 + r` < n1.
    unsafe {
        let (k, format) = (w.k, w.format);
        let (group, blocks) = (format.group(), k / Q8_BLOCK);
        let groups = k / group;
        let per_block = Q8_BLOCK / group;
        tile.offset.resize(GEMM_ROWS * groups, 0.0);
        let mut out_tile = [[0.0f32; PANEL]; GEMM_ROWS];
        for j0 in (n0..n1).step_by(GEMM_ROWS) {
            let jr = GEMM_ROWS.min(n1 - j0);
            // A short last tile repeats its first row (results not stored): one code path.
            let row_of = |r: usize| j0 + if r < jr { r } else { 0 };
            let rows: [usize; GEMM_ROWS] = std::array::from_fn(row_of);
            tile.codes.decode(w, &rows);
            for (o, codes) in tile.offset.iter_mut().zip(tile.codes.q.chunks_exact(group)) {
                *o = 128.0 * codes.iter().map(|&c| i32::from(c)).sum::<i32>() as f32;
            }
            let rows: [*const i8; GEMM_ROWS] = std::array::from_fn(|r| tile.codes.q.as_ptr().add(r * k));
            for p in 0..m.div_ceil(PANEL) {
                let panel = x.bytes.as_ptr().add(p * k * PANEL);
                let mut acc = [_mm512_setzero_ps(); GEMM_ROWS];
                for b in 0..blocks {
                    let xd = _mm512_loadu_ps(x.d.as_ptr().add((p * blocks + b) * PANEL));
                    let halves = x.sum16.as_ptr().add((p * 2 * blocks + 2 * b) * PANEL);
                    for h in 0..per_block {
                        let g = b * per_block + h;
                        // Σ x over the group, per lane: one half block, or both.
                        let xs = if per_block == 2 {
                            _mm512_loadu_ps(halves.add(h * PANEL))
                        } else {
                            _mm512_add_ps(_mm512_loadu_ps(halves), _mm512_loadu_ps(halves.add(PANEL)))
                        };
                        let mut dots = [_mm512_setzero_si512(); GEMM_ROWS];
                        for quad in 0..group / 4 {
                            let kk = b * Q8_BLOCK + h * group + 4 * quad;
                            let xv = _mm512_loadu_si512(panel.add(kk * PANEL) as *const _);
                            for (dot, row) in dots.iter_mut().zip(rows) {
                                let wv = _mm512_set1_epi32((row.add(kk) as *const i32).read_unaligned());
                                *dot = _mm512_dpbusd_epi32(*dot, xv, wv);
                            }
                        }
                        for (r, (a, dot)) in acc.iter_mut().zip(dots).enumerate() {
                            let at = r * groups + g;
                            let codes = _mm512_sub_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(tile.offset[at]));
                            let value = _mm512_fmadd_ps(
                                codes,
                                _mm512_set1_ps(tile.codes.alpha[at]),
                                _mm512_mul_ps(xs, _mm512_set1_ps(tile.codes.beta[at])),
                            );
                            *a = _mm512_fmadd_ps(value, xd, *a);
                        }
                    }
                }
                for (t, a) in out_tile.iter_mut().zip(acc) {
                    _mm512_storeu_ps(t.as_mut_ptr(), a);
                }
                for lane in 0..PANEL.min(m - p * PANEL) {
                    let o = out.add((p * PANEL + lane) * n + j0);
                    for (r, t) in out_tile.iter().enumerate().take(jr) {
                        *o.add(r) += t[lane];
                    }
                }
            }
        }
    }
}
