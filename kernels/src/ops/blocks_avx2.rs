//! Block formats on AVX2's byte multiply-adds (the `avx2dot` level), decoding only, as its
//! q8_0 GEMV. x is quantized per block of 32 as q8_0's AVX2 GEMV quantizes it, keeping each
//! half block's sum. q4_0, q4_k, q5_k and q6_k rows are read as they lie ([`gemv_direct`]: the
//! weights' unsigned codes as `vpmaddubsw`'s first operand, one weight row at a time, as the
//! `avx512vnni` kernels do on 256 bits); the other formats go through tiles of weight rows
//! turned into integer codes with a scale and an offset per group ([`BlockFormat::codes`]), per
//! group `dx · (alpha · Σ x·q + beta · Σ x)`.
//! `vpmaddubsw` takes the codes' magnitudes as its unsigned operand and x with the codes' signs
//! (`vpsignb`; codes lie in -127..=127, so a pair sum stays below 2^15); `vpmaddwd` by ones
//! gathers pairs into eight i32 lanes, four per half block. Prompts keep the exact f32 GEMM on
//! decoded rows, as q8_0's do at this level.
//!
//! [`BlockFormat::codes`]: crate::formats::BlockFormat::codes

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::matmul::prefetch::PREFETCH_ROWS;
use super::matmul::rows::{BlockRows, CodeTile};
use super::quantize_x256::quantize_block;
use crate::formats::k_scales::scale_min;
use crate::formats::BlockFormat;
use crate::weight::Q8_BLOCK;

/// Weight rows per tile.
const W_ROWS: usize = 4;

/// The row of x quantized per block with its half-block sums, and the current weight tile.
#[derive(Default)]
struct Scratch {
    q: Vec<i8>,
    d: Vec<f32>,
    sum16: Vec<f32>,
    /// The current tile of [`W_ROWS`] weight rows.
    tile: CodeTile,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`: one row of x (decode).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x` holds K = `w.k` floats (whole blocks); `w` holds rows
/// `n0..n1`; `out` is valid for reads and writes at `n0..n1`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemv(x: &[f32], w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: the contract above: the buffers are resized before use; block b of x reads 32
    // floats and writes 32 bytes from `b · 32`; weight rows `row_of(r)` < n1 (row_bytes each)
    // decode into the tile (K codes and K / group groups per row); out at `j0 + r` < n1;
    // prefetches never fault.
    unsafe {
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            let (k, format) = (w.k, w.format);
            let (group, blocks) = (format.group(), k / Q8_BLOCK);
            let groups = k / group;
            s.q.resize(k, 0);
            s.d.resize(blocks, 0.0);
            s.sum16.resize(2 * blocks, 0.0);
            for b in 0..blocks {
                let (q, d) = quantize_block(x.as_ptr().add(b * Q8_BLOCK));
                s.d[b] = d;
                _mm256_storeu_si256(s.q.as_mut_ptr().add(b * Q8_BLOCK) as *mut __m256i, q);
                for h in 0..2 {
                    let half = &s.q[b * Q8_BLOCK + 16 * h..][..16];
                    s.sum16[2 * b + h] = half.iter().map(|&v| i32::from(v)).sum::<i32>() as f32;
                }
            }
            if matches!(format, BlockFormat::Q4_0 | BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K) {
                return gemv_direct(s, w, out, n0, n1);
            }
            let ones = _mm256_set1_epi16(1);
            for j0 in (n0..n1).step_by(W_ROWS) {
                let jr = W_ROWS.min(n1 - j0);
                let row_of = |r: usize| j0 + if r < jr { r } else { 0 };
                for r in 0..W_ROWS {
                    let row = w.data.add(row_of(r) * w.row_bytes);
                    // The same bytes eight rows on keep enough lines in flight.
                    for line in (0..w.row_bytes).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PREFETCH_ROWS * w.row_bytes + line) as *const i8);
                    }
                }
                let rows: [usize; W_ROWS] = std::array::from_fn(row_of);
                s.tile.decode(w, &rows);
                let mut acc = [_mm256_setzero_ps(); W_ROWS];
                let mut offsets = [0.0f32; W_ROWS];
                for b in 0..blocks {
                    let xq = _mm256_loadu_si256(s.q.as_ptr().add(b * Q8_BLOCK) as *const __m256i);
                    let dx = s.d[b];
                    let halves = [s.sum16[2 * b], s.sum16[2 * b + 1]];
                    for r in 0..W_ROWS {
                        let c = _mm256_loadu_si256(s.tile.q.as_ptr().add(r * k + b * Q8_BLOCK) as *const __m256i);
                        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(xq, c));
                        let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                        // Lanes 0–3 hold the first half block's sums, 4–7 the second's.
                        let (scale, offset) = if group == Q8_BLOCK {
                            let g = r * groups + b;
                            (_mm256_set1_ps(dx * s.tile.alpha[g]), dx * s.tile.beta[g] * (halves[0] + halves[1]))
                        } else {
                            let g = r * groups + 2 * b;
                            let (a0, a1) = (dx * s.tile.alpha[g], dx * s.tile.alpha[g + 1]);
                            (
                                _mm256_set_m128(_mm_set1_ps(a1), _mm_set1_ps(a0)),
                                dx * (s.tile.beta[g] * halves[0] + s.tile.beta[g + 1] * halves[1]),
                            )
                        };
                        acc[r] = _mm256_fmadd_ps(dot, scale, acc[r]);
                        offsets[r] += offset;
                    }
                }
                for r in 0..jr {
                    let a = acc[r];
                    let sum = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                    let sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
                    let sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
                    *out.add(j0 + r) += _mm_cvtss_f32(sum) + offsets[r];
                }
            }
        })
    }
}

