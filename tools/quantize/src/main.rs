//! `quantize IN OUT --type f32|f16|q8_0|q4_0|q4_k_m`: a Hugging Face GPT-2 / GPT-Neo model folder (or a
//! Quill file of f32/f16 weights, or an original OpenAI GPT-2 TensorFlow checkpoint folder) → one
//! Quill file: a safetensors file whose metadata carries the config and tokenizer, with every
//! matrix `(out, in)` in the asked type, which quill maps and runs in place.
//!
//! main.rs holds the command line and the run; `source` reads IN (with `quill::tf` for a TensorFlow
//! checkpoint), `plan` decides every output tensor, `convert` encodes one tensor, `writer` writes
//! the file safely.

mod convert;
mod error;
mod interrupt;
mod parts;
mod plan;
mod source;
mod writer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use crate::error::{Error, Result};
use crate::plan::{Encoding, Part, WeightType};
use crate::source::Source;
use crate::writer::Output;

#[derive(Parser, Debug)]
#[command(
    name = "quantize",
    version,
    about = "Write a GPT-2 / GPT-Neo model as one Quill file (f32, f16, q8_0, q4_0 or q4_k_m)"
)]
struct Args {
    /// A Hugging Face GPT-2 or GPT-Neo model folder, a Quill file of type f32 or f16, or an OpenAI
    /// GPT-2 TensorFlow checkpoint folder (hparams.json, model.ckpt.*, encoder.json, vocab.bpe).
    input: PathBuf,
    /// The Quill file to write (a .safetensors file).
    output: PathBuf,
    /// Type of the matmul weights (q8_0: int8 in blocks of 32 with f16 scales; q4_0: GGUF's 4-bit
    /// blocks of 32; q4_k_m: llama.cpp's mix of q4_k and q6_k).
    #[arg(long = "type", value_enum)]
    ty: WeightType,
    /// Encoding of wte.weight, the (tied) lm_head: f32, f16, q8_0, or a block format (q4_0, q5_0,
    /// q5_1, q4_k, q5_k, q6_k); default: --type's (q6_k for the 4-bit types).
    #[arg(long, value_parser = Encoding::parse)]
    lm_head: Option<Encoding>,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
    /// Worker threads for converting large tensors (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
}

fn main() {
    let args = Args::parse();
    interrupt::install();
    if let Err(e) = run(&args) {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// One line on stderr; a closed stderr must not stop the conversion.
fn note(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    let out_dir = out_folder(&args.output)?;
    let src = Source::open(&args.input)?;
    check_output(args, &src, &out_dir)?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n as usize)
            .build_global()
            .map_err(|e| Error::runtime(format!("cannot start {n} threads: {e}")))?;
    }

    let plan = plan::plan(&src, args.ty, args.lm_head)?;
    for w in src.warnings.iter().chain(&plan.warnings) {
        note(format_args!("warning: {w}"));
    }
    let header = writer::header(plan::metadata(&src, args.ty, &plan), &plan.slots)?;
    let mut out = Output::create(&args.output, &header)?;

    // Where each item's bytes go in the data section.
    let mut offsets = vec![(0, None); plan.items.len()];
    for s in &plan.slots {
        match s.part {
            Part::Values => offsets[s.item].0 = s.offsets.0,
            Part::Scales => offsets[s.item].1 = Some(s.offsets.0),
        }
    }
    let m = plan.items.len();
    let width = m.to_string().len();
    for (i, item) in plan.items.iter().enumerate() {
        interrupt::check()?;
        let t = Instant::now();
        let data = src.checkpoint.tensor_f32(&item.source, &item.source_shape)?;
        let encoded = convert::encode(item, data.data());
        out.write(offsets[i].0, &encoded.values)?;
        let mut bytes = encoded.values.len();
        if let (Some(scales), Some(at)) = (&encoded.scales, offsets[i].1) {
            out.write(at, scales)?;
            bytes += scales.len();
        }
        let rate = mb(bytes as u64) / t.elapsed().as_secs_f64().max(1e-6);
        note(format_args!(
            "[{:>width$}/{m}] {}  {:?}  {}{}  ({rate:.0} MB/s){}",
            i + 1,
            item.name,
            item.shape,
            item.encoding.name(),
            if item.transpose { " (transposed)" } else { "" },
            item.note.as_deref().map(|n| format!("  {n}")).unwrap_or_default(),
        ));
    }
    interrupt::check()?;
    out.commit(args.force)?;

    let (input, output) = (src.checkpoint.file_bytes(), (header.len() + plan.data_bytes()) as u64);
    note(format_args!(
        "wrote {}: {} tensors, {:.2} MB from {:.2} MB ({:.3} of the input) in {:.2} s",
        args.output.display(),
        plan.slots.len(),
        mb(output),
        mb(input),
        output as f64 / input.max(1) as f64,
        start.elapsed().as_secs_f64(),
    ));
    Ok(())
}

/// OUT's folder, which must exist: the temporary file is written there, so the final rename
/// stays on one filesystem.
fn out_folder(out: &Path) -> Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::runtime(format!(
            "{}: the folder {} does not exist (create it first)",
            out.display(),
            parent.display()
        )));
    }
    if out.is_dir() {
        return Err(Error::runtime(format!("{}: is a folder; OUT must be a file name", out.display())));
    }
    Ok(parent)
}

/// Refuses an OUT that is IN or one of the files read, and an existing OUT without --force.
fn check_output(args: &Args, src: &Source, out_dir: &Path) -> Result<()> {
    let name =
        args.output.file_name().ok_or_else(|| Error::usage(format!("{}: not a file name", args.output.display())))?;
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(|e| Error::io("cannot read", p, e));
    // OUT may not exist yet: its folder's canonical path plus its name.
    let out = match std::fs::canonicalize(&args.output) {
        Ok(p) => p,
        Err(_) => canon(out_dir)?.join(name),
    };
    let input = canon(&args.input)?;
    for read in std::iter::once(input).chain(src.files().iter().filter_map(|f| std::fs::canonicalize(f).ok())) {
        if read == out {
            return Err(Error::usage(format!(
                "OUT {} is the input {}: write the Quill file elsewhere",
                args.output.display(),
                read.display()
            )));
        }
    }
    if args.output.exists() && !args.force {
        return Err(Error::runtime(format!("{} exists; use --force to overwrite it", args.output.display())));
    }
    Ok(())
}
