//! Activations quantized per block of 32 for the AVX-512 VNNI kernels (q8_0's in `q8_vnni`, the
//! block formats' in `blocks_vnni`): one rule, so that both round x alike.

use std::arch::x86_64::*;

use crate::weight::Q8_BLOCK;

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

/// Rows of x quantized for the GEMM, in panels of [`PANEL`] rows: panel p holds rows
/// `16p..16p+16` as `[K / 4][16][4]` bytes (`q + 128`, so unsigned; rows past M are 128, i.e.
/// zero) and their scales as `[blocks][16]` (0 past M).
#[derive(Default)]
pub(crate) struct QuantizedPanels {
    pub(crate) bytes: Vec<u8>,
    pub(crate) d: Vec<f32>,
    /// Σ round(x / d) per half block (16 values) of each row, as `[K / 16][16]` per panel (0
    /// past M): what a block format's offsets and mins multiply.
    pub(crate) sum16: Vec<f32>,
}

/// Rows of x per GEMM panel: one per lane of an AVX-512 vector.
pub(crate) const PANEL: usize = 16;

impl QuantizedPanels {
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL; `x` holds `m × k` values, `k` a multiple of 32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn quantize(&mut self, x: &[f32], m: usize, k: usize) {
        // SAFETY: the contract above: block b of row t < m reads 32 floats of x at `t·k + b·32`;
        // its bytes go to `block_bytes` (32) and then four at a time to `(b·8 + quad)·64 + 4·lane`
        // of panel p, inside the panel's `k × 16` bytes.
        unsafe {
            let (blocks, panels) = (k / Q8_BLOCK, m.div_ceil(PANEL));
            self.bytes.clear();
            self.bytes.resize(panels * k * PANEL, 0x80);
            self.d.clear();
            self.d.resize(panels * blocks * PANEL, 0.0);
            self.sum16.clear();
            self.sum16.resize(panels * 2 * blocks * PANEL, 0.0);
            let mut block_bytes = [0u8; Q8_BLOCK];
            for t in 0..m {
                let (p, lane) = (t / PANEL, t % PANEL);
                let panel = self.bytes.as_mut_ptr().add(p * k * PANEL);
                for b in 0..blocks {
                    let (lo, hi, d) = quantize_block(x.as_ptr().add(t * k + b * Q8_BLOCK));
                    self.d[(p * blocks + b) * PANEL + lane] = d;
                    let halves = (p * 2 * blocks + 2 * b) * PANEL + lane;
                    self.sum16[halves] = _mm512_reduce_add_epi32(lo) as f32;
                    self.sum16[halves + PANEL] = _mm512_reduce_add_epi32(hi) as f32;
                    let offset = _mm_set1_epi8(-128);
                    for (half, q) in [lo, hi].into_iter().enumerate() {
                        let bytes = _mm_xor_si128(_mm512_cvtepi32_epi8(q), offset);
                        _mm_storeu_si128(block_bytes.as_mut_ptr().add(16 * half) as *mut __m128i, bytes);
                    }
                    // Four consecutive k of this row per 64-byte step of the panel.
                    for (quad, four) in block_bytes.chunks_exact(4).enumerate() {
                        let step = (b * Q8_BLOCK / 4 + quad) * 4 * PANEL;
                        std::ptr::copy_nonoverlapping(four.as_ptr(), panel.add(step + 4 * lane), 4);
                    }
                }
            }
        }
    }
}
