//! Beam search with transformers' bookkeeping (4.46: `_beam_search`, `BeamSearchScorer`,
//! `BeamHypotheses`), so that it gives `generate(num_beams=N, do_sample=False)`'s tokens.
//!
//! Each step, for every beam: `log_softmax` of the model's logits, then the processors over the
//! beam's own sequence (repetition penalty, n-gram ban, `min_new_tokens`), plus the beam's score. The best
//! `max(2, 1 + number of eos ids) * N` of the `N * V` candidates, best first, are walked in
//! order: an eos candidate among the first `N` becomes a finished hypothesis, scored
//! `sum / generated_len ^ length_penalty` where `generated_len` counts the new tokens with the
//! eos (not the prompt); the first `N` others become the next beams. At the first step every beam
//! holds the prompt and beams 1.. start at -1e9, so the beams all come from beam 0.
//!
//! The prompt is fed once, into one session; the others start as copies of it. A step copies a
//! beam's KV cache into another session only when two new beams come from the same old one; a
//! beam that continues keeps its session. Every buffer (N sessions, the `N * V` scores, the
//! tokens of the beams and hypotheses) is allocated in [`BeamSearch::new`].

use std::time::{Duration, Instant};

use super::processors::{History, LogitsProcessors, SeenTokens};
use super::{DecodeOptions, FinishReason, Strategy};
use crate::error::{Error, Result, Setting};
use crate::math::log_softmax_torch_f32;
use crate::model::{Model, Session};

/// transformers' `early_stopping`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `True`: done as soon as `N` hypotheses are finished.
    Yes,
    /// `False` (the default): done when the best running score, normalised by the current
    /// length, cannot beat the worst finished hypothesis (transformers' heuristic).
    #[default]
    Heuristic,
    /// `"never"`: done only when no hypothesis can become better, using the maximal length when
    /// `length_penalty` > 0.
    Never,
}

/// Beam-search parameters beyond [`DecodeOptions`].
#[derive(Clone, Debug, PartialEq)]
pub struct BeamOptions {
    /// N ≥ 1.
    pub num_beams: usize,
    /// Exponent of the length that divides a hypothesis' summed score; 1 by default.
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    /// How many hypotheses to return, 1 ≤ K ≤ N.
    pub num_return_sequences: usize,
}

impl BeamOptions {
    pub fn new(num_beams: usize) -> BeamOptions {
        BeamOptions {
            num_beams,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            num_return_sequences: 1,
        }
    }

    /// Checks the values ([`Error::OutOfRange`] names the setting).
    pub fn validate(&self) -> Result<()> {
        if self.num_beams == 0 {
            return Err(Error::out_of_range(Setting::NumBeams, 0, "give 1 or more (1 = greedy)"));
        }
        if self.num_return_sequences == 0 || self.num_return_sequences > self.num_beams {
            return Err(Error::out_of_range(
                Setting::NumReturnSequences,
                self.num_return_sequences,
                format!("give 1 to {} ({} {})", self.num_beams, Setting::NumBeams, self.num_beams),
            ));
        }
        if !self.length_penalty.is_finite() {
            return Err(Error::out_of_range(Setting::LengthPenalty, self.length_penalty, "give a finite number"));
        }
        Ok(())
    }
}

/// One returned hypothesis.
#[derive(Clone, Debug)]
pub struct BeamSequence {
    /// New tokens; a hypothesis ended by eos ends with that eos token.
    pub new_ids: Vec<u32>,
    /// transformers' `sequences_scores`: the summed processed log-probabilities divided by
    /// `generated_len ^ length_penalty`.
    pub score: f64,
    /// [`FinishReason::Eos`], [`FinishReason::Length`], or [`FinishReason::ContextFull`] when the
    /// context, not `max_new_tokens`, limited the length.
    pub finish_reason: FinishReason,
}

