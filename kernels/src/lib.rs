//! `quill-kernels`: every numeric hot loop of Quill.
//!
//! Shape legend used throughout the crate:
//! - `M` rows of activations (tokens processed together),
//! - `K` input features of a matmul, `N` output features,
//! - `T` positions held in the KV cache for one head, `D` the head dimension.
//!
//! Each op has a scalar reference in [`scalar`]; faster variants slot into the [`Kernels`] table,
//! which is chosen once at start-up ([`kernels`]) by runtime CPU detection or `QUILL_KERNELS`.
//! Callers only ever go through the safe methods of [`Kernels`], which check every length.

mod dispatch;
pub mod scalar;

pub use dispatch::{cpu_features, kernels, select, Kernels, Level, LevelError};

/// Element-wise activation of the MLP, by its transformers name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation GPT-2 uses.
    GeluNew,
    /// `gelu`: the exact erf form.
    Gelu,
    Relu,
    /// `silu` / `swish`.
    Silu,
    Tanh,
}

/// How a weight matrix of `K` inputs and `N` outputs is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `(K, N)` row-major, as GPT-2's `Conv1D` stores it.
    InOut,
    /// `(N, K)` row-major, as `nn.Linear` (and the tied embedding used as lm_head) stores it.
    OutIn,
}

/// A borrowed f32 weight matrix with `k` inputs and `n` outputs.
#[derive(Clone, Copy, Debug)]
pub struct WeightF32<'a> {
    pub data: &'a [f32],
    pub k: usize,
    pub n: usize,
    pub layout: Layout,
}

/// One attention head of new queries over the cached keys and values of that head.
///
/// Query `i` sits at position `first_pos + i` and sees cached positions `j` with `j <= first_pos + i`
/// and, when `window` is set, `first_pos + i - j < window`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionHead<'a> {
    /// Queries, row `i` at `q[i * q_stride ..][..d]`.
    pub q: &'a [f32],
    pub q_stride: usize,
    /// Keys `[T, D]`, contiguous.
    pub keys: &'a [f32],
    /// Values `[T, D]`, contiguous.
    pub values: &'a [f32],
    pub d: usize,
    pub n_queries: usize,
    pub first_pos: usize,
    /// Multiplies every score before the softmax (1/sqrt(D) for GPT-2, 1 for GPT-Neo).
    pub scale: f32,
    pub window: Option<usize>,
}
