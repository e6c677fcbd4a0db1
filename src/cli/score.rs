//! `quill score`: loss, perplexity and bits per byte of a text file (transformers' strided
//! sliding-window method; see `crate::score`), optionally saving the scored positions'
//! log-probabilities or comparing them with a saved base run (KL divergence, top-1 agreement).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::output::println;
use super::ModelArg;
use crate::error::{Error, Result};
use crate::math::log_softmax_f64_into;
use crate::model::LoadOptions;
use crate::score::{self, KlStats, LogProbHeader, LogProbReader, LogProbWriter};

#[derive(Args, Debug)]
pub(crate) struct ScoreArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The text file to score (UTF-8).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Window length in tokens (default: the model's n_positions).
    #[arg(long, value_name = "N")]
    ctx: Option<usize>,
    /// Tokens each window moves by (default: ctx / 2); 1 to ctx.
    #[arg(long, value_name = "S")]
    stride: Option<usize>,
    /// Print {"tokens_scored":N,"loss":...,"perplexity":...,"bits_per_byte":...,"tokens_per_s":...}.
    #[arg(long)]
    json: bool,
    /// Write the scored positions' log-probabilities to this file (see the README for the format).
    #[arg(long, value_name = "FILE")]
    save_logits: Option<PathBuf>,
    /// Compare with log-probabilities saved by --save-logits from a base model: mean KL(base ‖ this)
    /// and top-1 agreement.
    #[arg(long, value_name = "FILE")]
    kl_base: Option<PathBuf>,
    /// Tokens per forward pass (default: whole windows). 1 feeds one token at a time, as
    /// generation does after its prompt: it measures the decode kernels (e.g. q8_0 integer dots).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    batch: Option<u32>,
}

