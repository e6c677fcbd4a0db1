//! What to write: every output tensor's name, shape, encoding and place in the file.
//!
//! The rules (the Quill file format, which the loader reads exactly):
//! - matmul weights are stored `(out, in)` = `[n, k]` (GPT-2's Conv1D `(in, out)` transposed), in
//!   the asked type; q8_0 is an I8 `name` `[n, k]` plus an F16 `name.scale` `[n, k / 32]`, and only
//!   where `k % 32 == 0` (otherwise F16); a block format (q4_0, and the formats q4_k_m mixes) is a
//!   U8 `name` `[n, row bytes]` of GGUF's blocks, named in the metadata's `quill.blocks`, which
//!   makes the file version 2;
//! - the 4-bit types pick each matrix's format as llama.cpp's recipes do ([`recipe`]), falling
//!   back as llama.cpp does where `k` is not whole blocks;
//! - `wte.weight` (and an untied `lm_head.weight`) follow `--lm-head`, else the type's rule;
//! - `wpe.weight` is F32 for f32, else F16 (it is read one row per token, never by a matmul);
//! - everything else (LayerNorms, biases, a multiple-choice head) stays F32: small, and summed
//!   into activations where precision matters.
//!
//! Tensors are laid out F32 first, then F16, then I8, then U8, each group in name order, so
//! every offset is a multiple of its element size once the data start is aligned.

use std::collections::{BTreeSet, HashMap};

use quill::checkpoint::{DType, MatrixOrder};
use quill::config::Arch;
use quill_kernels::{BlockFormat, Q8_BLOCK};
use safetensors::Dtype;

use crate::error::{Error, Result};
use crate::source::Source;

/// The file types the command line offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightType {
    F32,
    F16,
    /// int8 in blocks of 32, one f16 scale each (split into values and scales).
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit in blocks of 32 (GGUF's q4_0); wte in q6_k, as llama.cpp's Q4_0.
    #[value(name = "q4_0")]
    Q4_0,
    /// llama.cpp's Q4_K_M mix: q4_k, the attention's value projection and the MLP output q6_k in
    /// some layers (README, "Quantizing").
    #[value(name = "q4_k_m")]
    Q4KM,
}

impl WeightType {
    pub fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::Q8_0 => "q8_0",
            WeightType::Q4_0 => "q4_0",
            WeightType::Q4KM => "q4_k_m",
        }
    }
}

