//! Block-format GEMVs with integer dot products on AVX-512 VNNI (the `avx512vnni` level).
//!
//! The row of activations is quantized once per call to signed bytes per block of 32 (scale
//! `dx = max |x| / 127`, as q8_0's GEMV does), with each block's sum of bytes kept. For q4_0 the
//! weight nibbles `q` (0..16, unsigned) meet x's signed bytes in `vpdpbusd`: a block of 32 is one
//! 256-bit dot, eight lanes of four products, and its value `d_w · dx · Σ x·(q − 8)` is
//! `d_w · dx · (Σ x·q − 8 Σ x)`; the eight lanes each subtract `Σ x` before they are scaled and
//! added to the row's f32 accumulator. Other formats take the decoding path.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::matmul::prefetch::PREFETCH_ROWS;
use super::matmul::rows::BlockRows;
use super::q8_vnni::quantize_block;
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
}

thread_local! {
    /// The calling thread's quantized row, reused between calls.
    static ROW: RefCell<SignedRow> = RefCell::new(SignedRow::default());
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
            for b in 0..blocks {
                let at = b * Q8_BLOCK;
                let (lo, hi, d) = quantize_block(x.as_ptr().add(at));
                self.d[b] = d;
                self.sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(lo, hi));
                for (half, v) in [lo, hi].into_iter().enumerate() {
                    _mm_storeu_si128(self.q.as_mut_ptr().add(at + 16 * half) as *mut __m128i, _mm512_cvtepi32_epi8(v));
                }
            }
        }
    }
}

/// Whether [`gemv`] has an integer kernel for `format` (the others decode).
pub(crate) fn has_kernel(format: BlockFormat) -> bool {
    format == BlockFormat::Q4_0
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
            gemv_q4_0(&row, w, out, n0, n1);
        })
    }
}

/// q4_0 rows: four at a time, one block of each per step.
///
/// # Safety
/// As [`gemv`], with `x` quantized from K values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn gemv_q4_0(x: &SignedRow, w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
    const BYTES: usize = 18;
    // SAFETY: the contract above: rows `j + r` < n1 of W, each K / 32 blocks of 18 bytes (the f16
    // scale, then 16 bytes of nibbles), read below the row's end; x's block b at `b · 32`;
    // prefetches never fault.
    unsafe {
        let blocks = w.k / Q8_BLOCK;
        let low = _mm_set1_epi8(0x0F);
        let mut j = n0;
        while j < n1 {
            let nr = 4.min(n1 - j);
            // A short last group repeats its first row (results not stored): one code path.
            let rows: [*const u8; 4] =
                std::array::from_fn(|r| w.data.add((j + if r < nr { r } else { 0 }) * w.row_bytes));
            let mut acc = [_mm256_setzero_ps(); 4];
            for b in 0..blocks {
                let xq = _mm256_loadu_si256(x.q.as_ptr().add(b * Q8_BLOCK) as *const __m256i);
                let xsum = _mm256_set1_epi32(x.sum[b]);
                let dx = x.d[b];
                for (a, row) in acc.iter_mut().zip(rows) {
                    let block = row.add(b * BYTES);
                    // The same block eight rows on: keeps enough lines in flight.
                    _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(PREFETCH_ROWS * w.row_bytes) as *const i8);
                    let bits = (block as *const u16).read_unaligned();
                    let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))));
                    let qs = _mm_loadu_si128(block.add(2) as *const __m128i);
                    let lo = _mm_and_si128(qs, low);
                    let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), low);
                    let wq = _mm256_set_m128i(hi, lo);
                    let dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, xq);
                    // Σ x·(q − 8) over the block: each of the eight lanes gives up Σ x.
                    let exact = _mm256_sub_epi32(dot, xsum);
                    *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), _mm256_set1_ps(d * dx), *a);
                }
            }
            for (r, a) in acc.iter().enumerate().take(nr) {
                let sum = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
                let sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
                let sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
                *out.add(j + r) += _mm_cvtss_f32(sum);
            }
            j += nr;
        }
    }
}
