//! What every kind of source yields besides its tensors: the texts carried into the output's
//! metadata, a tensor's description, and reading and parsing those texts. A leaf `source` builds
//! on.

use std::path::Path;

use quill::checkpoint::DType;
use quill::config::ModelConfig;

use crate::error::{Error, Result};

/// The tokenizer files, as text, in the form the folder had them.
#[derive(Clone, Debug)]
pub enum TokenizerTexts {
    VocabMerges {
        vocab: String,
        merges: String,
    },
    Json(String),
    /// Some test folders carry weights only; the output then has no tokenizer either.
    None,
}

/// Everything the output's metadata carries besides the format, type and lm_head keys.
#[derive(Clone, Debug)]
pub struct Texts {
    pub config: String,
    pub generation_config: Option<String>,
    pub tokenizer: TokenizerTexts,
}

/// What the planner needs to know about one tensor of the source.
#[derive(Clone, Debug)]
pub struct Entry {
    pub shape: Vec<usize>,
    /// `None` for types that are not floats.
    pub dtype: Option<DType>,
    /// The type as the source names it, for messages.
    pub dtype_name: String,
}

/// Reads a UTF-8 text file, naming it in errors.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::runtime(format!(
            "{}: not UTF-8 text (bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Parses a `config.json` text; `what` names it in errors.
pub fn parse_config(text: &str, what: &str) -> Result<ModelConfig> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::runtime(format!("{what}: not valid JSON: {e}")))?;
    ModelConfig::from_json(&json).map_err(|msg| Error::runtime(format!("{what}: {msg}")))
}