/// How one tensor is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    F32,
    F16,
    /// Quill's q8_0: I8 values and an F16 `.scale` tensor.
    Q8_0,
    /// GGUF's blocks of a format, as U8 rows.
    Blocks(BlockFormat),
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::F32 => "f32",
            Encoding::F16 => "f16",
            Encoding::Q8_0 => "q8_0",
            Encoding::Blocks(f) => f.name(),
        }
    }

    /// `--lm-head`'s values: f32, f16, q8_0, or a block format's name.
    pub fn parse(s: &str) -> std::result::Result<Encoding, String> {
        match s {
            "f32" => Ok(Encoding::F32),
            "f16" => Ok(Encoding::F16),
            "q8_0" => Ok(Encoding::Q8_0),
            _ => BlockFormat::parse(s).map(Encoding::Blocks).ok_or_else(|| {
                let blocks: Vec<&str> = BlockFormat::ALL.iter().map(|f| f.name()).filter(|&n| n != "q8_0").collect();
                format!("expected f32, f16, q8_0 or {}", blocks.join(", "))
            }),
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
    pub encoding: Encoding,
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
    /// The encoding `wte.weight` is actually written in (`quill.lm_head`).
    pub lm_head: Encoding,
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

/// `want` for a matrix `[n, k]`, or what stands in where its blocks do not fit `k`, with the
/// note saying so: llama.cpp's fallbacks for the k-quants (q4_k → q5_0, q5_k → q5_1,
/// q6_k → q8_0 blocks), and f16 where not even blocks of 32 fit.
fn fitted(want: Encoding, shape: &[usize]) -> (Encoding, Option<String>) {
    let k = shape[1];
    let fits = |e: Encoding| match e {
        Encoding::F32 | Encoding::F16 => true,
        Encoding::Q8_0 => k.is_multiple_of(Q8_BLOCK),
        Encoding::Blocks(f) => f.row_bytes(k).is_some(),
    };
    if fits(want) {
        return (want, None);
    }
    let fallback = match want {
        Encoding::Blocks(BlockFormat::Q4K) => Encoding::Blocks(BlockFormat::Q5_0),
        Encoding::Blocks(BlockFormat::Q5K) => Encoding::Blocks(BlockFormat::Q5_1),
        Encoding::Blocks(BlockFormat::Q6K) => Encoding::Blocks(BlockFormat::Q8_0),
        _ => Encoding::F16,
    };
    let got = if fits(fallback) { fallback } else { Encoding::F16 };
    let block = match want {
        Encoding::Blocks(f) => f.block_weights(),
        _ => Q8_BLOCK,
    };
    (got, Some(format!("k = {k} is not a multiple of {block}: {} instead of {}", got.name(), want.name())))
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third one
/// between, get more bits in the `_M` mixes.
fn use_more_bits(layer: usize, n_layer: usize) -> bool {
    let first = n_layer / 8;
    layer < first || layer >= 7 * n_layer / 8 || (layer - first) % 3 == 2
}

/// The encoding a 4-bit file type asks for a matrix or embedding (before [`fitted`]), as
/// llama.cpp's `llama_tensor_get_type` decides it for a gpt2 model (checked tensor by tensor
/// against `llama-quantize` at llama.cpp 0c1e570 on a 124M-shape GPT-2; GPT-Neo's separate
/// q/k/v take the same rule, v_proj as `attn_v`):
/// - the output matrix (GPT-2's tied wte) in q6_k, for Q4_0 and Q4_K_M alike;
/// - Q4_0: every other matrix q4_0;
/// - Q4_K_M: the attention's value projection (GPT-2's fused qkv, GPT-Neo's v_proj) and the MLP
///   output (`ffn_down`) in q6_k in the layers [`use_more_bits`] picks; everything else q4_k.
fn recipe(ty: WeightType, name: &str, role: Role, n_layer: usize) -> Encoding {
    let layer = name.strip_prefix("h.").and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok());
    let more_bits = layer.is_some_and(|i| use_more_bits(i, n_layer));
    match (ty, role) {
        (WeightType::F32, _) => Encoding::F32,
        (WeightType::F16, _) => Encoding::F16,
        (WeightType::Q8_0, _) => Encoding::Q8_0,
        (WeightType::Q4_0 | WeightType::Q4KM, Role::Embedding) => Encoding::Blocks(BlockFormat::Q6K),
        (WeightType::Q4_0, _) => Encoding::Blocks(BlockFormat::Q4_0),
        (WeightType::Q4KM, _)
            if more_bits
                && ["attn.c_attn.weight", "mlp.c_proj.weight", "v_proj.weight"].iter().any(|s| name.ends_with(s)) =>
        {
            Encoding::Blocks(BlockFormat::Q6K)
        }
        (WeightType::Q4KM, _) => Encoding::Blocks(BlockFormat::Q4K),
    }
}

/// Decides every output tensor. Every tensor the config implies must be present with its shape;
/// errors name the tensor, both shapes and the config fields behind the expected one.
pub fn plan(src: &Source, ty: WeightType, lm_head: Option<Encoding>) -> Result<Plan> {
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
            Role::Matrix => fitted(recipe(ty, &name, role, c.n_layer), &shape),
            Role::Embedding => fitted(lm_head.unwrap_or_else(|| recipe(ty, &name, role, c.n_layer)), &shape),
            Role::Positions if ty == WeightType::F32 => (Encoding::F32, None),
            Role::Positions => (Encoding::F16, None),
            Role::Other => (Encoding::F32, None),
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
            let (encoding, note) =
                fitted(lm_head.unwrap_or_else(|| recipe(ty, "lm_head.weight", Role::Embedding, c.n_layer)), &shape);
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
            encoding: Encoding::F32,
            note: None,
        });
    }
    items.sort_by(|a, b| a.name.cmp(&b.name));
    let slots = layout(&items);
    Ok(Plan { items, slots, lm_head: wte_encoding, warnings })
}

