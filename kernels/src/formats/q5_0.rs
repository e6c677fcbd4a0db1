//! q5_0: 32 weights as an f16 scale `d`, 4 bytes holding each weight's fifth bit (bit `j` of a
//! little-endian u32 for weight `j`) and 16 bytes of low nibbles laid out as q4_0's; each weight
//! `d · (q − 16)`.

use half::f16;

use super::{f16_at, signed_max, Format};

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
        let high = (0..32).fold(0u32, |h, j| h | (u32::from(q[j] >> 4) << j));
        out[2..6].copy_from_slice(&high.to_le_bytes());
        for j in 0..16 {
            out[6 + j] = (q[j] & 0xF) | ((q[j + 16] & 0xF) << 4);
        }
    }

    const GROUP: usize = 32;

    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        let d = f16_at(block, 0);
        (alpha[0], beta[0]) = (d, -16.0 * d);
        let high = u32::from_le_bytes(block[2..6].try_into().expect("a q5_0 block"));
        let qs: &[u8; 16] = block[6..22].try_into().expect("a q5_0 block");
        let q: &mut [i8; 32] = (&mut q[..32]).try_into().expect("32 codes");
        for j in 0..16 {
            let b = qs[j];
            q[j] = ((b & 0xF) | ((((high >> j) & 1) as u8) << 4)) as i8;
            q[j + 16] = ((b >> 4) | ((((high >> (j + 16)) & 1) as u8) << 4)) as i8;
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        let high = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let bit = |j: usize| (((high >> j) & 1) as u8) << 4;
        for j in 0..16 {
            let b = block[6 + j];
            out[j] = d * f32::from(((b & 0xF) | bit(j)) as i8 - 16);
            out[j + 16] = d * f32::from(((b >> 4) | bit(j + 16)) as i8 - 16);
        }
    }
}
