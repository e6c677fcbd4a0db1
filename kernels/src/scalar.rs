//! Scalar reference kernels: the readable twin and test oracle of every SIMD variant, and the
//! kernels of the `scalar` level on CPUs without a supported vector ISA.

use crate::activation::Activation;
use crate::attention_args::{AttentionHead, KvData};
use crate::elem::Elem;
use crate::weight::{Layout, Weight, WeightData, Q8_BLOCK};

/// `out[M, N] = x[M, K] · W + bias`, with `M = x.len() / K`.
pub fn matmul(x: &[f32], w: Weight, bias: Option<&[f32]>, out: &mut [f32]) {
    let rows_by_cols = (x.len() / w.k).checked_mul(w.n);
    assert!(rows_by_cols.is_some_and(|mn| out.len() >= mn), "scalar::matmul: out is shorter than M×N");
    // SAFETY: `out` is a live exclusive slice of at least M×N floats (checked above); the columns
    // are all of 0..N.
    unsafe { matmul_cols(x, w, bias, out.as_mut_ptr(), 0, w.n) }
}

/// Columns `n0..n1` of `out[M, N] = x[M, K] · W + bias`.
///
/// # Safety
/// `out` must be valid for writes of `M × N` floats, where `M = x.len() / K`.
pub(crate) unsafe fn matmul_cols(x: &[f32], w: Weight, bias: Option<&[f32]>, out: *mut f32, n0: usize, n1: usize) {
    match w.data {
        // SAFETY: the contract above is `matmul_cols_typed`'s.
        WeightData::F32(d) => unsafe { matmul_cols_typed(x, d, w.k, w.n, w.layout, bias, out, n0, n1) },
        // SAFETY: as above.
        WeightData::F16(d) => unsafe { matmul_cols_typed(x, d, w.k, w.n, w.layout, bias, out, n0, n1) },
        WeightData::Q8_0 { q, scales } => {
            // Each output: per block, the int8 dot product in f32, times the block's scale.
            let k = w.k;
            for (i, x_row) in x.chunks_exact(k).enumerate() {
                for j in n0..n1 {
                    let mut acc = bias.map_or(0.0, |b| b[j]);
                    for (b, xb) in x_row.chunks_exact(Q8_BLOCK).enumerate() {
                        let qb = &q[j * k + b * Q8_BLOCK..][..Q8_BLOCK];
                        let dot: f32 = xb.iter().zip(qb).map(|(a, &v)| a * v as f32).sum();
                        acc += dot * scales[(j * k) / Q8_BLOCK + b].to_f32();
                    }
                    // SAFETY: row i, column j lies inside the M×N output the caller vouched for.
                    unsafe { *out.add(i * w.n + j) = acc };
                }
            }
        }
        WeightData::Blocks { .. } => {
            // Each output: its row decoded with the format's reference decoder, then a dot product.
            let k = w.k;
            let mut row = vec![0.0; k];
            for j in n0..n1 {
                w.data.slice(j * k..(j + 1) * k).to_f32(&mut row);
                for (i, x_row) in x.chunks_exact(k).enumerate() {
                    let dot: f32 = x_row.iter().zip(&row).map(|(a, b)| a * b).sum();
                    // SAFETY: row i, column j lies inside the M×N output the caller vouched for.
                    unsafe { *out.add(i * w.n + j) = bias.map_or(0.0, |b| b[j]) + dot };
                }
            }
        }
    }
}

/// # Safety
/// `out` must be valid for writes of `M × n` floats, where `M = x.len() / k`.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_cols_typed<E: Elem>(
    x: &[f32],
    w: &[E],
    k: usize,
    n: usize,
    layout: Layout,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    for (i, x_row) in x.chunks_exact(k).enumerate() {
        // SAFETY: row i, columns n0..n1 lie inside the M×N output the caller vouched for.
        let out_row = unsafe { std::slice::from_raw_parts_mut(out.add(i * n + n0), n1 - n0) };
        match bias {
            Some(b) => out_row.copy_from_slice(&b[n0..n1]),
            None => out_row.fill(0.0),
        }
        match layout {
            // Row of W per input feature: accumulate x[i] * W[i, n0..n1] into the output row.
            Layout::InOut => {
                for (&xi, w_row) in x_row.iter().zip(w.chunks_exact(n)) {
                    for (o, &wv) in out_row.iter_mut().zip(&w_row[n0..n1]) {
                        *o += xi * wv.to_f32();
                    }
                }
            }
            // Row of W per output feature: one dot product each.
            Layout::OutIn => {
                for (o, w_row) in out_row.iter_mut().zip(w[n0 * k..n1 * k].chunks_exact(k)) {
                    *o += x_row.iter().zip(w_row).map(|(a, b)| a * b.to_f32()).sum::<f32>();
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
    x.iter_mut().for_each(|v| *v = activate(kind, *v));
}

pub(crate) fn activate(kind: Activation, x: f32) -> f32 {
    match kind {
        // sqrt(2/pi), as transformers' NewGELUActivation computes it.
        Activation::GeluNew => 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh()),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::Relu => x.max(0.0),
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
    }
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
pub fn attention(h: &AttentionHead, scores: &mut [f32], out: &mut [f32], out_stride: usize) {
    assert!(
        h.n_queries == 0
            || (h.n_queries - 1)
                .checked_mul(out_stride)
                .and_then(|r| r.checked_add(h.d))
                .is_some_and(|end| out.len() >= end),
        "scalar::attention: out is shorter than its rows"
    );
    // SAFETY: `out` is a live exclusive slice that holds every query's row (checked above).
    unsafe { attention_head(h, scores, out.as_mut_ptr(), out_stride) }
}

/// # Safety
/// `out` must be valid for writes of rows `i * out_stride .. + D` for every query `i`.
pub(crate) unsafe fn attention_head(h: &AttentionHead, scores: &mut [f32], out: *mut f32, out_stride: usize) {
    match (h.keys, h.values) {
        // SAFETY: the contract above is `attend`'s.
        (KvData::F32(k), KvData::F32(v)) => unsafe { attend(h, k, v, scores, out, out_stride) },
        // SAFETY: as above.
        (KvData::F16(k), KvData::F16(v)) => unsafe { attend(h, k, v, scores, out, out_stride) },
        _ => unreachable!("keys and values of one type, f32 or f16 (checked by Kernels::attention)"),
    }
}

/// # Safety
/// `out` must be valid for writes of rows `i * stride .. + D` for every query `i`.
unsafe fn attend<E: Elem>(
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
            let key = &keys[h.row(j)..][..d];
            *s = q.iter().zip(key).map(|(a, b)| a * b.to_f32()).sum::<f32>() * h.scale;
        }
        h.add_key_bias(visible, start);
        softmax(visible);
        h.finish_probs(row, start, pos);
        let visible = &row[start..=pos];
        // SAFETY: row i of the output, D floats, as the caller vouched.
        let o = unsafe { std::slice::from_raw_parts_mut(out.add(i * stride), d) };
        o.fill(0.0);
        for (&p, j) in visible.iter().zip(start..=pos) {
            for (ov, vv) in o.iter_mut().zip(&values[h.row(j)..][..d]) {
                *ov += p * vv.to_f32();
            }
        }
    }
}

/// Sum of all elements (the memory-bandwidth probe's reference).
pub fn sum(x: &[f32]) -> f32 {
    x.iter().sum()
}
