//! `config.json` (Hugging Face) → one model description.
//!
//! GPT-2 and GPT-Neo are one pre-LN transformer; what differs between them is data here:
//! per-layer attention kind and score scale, the weight layout, and the activation.

use std::path::Path;

use serde_json::{Map, Value};

pub use quill_kernels::Activation;

use crate::error::{read_json, Error, Result};

/// Limits that keep a hostile config from asking for absurd allocations.
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 1024;
const MAX_VOCAB: usize = 1 << 22;
const MAX_POSITIONS: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Gpt2,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gpt2 => "gpt2",
        }
    }
}

/// Which past positions a layer's queries may attend to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    /// Every earlier position (plain causal).
    Global,
    /// Only the last `window` positions, the query's own included.
    Local { window: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    pub attention: AttentionKind,
    /// Multiplies q·k before the softmax.
    pub score_scale: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    /// Learned absolute positions: the longest sequence the model can see.
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Width of the MLP's hidden layer.
    pub n_inner: usize,
    pub activation: Activation,
    pub layer_norm_epsilon: f32,
    pub layers: Vec<LayerSpec>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// Parsed for completeness: all attention math is f32 already, so it changes nothing.
    pub reorder_and_upcast_attn: bool,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    pub fn from_file(path: &Path) -> Result<ModelConfig> {
        let json = read_json(path)?;
        Self::from_json(&json).map_err(|msg| Error::bad_file(path, msg))
    }

    /// Parses a config object; the error is a message naming the field.
    pub fn from_json(json: &Value) -> std::result::Result<ModelConfig, String> {
        let obj = json.as_object().ok_or("expected a JSON object")?;
        let fields = Fields(obj);
        let model_type = fields.string("model_type")?.ok_or("missing field 'model_type' (expected \"gpt2\")")?;
        match model_type {
            "gpt2" => gpt2(&fields),
            "gpt_neo" => Err("model_type 'gpt_neo' is not supported yet by this version of Quill".into()),
            other => Err(format!("unsupported model_type '{other}' (Quill runs \"gpt2\")")),
        }
    }
}

fn gpt2(f: &Fields) -> std::result::Result<ModelConfig, String> {
    let vocab_size = f.required_dim("vocab_size", &[], MAX_VOCAB)?;
    let n_positions = f.required_dim("n_positions", &["n_ctx"], MAX_POSITIONS)?;
    let n_embd = f.required_dim("n_embd", &["hidden_size"], MAX_DIM)?;
    let n_layer = f.required_dim("n_layer", &["num_hidden_layers"], MAX_LAYERS)?;
    let n_head = f.required_dim("n_head", &["num_attention_heads"], MAX_DIM)?;
    if n_embd % n_head != 0 {
        return Err(format!("n_head ({n_head}) does not divide n_embd ({n_embd})"));
    }
    let n_inner = match f.get("n_inner") {
        None | Some(Value::Null) => 4 * n_embd,
        Some(_) => f.required_dim("n_inner", &[], 4 * MAX_DIM)?,
    };
    let activation = activation(f.string("activation_function")?.unwrap_or("gelu_new"))?;
    let layer_norm_epsilon = f.float("layer_norm_epsilon")?.unwrap_or(1e-5);
    let scale_attn_weights = f.bool("scale_attn_weights")?.unwrap_or(true);
    let by_layer_idx = f.bool("scale_attn_by_inverse_layer_idx")?.unwrap_or(false);
    let reorder_and_upcast_attn = f.bool("reorder_and_upcast_attn")?.unwrap_or(false);
    let head_dim = (n_embd / n_head) as f32;
    let layers = (0..n_layer)
        .map(|i| {
            // transformers divides by sqrt(head_dim), then by (layer_idx + 1).
            let mut divisor = if scale_attn_weights { head_dim.sqrt() } else { 1.0 };
            if by_layer_idx {
                divisor *= (i + 1) as f32;
            }
            LayerSpec { attention: AttentionKind::Global, score_scale: 1.0 / divisor }
        })
        .collect();
    Ok(ModelConfig {
        arch: Arch::Gpt2,
        vocab_size,
        n_positions,
        n_embd,
        n_layer,
        n_head,
        n_inner,
        activation,
        layer_norm_epsilon,
        layers,
        bos_token_id: f.token_id("bos_token_id")?,
        eos_token_id: f.token_id("eos_token_id")?,
        reorder_and_upcast_attn,
    })
}

