//! GPT-2 and GPT-Neo as one pre-LN transformer whose differences are data.
//!
//! - [`Model`] (here): the config and the weights, read from a checkpoint and checked against the
//!   config before the first forward pass.
//! - `weights`: typed views of every tensor (mostly straight into the mapped file).
//! - `forward_pass`: one chunk of a sequence through every layer (the hot path).
//! - [`Session`] (`session`): one sequence's KV arena and buffers; `feed` runs the forward pass.
//! - `hf_forward`: transformers' `forward()` over a batch of sessions (masks, positions, token
//!   types, hidden states, attentions, loss).
//! - `heads`: `GPT2DoubleHeadsModel`'s multiple-choice head.

mod forward_pass;
mod heads;
mod hf_forward;
mod session;
mod weights;

use std::path::Path;

use quill_kernels::Kernels;

pub use heads::{DoubleHeadsOutput, MultipleChoiceHead};
pub use hf_forward::{ForwardInput, ForwardOutput, HeadMask, LogitsWanted, IGNORE_INDEX};
pub use session::Session;
pub(crate) use weights::Weights;

use crate::checkpoint::{Checkpoint, DType, MatrixOrder};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kv_cache::{KvArena, KvType};
use quill_kernels::BlockFormat;

/// How to load a model. The default runs the process's kernel table with an f32 KV cache.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// The kernel table to run with; `None`: the process's choice ([`crate::kernels::kernels`]:
    /// the best level of this CPU, or `QUILL_KERNELS`). E.g.
    /// `Some(quill::kernels::select(Some("scalar"))?)` to run the scalar reference.
    pub kernels: Option<&'static Kernels>,
    /// Element type of the KV arena of this model's sessions.
    pub kv: KvType,
}

/// A loaded model: its description, its weights (mostly views into the mapped checkpoint) and the
/// kernel table it runs with.
pub struct Model {
    pub(crate) config: ModelConfig,
    pub(crate) weights: Weights,
    pub(crate) kernels: &'static Kernels,
    checkpoint: Checkpoint,
    /// Element type of the KV arena of its sessions.
    kv_type: KvType,
}

impl Model {
    /// Loads a model: a Hugging Face model folder (`config.json` and safetensors weights), one
    /// Quill file (`quantize`'s output), both mapped; or an OpenAI TensorFlow checkpoint folder
    /// ([`crate::tf`]), read into memory as f32.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model> {
        if path.is_file() {
            let (config, checkpoint) = crate::quill_file::open(path)?;
            return Self::from_checkpoint(config, checkpoint, MatrixOrder::OutIn, opts);
        }
        if !path.is_dir() {
            return Err(Error::not_a_model_folder(path));
        }
        if crate::tf::is_checkpoint_folder(path) {
            let folder = crate::tf::open_folder(path)?;
            let checkpoint = crate::tf::load(&folder)?;
            return Self::from_checkpoint(folder.config, checkpoint, MatrixOrder::Transformers, opts);
        }
        let config = ModelConfig::from_file(&path.join("config.json"))?;
        let checkpoint = Checkpoint::open_dir(path)?;
        Self::from_checkpoint(config, checkpoint, MatrixOrder::Transformers, opts)
    }

    /// A model from a checkpoint already opened (e.g. by [`crate::quill_file::from_checkpoint`])
    /// whose matrices are stored in `order`.
    pub fn from_checkpoint(
        config: ModelConfig,
        checkpoint: Checkpoint,
        order: MatrixOrder,
        opts: &LoadOptions,
    ) -> Result<Model> {
        let kernels = match opts.kernels {
            Some(k) => k,
            None => quill_kernels::kernels().map_err(|e| Error::usage(format!("QUILL_KERNELS: {e}")))?,
        };
        let weights = Weights::load(&config, &checkpoint, order)?;
        Ok(Model { config, weights, kernels, checkpoint, kv_type: opts.kv })
    }

    /// The model's description (transformers' config, resolved).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The kernel table the model runs with.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernels
    }

    /// Element type of the KV arena of this model's sessions.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Bytes of weights one decoding step reads: every matmul's weights and the lm_head.
    pub fn weight_bytes_per_token(&self) -> usize {
        self.weights.bytes_per_token()
    }

    /// Bytes of weight matrices held in memory rather than read in place from the mapped file:
    /// 0 when every matrix is used in place (data that is unaligned, or bf16, is copied once).
    pub fn copied_weight_bytes(&self) -> usize {
        self.weights.copied_bytes()
    }

    /// Total parameters (the tied lm_head counted once).
    pub fn parameter_count(&self) -> usize {
        self.weights.parameter_count()
    }

    /// The checkpoint's `__metadata__` (a Quill file's config, tokenizer, ...).
    pub fn metadata(&self) -> &std::collections::HashMap<String, String> {
        self.checkpoint.metadata()
    }

    /// Bytes of the checkpoint files mapped.
    pub fn file_bytes(&self) -> u64 {
        self.checkpoint.file_bytes()
    }

    /// The element type most of the checkpoint's weights are stored in (by element count; of
    /// equal counts, the later in [`DType`]'s order).
    pub fn stored_dtype(&self) -> DType {
        self.stored_mix().first().map_or(DType::F32, |&(d, _)| d)
    }

    /// Every element type of the checkpoint's tensors and how many elements each holds, most
    /// first (of equal counts, the later in [`DType`]'s order first).
    pub fn stored_mix(&self) -> Vec<(DType, usize)> {
        let rank = |d: DType| match d {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
            DType::Q8_0 => 3,
            DType::Blocks(f) => 4 + BlockFormat::ALL.iter().position(|&g| g == f).unwrap_or(0),
        };
        let mut counts: Vec<(DType, usize)> = Vec::new();
        for name in self.checkpoint.names() {
            if let Some(e) = self.checkpoint.get(name) {
                let Some(dtype) = e.dtype else { continue };
                let n = e.elements();
                match counts.iter_mut().find(|(d, _)| *d == dtype) {
                    Some((_, total)) => *total += n,
                    None => counts.push((dtype, n)),
                }
            }
        }
        counts.sort_by_key(|&(d, n)| std::cmp::Reverse((n, rank(d))));
        counts
    }

    /// Bytes of the KV arena a session of `ctx` positions allocates (local-attention layers keep
    /// only a ring of their last positions).
    pub fn kv_bytes(&self, ctx: usize) -> usize {
        let c = &self.config;
        KvArena::bytes_for(&self.kv_slots(ctx), c.n_head, c.head_dim(), ctx, self.kv_type)
    }
}
