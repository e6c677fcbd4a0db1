//! `quill info`: what a model is and how Quill will run it.

use clap::Args;

use super::output::println;
use super::ModelArg;
use crate::error::Result;
use crate::model::LoadOptions;

#[derive(Args, Debug)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    model: ModelArg,
}

pub(crate) fn run(args: &InfoArgs, load: &LoadOptions) -> Result<()> {
    let (model, tokenizer) = args.model.load(load)?;
    let c = &model.config;
    let kv_per_token = 2 * c.n_layer * c.n_embd * model.kv_type().size();
    let features = quill_kernels::cpu_features();
    let lines = [
        format!("model          {}", args.model.path().display()),
        format!(
            "architecture   {} ({} layers, {} heads of {}, width {}, MLP {})",
            c.arch.name(),
            c.n_layer,
            c.n_head,
            c.head_dim(),
            c.n_embd,
            c.n_inner
        ),
        format!("vocabulary     {} (tokenizer: {})", c.vocab_size, tokenizer.vocab_size()),
        format!("positions      {}", c.n_positions),
        format!("activation     {}, layer_norm_epsilon {}", c.activation.name(), c.layer_norm_epsilon),
        format!("parameters     {} ({:.1} M)", model.parameter_count(), model.parameter_count() as f64 / 1e6),
        format!(
            "weights        {} in {:.1} MiB of safetensors",
            weight_types(&model),
            model.file_bytes() as f64 / (1 << 20) as f64
        ),
        format!("lm_head        {}", if model.weights.lm_head.is_some() { "separate" } else { "tied to wte" }),
        kv_line(&model, kv_per_token),
        format!(
            "kernels        {} (cpu features: {})",
            model.kernels.level().name(),
            if features.is_empty() { "none detected".to_string() } else { features.join(" ") }
        ),
    ];
    println(&lines.join("\n"))
}

/// The weights' types: a Quill file's `quill.type` (e.g. q4_k_m) with the share of each element
/// type when there are several matrix types, else the main stored type.
fn weight_types(model: &crate::Model) -> String {
    let mix = model.stored_mix();
    let total: usize = mix.iter().map(|&(_, n)| n).sum();
    let shares: Vec<String> = mix
        .iter()
        .filter(|&&(_, n)| n * 100 >= total)
        .map(|&(d, n)| format!("{} {:.0}%", d.name(), 100.0 * n as f64 / total.max(1) as f64))
        .collect();
    match model.metadata().get(crate::quill_file::TYPE) {
        Some(ty) if shares.len() > 1 => format!("{ty} ({})", shares.join(", ")),
        Some(ty) => ty.clone(),
        None => model.stored_dtype().name().to_string(),
    }
}

/// The KV arena at the full context; local-attention layers keep only a ring of their last
/// positions, which the line says with the memory that saves.
fn kv_line(model: &crate::Model, kv_per_token: usize) -> String {
    let n = model.config.n_positions;
    let (full, used) = (kv_per_token * n, model.kv_bytes(n));
    let mut line = format!("kv cache       {} per token, {} at {n} positions", bytes(kv_per_token), bytes(used));
    let slots = model.kv_slots(n);
    let local: Vec<(usize, usize)> = (model.config.layers.iter().zip(slots))
        .filter_map(|(l, slots)| match l.attention {
            crate::config::AttentionKind::Local { window } => Some((window, slots)),
            crate::config::AttentionKind::Global => None,
        })
        .collect();
    if let Some((window, slots)) = local.first() {
        line += &format!(
            " (the {} local layers, window {window}, keep only their last {slots}: {} saved, {:.0}%)",
            local.len(),
            bytes(full - used),
            100.0 * (full - used) as f64 / full as f64
        );
    }
    line
}

fn bytes(n: usize) -> String {
    match n {
        n if n < 1 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        n if n < 1 << 30 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n => format!("{:.2} GiB", n as f64 / (1 << 30) as f64),
    }
}
