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
    GptNeo,
}

impl Arch {
    /// The `model_type` of config.json.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gpt2 => "gpt2",
            Arch::GptNeo => "gpt_neo",
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
    /// GPT-2's `summary_*` fields: how `GPT2DoubleHeadsModel`'s multiple-choice head reads the
    /// hidden states (`None` for GPT-Neo).
    pub summary: Option<SummaryConfig>,
    /// `add_cross_attention` (GPT-2): the checkpoint carries cross-attention layers, which
    /// transformers runs only on `encoder_hidden_states` (inside an encoder-decoder model). Quill
    /// takes no encoder states, so those weights are never read and the outputs are
    /// transformers' without them.
    pub add_cross_attention: bool,
}

/// Which hidden state transformers' `SequenceSummary` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryType {
    /// `hidden_states[:, -1]`.
    Last,
    /// `hidden_states[:, 0]`.
    First,
    /// `hidden_states.mean(dim=1)`.
    Mean,
    /// The position given by `mc_token_ids` (default: the last) of each sequence.
    ClsIndex,
}

impl SummaryType {
    /// The name `config.json`'s `summary_type` gives it.
    pub fn name(self) -> &'static str {
        match self {
            SummaryType::Last => "last",
            SummaryType::First => "first",
            SummaryType::Mean => "mean",
            SummaryType::ClsIndex => "cls_index",
        }
    }
}

/// `SequenceSummary`'s configuration (`summary_type`, `summary_use_proj`,
/// `summary_proj_to_labels`, `summary_activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryConfig {
    pub kind: SummaryType,
    /// A dense projection after taking the state.
    pub use_proj: bool,
    /// The projection outputs `num_labels` classes (1 in `GPT2DoubleHeadsModel`) instead of n_embd.
    pub proj_to_labels: bool,
    /// Applied after the projection (`None`: identity, for null or "linear").
    pub activation: Option<Activation>,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Whether some layer attends to a sliding window only (GPT-Neo's local layers).
    pub fn has_local_attention(&self) -> bool {
        self.layers.iter().any(|l| matches!(l.attention, AttentionKind::Local { .. }))
    }

    pub fn from_file(path: &Path) -> Result<ModelConfig> {
        let json = read_json(path)?;
        Self::from_json(&json).map_err(|msg| Error::bad_file(path, msg))
    }

    /// Parses a config object; the error is a message naming the field.
    pub fn from_json(json: &Value) -> std::result::Result<ModelConfig, String> {
        let obj = json.as_object().ok_or("expected a JSON object")?;
        let fields = Fields(obj);
        let model_type =
            fields.string("model_type")?.ok_or("missing field 'model_type' (expected \"gpt2\" or \"gpt_neo\")")?;
        match model_type {
            "gpt2" => gpt2(&fields),
            "gpt_neo" => gpt_neo(&fields),
            other => Err(format!("unsupported model_type '{other}' (Quill runs \"gpt2\" and \"gpt_neo\")")),
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
    // `reorder_and_upcast_attn` is checked to be a bool and has no effect: transformers then
    // upcasts q and k to f32 and folds the score scale into the q·kᵀ product, which only matters
    // for f16/bf16 activations. Quill's attention is f32 throughout, so either of transformers'
    // paths gives Quill's scores up to the rounding of where the scale is applied.
    f.bool("reorder_and_upcast_attn")?;
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
        // transformers' GPT2Config defaults both to <|endoftext|>.
        bos_token_id: f.token_id("bos_token_id")?.or(Some(50256)),
        eos_token_id: f.token_id("eos_token_id")?.or(Some(50256)),
        summary: Some(summary(f)?),
        add_cross_attention: f.bool("add_cross_attention")?.unwrap_or(false),
    })
}

