//! Turning logits into tokens. Generation v1: greedy decoding with streaming and stop rules.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::Session;

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Stop after producing this token (it is kept in the output, as transformers does).
    pub eos_token_id: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` were produced.
    Length,
    /// The end-of-sequence token was produced.
    Eos,
    /// The context (KV arena) is full.
    ContextFull,
}

impl FinishReason {
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Eos => "eos",
            FinishReason::ContextFull => "context_full",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub new_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_time: Duration,
    /// Time spent producing the tokens after the first (each one a decode step).
    pub decode_time: Duration,
}

/// Index of the largest logit; the first one on ties, as `torch.argmax`.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding from `prompt` on a fresh or continued session; `on_token` sees each new token
/// as soon as it is chosen (for streaming) and may stop generation by returning an error.
pub fn greedy(
    session: &mut Session,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Generation> {
    if session.len() + prompt.len() > session.capacity() {
        return Err(Error::input(format!(
            "the prompt has {} tokens but the context holds {} (n_positions {}{}): shorten the prompt",
            prompt.len(),
            session.capacity() - session.len(),
            session.model().config.n_positions,
            if session.capacity() < session.model().config.n_positions { ", or raise --ctx" } else { "" }
        )));
    }
    let start = Instant::now();
    let mut next = argmax(session.feed(prompt)?);
    let prompt_time = start.elapsed();
    let decode_start = Instant::now();
    let mut new_ids = Vec::with_capacity(opts.max_new_tokens);
    let finish_reason = loop {
        if new_ids.len() == opts.max_new_tokens {
            break FinishReason::Length;
        }
        new_ids.push(next);
        on_token(next)?;
        if Some(next) == opts.eos_token_id {
            break FinishReason::Eos;
        }
        if new_ids.len() == opts.max_new_tokens {
            break FinishReason::Length;
        }
        if session.len() == session.capacity() {
            break FinishReason::ContextFull;
        }
        next = argmax(session.feed(&[next])?);
    };
    Ok(Generation { new_ids, finish_reason, prompt_time, decode_time: decode_start.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[-5.0]), 0);
    }
}
