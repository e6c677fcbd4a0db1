//! Row-wise kernels: dot, axpy, layernorm, activations, softmax, sum.

use crate::activation::Activation;
use crate::elem::Elem;
use crate::scalar;
use crate::simd::{exp, tanh, Simd};

/// `a · b`, with `b` in f32 or f16.
///
/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(crate) unsafe fn dot<S: Simd, E: Elem>(a: &[f32], b: &[E]) -> f32 {
    // SAFETY: the CPU has `S`'s features (the contract above); the vector loads stop at `full ≤ n`,
    // the shorter slice's length, so they read inside both.
    unsafe {
        let n = a.len().min(b.len());
        let full = n / (2 * S::LANES) * (2 * S::LANES);
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut acc0, mut acc1) = (S::zero(), S::zero());
        let mut i = 0;
        while i < full {
            acc0 = S::load(pa.add(i)).mul_add(E::load::<S>(pb.add(i)), acc0);
            acc1 = S::load(pa.add(i + S::LANES)).mul_add(E::load::<S>(pb.add(i + S::LANES)), acc1);
            i += 2 * S::LANES;
        }
        let mut s = acc0.add(acc1).hsum();
        for j in full..n {
            s += a[j] * b[j].to_f32();
        }
        s
    }
}

/// `y += alpha * x`, with `x` in f32 or f16.
///
/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(crate) unsafe fn axpy<S: Simd, E: Elem>(alpha: f32, x: &[E], y: &mut [f32]) {
    // SAFETY: the CPU has `S`'s features (the contract above); the vector loads and stores stop at
    // `full ≤ n`, the shorter slice's length, so they stay inside both.
    unsafe {
        let n = x.len().min(y.len());
        let full = n / S::LANES * S::LANES;
        let a = S::splat(alpha);
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let mut i = 0;
        while i < full {
            a.mul_add(E::load::<S>(px.add(i)), S::load(py.add(i))).store(py.add(i));
            i += S::LANES;
        }
        for j in full..n {
            y[j] += alpha * x[j].to_f32();
        }
    }
}

/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
unsafe fn sum_vec<S: Simd>(x: &[f32]) -> f32 {
    // SAFETY: the CPU has `S`'s features (the contract above); the loads stop at `full ≤ x.len()`.
    unsafe {
        let full = x.len() / (4 * S::LANES) * (4 * S::LANES);
        let p = x.as_ptr();
        let mut acc = [S::zero(); 4];
        let mut i = 0;
        while i < full {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = a.add(S::load(p.add(i + j * S::LANES)));
            }
            i += 4 * S::LANES;
        }
        let mut s = acc[0].add(acc[1]).add(acc[2].add(acc[3])).hsum();
        for &v in &x[full..] {
            s += v;
        }
        s
    }
}

/// Sum of a long slice read as four concurrent streams (its quarters): one sequential stream
/// leaves a core's memory bandwidth idle, and this is the bandwidth probe of `quill bench`.
///
/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(crate) unsafe fn sum<S: Simd>(x: &[f32]) -> f32 {
    // SAFETY: the CPU has `S`'s features (the contract above); stream q reads
    // `q·quarter .. (q + 1)·quarter`, and `4·quarter ≤ x.len()`.
    unsafe {
        let quarter = x.len() / (4 * S::LANES) * S::LANES;
        let p = x.as_ptr();
        let mut acc = [S::zero(); 4];
        let mut i = 0;
        while i < quarter {
            for (q, a) in acc.iter_mut().enumerate() {
                *a = a.add(S::load(p.add(q * quarter + i)));
            }
            i += S::LANES;
        }
        let mut s = acc[0].add(acc[1]).add(acc[2].add(acc[3])).hsum();
        for &v in &x[4 * quarter..] {
            s += v;
        }
        s
    }
}