/// GPT-Neo (`GPTNeoConfig`): layers of global or local attention, unscaled scores.
fn gpt_neo(f: &Fields) -> std::result::Result<ModelConfig, String> {
    let vocab_size = f.required_dim("vocab_size", &[], MAX_VOCAB)?;
    let n_positions = f.required_dim("max_position_embeddings", &[], MAX_POSITIONS)?;
    let n_embd = f.required_dim("hidden_size", &[], MAX_DIM)?;
    let n_layer = f.required_dim("num_layers", &[], MAX_LAYERS)?;
    let n_head = f.required_dim("num_heads", &[], MAX_DIM)?;
    if n_embd % n_head != 0 {
        return Err(format!("num_heads ({n_head}) does not divide hidden_size ({n_embd})"));
    }
    let n_inner = match f.get("intermediate_size") {
        None | Some(Value::Null) => 4 * n_embd,
        Some(_) => f.required_dim("intermediate_size", &[], 4 * MAX_DIM)?,
    };
    let activation = activation(f.string("activation_function")?.unwrap_or("gelu_new"))?;
    let layer_norm_epsilon = f.float("layer_norm_epsilon")?.unwrap_or(1e-5);
    let kinds = attention_types(f, n_layer)?;
    let window = match f.get("window_size") {
        None | Some(Value::Null) => 256,
        Some(_) => f.required_dim("window_size", &[], MAX_POSITIONS)?,
    };
    let layers = kinds
        .into_iter()
        .map(|local| LayerSpec {
            attention: if local { AttentionKind::Local { window } } else { AttentionKind::Global },
            // GPT-Neo does not scale q·k.
            score_scale: 1.0,
        })
        .collect();
    // GPTNeoConfig defaults both to 50256 (GPT-2's <|endoftext|>) when the field is absent.
    let token = |key: &str| match f.get(key) {
        None => Ok(Some(50256)),
        Some(_) => f.token_id(key),
    };
    Ok(ModelConfig {
        arch: Arch::GptNeo,
        vocab_size,
        n_positions,
        n_embd,
        n_layer,
        n_head,
        n_inner,
        activation,
        layer_norm_epsilon,
        layers,
        bos_token_id: token("bos_token_id")?,
        eos_token_id: token("eos_token_id")?,
        summary: None,
        add_cross_attention: false,
    })
}

/// GPT-Neo's `attention_types`, e.g. `[[["global", "local"], 12]]` (the pattern repeated 12
/// times), expanded to one kind per layer: `true` for local. `attention_layers`, which
/// save_pretrained writes too (and transformers then uses), must agree with it.
fn attention_types(f: &Fields, n_layer: usize) -> std::result::Result<Vec<bool>, String> {
    const FORM: &str = "expected a list of [[kinds...], repeat] pairs, e.g. [[[\"global\", \"local\"], 6]]";
    let kind = |field: &str, v: &Value| match v.as_str() {
        Some("global") => Ok(false),
        Some("local") => Ok(true),
        _ => Err(format!("{field}: unknown attention kind {v} (expected \"global\" or \"local\")")),
    };
    let types = match f.get("attention_types") {
        None | Some(Value::Null) => return Err("missing required field 'attention_types'".into()),
        Some(Value::Array(items)) => items,
        Some(v) => return Err(format!("field 'attention_types' should be a list, found {v}: {FORM}")),
    };
    let mut layers = Vec::new();
    for (i, item) in types.iter().enumerate() {
        let pair = item.as_array().filter(|p| p.len() == 2);
        let (pattern, repeat) = match pair.map(|p| (p[0].as_array(), p[1].as_u64())) {
            Some((Some(pattern), Some(repeat))) => (pattern, repeat),
            _ => return Err(format!("field 'attention_types' entry {i} is {item}: {FORM}")),
        };
        let pattern =
            pattern.iter().map(|v| kind("field 'attention_types'", v)).collect::<std::result::Result<Vec<_>, _>>()?;
        if (pattern.len() as u64).saturating_mul(repeat) > (MAX_LAYERS - layers.len()) as u64 {
            return Err(format!("field 'attention_types' gives more than {MAX_LAYERS} layers"));
        }
        if !pattern.is_empty() {
            (0..repeat).for_each(|_| layers.extend_from_slice(&pattern));
        }
    }
    if layers.len() != n_layer {
        return Err(format!("field 'attention_types' gives {} layer kinds but num_layers is {n_layer}", layers.len()));
    }
    match f.get("attention_layers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(given)) => {
            let given = given
                .iter()
                .map(|v| kind("field 'attention_layers'", v))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if given != layers {
                return Err("field 'attention_layers' disagrees with the expansion of 'attention_types'".into());
            }
        }
        Some(v) => return Err(format!("field 'attention_layers' should be a list of kinds, found {v}")),
    }
    Ok(layers)
}

