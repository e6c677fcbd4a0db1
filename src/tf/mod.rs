//! Original OpenAI GPT-2 TensorFlow checkpoint folders, the ones transformers'
//! `load_tf_weights_in_gpt2` reads: `hparams.json`, `model.ckpt.index` and
//! `model.ckpt.data-*-of-*` (a TF1 `Saver` checkpoint), `encoder.json` and `vocab.bpe`
//! (`model.ckpt.meta` and `checkpoint` are not needed).
//!
//! The tensors are read by our own reader of TensorFlow's tensor-bundle format ([`bundle`],
//! over [`sstable`], [`proto`] and [`crc32c`]); no TensorFlow is involved. A folder reads as a
//! Hugging Face folder would ([`Folder`]):
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
//!
//! `quantize` converts such a folder into a Quill file; [`load`] reads one into memory (f32) for
//! [`crate::Model::load`], which then runs it like any folder.

pub mod bundle;
pub mod crc32c;
pub mod proto;
pub mod sstable;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, DType};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use bundle::{Bundle, DataType};

/// The checkpoint's prefix in the folder, as OpenAI shipped it.
pub const PREFIX: &str = "model.ckpt";
pub const INDEX: &str = "model.ckpt.index";
pub const HPARAMS: &str = "hparams.json";
/// The tokenizer files, GPT-2's `vocab.json` and `merges.txt` under their original names.
pub const VOCAB: &str = "encoder.json";
pub const MERGES: &str = "vocab.bpe";

/// Whether `dir` holds a TensorFlow GPT-2 checkpoint (`model.ckpt.index` and `hparams.json`).
pub fn is_checkpoint_folder(dir: &Path) -> bool {
    dir.join(INDEX).is_file() && dir.join(HPARAMS).is_file()
}

/// One tensor as the model sees it: its shape (a conv1d weight without the leading 1), its type.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    /// `None` for types that are not floats (and partitioned variables).
    pub dtype: Option<DType>,
    /// The type as TensorFlow names it, for messages.
    pub dtype_name: String,
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
    pub fn get(&self, name: &str) -> Option<TensorInfo> {
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
        Some(TensorInfo { shape, dtype, dtype_name })
    }

    /// The tensor `name` as f32, which must have `shape` (a squeezed shape holds the same data).
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let mut out = vec![0.0; shape.iter().product()];
        self.tensor_f32_into(name, shape, &mut out)?;
        Ok(out)
    }

    /// [`Checkpoint::tensor_f32`] into `out` (as many elements as `shape`).
    pub fn tensor_f32_into(&self, name: &str, shape: &[usize], out: &mut [f32]) -> Result<()> {
        let at = self.bundle.index();
        let entry =
            self.get(name).ok_or_else(|| Error::bad_file(at, format!("no tensor '{name}' in the checkpoint")))?;
        if entry.shape != shape {
            return Err(Error::bad_file(
                at,
                format!("tensor '{name}' has shape {:?}, expected {shape:?}", entry.shape),
            ));
        }
        self.bundle.read_f32_into(name, out)
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

/// hparams.json's sizes (the text of the file `path`) → transformers' GPT-2 config.json text.
pub fn config_from_hparams(text: &str, path: &Path) -> Result<String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))?;
    let obj = json.as_object().ok_or_else(|| Error::bad_file(path, "expected a JSON object"))?;
    let field = |key: &str| -> Result<u64> {
        let v = obj.get(key).ok_or_else(|| {
            Error::bad_file(
                path,
                format!("'{key}' is missing (GPT-2's hparams.json has n_vocab, n_ctx, n_embd, n_head and n_layer)"),
            )
        })?;
        v.as_u64()
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::bad_file(path, format!("'{key}' is {v}, expected a positive integer")))
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

