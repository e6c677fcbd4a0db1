//! IN as an original OpenAI GPT-2 TensorFlow checkpoint folder, the one transformers'
//! `load_tf_weights_in_gpt2` reads: `hparams.json`, `model.ckpt.index` and
//! `model.ckpt.data-*-of-*` (a TF1 `Saver` checkpoint), `encoder.json` and `vocab.bpe`
//! (`model.ckpt.meta` and `checkpoint` are not needed).
//!
//! The tensors are read by our own reader of TensorFlow's tensor-bundle format ([`bundle`],
//! over [`sstable`], [`proto`] and [`crc32c`]); no TensorFlow is involved. The folder becomes the
//! same description as a Hugging Face folder ([`Folder`], which `crate::source` wraps):
//! - `hparams.json` (`n_vocab`, `n_ctx`, `n_embd`, `n_head`, `n_layer`) becomes the
//!   `config.json` of transformers' GPT-2 with those sizes (gelu_new, LayerNorm epsilon 1e-5: the
//!   original model's);
//! - TF names map to transformers' as `load_tf_weights_in_gpt2` maps them: `model/wte` →
//!   `wte.weight`, `model/h{i}/ln_1/g|b` → `h.{i}.ln_1.weight|bias`,
//!   `model/h{i}/attn/c_attn/w` → `h.{i}.attn.c_attn.weight`, ... The conv1d weights are stored
//!   `[1, in, out]`; without the leading 1 that is Conv1D's `(in, out)`, transposed like a
//!   Hugging Face folder's. Other variables (a `global_step`, optimizer slots) are skipped with
//!   a warning;
//! - `encoder.json` is `vocab.json`, `vocab.bpe` is `merges.txt`.

pub mod bundle;
pub mod crc32c;
pub mod proto;
pub mod sstable;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use quill::checkpoint::DType;

use crate::error::{Error, Result};
use crate::parts::{parse_config, read_text, Entry, Texts, TokenizerTexts};
use bundle::{Bundle, DataType};
use quill::config::ModelConfig;

/// The checkpoint's prefix in the folder, as OpenAI shipped it.
pub const PREFIX: &str = "model.ckpt";
pub const INDEX: &str = "model.ckpt.index";
pub const HPARAMS: &str = "hparams.json";

/// Whether `dir` holds a TensorFlow GPT-2 checkpoint (`model.ckpt.index` and `hparams.json`).
pub fn is_checkpoint_folder(dir: &Path) -> bool {
    dir.join(INDEX).is_file() && dir.join(HPARAMS).is_file()
}

/// The bundle's tensors as transformers sees them once loaded: conv1d weights without their
/// leading 1.
pub struct Checkpoint {
    bundle: Bundle,
    /// TF name → its shape in the model (only where it differs from the stored one).
    squeezed: HashMap<String, Vec<usize>>,
    /// hparams.json and the tokenizer files, read too.
    other_files: Vec<PathBuf>,
}

impl Checkpoint {
    pub fn get(&self, name: &str) -> Option<Entry> {
        let t = self.bundle.tensors().get(name)?;
        let dtype = match t.dtype {
            _ if t.partitioned => None,
            DataType::Float => Some(DType::F32),
            DataType::Half => Some(DType::F16),
            DataType::BFloat16 => Some(DType::BF16),
            DataType::Other(_) => None,
        };
        let dtype_name = if t.partitioned { format!("partitioned {}", t.dtype.name()) } else { t.dtype.name() };
        let shape = self.squeezed.get(name).unwrap_or(&t.shape).clone();
        Some(Entry { shape, dtype, dtype_name })
    }

    /// The tensor `name` as f32, which must have `shape` (a squeezed shape holds the same data).
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let at = self.bundle.index().display();
        let entry =
            self.get(name).ok_or_else(|| Error::runtime(format!("{at}: no tensor '{name}' in the checkpoint")))?;
        if entry.shape != shape {
            return Err(Error::runtime(format!(
                "{at}: tensor '{name}' has shape {:?}, expected {shape:?}",
                entry.shape
            )));
        }
        self.bundle.read_f32(name)
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.bundle.paths().into_iter().chain(self.other_files.iter().cloned()).collect()
    }

    pub fn file_bytes(&self) -> u64 {
        self.bundle.file_bytes()
    }
}

