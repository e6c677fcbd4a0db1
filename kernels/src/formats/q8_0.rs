//! q8_0: 32 weights as an f16 scale `d` and 32 signed bytes, each weight `d · q`.

use half::f16;

use super::{f16_at, signed_max, Format};

pub(super) struct Q8_0;

impl Format for Q8_0 {
    const WEIGHTS: usize = 32;
    const BYTES: usize = 34;

    /// `d = max |x| / 127` rounded to f16, then each `q = round(x / d)` against that rounded
    /// scale (the nearest multiple of the stored scale; ggml divides by the unrounded one).
    fn quantize(x: &[f32], out: &mut [u8]) {
        let (_, amax) = signed_max(x);
        let d = f16::from_f32(amax / 127.0);
        let inv = if d.to_f32() > 0.0 { 1.0 / d.to_f32() } else { 0.0 };
        out[..2].copy_from_slice(&d.to_le_bytes());
        for (o, &v) in out[2..].iter_mut().zip(x) {
            *o = ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8;
        }
    }

    const GROUP: usize = 32;

    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        (alpha[0], beta[0]) = (f16_at(block, 0), 0.0);
        let qs: &[u8; 32] = block[2..34].try_into().expect("a q8_0 block");
        let q: &mut [i8; 32] = (&mut q[..32]).try_into().expect("32 codes");
        for (o, &b) in q.iter_mut().zip(qs) {
            *o = b as i8;
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        for (o, &b) in out.iter_mut().zip(&block[2..]) {
            *o = f32::from(b as i8) * d;
        }
    }
}
