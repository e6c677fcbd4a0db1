//! q4_k: 256 weights as f16 `d` and `dmin`, 12 bytes of 6-bit scales and mins for eight
//! sub-blocks of 32 (`k_scales`), and 128 bytes of nibbles: byte `32c + l` holds weight
//! `64c + l` (sub-block `2c`) low and weight `64c + 32 + l` (sub-block `2c + 1`) high. A weight
//! of sub-block `j` is `d·sc_j · q − dmin·m_j`.

use super::k_scales::{fit_scale_min, importance, pack_scales, scale_min, six_bit_codes, SUB_BLOCKS};
use super::{f16_at, Format};

pub(super) struct Q4K;

/// The values `q` of a 256-weight block for the sub-block scales and mins the codes give, as
/// the decoder will read them; `nmax` 15 (q4_k) or 31 (q5_k).
pub(super) fn quantize_k(x: &[f32], nmax: u8, out_scales: &mut [u8], out_d: &mut [u8], q: &mut [u8; 256]) {
    let mut scales = [0.0f32; SUB_BLOCKS];
    let mut mins = [0.0f32; SUB_BLOCKS];
    let mut w = [0.0f32; 32];
    for j in 0..SUB_BLOCKS {
        let sub = &x[32 * j..32 * (j + 1)];
        importance(x, sub, &mut w);
        (scales[j], mins[j]) = fit_scale_min(sub, &w, nmax);
    }
    let (sc, d) = six_bit_codes(&scales);
    let (m, dmin) = six_bit_codes(&mins);
    pack_scales(&sc, &m, out_scales);
    out_d[..2].copy_from_slice(&d.to_le_bytes());
    out_d[2..4].copy_from_slice(&dmin.to_le_bytes());
    for j in 0..SUB_BLOCKS {
        let step = d.to_f32() * f32::from(sc[j]);
        let shift = dmin.to_f32() * f32::from(m[j]);
        for l in 0..32 {
            let v = x[32 * j + l];
            q[32 * j + l] =
                if step > 0.0 { ((v + shift) / step).round_ties_even().clamp(0.0, f32::from(nmax)) as u8 } else { 0 };
        }
    }
}

/// q4_k's or q5_k's codes (nibbles at `qs_at`, q5_k's fifth bits in `qh`): per sub-block
/// `alpha = d·sc_j`, `beta = −dmin·m_j`.
pub(super) fn k_codes(
    block: &[u8],
    qs_at: usize,
    qh: Option<&[u8]>,
    q: &mut [i8],
    alpha: &mut [f32],
    beta: &mut [f32],
) {
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    for j in 0..SUB_BLOCKS {
        let (sc, m) = scale_min(&block[4..16], j);
        (alpha[j], beta[j]) = (d * f32::from(sc), -(dmin * f32::from(m)));
    }
    // Fixed sizes and one pass per pair of sub-blocks: loops the compiler vectorizes.
    let qs: &[u8; 128] = block[qs_at..qs_at + 128].try_into().expect("a k-quant block");
    let q: &mut [i8; 256] = (&mut q[..256]).try_into().expect("256 codes");
    for c in 0..4 {
        let (lo, hi) = q[64 * c..64 * c + 64].split_at_mut(32);
        for l in 0..32 {
            let b = qs[32 * c + l];
            (lo[l], hi[l]) = ((b & 0xF) as i8, (b >> 4) as i8);
        }
    }
    if let Some(qh) = qh {
        let qh: &[u8; 32] = qh.try_into().expect("32 bytes of fifth bits");
        for j in 0..SUB_BLOCKS {
            for l in 0..32 {
                q[32 * j + l] |= (((qh[l] >> j) & 1) << 4) as i8;
            }
        }
    }
}

/// The low four bits of 256 codes into 128 bytes as q4_k and q5_k lay them out: byte `32c + l`
/// holds code `64c + l` low and code `64c + 32 + l` high.
pub(super) fn pack_nibbles(q: &[u8; 256], qs: &mut [u8]) {
    for c in 0..4 {
        for l in 0..32 {
            qs[32 * c + l] = (q[64 * c + l] & 0xF) | ((q[64 * c + 32 + l] & 0xF) << 4);
        }
    }
}

impl Format for Q4K {
    const WEIGHTS: usize = 256;
    const BYTES: usize = 144;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let mut q = [0u8; 256];
        let (head, qs) = out.split_at_mut(16);
        let (d, scales) = head.split_at_mut(4);
        quantize_k(x, 15, scales, d, &mut q);
        pack_nibbles(&q, qs);
    }

    const GROUP: usize = 32;

    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        k_codes(block, 16, None, q, alpha, beta);
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
        let qs = &block[16..];
        for j in 0..SUB_BLOCKS {
            let (sc, m) = scale_min(&block[4..16], j);
            let (step, shift) = (d * f32::from(sc), dmin * f32::from(m));
            let (c, high) = (j / 2, j % 2 == 1);
            for l in 0..32 {
                let b = qs[32 * c + l];
                let q = if high { b >> 4 } else { b & 0xF };
                out[32 * j + l] = step * f32::from(q) - shift;
            }
        }
    }
}
