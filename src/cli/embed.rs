//! `quill embed`: a vector for a text from the base model's final hidden states (transformers'
//! `GPT2Model(...).last_hidden_state`, after ln_f), mean-pooled or the last token's.

use clap::{Args, ValueEnum};
use serde_json::json;

use super::output::println;
use super::ModelArg;
use crate::error::{Error, Result};
use crate::model::LoadOptions;
use crate::model::{ForwardInput, LogitsWanted, Model};

#[derive(Args, Debug)]
pub(crate) struct EmbedArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The texts to embed, one vector each.
    #[arg(required = true, value_name = "TEXT")]
    texts: Vec<String>,
    /// How to pool the per-token states into one vector.
    #[arg(long, value_enum, default_value_t = Pool::Mean)]
    pool: Pool,
    /// Print one JSON object per text: {"text","tokens","pool","dim","embedding":[...]}.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Pool {
    /// The mean over every token's final hidden state.
    Mean,
    /// The final hidden state of the last token (what a causal model has read all of the text by).
    Last,
}

pub(crate) fn run(args: &EmbedArgs, load: &LoadOptions) -> Result<()> {
    let (model, tokenizer) = args.model.load(load)?;
    for text in &args.texts {
        let ids = tokenizer.encode(text);
        let vector = embed(&model, &ids, args.pool)?;
        let pool = match args.pool {
            Pool::Mean => "mean",
            Pool::Last => "last",
        };
        if args.json {
            let record =
                json!({ "text": text, "tokens": ids.len(), "pool": pool, "dim": vector.len(), "embedding": vector });
            println(&record.to_string())?;
        } else {
            let numbers: Vec<String> = vector.iter().map(|v| format!("{v:.6}")).collect();
            println(&numbers.join(" "))?;
        }
    }
    Ok(())
}

/// The pooled final hidden state of `ids`.
pub(crate) fn embed(model: &Model, ids: &[u32], pool: Pool) -> Result<Vec<f32>> {
    if ids.is_empty() {
        return Err(Error::input("the text is empty: there is no token to embed"));
    }
    let n = model.config.n_positions;
    if ids.len() > n {
        return Err(Error::input(format!(
            "the text has {} tokens; the model sees at most {n} (n_positions): embed a shorter text",
            ids.len()
        )));
    }
    let mut session = model.session(Some(ids.len()))?;
    let out = session.forward(&ForwardInput {
        input_ids: Some(ids),
        logits: LogitsWanted::None,
        output_hidden_states: true,
        ..Default::default()
    })?;
    let hidden = out.last_hidden_state().expect("asked for");
    let c = model.config.n_embd;
    Ok(match pool {
        Pool::Last => hidden[hidden.len() - c..].to_vec(),
        Pool::Mean => {
            let mut sum = vec![0.0f64; c];
            for row in hidden.chunks_exact(c) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
            }
            sum.iter().map(|s| (s / ids.len() as f64) as f32).collect()
        }
    })
}