#[derive(Clone, Debug)]
pub struct BeamGeneration {
    /// Best first, `num_return_sequences` of them.
    pub sequences: Vec<BeamSequence>,
    pub prompt_time: Duration,
    pub decode_time: Duration,
    /// Decode steps (each feeds one token to each of the N beams).
    pub steps: usize,
}

/// A finished hypothesis: its tokens live in a buffer of the pool.
#[derive(Clone, Copy, Debug)]
struct Hyp {
    score: f64,
    buf: usize,
    finish: FinishReason,
}

/// transformers' `BeamHypotheses`: the best `N` finished hypotheses.
struct Hypotheses {
    n: usize,
    length_penalty: f64,
    early_stopping: EarlyStopping,
    /// Most new tokens (transformers' `max_length - prompt_len`).
    max_new: usize,
    hyps: Vec<Hyp>,
    worst: f64,
    /// Token buffers, `n + 1` of them; `free` lists the unused ones.
    bufs: Vec<Vec<u32>>,
    free: Vec<usize>,
}

impl Hypotheses {
    fn new(n: usize, length_penalty: f64, early_stopping: EarlyStopping, max_new: usize) -> Hypotheses {
        Hypotheses {
            n,
            length_penalty,
            early_stopping,
            max_new,
            hyps: Vec::with_capacity(n + 1),
            worst: 1e9,
            bufs: (0..n + 1).map(|_| Vec::with_capacity(max_new)).collect(),
            free: Vec::with_capacity(n + 1),
        }
    }

    fn clear(&mut self) {
        self.hyps.clear();
        self.worst = 1e9;
        self.free.clear();
        self.free.extend(0..self.n + 1);
    }

    /// `BeamHypotheses.add`: `tokens` then `last` (if any), `generated_len` new tokens in all.
    fn add(&mut self, tokens: &[u32], last: Option<u32>, sum: f64, generated_len: usize, finish: FinishReason) {
        let score = sum / (generated_len as f64).powf(self.length_penalty);
        if self.hyps.len() < self.n || score > self.worst {
            let buf = self.free.pop().expect("a free hypothesis buffer");
            let b = &mut self.bufs[buf];
            b.clear();
            b.extend_from_slice(tokens);
            b.extend(last);
            self.hyps.push(Hyp { score, buf, finish });
            if self.hyps.len() > self.n {
                // Python's sorted((score, index)): the lowest score, the first of ties.
                let mut order: [usize; 2] = [0, 1];
                if self.hyps[1].score < self.hyps[0].score {
                    order = [1, 0];
                }
                for i in 2..self.hyps.len() {
                    let s = self.hyps[i].score;
                    if s < self.hyps[order[0]].score {
                        order = [i, order[0]];
                    } else if s < self.hyps[order[1]].score {
                        order[1] = i;
                    }
                }
                self.worst = self.hyps[order[1]].score;
                let gone = self.hyps.remove(order[0]);
                self.free.push(gone.buf);
            } else {
                self.worst = self.worst.min(score);
            }
        }
    }

    /// `BeamHypotheses.is_done` with the best candidate score of the step and the new tokens
    /// so far (`cur_len - decoder_prompt_len`).
    fn is_done(&self, best_sum: f64, generated_len: usize) -> bool {
        if self.hyps.len() < self.n {
            return false;
        }
        let best_possible = |len: usize| best_sum / (len as f64).powf(self.length_penalty);
        match self.early_stopping {
            EarlyStopping::Yes => true,
            EarlyStopping::Heuristic => self.worst >= best_possible(generated_len),
            EarlyStopping::Never if self.length_penalty > 0.0 => self.worst >= best_possible(self.max_new),
            EarlyStopping::Never => self.worst >= best_possible(generated_len),
        }
    }
}