/// Eight i32 lanes of `Σ` of products of four unsigned codes `w` and four signed bytes `x`
/// each (codes below 64, so no pair sum saturates).
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
unsafe fn dots(w: __m256i, x: __m256i) -> __m256i {
    // SAFETY: register operations; the caller has AVX2.
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)) }
}

/// The sum of the eight lanes.
///
/// # Safety
/// The CPU has AVX.
#[inline(always)]
unsafe fn hsum(a: __m256) -> f32 {
    // SAFETY: register operations; the caller has AVX.
    unsafe {
        let sum = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
        _mm_cvtss_f32(_mm_add_ss(sum, _mm_movehdup_ps(sum)))
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

/// q4_0, q4_k, q5_k and q6_k rows read as they lie, one row at a time, x quantized in `s`.
///
/// # Safety
/// As [`gemv`], with `s` holding x quantized (its K bytes, block scales and half-block sums).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_direct(s: &Scratch, w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: the contract above: row j < n1 of W holds K / block whole blocks of the format's
    // layout, each read inside its bytes; x's bytes, scales and sums of the blocks read; prefetches
    // never fault.
    unsafe {
        let k = w.k;
        let low = _mm256_set1_epi8(0x0F);
        let three = _mm256_set1_epi8(0x03);
        let one = _mm256_set1_epi8(0x01);
        let xq = |at: usize| _mm256_loadu_si256(s.q.as_ptr().add(at) as *const __m256i);
        for j in n0..n1 {
            let row = w.data.add(j * w.row_bytes);
            for line in (0..w.row_bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PREFETCH_ROWS * w.row_bytes + line) as *const i8);
            }
            let mut acc = _mm256_setzero_ps();
            let mut offsets = 0.0f32;
            match w.format {
                BlockFormat::Q4_0 => {
                    for b in 0..k / Q8_BLOCK {
                        let block = row.add(18 * b);
                        let qs = _mm_loadu_si128(block.add(2) as *const __m128i);
                        let lo = _mm_and_si128(qs, _mm256_castsi256_si128(low));
                        let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), _mm256_castsi256_si128(low));
                        let scale = f16_at(block) * s.d[b];
                        acc = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(dots(_mm256_set_m128i(hi, lo), xq(Q8_BLOCK * b))),
                            _mm256_set1_ps(scale),
                            acc,
                        );
                        offsets -= 8.0 * scale * (s.sum16[2 * b] + s.sum16[2 * b + 1]);
                    }
                }
                BlockFormat::Q4K | BlockFormat::Q5K => {
                    let five = w.format == BlockFormat::Q5K;
                    let (bytes, qs_at) = if five { (176, 48) } else { (144, 16) };
                    for b in 0..k / 256 {
                        let blk = row.add(bytes * b);
                        let (d, dmin) = (f16_at(blk), f16_at(blk.add(2)));
                        let scales = std::slice::from_raw_parts(blk.add(4), 12);
                        let qh = if five {
                            _mm256_loadu_si256(blk.add(16) as *const __m256i)
                        } else {
                            _mm256_setzero_si256()
                        };
                        for c in 0..4 {
                            let q = _mm256_loadu_si256(blk.add(qs_at + 32 * c) as *const __m256i);
                            let mut halves =
                                [_mm256_and_si256(q, low), _mm256_and_si256(_mm256_srli_epi16::<4>(q), low)];
                            for (h, codes) in halves.iter_mut().enumerate() {
                                let sub = 2 * c + h;
                                if five {
                                    let bit =
                                        _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(sub as i32)), one);
                                    *codes = _mm256_or_si256(*codes, _mm256_slli_epi16::<4>(bit));
                                }
                                let (sc, m) = scale_min(scales, sub);
                                let dx = s.d[8 * b + sub];
                                let at = 256 * b + 32 * sub;
                                acc = _mm256_fmadd_ps(
                                    _mm256_cvtepi32_ps(dots(*codes, xq(at))),
                                    _mm256_set1_ps(d * f32::from(sc) * dx),
                                    acc,
                                );
                                offsets -= dmin
                                    * f32::from(m)
                                    * dx
                                    * (s.sum16[2 * (8 * b + sub)] + s.sum16[2 * (8 * b + sub) + 1]);
                            }
                        }
                    }
                }
                BlockFormat::Q6K => {
                    for b in 0..k / 256 {
                        let blk = row.add(210 * b);
                        let d = f16_at(blk.add(208));
                        let sc = std::slice::from_raw_parts(blk.add(192) as *const i8, 16);
                        for h in 0..2 {
                            let (ql0, ql1) = (
                                _mm256_loadu_si256(blk.add(64 * h) as *const __m256i),
                                _mm256_loadu_si256(blk.add(64 * h + 32) as *const __m256i),
                            );
                            let qh = _mm256_loadu_si256(blk.add(128 + 32 * h) as *const __m256i);
                            let nibbles = [
                                _mm256_and_si256(ql0, low),
                                _mm256_and_si256(ql1, low),
                                _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low),
                                _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low),
                            ];
                            for (quarter, nib) in nibbles.into_iter().enumerate() {
                                let top = _mm256_and_si256(
                                    _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * quarter as i32)),
                                    three,
                                );
                                let codes = _mm256_or_si256(nib, _mm256_slli_epi16::<4>(top));
                                // Sub-blocks of 16: lanes 0–3 the first, 4–7 the second.
                                let sub = 8 * h + 2 * quarter;
                                let dx = s.d[8 * b + sub / 2];
                                let (s0, s1) = (d * f32::from(sc[sub]) * dx, d * f32::from(sc[sub + 1]) * dx);
                                let at = 256 * b + 128 * h + 32 * quarter;
                                acc = _mm256_fmadd_ps(
                                    _mm256_cvtepi32_ps(dots(codes, xq(at))),
                                    _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0)),
                                    acc,
                                );
                                let half = 2 * (8 * b) + sub;
                                offsets -= 32.0 * (s0 * s.sum16[half] + s1 * s.sum16[half + 1]);
                            }
                        }
                    }
                }
                other => unreachable!("no direct AVX2 kernel for {}", other.name()),
            }
            *out.add(j) += hsum(acc) + offsets;
        }
    }
}
