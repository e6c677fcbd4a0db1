//! q6_k: 256 weights as 128 bytes of low nibbles `ql`, 64 bytes of high bit pairs `qh`, sixteen
//! signed 8-bit scales (one per sub-block of 16) and an f16 `d`, in that order. In each half `h`
//! of 128 weights, weight `32s + l` takes its low nibble from `ql[64h + 32(s % 2) + l]` (low
//! nibble for `s < 2`, high for `s ≥ 2`) and its high two bits from `qh[32h + l] >> 2s`; it is
//! `d·sc · (q − 32)`.

use half::f16;

use super::{f16_at, signed_max, Format};

pub(super) struct Q6K;

/// The scale of one sub-block of 16 for signed codes in `-32..=31` (ggml's `make_qx_quants`,
/// its least-squares variant): 19 trial scales around `−32 / max` (max: the value of largest
/// magnitude, which lands on −32), each scored by `(Σ w·x·q)² / Σ w·q²` with `w = x²`.
fn fit_scale(x: &[f32]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax == 0.0 {
        return 0.0;
    }
    let mut best = (0.0f32, 0.0f32);
    for step in -9..=9 {
        let iscale = -(32.0 + 0.1 * step as f32) / max;
        let (mut sxl, mut sl2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = (iscale * v).round_ties_even().clamp(-32.0, 31.0);
            let w = v * v;
            sxl += w * v * l;
            sl2 += w * l * l;
        }
        if sl2 > 0.0 && sxl * sxl > best.1 * sl2 {
            best = (sxl / sl2, sxl * sxl / sl2);
        }
    }
    best.0
}

impl Format for Q6K {
    const WEIGHTS: usize = 256;
    const BYTES: usize = 210;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let scales: [f32; 16] = std::array::from_fn(|s| fit_scale(&x[16 * s..16 * (s + 1)]));
        let (max_scale, _) = signed_max(&scales);
        let (ql, rest) = out.split_at_mut(128);
        let (qh, rest) = rest.split_at_mut(64);
        let (sc, d_out) = rest.split_at_mut(16);
        let mut q = [32u8; 256];
        if max_scale == 0.0 {
            sc.fill(0);
            d_out.copy_from_slice(&f16::ZERO.to_le_bytes());
        } else {
            let iscale = -128.0 / max_scale;
            let d = f16::from_f32(1.0 / iscale);
            d_out.copy_from_slice(&d.to_le_bytes());
            for s in 0..16 {
                let code = (iscale * scales[s]).round_ties_even().clamp(-128.0, 127.0) as i8;
                sc[s] = code as u8;
                let step = d.to_f32() * f32::from(code);
                if step == 0.0 {
                    continue;
                }
                for l in 0..16 {
                    let v = x[16 * s + l];
                    q[16 * s + l] = ((v / step).round_ties_even().clamp(-32.0, 31.0) as i8 + 32) as u8;
                }
            }
        }
        for h in 0..2 {
            for l in 0..32 {
                let [q1, q2, q3, q4] = [0, 32, 64, 96].map(|o| q[128 * h + o + l]);
                ql[64 * h + l] = (q1 & 0xF) | ((q3 & 0xF) << 4);
                ql[64 * h + 32 + l] = (q2 & 0xF) | ((q4 & 0xF) << 4);
                qh[32 * h + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }

    const GROUP: usize = 16;

    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        let (ql, qh, sc) = (&block[..128], &block[128..192], &block[192..208]);
        let d = f16_at(block, 208);
        for s in 0..16 {
            let a = d * f32::from(sc[s] as i8);
            (alpha[s], beta[s]) = (a, -32.0 * a);
        }
        // Fixed sizes and no branch per weight: loops the compiler vectorizes.
        let (ql, qh): (&[u8; 128], &[u8; 64]) = (ql.try_into().expect("ql"), qh.try_into().expect("qh"));
        let q: &mut [i8; 256] = (&mut q[..256]).try_into().expect("256 codes");
        for h in 0..2 {
            for l in 0..32 {
                let (a, b, top) = (ql[64 * h + l], ql[64 * h + 32 + l], qh[32 * h + l]);
                let at = 128 * h + l;
                q[at] = ((a & 0xF) | ((top & 3) << 4)) as i8;
                q[at + 32] = ((b & 0xF) | (((top >> 2) & 3) << 4)) as i8;
                q[at + 64] = ((a >> 4) | (((top >> 4) & 3) << 4)) as i8;
                q[at + 96] = ((b >> 4) | (((top >> 6) & 3) << 4)) as i8;
            }
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let (ql, qh, sc) = (&block[..128], &block[128..192], &block[192..208]);
        let d = f16_at(block, 208);
        for h in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    let i = 128 * h + 32 * s + l;
                    let byte = ql[64 * h + 32 * (s % 2) + l];
                    let low = if s < 2 { byte & 0xF } else { byte >> 4 };
                    let q = (low | (((qh[32 * h + l] >> (2 * s)) & 3) << 4)) as i8 - 32;
                    out[i] = d * f32::from(sc[i / 16] as i8) * f32::from(q);
                }
            }
        }
    }
}
