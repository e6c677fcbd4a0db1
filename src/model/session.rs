//! The forward pass: one session = one sequence, its KV arena and every activation buffer,
//! all allocated once in [`Session::new`]. After that, feeding tokens allocates nothing.

use quill_kernels::{AttentionExtras, AttentionLayer, Layout, Weight};

use super::Model;
use crate::config::{AttentionKind, ModelConfig};
use crate::error::{Error, Result};
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
struct RunState {
    /// Residual stream `[M, C]`.
    x: Vec<f32>,
    /// LayerNorm output and projection output `[M, C]`.
    h: Vec<f32>,
    /// q, k and v of `M` rows, `[M, 3C]` (fused) or three `[M, C]` blocks (see `Qkv::forward`).
    qkv: Vec<f32>,
    /// Attention output, heads side by side `[M, C]`.
    att: Vec<f32>,
    /// MLP hidden `[M, n_inner]`.
    fc: Vec<f32>,
    /// Attention scores of one query per head `[H, T]`.
    scores: Vec<f32>,
    /// One position embedding, widened `[C]`.
    pos_row: Vec<f32>,
    /// Logits of the last position `[V]`.
    logits: Vec<f32>,
}

pub struct Session<'m> {
    model: &'m Model,
    kv: KvArena,
    state: RunState,
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

