//! `quill embed`: a vector per text ([`crate::embed`]), printed as numbers or JSON lines.

use clap::{Args, ValueEnum};
use serde_json::json;

use super::output::println;
use super::ModelArg;
use crate::embed::{embed, Pool};
use crate::error::Result;
use crate::model::LoadOptions;

#[derive(Args, Debug)]
pub(crate) struct EmbedArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The texts to embed, one vector each.
    #[arg(required = true, value_name = "TEXT")]
    texts: Vec<String>,
    /// How to pool the per-token states into one vector.
    #[arg(long, value_enum, default_value_t = PoolArg::Mean)]
    pool: PoolArg,
    /// Print one JSON object per text: {"text","tokens","pool","dim","embedding":[...]}.
    #[arg(long)]
    json: bool,
}

/// `--pool`: the library's [`Pool`], by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PoolArg {
    /// The mean over every token's final hidden state.
    Mean,
    /// The final hidden state of the last token (what a causal model has read all of the text by).
    Last,
}

impl From<PoolArg> for Pool {
    fn from(p: PoolArg) -> Pool {
        match p {
            PoolArg::Mean => Pool::Mean,
            PoolArg::Last => Pool::Last,
        }
    }
}

pub(crate) fn run(args: &EmbedArgs, load: &LoadOptions) -> Result<()> {
    let (model, tokenizer) = args.model.load(load)?;
    for text in &args.texts {
        let ids = tokenizer.encode(text);
        let pool = Pool::from(args.pool);
        let vector = embed(&model, &ids, pool)?;
        if args.json {
            let record = json!({ "text": text, "tokens": ids.len(), "pool": pool.name(), "dim": vector.len(), "embedding": vector });
            println(&record.to_string())?;
        } else {
            let numbers: Vec<String> = vector.iter().map(|v| format!("{v:.6}")).collect();
            println(&numbers.join(" "))?;
        }
    }
    Ok(())
}
