//! Block formats: weights quantized in fixed blocks along a row's K inputs, each block one run
//! of bytes holding its scale(s) and packed values, byte for byte GGUF's (ggml's) blocks, so that
//! a GGUF file's tensors can be read where they lie. One module per format; [`BlockFormat`] is
//! the one table the rest of Quill goes through.
//!
//! | format | weights per block | bytes | bits per weight | a weight |
//! |---|---:|---:|---:|---|
//! | q4_0 | 32 | 18 | 4.5 | `d · (q − 8)`, q in 0..16 |
//! | q5_0 | 32 | 22 | 5.5 | `d · (q − 16)`, q in 0..32 |
//! | q5_1 | 32 | 24 | 6 | `d · q + m`, q in 0..32 |
//! | q8_0 | 32 | 34 | 8.5 | `d · q`, q in −127..=127 |
//! | q4_k | 256 | 144 | 4.5 | `d·sc · q − dmin·m`, per sub-block of 32 a 6-bit sc and m, q in 0..16 |
//! | q5_k | 256 | 176 | 5.5 | as q4_k, q in 0..32 |
//! | q6_k | 256 | 210 | 6.5625 | `d·sc · (q − 32)`, per sub-block of 16 an 8-bit sc, q in 0..64 |
//!
//! Each module has a reference quantizer and decoder for one block. The decoders equal gguf-py's
//! bit for bit; the quantizers of q4_0, q5_0 and q5_1 equal ggml's reference ones; q8_0's rounds each
//! value against the stored (f16) scale, as Quill's q8_0 always has; the k-quants' search each
//! sub-block's scale (and min) for the least weighted squared error, as ggml's reference
//! quantizers do, without claiming their exact bits (tests/data/goldens/block-formats.json,
//! kernels/tests/block_formats.rs).

pub(crate) mod k_scales;
mod q4_0;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;

use half::f16;

/// One block format: its sizes and its reference codecs.
trait Format {
    /// Weights per block.
    const WEIGHTS: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Quantizes `x` (`WEIGHTS` values) into `out` (`BYTES` bytes).
    fn quantize(x: &[f32], out: &mut [u8]);
    /// Decodes one block (`BYTES` bytes) into `out` (`WEIGHTS` values).
    fn dequantize(block: &[u8], out: &mut [f32]);
    /// Weights per group of [`Format::codes`]: 32, or 16 for q6_k.
    const GROUP: usize;
    /// One block as integer codes, `alpha` and `beta` per group: weight `i` of group `g` is
    /// `alpha[g] · q[i] + beta[g]` (what the integer GEMMs multiply).
    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]);
}

/// The block formats Quill reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    Q4_0,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

/// Runs `$body` with `$F` bound to the format's module type.
macro_rules! with_format {
    ($format:expr, $F:ident => $body:expr) => {
        match $format {
            BlockFormat::Q4_0 => {
                type $F = q4_0::Q4_0;
                $body
            }
            BlockFormat::Q5_0 => {
                type $F = q5_0::Q5_0;
                $body
            }
            BlockFormat::Q5_1 => {
                type $F = q5_1::Q5_1;
                $body
            }
            BlockFormat::Q8_0 => {
                type $F = q8_0::Q8_0;
                $body
            }
            BlockFormat::Q4K => {
                type $F = q4_k::Q4K;
                $body
            }
            BlockFormat::Q5K => {
                type $F = q5_k::Q5K;
                $body
            }
            BlockFormat::Q6K => {
                type $F = q6_k::Q6K;
                $body
            }
        }
    };
}

impl BlockFormat {
    pub const ALL: [BlockFormat; 7] = [
        BlockFormat::Q4_0,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q8_0,
        BlockFormat::Q4K,
        BlockFormat::Q5K,
        BlockFormat::Q6K,
    ];