/// GPT2Config's `summary_*` fields, with its defaults.
fn summary(f: &Fields) -> std::result::Result<SummaryConfig, String> {
    const KINDS: [SummaryType; 4] = [SummaryType::ClsIndex, SummaryType::Last, SummaryType::First, SummaryType::Mean];
    let name = f.string("summary_type")?.unwrap_or("cls_index");
    let kind = KINDS
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| format!("summary_type '{name}' is not supported (expected cls_index, last, first or mean)"))?;
    let activation = match f.string("summary_activation")? {
        None | Some("linear") => None,
        Some(name) => Some(activation(name).map_err(|e| format!("summary_activation: {e}"))?),
    };
    Ok(SummaryConfig {
        kind,
        use_proj: f.bool("summary_use_proj")?.unwrap_or(true),
        proj_to_labels: f.bool("summary_proj_to_labels")?.unwrap_or(true),
        activation,
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
        assert_eq!((c.bos_token_id, c.eos_token_id), (Some(50256), Some(50256)));
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

    fn neo() -> Value {
        json!({
            "model_type": "gpt_neo", "vocab_size": 100, "max_position_embeddings": 32, "hidden_size": 8,
            "num_layers": 4, "num_heads": 2, "intermediate_size": null, "window_size": 3,
            "attention_types": [[["global", "local"], 2]],
        })
    }

    #[test]
    fn gpt_neo_layers_follow_attention_types() {
        let c = ModelConfig::from_json(&neo()).unwrap();
        assert_eq!((c.arch, c.n_positions, c.n_embd, c.n_layer, c.n_head), (Arch::GptNeo, 32, 8, 4, 2));
        assert_eq!((c.n_inner, c.activation, c.layer_norm_epsilon), (32, Activation::GeluNew, 1e-5));
        assert_eq!((c.bos_token_id, c.eos_token_id), (Some(50256), Some(50256)));
        let local = AttentionKind::Local { window: 3 };
        let kinds: Vec<_> = c.layers.iter().map(|l| l.attention).collect();
        assert_eq!(kinds, [AttentionKind::Global, local, AttentionKind::Global, local]);
        assert!(c.layers.iter().all(|l| l.score_scale == 1.0));

        let mut v = neo();
        v["attention_types"] = json!([[["local"], 1], [["global", "global"], 1], [["local"], 1]]);
        v["attention_layers"] = json!(["local", "global", "global", "local"]);
        v["intermediate_size"] = json!(20);
        v["eos_token_id"] = Value::Null;
        let c = ModelConfig::from_json(&v).unwrap();
        let kinds: Vec<_> = c.layers.iter().map(|l| l.attention).collect();
        assert_eq!(kinds, [local, AttentionKind::Global, AttentionKind::Global, local]);
        assert_eq!((c.n_inner, c.eos_token_id), (20, None));
        v.as_object_mut().unwrap().remove("window_size");
        let c = ModelConfig::from_json(&v).unwrap();
        assert_eq!(c.layers[0].attention, AttentionKind::Local { window: 256 });
    }

    #[test]
    fn bad_attention_types_are_named() {
        let cases: &[(&str, Value, &str)] = &[
            (
                "attention_types",
                json!([[["global", "local"], 3]]),
                "'attention_types' gives 6 layer kinds but num_layers is 4",
            ),
            (
                "attention_types",
                json!([[["global", "sparse"], 2]]),
                "'attention_types': unknown attention kind \"sparse\"",
            ),
            ("attention_types", json!([[["global", 1], 2]]), "'attention_types': unknown attention kind 1"),
            ("attention_types", json!("global"), "field 'attention_types' should be a list"),
            ("attention_types", json!([["global", "local"]]), "'attention_types' entry 0 is [\"global\",\"local\"]"),
            ("attention_types", json!([[["global"], -1]]), "'attention_types' entry 0"),
            ("attention_types", json!([[["global"], 4, 1]]), "'attention_types' entry 0"),
            ("attention_types", json!([[["local"], 1u64 << 62]]), "'attention_types' gives more than 1024 layers"),
            ("attention_types", json!([[[], 1u64 << 62]]), "gives 0 layer kinds but num_layers is 4"),
            ("attention_types", Value::Null, "missing required field 'attention_types'"),
            ("attention_layers", json!(["global", "global", "global", "local"]), "'attention_layers' disagrees"),
            ("attention_layers", json!(["global", "local", "global", "loca"]), "'attention_layers': unknown"),
            ("window_size", json!(0), "field 'window_size' should be an integer from 1"),
            ("num_heads", json!(3), "num_heads (3) does not divide hidden_size (8)"),
            ("max_position_embeddings", Value::Null, "missing required field 'max_position_embeddings'"),
            ("intermediate_size", json!("big"), "field 'intermediate_size' should be an integer"),
        ];
        for (key, value, expected) in cases {
            let mut v = neo();
            v[*key] = value.clone();
            let err = ModelConfig::from_json(&v).unwrap_err();
            assert!(err.contains(expected), "{key}: got '{err}', expected '{expected}'");
        }
    }
}
