//! Kernel tables per ISA: the generic `ops` instantiated inside `#[target_feature]` functions.
//! A table is only handed out by `dispatch::select` after the CPU was seen to have its features.

use crate::activation::Activation;
use crate::attention_args::AttentionHead;
use crate::weight::Weight;

/// Columns `n0..n1` of `out[M, N] = x · W + bias`, writing through a raw output pointer.
type MatmulCols = unsafe fn(&[f32], Weight, Option<&[f32]>, *mut f32, usize, usize);
type LayerNorm = unsafe fn(&[f32], &[f32], &[f32], f32, &mut [f32]);

/// One implementation of every op. Each entry is `unsafe` to call: it needs its ISA and trusts
/// its arguments' lengths, which the [`Kernels`](crate::Kernels) methods check.
#[derive(Clone, Copy)]
pub(crate) struct Fns {
    pub matmul_cols: MatmulCols,
    pub layernorm: LayerNorm,
    pub activation: unsafe fn(Activation, &mut [f32]),
    pub softmax: unsafe fn(&mut [f32]),
    pub attention_head: unsafe fn(&AttentionHead, &mut [f32], *mut f32, usize),
    pub sum: unsafe fn(&[f32]) -> f32,
}

/// Instantiates every op for one vector type; `$q8` is how a single row meets q8_0 weights;
/// `$mr × $nv` is the GEMM micro-kernel's register block (rows × vectors), sized to the ISA's
/// register file.
macro_rules! isa_table {
    ($name:ident, $features:literal, $simd:ty, $q8:ty, $mr:literal, $nv:literal) => {
        pub(crate) mod $name {
            use super::Fns;
            use crate::activation::Activation;
            use crate::attention_args::AttentionHead;
            use crate::ops;
            use crate::weight::Weight;

            /// # Safety
            /// The CPU has the table's features; otherwise as `ops::matmul::matmul_cols`.
            #[target_feature(enable = $features)]
            unsafe fn matmul_cols(x: &[f32], w: Weight, bias: Option<&[f32]>, out: *mut f32, n0: usize, n1: usize) {
                // SAFETY: this function has the table's features (the CPU has them, by the contract
                // above), which are `$simd`'s; the rest of the contract is the caller's.
                unsafe { ops::matmul::matmul_cols::<$simd, $q8, $mr, $nv>(x, w, bias, out, n0, n1) }
            }

            /// # Safety
            /// The CPU has the table's features; otherwise as `ops::vector::layernorm`.
            #[target_feature(enable = $features)]
            unsafe fn layernorm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
                // SAFETY: this function has the table's features (the CPU has them, by the contract
                // above), which are `$simd`'s; the rest of the contract is the caller's.
                unsafe { ops::vector::layernorm::<$simd>(x, gamma, beta, eps, out) }
            }

            /// # Safety
            /// The CPU has the table's features; otherwise as `ops::vector::activation`.
            #[target_feature(enable = $features)]
            unsafe fn activation(kind: Activation, x: &mut [f32]) {
                // SAFETY: this function has the table's features (the CPU has them, by the contract
                // above), which are `$simd`'s; the rest of the contract is the caller's.
                unsafe { ops::vector::activation::<$simd>(kind, x) }
            }

            /// # Safety
            /// The CPU has the table's features; otherwise as `ops::vector::softmax`.
            #[target_feature(enable = $features)]
            unsafe fn softmax(x: &mut [f32]) {
                // SAFETY: this function has the table's features (the CPU has them, by the contract
                // above), which are `$simd`'s; the rest of the contract is the caller's.
                unsafe { ops::vector::softmax::<$simd>(x) }
            }

            /// # Safety
            /// The CPU has the table's features; otherwise as `ops::attention::attention_head`.
            #[target_feature(enable = $features)]
            unsafe fn attention_head(h: &AttentionHead, scores: &mut [f32], out: *mut f32, out_stride: usize) {
                // SAFETY: this function has the table's features (the CPU has them, by the contract
                // above), which are `$simd`'s; the rest of the contract is the caller's.
                unsafe { ops::attention::attention_head::<$simd, $mr, $nv>(h, scores, out, out_stride) }
            }

            /// # Safety
            /// The CPU has the table's features; otherwise as `ops::vector::sum`.
            #[target_feature(enable = $features)]
            unsafe fn sum(x: &[f32]) -> f32 {
                // SAFETY: this function has the table's features (the CPU has them, by the contract
                // above), which are `$simd`'s; the rest of the contract is the caller's.
                unsafe { ops::vector::sum::<$simd>(x) }
            }

            pub(crate) const FNS: Fns = Fns { matmul_cols, layernorm, activation, softmax, attention_head, sum };
        }
    };
}

#[cfg(target_arch = "x86_64")]
isa_table!(avx2, "avx2,fma,f16c", crate::simd::x86::Avx2, ops::matmul::WidenWeights, 6, 2);
// The same kernels, but a q8_0 GEMV on integer dots (the row quantized per block).
#[cfg(target_arch = "x86_64")]
isa_table!(avx2dot, "avx2,fma,f16c", crate::simd::x86::Avx2, ops::q8_avx2::MaddubsDots, 6, 2);
#[cfg(target_arch = "x86_64")]
isa_table!(avx512, "avx512f,avx512bw,avx2,fma,f16c", crate::simd::x86::Avx512, ops::matmul::WidenWeights, 8, 2);
// The same kernels, but a q8_0 GEMV on integer dots (activations quantized per block).
#[cfg(target_arch = "x86_64")]
isa_table!(
    avx512vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    crate::simd::x86::Avx512,
    ops::q8_vnni::VnniDots,
    8,
    2
);
#[cfg(target_arch = "aarch64")]
isa_table!(neon, "neon", crate::simd::neon::Neon, ops::matmul::WidenWeights, 6, 4);
// The same kernels, but q8_0 matmuls on integer dots (`sdot`, activations quantized per block).
#[cfg(target_arch = "aarch64")]
isa_table!(neondot, "neon,dotprod", crate::simd::neon::Neon, ops::q8_sdot::SdotDots, 6, 4);

/// The scalar reference, behind the same table shape (its safe functions stand in for `unsafe`
/// ones).
pub(crate) mod scalar {
    use super::Fns;
    use crate::scalar;

    pub(crate) const FNS: Fns = Fns {
        matmul_cols: scalar::matmul_cols,
        layernorm: scalar::layernorm,
        activation: scalar::activation,
        softmax: scalar::softmax,
        attention_head: scalar::attention_head,
        sum: scalar::sum,
    };
}
