//! `quill info`: what a model is and how Quill will run it.

use clap::Args;

use super::output::println;
use super::ModelArg;
use crate::error::Result;

#[derive(Args, Debug)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    model: ModelArg,
}

pub(crate) fn run(args: &InfoArgs) -> Result<()> {
    let (model, tokenizer) = args.model.load()?;
    let c = &model.config;
    let kv_per_token = 2 * c.n_layer * c.n_embd * std::mem::size_of::<f32>();
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
        format!("activation     {:?}, layer_norm_epsilon {}", c.activation, c.layer_norm_epsilon),
        format!("parameters     {} ({:.1} M)", model.parameter_count(), model.parameter_count() as f64 / 1e6),
        format!(
            "weights        {} in {:.1} MiB of safetensors",
            model.stored_dtype().name(),
            model.file_bytes() as f64 / (1 << 20) as f64
        ),
        format!("lm_head        {}", if model.weights.lm_head.is_some() { "separate" } else { "tied to wte" }),
        format!(
            "kv cache       {:.1} KiB per token, {:.1} MiB at {} positions",
            kv_per_token as f64 / 1024.0,
            (kv_per_token * c.n_positions) as f64 / (1 << 20) as f64,
            c.n_positions
        ),
        format!(
            "kernels        {} (cpu features: {})",
            model.kernels.level().name(),
            if features.is_empty() { "none detected".to_string() } else { features.join(" ") }
        ),
    ];
    println(&lines.join("\n"))
}
