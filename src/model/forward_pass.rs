//! The forward pass of the pre-LN transformer over one chunk of a sequence: embeddings, every
//! layer's attention and MLP blocks, the final LayerNorm and the lm_head. GPT-2 and GPT-Neo
//! differ only in the data it reads (`ModelConfig::layers`, the weights' layout).
//!
//! Shapes: `M` rows of the chunk (at most [`CHUNK`]), `C = n_embd`, `H` heads of `D`, `T`
//! positions held by a layer's KV cache, `V` the vocabulary.

use quill_kernels::{AttentionExtras, AttentionLayer, Layout, Weight};

use super::Model;
use crate::config::{AttentionKind, ModelConfig};
use crate::kv_cache::KvArena;

/// Prompt tokens processed together as one matrix–matrix pass; longer prompts go in chunks.
pub(super) const CHUNK: usize = 128;

/// KV slots per head of each layer for a context of `ctx` positions: all of them for a global
/// layer; for a local one a ring that holds what a chunk's queries can see, the `window - 1`
/// positions before the chunk and the chunk itself.
pub(super) fn layer_slots(cfg: &ModelConfig, ctx: usize) -> Vec<usize> {
    cfg.layers
        .iter()
        .map(|spec| match spec.attention {
            AttentionKind::Global => ctx,
            AttentionKind::Local { window } => ctx.min(window + CHUNK - 1),
        })
        .collect()
}

/// Activation buffers for up to `CHUNK` rows (`M`), `C = n_embd`.
pub(super) struct RunState {
    /// Residual stream `[M, C]`.
    pub(super) x: Vec<f32>,
    /// LayerNorm output and projection output `[M, C]`.
    pub(super) h: Vec<f32>,
    /// q, k and v of `M` rows, `[M, 3C]` (fused) or three `[M, C]` blocks (see `Qkv::forward`).
    pub(super) qkv: Vec<f32>,
    /// Attention output, heads side by side `[M, C]`.
    pub(super) att: Vec<f32>,
    /// MLP hidden `[M, n_inner]`.
    pub(super) fc: Vec<f32>,
    /// Attention scores of one query per head `[H, T]`.
    pub(super) scores: Vec<f32>,
    /// One embedding row (a position's or a token type's), widened `[C]`.
    pub(super) embed_row: Vec<f32>,
    /// Logits of the last position `[V]`.
    pub(super) logits: Vec<f32>,
}

impl RunState {
    /// Buffers for chunks of up to [`CHUNK`] rows of `cfg` over a context of `ctx` positions.
    pub(super) fn new(cfg: &ModelConfig, ctx: usize) -> RunState {
        let c = cfg.n_embd;
        RunState {
            x: vec![0.0; CHUNK * c],
            h: vec![0.0; CHUNK * c],
            qkv: vec![0.0; CHUNK * 3 * c],
            att: vec![0.0; CHUNK * c],
            fc: vec![0.0; CHUNK * cfg.n_inner],
            scores: vec![0.0; cfg.n_head * ctx],
            embed_row: vec![0.0; c],
            logits: vec![0.0; cfg.vocab_size],
        }
    }
}

/// Which positions' logits a chunk computes.
pub(super) enum LogitsOut<'a> {
    /// Only the last position's, into the session's own buffer.
    Last,
    /// Every position's, `[M, V]`.
    All(&'a mut [f32]),
    /// None (the base model: hidden states only).
    None,
}

