//! transformers' forward pass as one library call: `GPT2LMHeadModel.forward` /
//! `GPTNeoForCausalLM.forward` (and the base model's, without the lm_head), with their inputs,
//! their outputs and their semantics, over a batch of sessions that hold the past.
//!
//! Rows of a batch run one after another, each on its own [`Session`], through the same chunked
//! forward pass as generation; what this adds are the optional inputs (masks, positions, token
//! types, embeddings) and outputs (hidden states, attentions, loss).

use super::forward_pass::{ChunkExtras, ChunkInput, LogitsOut, Recorded, CHUNK};
use super::session::Session;
use super::Model;
use crate::error::{Error, Result};
use crate::math::nll_f64;

/// The label transformers ignores in the loss.
pub const IGNORE_INDEX: i64 = -100;

/// `head_mask`: multiplies attention probabilities after the softmax (0 switches a head off).
#[derive(Clone, Copy, Debug)]
pub enum HeadMask<'a> {
    /// `[n_head]`, the same for every layer.
    PerHead(&'a [f32]),
    /// `[n_layer, n_head]`.
    PerLayer(&'a [f32]),
}

/// Which positions' logits to compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogitsWanted {
    /// Every position's, `[batch, seq, V]`, as transformers returns.
    #[default]
    All,
    /// Only the last position's, `[batch, 1, V]`: saves the lm_head on the others.
    Last,
    /// None: the base model (`GPT2Model`), for hidden states.
    None,
}

/// The inputs of one forward call, by transformers' names. Tensors are flat, row-major; `batch`
/// rows of `seq` new tokens each. Exactly one of `input_ids` and `inputs_embeds` is given.
#[derive(Clone, Copy, Debug)]
pub struct ForwardInput<'a> {
    pub batch: usize,
    /// `[batch, seq]`.
    pub input_ids: Option<&'a [u32]>,
    /// `[batch, seq, n_embd]`, instead of ids.
    pub inputs_embeds: Option<&'a [f32]>,
    /// `[batch, past + seq]` of 0 (masked, e.g. padding) and 1.
    pub attention_mask: Option<&'a [u8]>,
    /// `[batch, seq]`; default `past .. past + seq`.
    pub position_ids: Option<&'a [u32]>,
    /// `[batch, seq]`: their embeddings (rows of wte, as transformers does) are added.
    pub token_type_ids: Option<&'a [u32]>,
    pub head_mask: Option<HeadMask<'a>>,
    /// `[batch, seq]`: the token each position predicts is the next one's label; -100 ignored.
    pub labels: Option<&'a [i64]>,
    pub logits: LogitsWanted,
    pub output_hidden_states: bool,
    pub output_attentions: bool,
    /// Keep the new tokens in the sessions (default). When false the sessions are as before.
    pub use_cache: bool,
}

impl Default for ForwardInput<'_> {
    fn default() -> Self {
        ForwardInput {
            batch: 1,
            input_ids: None,
            inputs_embeds: None,
            attention_mask: None,
            position_ids: None,
            token_type_ids: None,
            head_mask: None,
            labels: None,
            logits: LogitsWanted::All,
            output_hidden_states: false,
            output_attentions: false,
            use_cache: true,
        }
    }
}

/// What one forward call returns; tensors flat, row-major.
#[derive(Clone, Debug, Default)]
pub struct ForwardOutput {
    pub batch: usize,
    /// New tokens per row.
    pub seq: usize,
    /// Positions each session held before the call.
    pub past: usize,
    /// `[batch, seq, V]`, `[batch, 1, V]` or empty, as [`ForwardInput::logits`] asked.
    pub logits: Vec<f32>,
    /// Mean cross-entropy over the labels that are not -100 (NaN if there are none, as torch).
    pub loss: Option<f32>,
    /// `n_layer + 1` entries of `[batch, seq, n_embd]`: the embeddings, then each layer's output;
    /// the last has ln_f applied (transformers' `last_hidden_state`). Empty unless asked for.
    pub hidden_states: Vec<Vec<f32>>,
    /// `n_layer` entries of `[batch, n_head, seq, past + seq]`. Empty unless asked for.
    pub attentions: Vec<Vec<f32>>,
}

