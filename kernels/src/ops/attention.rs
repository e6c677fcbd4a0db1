//! Attention of one head's new queries over its cached keys and values (f32 or f16).

use super::vector::{axpy, dot, softmax};
use crate::elem::Elem;
use crate::simd::Simd;
use crate::{AttentionHead, WeightData};

/// # Safety
/// As every `ops` kernel; `out` must be valid for rows `i * out_stride .. + D`.
#[inline(always)]
pub(crate) unsafe fn attention_head<S: Simd>(h: &AttentionHead, scores: &mut [f32], out: *mut f32, out_stride: usize) {
    match (h.keys, h.values) {
        (WeightData::F32(k), WeightData::F32(v)) => attend::<S, f32>(h, k, v, scores, out, out_stride),
        (WeightData::F16(k), WeightData::F16(v)) => attend::<S, half::f16>(h, k, v, scores, out, out_stride),
        _ => unreachable!("keys and values of one type, f32 or f16 (checked by Kernels::attention)"),
    }
}

#[inline(always)]
unsafe fn attend<S: Simd, E: Elem>(
    h: &AttentionHead,
    keys: &[E],
    values: &[E],
    scores: &mut [f32],
    out: *mut f32,
    stride: usize,
) {
    let d = h.d;
    for i in 0..h.n_queries {
        let q = &h.q[i * h.q_stride..][..d];
        let (row, start, pos) = h.scores_row(scores, i);
        let visible = &mut row[start..=pos];
        for (s, j) in visible.iter_mut().zip(start..=pos) {
            *s = dot::<S, E>(q, &keys[h.row(j)..][..d]) * h.scale;
        }
        h.add_key_bias(visible, start);
        softmax::<S>(visible);
        h.finish_probs(row, start, pos);
        let visible = &row[start..=pos];
        // SAFETY: row i of the output, D floats, as the caller vouched.
        let o = std::slice::from_raw_parts_mut(out.add(i * stride), d);
        o.fill(0.0);
        for (&p, j) in visible.iter().zip(start..=pos) {
            axpy::<S, E>(p, &values[h.row(j)..][..d], o);
        }
    }
}