/// transformers' name for the TF variable `tf`, and whether it is a conv1d weight (stored with a
/// leading 1); `None` for variables that are not GPT-2 weights.
pub fn hf_name(tf: &str) -> Option<(String, bool)> {
    let rest = tf.strip_prefix("model/")?;
    let layer = |h: &str| -> Option<usize> {
        let digits = h.strip_prefix('h')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let param = |p: &str| if p == "b" { "bias" } else { "weight" };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [e @ ("wte" | "wpe")] => Some((format!("{e}.weight"), false)),
        ["ln_f", p @ ("g" | "b")] => Some((format!("ln_f.{}", param(p)), false)),
        [h, ln @ ("ln_1" | "ln_2"), p @ ("g" | "b")] => Some((format!("h.{}.{ln}.{}", layer(h)?, param(p)), false)),
        [h, block @ ("attn" | "mlp"), conv, p @ ("w" | "b")]
            if matches!((*block, *conv), ("attn", "c_attn" | "c_proj") | ("mlp", "c_fc" | "c_proj")) =>
        {
            Some((format!("h.{}.{block}.{conv}.{}", layer(h)?, param(p)), *p == "w"))
        }
        _ => None,
    }
}

/// hparams.json's sizes → transformers' GPT-2 config.json text.
pub fn config_from_hparams(text: &str, what: &str) -> Result<String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::runtime(format!("{what}: not valid JSON: {e}")))?;
    let obj = json.as_object().ok_or_else(|| Error::runtime(format!("{what}: expected a JSON object")))?;
    let field = |key: &str| -> Result<u64> {
        let v = obj.get(key).ok_or_else(|| {
            Error::runtime(format!(
                "{what}: '{key}' is missing (GPT-2's hparams.json has n_vocab, n_ctx, n_embd, n_head and n_layer)"
            ))
        })?;
        v.as_u64()
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::runtime(format!("{what}: '{key}' is {v}, expected a positive integer")))
    };
    let (n_vocab, n_ctx, n_embd, n_head, n_layer) =
        (field("n_vocab")?, field("n_ctx")?, field("n_embd")?, field("n_head")?, field("n_layer")?);
    let config = serde_json::json!({
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "layer_norm_epsilon": 1e-5,
        "model_type": "gpt2",
        "n_ctx": n_ctx,
        "n_embd": n_embd,
        "n_head": n_head,
        "n_layer": n_layer,
        "n_positions": n_ctx,
        "vocab_size": n_vocab,
    });
    Ok(serde_json::to_string_pretty(&config).expect("a JSON value serializes") + "\n")
}

