//! Turning logits into tokens: greedy decoding and sampling, logits processors in transformers'
//! order, stop rules, and what to do when the context is full.
//!
//! - [`Generator`] runs one generation loop over a [`Session`] with [`DecodeOptions`]; its
//!   buffers are allocated once, so a token costs no heap allocation beyond the model's.
//! - [`processors`]: repetition penalty, n-gram ban, `min_new_tokens`, temperature, top-k, top-p,
//!   min-p.
//! - [`sampler`]: our PCG32 generator and the draw, reproducible on any machine and thread count.
//! - [`stop`]: stop strings on streamed text, with hold-back.
//! - [`beam`]: beam search ([`beam::BeamSearch`]).
//! - `batch`: several prompts as the rows of a batch ([`Generator::run_batch`],
//!   [`beam::BeamSearch::run_batch`]).
//!
//! The defaults a model folder's `generation_config.json` gives are read by
//! [`crate::generation_config`].

mod batch;
pub mod beam;
pub mod processors;
pub mod sampler;
pub mod stop;

use std::time::{Duration, Instant};

use crate::error::{Error, Result, Setting};
use crate::math::{argmax, log_softmax_at_f64};
use crate::model::Session;
use processors::{History, LogitsProcessors, SeenTokens};
use sampler::Pcg32;

/// Sampling parameters (transformers' warpers), applied in this order: temperature, top-k,
/// top-p, min-p.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// > 0; 1 leaves the logits as they are.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    /// In (0, 1]; 1 disables top-p.
    pub top_p: f32,
    /// In [0, 1]; `None` disables min-p.
    pub min_p: Option<f32>,
    /// Seed of the [`Pcg32`] generator; sequence `i` of a run uses stream `i`.
    pub seed: u64,
}

impl Default for Sampling {
    /// transformers' `GenerationConfig` defaults: temperature 1, top-k 50, top-p 1, no min-p.
    fn default() -> Self {
        Sampling { temperature: 1.0, top_k: 50, top_p: 1.0, min_p: None, seed: 0 }
    }
}

/// How the next token is chosen from the processed logits.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// The largest logit (the first of ties, as `torch.argmax`).
    Greedy,
    /// A draw from the softmax of the warped logits.
    Sample(Sampling),
}

/// What to do when the KV cache is full and another token must be fed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnContextFull {
    /// End the generation with [`FinishReason::ContextFull`].
    #[default]
    Stop,
    /// Keep the last half of the context: reset the session, feed those tokens again (one
    /// prefill of `capacity / 2` tokens), and go on.
    Slide,
}

/// Everything a [`Generator`] needs to know.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    pub max_new_tokens: usize,
    /// Any of these ends generation (the token is kept in the output, as transformers does).
    pub eos_token_ids: Vec<u32>,
    pub strategy: Strategy,
    /// transformers' rule over the prompt and generated tokens; 1 = none. Applies to greedy
    /// decoding too.
    pub repetition_penalty: f32,
    /// transformers' `no_repeat_ngram_size`: no n-gram of this size occurs twice in the sequence
    /// (prompt included); 0 = off.
    pub no_repeat_ngram_size: usize,
    /// transformers' `min_new_tokens`: the eos ids cannot be chosen before this many new tokens.
    pub min_new_tokens: usize,
    pub on_context_full: OnContextFull,
    /// Record `log_softmax` of the raw logits at each chosen token.
    pub logprobs: bool,
}

impl DecodeOptions {
    /// Greedy decoding of up to `max_new_tokens` tokens, no eos, no penalty.
    pub fn greedy(max_new_tokens: usize) -> DecodeOptions {
        DecodeOptions {
            max_new_tokens,
            eos_token_ids: Vec::new(),
            strategy: Strategy::Greedy,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            min_new_tokens: 0,
            on_context_full: OnContextFull::Stop,
            logprobs: false,
        }
    }

    /// Checks every value's range ([`Error::OutOfRange`] names the setting).
    pub fn validate(&self) -> Result<()> {
        let p = self.repetition_penalty;
        if !(p.is_finite() && p > 0.0) {
            return Err(Error::out_of_range(Setting::RepetitionPenalty, p, "give a number > 0 (1 = none)"));
        }
        if let Strategy::Sample(s) = &self.strategy {
            if !(s.temperature.is_finite() && s.temperature > 0.0) {
                return Err(Error::out_of_range(
                    Setting::Temperature,
                    s.temperature,
                    "give a number > 0 for sampling (0 means greedy)",
                ));
            }
            if !(s.top_p > 0.0 && s.top_p <= 1.0) {
                return Err(Error::out_of_range(Setting::TopP, s.top_p, "give a number in (0, 1]"));
            }
            if let Some(m) = s.min_p {
                if !(0.0..=1.0).contains(&m) {
                    return Err(Error::out_of_range(Setting::MinP, m, "give a number in [0, 1]"));
                }
            }
        }
        Ok(())
    }
}

