//! `quill-kernels`: every numeric hot loop of Quill.
//!
//! Shape legend used throughout the crate:
//! - `M` rows of activations (tokens processed together),
//! - `K` input features of a matmul, `N` output features,
//! - `H` attention heads, `T` positions held in the KV cache for one head, `D` the head dimension.
//!
//! Each op has a scalar reference in [`scalar`], the readable twin and test oracle of the SIMD
//! variants. The SIMD variants are written once in `ops`, generic over a small vector trait
//! (`simd`), and instantiated per ISA in `isa`. One [`Kernels`] table is chosen per process
//! ([`kernels`]) by runtime CPU detection or `QUILL_KERNELS`; callers only go through its safe
//! methods, which check every length and split large ops across the threads of the current
//! rayon pool (run on a spinning team of that size, kernels/src/team.rs).

mod dispatch;
mod elem;
mod isa;
mod ops;
pub mod scalar;
mod simd;
mod team;

pub use dispatch::{cpu_features, init, kernels, physical_cores, select, Kernels, Level, LevelError};
pub use half::f16;

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

impl Activation {
    /// The `activation_function` name transformers uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Activation::GeluNew => "gelu_new",
            Activation::Gelu => "gelu",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
            Activation::Tanh => "tanh",
        }
    }
}

/// How a weight matrix of `K` inputs and `N` outputs is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `(K, N)` row-major, as GPT-2's `Conv1D` stores it.
    InOut,
    /// `(N, K)` row-major, as `nn.Linear` (and the tied embedding used as lm_head) stores it.
    OutIn,
}

/// Weights per q8_0 block: one scale for each run of this many int8 values along K.
pub const Q8_BLOCK: usize = 32;

/// Weight elements as stored in the checkpoint; read in place by the kernels.
#[derive(Clone, Copy, Debug)]
pub enum WeightData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// q8_0: `q[i]` times the f16 scale of its block of [`Q8_BLOCK`] (`scales[i / 32]`); stored
    /// `(N, K)` with K a multiple of 32, so each block runs along one output's inputs.
    Q8_0 {
        q: &'a [i8],
        scales: &'a [f16],
    },
}

impl<'a> WeightData<'a> {
    pub fn len(&self) -> usize {
        match self {
            WeightData::F32(d) => d.len(),
            WeightData::F16(d) => d.len(),
            WeightData::Q8_0 { q, .. } => q.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `range` (in storage order); for q8_0 the range must be whole blocks.
    pub fn slice(&self, range: std::ops::Range<usize>) -> WeightData<'a> {
        match *self {
            WeightData::F32(d) => WeightData::F32(&d[range]),
            WeightData::F16(d) => WeightData::F16(&d[range]),
            WeightData::Q8_0 { q, scales } => {
                assert!(
                    range.start.is_multiple_of(Q8_BLOCK) && range.end.is_multiple_of(Q8_BLOCK),
                    "q8_0 slice {range:?} splits a block"
                );
                let blocks = range.start / Q8_BLOCK..range.end / Q8_BLOCK;
                WeightData::Q8_0 { q: &q[range], scales: &scales[blocks] }
            }
        }
    }

    /// Element `i`, widened to f32 (dequantized for q8_0).
    pub fn get(&self, i: usize) -> f32 {
        match *self {
            WeightData::F32(d) => d[i],
            WeightData::F16(d) => d[i].to_f32(),
            WeightData::Q8_0 { q, scales } => q[i] as f32 * scales[i / Q8_BLOCK].to_f32(),
        }
    }
}

/// Quantizes `x` (a whole number of [`Q8_BLOCK`] runs) to q8_0: for each block the scale is
/// `max |x| / 127` rounded to f16, and each value is `round(x / scale)` with that rounded scale,
/// so dequantizing gives the nearest multiple of the stored scale.
pub fn quantize_q8_0(x: &[f32], q: &mut [i8], scales: &mut [f16]) {
    assert!(
        x.len().is_multiple_of(Q8_BLOCK) && q.len() == x.len() && scales.len() == x.len() / Q8_BLOCK,
        "quantize_q8_0: lengths"
    );
    for ((block, qb), scale) in x.chunks_exact(Q8_BLOCK).zip(q.chunks_exact_mut(Q8_BLOCK)).zip(scales) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32(amax / 127.0);
        let inv = if d.to_f32() > 0.0 { 1.0 / d.to_f32() } else { 0.0 };
        for (o, &v) in qb.iter_mut().zip(block) {
            *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
        }
        *scale = d;
    }
}

/// A borrowed weight matrix with `k` inputs and `n` outputs.
#[derive(Clone, Copy, Debug)]
pub struct Weight<'a> {
    pub data: WeightData<'a>,
    pub k: usize,
    pub n: usize,
    pub layout: Layout,
}