fn activation(name: &str) -> std::result::Result<Activation, String> {
    Ok(match name {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluNew,
        "gelu" => Activation::Gelu,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        "tanh" => Activation::Tanh,
        other => {
            return Err(format!(
                "activation_function '{other}' is not supported (expected gelu_new, gelu, relu, silu, swish or tanh)"
            ))
        }
    })
}

/// Typed access to config fields with errors that name the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    fn string(&self, key: &str) -> std::result::Result<Option<&str>, String> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(format!("field '{key}' should be a string, found {v}")),
        }
    }

    fn bool(&self, key: &str) -> std::result::Result<Option<bool>, String> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(format!("field '{key}' should be true or false, found {v}")),
        }
    }

    fn float(&self, key: &str) -> std::result::Result<Option<f32>, String> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x as f32)),
                _ => Err(format!("field '{key}' should be a non-negative number, found {v}")),
            },
        }
    }

    /// A positive integer under `max`, read from `key` or the first alias present.
    fn required_dim(&self, key: &str, aliases: &[&str], max: usize) -> std::result::Result<usize, String> {
        let (name, v) = std::iter::once(key)
            .chain(aliases.iter().copied())
            .find_map(|k| self.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
            .ok_or_else(|| format!("missing required field '{key}'"))?;
        match v.as_u64() {
            Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
            _ => Err(format!("field '{name}' should be an integer from 1 to {max}, found {v}")),
        }
    }

    /// A token id; newer configs may give a list, whose first entry is used.
    fn token_id(&self, key: &str) -> std::result::Result<Option<u32>, String> {
        let v = match self.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(items)) => match items.first() {
                None => return Ok(None),
                Some(first) => first,
            },
            Some(v) => v,
        };
        match v.as_u64() {
            Some(n) if n <= u32::MAX as u64 => Ok(Some(n as u32)),
            _ => Err(format!("field '{key}' should be a token id, found {v}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"model_type": "gpt2", "vocab_size": 100, "n_positions": 16, "n_embd": 8, "n_layer": 2, "n_head": 2})
    }

    #[test]
    fn defaults_follow_transformers() {
        let c = ModelConfig::from_json(&base()).unwrap();
        assert_eq!(c.n_inner, 32);
        assert_eq!(c.activation, Activation::GeluNew);
        assert_eq!(c.layer_norm_epsilon, 1e-5);
        assert_eq!(c.layers[1].score_scale, 0.5);
        assert_eq!(c.eos_token_id, None);
    }

    #[test]
    fn scale_switches() {
        let mut v = base();
        v["scale_attn_by_inverse_layer_idx"] = json!(true);
        let c = ModelConfig::from_json(&v).unwrap();
        assert_eq!(c.layers[1].score_scale, 0.25);
        v["scale_attn_weights"] = json!(false);
        let c = ModelConfig::from_json(&v).unwrap();
        assert_eq!((c.layers[0].score_scale, c.layers[1].score_scale), (1.0, 0.5));
    }

    #[test]
    fn n_ctx_alias_and_null_inner() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("n_positions");
        v["n_ctx"] = json!(32);
        v["n_inner"] = Value::Null;
        v["eos_token_id"] = json!([7, 8]);
        let c = ModelConfig::from_json(&v).unwrap();
        assert_eq!((c.n_positions, c.n_inner, c.eos_token_id), (32, 32, Some(7)));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, Value, &str)] = &[
            ("n_embd", Value::Null, "missing required field 'n_embd'"),
            ("n_head", json!(3), "n_head (3) does not divide n_embd (8)"),
            ("n_layer", json!(-1), "field 'n_layer' should be an integer"),
            ("n_positions", json!(1u64 << 40), "field 'n_positions' should be an integer from 1 to"),
            ("activation_function", json!("mish"), "activation_function 'mish'"),
            ("model_type", json!("llama"), "unsupported model_type 'llama'"),
            ("scale_attn_weights", json!("yes"), "field 'scale_attn_weights' should be true or false"),
        ];
        for (key, value, expected) in cases {
            let mut v = base();
            v[*key] = value.clone();
            let err = ModelConfig::from_json(&v).unwrap_err();
            assert!(err.contains(expected), "{key}: got '{err}', expected '{expected}'");
        }
        assert!(ModelConfig::from_json(&json!([1])).unwrap_err().contains("JSON object"));
    }
}
