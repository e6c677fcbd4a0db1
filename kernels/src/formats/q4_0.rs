//! q4_0: 32 weights as an f16 scale `d` and 16 bytes of nibbles; weight `j` is the low nibble of
//! byte `j`, weight `j + 16` its high nibble, each `d · (q − 8)`.

use half::f16;

use super::{f16_at, signed_max, Format};

pub(super) struct Q4_0;

impl Format for Q4_0 {
    const WEIGHTS: usize = 32;
    const BYTES: usize = 18;

    /// ggml's reference: `d = max / −8` for the value of largest magnitude, so that value is
    /// exactly `q = 0`; the others `q = trunc(x / d + 8.5)`, at most 15.
    fn quantize(x: &[f32], out: &mut [u8]) {
        let (max, _) = signed_max(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        let q = |v: f32| ((v * id + 8.5).trunc() as u8).min(15);
        for j in 0..16 {
            out[2 + j] = q(x[j]) | (q(x[j + 16]) << 4);
        }
    }

    const GROUP: usize = 32;

    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        let d = f16_at(block, 0);
        (alpha[0], beta[0]) = (d, -8.0 * d);
        // Fixed sizes: no bounds checks, loops the compiler vectorizes.
        let qs: &[u8; 16] = block[2..18].try_into().expect("a q4_0 block");
        let (lo, hi) = q[..32].split_at_mut(16);
        for ((l, h), &b) in lo.iter_mut().zip(hi.iter_mut()).zip(qs) {
            (*l, *h) = ((b & 0xF) as i8, (b >> 4) as i8);
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        for j in 0..16 {
            let b = block[2 + j];
            out[j] = d * f32::from(i16::from(b & 0xF) as i8 - 8);
            out[j + 16] = d * f32::from((b >> 4) as i8 - 8);
        }
    }
}