/// An opened TensorFlow checkpoint folder: what `crate::source::Source` needs of it.
pub struct Folder {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub checkpoint: Checkpoint,
    pub texts: Texts,
    /// transformers' name → TensorFlow variable name.
    pub names: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// Opens the folder `dir` (which [`is_checkpoint_folder`]).
pub fn open_folder(dir: &Path) -> Result<Folder> {
    let hparams = dir.join(HPARAMS);
    let config_text = config_from_hparams(&read_text(&hparams)?, &hparams.display().to_string())?;
    let config = parse_config(&config_text, &hparams.display().to_string())?;
    let mut other_files = vec![hparams];

    let mut warnings = Vec::new();
    let (vocab, merges) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
    let tokenizer = if vocab.is_file() && merges.is_file() {
        let t = TokenizerTexts::VocabMerges { vocab: read_text(&vocab)?, merges: read_text(&merges)? };
        other_files.extend([vocab, merges]);
        t
    } else {
        warnings.push(format!("{}: no tokenizer (encoder.json + vocab.bpe); the output will have none", dir.display()));
        TokenizerTexts::None
    };

    let bundle = Bundle::open(&dir.join(PREFIX))?;
    let mut names = BTreeMap::new();
    let mut squeezed = HashMap::new();
    let mut skipped = Vec::new();
    for (tf, t) in bundle.tensors() {
        let Some((hf, conv_weight)) = hf_name(tf) else {
            skipped.push(tf.as_str());
            continue;
        };
        if conv_weight && t.shape.len() == 3 && t.shape[0] == 1 {
            squeezed.insert(tf.clone(), t.shape[1..].to_vec());
        }
        names.insert(hf, tf.clone());
    }
    if !skipped.is_empty() {
        let shown: Vec<String> = skipped.iter().take(4).map(|n| format!("'{n}'")).collect();
        let more =
            if skipped.len() > shown.len() { format!(", ... ({} in all)", skipped.len()) } else { String::new() };
        warnings.push(format!(
            "{}: skipping TensorFlow variables that are not GPT-2 weights: {}{more}",
            dir.join(INDEX).display(),
            shown.join(", ")
        ));
    }
    Ok(Folder {
        path: dir.to_path_buf(),
        config,
        checkpoint: Checkpoint { bundle, squeezed, other_files },
        texts: Texts { config: config_text, generation_config: None, tokenizer },
        names,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_as_transformers_maps_them() {
        for (tf, hf, conv) in [
            ("model/wte", "wte.weight", false),
            ("model/wpe", "wpe.weight", false),
            ("model/ln_f/g", "ln_f.weight", false),
            ("model/ln_f/b", "ln_f.bias", false),
            ("model/h0/ln_1/g", "h.0.ln_1.weight", false),
            ("model/h11/ln_2/b", "h.11.ln_2.bias", false),
            ("model/h3/attn/c_attn/w", "h.3.attn.c_attn.weight", true),
            ("model/h3/attn/c_attn/b", "h.3.attn.c_attn.bias", false),
            ("model/h3/attn/c_proj/w", "h.3.attn.c_proj.weight", true),
            ("model/h3/mlp/c_fc/w", "h.3.mlp.c_fc.weight", true),
            ("model/h3/mlp/c_proj/b", "h.3.mlp.c_proj.bias", false),
        ] {
            assert_eq!(hf_name(tf), Some((hf.to_string(), conv)), "{tf}");
        }
        for tf in [
            "global_step",
            "model/h0/attn/c_attn/w/Adam",
            "model/h0/mlp/c_attn/w",
            "model/h0/attn/c_fc/w",
            "model/hx/ln_1/g",
            "model/h/ln_1/g",
            "model/h+1/ln_1/g",
            "model/ln_f/w",
            "model/h0/ln_1/w",
            "beta1_power",
            "wte",
        ] {
            assert_eq!(hf_name(tf), None, "{tf}");
        }
    }

    #[test]
    fn hparams_become_a_gpt2_config() {
        let text = r#"{"n_vocab": 50257, "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12}"#;
        let config = config_from_hparams(text, "h").unwrap();
        let c = parse_config(&config, "c").unwrap();
        assert_eq!(
            (c.vocab_size, c.n_positions, c.n_embd, c.n_head, c.n_layer, c.n_inner),
            (50257, 1024, 768, 12, 12, 3072)
        );
        let json: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(json["n_ctx"], 1024);
        assert_eq!(json["activation_function"], "gelu_new");
        assert_eq!(json["architectures"][0], "GPT2LMHeadModel");

        let missing = config_from_hparams(r#"{"n_vocab": 5, "n_ctx": 4, "n_embd": 8, "n_layer": 1}"#, "h.json");
        assert!(missing.unwrap_err().to_string().contains("h.json: 'n_head' is missing"));
        let bad = config_from_hparams(r#"{"n_vocab": 5, "n_ctx": 4, "n_embd": 8, "n_head": 0, "n_layer": 1}"#, "h");
        assert!(bad.unwrap_err().to_string().contains("'n_head' is 0, expected a positive integer"));
        assert!(config_from_hparams("[1]", "h").is_err());
    }
}
