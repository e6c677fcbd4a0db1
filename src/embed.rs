//! A vector for a text from the base model's final hidden states (transformers'
//! `GPT2Model(...).last_hidden_state`, after ln_f), mean-pooled or the last token's.

use crate::error::Result;
use crate::model::{ForwardInput, LogitsWanted, Model};

/// How the per-token final hidden states become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// The mean over every token's final hidden state (in f64, rounded once).
    Mean,
    /// The final hidden state of the last token (what a causal model has read all of the text by).
    Last,
}

impl Pool {
    pub fn name(self) -> &'static str {
        match self {
            Pool::Mean => "mean",
            Pool::Last => "last",
        }
    }
}

/// The pooled final hidden state of `ids`: `n_embd` numbers.
///
/// ```
/// use quill::{embed, LoadOptions, Model, Pool};
/// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2-hub");
/// let model = Model::load(&dir, &LoadOptions::default())?;
/// let ids = [464, 3290, 318];
/// let mean = embed(&model, &ids, Pool::Mean)?;
/// let last = embed(&model, &ids, Pool::Last)?;
/// assert_eq!(mean.len(), model.config().n_embd);
/// assert_ne!(mean, last);
/// # Ok::<(), quill::Error>(())
/// ```
pub fn embed(model: &Model, ids: &[u32], pool: Pool) -> Result<Vec<f32>> {
    let mut session = model.session_for_whole(ids, "text")?;
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
