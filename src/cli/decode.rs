//! `quill decode`: token ids → text, with the tokenizer's `errors` mode (transformers'
//! `tokenizer.decode(ids, skip_special_tokens=...)`).

use std::io::Read;

use clap::Args;
use serde_json::Value;

use super::output::{parse_ids, println};
use super::ModelArg;
use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub(crate) struct DecodeArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The token ids, e.g. 464,3290,318.
    #[arg(long, value_name = "ID,ID,...", conflicts_with = "json", required_unless_present = "json")]
    ids: Option<String>,
    /// Read the ids from stdin as JSON: a list of ids, or an object with "ids" (what
    /// `quill tokenize --json` prints).
    #[arg(long)]
    json: bool,
    /// Leave out special tokens (bos, eos, unk, pad, additional_special_tokens).
    #[arg(long)]
    skip_special_tokens: bool,
}

pub(crate) fn run(args: &DecodeArgs) -> Result<()> {
    let tokenizer = args.model.load_tokenizer()?;
    let ids = match &args.ids {
        Some(list) => parse_ids(list)?,
        None => ids_from_json_stdin()?,
    };
    let text =
        if args.skip_special_tokens { tokenizer.decode_skipping_special(&ids)? } else { tokenizer.decode(&ids)? };
    println(&text)
}

fn ids_from_json_stdin() -> Result<Vec<u32>> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::input(format!("stdin: cannot read the JSON ids ({e})")))?;
    let value: Value =
        serde_json::from_str(&input).map_err(|e| Error::input(format!("stdin: not valid JSON ({e})")))?;
    let list = match &value {
        Value::Array(items) => items,
        Value::Object(o) => match o.get("ids") {
            Some(Value::Array(items)) => items,
            _ => return Err(Error::input("stdin: a JSON object needs an \"ids\" list")),
        },
        _ => return Err(Error::input("stdin: expected a JSON list of token ids, or {\"ids\": [...]}")),
    };
    list.iter()
        .map(|v| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| Error::input(format!("stdin: {v} is not a token id")))
        })
        .collect()
}
