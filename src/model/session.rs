//! A session: one sequence being run, its KV arena and every activation buffer, all allocated
//! once in [`Session::new`]. After that, feeding tokens allocates nothing. The layers themselves
//! run in [`super::forward_pass`].

use super::forward_pass::{layer_slots, run_chunk, ChunkExtras, ChunkInput, LogitsOut, Recorded, RunState, CHUNK};
use super::Model;
use crate::error::{Error, Result, Setting};
use crate::kv_cache::KvArena;

pub struct Session<'m> {
    model: &'m Model,
    kv: KvArena,
    state: RunState,
}

impl<'m> Session<'m> {
    pub(super) fn new(model: &'m Model, ctx: Option<usize>) -> Result<Session<'m>> {
        let cfg = &model.config;
        let ctx = ctx.unwrap_or(cfg.n_positions);
        if ctx == 0 || ctx > cfg.n_positions {
            return Err(Error::out_of_range(
                Setting::Ctx,
                ctx,
                format!("this model has 1 to {} positions (n_positions)", cfg.n_positions),
            ));
        }
        let state = RunState::new(cfg, ctx);
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
    ///
    /// ```
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2-hub");
    /// let model = quill::Model::load(&dir, &Default::default())?;
    /// let mut session = model.session(Some(16))?; // a KV cache of 16 positions
    /// let logits = session.feed(&[464, 3290, 318])?;
    /// let next = quill::math::argmax(logits) as u32;
    /// session.feed(&[next])?; // the cache holds the past: feed only the new token
    /// assert_eq!(session.len(), 4);
    /// # Ok::<(), quill::Error>(())
    /// ```
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
        // Rerunning `ids` needs the keys and values before `start`: a local-attention ring holds
        // them only while the failed feed wrote at most one chunk over it.
        if start > 0 && ids.len() > CHUNK && self.model.config.has_local_attention() {
            return Error::input(format!(
                "{head}: an activation overflowed f32 (the layer is not named: finding it would rerun \
                 {} tokens over a local-attention cache they have overwritten)",
                ids.len()
            ));
        }
        // Hidden states entering each layer (index 0: the embeddings; n_layer: after ln_f).
        let n_layer = self.model.config.n_layer;
        let mut first_bad: Option<usize> = None;
        for chunk in ids.chunks(CHUNK) {
            let mut record = |r: Recorded| {
                if let Recorded::Hidden { layer, rows } = r {
                    if !rows.iter().all(|v| v.is_finite()) && first_bad.is_none_or(|b| layer < b) {
                        first_bad = Some(layer);
                    }
                }
            };
            let mut extras = ChunkExtras { record: Some(&mut record), ..Default::default() };
            self.forward_chunk_with(ChunkInput::Ids(chunk), LogitsOut::None, &mut extras);
        }
        let cause = match first_bad {
            Some(0) => "the embeddings are not finite".to_string(),
            Some(l) if l == n_layer => "the final LayerNorm's output is not finite".to_string(),
            Some(l) => {
                format!("layer {} is the first whose output is not finite (an activation overflowed f32)", l - 1)
            }
            None => "the lm_head's output overflowed f32".to_string(),
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
            return Err(Error::ContextFull {
                tokens: ids.len(),
                used: self.kv.len(),
                capacity: self.kv.capacity(),
                n_positions: self.model.config.n_positions,
            });
        }
        Ok(())
    }

    /// Runs `ids` (at most CHUNK) through every layer at positions `len..len+M`.
    fn forward_chunk(&mut self, ids: &[u32], logits: LogitsOut) {
        self.forward_chunk_with(ChunkInput::Ids(ids), logits, &mut ChunkExtras::default());
    }

    /// Runs one chunk through every layer with what the full forward API adds in `extras`.
    pub(super) fn forward_chunk_with(&mut self, input: ChunkInput, logits: LogitsOut, extras: &mut ChunkExtras) {
        run_chunk(self.model, &mut self.kv, &mut self.state, input, logits, extras);
    }
}

impl Model {
    /// A fresh session with a KV arena of `ctx` positions (default and maximum: n_positions).
    pub fn session(&self, ctx: Option<usize>) -> Result<Session<'_>> {
        Session::new(self, ctx)
    }

    /// A fresh session that holds exactly `ids`, one whole input named `what` in errors ("text",
    /// "prompt"): an empty one, or one longer than n_positions, is an [`Error::Input`].
    pub(crate) fn session_for_whole(&self, ids: &[u32], what: &str) -> Result<Session<'_>> {
        if ids.is_empty() {
            return Err(Error::input(format!("the {what} is empty: it has no token to run")));
        }
        let n = self.config.n_positions;
        if ids.len() > n {
            return Err(Error::input(format!(
                "the {what} has {} tokens; the model sees at most {n} (n_positions): shorten it",
                ids.len()
            )));
        }
        self.session(Some(ids.len()))
    }

    /// Positions each layer's KV cache holds in a session of `ctx` positions: `ctx`, or for a
    /// local-attention layer (at most) a ring of `window - 1` positions and one prompt chunk.
    pub fn kv_slots(&self, ctx: usize) -> Vec<usize> {
        layer_slots(&self.config, ctx)
    }
}
