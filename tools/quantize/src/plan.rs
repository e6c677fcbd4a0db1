//! What to write: every output tensor's name, shape, element type and place in the file.
//!
//! The rules (the Quill file format, version 1, which the loader reads exactly):
//! - matmul weights are stored `(out, in)` = `[n, k]` (GPT-2's Conv1D `(in, out)` transposed), in
//!   the asked type; q8_0 is an I8 `name` `[n, k]` plus an F16 `name.scale` `[n, k / 32]`, and only
//!   where `k % 32 == 0` (otherwise F16);
//! - `wte.weight` (and an untied `lm_head.weight`) follow `--lm-head`, else the type;
//! - `wpe.weight` is F32 for f32, else F16 (it is read one row per token, never by a matmul);
//! - everything else (LayerNorms, biases, a multiple-choice head) stays F32: small, and summed
//!   into activations where precision matters.
//!
//! Tensors are laid out F32 first, then F16, then I8, each group in name order, so every
//! offset is a multiple of its element size once the data start is aligned.

use std::collections::{BTreeSet, HashMap};

use quill::checkpoint::{DType, MatrixOrder};
use quill::config::Arch;
use quill_kernels::Q8_BLOCK;
use safetensors::Dtype;

use crate::error::{Error, Result};
use crate::source::Source;

/// The weight types the command line offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightType {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
}

impl WeightType {
    pub fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::Q8_0 => "q8_0",
        }
    }
}

/// What a tensor is, which decides its output type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A matmul weight of the blocks.
    Matrix,
    /// `wte.weight` or an untied `lm_head.weight`.
    Embedding,
    /// `wpe.weight`.
    Positions,
    /// Everything else.
    Other,
}

/// One tensor of the source and how it is written.
#[derive(Clone, Debug)]
pub struct Item {
    /// Name in the output.
    pub name: String,
    /// Name in the source checkpoint.
    pub source: String,
    pub source_shape: Vec<usize>,
    /// Output shape: `[n, k]` for matrices.
    pub shape: Vec<usize>,
    /// GPT-2 Conv1D `(in, out)` from a folder, to be written `(out, in)`.
    pub transpose: bool,
    pub encoding: WeightType,
    /// Why the encoding is not the one asked for, shown in the progress line.
    pub note: Option<String>,
}

/// Which bytes of an item a slot of the file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Values,
    /// A q8_0 matrix's f16 block scales.
    Scales,
}

/// One tensor of the output file and its byte range in the data section.
#[derive(Clone, Debug)]
pub struct Slot {
    pub item: usize,
    pub part: Part,
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub offsets: (usize, usize),
}

pub struct Plan {
    pub items: Vec<Item>,
    pub slots: Vec<Slot>,
    /// The type `wte.weight` is actually written in (`quill.lm_head`).
    pub lm_head: WeightType,
    pub warnings: Vec<String>,
}

impl Plan {
    /// Bytes of the data section.
    pub fn data_bytes(&self) -> usize {
        self.slots.last().map_or(0, |s| s.offsets.1)
    }
}

/// The tensors the config implies, with their output shapes (`[n, k]` for matrices).
fn expected(src: &Source) -> Vec<(String, Role, Vec<usize>)> {
    let c = &src.config;
    let (v, p, e, i) = (c.vocab_size, c.n_positions, c.n_embd, c.n_inner);
    let mut list = vec![
        ("wte.weight".to_string(), Role::Embedding, vec![v, e]),
        ("wpe.weight".to_string(), Role::Positions, vec![p, e]),
        ("ln_f.weight".to_string(), Role::Other, vec![e]),
        ("ln_f.bias".to_string(), Role::Other, vec![e]),
    ];
    for l in 0..c.n_layer {
        let mut add = |name: &str, role: Role, shape: Vec<usize>| list.push((format!("h.{l}.{name}"), role, shape));
        for ln in ["ln_1", "ln_2"] {
            add(&format!("{ln}.weight"), Role::Other, vec![e]);
            add(&format!("{ln}.bias"), Role::Other, vec![e]);
        }
        match c.arch {
            Arch::Gpt2 => {
                add("attn.c_attn.weight", Role::Matrix, vec![3 * e, e]);
                add("attn.c_attn.bias", Role::Other, vec![3 * e]);
                add("attn.c_proj.weight", Role::Matrix, vec![e, e]);
                add("attn.c_proj.bias", Role::Other, vec![e]);
            }
            Arch::GptNeo => {
                for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                    add(&format!("attn.attention.{proj}.weight"), Role::Matrix, vec![e, e]);
                }
                add("attn.attention.out_proj.bias", Role::Other, vec![e]);
            }
        }
        add("mlp.c_fc.weight", Role::Matrix, vec![i, e]);
        add("mlp.c_fc.bias", Role::Other, vec![i]);
        add("mlp.c_proj.weight", Role::Matrix, vec![e, i]);
        add("mlp.c_proj.bias", Role::Other, vec![e]);
    }
    list
}

