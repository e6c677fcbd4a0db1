//! Block formats on AVX2's byte multiply-adds (the `avx2dot` level), decoding only, as its
//! q8_0 GEMV: a tile of weight rows becomes integer codes with a scale and an offset per group
//! ([`BlockFormat::codes`]), x is quantized per block of 32 as q8_0's AVX2 GEMV quantizes it
//! (keeping each half block's sum), and per group `dx · (alpha · Σ x·q + beta · Σ x)`.
//! `vpmaddubsw` takes the codes' magnitudes as its unsigned operand and x with the codes' signs
//! (`vpsignb`; codes lie in -127..=127, so a pair sum stays below 2^15); `vpmaddwd` by ones
//! gathers pairs into eight i32 lanes, four per half block. Prompts keep the exact f32 GEMM on
//! decoded rows, as q8_0's do at this level.
//!
//! [`BlockFormat::codes`]: crate::formats::BlockFormat::codes

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::matmul::prefetch::PREFETCH_ROWS;
use super::matmul::rows::BlockRows;
use super::quantize_x256::quantize_block;
use crate::weight::Q8_BLOCK;

/// Weight rows per tile.
const W_ROWS: usize = 4;

/// The row of x quantized per block with its half-block sums, and the current weight tile.
#[derive(Default)]
struct Scratch {
    q: Vec<i8>,
    d: Vec<f32>,
    sum16: Vec<f32>,
    codes: Vec<i8>,
    alpha: Vec<f32>,
    beta: Vec<f32>,
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
            s.codes.resize(W_ROWS * k, 0);
            s.alpha.resize(W_ROWS * groups, 0.0);
            s.beta.resize(W_ROWS * groups, 0.0);
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
                    let gs = r * groups..(r + 1) * groups;
                    format.codes(
                        std::slice::from_raw_parts(row, w.row_bytes),
                        &mut s.codes[r * k..(r + 1) * k],
                        &mut s.alpha[gs.clone()],
                        &mut s.beta[gs],
                    );
                }
                let mut acc = [_mm256_setzero_ps(); W_ROWS];
                let mut offsets = [0.0f32; W_ROWS];
                for b in 0..blocks {
                    let xq = _mm256_loadu_si256(s.q.as_ptr().add(b * Q8_BLOCK) as *const __m256i);
                    let dx = s.d[b];
                    let halves = [s.sum16[2 * b], s.sum16[2 * b + 1]];
                    for r in 0..W_ROWS {
                        let c = _mm256_loadu_si256(s.codes.as_ptr().add(r * k + b * Q8_BLOCK) as *const __m256i);
                        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(xq, c));
                        let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                        // Lanes 0–3 hold the first half block's sums, 4–7 the second's.
                        let (scale, offset) = if group == Q8_BLOCK {
                            let g = r * groups + b;
                            (_mm256_set1_ps(dx * s.alpha[g]), dx * s.beta[g] * (halves[0] + halves[1]))
                        } else {
                            let g = r * groups + 2 * b;
                            let (a0, a1) = (dx * s.alpha[g], dx * s.alpha[g + 1]);
                            (
                                _mm256_set_m128(_mm_set1_ps(a1), _mm_set1_ps(a0)),
                                dx * (s.beta[g] * halves[0] + s.beta[g + 1] * halves[1]),
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
