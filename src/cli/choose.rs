//! `quill choose`: which of several candidate texts a `GPT2DoubleHeadsModel` checkpoint's
//! multiple-choice head scores best.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::output::println;
use super::{read_text_file, ModelArg};
use crate::config::{SummaryConfig, SummaryType};
use crate::error::{Error, Result};
use crate::model::LoadOptions;
use crate::model::{ForwardInput, LogitsWanted, MultipleChoiceHead};

#[derive(Args, Debug)]
pub(crate) struct ChooseArgs {
    #[command(flatten)]
    model: ModelArg,
    /// A UTF-8 file with one candidate text per line (blank lines are skipped).
    #[arg(long, value_name = "FILE")]
    choices: PathBuf,
    /// Print {"choices":[{"text","tokens","mc_logit","prob"}...],"best":i}.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &ChooseArgs, load: &LoadOptions) -> Result<()> {
    let (model, tokenizer) = args.model.load(load)?;
    if let Some(summary) = &model.config.summary {
        check_one_score_per_choice(summary, model.config.n_embd)?;
    }
    let head = MultipleChoiceHead::load(&model)?;
    let text = read_text_file(&args.choices)?;
    let texts: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if texts.len() < 2 {
        return Err(Error::bad_file(&args.choices, "needs at least two candidate lines"));
    }
    let encoded: Vec<Vec<u32>> = texts.iter().map(|t| tokenizer.encode(t)).collect();
    let seq = encoded.iter().map(Vec::len).max().unwrap_or(0);
    if let Some(i) = encoded.iter().position(Vec::is_empty) {
        return Err(Error::bad_file(&args.choices, format!("candidate {} has no tokens", i + 1)));
    }
    if seq > model.config.n_positions {
        return Err(Error::input(format!(
            "the longest candidate has {seq} tokens; the model sees at most {} (n_positions)",
            model.config.n_positions
        )));
    }
    // One row per candidate, right-padded with <|endoftext|> (padding after a candidate's last
    // token cannot change its score); the head reads each candidate's last real token.
    let pad = model.config.eos_token_id.unwrap_or(0);
    let ids: Vec<u32> =
        encoded.iter().flat_map(|e| e.iter().copied().chain(std::iter::repeat(pad)).take(seq)).collect();
    let last: Vec<u32> = encoded.iter().map(|e| e.len() as u32 - 1).collect();
    let mut past = model.sessions(texts.len(), Some(seq))?;
    let input =
        ForwardInput { batch: texts.len(), input_ids: Some(&ids), logits: LogitsWanted::None, ..Default::default() };
    let out = model.forward_double_heads(&head, &mut past, &input, texts.len(), Some(&last), None)?;
    let scores = &out.mc_logits;
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = scores.iter().map(|&s| ((s - max) as f64).exp()).sum();
    let probs: Vec<f64> = scores.iter().map(|&s| ((s - max) as f64).exp() / sum).collect();
    let best = (0..scores.len()).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
    if args.json {
        let choices: Vec<_> = (0..texts.len())
            .map(|i| json!({"text": texts[i], "tokens": encoded[i].len(), "mc_logit": scores[i], "prob": probs[i]}))
            .collect();
        return println(&json!({ "choices": choices, "best": best }).to_string());
    }
    let mut table = String::new();
    for i in 0..texts.len() {
        let mark = if i == best { "*" } else { " " };
        table.push_str(&format!("{mark} {:>10.4}  {:>6.2}%  {}\n", scores[i], probs[i] * 100.0, texts[i]));
    }
    println(table.trim_end())
}

/// Refuses a head whose `mc_logits` are not one score per choice, which is what transformers'
/// `GPT2DoubleHeadsModel` gives only with `summary_type` cls_index and a projection to labels:
/// without the projection, or projecting to n_embd, each choice gets an n_embd-wide vector; the
/// other summary types index the choices' dimension as if it were the sequence (a summary per
/// position, not per choice). Checked against transformers for every combination.
fn check_one_score_per_choice(summary: &SummaryConfig, n_embd: usize) -> Result<()> {
    const NEEDS: &str = "`quill choose` needs summary_type cls_index, summary_use_proj true and \
                         summary_proj_to_labels true (transformers' multiple-choice head)";
    let why = if summary.kind != SummaryType::ClsIndex {
        format!(
            "this model's summary_type is {}: transformers' head then summarizes the choices' dimension as if it \
             were the sequence, and its mc_logits are not one score per choice",
            summary.kind.name()
        )
    } else if !summary.use_proj {
        format!(
            "this model's summary_use_proj is false: its head gives each choice a hidden state of {n_embd} \
             values (transformers' mc_logits [choices, {n_embd}]), not a score"
        )
    } else if !summary.proj_to_labels {
        format!(
            "this model's summary_proj_to_labels is false: its head projects each choice to {n_embd} values \
             (n_embd; transformers' mc_logits [choices, {n_embd}]), not to one score"
        )
    } else {
        return Ok(());
    };
    Err(Error::usage(format!("{why}; {NEEDS}")))
}
