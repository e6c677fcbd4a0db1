//! `quill tokenize`: text → token ids (and, with `--tokens`, their GPT-2 token strings).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::output::println;
use super::{read_text_file, ModelArg};
use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub(crate) struct TokenizeArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The text to tokenize.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    text: Option<String>,
    /// Read the text from a UTF-8 file instead (long files are encoded on --threads threads).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Also show each token as GPT-2 writes it (e.g. 'Ġlong').
    #[arg(long)]
    tokens: bool,
    /// Print {"ids":[...]} (and "tokens" with --tokens).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &TokenizeArgs) -> Result<()> {
    let tokenizer = args.model.load_tokenizer()?;
    let text = match (&args.text, &args.file) {
        (_, Some(path)) => read_text_file(path)?,
        (Some(text), None) => text.clone(),
        (None, None) => return Err(Error::usage("give the text to tokenize, or --file PATH")),
    };
    // Long texts (--file) are cut and encoded on the --threads workers; same ids as `encode`.
    let ids = tokenizer.encode_parallel(&text);
    let tokens: Vec<&str> = ids.iter().map(|&id| tokenizer.id_to_token(id).unwrap_or("")).collect();
    if args.json {
        let mut record = json!({ "ids": ids });
        if args.tokens {
            record["tokens"] = json!(tokens);
        }
        return println(&record.to_string());
    }
    if args.tokens {
        let mut table = String::new();
        for (id, tok) in ids.iter().zip(&tokens) {
            table.push_str(&format!("{id:>7}  {tok:?}\n"));
        }
        table.push_str(&format!("{} tokens", ids.len()));
        println(&table)
    } else {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        println(&list.join(" "))
    }
}
