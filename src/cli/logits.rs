//! `quill logits`: the next-token distribution after a prompt.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::output::{parse_ids, println};
use super::{read_prompts, ModelArg};
use crate::error::{Error, Result};
use crate::math::softmax_f64;
use crate::model::{LoadOptions, Model};
use crate::tokenizer::Tokenizer;

#[derive(Args, Debug)]
pub(crate) struct LogitsArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The prompt text.
    #[arg(long, conflicts_with_all = ["ids", "prompts_file"], required_unless_present_any = ["ids", "prompts_file"])]
    prompt: Option<String>,
    /// The prompt as token ids, e.g. 464,3290,318.
    #[arg(long, value_name = "ID,ID,...", conflicts_with = "prompts_file")]
    ids: Option<String>,
    /// Every prompt of this file (one per line; `.jsonl`: a JSON string or {"prompt": ...} per
    /// line), each on a fresh context, in order.
    #[arg(long, value_name = "PATH")]
    prompts_file: Option<PathBuf>,
    /// How many of the most likely next tokens to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Print {"ids":[...],"top":[[id,logit],...],"probs":[p,...]} ("index" too with --prompts-file).
    #[arg(long)]
    json: bool,
    /// Write all last-position logits to this file as little-endian f32.
    #[arg(long, value_name = "FILE")]
    raw_out: Option<PathBuf>,
}

pub(crate) fn run(args: &LogitsArgs, load: &LoadOptions) -> Result<()> {
    // Token ids need no tokenizer: a folder of weights only will do (the table then shows no text).
    if let Some(list) = &args.ids {
        let ids = parse_ids(list)?;
        let (model, tokenizer) = args.model.load_tokenizer_if_any(load)?;
        return show(args, &model, tokenizer.as_ref(), &ids, None);
    }
    let (model, tokenizer) = args.model.load(load)?;
    match (&args.prompt, &args.prompts_file) {
        (Some(text), _) => show(args, &model, Some(&tokenizer), &tokenizer.encode(text), None),
        (None, Some(path)) => {
            for (i, text) in read_prompts(path)?.iter().enumerate() {
                show(args, &model, Some(&tokenizer), &tokenizer.encode(text), Some(i))
                    .map_err(|e| e.within(format!("--prompts-file line {}", i + 1)))?;
            }
            Ok(())
        }
        (None, None) => Err(Error::usage("give --prompt TEXT, --ids ID,ID,... or --prompts-file PATH")),
    }
}

/// The top logits after `ids` (row `row` of a prompts file), as a table or a JSON record.
fn show(
    args: &LogitsArgs,
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    ids: &[u32],
    row: Option<usize>,
) -> Result<()> {
    let mut session = model.session_for_whole(ids, "prompt")?;
    let logits = session.feed(ids)?;
    if let Some(path) = &args.raw_out {
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))?;
    }
    let top = top_k(logits, args.top);
    let probs = softmax_f64(logits);
    if args.json {
        let pairs: Vec<_> = top.iter().map(|&(id, logit)| json!([id, logit])).collect();
        let top_probs: Vec<f64> = top.iter().map(|&(id, _)| probs[id as usize]).collect();
        let mut record = json!({ "ids": ids, "top": pairs, "probs": top_probs });
        if let Some(i) = row {
            record["index"] = json!(i);
        }
        return println(&record.to_string());
    }
    let mut table = row.map(|i| format!("--- row {i} ---\n")).unwrap_or_default();
    table.push_str(&format!("{:>4}  {:>7}  {:<20}  {:>10}  {:>8}\n", "rank", "id", "token", "logit", "prob"));
    for (rank, &(id, logit)) in top.iter().enumerate() {
        let text = tokenizer.and_then(|t| t.decode(&[id]).ok()).unwrap_or_default();
        table.push_str(&format!(
            "{:>4}  {id:>7}  {:<20}  {logit:>10.4}  {:>7.2}%\n",
            rank + 1,
            format!("{text:?}"),
            probs[id as usize] * 100.0
        ));
    }
    println(table.trim_end())
}

/// The `k` largest logits as (id, logit), largest first; ties keep the lower id first.
pub(crate) fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    order.into_iter().take(k).map(|id| (id, logits[id as usize])).collect()
}
