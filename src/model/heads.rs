//! `GPT2DoubleHeadsModel`: the language-modelling head plus a multiple-choice head, which
//! scores each candidate sequence from one hidden state (transformers' `SequenceSummary`).
//!
//! transformers applies the summary to hidden states shaped `[batch, choices, seq, C]`, and only
//! `cls_index` indexes positions: `last`, `first` and `mean` take `hidden_states[:, -1]`,
//! `[:, 0]` and `.mean(dim=1)`, which for this shape select (or average) *choices*, giving
//! `mc_logits` of shape `[batch, seq]`. Quill reproduces that as it is, so a checkpoint scores
//! the same here as there.

use super::hf_forward::{ForwardInput, ForwardOutput, IGNORE_INDEX};
use super::session::Session;
use super::Model;
use crate::checkpoint::TensorF32;
use crate::config::{SummaryConfig, SummaryType};
use crate::error::{Error, Result};
use crate::math::nll_f64;

const WEIGHT: &str = "multiple_choice_head.summary.weight";
const BIAS: &str = "multiple_choice_head.summary.bias";

/// The multiple-choice head of a `GPT2DoubleHeadsModel` checkpoint.
pub struct MultipleChoiceHead {
    summary: SummaryConfig,
    /// `summary` Linear: weight `(classes, C)` and bias `(classes)`.
    proj: Option<(TensorF32, TensorF32)>,
    /// Width of a summary: `classes` with a projection, else n_embd.
    classes: usize,
    n_embd: usize,
}

/// A double-heads forward pass: the language model's outputs and the multiple-choice ones.
#[derive(Clone, Debug)]
pub struct DoubleHeadsOutput {
    /// The language-model outputs over `batch · choices` rows (logits, loss, ...).
    pub lm: ForwardOutput,
    /// `mc_logits`, flat; its shape in `mc_logits_shape` (`[batch, choices]` for cls_index).
    pub mc_logits: Vec<f32>,
    pub mc_logits_shape: Vec<usize>,
    /// Cross-entropy of `mc_logits` against `mc_labels` (-100 ignored).
    pub mc_loss: Option<f32>,
}

impl MultipleChoiceHead {
    /// Reads the head of `model`'s checkpoint, as its config describes it.
    pub fn load(model: &Model) -> Result<MultipleChoiceHead> {
        let cfg = &model.config;
        let summary =
            cfg.summary.ok_or_else(|| Error::usage("this model has no multiple-choice head (GPT-Neo has none)"))?;
        let c = cfg.n_embd;
        let proj = if summary.use_proj {
            let entry = model.checkpoint.get(WEIGHT).ok_or_else(|| {
                Error::usage(format!(
                    "this checkpoint has no multiple-choice head ({WEIGHT}): \
                     it is not a GPT2DoubleHeadsModel, whose summary_use_proj = true needs one"
                ))
            })?;
            // GPT2DoubleHeadsModel sets num_labels = 1; without proj_to_labels it maps C → C.
            let classes = if summary.proj_to_labels { 1 } else { c };
            if entry.shape != [classes, c] {
                return Err(Error::usage(format!(
                    "{WEIGHT} has shape {:?}, expected [{classes}, {c}] (summary_proj_to_labels = {})",
                    entry.shape, summary.proj_to_labels
                )));
            }
            Some((model.checkpoint.tensor_f32(WEIGHT, &[classes, c])?, model.checkpoint.tensor_f32(BIAS, &[classes])?))
        } else {
            None
        };
        let classes = proj.as_ref().map_or(c, |(w, _)| w.data().len() / c);
        Ok(MultipleChoiceHead { summary, proj, classes, n_embd: c })
    }