/// The output type of a matrix `[n, k]` asked to be `ty`, and the note when q8_0 cannot apply.
fn matrix_encoding(ty: WeightType, shape: &[usize]) -> (WeightType, Option<String>) {
    let k = shape[1];
    if ty == WeightType::Q8_0 && !k.is_multiple_of(Q8_BLOCK) {
        (WeightType::F16, Some(format!("k = {k} is not a multiple of {Q8_BLOCK}: f16 instead of q8_0")))
    } else {
        (ty, None)
    }
}

/// Decides every output tensor. Every tensor the config implies must be present with its shape;
/// errors name the tensor, both shapes and the config fields behind the expected one.
pub fn plan(src: &Source, ty: WeightType, lm_head: WeightType) -> Result<Plan> {
    let c = &src.config;
    let at = src.path.display();
    let dims = match c.arch {
        Arch::Gpt2 => "vocab_size, n_positions, n_embd, n_inner",
        Arch::GptNeo => "vocab_size, max_position_embeddings, hidden_size, intermediate_size",
    };
    let transpose_matrices = c.arch == Arch::Gpt2 && src.order == MatrixOrder::Transformers;
    let mut items = Vec::new();
    let mut used = BTreeSet::new();
    for (name, role, shape) in expected(src) {
        let source = src.names.get(&name).ok_or_else(|| {
            Error::runtime(format!(
                "{at}: tensor '{name}' is missing (a {} with {} layers has it)",
                c.arch.name(),
                c.n_layer
            ))
        })?;
        let transpose = role == Role::Matrix && transpose_matrices;
        let source_shape = if transpose { vec![shape[1], shape[0]] } else { shape.clone() };
        let entry = src.checkpoint.get(source).expect("names come from the checkpoint");
        if entry.shape != source_shape {
            return Err(Error::runtime(format!(
                "{at}: tensor '{source}' has shape {:?}, expected {source_shape:?} from the config ({dims})",
                entry.shape
            )));
        }
        let (encoding, note) = match role {
            Role::Matrix => matrix_encoding(ty, &shape),
            Role::Embedding => matrix_encoding(lm_head, &shape),
            Role::Positions if ty == WeightType::F32 => (WeightType::F32, None),
            Role::Positions => (WeightType::F16, None),
            Role::Other => (WeightType::F32, None),
        };
        used.insert(name.clone());
        items.push(Item { name, source: source.clone(), source_shape, shape, transpose, encoding, note });
    }
    let wte_encoding = items[0].encoding;
    let mut warnings = Vec::new();

    // An lm_head saved beside a tied wte is the same data; only an untied one is kept.
    if let Some(source) = src.names.get("lm_head.weight") {
        used.insert("lm_head.weight".to_string());
        let shape = vec![c.vocab_size, c.n_embd];
        let head = src.checkpoint.tensor_f32(source, &shape)?;
        let wte = src.checkpoint.tensor_f32(&items[0].source, &shape)?;
        let same = head.data().iter().zip(wte.data()).all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            let (encoding, note) = matrix_encoding(lm_head, &shape);
            items.push(Item {
                name: "lm_head.weight".into(),
                source: source.clone(),
                source_shape: shape.clone(),
                shape,
                transpose: false,
                encoding,
                note,
            });
        }
    }

    // Anything else (e.g. GPT2DoubleHeadsModel's multiple_choice_head) is kept as f32.
    for (name, source) in &src.names {
        if used.contains(name) {
            continue;
        }
        let entry = src.checkpoint.get(source).expect("names come from the checkpoint");
        if !matches!(entry.dtype, Some(DType::F32 | DType::F16 | DType::BF16)) {
            warnings
                .push(format!("{at}: skipping tensor '{source}' of type {} (not a float tensor)", entry.dtype_name));
            continue;
        }
        items.push(Item {
            name: name.clone(),
            source: source.clone(),
            source_shape: entry.shape.clone(),
            shape: entry.shape.clone(),
            transpose: false,
            encoding: WeightType::F32,
            note: None,
        });
    }
    items.sort_by(|a, b| a.name.cmp(&b.name));
    let slots = layout(&items);
    Ok(Plan { items, slots, lm_head: wte_encoding, warnings })
}

