//! q5_1: 32 weights as f16 `d` and `m`, the fifth bits (as q5_0's) and 16 bytes of low nibbles;
//! each weight `d · q + m`, q in 0..32. llama.cpp's stand-in for q5_k where a row is not a whole
//! number of 256-weight blocks.

use half::f16;

use super::{f16_at, five_bit_codes, pack_five_bits, Format};

pub(super) struct Q5_1;

impl Format for Q5_1 {
    const WEIGHTS: usize = 32;
    const BYTES: usize = 24;

    /// ggml's reference: `d = (max − min) / 31`, `m = min`, `q = trunc((x − min) / d + 0.5)`.
    fn quantize(x: &[f32], out: &mut [u8]) {
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        out[2..4].copy_from_slice(&f16::from_f32(min).to_le_bytes());
        let q: [u8; 32] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5).trunc() as u8).min(31));
        let (high, qs) = out[4..24].split_at_mut(4);
        pack_five_bits(&q, high, qs);
    }

    const GROUP: usize = 32;

    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        (alpha[0], beta[0]) = (f16_at(block, 0), f16_at(block, 2));
        for (o, c) in q.iter_mut().zip(five_bit_codes(&block[4..8], &block[8..24])) {
            *o = c as i8;
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let (d, m) = (f16_at(block, 0), f16_at(block, 2));
        for (o, c) in out.iter_mut().zip(five_bit_codes(&block[4..8], &block[8..24])) {
            *o = d * f32::from(c) + m;
        }
    }
}
