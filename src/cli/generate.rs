//! `quill generate`: greedy continuation of a prompt, streamed to stdout.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::output::{print_flush, println};
use super::{read_text_file, ModelArg};
use crate::error::{Error, Result};
use crate::generate::{greedy, GenerateOptions};
use crate::tokenizer::StreamDecoder;

#[derive(Args, Debug)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The prompt to continue.
    #[arg(required_unless_present = "prompt_file", conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// Read the prompt from a UTF-8 file instead.
    #[arg(long, value_name = "PATH")]
    prompt_file: Option<PathBuf>,
    /// How many tokens to generate at most.
    #[arg(long, short = 'n', default_value_t = 50)]
    max_new_tokens: usize,
    /// KV-cache size in positions (default and maximum: the model's n_positions).
    #[arg(long, value_name = "N")]
    ctx: Option<usize>,
    /// Keep going past the end-of-text token.
    #[arg(long)]
    ignore_eos: bool,
    /// Print {"prompt_ids":[...],"new_ids":[...],"text":"..."} instead of streaming.
    #[arg(long)]
    json: bool,
    /// Print load time and tokens/s on stderr.
    #[arg(long)]
    stats: bool,
}

pub(crate) fn run(args: &GenerateArgs) -> Result<()> {
    let load_start = Instant::now();
    let (model, tokenizer) = args.model.load()?;
    let prompt = match (&args.prompt, &args.prompt_file) {
        (_, Some(path)) => read_text_file(path)?,
        (Some(p), None) => p.clone(),
        (None, None) => return Err(Error::usage("give a prompt, or --prompt-file PATH")),
    };
    let prompt_ids = tokenizer.encode(&prompt);
    if prompt_ids.is_empty() {
        return Err(Error::input("the prompt is empty: give some text to continue"));
    }
    let mut session = model.session(args.ctx)?;
    let load_time = load_start.elapsed();
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        eos_token_id: if args.ignore_eos { None } else { model.config.eos_token_id.or(tokenizer.eos_id()) },
    };

    let mut stream = StreamDecoder::new();
    if !args.json {
        print_flush(&prompt)?;
    }
    let generation = greedy(&mut session, &prompt_ids, &opts, |id| {
        if args.json {
            return Ok(());
        }
        let piece = stream.push(&tokenizer, id)?;
        print_flush(&piece)
    })?;

    if args.json {
        let text = tokenizer.decode(&generation.new_ids)?;
        let record = json!({ "prompt_ids": prompt_ids, "new_ids": generation.new_ids, "text": text });
        println(&record.to_string())?;
    } else {
        let rest = stream.finish();
        println(&rest)?;
    }
    if args.stats {
        let decoded = generation.new_ids.len().saturating_sub(1);
        let per_s = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        eprintln!(
            "load {:.0} ms | prompt {} tokens, {:.1} tokens/s | generated {} tokens, {:.1} tokens/s | stop: {}",
            load_time.as_secs_f64() * 1e3,
            prompt_ids.len(),
            per_s(prompt_ids.len(), generation.prompt_time.as_secs_f64()),
            generation.new_ids.len(),
            per_s(decoded, generation.decode_time.as_secs_f64()),
            generation.finish_reason.name()
        );
    }
    Ok(())
}
