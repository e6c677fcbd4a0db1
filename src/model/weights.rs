//! Named weight views of a GPT-2 or GPT-Neo checkpoint, every shape checked against the config
//! at load. The two differ here only in names and layout: GPT-2's `Conv1D` stores `(in, out)`
//! and fuses q, k and v; GPT-Neo's `nn.Linear` stores `(out, in)`, with q, k, v separate.

use quill_kernels::{Kernels, Layout, Weight};

use crate::checkpoint::{Checkpoint, MatrixOrder, TensorF32, WeightTensor};
use crate::config::{Arch, ModelConfig};
use crate::error::Result;

/// A dense layer `y = x · W + b` with `k` inputs and `n` outputs.
pub(crate) struct Linear {
    pub(crate) w: WeightTensor,
    pub(crate) b: Option<TensorF32>,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) layout: Layout,
}

impl Linear {
    /// `out[M, n] = x[M, k] · W + b`.
    pub(crate) fn forward(&self, kernels: &Kernels, x: &[f32], out: &mut [f32]) {
        kernels.matmul(x, self.weight(), self.b.as_ref().map(|b| b.data()), out);
    }

    pub(crate) fn weight(&self) -> Weight<'_> {
        Weight { data: self.w.data(), k: self.k, n: self.n, layout: self.layout }
    }

    fn parameters(&self) -> usize {
        self.k * self.n + self.b.as_ref().map_or(0, |_| self.n)
    }
}

/// LayerNorm parameters, each `(C)`.
pub(crate) struct Norm {
    pub(crate) gamma: TensorF32,
    pub(crate) beta: TensorF32,
}

/// The q, k and v projections of one layer.
pub(crate) enum Qkv {
    /// GPT-2's `c_attn`, `(C) → (3C)`: output row `i` holds q, k and v side by side.
    Fused(Linear),
    /// GPT-Neo's `q_proj`, `k_proj`, `v_proj`, each `(C) → (C)`: three `[M, C]` output blocks.
    Separate(Box<[Linear; 3]>),
}

/// Where [`Qkv::forward`] put q, k and v: row `i` of each starts at `start + i * stride`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QkvRows {
    pub(crate) q: usize,
    pub(crate) k: usize,
    pub(crate) v: usize,
    pub(crate) stride: usize,
}

impl Qkv {
    /// Projects `x [M, C]` into `out` (at least `3·M·C` floats) and says where q, k and v are.
    pub(crate) fn forward(&self, kernels: &Kernels, x: &[f32], out: &mut [f32]) -> QkvRows {
        match self {
            Qkv::Fused(w) => {
                w.forward(kernels, x, &mut out[..x.len() / w.k * w.n]);
                let c = w.n / 3;
                QkvRows { q: 0, k: c, v: 2 * c, stride: 3 * c }
            }
            Qkv::Separate(ws) => {
                let block = x.len() / ws[0].k * ws[0].n;
                for (w, out) in ws.iter().zip(out[..3 * block].chunks_exact_mut(block)) {
                    w.forward(kernels, x, out);
                }
                QkvRows { q: 0, k: block, v: 2 * block, stride: ws[0].n }
            }
        }
    }

    /// The matrices, in the order q, k, v (one for fused).
    pub(crate) fn linears(&self) -> &[Linear] {
        match self {
            Qkv::Fused(w) => std::slice::from_ref(w),
            Qkv::Separate(ws) => &ws[..],
        }
    }
}

pub(crate) struct LayerWeights {
    pub(crate) ln_1: Norm,
    pub(crate) qkv: Qkv,
    /// Attention output projection: `(C) → (C)`.
    pub(crate) attn_out: Linear,
    pub(crate) ln_2: Norm,
    /// MLP up-projection: `(C) → (n_inner)`.
    pub(crate) fc: Linear,
    /// MLP down-projection: `(n_inner) → (C)`.
    pub(crate) proj: Linear,
}

pub(crate) struct Weights {
    /// Token embeddings `(V, C)`; also the lm_head unless the checkpoint has its own.
    pub(crate) wte: WeightTensor,
    /// Position embeddings `(n_positions, C)`.
    pub(crate) wpe: WeightTensor,
    pub(crate) layers: Vec<LayerWeights>,
    pub(crate) ln_f: Norm,
    /// An untied lm_head `(V, C)`, when the checkpoint carries one that differs from wte.
    pub(crate) lm_head: Option<WeightTensor>,
}

