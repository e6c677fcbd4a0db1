//! Named weight views of a GPT-2 checkpoint, every shape checked against the config at load.

use quill_kernels::{Kernels, Layout, Weight};

use crate::checkpoint::{Checkpoint, DType, TensorF32, WeightTensor};
use crate::config::ModelConfig;
use crate::error::Result;

/// A dense layer `y = x · W + b` with `k` inputs and `n` outputs.
pub struct Linear {
    pub w: WeightTensor,
    pub b: Option<TensorF32>,
    pub k: usize,
    pub n: usize,
    pub layout: Layout,
}

impl Linear {
    /// `out[M, n] = x[M, k] · W + b`.
    pub fn forward(&self, kernels: &Kernels, x: &[f32], out: &mut [f32]) {
        kernels.matmul(x, self.weight(), self.b.as_ref().map(|b| b.data()), out);
    }

    pub fn weight(&self) -> Weight<'_> {
        Weight { data: self.w.data(), k: self.k, n: self.n, layout: self.layout }
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
    pub wte: WeightTensor,
    /// Position embeddings `(n_positions, C)`.
    pub wpe: WeightTensor,
    pub layers: Vec<LayerWeights>,
    pub ln_f: Norm,
    /// An untied lm_head `(V, C)`, when the checkpoint carries one that differs from wte.
    pub lm_head: Option<WeightTensor>,
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
                w: ckpt.weight(&format!("{prefix}{name}.weight"), &[k, n])?,
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
        let wte = ckpt.weight(&format!("{prefix}wte.weight"), &[v, c])?;
        // lm_head is tied to wte; a file that stores it anyway (identical bytes) still shares wte.
        let lm_head = match ckpt.get("lm_head.weight") {
            Some(_) => {
                let head = ckpt.weight("lm_head.weight", &[v, c])?;
                (!same_data(&head, &wte)).then_some(head)
            }
            None => None,
        };
        let wpe = ckpt.weight(&format!("{prefix}wpe.weight"), &[config.n_positions, c])?;
        Ok(Weights { wpe, wte, layers, ln_f: norm("ln_f")?, lm_head })
    }

    /// The `(V, C)` matrix that maps the final hidden state to logits.
    pub fn lm_head(&self) -> &WeightTensor {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }

    /// Bytes of weights a decode step reads: every matmul's weights and the lm_head.
    pub fn bytes_per_token(&self) -> usize {
        let bytes = |t: &WeightTensor| t.data().len() * if t.dtype() == DType::F16 { 2 } else { 4 };
        let layers: usize = self
            .layers
            .iter()
            .map(|l| bytes(&l.qkv.w) + bytes(&l.attn_out.w) + bytes(&l.fc.w) + bytes(&l.proj.w))
            .sum();
        layers + bytes(self.lm_head())
    }

    pub fn parameter_count(&self) -> usize {
        let norm = |n: &Norm| 2 * n.gamma.data().len();
        let len = |t: &WeightTensor| t.data().len();
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
        len(&self.wte) + len(&self.wpe) + layers + norm(&self.ln_f) + self.lm_head.as_ref().map_or(0, len)
    }
}

/// Whether two weights hold the same elements (a tied lm_head saved twice).
fn same_data(a: &WeightTensor, b: &WeightTensor) -> bool {
    use quill_kernels::WeightData::{F16, F32};
    match (a.data(), b.data()) {
        (F32(x), F32(y)) => x == y,
        (F16(x), F16(y)) => x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()) && x.len() == y.len(),
        _ => false,
    }
}
