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
        let pos = h.first_pos + i;
        let start = h.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let q = &h.q[i * h.q_stride..][..d];
        let visible = &mut scores[..pos + 1 - start];
        for (s, key) in visible.iter_mut().zip(h.keys[start * d..].chunks_exact(d)) {
            *s = dot::<S>(q, key) * h.scale;
        }
        softmax::<S>(visible);
        // SAFETY: row i of the output, D floats, as the caller vouched.
        let o = std::slice::from_raw_parts_mut(out.add(i * out_stride), d);
        o.fill(0.0);
        for (&p, value) in visible.iter().zip(h.values[start * d..].chunks_exact(d)) {
            axpy::<S>(p, value, o);
        }
    }
}
