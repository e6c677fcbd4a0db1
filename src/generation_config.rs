//! A model folder's `generation_config.json`: the defaults transformers' `generate()` takes from
//! it. Only the fields Quill implements are read; the others are ignored, and `null` counts as
//! absent.

use std::path::Path;

use serde_json::Value;

use crate::error::{read_json, Error, Result};

/// The generation defaults of a model folder (every field optional).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationDefaults {
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub no_repeat_ngram_size: Option<usize>,
    pub min_new_tokens: Option<usize>,
    /// Prompt plus new tokens.
    pub max_length: Option<usize>,
    pub max_new_tokens: Option<usize>,
    /// One id or a list (any of them ends generation).
    pub eos_token_ids: Option<Vec<u32>>,
}

pub const FILE_NAME: &str = "generation_config.json";

impl GenerationDefaults {
    /// Reads `dir/generation_config.json`; a folder without one has no defaults.
    pub fn from_model_dir(dir: &Path) -> Result<GenerationDefaults> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Ok(GenerationDefaults::default());
        }
        let json = read_json(&path)?;
        GenerationDefaults::from_json(&json).map_err(|msg| Error::bad_file(&path, msg))
    }

    /// Parses the fields; the error names the field and what it should be.
    pub fn from_json(json: &Value) -> std::result::Result<GenerationDefaults, String> {
        let obj = json.as_object().ok_or("expected a JSON object")?;
        let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
        let float = |name: &str, ok: fn(f64) -> bool, want: &str| -> std::result::Result<Option<f32>, String> {
            match field(name) {
                None => Ok(None),
                Some(v) => match v.as_f64() {
                    Some(x) if ok(x) => Ok(Some(x as f32)),
                    _ => Err(format!("{name} must be {want}, got {v}")),
                },
            }
        };
        let count = |name: &str| -> std::result::Result<Option<usize>, String> {
            match field(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| format!("{name} must be a non-negative integer, got {v}")),
            }
        };
        let do_sample = match field("do_sample") {
            None => None,
            Some(v) => Some(v.as_bool().ok_or_else(|| format!("do_sample must be true or false, got {v}"))?),
        };
        let token = |v: &Value| v.as_u64().filter(|&n| n <= u64::from(u32::MAX)).map(|n| n as u32);
        let eos_token_ids = match field("eos_token_id") {
            None => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|v| token(v).ok_or_else(|| format!("eos_token_id has a bad entry {v}")))
                    .collect::<std::result::Result<Vec<u32>, String>>()?,
            ),
            Some(v) => Some(vec![token(v).ok_or_else(|| format!("eos_token_id must be a token id, got {v}"))?]),
        };
        Ok(GenerationDefaults {
            do_sample,
            temperature: float("temperature", |x| x.is_finite() && x >= 0.0, "a number >= 0")?,
            top_k: count("top_k")?,
            top_p: float("top_p", |x| x > 0.0 && x <= 1.0, "in (0, 1]")?,
            min_p: float("min_p", |x| (0.0..=1.0).contains(&x), "in [0, 1]")?,
            repetition_penalty: float("repetition_penalty", |x| x.is_finite() && x > 0.0, "a number > 0")?,
            no_repeat_ngram_size: count("no_repeat_ngram_size")?,
            min_new_tokens: count("min_new_tokens")?,
            max_length: count("max_length")?,
            max_new_tokens: count("max_new_tokens")?,
            eos_token_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::GenerationDefaults;

    #[test]
    fn reads_the_fields_and_ignores_the_rest() {
        let d = GenerationDefaults::from_json(&json!({
            "do_sample": true, "temperature": 0.7, "top_k": 0, "top_p": 0.9, "min_p": null,
            "repetition_penalty": 1.1, "max_length": 50, "eos_token_id": [1, 2], "bos_token_id": 0,
            "no_repeat_ngram_size": 3, "min_new_tokens": 4, "transformers_version": "4.46.3"
        }))
        .unwrap();
        assert_eq!(d.do_sample, Some(true));
        assert_eq!(d.temperature, Some(0.7));
        assert_eq!((d.top_k, d.top_p, d.min_p), (Some(0), Some(0.9), None));
        assert_eq!((d.max_length, d.max_new_tokens), (Some(50), None));
        assert_eq!(d.eos_token_ids, Some(vec![1, 2]));
        assert_eq!((d.no_repeat_ngram_size, d.min_new_tokens), (Some(3), Some(4)));
        let d = GenerationDefaults::from_json(&json!({"eos_token_id": 50256})).unwrap();
        assert_eq!(d.eos_token_ids, Some(vec![50256]));
    }

    #[test]
    fn bad_values_name_the_field() {
        for (v, needle) in [
            (json!({"top_p": 1.5}), "top_p"),
            (json!({"temperature": -1}), "temperature"),
            (json!({"top_k": -3}), "top_k"),
            (json!({"do_sample": "yes"}), "do_sample"),
            (json!({"eos_token_id": "x"}), "eos_token_id"),
            (json!({"repetition_penalty": 0}), "repetition_penalty"),
            (json!({"no_repeat_ngram_size": 1.5}), "no_repeat_ngram_size"),
            (json!([]), "object"),
        ] {
            let err = GenerationDefaults::from_json(&v).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }
}
