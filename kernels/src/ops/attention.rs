//! Attention of one head's new queries over its cached keys and values.

use super::vector::{axpy, dot, softmax};
use crate::simd::Simd;
use crate::AttentionHead;

/// # Safety
/// As every `ops` kernel; `out` must be valid for rows `i * out_stride .. + D`.
#[inline(always)]
pub(crate) unsafe fn attention_head<S: Simd>(h: &AttentionHead, scores: &mut [f32], out: *mut f32, out_stride: usize) {
    let d = h.d;
    for i in 0..h.n_queries {
        let (start, pos) = (h.first_visible(i), h.first_pos + i);
        let q = &h.q[i * h.q_stride..][..d];
        let visible = &mut scores[..pos + 1 - start];
        for (s, j) in visible.iter_mut().zip(start..=pos) {
            *s = dot::<S>(q, h.kv(j).0) * h.scale;
        }
        softmax::<S>(visible);
        // SAFETY: row i of the output, D floats, as the caller vouched.
        let o = std::slice::from_raw_parts_mut(out.add(i * out_stride), d);
        o.fill(0.0);
        for (&p, j) in visible.iter().zip(start..=pos) {
            axpy::<S>(p, h.kv(j).1, o);
        }
    }
}