/// The file's tensors in data order (F32, F16, I8; names ascending within each), contiguous.
fn layout(items: &[Item]) -> Vec<Slot> {
    let mut slots = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let slot = |part, name: String, dtype, shape| Slot { item: i, part, name, dtype, shape, offsets: (0, 0) };
        match item.encoding {
            WeightType::F32 => slots.push(slot(Part::Values, item.name.clone(), Dtype::F32, item.shape.clone())),
            WeightType::F16 => slots.push(slot(Part::Values, item.name.clone(), Dtype::F16, item.shape.clone())),
            WeightType::Q8_0 => {
                let scales = vec![item.shape[0], item.shape[1] / Q8_BLOCK];
                slots.push(slot(Part::Values, item.name.clone(), Dtype::I8, item.shape.clone()));
                slots.push(slot(Part::Scales, format!("{}.scale", item.name), Dtype::F16, scales));
            }
        }
    }
    let rank = |d: Dtype| match d {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        _ => 2,
    };
    slots.sort_by(|a, b| rank(a.dtype).cmp(&rank(b.dtype)).then_with(|| a.name.cmp(&b.name)));
    let mut at = 0;
    for s in &mut slots {
        let bytes = s.shape.iter().product::<usize>() * s.dtype.bitsize() / 8;
        s.offsets = (at, at + bytes);
        at += bytes;
    }
    slots
}

/// The output's `__metadata__`.
pub fn metadata(src: &Source, ty: WeightType, plan: &Plan) -> HashMap<String, String> {
    use crate::source::{keys, TokenizerTexts};
    let mut m = HashMap::new();
    m.insert(keys::FORMAT.into(), keys::VERSION.into());
    m.insert(keys::TYPE.into(), ty.name().into());
    m.insert(keys::LM_HEAD.into(), plan.lm_head.name().into());
    m.insert(keys::CONFIG.into(), src.texts.config.clone());
    if let Some(g) = &src.texts.generation_config {
        m.insert(keys::GENERATION_CONFIG.into(), g.clone());
    }
    match &src.texts.tokenizer {
        TokenizerTexts::VocabMerges { vocab, merges } => {
            m.insert(keys::VOCAB.into(), vocab.clone());
            m.insert(keys::MERGES.into(), merges.clone());
        }
        TokenizerTexts::Json(json) => {
            m.insert(keys::TOKENIZER_JSON.into(), json.clone());
        }
        TokenizerTexts::None => {}
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, shape: &[usize], encoding: WeightType) -> Item {
        Item {
            name: name.into(),
            source: name.into(),
            source_shape: shape.to_vec(),
            shape: shape.to_vec(),
            transpose: false,
            encoding,
            note: None,
        }
    }

    #[test]
    fn q8_0_needs_whole_blocks() {
        assert_eq!(matrix_encoding(WeightType::Q8_0, &[32, 64]), (WeightType::Q8_0, None));
        let (ty, note) = matrix_encoding(WeightType::Q8_0, &[32, 40]);
        assert_eq!(ty, WeightType::F16);
        assert!(note.unwrap().contains("k = 40"));
        assert_eq!(matrix_encoding(WeightType::F32, &[32, 40]), (WeightType::F32, None));
    }

    #[test]
    fn layout_groups_by_type_then_name_and_is_contiguous() {
        let items = vec![
            item("b", &[3], WeightType::F32),
            item("a", &[2, 64], WeightType::Q8_0),
            item("c", &[3, 3], WeightType::F16),
            item("a.bias", &[5], WeightType::F32),
        ];
        let slots = layout(&items);
        let names: Vec<_> = slots.iter().map(|s| (s.name.as_str(), s.dtype)).collect();
        assert_eq!(
            names,
            [("a.bias", Dtype::F32), ("b", Dtype::F32), ("a.scale", Dtype::F16), ("c", Dtype::F16), ("a", Dtype::I8)]
        );
        let offsets: Vec<_> = slots.iter().map(|s| s.offsets).collect();
        assert_eq!(offsets, [(0, 20), (20, 32), (32, 40), (40, 58), (58, 186)]);
        assert_eq!(slots[2].shape, [2, 2]);
        assert_eq!((slots[2].item, slots[2].part), (1, Part::Scales));
    }
}
