//! q5_0: 32 weights as an f16 scale `d`, 4 bytes holding each weight's fifth bit (bit `j` of a
//! little-endian u32 for weight `j`) and 16 bytes of low nibbles laid out as q4_0's; each weight
//! `d · (q − 16)`.

use half::f16;

use super::{f16_at, five_bit_codes, pack_five_bits, signed_max, Format};

pub(super) struct Q5_0;

impl Format for Q5_0 {
    const WEIGHTS: usize = 32;
    const BYTES: usize = 22;

    /// ggml's reference: `d = max / −16`, `q = trunc(x / d + 16.5)`, at most 31.
    fn quantize(x: &[f32], out: &mut [u8]) {
        let (max, _) = signed_max(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        let q: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + 16.5).trunc() as u8).min(31));
        let (high, qs) = out[2..22].split_at_mut(4);
        pack_five_bits(&q, high, qs);
    }

    const GROUP: usize = 32;

    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        let d = f16_at(block, 0);
        (alpha[0], beta[0]) = (d, -16.0 * d);
        for (o, c) in q.iter_mut().zip(five_bit_codes(&block[2..6], &block[6..22])) {
            *o = c as i8;
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        for (o, c) in out.iter_mut().zip(five_bit_codes(&block[2..6], &block[6..22])) {
            *o = d * f32::from(c as i8 - 16);
        }
    }
}