impl Weights {
    /// The weights of `config` in `ckpt`, whose matrices are stored in `order`.
    pub(crate) fn load(config: &ModelConfig, ckpt: &Checkpoint, order: MatrixOrder) -> Result<Weights> {
        // The hub's gpt2 files have bare names; save_pretrained writes them under `transformer.`.
        let prefix = if ckpt.get("transformer.wte.weight").is_some() { "transformer." } else { "" };
        let t = |name: &str, shape: &[usize]| ckpt.tensor_f32(&format!("{prefix}{name}"), shape);
        let (c, v, inner) = (config.n_embd, config.vocab_size, config.n_inner);
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm { gamma: t(&format!("{name}.weight"), &[c])?, beta: t(&format!("{name}.bias"), &[c])? })
        };
        // A dense layer of k inputs and n outputs: GPT-2's Conv1D stores (in, out), nn.Linear
        // (GPT-Neo) (out, in).
        let dense = |name: &str, k: usize, n: usize, bias: bool| -> Result<Linear> {
            let (layout, shape) = match config.arch {
                Arch::Gpt2 if order == MatrixOrder::Transformers => (Layout::InOut, [k, n]),
                _ => (Layout::OutIn, [n, k]),
            };
            Ok(Linear {
                w: ckpt.weight(&format!("{prefix}{name}.weight"), &shape)?,
                b: if bias { Some(t(&format!("{name}.bias"), &[n])?) } else { None },
                k,
                n,
                layout,
            })
        };
        let layers = (0..config.n_layer)
            .map(|i| {
                let p = format!("h.{i}");
                let ln_1 = norm(&format!("{p}.ln_1"))?;
                // The legacy mask buffers (`attn.bias`, `attn.masked_bias`, and GPT-Neo's
                // `attn.attention.bias`/`masked_bias`) of older checkpoints are not read.
                let (qkv, attn_out) = match config.arch {
                    Arch::Gpt2 => (
                        Qkv::Fused(dense(&format!("{p}.attn.c_attn"), c, 3 * c, true)?),
                        dense(&format!("{p}.attn.c_proj"), c, c, true)?,
                    ),
                    Arch::GptNeo => {
                        let a = format!("{p}.attn.attention");
                        let proj = |x: &str| dense(&format!("{a}.{x}_proj"), c, c, false);
                        let qkv = Qkv::Separate(Box::new([proj("q")?, proj("k")?, proj("v")?]));
                        (qkv, dense(&format!("{a}.out_proj"), c, c, true)?)
                    }
                };
                Ok(LayerWeights {
                    ln_1,
                    qkv,
                    attn_out,
                    ln_2: norm(&format!("{p}.ln_2"))?,
                    fc: dense(&format!("{p}.mlp.c_fc"), c, inner, true)?,
                    proj: dense(&format!("{p}.mlp.c_proj"), inner, c, true)?,
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
    pub(crate) fn lm_head(&self) -> &WeightTensor {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }

    /// Bytes of weights a decode step reads: every matmul's weights and the lm_head.
    pub(crate) fn bytes_per_token(&self) -> usize {
        let bytes = |t: &WeightTensor| t.bytes();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.qkv.linears().iter().map(|q| bytes(&q.w)).sum::<usize>()
                    + bytes(&l.attn_out.w)
                    + bytes(&l.fc.w)
                    + bytes(&l.proj.w)
            })
            .sum();
        layers + bytes(self.lm_head())
    }

    /// Bytes of the weight matrices (embeddings, every layer's, an untied lm_head) that are
    /// copies rather than views into the mapped file.
    pub(crate) fn copied_bytes(&self) -> usize {
        let copied = |t: &WeightTensor| if t.is_mapped() { 0 } else { t.bytes() };
        let layers: usize = self
            .layers
            .iter()
            .flat_map(|l| l.qkv.linears().iter().chain([&l.attn_out, &l.fc, &l.proj]))
            .map(|lin| copied(&lin.w))
            .sum();
        copied(&self.wte) + copied(&self.wpe) + layers + self.lm_head.as_ref().map_or(0, copied)
    }

    /// The name of the first weight (in layer order) holding a NaN or an infinity, if any: a
    /// full pass over the weights, for diagnosing non-finite outputs.
    pub(crate) fn first_non_finite(&self) -> Option<String> {
        // Decoded a few blocks at a time (4096 is whole blocks of every format).
        let finite_w = |t: &WeightTensor| {
            let d = t.data();
            let mut buf = vec![0.0; 4096];
            (0..d.len()).step_by(4096).all(|a| {
                let b = (a + 4096).min(d.len());
                d.slice(a..b).to_f32(&mut buf[..b - a]);
                buf[..b - a].iter().all(|v| v.is_finite())
            })
        };
        let finite_v = |t: &TensorF32| t.data().iter().all(|v| v.is_finite());
        if !finite_w(&self.wte) {
            return Some("wte".into());
        }
        if !finite_w(&self.wpe) {
            return Some("wpe".into());
        }
        for (i, l) in self.layers.iter().enumerate() {
            let norms = [("ln_1", &l.ln_1), ("ln_2", &l.ln_2)];
            for (name, n) in norms {
                if !finite_v(&n.gamma) || !finite_v(&n.beta) {
                    return Some(format!("h.{i}.{name}"));
                }
            }
            let linears = l.qkv.linears().iter().map(|q| ("attention q/k/v", q)).chain([
                ("attention output", &l.attn_out),
                ("mlp.c_fc", &l.fc),
                ("mlp.c_proj", &l.proj),
            ]);
            for (name, lin) in linears {
                if !finite_w(&lin.w) || !lin.b.as_ref().is_none_or(finite_v) {
                    return Some(format!("h.{i} {name}"));
                }
            }
        }
        if !finite_v(&self.ln_f.gamma) || !finite_v(&self.ln_f.beta) {
            return Some("ln_f".into());
        }
        self.lm_head.as_ref().filter(|h| !finite_w(h)).map(|_| "lm_head".into())
    }

    pub(crate) fn parameter_count(&self) -> usize {
        let norm = |n: &Norm| 2 * n.gamma.data().len();
        let len = |t: &WeightTensor| t.data().len();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                norm(&l.ln_1)
                    + norm(&l.ln_2)
                    + l.qkv.linears().iter().map(Linear::parameters).sum::<usize>()
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
