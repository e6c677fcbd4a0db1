//! Reading IN: a Hugging Face model folder, a Quill file this tool wrote earlier, or an original
//! OpenAI GPT-2 TensorFlow checkpoint folder ([`quill::tf`]).
//!
//! All end up as the same description: the parsed config, the mapped checkpoint, the texts to
//! carry into the output's metadata verbatim, and a map from the names the Quill file uses to the
//! names in the checkpoint. Whether the matrices are already `(out, in)` is the one difference the
//! planner must know about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quill::checkpoint::{Checkpoint, DType, MatrixOrder, TensorF32};
use quill::config::ModelConfig;

use quill::tf;

use crate::error::{Error, Result};
pub use crate::parts::{parse_config, read_text, Entry, Texts, TokenizerTexts};

/// Metadata keys of the Quill file format, shared with the loader that reads them.
pub use quill::quill_file as keys;

/// A tensor's f32 values: mapped or widened by quill, or read from a TensorFlow checkpoint.
pub enum Values {
    Quill(TensorF32),
    Owned(Vec<f32>),
}

impl Values {
    pub fn data(&self) -> &[f32] {
        match self {
            Values::Quill(t) => t.data(),
            Values::Owned(v) => v,
        }
    }
}

/// Where the tensors are: safetensors files (a folder's or a Quill file), which quill maps, or a
/// TensorFlow checkpoint, which [`tf`] reads.
pub enum Weights {
    Safetensors(Checkpoint),
    TensorFlow(tf::Checkpoint),
}

impl Weights {
    pub fn get(&self, name: &str) -> Option<Entry> {
        match self {
            Weights::Safetensors(c) => {
                c.get(name).map(|e| Entry { shape: e.shape.clone(), dtype: e.dtype, dtype_name: e.dtype_name.clone() })
            }
            Weights::TensorFlow(c) => {
                c.get(name).map(|e| Entry { shape: e.shape, dtype: e.dtype, dtype_name: e.dtype_name })
            }
        }
    }

    /// The tensor `name` as f32 with exactly `shape`.
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Values> {
        match self {
            Weights::Safetensors(c) => Ok(Values::Quill(c.tensor_f32(name, shape)?)),
            Weights::TensorFlow(c) => Ok(Values::Owned(c.tensor_f32(name, shape)?)),
        }
    }

    /// Bytes of the files the tensors come from.
    pub fn file_bytes(&self) -> u64 {
        match self {
            Weights::Safetensors(c) => c.file_bytes(),
            Weights::TensorFlow(c) => c.file_bytes(),
        }
    }

    /// The files read.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Weights::Safetensors(c) => c.paths().into_iter().map(Path::to_path_buf).collect(),
            Weights::TensorFlow(c) => c.paths(),
        }
    }
}

pub struct Source {
    /// IN as given, for messages.
    pub path: PathBuf,
    pub config: ModelConfig,
    pub checkpoint: Weights,
    pub texts: Texts,
    /// Quill name → checkpoint name. save_pretrained prefixes the base model's tensors with
    /// `transformer.`; the hub's gpt2 files and Quill files use bare names. Legacy attention
    /// buffers are already left out.
    pub names: BTreeMap<String, String>,
    /// How the matrices are stored: as transformers saves them (a folder, a TensorFlow
    /// checkpoint) or all `(out, in)` already (a Quill file).
    pub order: MatrixOrder,
    /// Notes for the user that do not stop the conversion.
    pub warnings: Vec<String>,
}

impl Source {
    /// A TensorFlow checkpoint folder as a source (Conv1D matrices `(in, out)`, as in a folder).
    /// Its tokenizer files must be there: OpenAI ships them beside the checkpoint, and a file
    /// without a tokenizer could not generate.
    fn from_tf(folder: tf::Folder) -> Result<Source> {
        if !folder.missing_tokenizer_files.is_empty() {
            return Err(Error::runtime(format!(
                "{}: {} missing: an OpenAI GPT-2 checkpoint folder has {} and {} (GPT-2's vocab.json and \
                 merges.txt) beside hparams.json; copy them in and run again",
                folder.path.display(),
                match folder.missing_tokenizer_files.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(" and ")),
                },
                tf::VOCAB,
                tf::MERGES
            )));
        }
        let texts = Texts {
            config: folder.config_json,
            generation_config: None,
            tokenizer: TokenizerTexts::VocabMerges {
                vocab: read_text(&folder.path.join(tf::VOCAB))?,
                merges: read_text(&folder.path.join(tf::MERGES))?,
            },
        };
        Ok(Source {
            path: folder.path,
            config: folder.config,
            checkpoint: Weights::TensorFlow(folder.checkpoint),
            texts,
            names: folder.names,
            order: MatrixOrder::Transformers,
            warnings: folder.warnings,
        })
    }

    pub fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        if meta.is_dir() && tf::is_checkpoint_folder(path) {
            Source::from_tf(tf::open_folder(path)?)
        } else if meta.is_dir() {
            open_folder(path)
        } else {
            open_quill_file(path)
        }
    }

    /// The files the tensors are read from (OUT must not be one of them).
    pub fn files(&self) -> Vec<PathBuf> {
        self.checkpoint.paths()
    }
}