/// Attention of one layer: every head's new queries over that head's cached keys and values.
///
/// Query `i` sits at position `first_pos + i` and sees cached positions `j` with `j <= first_pos + i`
/// and, when `window` is set, `first_pos + i - j < window`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionLayer<'a> {
    /// Queries: head `h`'s query `i` is `q[i * q_stride + h * d ..][..d]`.
    pub q: &'a [f32],
    pub q_stride: usize,
    /// Keys `[H][slots, D]`, f32 or f16: head `h`'s block starts at `h * head_stride`; position
    /// `j` is in slot `j % slots`, so a block of fewer slots than positions is a ring (local
    /// attention).
    pub keys: WeightData<'a>,
    /// Values, laid out (and typed) as `keys`.
    pub values: WeightData<'a>,
    pub head_stride: usize,
    pub slots: usize,
    pub n_head: usize,
    pub d: usize,
    pub n_queries: usize,
    pub first_pos: usize,
    /// Multiplies every score before the softmax (1/sqrt(D) for GPT-2, 1 for GPT-Neo).
    pub scale: f32,
    pub window: Option<usize>,
    /// What the full forward API adds (masks, kept probabilities); default: nothing.
    pub extras: AttentionExtras<'a>,
}

/// The inputs of transformers' forward pass that change attention, and whether to keep the
/// probabilities. All off by default, and then free.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionExtras<'a> {
    /// Added to every scaled score of position `j` (`key_bias[j]`, at least `T` entries):
    /// 0 for a key to attend to, `f32::MIN` for a masked one, as transformers' eager attention
    /// adds `(1 - mask) · finfo.min`. A query whose visible keys are all masked gets a uniform
    /// distribution over them, not NaN.
    pub key_bias: Option<&'a [f32]>,
    /// Multiplies head `h`'s probabilities after the softmax (`head_mask`, at least `H` entries).
    pub head_scale: Option<&'a [f32]>,
    /// Leave every query's probabilities in the scores scratch, which then holds `[H][M, T]`
    /// (zero where a position is not visible) instead of one reused row per head.
    pub keep_probs: bool,
}

/// One head of an [`AttentionLayer`], as the per-head kernels see it.
#[derive(Clone, Copy, Debug)]
pub struct AttentionHead<'a> {
    /// Query `i` at `q[i * q_stride ..][..d]`.
    pub q: &'a [f32],
    pub q_stride: usize,
    /// Keys `[slots, D]`; position `j` in slot `j % slots`.
    pub keys: WeightData<'a>,
    /// Values `[slots, D]`, as the keys.
    pub values: WeightData<'a>,
    pub slots: usize,
    pub d: usize,
    pub n_queries: usize,
    pub first_pos: usize,
    pub scale: f32,
    pub window: Option<usize>,
    /// Added to the score of position `j`, as [`AttentionExtras::key_bias`].
    pub key_bias: Option<&'a [f32]>,
    /// Multiplies the probabilities after the softmax (1 = unmasked head).
    pub prob_scale: f32,
    /// Keep query `i`'s probabilities in scores row `i` (`T` floats per row) instead of reusing
    /// row 0.
    pub keep_probs: bool,
}

impl<'a> AttentionHead<'a> {
    /// Positions in view of the last query, `T`: the length of a row of scores.
    #[inline(always)]
    pub fn positions(&self) -> usize {
        self.first_pos + self.n_queries
    }

    /// The scores row of query `i` and the range of positions it sees, `start..=pos`.
    #[inline(always)]
    pub fn scores_row<'s>(&self, scores: &'s mut [f32], i: usize) -> (&'s mut [f32], usize, usize) {
        let t = self.positions();
        let row = if self.keep_probs { &mut scores[i * t..][..t] } else { &mut scores[..t] };
        (row, self.first_visible(i), self.first_pos + i)
    }

    /// Adds the key bias (attention mask) to the scores of positions `start..`, if there is one.
    #[inline(always)]
    pub fn add_key_bias(&self, visible: &mut [f32], start: usize) {
        if let Some(b) = self.key_bias {
            visible.iter_mut().zip(&b[start..]).for_each(|(s, b)| *s += b);
        }
    }

    /// After the softmax of `row[start..=pos]`: the head mask, and zeros around a kept row.
    #[inline(always)]
    pub fn finish_probs(&self, row: &mut [f32], start: usize, pos: usize) {
        if self.prob_scale != 1.0 {
            row[start..=pos].iter_mut().for_each(|p| *p *= self.prob_scale);
        }
        if self.keep_probs {
            row[..start].fill(0.0);
            row[pos + 1..].fill(0.0);
        }
    }

    /// Offset of position `j`'s key (and value) row in the head's block.
    #[inline(always)]
    pub fn row(&self, j: usize) -> usize {
        (if j < self.slots { j } else { j % self.slots }) * self.d
    }

    /// The first position query `i` sees.
    #[inline(always)]
    pub fn first_visible(&self, i: usize) -> usize {
        self.window.map_or(0, |w| (self.first_pos + i + 1).saturating_sub(w))
    }
}

impl<'a> AttentionLayer<'a> {
    /// The view of head `h`.
    pub fn head(&self, h: usize) -> AttentionHead<'a> {
        let size = self.slots * self.d;
        AttentionHead {
            q: &self.q[h * self.d..],
            q_stride: self.q_stride,
            keys: self.keys.slice(h * self.head_stride..h * self.head_stride + size),
            values: self.values.slice(h * self.head_stride..h * self.head_stride + size),
            slots: self.slots,
            d: self.d,
            n_queries: self.n_queries,
            first_pos: self.first_pos,
            scale: self.scale,
            window: self.window,
            key_bias: self.extras.key_bias,
            prob_scale: self.extras.head_scale.map_or(1.0, |s| s[h]),
            keep_probs: self.extras.keep_probs,
        }
    }
}
