//! Scalar reference kernels: the readable twin and test oracle of every SIMD variant.

use crate::{Activation, AttentionHead, Layout, WeightF32};

/// `out[M, N] = x[M, K] · W + bias`.
pub fn matmul_f32(x: &[f32], w: WeightF32, bias: Option<&[f32]>, out: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    for (x_row, out_row) in x.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        match bias {
            Some(b) => out_row.copy_from_slice(b),
            None => out_row.fill(0.0),
        }
        match w.layout {
            // Row of W per input feature: accumulate x[i] * W[i, :] into the output row.
            Layout::InOut => {
                for (&xi, w_row) in x_row.iter().zip(w.data.chunks_exact(n)) {
                    for (o, &wv) in out_row.iter_mut().zip(w_row) {
                        *o += xi * wv;
                    }
                }
            }
            // Row of W per output feature: one dot product each.
            Layout::OutIn => {
                for (o, w_row) in out_row.iter_mut().zip(w.data.chunks_exact(k)) {
                    *o += dot(x_row, w_row);
                }
            }
        }
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// LayerNorm of each `n`-wide row of `x` into `out`, biased variance as torch computes it.
pub fn layernorm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let n = gamma.len();
    for (x_row, out_row) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = x_row.iter().sum::<f32>() / n as f32;
        let var = x_row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), &g), &b) in out_row.iter_mut().zip(x_row).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

pub fn activation(kind: Activation, x: &mut [f32]) {
    match kind {
        Activation::GeluNew => x.iter_mut().for_each(|v| *v = gelu_new(*v)),
        Activation::Gelu => {
            x.iter_mut().for_each(|v| *v = 0.5 * *v * (1.0 + libm::erff(*v * std::f32::consts::FRAC_1_SQRT_2)))
        }
        Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Silu => x.iter_mut().for_each(|v| *v /= 1.0 + (-*v).exp()),
        Activation::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
    }
}

fn gelu_new(x: f32) -> f32 {
    // sqrt(2/pi), as transformers' NewGELUActivation computes it.
    const C: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

/// In-place softmax of one row.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// Attention of one head: `out[i] = softmax(scale · q[i] · Kᵀ) · V` over the visible positions.
/// `scores` is scratch of at least `T` floats; row `i` of the output is `out[i * out_stride ..][..D]`.
pub fn attention(h: AttentionHead, scores: &mut [f32], out: &mut [f32], out_stride: usize) {
    let d = h.d;
    for i in 0..h.n_queries {
        let pos = h.first_pos + i;
        let start = h.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let q = &h.q[i * h.q_stride..][..d];
        let visible = &mut scores[..pos + 1 - start];
        for (s, key) in visible.iter_mut().zip(h.keys[start * d..].chunks_exact(d)) {
            *s = dot(q, key) * h.scale;
        }
        softmax(visible);
        let o = &mut out[i * out_stride..][..d];
        o.fill(0.0);
        for (&p, value) in visible.iter().zip(h.values[start * d..].chunks_exact(d)) {
            for (ov, &vv) in o.iter_mut().zip(value) {
                *ov += p * vv;
            }
        }
    }
}