impl<'m> Session<'m> {
    pub(super) fn new(model: &'m Model, ctx: Option<usize>) -> Result<Session<'m>> {
        let cfg = &model.config;
        let ctx = ctx.unwrap_or(cfg.n_positions);
        if ctx == 0 || ctx > cfg.n_positions {
            return Err(Error::usage(format!(
                "--ctx {ctx} is out of range: this model has 1 to {} positions (n_positions)",
                cfg.n_positions
            )));
        }
        let c = cfg.n_embd;
        let state = RunState {
            x: vec![0.0; CHUNK * c],
            h: vec![0.0; CHUNK * c],
            qkv: vec![0.0; CHUNK * 3 * c],
            att: vec![0.0; CHUNK * c],
            fc: vec![0.0; CHUNK * cfg.n_inner],
            scores: vec![0.0; cfg.n_head * ctx],
            pos_row: vec![0.0; c],
            logits: vec![0.0; cfg.vocab_size],
        };
        let slots = layer_slots(cfg, ctx);
        let kv_bytes = KvArena::bytes_for(&slots, cfg.n_head, cfg.head_dim(), ctx, model.kv_type());
        crate::kv_cache::check_fits(kv_bytes, ctx, crate::kv_cache::available_memory())?;
        let kv = KvArena::new(&slots, cfg.n_head, cfg.head_dim(), ctx, model.kv_type());
        Ok(Session { model, kv, state })
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.kv.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    /// Positions the session can hold.
    pub fn capacity(&self) -> usize {
        self.kv.capacity()
    }

    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// The logits `[V]` after the last token fed (by `feed` or a forward asking for the last).
    pub fn last_logits(&self) -> &[f32] {
        &self.state.logits
    }

    /// Forgets every position from `len` on (a no-op when the sequence is not longer), as long
    /// as every local-attention ring still holds what the next token sees: true if it could.
    pub(super) fn truncate(&mut self, len: usize) -> bool {
        let cur = self.kv.len();
        if len >= cur {
            return true;
        }
        // A ring keeps the last `slots` positions; the next query after `len` needs the
        // `slots - CHUNK` (= window - 1) positions before it.
        let ok = (0..self.model.config.n_layer).all(|l| {
            let slots = self.kv.slots(l);
            slots >= self.kv.capacity() || cur - len <= CHUNK.min(slots)
        });
        if ok {
            self.kv.truncate(len);
        }
        ok
    }

    /// Forgets the sequence; buffers are kept.
    pub fn reset(&mut self) {
        self.kv.clear();
    }

    /// Makes this session hold `other`'s sequence: copies its KV cache (the filled positions
    /// only), without allocating. Both must be sessions of the same model with the same context
    /// size. The logits of the last feed are not copied.
    pub fn copy_from(&mut self, other: &Session<'_>) {
        assert!(std::ptr::eq(self.model, other.model), "Session::copy_from: sessions of different models");
        self.kv.copy_from(&other.kv);
    }

    /// Appends `ids` to the sequence and returns the logits `[V]` after its last token.
    pub fn feed(&mut self, ids: &[u32]) -> Result<&[f32]> {
        self.check(ids)?;
        let start = self.kv.len();
        for chunk in ids.chunks(CHUNK) {
            self.forward_chunk(chunk, LogitsOut::Last);
        }
        if !self.state.logits.iter().all(|v| v.is_finite()) {
            return Err(self.diagnose_non_finite(ids, start));
        }
        Ok(&self.state.logits)
    }

    /// Why the logits after `ids` (fed from position `start`) are not finite: a weight that is
    /// NaN or infinite (a corrupt checkpoint), else the first layer whose output overflowed,
    /// found by running `ids` again and reading every hidden state. The session is left
    /// holding the positions before `ids`.
    fn diagnose_non_finite(&mut self, ids: &[u32], start: usize) -> Error {
        self.kv.truncate(start);
        let head =
            format!("the model produced non-finite logits (NaN or infinity) after position {}", start + ids.len());
        if let Some(name) = self.model.weights.first_non_finite() {
            return Error::input(format!(
                "{head}: weight '{name}' holds NaN or infinite values (a corrupt checkpoint)"
            ));
        }
        let input = super::ForwardInput {
            input_ids: Some(ids),
            output_hidden_states: true,
            use_cache: false,
            ..Default::default()
        };
        let cause = match self.forward(&input) {
            Ok(out) => match out.hidden_states.iter().position(|h| !h.iter().all(|v| v.is_finite())) {
                Some(0) => "the embeddings are not finite".to_string(),
                Some(l) if l == out.hidden_states.len() - 1 => "the final LayerNorm's output is not finite".to_string(),
                Some(l) => {
                    format!("layer {} is the first whose output is not finite (an activation overflowed f32)", l - 1)
                }
                None => "the lm_head's output overflowed f32".to_string(),
            },
            Err(e) => format!("({e})"),
        };
        self.kv.truncate(start);
        Error::input(format!("{head}: {cause}"))
    }

    /// Appends `ids` and writes the logits of every one of their positions to `out` `[len, V]`.
    pub fn feed_all_logits(&mut self, ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
        self.check(ids)?;
        let v = self.model.config.vocab_size;
        let start = self.kv.len();
        out.clear();
        out.resize(ids.len() * v, 0.0);
        for (chunk, out) in ids.chunks(CHUNK).zip(out.chunks_mut(CHUNK * v)) {
            self.forward_chunk(chunk, LogitsOut::All(out));
        }
        if !out.iter().all(|v| v.is_finite()) {
            return Err(self.diagnose_non_finite(ids, start));
        }
        Ok(())
    }

    fn check(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::input("no tokens to process (empty prompt)"));
        }
        let vocab = self.model.config.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::input(format!(
                "token id {bad} is out of range: the vocabulary has {vocab} tokens (0..{})",
                vocab - 1
            )));
        }
        if self.kv.len() + ids.len() > self.kv.capacity() {
            return Err(Error::input(format!(
                "{} tokens do not fit the context: {} already used of {} positions{}",
                ids.len(),
                self.kv.len(),
                self.kv.capacity(),
                if self.kv.capacity() < self.model.config.n_positions {
                    format!(" (--ctx can raise it up to n_positions = {})", self.model.config.n_positions)
                } else {
                    " (the model's n_positions): shorten the prompt or --max-new-tokens".to_string()
                }
            )));
        }
        Ok(())
    }

    /// Runs `ids` (at most CHUNK) through every layer at positions `len..len+M`.
    fn forward_chunk(&mut self, ids: &[u32], logits: LogitsOut) {
        self.forward_chunk_with(ChunkInput::Ids(ids), logits, &mut ChunkExtras::default());
    }

    /// Runs one chunk of at most CHUNK tokens (ids or embeddings) through every layer, with what
    /// the full forward API adds in `extras` (nothing for plain feeding).
    pub(super) fn forward_chunk_with(&mut self, input: ChunkInput, logits: LogitsOut, extras: &mut ChunkExtras) {
        let model = self.model;
        let (cfg, w, k) = (&model.config, &model.weights, model.kernels);
        let (m, c, pos0) = (input.len(cfg.n_embd), cfg.n_embd, self.kv.len());
        let d = cfg.head_dim();
        let s = &mut self.state;
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
            w.wpe.row_to_f32(pos, &mut s.pos_row);
            add_assign(row, &s.pos_row);
            if let Some(types) = extras.token_types {
                w.wte.row_to_f32(types[i] as usize, &mut s.pos_row);
                add_assign(row, &s.pos_row);
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
            self.kv.store(l, &qkv[rows.k..], &qkv[rows.v..], rows.stride, m);
            let (keys, values) = self.kv.layer(l);
            let slots = self.kv.slots(l);
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
        self.kv.advance(m);

        // Final LayerNorm and the lm_head `(V, C)`, for the rows whose logits are wanted.
        let rows = match (&logits, extras.record.is_some()) {
            (LogitsOut::All(_), _) | (_, true) => 0..m,
            (LogitsOut::Last, false) => (m - 1)..m,
            (LogitsOut::None, false) => return,
        };
        let h = &mut h[rows.start * c..rows.end * c];
        k.layernorm(
            &x[rows.start * c..rows.end * c],
            w.ln_f.gamma.data(),
            w.ln_f.beta.data(),
            cfg.layer_norm_epsilon,
            h,
        );
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
