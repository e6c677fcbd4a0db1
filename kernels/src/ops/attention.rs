//! Attention of one head's new queries over its cached keys and values (f32 or f16).

use super::attention_tiles::{attend_tiles, worth_tiles};
use super::vector::{axpy, dot, softmax};
use crate::attention_args::AttentionHead;
use crate::attention_args::KvData;
use crate::elem::Elem;
use crate::simd::Simd;

/// # Safety
/// The CPU supports `S`; the head's keys and values hold its `slots × D` elements (checked by
/// `Kernels::attention`); `out` is valid for writing D floats at `i · out_stride` for every
/// query `i`.
#[inline(always)]
pub(crate) unsafe fn attention_head<S: Simd, const MR: usize, const NV: usize>(
    h: &AttentionHead,
    scores: &mut [f32],
    out: *mut f32,
    out_stride: usize,
) {
    // SAFETY: the contract above is `attend`'s.
    unsafe {
        match (h.keys, h.values) {
            (KvData::F32(k), KvData::F32(v)) => attend::<S, f32, MR, NV>(h, k, v, scores, out, out_stride),
            (KvData::F16(k), KvData::F16(v)) => attend::<S, half::f16, MR, NV>(h, k, v, scores, out, out_stride),
            _ => unreachable!("keys and values of one type, f32 or f16 (checked by Kernels::attention)"),
        }
    }
}

/// A block of queries or more (a prompt) goes in tiles of the GEMM's `MR × NV` micro-kernel.
/// Fewer: head sizes of 1, 2, 4 or 8 vectors (GPT-2's and GPT-Neo's 64 and 128 on every ISA but
/// NEON's 128) keep the query and the output row in registers; others take the general loop.
///
/// # Safety
/// The CPU supports `S`; the head's keys and values hold its `slots × D` elements (checked by
/// `Kernels::attention`); `out` is valid for writing D floats at `i · stride` for every query `i`.
#[inline(always)]
unsafe fn attend<S: Simd, E: Elem, const MR: usize, const NV: usize>(
    h: &AttentionHead,
    keys: &[E],
    values: &[E],
    scores: &mut [f32],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: the contract above is each path's; `attend_in_registers` gets D = V · LANES.
    unsafe {
        if worth_tiles::<MR>(h.n_queries) {
            return attend_tiles::<S, E, MR, NV>(h, keys, values, scores, out, stride);
        }
        if h.d.is_multiple_of(S::LANES) {
            match h.d / S::LANES {
                1 => return attend_in_registers::<S, E, 1>(h, keys, values, scores, out, stride),
                2 => return attend_in_registers::<S, E, 2>(h, keys, values, scores, out, stride),
                4 => return attend_in_registers::<S, E, 4>(h, keys, values, scores, out, stride),
                8 => return attend_in_registers::<S, E, 8>(h, keys, values, scores, out, stride),
                _ => {}
            }
        }
        attend_any::<S, E>(h, keys, values, scores, out, stride)
    }
}