impl ForwardOutput {
    /// The final hidden states `[batch, seq, n_embd]` (after ln_f), if they were asked for.
    pub fn last_hidden_state(&self) -> Option<&[f32]> {
        self.hidden_states.last().map(Vec::as_slice)
    }
}

/// The shape of a checked call.
struct Shape {
    batch: usize,
    seq: usize,
    past: usize,
}

impl Model {
    /// `batch` fresh sessions of `ctx` positions (default n_positions): the cache of a batch.
    pub fn sessions(&self, batch: usize, ctx: Option<usize>) -> Result<Vec<Session<'_>>> {
        (0..batch).map(|_| self.session(ctx)).collect()
    }

    /// transformers' forward pass over `past` (one session per batch row, all holding the same
    /// number of positions; they play `past_key_values`), with only the new tokens as input.
    ///
    /// ```
    /// use quill::model::{ForwardInput, Model};
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2-hub");
    /// let model = Model::load(&dir, &Default::default())?;
    /// let mut past = model.sessions(2, None)?;
    /// let ids = [464, 3290, 318, 50256, 50256, 1374]; // [2, 3]
    /// let labels = [-100, 3290, 318, -100, 50256, 1374];
    /// let out = model.forward(
    ///     &mut past,
    ///     &ForwardInput { batch: 2, input_ids: Some(&ids), labels: Some(&labels), output_hidden_states: true, ..Default::default() },
    /// )?;
    /// assert_eq!(out.logits.len(), 2 * 3 * model.config().vocab_size);
    /// assert_eq!(out.hidden_states.len(), model.config().n_layer + 1);
    /// assert!(out.loss.unwrap() > 0.0);
    /// // The sessions now hold the 3 tokens: the next call passes only new ones.
    /// let next = model.forward(&mut past, &ForwardInput { batch: 2, input_ids: Some(&[13, 13]), ..Default::default() })?;
    /// assert_eq!(next.past, 3);
    /// # Ok::<(), quill::Error>(())
    /// ```
    pub fn forward(&self, past: &mut [Session<'_>], input: &ForwardInput) -> Result<ForwardOutput> {
        let shape = self.check_forward(past, input)?;
        let (cfg, c) = (&self.config, self.config.n_embd);
        let (batch, seq, past_len) = (shape.batch, shape.seq, shape.past);
        let (v, n_head, t_all) = (cfg.vocab_size, cfg.n_head, past_len + seq);

        // The head mask as [L, H].
        let head_mask: Option<Vec<f32>> = input.head_mask.map(|hm| match hm {
            HeadMask::PerHead(h) => h.iter().copied().cycle().take(cfg.n_layer * n_head).collect(),
            HeadMask::PerLayer(lh) => lh.to_vec(),
        });
        // Logits of every position are needed for the loss, whatever is returned.
        let all_logits = input.logits == LogitsWanted::All || input.labels.is_some();
        let rows_out = if all_logits { seq } else { 1 };
        let mut logits =
            vec![
                0.0;
                if input.logits == LogitsWanted::None && input.labels.is_none() { 0 } else { batch * rows_out * v }
            ];
        let mut hidden: Vec<Vec<f32>> =
            if input.output_hidden_states { vec![vec![0.0; batch * seq * c]; cfg.n_layer + 1] } else { Vec::new() };
        let mut attentions: Vec<Vec<f32>> = if input.output_attentions {
            vec![vec![0.0; batch * n_head * seq * t_all]; cfg.n_layer]
        } else {
            Vec::new()
        };
        let mut probs = if input.output_attentions { vec![0.0; n_head * CHUNK.min(seq) * t_all] } else { Vec::new() };
        let mut key_bias = Vec::new();

        for (b, session) in past.iter_mut().enumerate() {
            let row = b * seq..(b + 1) * seq;
            if let Some(mask) = input.attention_mask {
                key_bias.clear();
                key_bias.extend(mask[b * t_all..][..t_all].iter().map(|&m| if m == 0 { f32::MIN } else { 0.0 }));
            }
            for r0 in (0..seq).step_by(CHUNK) {
                let m = CHUNK.min(seq - r0);
                let rows = row.start + r0..row.start + r0 + m;
                let chunk = match (input.input_ids, input.inputs_embeds) {
                    (Some(ids), _) => ChunkInput::Ids(&ids[rows.clone()]),
                    (None, Some(e)) => ChunkInput::Embeds(&e[rows.start * c..rows.end * c]),
                    (None, None) => unreachable!("checked"),
                };
                let chunk_past = past_len + r0;
                let mut record = |r: Recorded| match r {
                    Recorded::Hidden { layer, rows: x } => {
                        if let Some(dst) = hidden.get_mut(layer) {
                            dst[(b * seq + r0) * c..][..m * c].copy_from_slice(x);
                        }
                    }
                    Recorded::Attention { layer, probs, t } => {
                        let dst = &mut attentions[layer];
                        for h in 0..n_head {
                            for i in 0..m {
                                let at = ((b * n_head + h) * seq + r0 + i) * t_all;
                                dst[at..at + t].copy_from_slice(&probs[(h * m + i) * t..][..t]);
                            }
                        }
                    }
                };
                let recording = input.output_hidden_states || input.output_attentions;
                let mut extras = ChunkExtras {
                    positions: input.position_ids.map(|p| &p[rows.clone()]),
                    token_types: input.token_type_ids.map(|t| &t[rows.clone()]),
                    key_bias: input.attention_mask.map(|_| &key_bias[..chunk_past + m]),
                    head_mask: head_mask.as_deref(),
                    record: if recording { Some(&mut record) } else { None },
                    keep_probs: input.output_attentions,
                    probs: if input.output_attentions { Some(&mut probs[..]) } else { None },
                };
                let last_chunk = r0 + m == seq;
                let out = if all_logits {
                    LogitsOut::All(&mut logits[rows.start * v..rows.end * v])
                } else if last_chunk && input.logits == LogitsWanted::Last {
                    LogitsOut::Last
                } else {
                    LogitsOut::None
                };
                session.forward_chunk_with(chunk, out, &mut extras);
            }
            if !all_logits && input.logits == LogitsWanted::Last {
                logits[b * v..(b + 1) * v].copy_from_slice(session.last_logits());
            }
        }

        let loss = input.labels.map(|labels| cross_entropy_shifted(&logits, labels, batch, seq, v));
        if input.labels.is_some() {
            match input.logits {
                LogitsWanted::All => {}
                LogitsWanted::Last => {
                    let last: Vec<f32> =
                        (0..batch).flat_map(|b| logits[((b + 1) * seq - 1) * v..(b + 1) * seq * v].to_vec()).collect();
                    logits = last;
                }
                LogitsWanted::None => logits = Vec::new(),
            }
        }
        if !input.use_cache {
            for s in past.iter_mut() {
                let restored = s.truncate(past_len);
                debug_assert!(restored, "checked by check_forward");
            }
        }
        Ok(ForwardOutput { batch, seq, past: past_len, logits, loss, hidden_states: hidden, attentions })
    }

    /// Every shape, range and combination rule of [`Model::forward`], before any work.
    fn check_forward(&self, past: &[Session<'_>], input: &ForwardInput) -> Result<Shape> {
        let cfg = &self.config;
        let batch = input.batch;
        if batch == 0 {
            return Err(Error::usage("forward: batch must be at least 1"));
        }
        let tokens = match (input.input_ids, input.inputs_embeds) {
            (Some(_), Some(_)) => {
                return Err(Error::usage("forward: give input_ids or inputs_embeds, not both"));
            }
            (None, None) => return Err(Error::usage("forward: give input_ids or inputs_embeds")),
            (Some(ids), None) => ids.len(),
            (None, Some(e)) => {
                if !e.len().is_multiple_of(cfg.n_embd) {
                    return Err(Error::usage(format!(
                        "forward: inputs_embeds has {} values, not a whole number of rows of n_embd = {}",
                        e.len(),
                        cfg.n_embd
                    )));
                }
                e.len() / cfg.n_embd
            }
        };
        if tokens == 0 || !tokens.is_multiple_of(batch) {
            return Err(Error::usage(format!(
                "forward: {tokens} tokens do not make {batch} equal non-empty rows (shape [batch, seq])"
            )));
        }
        let seq = tokens / batch;
        if past.len() != batch {
            return Err(Error::usage(format!("forward: {} sessions for a batch of {batch}", past.len())));
        }
        if past.iter().any(|s| !std::ptr::eq(s.model(), self)) {
            return Err(Error::usage("forward: a session of another model"));
        }
        let past_len = past[0].len();
        if past.iter().any(|s| s.len() != past_len) {
            return Err(Error::usage("forward: the sessions of a batch must hold the same number of positions"));
        }
        let capacity = past[0].capacity();
        if past_len + seq > capacity {
            return Err(Error::input(format!(
                "forward: {seq} new tokens do not fit: {past_len} of {capacity} positions already used"
            )));
        }
        if let Some(ids) = input.input_ids {
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
                return Err(Error::input(format!(
                    "forward: input_ids: token id {bad} is out of range (vocabulary of {})",
                    cfg.vocab_size
                )));
            }
        }
        let expect_len = |name: &str, len: usize, want: usize, shape: &str| -> Result<()> {
            if len == want {
                Ok(())
            } else {
                Err(Error::usage(format!("forward: {name} has {len} values; its shape is {shape} = {want}")))
            }
        };
        if let Some(mask) = input.attention_mask {
            expect_len("attention_mask", mask.len(), batch * (past_len + seq), "[batch, past + seq]")?;
            if let Some(&bad) = mask.iter().find(|&&m| m > 1) {
                return Err(Error::usage(format!("forward: attention_mask holds {bad}; use 0 (masked) or 1")));
            }
        }
        if let Some(pos) = input.position_ids {
            expect_len("position_ids", pos.len(), batch * seq, "[batch, seq]")?;
            if let Some(&bad) = pos.iter().find(|&&p| p as usize >= cfg.n_positions) {
                return Err(Error::input(format!(
                    "forward: position id {bad} is out of range: the model has {} positions (n_positions)",
                    cfg.n_positions
                )));
            }
        }
        if let Some(types) = input.token_type_ids {
            expect_len("token_type_ids", types.len(), batch * seq, "[batch, seq]")?;
            if let Some(&bad) = types.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(Error::input(format!(
                    "forward: token type id {bad} is out of range (they index wte, {} rows)",
                    cfg.vocab_size
                )));
            }
        }
        match input.head_mask {
            Some(HeadMask::PerHead(h)) => expect_len("head_mask", h.len(), cfg.n_head, "[n_head]")?,
            Some(HeadMask::PerLayer(h)) => {
                expect_len("head_mask", h.len(), cfg.n_layer * cfg.n_head, "[n_layer, n_head]")?
            }
            None => {}
        }
        if let Some(labels) = input.labels {
            expect_len("labels", labels.len(), batch * seq, "[batch, seq]")?;
            if let Some(&bad) = labels.iter().find(|&&l| l != IGNORE_INDEX && !(0..cfg.vocab_size as i64).contains(&l))
            {
                return Err(Error::input(format!(
                    "forward: label {bad} is out of range: 0..{} or -100 (ignored)",
                    cfg.vocab_size
                )));
            }
        }
        if !input.use_cache && past_len > 0 && seq > CHUNK && self.config.has_local_attention() {
            return Err(Error::usage(format!(
                "forward: use_cache = false after a past of local-attention layers handles at most {CHUNK} new tokens"
            )));
        }
        Ok(Shape { batch, seq, past: past_len })
    }
}

impl Session<'_> {
    /// [`Model::forward`] for this one sequence (a batch of one).
    pub fn forward(&mut self, input: &ForwardInput) -> Result<ForwardOutput> {
        let model = self.model();
        model.forward(std::slice::from_mut(self), input)
    }
}

/// transformers' causal-LM loss: the logits of position `i` predict `labels[i + 1]`; mean over
/// every label that is not -100, across the batch; NaN when there is none (as torch).
fn cross_entropy_shifted(logits: &[f32], labels: &[i64], batch: usize, seq: usize, v: usize) -> f32 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for b in 0..batch {
        for i in 0..seq.saturating_sub(1) {
            let label = labels[b * seq + i + 1];
            if label == IGNORE_INDEX {
                continue;
            }
            let row = &logits[(b * seq + i) * v..][..v];
            sum += nll_f64(row, label as usize);
            n += 1;
        }
    }
    (sum / n as f64) as f32
}