/// Beam search over N sessions of one model, reusable for several prompts.
///
/// ```
/// use quill::generate::beam::{BeamOptions, BeamSearch};
/// use quill::generate::DecodeOptions;
/// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2-hub");
/// let model = quill::Model::load(&dir, &Default::default())?;
/// let beam = BeamOptions { num_return_sequences: 2, ..BeamOptions::new(4) };
/// let mut search = BeamSearch::new(&model, None, DecodeOptions::greedy(6), beam)?;
/// let out = search.run(&[464, 3290, 318])?;
/// assert_eq!(out.sequences.len(), 2);
/// assert!(out.sequences[0].score >= out.sequences[1].score);
/// # Ok::<(), quill::Error>(())
/// ```
pub struct BeamSearch<'m> {
    opts: DecodeOptions,
    beam: BeamOptions,
    vocab: usize,
    sessions: Vec<Session<'m>>,
    /// Which session holds beam `b`'s sequence (several beams may share one before they differ).
    session_of: Vec<usize>,
    /// Scratch for the reorder: the sessions new beams claimed.
    claimed: Vec<bool>,
    /// `[N, V]` processed scores plus beam scores.
    scores: Vec<f32>,
    beam_scores: Vec<f32>,
    /// The best candidates, best first: (score, beam * V + token).
    cand: Vec<(f32, usize)>,
    /// The next beams: (score, token, source beam).
    next: Vec<(f32, u32, usize)>,
    /// New tokens of each beam, and the buffers the reorder writes.
    tokens: Vec<Vec<u32>>,
    tokens_next: Vec<Vec<u32>>,
    seen: Vec<SeenTokens>,
    seen_next: Vec<SeenTokens>,
    processors: LogitsProcessors,
    hyps: Hypotheses,
}