/// What the callback of [`Generator::run`] wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// End now, with [`FinishReason::Stop`] (e.g. a stop string was found).
    Stop,
    /// End now, with [`FinishReason::Interrupted`] (the user pressed Ctrl-C).
    Interrupt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` were produced.
    Length,
    /// An end-of-sequence token was produced.
    Eos,
    /// The caller stopped it (a stop string).
    Stop,
    /// The context (KV arena) is full.
    ContextFull,
    /// The caller interrupted it (Ctrl-C).
    Interrupted,
}

impl FinishReason {
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Interrupted => "interrupted",
            FinishReason::ContextFull => "context_full",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub new_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_time: Duration,
    /// Time spent producing the tokens after the first (decode steps, and any slide prefills).
    pub decode_time: Duration,
    /// `log_softmax` of the raw logits at each new token, when [`DecodeOptions::logprobs`].
    pub logprobs: Vec<f32>,
    /// How many times the context slid ([`OnContextFull::Slide`]).
    pub context_slides: usize,
}

impl Generation {
    /// Sum of [`logprobs`](Self::logprobs), in f64.
    pub fn total_logprob(&self) -> f64 {
        self.logprobs.iter().map(|&l| f64::from(l)).sum()
    }
}

/// One generation loop with its buffers, reusable for several runs (e.g. K sampled sequences).
pub struct Generator {
    opts: DecodeOptions,
    /// The model's logits, as they came (kept only for `logprobs`).
    raw: Vec<f32>,
    /// The logits the processors work on.
    work: Vec<f32>,
    processors: LogitsProcessors,
    seen: SeenTokens,
    /// The tokens in the session, this run's: what a slide feeds again, and the sequence the
    /// n-gram ban looks at.
    history: Vec<u32>,
}

impl Generator {
    /// Validates `opts` and allocates the buffers for a vocabulary of `vocab_size`.
    pub fn new(opts: DecodeOptions, vocab_size: usize) -> Result<Generator> {
        opts.validate()?;
        Ok(Generator {
            raw: if opts.logprobs { vec![0.0; vocab_size] } else { Vec::new() },
            work: vec![0.0; vocab_size],
            processors: LogitsProcessors::new(&opts, vocab_size),
            seen: SeenTokens::new(vocab_size, opts.repetition_penalty != 1.0),
            history: Vec::new(),
            opts,
        })
    }

    pub fn options(&self) -> &DecodeOptions {
        &self.opts
    }

    /// Feeds `prompt` to `session` (fresh, or holding earlier tokens) and generates from it.
    ///
    /// `sequence` picks the random stream when sampling (0 for a single sequence). `on_token`
    /// sees each new token as soon as it is chosen; it may end generation with [`Flow::Stop`], or
    /// with an error. A slide keeps only this run's tokens.
    pub fn run(
        &mut self,
        session: &mut Session,
        prompt: &[u32],
        sequence: u64,
        mut on_token: impl FnMut(u32) -> Result<Flow>,
    ) -> Result<Generation> {
        let capacity = session.capacity();
        if session.len() + prompt.len() > capacity {
            return Err(Error::PromptTooLong {
                tokens: prompt.len(),
                room: capacity - session.len(),
                capacity,
                n_positions: session.model().config.n_positions,
            });
        }
        let mut rng = match &self.opts.strategy {
            Strategy::Sample(s) => Some(Pcg32::new(s.seed, sequence)),
            Strategy::Greedy => None,
        };
        let max_new = self.opts.max_new_tokens;
        let mut new_ids = Vec::with_capacity(max_new.min(4096));
        let mut logprobs = Vec::with_capacity(if self.opts.logprobs { max_new.min(4096) } else { 0 });
        self.history.clear();
        self.history.reserve(capacity + 1);
        self.history.extend_from_slice(prompt);
        self.seen.clear();
        for &id in prompt {
            self.seen.insert(id);
        }
        let mut slides = 0;

        let start = Instant::now();
        let logits = session.feed(prompt)?;
        self.take(logits);
        let prompt_time = start.elapsed();
        let decode_start = Instant::now();
        let finish_reason = loop {
            if new_ids.len() == max_new {
                break FinishReason::Length;
            }
            let history = History { before: &[], after: &self.history, new_tokens: new_ids.len() };
            self.processors.apply(&mut self.work, self.seen.ids(), history);
            let next = match rng.as_mut() {
                None => argmax(&self.work) as u32,
                Some(rng) => sampler::sample(&self.work, rng)
                    .ok_or_else(|| Error::input("every token was filtered out: no token to sample"))?,
            };
            if self.opts.logprobs {
                logprobs.push(log_softmax_at_f64(&self.raw, next) as f32);
            }
            new_ids.push(next);
            self.history.push(next);
            self.seen.insert(next);
            match on_token(next)? {
                Flow::Continue => {}
                Flow::Stop => break FinishReason::Stop,
                Flow::Interrupt => break FinishReason::Interrupted,
            }
            if self.opts.eos_token_ids.contains(&next) {
                break FinishReason::Eos;
            }
            if new_ids.len() == max_new {
                break FinishReason::Length;
            }
            if session.len() == capacity {
                match self.opts.on_context_full {
                    OnContextFull::Stop => break FinishReason::ContextFull,
                    OnContextFull::Slide => {
                        let keep = (capacity / 2).max(1).min(self.history.len());
                        self.history.drain(..self.history.len() - keep);
                        session.reset();
                        let logits = session.feed(&self.history)?;
                        self.take(logits);
                        slides += 1;
                        continue;
                    }
                }
            }
            let logits = session.feed(&[next])?;
            self.take(logits);
        };
        Ok(Generation {
            new_ids,
            finish_reason,
            prompt_time,
            decode_time: decode_start.elapsed(),
            logprobs,
            context_slides: slides,
        })
    }

    /// Copies the model's logits into the working buffers.
    fn take(&mut self, logits: &[f32]) {
        self.work.copy_from_slice(logits);
        if self.opts.logprobs {
            self.raw.copy_from_slice(logits);
        }
    }
}