/// The non-weight buffers transformers keeps in old checkpoints (causal masks); nothing reads them.
fn is_legacy_buffer(name: &str) -> bool {
    [".attn.bias", ".attn.masked_bias", ".attn.attention.bias", ".attn.attention.masked_bias"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn read_optional_text(path: &Path) -> Result<Option<String>> {
    if path.is_file() {
        read_text(path).map(Some)
    } else {
        Ok(None)
    }
}

fn open_folder(dir: &Path) -> Result<Source> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        let tf_half = match (dir.join(tf::INDEX).is_file(), dir.join(tf::HPARAMS).is_file()) {
            (true, false) => format!("; {} without {}", tf::INDEX, tf::HPARAMS),
            (false, true) => format!("; {} without {}", tf::HPARAMS, tf::INDEX),
            _ => String::new(),
        };
        return Err(Error::runtime(format!(
            "{}: no config.json in this folder{tf_half} (expected a Hugging Face GPT-2 or GPT-Neo model folder, or \
             an OpenAI GPT-2 TensorFlow checkpoint folder with {} and {})",
            dir.display(),
            tf::HPARAMS,
            tf::INDEX
        )));
    }
    let config_text = read_text(&config_path)?;
    let config = parse_config(&config_text, &config_path.display().to_string())?;
    let generation_config = read_optional_text(&dir.join("generation_config.json"))?;

    let mut warnings = Vec::new();
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    let tokenizer = if vocab.is_file() && merges.is_file() {
        TokenizerTexts::VocabMerges { vocab: read_text(&vocab)?, merges: read_text(&merges)? }
    } else if let Some(json) = read_optional_text(&dir.join("tokenizer.json"))? {
        TokenizerTexts::Json(json)
    } else {
        warnings.push(format!(
            "{}: no tokenizer (vocab.json + merges.txt, or tokenizer.json); the output will have none",
            dir.display()
        ));
        TokenizerTexts::None
    };

    let checkpoint = Checkpoint::open_dir(dir)?;
    let mut names = BTreeMap::new();
    for name in checkpoint.names() {
        let bare = name.strip_prefix("transformer.").unwrap_or(name);
        if is_legacy_buffer(bare) {
            continue;
        }
        if let Some(other) = names.insert(bare.to_string(), name.to_string()) {
            return Err(Error::runtime(format!(
                "{}: tensor '{bare}' appears twice, as '{other}' and as '{name}'",
                dir.display()
            )));
        }
    }
    Ok(Source {
        path: dir.to_path_buf(),
        config,
        checkpoint: Weights::Safetensors(checkpoint),
        texts: Texts { config: config_text, generation_config, tokenizer },
        names,
        order: MatrixOrder::Transformers,
        warnings,
    })
}

fn open_quill_file(path: &Path) -> Result<Source> {
    let checkpoint = Checkpoint::open_files(&[path.to_path_buf()])?;
    let meta = checkpoint.metadata();
    let at = path.display();
    match meta.get(keys::FORMAT).map(String::as_str) {
        Some(keys::VERSION | keys::VERSION_1) => {}
        Some(v) => {
            return Err(Error::runtime(format!(
                "{at}: Quill file format version {v} is not supported (this quantize reads versions {} and {}); \
                 quantize from the model's folder instead",
                keys::VERSION_1,
                keys::VERSION
            )))
        }
        None => {
            return Err(Error::runtime(format!(
                "{at}: not a Quill file (no '{}' in its metadata): give the model's folder, with config.json, instead",
                keys::FORMAT
            )))
        }
    }
    let required =
        |key: &str| meta.get(key).cloned().ok_or_else(|| Error::runtime(format!("{at}: metadata '{key}' is missing")));
    for key in [keys::TYPE, keys::LM_HEAD] {
        match required(key)?.as_str() {
            "f32" | "f16" => {}
            quantized => {
                let what = if key == keys::TYPE { "" } else { " (its wte / lm_head)" };
                return Err(Error::runtime(format!(
                    "{at}: already {quantized}{what}; quantize from the f32/f16 source instead"
                )));
            }
        }
    }
    let config_text = required(keys::CONFIG)?;
    let config = parse_config(&config_text, &format!("{at}: metadata '{}'", keys::CONFIG))?;
    let tokenizer = match (meta.get(keys::VOCAB), meta.get(keys::MERGES), meta.get(keys::TOKENIZER_JSON)) {
        (Some(vocab), Some(merges), _) => TokenizerTexts::VocabMerges { vocab: vocab.clone(), merges: merges.clone() },
        (_, _, Some(json)) => TokenizerTexts::Json(json.clone()),
        _ => TokenizerTexts::None,
    };
    let texts = Texts { config: config_text, generation_config: meta.get(keys::GENERATION_CONFIG).cloned(), tokenizer };

    let mut names = BTreeMap::new();
    for name in checkpoint.names() {
        let entry = checkpoint.get(name).expect("listed names exist");
        if !matches!(entry.dtype, Some(DType::F32 | DType::F16 | DType::BF16)) {
            // Only q8_0 files hold int8 tensors, and those were refused above.
            return Err(Error::runtime(format!(
                "{at}: tensor '{name}' is {}; quantize from the f32/f16 source instead",
                entry.dtype_name
            )));
        }
        names.insert(name.to_string(), name.to_string());
    }
    let warnings = match texts.tokenizer {
        TokenizerTexts::None => vec![format!("{at}: no tokenizer in the metadata; the output will have none")],
        _ => Vec::new(),
    };
    Ok(Source {
        path: path.to_path_buf(),
        config,
        checkpoint: Weights::Safetensors(checkpoint),
        texts,
        names,
        order: MatrixOrder::OutIn,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_buffers_only() {
        for name in
            ["h.0.attn.bias", "h.3.attn.masked_bias", "h.1.attn.attention.bias", "h.1.attn.attention.masked_bias"]
        {
            assert!(is_legacy_buffer(name), "{name}");
        }
        for name in ["h.0.attn.c_attn.bias", "h.0.attn.c_proj.bias", "h.1.attn.attention.out_proj.bias", "ln_f.bias"] {
            assert!(!is_legacy_buffer(name), "{name}");
        }
    }
}
