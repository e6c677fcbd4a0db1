//! q5_k: q4_k's layout with a fifth bit per weight: f16 `d` and `dmin`, 12 bytes of scales and
//! mins, 32 bytes `qh` (bit `j` of byte `l`: weight `32j + l`'s fifth bit) and 128 bytes of low
//! nibbles laid out as q4_k's. A weight of sub-block `j` is `d·sc_j · q − dmin·m_j`, q in 0..32.

use super::k_scales::{scale_min, SUB_BLOCKS};
use super::q4_k::{k_codes, pack_nibbles, quantize_k};
use super::{f16_at, Format};

pub(super) struct Q5K;

impl Format for Q5K {
    const WEIGHTS: usize = 256;
    const BYTES: usize = 176;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let mut q = [0u8; 256];
        let (head, rest) = out.split_at_mut(16);
        let (d, scales) = head.split_at_mut(4);
        let (qh, qs) = rest.split_at_mut(32);
        quantize_k(x, 31, scales, d, &mut q);
        qh.fill(0);
        for j in 0..SUB_BLOCKS {
            for l in 0..32 {
                qh[l] |= (q[32 * j + l] >> 4) << j;
            }
        }
        pack_nibbles(&q, qs);
    }

    const GROUP: usize = 32;

    fn codes(block: &[u8], q: &mut [i8], alpha: &mut [f32], beta: &mut [f32]) {
        k_codes(block, 48, Some(&block[16..48]), q, alpha, beta);
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
        let (qh, qs) = (&block[16..48], &block[48..]);
        for j in 0..SUB_BLOCKS {
            let (sc, m) = scale_min(&block[4..16], j);
            let (step, shift) = (d * f32::from(sc), dmin * f32::from(m));
            let (c, high) = (j / 2, j % 2 == 1);
            for l in 0..32 {
                let b = qs[32 * c + l];
                let low = if high { b >> 4 } else { b & 0xF };
                let q = low | (((qh[l] >> j) & 1) << 4);
                out[32 * j + l] = step * f32::from(q) - shift;
            }
        }
    }
}