pub(crate) fn run(args: &ScoreArgs, load: &LoadOptions) -> Result<()> {
    if args.stride == Some(0) {
        return Err(Error::usage("--stride 0 is out of range: it must be 1 to --ctx"));
    }
    if let (Some(save), Some(base)) = (&args.save_logits, &args.kl_base) {
        if save == base || std::fs::canonicalize(save).ok().is_some_and(|s| std::fs::canonicalize(base).ok() == Some(s))
        {
            return Err(Error::usage("--save-logits and --kl-base name the same file"));
        }
    }
    let (model, tokenizer) = args.model.load(load)?;
    let (ctx, stride) = score::resolve_settings(args.ctx, args.stride, model.config.n_positions)?;
    let text = super::read_text_file(&args.file)?;
    if text.is_empty() {
        return Err(Error::bad_file(&args.file, "the text is empty: nothing to score"));
    }
    let ids = tokenizer.encode(&text);
    if ids.len() < 2 {
        return Err(Error::bad_file(
            &args.file,
            "the text is a single token: nothing to score (the first token is never predicted; 2 are needed)",
        ));
    }
    let windows = score::windows(ids.len(), ctx, stride);
    let positions = score::scored_positions(&windows);
    let mut bytes_scored = 0usize;
    for &p in &positions {
        bytes_scored += tokenizer.decode_bytes(&ids[p..=p])?.len();
    }
    let v = model.config.vocab_size;
    let header = LogProbHeader {
        vocab_size: v,
        ctx,
        stride,
        ids: ids.clone(),
        positions: positions.iter().map(|&p| p as u32).collect(),
    };

    let mut base = match &args.kl_base {
        Some(path) => {
            let reader = LogProbReader::open(path).map_err(with_save_logits_hint)?;
            header.check_same_stream(&reader.header, path)?;
            Some(reader)
        }
        None => None,
    };
    let mut save = args.save_logits.as_deref().map(|p| LogProbWriter::create(p, &header)).transpose()?;
    let (mut logprobs, mut base_row) = (vec![0f32; v], vec![0f32; if base.is_some() { v } else { 0 }]);
    let mut kl = KlStats::default();
    let mut progress = Progress::new(positions.len());

    let start = Instant::now();
    let totals = score::score(&model, &ids, ctx, stride, args.batch.map(|b| b as usize), |s| {
        if save.is_some() || base.is_some() {
            log_softmax_f64_into(s.logits, &mut logprobs);
            if let Some(w) = save.as_mut() {
                w.write_row(&logprobs)?;
            }
            if let Some(b) = base.as_mut() {
                b.read_row(&mut base_row)?;
                kl.add(&base_row, &logprobs, s.target);
            }
        }
        progress.tick(start);
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    progress.clear();
    if let Some(w) = save {
        w.finish()?;
    }
    debug_assert_eq!(totals.tokens_scored, positions.len());

    let loss = totals.loss();
    let bits_per_byte = totals.nll_sum / std::f64::consts::LN_2 / bytes_scored as f64;
    let tokens_per_s = totals.tokens_scored as f64 / seconds.max(1e-9);
    if args.json {
        let mut out = json!({
            "tokens_scored": totals.tokens_scored,
            "loss": loss,
            "perplexity": loss.exp(),
            "bits_per_byte": bits_per_byte,
            "tokens_per_s": tokens_per_s,
        });
        if base.is_some() {
            let obj = out.as_object_mut().unwrap();
            obj.insert("kl_divergence".into(), json!(kl.kl_mean()));
            obj.insert("kl_max".into(), json!(kl.kl_max));
            obj.insert("top1_agreement".into(), json!(kl.top1_agreement()));
            obj.insert("base_loss".into(), json!(kl.base_loss()));
            obj.insert("base_perplexity".into(), json!(kl.base_loss().exp()));
        }
        return println(&out.to_string());
    }
    let mut report = format!(
        "tokens scored    {} of {} (ctx {ctx}, stride {stride}, {} windows)\n\
         loss             {loss:.6} nats/token\n\
         perplexity       {:.4}\n\
         bits per byte    {bits_per_byte:.6} ({bytes_scored} bytes scored)\n\
         tokens/s         {tokens_per_s:.1}",
        totals.tokens_scored,
        ids.len(),
        totals.windows,
        loss.exp()
    );
    if base.is_some() {
        report.push_str(&format!(
            "\nKL(base || this) mean {:.6}, max {:.6} nats\n\
             top-1 agreement  {:.4}% ({} of {})\n\
             base loss        {:.6} (perplexity {:.4})",
            kl.kl_mean(),
            kl.kl_max,
            100.0 * kl.top1_agreement(),
            kl.top1_same,
            kl.positions,
            kl.base_loss(),
            kl.base_loss().exp()
        ));
    }
    println(&report)
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    total: usize,
    done: usize,
    on: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress { total, done: 0, on: std::io::stderr().is_terminal(), last: None }
    }

    fn tick(&mut self, start: Instant) {
        self.done += 1;
        if !self.on {
            return;
        }
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < Duration::from_millis(100)) && self.done < self.total {
            return;
        }
        self.last = Some(now);
        const WIDTH: usize = 30;
        let filled = WIDTH * self.done / self.total.max(1);
        let rate = self.done as f64 / (now - start).as_secs_f64().max(1e-9);
        let _ = write!(
            std::io::stderr().lock(),
            "\r[{}{}] {:3}% {}/{} tokens, {rate:.0} tokens/s",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            100 * self.done / self.total.max(1),
            self.done,
            self.total
        );
    }

    fn clear(&self) {
        if self.on && self.last.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// A file that is not a log-probability file at all says which command writes them.
fn with_save_logits_hint(e: Error) -> Error {
    match e {
        Error::BadFile { path, msg } if msg.starts_with("not a quill log-probability file (") && msg.ends_with(')') => {
            let msg = format!("{}; write one with quill score --save-logits)", &msg[..msg.len() - 1]);
            Error::BadFile { path, msg }
        }
        e => e,
    }
}