impl<'m> BeamSearch<'m> {
    /// Validates the options and allocates N sessions of `ctx` positions (see
    /// [`Model::session`]) and every buffer. `opts.strategy` must be greedy; `opts.logprobs` and
    /// `opts.on_context_full` are not used.
    pub fn new(model: &'m Model, ctx: Option<usize>, opts: DecodeOptions, beam: BeamOptions) -> Result<BeamSearch<'m>> {
        opts.validate()?;
        beam.validate()?;
        if opts.strategy != Strategy::Greedy {
            return Err(Error::usage(format!(
                "beam search does not sample: give greedy options with {} > 1, or {} 1 to sample",
                Setting::NumBeams,
                Setting::NumBeams
            )));
        }
        let n = beam.num_beams;
        let vocab = model.config.vocab_size;
        let sessions = (0..n).map(|_| model.session(ctx)).collect::<Result<Vec<_>>>()?;
        let max_new = opts.max_new_tokens.min(sessions[0].capacity() + 1);
        let keep = (2.max(1 + opts.eos_token_ids.len()) * n).min(n * vocab);
        let penalty = opts.repetition_penalty != 1.0;
        Ok(BeamSearch {
            session_of: vec![0; n],
            claimed: vec![false; n],
            scores: vec![0.0; n * vocab],
            beam_scores: vec![0.0; n],
            cand: Vec::with_capacity(keep),
            next: Vec::with_capacity(n),
            tokens: (0..n).map(|_| Vec::with_capacity(max_new)).collect(),
            tokens_next: (0..n).map(|_| Vec::with_capacity(max_new)).collect(),
            seen: (0..n).map(|_| SeenTokens::new(vocab, penalty)).collect(),
            seen_next: (0..n).map(|_| SeenTokens::new(vocab, penalty)).collect(),
            hyps: Hypotheses::new(n, beam.length_penalty, beam.early_stopping, max_new),
            processors: LogitsProcessors::new(&opts, vocab),
            sessions,
            vocab,
            opts,
            beam,
        })
    }

    pub fn options(&self) -> (&DecodeOptions, &BeamOptions) {
        (&self.opts, &self.beam)
    }

    /// Sets the number of new tokens of the following runs (e.g. a row's `max_length` minus its
    /// own prompt length).
    pub fn set_max_new_tokens(&mut self, n: usize) {
        self.opts.max_new_tokens = n;
    }

    /// Positions each beam's session holds.
    pub fn capacity(&self) -> usize {
        self.sessions[0].capacity()
    }

    /// Beam search from `prompt`; the sessions are reset first.
    pub fn run(&mut self, prompt: &[u32]) -> Result<BeamGeneration> {
        let n = self.beam.num_beams;
        let v = self.vocab;
        let capacity = self.capacity();
        if prompt.len() > capacity {
            return Err(Error::PromptTooLong {
                tokens: prompt.len(),
                room: capacity,
                capacity,
                n_positions: self.sessions[0].model().config.n_positions,
            });
        }
        // The last token is chosen, not fed: prompt + max_new - 1 positions are needed.
        let max_new = self.opts.max_new_tokens.min(capacity + 1 - prompt.len());
        let length_finish =
            if max_new < self.opts.max_new_tokens { FinishReason::ContextFull } else { FinishReason::Length };
        self.hyps.max_new = self.opts.max_new_tokens;
        self.hyps.clear();
        for s in &mut self.sessions {
            s.reset();
        }
        for b in 0..n {
            self.tokens[b].clear();
            self.seen[b].clear();
            for &id in prompt {
                self.seen[b].insert(id);
            }
            self.session_of[b] = 0;
            // transformers: beam 0 starts at 0, the others at -1e9, so step 1 extends beam 0.
            self.beam_scores[b] = if b == 0 { 0.0 } else { -1e9 };
        }
        let start = Instant::now();
        if max_new == 0 {
            let sequences = (0..self.beam.num_return_sequences)
                .map(|_| BeamSequence { new_ids: Vec::new(), score: 0.0, finish_reason: length_finish })
                .collect();
            return Ok(BeamGeneration {
                sequences,
                prompt_time: Duration::ZERO,
                decode_time: Duration::ZERO,
                steps: 0,
            });
        }
        let logits = self.sessions[0].feed(prompt)?;
        self.scores[..v].copy_from_slice(logits);
        // Every beam holds the prompt: the same logits.
        self.score_row(0, prompt);
        for b in 1..n {
            self.scores.copy_within(..v, b * v);
        }
        let prompt_time = start.elapsed();
        let decode_start = Instant::now();
        let mut steps = 0;
        let mut done = false;
        let mut generated = 0;
        loop {
            for b in 0..n {
                let bs = self.beam_scores[b];
                self.scores[b * v..(b + 1) * v].iter_mut().for_each(|s| *s += bs);
            }
            self.select();
            generated += 1;
            done = done || self.process(generated);
            if done || generated == max_new {
                break;
            }
            self.reorder(true);
            for b in 0..n {
                let token = *self.tokens[b].last().expect("a beam token");
                let logits = self.sessions[self.session_of[b]].feed(&[token])?;
                self.scores[b * v..(b + 1) * v].copy_from_slice(logits);
                self.score_row(b, prompt);
            }
            steps += 1;
        }
        if !done {
            // transformers' finalize: the running beams join the hypotheses.
            self.reorder(false);
            for b in 0..n {
                self.hyps.add(&self.tokens[b], None, f64::from(self.beam_scores[b]), generated, length_finish);
            }
        }
        // Python's sorted(key=score) then pop(): the highest score, the last of ties.
        let mut order: Vec<usize> = (0..self.hyps.hyps.len()).collect();
        order.sort_by(|&a, &b| self.hyps.hyps[a].score.total_cmp(&self.hyps.hyps[b].score));
        let sequences = order
            .iter()
            .rev()
            .take(self.beam.num_return_sequences)
            .map(|&i| {
                let h = self.hyps.hyps[i];
                BeamSequence { new_ids: self.hyps.bufs[h.buf].clone(), score: h.score, finish_reason: h.finish }
            })
            .collect();
        Ok(BeamGeneration { sequences, prompt_time, decode_time: decode_start.elapsed(), steps })
    }

    /// Row `b` of `scores`, the model's logits, becomes `log_softmax`, then the processors over
    /// beam `b`'s sequence, `prompt` and its tokens (transformers: processors after log_softmax).
    fn score_row(&mut self, b: usize, prompt: &[u32]) {
        let v = self.vocab;
        let row = &mut self.scores[b * v..(b + 1) * v];
        log_softmax_torch_f32(row);
        let tokens = &self.tokens[b];
        let history = History { before: prompt, after: tokens, new_tokens: tokens.len() };
        self.processors.apply(row, self.seen[b].ids(), history);
    }

    /// The best `cand.capacity()` candidates of `scores`, best first (the lower index first
    /// among equal scores).
    fn select(&mut self) {
        let keep = self.cand.capacity();
        self.cand.clear();
        for (i, &s) in self.scores.iter().enumerate() {
            if s.is_nan() || (self.cand.len() == keep && s <= self.cand[keep - 1].0) {
                continue;
            }
            if self.cand.len() == keep {
                self.cand.pop();
            }
            let at = self.cand.partition_point(|&(c, _)| c >= s);
            self.cand.insert(at, (s, i));
        }
    }

    /// `BeamSearchScorer.process`: eos candidates among the first N become hypotheses, the first
    /// N others the next beams; returns `is_done`. `generated` counts the new token.
    fn process(&mut self, generated: usize) -> bool {
        let n = self.beam.num_beams;
        self.next.clear();
        for rank in 0..self.cand.len() {
            let (score, i) = self.cand[rank];
            let (b, token) = (i / self.vocab, (i % self.vocab) as u32);
            if self.opts.eos_token_ids.contains(&token) {
                if rank >= n {
                    continue;
                }
                self.hyps.add(&self.tokens[b], Some(token), f64::from(score), generated, FinishReason::Eos);
            } else {
                self.next.push((score, token, b));
            }
            if self.next.len() == n {
                break;
            }
        }
        assert_eq!(self.next.len(), n, "beam search: too few candidates that are not eos");
        self.hyps.is_done(f64::from(self.cand[0].0), generated)
    }

    /// The next beams replace the current ones: tokens, seen tokens, scores and sessions. A new
    /// beam takes its source's session if no earlier new beam took it; otherwise it gets a
    /// session no new beam uses, into which the source's KV cache is copied.
    fn reorder(&mut self, sessions: bool) {
        for j in 0..self.beam.num_beams {
            let (score, token, src) = self.next[j];
            self.beam_scores[j] = score;
            let t = &mut self.tokens_next[j];
            t.clear();
            t.extend_from_slice(&self.tokens[src]);
            t.push(token);
            self.seen_next[j].copy_from(&self.seen[src]);
            self.seen_next[j].insert(token);
        }
        std::mem::swap(&mut self.tokens, &mut self.tokens_next);
        std::mem::swap(&mut self.seen, &mut self.seen_next);
        if sessions {
            self.assign_sessions();
        }
    }

    /// Maps the new beams to sessions, copying KV caches where a source has several children.
    fn assign_sessions(&mut self) {
        let n = self.beam.num_beams;
        // Pass 1: the first child of each source session keeps it; the others are marked
        // pending (high bit) in `next`, which holds their source session from here on.
        const PENDING: usize = 1 << (usize::BITS - 1);
        self.claimed.iter_mut().for_each(|c| *c = false);
        for j in 0..n {
            let src_session = self.session_of[self.next[j].2];
            if !self.claimed[src_session] {
                self.claimed[src_session] = true;
                self.next[j].2 = src_session;
            } else {
                self.next[j].2 = src_session | PENDING;
            }
        }
        // Pass 2: children left over get an unclaimed session and a copy of their source.
        let mut free = 0;
        for j in 0..n {
            let s = self.next[j].2;
            if s & PENDING == 0 {
                self.session_of[j] = s;
                continue;
            }
            let src = s & !PENDING;
            while self.claimed[free] {
                free += 1;
            }
            self.claimed[free] = true;
            let (a, b) = two_mut(&mut self.sessions, free, src);
            a.copy_from(b);
            self.session_of[j] = free;
        }
    }
}

/// `&mut v[a]` and `&v[b]`, a ≠ b.
fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &T) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &lo[b])
    }
}
