//! What attention takes: one layer's queries and KV cache ([`AttentionLayer`]), the forward
//! API's extras, and the view of one head the per-head kernels see ([`AttentionHead`]).

use half::f16;

/// Cached keys or values as the KV cache stores them: f32, or f16 (half the bytes per token).
#[derive(Clone, Copy, Debug)]
pub enum KvData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl<'a> KvData<'a> {
    pub fn len(&self) -> usize {
        match self {
            KvData::F32(d) => d.len(),
            KvData::F16(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> KvData<'a> {
        match *self {
            KvData::F32(d) => KvData::F32(&d[range]),
            KvData::F16(d) => KvData::F16(&d[range]),
        }
    }
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
    pub keys: KvData<'a>,
    /// Values, laid out (and typed) as `keys`.
    pub values: KvData<'a>,
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
    pub keys: KvData<'a>,
    /// Values `[slots, D]`, as the keys.
    pub values: KvData<'a>,
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
