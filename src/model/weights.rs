//! Named weight views of a GPT-2 checkpoint, every shape checked against the config at load.

use quill_kernels::{Kernels, Layout, WeightF32};

use crate::checkpoint::{Checkpoint, TensorF32};
use crate::config::ModelConfig;
use crate::error::Result;

/// A dense layer `y = x · W + b` with `k` inputs and `n` outputs.
pub struct Linear {
    pub w: TensorF32,
    pub b: Option<TensorF32>,
    pub k: usize,
    pub n: usize,
    pub layout: Layout,
}

impl Linear {
    /// `out[M, n] = x[M, k] · W + b`.
    pub fn forward(&self, kernels: &Kernels, x: &[f32], out: &mut [f32]) {
        let w = WeightF32 { data: self.w.data(), k: self.k, n: self.n, layout: self.layout };
        kernels.matmul_f32(x, w, self.b.as_ref().map(|b| b.data()), out);
    }

    fn parameters(&self) -> usize {
        self.k * self.n + self.b.as_ref().map_or(0, |_| self.n)
    }
}

/// LayerNorm parameters, each `(C)`.
pub struct Norm {
    pub gamma: TensorF32,
    pub beta: TensorF32,
}

pub struct LayerWeights {
    pub ln_1: Norm,
    /// Fused q, k, v projection: `(C) → (3C)`.
    pub qkv: Linear,
    /// Attention output projection: `(C) → (C)`.
    pub attn_out: Linear,
    pub ln_2: Norm,
    /// MLP up-projection: `(C) → (n_inner)`.
    pub fc: Linear,
    /// MLP down-projection: `(n_inner) → (C)`.
    pub proj: Linear,
}

pub struct Weights {
    /// Token embeddings `(V, C)`; also the lm_head unless the checkpoint has its own.
    pub wte: TensorF32,
    /// Position embeddings `(n_positions, C)`.
    pub wpe: TensorF32,
    pub layers: Vec<LayerWeights>,
    pub ln_f: Norm,
    /// An untied lm_head `(V, C)`, when the checkpoint carries one that differs from wte.
    pub lm_head: Option<TensorF32>,
}

impl Weights {
    pub fn load(config: &ModelConfig, ckpt: &Checkpoint) -> Result<Weights> {
        // The hub's gpt2 files have bare names; save_pretrained writes them under `transformer.`.
        let prefix = if ckpt.get("transformer.wte.weight").is_some() { "transformer." } else { "" };
        let t = |name: &str, shape: &[usize]| ckpt.tensor_f32(&format!("{prefix}{name}"), shape);
        let (c, v, inner) = (config.n_embd, config.vocab_size, config.n_inner);
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm { gamma: t(&format!("{name}.weight"), &[c])?, beta: t(&format!("{name}.bias"), &[c])? })
        };
        // GPT-2's Conv1D stores (in, out).
        let conv1d = |name: &str, k: usize, n: usize| -> Result<Linear> {
            Ok(Linear {
                w: t(&format!("{name}.weight"), &[k, n])?,
                b: Some(t(&format!("{name}.bias"), &[n])?),
                k,
                n,
                layout: Layout::InOut,
            })
        };
        let layers = (0..config.n_layer)
            .map(|i| {
                let p = format!("h.{i}");
                Ok(LayerWeights {
                    ln_1: norm(&format!("{p}.ln_1"))?,
                    qkv: conv1d(&format!("{p}.attn.c_attn"), c, 3 * c)?,
                    attn_out: conv1d(&format!("{p}.attn.c_proj"), c, c)?,
                    ln_2: norm(&format!("{p}.ln_2"))?,
                    fc: conv1d(&format!("{p}.mlp.c_fc"), c, inner)?,
                    proj: conv1d(&format!("{p}.mlp.c_proj"), inner, c)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wte = t("wte.weight", &[v, c])?;
        // lm_head is tied to wte; a file that stores it anyway (identical bytes) still shares wte.
        let lm_head = match ckpt.get("lm_head.weight") {
            Some(_) => {
                let head = ckpt.tensor_f32("lm_head.weight", &[v, c])?;
                (head.data() != wte.data()).then_some(head)
            }
            None => None,
        };
        Ok(Weights { wpe: t("wpe.weight", &[config.n_positions, c])?, wte, layers, ln_f: norm("ln_f")?, lm_head })
    }

    /// The `(V, C)` matrix that maps the final hidden state to logits.
    pub fn lm_head(&self) -> &TensorF32 {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }

    pub fn parameter_count(&self) -> usize {
        let norm = |n: &Norm| 2 * n.gamma.data().len();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                norm(&l.ln_1)
                    + norm(&l.ln_2)
                    + l.qkv.parameters()
                    + l.attn_out.parameters()
                    + l.fc.parameters()
                    + l.proj.parameters()
            })
            .sum();
        self.wte.data().len()
            + self.wpe.data().len()
            + layers
            + norm(&self.ln_f)
            + self.lm_head.as_ref().map_or(0, |h| h.data().len())
    }
}