/// [`attend_any`] for D = V vectors. Scores: the query stays in registers and each key row
/// is prefetched a few rows ahead. Output: two sets of V accumulators (even and odd
/// positions) stay in registers across all positions, where [`axpy`] would load and store the
/// output row once per position (a store-to-load chain per key).
///
/// # Safety
/// The CPU supports `S`; the head's keys and values hold its `slots × D` elements (checked by
/// `Kernels::attention`); `out` is valid for writing D floats at `i · stride` for every query `i`.
/// D is `V · LANES`.
#[inline(always)]
unsafe fn attend_in_registers<S: Simd, E: Elem, const V: usize>(
    h: &AttentionHead,
    keys: &[E],
    values: &[E],
    scores: &mut [f32],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: the contract above: the query and output rows are D = V · LANES floats, read and
    // written V vectors at a time; a key or value row `h.row(j)` lies inside the head's `slots × D`
    // elements; prefetches never fault.
    unsafe {
        const AHEAD: usize = 4;
        let d = h.d;
        let (pk, pv) = (keys.as_ptr(), values.as_ptr());
        for i in 0..h.n_queries {
            let pq = h.q[i * h.q_stride..][..d].as_ptr();
            let q: [S; V] = std::array::from_fn(|v| S::load(pq.add(v * S::LANES)));
            let (visible, start) = probabilities::<S>(h, scores, i, |j| {
                let next = pk.wrapping_add(h.row(j + AHEAD));
                for line in 0..(d * std::mem::size_of::<E>()).div_ceil(64) {
                    S::prefetch(next.cast::<u8>().wrapping_add(64 * line));
                }
                let k = pk.add(h.row(j));
                let mut acc = S::zero();
                for (v, qv) in q.iter().enumerate() {
                    acc = E::load::<S>(k.add(v * S::LANES)).mul_add(*qv, acc);
                }
                acc.hsum()
            });
            let (mut even, mut odd) = ([S::zero(); V], [S::zero(); V]);
            let mut pairs = visible.chunks_exact(2);
            let mut j = start;
            for pair in &mut pairs {
                let (v0, v1) = (pv.add(h.row(j)), pv.add(h.row(j + 1)));
                let (p0, p1) = (S::splat(pair[0]), S::splat(pair[1]));
                for v in 0..V {
                    even[v] = E::load::<S>(v0.add(v * S::LANES)).mul_add(p0, even[v]);
                    odd[v] = E::load::<S>(v1.add(v * S::LANES)).mul_add(p1, odd[v]);
                }
                j += 2;
            }
            if let [p] = pairs.remainder() {
                let (v0, p0) = (pv.add(h.row(j)), S::splat(*p));
                for (v, e) in even.iter_mut().enumerate() {
                    *e = E::load::<S>(v0.add(v * S::LANES)).mul_add(p0, *e);
                }
            }
            let o = out.add(i * stride);
            for v in 0..V {
                even[v].add(odd[v]).store(o.add(v * S::LANES));
            }
        }
    }
}

/// Query `i`'s probabilities over the positions it sees, and the first of them: `dot(j)` (query ·
/// key j) scaled, the key bias added, softmax, then the head's scale (and a copy kept if asked).
///
/// # Safety
/// The CPU supports `S`.
#[inline(always)]
unsafe fn probabilities<'s, S: Simd>(
    h: &AttentionHead,
    scores: &'s mut [f32],
    i: usize,
    mut dot: impl FnMut(usize) -> f32,
) -> (&'s [f32], usize) {
    // SAFETY: the CPU supports `S` (the contract above); the rows are slices.
    unsafe {
        let (row, start, pos) = h.scores_row(scores, i);
        let visible = &mut row[start..=pos];
        for (s, j) in visible.iter_mut().zip(start..=pos) {
            *s = dot(j) * h.scale;
        }
        h.add_key_bias(visible, start);
        softmax::<S>(visible);
        h.finish_probs(row, start, pos);
        (&row[start..=pos], start)
    }
}

/// Any head size: a dot product per visible position, softmax, then the probabilities times
/// the values.
///
/// # Safety
/// The CPU supports `S`; the head's keys and values hold its `slots × D` elements (checked by
/// `Kernels::attention`); `out` is valid for writing D floats at `i · stride` for every query `i`.
#[inline(always)]
unsafe fn attend_any<S: Simd, E: Elem>(
    h: &AttentionHead,
    keys: &[E],
    values: &[E],
    scores: &mut [f32],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: the contract above: query i's output row is the D floats at `i · stride`.
    unsafe {
        let d = h.d;
        for i in 0..h.n_queries {
            let q = &h.q[i * h.q_stride..][..d];
            let (visible, start) = probabilities::<S>(h, scores, i, |j| dot::<S, E>(q, &keys[h.row(j)..][..d]));
            // SAFETY: row i of the output, D floats, as the caller vouched.
            let o = std::slice::from_raw_parts_mut(out.add(i * stride), d);
            o.fill(0.0);
            for (&p, j) in visible.iter().zip(start..) {
                axpy::<S, E>(p, &values[h.row(j)..][..d], o);
            }
        }
    }
}