/// # Safety
/// The CPU has `S`'s features; `beta` holds at least `gamma.len()` floats.
#[inline(always)]
pub(crate) unsafe fn layernorm<S: Simd>(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    // SAFETY: the CPU has `S`'s features (the contract above); each row and `gamma` hold n floats
    // and `beta` at least n (the contract), and the vector loads and stores stop at `full ≤ n`.
    unsafe {
        let n = gamma.len();
        let full = n / S::LANES * S::LANES;
        for (x_row, out_row) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let mean = sum_vec::<S>(x_row) / n as f32;
            let (px, po, pg, pb) = (x_row.as_ptr(), out_row.as_mut_ptr(), gamma.as_ptr(), beta.as_ptr());
            let m = S::splat(mean);
            let mut acc = S::zero();
            let mut i = 0;
            while i < full {
                let c = S::load(px.add(i)).sub(m);
                acc = c.mul_add(c, acc);
                i += S::LANES;
            }
            let mut var = acc.hsum();
            for &v in &x_row[full..] {
                var += (v - mean) * (v - mean);
            }
            let inv = 1.0 / (var / n as f32 + eps).sqrt();
            let iv = S::splat(inv);
            let mut i = 0;
            while i < full {
                let c = S::load(px.add(i)).sub(m).mul(iv);
                c.mul_add(S::load(pg.add(i)), S::load(pb.add(i))).store(po.add(i));
                i += S::LANES;
            }
            for j in full..n {
                out_row[j] = (x_row[j] - mean) * inv * gamma[j] + beta[j];
            }
        }
    }
}

/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
unsafe fn activate<S: Simd>(kind: Activation, v: S) -> S {
    // SAFETY: the CPU has `S`'s features (the contract above); no memory is touched.
    unsafe {
        match kind {
            Activation::GeluNew => {
                let inner = v.mul(v).mul(v).mul_add(S::splat(0.044715), v).mul(S::splat(0.797_884_6));
                S::splat(0.5).mul(v).mul(S::splat(1.0).add(tanh(inner)))
            }
            Activation::Relu => v.max(S::zero()),
            Activation::Silu => v.div(S::splat(1.0).add(exp(S::zero().sub(v)))),
            Activation::Tanh => tanh(v),
            // No vector erf: handled element by element in `activation`.
            Activation::Gelu => v,
        }
    }
}

/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(crate) unsafe fn activation<S: Simd>(kind: Activation, x: &mut [f32]) {
    // SAFETY: the CPU has `S`'s features (the contract above); the loads and stores stop at
    // `full ≤ x.len()`.
    unsafe {
        if kind == Activation::Gelu {
            return scalar::activation(kind, x);
        }
        let full = x.len() / S::LANES * S::LANES;
        let p = x.as_mut_ptr();
        let mut i = 0;
        while i < full {
            activate(kind, S::load(p.add(i))).store(p.add(i));
            i += S::LANES;
        }
        for v in &mut x[full..] {
            *v = scalar::activate(kind, *v);
        }
    }
}

/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(crate) unsafe fn softmax<S: Simd>(x: &mut [f32]) {
    // SAFETY: the CPU has `S`'s features (the contract above); the loads and stores stop at
    // `full ≤ x.len()`.
    unsafe {
        let n = x.len();
        let full = n / S::LANES * S::LANES;
        let p = x.as_mut_ptr();
        let mut mv = S::splat(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            mv = mv.max(S::load(p.add(i)));
            i += S::LANES;
        }
        let mut max = if full > 0 { mv.hmax() } else { f32::NEG_INFINITY };
        for &v in &x[full..] {
            max = max.max(v);
        }
        let m = S::splat(max);
        let mut acc = S::zero();
        let mut i = 0;
        while i < full {
            let e = exp(S::load(p.add(i)).sub(m));
            e.store(p.add(i));
            acc = acc.add(e);
            i += S::LANES;
        }
        let mut sum = acc.hsum();
        for v in &mut x[full..] {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = S::splat(1.0 / sum);
        let mut i = 0;
        while i < full {
            S::load(p.add(i)).mul(inv).store(p.add(i));
            i += S::LANES;
        }
        for v in &mut x[full..] {
            *v *= 1.0 / sum;
        }
    }
}