    /// The name GGUF's tools (and `quantize --type`) use, lower case.
    pub fn name(self) -> &'static str {
        match self {
            BlockFormat::Q4_0 => "q4_0",
            BlockFormat::Q5_0 => "q5_0",
            BlockFormat::Q5_1 => "q5_1",
            BlockFormat::Q8_0 => "q8_0",
            BlockFormat::Q4K => "q4_k",
            BlockFormat::Q5K => "q5_k",
            BlockFormat::Q6K => "q6_k",
        }
    }

    pub fn parse(name: &str) -> Option<BlockFormat> {
        BlockFormat::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Weights per block: 32, or 256 for the k-quants.
    pub fn block_weights(self) -> usize {
        with_format!(self, F => F::WEIGHTS)
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        with_format!(self, F => F::BYTES)
    }

    /// Weights per group of [`BlockFormat::codes`]: 32, or 16 for q6_k.
    pub fn group(self) -> usize {
        with_format!(self, F => F::GROUP)
    }

    /// Whole blocks `bytes` as integer codes (`q`, as many as the weights, each in
    /// -128..=127) with a scale and an offset per group of [`BlockFormat::group`] weights:
    /// weight `i` of group `g` is `alpha[g] · q[i] + beta[g]`, the value
    /// [`BlockFormat::dequantize_row`] gives up to float rounding.
    pub fn codes(self, bytes: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        let groups = q.len() / self.group();
        assert!(
            self.row_bytes(q.len()) == Some(bytes.len()) && alpha.len() == groups && beta.len() == groups,
            "{}: codes lengths",
            self.name()
        );
        with_format!(self, F => {
            let per = F::WEIGHTS / F::GROUP;
            for (((block, q), a), b) in bytes
                .chunks_exact(F::BYTES)
                .zip(q.chunks_exact_mut(F::WEIGHTS))
                .zip(alpha.chunks_exact_mut(per))
                .zip(beta.chunks_exact_mut(per))
            {
                F::codes(block, q, a, b);
            }
        })
    }

    /// Bits per weight, scales included.
    pub fn bits_per_weight(self) -> f64 {
        (8 * self.block_bytes()) as f64 / self.block_weights() as f64
    }

    /// Bytes of a row of `k` weights, or `None` when `k` is not a whole number of blocks.
    pub fn row_bytes(self, k: usize) -> Option<usize> {
        k.is_multiple_of(self.block_weights()).then(|| k / self.block_weights() * self.block_bytes())
    }

    /// Quantizes `x` (whole blocks) into `out` ([`BlockFormat::row_bytes`] of them).
    pub fn quantize_row(self, x: &[f32], out: &mut [u8]) {
        assert_eq!(self.row_bytes(x.len()), Some(out.len()), "{}: quantize_row lengths", self.name());
        with_format!(self, F => {
            for (x, out) in x.chunks_exact(F::WEIGHTS).zip(out.chunks_exact_mut(F::BYTES)) {
                F::quantize(x, out);
            }
        })
    }

    /// Decodes whole blocks `bytes` into `out` (as many weights).
    pub fn dequantize_row(self, bytes: &[u8], out: &mut [f32]) {
        assert_eq!(self.row_bytes(out.len()), Some(bytes.len()), "{}: dequantize_row lengths", self.name());
        with_format!(self, F => {
            for (block, out) in bytes.chunks_exact(F::BYTES).zip(out.chunks_exact_mut(F::WEIGHTS)) {
                F::dequantize(block, out);
            }
        })
    }
}

/// The f16 at `b[at..at + 2]`, little-endian, as f32.
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The 32 five-bit codes of a q5_0 / q5_1 block: `high`, four little-endian bytes whose bit `j`
/// is code `j`'s fifth bit, over `qs`, 16 bytes whose low nibbles are codes 0–15 and high ones
/// 16–31.
fn five_bit_codes(high: &[u8], qs: &[u8]) -> [u8; 32] {
    let high = u32::from_le_bytes(high[..4].try_into().expect("four bytes of fifth bits"));
    let qs: &[u8; 16] = qs[..16].try_into().expect("16 bytes of nibbles");
    std::array::from_fn(|j| {
        let nibble = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
        nibble | ((((high >> j) & 1) as u8) << 4)
    })
}

/// [`five_bit_codes`]' inverse: 32 codes below 32 into `high` (4 bytes) and `qs` (16 bytes).
fn pack_five_bits(q: &[u8; 32], high: &mut [u8], qs: &mut [u8]) {
    let bits = (0..32).fold(0u32, |h, j| h | (u32::from(q[j] >> 4) << j));
    high[..4].copy_from_slice(&bits.to_le_bytes());
    for j in 0..16 {
        qs[j] = (q[j] & 0xF) | ((q[j + 16] & 0xF) << 4);
    }
}

/// The value of largest magnitude (the first of ties, as ggml and gguf-py pick it) and that
/// magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}