/// An opened TensorFlow checkpoint folder.
pub struct Folder {
    pub path: PathBuf,
    pub config: ModelConfig,
    /// The `config.json` text `hparams.json` becomes.
    pub config_json: String,
    pub checkpoint: Checkpoint,
    /// transformers' name → TensorFlow variable name.
    pub names: BTreeMap<String, String>,
    /// The tokenizer files of the folder that are missing (of [`VOCAB`] and [`MERGES`]).
    pub missing_tokenizer_files: Vec<&'static str>,
    /// Notes for the user that do not stop the reading (skipped variables).
    pub warnings: Vec<String>,
}

/// Opens the folder `dir` (which [`is_checkpoint_folder`]): the index and hparams.json are read
/// and checked; the tensors are read by [`load`] or [`Checkpoint::tensor_f32`].
pub fn open_folder(dir: &Path) -> Result<Folder> {
    let hparams = dir.join(HPARAMS);
    let text = String::from_utf8(crate::error::read_file(&hparams)?)
        .map_err(|_| Error::bad_file(&hparams, "not UTF-8 text"))?;
    let config_json = config_from_hparams(&text, &hparams)?;
    let json: serde_json::Value = serde_json::from_str(&config_json).expect("config_from_hparams writes JSON");
    let config = ModelConfig::from_json(&json).map_err(|msg| Error::bad_file(&hparams, msg))?;
    let mut other_files = vec![hparams];
    let mut missing_tokenizer_files = Vec::new();
    for name in [VOCAB, MERGES] {
        if dir.join(name).is_file() {
            other_files.push(dir.join(name));
        } else {
            missing_tokenizer_files.push(name);
        }
    }

    let mut warnings = Vec::new();
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
        config_json,
        checkpoint: Checkpoint { bundle, squeezed, other_files },
        names,
        missing_tokenizer_files,
        warnings,
    })
}

/// Reads every GPT-2 weight of an opened folder into memory, as f32 under transformers' names:
/// a [`checkpoint::Checkpoint`] like a Hugging Face folder's (Conv1D matrices `(in, out)`), built
/// in one allocation the size of the weights in f32.
pub fn load(folder: &Folder) -> Result<checkpoint::Checkpoint> {
    let mut tensors = Vec::with_capacity(folder.names.len());
    for (hf, tf) in &folder.names {
        let info = folder.checkpoint.get(tf).expect("names come from the bundle");
        if info.dtype.is_none() {
            return Err(Error::bad_file(
                folder.checkpoint.bundle.index(),
                format!("tensor '{tf}' is {}; only float tensors can be read", info.dtype_name),
            ));
        }
        tensors.push((hf.clone(), info.shape));
    }
    let name = folder.path.join(INDEX);
    checkpoint::Checkpoint::from_f32_tensors(&name, &tensors, |i, out| {
        let tf = &folder.names[&tensors[i].0];
        folder.checkpoint.tensor_f32_into(tf, &tensors[i].1, out)
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
        let config = config_from_hparams(text, Path::new("h")).unwrap();
        let c = ModelConfig::from_json(&serde_json::from_str(&config).unwrap()).unwrap();
        assert_eq!(
            (c.vocab_size, c.n_positions, c.n_embd, c.n_head, c.n_layer, c.n_inner),
            (50257, 1024, 768, 12, 12, 3072)
        );
        let json: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(json["n_ctx"], 1024);
        assert_eq!(json["activation_function"], "gelu_new");
        assert_eq!(json["architectures"][0], "GPT2LMHeadModel");

        let missing =
            config_from_hparams(r#"{"n_vocab": 5, "n_ctx": 4, "n_embd": 8, "n_layer": 1}"#, Path::new("h.json"));
        assert!(missing.unwrap_err().to_string().contains("h.json: 'n_head' is missing"));
        let bad = config_from_hparams(
            r#"{"n_vocab": 5, "n_ctx": 4, "n_embd": 8, "n_head": 0, "n_layer": 1}"#,
            Path::new("h"),
        );
        assert!(bad.unwrap_err().to_string().contains("'n_head' is 0, expected a positive integer"));
        assert!(config_from_hparams("[1]", Path::new("h")).is_err());
    }
}