/// Runs one chunk of at most CHUNK tokens (ids or embeddings) through every layer at positions
/// `kv.len()..kv.len() + M`, appending their keys and values to `kv`, with what the full forward
/// API adds in `extras` (nothing for plain feeding).
pub(super) fn run_chunk(
    model: &Model,
    kv: &mut KvArena,
    s: &mut RunState,
    input: ChunkInput,
    logits: LogitsOut,
    extras: &mut ChunkExtras,
) {
    let (cfg, w, k) = (&model.config, &model.weights, model.kernels);
    let (m, c, pos0) = (input.len(cfg.n_embd), cfg.n_embd, kv.len());
    let d = cfg.head_dim();
    let x = &mut s.x[..m * c];
    let h = &mut s.h[..m * c];
    let qkv = &mut s.qkv[..m * 3 * c];
    let att = &mut s.att[..m * c];
    let fc = &mut s.fc[..m * cfg.n_inner];

    // Token (or given) embeddings, plus position embeddings, plus token-type embeddings
    // (transformers looks token types up in wte too).
    for (i, row) in x.chunks_exact_mut(c).enumerate() {
        match input {
            ChunkInput::Ids(ids) => w.wte.row_to_f32(ids[i] as usize, row),
            ChunkInput::Embeds(e) => row.copy_from_slice(&e[i * c..][..c]),
        }
        let pos = extras.positions.map_or(pos0 + i, |p| p[i] as usize);
        w.wpe.row_to_f32(pos, &mut s.embed_row);
        add_assign(row, &s.embed_row);
        if let Some(types) = extras.token_types {
            w.wte.row_to_f32(types[i] as usize, &mut s.embed_row);
            add_assign(row, &s.embed_row);
        }
    }
    if let Some(record) = extras.record.as_mut() {
        record(Recorded::Hidden { layer: 0, rows: x });
    }

    let keep_probs = extras.record.is_some() && extras.keep_probs;
    for (l, (lw, spec)) in w.layers.iter().zip(&cfg.layers).enumerate() {
        // Attention block: x += attn_out(attention(ln_1(x))).
        k.layernorm(x, lw.ln_1.gamma.data(), lw.ln_1.beta.data(), cfg.layer_norm_epsilon, h);
        let rows = lw.qkv.forward(k, h, qkv);
        kv.store(l, &qkv[rows.k..], &qkv[rows.v..], rows.stride, m);
        let (keys, values) = kv.layer(l);
        let slots = kv.slots(l);
        let layer = AttentionLayer {
            q: &qkv[rows.q..],
            q_stride: rows.stride,
            keys,
            values,
            head_stride: slots * d,
            slots,
            n_head: cfg.n_head,
            d,
            n_queries: m,
            first_pos: pos0,
            scale: spec.score_scale,
            window: match spec.attention {
                AttentionKind::Global => None,
                AttentionKind::Local { window } => Some(window),
            },
            extras: AttentionExtras {
                key_bias: extras.key_bias,
                head_scale: extras.head_mask.map(|hm| &hm[l * cfg.n_head..][..cfg.n_head]),
                keep_probs,
            },
        };
        let scores = match extras.probs.as_deref_mut() {
            Some(p) if keep_probs => p,
            _ => &mut s.scores[..],
        };
        k.attention(&layer, scores, att, c);
        if keep_probs {
            let t = pos0 + m;
            if let (Some(record), Some(p)) = (extras.record.as_mut(), extras.probs.as_deref()) {
                record(Recorded::Attention { layer: l, probs: &p[..cfg.n_head * m * t], t });
            }
        }
        lw.attn_out.forward(k, att, h);
        add_assign(x, h);

        // MLP block: x += proj(act(fc(ln_2(x)))).
        k.layernorm(x, lw.ln_2.gamma.data(), lw.ln_2.beta.data(), cfg.layer_norm_epsilon, h);
        lw.fc.forward(k, h, fc);
        k.activation(cfg.activation, fc);
        lw.proj.forward(k, fc, h);
        add_assign(x, h);
        // transformers returns the last layer's output after ln_f, recorded below.
        if l + 1 < cfg.n_layer {
            if let Some(record) = extras.record.as_mut() {
                record(Recorded::Hidden { layer: l + 1, rows: x });
            }
        }
    }
    kv.advance(m);

    // Final LayerNorm and the lm_head `(V, C)`, for the rows whose logits are wanted.
    let rows = match (&logits, extras.record.is_some()) {
        (LogitsOut::All(_), _) | (_, true) => 0..m,
        (LogitsOut::Last, false) => (m - 1)..m,
        (LogitsOut::None, false) => return,
    };
    let h = &mut h[rows.start * c..rows.end * c];
    k.layernorm(&x[rows.start * c..rows.end * c], w.ln_f.gamma.data(), w.ln_f.beta.data(), cfg.layer_norm_epsilon, h);
    if let Some(record) = extras.record.as_mut() {
        record(Recorded::Hidden { layer: cfg.n_layer, rows: h });
    }
    let head = Weight { data: w.lm_head().data(), k: c, n: cfg.vocab_size, layout: Layout::OutIn };
    match logits {
        LogitsOut::Last => k.matmul(&h[(h.len() - c)..], head, None, &mut s.logits),
        LogitsOut::All(out) => k.matmul(h, head, None, out),
        LogitsOut::None => {}
    }
}

/// The tokens of one chunk: ids, or (for `inputs_embeds`) their embeddings `[M, C]`.
#[derive(Clone, Copy)]
pub(super) enum ChunkInput<'a> {
    Ids(&'a [u32]),
    Embeds(&'a [f32]),
}

impl ChunkInput<'_> {
    fn len(&self, c: usize) -> usize {
        match self {
            ChunkInput::Ids(ids) => ids.len(),
            ChunkInput::Embeds(e) => e.len() / c,
        }
    }
}

/// What a chunk reports to [`ChunkExtras::record`].
pub(super) enum Recorded<'a> {
    /// Hidden states `[M, C]` entering layer `layer` (`n_layer`: the output, after ln_f).
    Hidden { layer: usize, rows: &'a [f32] },
    /// Attention probabilities `[H][M, T]` of `layer`, `T = past + M`.
    Attention { layer: usize, probs: &'a [f32], t: usize },
}

/// The inputs of the full forward API beyond token ids, for one chunk, and where its extra
/// outputs go. Every field empty: plain feeding.
#[derive(Default)]
pub(super) struct ChunkExtras<'a> {
    /// Position ids `[M]` (range-checked by the caller), instead of `len..len+M`.
    pub positions: Option<&'a [u32]>,
    /// Token type ids `[M]`, looked up in wte.
    pub token_types: Option<&'a [u32]>,
    /// Added to the scores of position `j` (0 or `f32::MIN`), `[len + M]`.
    pub key_bias: Option<&'a [f32]>,
    /// Head mask `[L, H]` multiplying the probabilities.
    pub head_mask: Option<&'a [f32]>,
    /// Receives hidden states (and attentions when `keep_probs`); when set, ln_f runs on every row.
    pub record: Option<&'a mut dyn FnMut(Recorded)>,
    /// Record attention probabilities, kept in `probs` (`[H][M, T]` at least).
    pub keep_probs: bool,
    pub probs: Option<&'a mut [f32]>,
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}
