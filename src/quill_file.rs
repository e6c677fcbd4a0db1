//! A complete model in one Quill file, as `quantize` writes it: a safetensors file whose
//! `__metadata__` carries the format version, the weight type, the config, the tokenizer and
//! the generation defaults, and whose matrices are all stored `(out, in)` (f32, f16, q8_0 as int8
//! plus a `.scale` tensor of f16 block scales, or a block format: `U8` rows of GGUF's blocks, the
//! format named per tensor in [`BLOCKS`]). Everything is read in place from the one
//! mapping; nothing else is needed to run it.

use std::collections::HashMap;
use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::generation_config::GenerationDefaults;
use crate::tokenizer::Tokenizer;
use quill_kernels::BlockFormat;

/// Metadata keys.
pub const FORMAT: &str = "quill.format";
pub const TYPE: &str = "quill.type";
pub const LM_HEAD: &str = "quill.lm_head";
pub const CONFIG: &str = "quill.config";
pub const GENERATION_CONFIG: &str = "quill.generation_config";
pub const VOCAB: &str = "quill.vocab";
pub const MERGES: &str = "quill.merges";
pub const TOKENIZER_JSON: &str = "quill.tokenizer_json";
/// A JSON object: tensor name → block format (`"q4_k"`, ...) of each `U8` tensor of blocks.
pub const BLOCKS: &str = "quill.blocks";

/// The format version `quantize` writes for a file with block-format tensors ([`BLOCKS`]).
pub const VERSION: &str = "2";
/// The version of files without them, which quill builds before block formats read too.
pub const VERSION_1: &str = "1";

/// Maps `path`, checks that it is a Quill file of a version this build reads, and parses its
/// config.
pub fn open(path: &Path) -> Result<(ModelConfig, Checkpoint)> {
    from_checkpoint(path, Checkpoint::open_files(&[path.to_path_buf()])?)
}

/// [`open`] for a checkpoint already made (e.g. from the built-in bytes); `path` names it.
pub fn from_checkpoint(path: &Path, mut checkpoint: Checkpoint) -> Result<(ModelConfig, Checkpoint)> {
    let meta = checkpoint.metadata();
    match meta.get(FORMAT).map(String::as_str) {
        Some(VERSION | VERSION_1) => {}
        Some(v) => {
            return Err(Error::bad_file(
                path,
                format!("Quill file format version {v} is not supported (this quill reads versions {VERSION_1} and {VERSION}): use a matching quill, or quantize the model again"),
            ))
        }
        None => {
            return Err(Error::bad_file(
                path,
                "a safetensors file without Quill metadata: give the model's folder (with config.json) instead, or make one file with `quantize`",
            ))
        }
    }
    if let Some(text) = checkpoint.metadata().get(BLOCKS).cloned() {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("metadata '{BLOCKS}' is not a JSON object: {e}")))?;
        for (name, format) in map {
            let format = format.as_str().and_then(BlockFormat::parse).ok_or_else(|| {
                Error::bad_file(path, format!("metadata '{BLOCKS}': tensor '{name}' has an unknown format {format}"))
            })?;
            checkpoint.mark_blocks(&name, format)?;
        }
    }
    let text = required(path, &checkpoint, CONFIG)?;
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::bad_file(path, format!("metadata '{CONFIG}' is not valid JSON: {e}")))?;
    let config =
        ModelConfig::from_json(&json).map_err(|msg| Error::bad_file(path, format!("metadata '{CONFIG}': {msg}")))?;
    Ok((config, checkpoint))
}

/// The tokenizer stored in the file's metadata (vocab + merges, or tokenizer.json).
pub fn tokenizer(path: &Path, meta: &HashMap<String, String>) -> Result<Tokenizer> {
    match (meta.get(VOCAB), meta.get(MERGES), meta.get(TOKENIZER_JSON)) {
        (Some(vocab), Some(merges), _) => Tokenizer::from_bytes_vocab_merges(vocab.as_bytes(), merges.as_bytes(), path),
        (_, _, Some(json)) => Tokenizer::from_bytes_tokenizer_json(json.as_bytes(), path),
        _ => Err(Error::bad_file(
            path,
            format!("no tokenizer in the metadata ('{VOCAB}' + '{MERGES}', or '{TOKENIZER_JSON}'): quantize the model again"),
        )),
    }
}

/// The generation defaults stored in the file (none if it has no generation config).
pub fn generation_defaults(path: &Path, meta: &HashMap<String, String>) -> Result<GenerationDefaults> {
    match meta.get(GENERATION_CONFIG) {
        None => Ok(GenerationDefaults::default()),
        Some(text) => {
            let json: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| Error::bad_file(path, format!("metadata '{GENERATION_CONFIG}' is not valid JSON: {e}")))?;
            GenerationDefaults::from_json(&json)
                .map_err(|msg| Error::bad_file(path, format!("metadata '{GENERATION_CONFIG}': {msg}")))
        }
    }
}

fn required<'a>(path: &Path, checkpoint: &'a Checkpoint, key: &str) -> Result<&'a str> {
    checkpoint
        .metadata()
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| Error::bad_file(path, format!("metadata '{key}' is missing: quantize the model again")))
}