    /// `mc_logits` from the final hidden states `[batch, choices, seq, C]`, and their shape
    /// (transformers squeezes a last dimension of 1).
    pub fn logits(
        &self,
        model: &Model,
        hidden: &[f32],
        (batch, choices, seq): (usize, usize, usize),
        mc_token_ids: Option<&[u32]>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let c = self.n_embd;
        let state = |b: usize, ch: usize, i: usize| &hidden[((b * choices + ch) * seq + i) * c..][..c];
        // The summary vectors, `[batch, X, C]`.
        let (x, mut picked) = match self.summary.kind {
            SummaryType::ClsIndex => {
                if let Some(ids) = mc_token_ids {
                    if ids.len() != batch * choices {
                        return Err(Error::usage(format!(
                            "mc_token_ids has {} values; its shape is [batch, choices] = {}",
                            ids.len(),
                            batch * choices
                        )));
                    }
                    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= seq) {
                        return Err(Error::input(format!(
                            "mc_token_ids: position {bad} is outside the {seq} tokens of a choice"
                        )));
                    }
                }
                let mut out = Vec::with_capacity(batch * choices * c);
                for b in 0..batch {
                    for ch in 0..choices {
                        let i = mc_token_ids.map_or(seq - 1, |ids| ids[b * choices + ch] as usize);
                        out.extend_from_slice(state(b, ch, i));
                    }
                }
                (choices, out)
            }
            kind @ (SummaryType::Last | SummaryType::First | SummaryType::Mean) => {
                let mut out = Vec::with_capacity(batch * seq * c);
                for b in 0..batch {
                    for i in 0..seq {
                        match kind {
                            SummaryType::Last => out.extend_from_slice(state(b, choices - 1, i)),
                            SummaryType::First => out.extend_from_slice(state(b, 0, i)),
                            _ => {
                                let at = out.len();
                                out.resize(at + c, 0.0);
                                for ch in 0..choices {
                                    out[at..].iter_mut().zip(state(b, ch, i)).for_each(|(o, v)| *o += v);
                                }
                                out[at..].iter_mut().for_each(|o| *o /= choices as f32);
                            }
                        }
                    }
                }
                (seq, out)
            }
        };
        if let Some((w, bias)) = &self.proj {
            let (w, bias) = (w.data(), bias.data());
            picked = picked
                .chunks_exact(c)
                .flat_map(|v| {
                    (0..self.classes)
                        .map(move |o| bias[o] + w[o * c..][..c].iter().zip(v).map(|(a, b)| a * b).sum::<f32>())
                })
                .collect();
        }
        if let Some(act) = self.summary.activation {
            model.kernels.activation(act, &mut picked);
        }
        let mut shape = vec![batch, x];
        if self.classes != 1 {
            shape.push(self.classes);
        }
        Ok((picked, shape))
    }
}

impl Model {
    /// `GPT2DoubleHeadsModel.forward`: `input` holds `batch · choices` rows (transformers'
    /// `[batch, choices, seq]` flattened; `input.batch` counts rows), `past` a session per row.
    /// `mc_token_ids` `[batch, choices]`, `mc_labels` as many as `mc_logits` has rows.
    pub fn forward_double_heads(
        &self,
        head: &MultipleChoiceHead,
        past: &mut [Session<'_>],
        input: &ForwardInput,
        choices: usize,
        mc_token_ids: Option<&[u32]>,
        mc_labels: Option<&[i64]>,
    ) -> Result<DoubleHeadsOutput> {
        if choices == 0 || !input.batch.is_multiple_of(choices) {
            return Err(Error::usage(format!(
                "forward: {} rows are not a whole number of batches of {choices} choices",
                input.batch
            )));
        }
        let batch = input.batch / choices;
        let mut lm = self.forward(past, &ForwardInput { output_hidden_states: true, ..*input })?;
        let hidden = lm.last_hidden_state().expect("asked for");
        let (mc_logits, shape) = head.logits(self, hidden, (batch, choices, lm.seq), mc_token_ids)?;
        let mc_loss = match mc_labels {
            Some(labels) => Some(cross_entropy(&mc_logits, *shape.last().expect("2-D at least"), labels)?),
            None => None,
        };
        if !input.output_hidden_states {
            lm.hidden_states.clear();
        }
        Ok(DoubleHeadsOutput { lm, mc_logits, mc_logits_shape: shape, mc_loss })
    }
}

/// torch's `CrossEntropyLoss()(logits.view(-1, width), labels.view(-1))`: mean over the labels
/// that are not -100.
fn cross_entropy(logits: &[f32], width: usize, labels: &[i64]) -> Result<f32> {
    let rows = logits.len() / width;
    if labels.len() != rows {
        return Err(Error::usage(format!("mc_labels has {} values; mc_logits has {rows} rows", labels.len())));
    }
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (row, &label) in logits.chunks_exact(width).zip(labels) {
        if label == IGNORE_INDEX {
            continue;
        }
        if !(0..width as i64).contains(&label) {
            return Err(Error::input(format!("mc_labels: {label} is out of range 0..{width} (or -100)")));
        }
        sum += nll_f64(row, label as usize);
        n += 1;
    }
    Ok((sum / n as f64) as f32)
}