/// The file's tensors in data order (F32, F16, I8, U8; names ascending within each), contiguous.
fn layout(items: &[Item]) -> Vec<Slot> {
    let mut slots = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let slot = |part, name: String, dtype, shape| Slot { item: i, part, name, dtype, shape, offsets: (0, 0) };
        match item.encoding {
            Encoding::F32 => slots.push(slot(Part::Values, item.name.clone(), Dtype::F32, item.shape.clone())),
            Encoding::F16 => slots.push(slot(Part::Values, item.name.clone(), Dtype::F16, item.shape.clone())),
            Encoding::Q8_0 => {
                let scales = vec![item.shape[0], item.shape[1] / Q8_BLOCK];
                slots.push(slot(Part::Values, item.name.clone(), Dtype::I8, item.shape.clone()));
                slots.push(slot(Part::Scales, format!("{}.scale", item.name), Dtype::F16, scales));
            }
            Encoding::Blocks(f) => {
                let row = f.row_bytes(item.shape[1]).expect("fitted: whole blocks");
                slots.push(slot(Part::Values, item.name.clone(), Dtype::U8, vec![item.shape[0], row]));
            }
        }
    }
    let rank = |d: Dtype| match d {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::I8 => 2,
        _ => 3,
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
    let blocks: serde_json::Map<String, serde_json::Value> = plan
        .items
        .iter()
        .filter_map(|i| match i.encoding {
            Encoding::Blocks(f) => Some((i.name.clone(), f.name().into())),
            _ => None,
        })
        .collect();
    // Files without blocks stay version 1, which quill builds before block formats read too.
    if blocks.is_empty() {
        m.insert(keys::FORMAT.into(), keys::VERSION_1.into());
    } else {
        m.insert(keys::FORMAT.into(), keys::VERSION.into());
        m.insert(keys::BLOCKS.into(), serde_json::Value::Object(blocks).to_string());
    }
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

    fn item(name: &str, shape: &[usize], encoding: Encoding) -> Item {
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
    fn blocks_that_do_not_fit_fall_back_as_llama_cpp() {
        assert_eq!(fitted(Encoding::Q8_0, &[32, 64]), (Encoding::Q8_0, None));
        let (ty, note) = fitted(Encoding::Q8_0, &[32, 40]);
        assert_eq!(ty, Encoding::F16);
        assert!(note.unwrap().contains("k = 40"));
        assert_eq!(fitted(Encoding::F32, &[32, 40]), (Encoding::F32, None));
        let b = Encoding::Blocks;
        // GPT-2 XL's 1600: not whole 256-blocks, whole 32-blocks.
        for (want, got) in [
            (BlockFormat::Q4K, BlockFormat::Q5_0),
            (BlockFormat::Q5K, BlockFormat::Q5_1),
            (BlockFormat::Q6K, BlockFormat::Q8_0),
        ] {
            let (e, note) = fitted(b(want), &[10, 1600]);
            assert_eq!(e, b(got));
            assert!(note.unwrap().contains("k = 1600 is not a multiple of 256"));
            assert_eq!(fitted(b(want), &[10, 6400]), (b(want), None));
        }
        assert_eq!(fitted(b(BlockFormat::Q4_0), &[10, 40]).0, Encoding::F16);
        assert_eq!(fitted(b(BlockFormat::Q4K), &[10, 40]).0, Encoding::F16);
    }

    #[test]
    fn the_q4_k_m_recipe() {
        // 12 layers: the first eighth (12 / 8 = 1: layer 0), from 7·12 / 8 = 10 on, and every third
        // one between (i − 1 ≡ 2 mod 3): 3, 6, 9.
        let more: Vec<usize> = (0..12).filter(|&i| use_more_bits(i, 12)).collect();
        assert_eq!(more, [0, 3, 6, 9, 10, 11]);
        let r = |name: &str, role| recipe(WeightType::Q4KM, name, role, 12);
        let b = Encoding::Blocks;
        assert_eq!(r("wte.weight", Role::Embedding), b(BlockFormat::Q6K));
        assert_eq!(r("h.4.attn.c_attn.weight", Role::Matrix), b(BlockFormat::Q4K));
        assert_eq!(r("h.3.attn.c_attn.weight", Role::Matrix), b(BlockFormat::Q6K));
        assert_eq!(r("h.3.mlp.c_proj.weight", Role::Matrix), b(BlockFormat::Q6K));
        assert_eq!(r("h.4.mlp.c_proj.weight", Role::Matrix), b(BlockFormat::Q4K));
        assert_eq!(r("h.3.mlp.c_fc.weight", Role::Matrix), b(BlockFormat::Q4K));
        assert_eq!(r("h.3.attn.c_proj.weight", Role::Matrix), b(BlockFormat::Q4K));
        assert_eq!(r("h.0.attn.attention.v_proj.weight", Role::Matrix), b(BlockFormat::Q6K));
        assert_eq!(r("h.1.attn.attention.v_proj.weight", Role::Matrix), b(BlockFormat::Q4K));
        assert_eq!(r("h.0.attn.attention.q_proj.weight", Role::Matrix), b(BlockFormat::Q4K));
        assert_eq!(recipe(WeightType::Q4_0, "h.0.mlp.c_fc.weight", Role::Matrix, 12), b(BlockFormat::Q4_0));
        assert_eq!(recipe(WeightType::Q4_0, "wte.weight", Role::Embedding, 12), b(BlockFormat::Q6K));
    }

    #[test]
    fn layout_groups_by_type_then_name_and_is_contiguous() {
        let items = vec![
            item("b", &[3], Encoding::F32),
            item("a", &[2, 64], Encoding::Q8_0),
            item("c", &[3, 3], Encoding::F16),
            item("a.bias", &[5], Encoding::F32),
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
