//! `quill bench`: prompt processing (pp) and generation (tg) speed in the style of llama-bench,
//! with the weight bandwidth decoding reaches against the machine's read bandwidth, measured in
//! the same run.

use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::output::println;
use super::ModelArg;
use crate::error::{Error, Result};
use crate::model::LoadOptions;
use crate::model::Model;

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Prompt lengths to time (pp tests), comma-separated; 0 skips them.
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "128")]
    n_prompt: Vec<usize>,
    /// Generated lengths to time (tg tests), comma-separated; 0 skips them.
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "128")]
    n_gen: Vec<usize>,
    /// Tokens already in the context before each test, comma-separated.
    #[arg(short = 'd', long, value_delimiter = ',', default_value = "0")]
    depth: Vec<usize>,
    /// Repetitions of each test; the median is reported.
    #[arg(short = 'r', long, default_value_t = 3)]
    reps: usize,
    /// One JSON record per row instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the tests once per count in `thread_counts` (`--threads 1,2`; default: physical cores).
pub(crate) fn run(args: &BenchArgs, thread_counts: &[u16], load: &LoadOptions) -> Result<()> {
    let (model, _) = args.model.load(load)?;
    let threads: Vec<usize> = if thread_counts.is_empty() {
        vec![quill_kernels::physical_cores()]
    } else {
        thread_counts.iter().map(|&t| usize::from(t)).collect()
    };
    if args.reps == 0 {
        return Err(Error::usage("--reps must be at least 1"));
    }
    let longest = args.depth.iter().max().copied().unwrap_or(0)
        + args.n_prompt.iter().chain(&args.n_gen).max().copied().unwrap_or(0);
    if longest > model.config.n_positions {
        return Err(Error::usage(format!(
            "depth + test length reaches {longest} tokens, past the model's {} positions",
            model.config.n_positions
        )));
    }
    let weights = model.stored_dtype().name();
    let bytes_per_token = model.weight_bytes_per_token() as f64;
    if !args.json {
        println(&format!(
            "model {} | {weights} | {:.1} M parameters | {:.0} MB of weights read per token | kernels {} | kv {}",
            args.model.path().display(),
            model.parameter_count() as f64 / 1e6,
            bytes_per_token / 1e6,
            model.kernels.level().name(),
            model.kv_type().name()
        ))?;
        println(&format!(
            "{:>7}  {:>8}  {:>6}  {:>12}  {:>14}  {:>12}",
            "threads", "test", "depth", "tokens/s", "weights GB/s", "of bandwidth"
        ))?;
    }
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| Error::input(format!("cannot start {t} threads: {e}")))?;
        pool.install(|| -> Result<()> {
            let bandwidth = read_bandwidth(&model);
            let mut rows = Vec::new();
            for &depth in &args.depth {
                for &p in args.n_prompt.iter().filter(|&&p| p > 0) {
                    rows.push((format!("pp{p}"), depth, median(args.reps, || time_prompt(&model, depth, p))?));
                }
                for &n in args.n_gen.iter().filter(|&&n| n > 0) {
                    rows.push((format!("tg{n}"), depth, median(args.reps, || time_generation(&model, depth, n))?));
                }
            }
            for (test, depth, tokens_per_s) in rows {
                let weight_gb_per_s = test.starts_with("tg").then(|| tokens_per_s * bytes_per_token / 1e9);
                let fraction = weight_gb_per_s.map(|g| g / bandwidth);
                if args.json {
                    let record = json!({
                        "test": test, "depth": depth, "threads": t, "weights": weights,
                        "kernels": model.kernels.level().name(), "kv": model.kv_type().name(),
                        "tokens_per_s": round2(tokens_per_s),
                        "weight_gb_per_s": weight_gb_per_s.map(round2), "read_bandwidth_gb_per_s": round2(bandwidth),
                        "bandwidth_fraction": fraction.map(round2),
                    });
                    println(&record.to_string())?;
                } else {
                    let gbs = weight_gb_per_s.map_or("-".to_string(), |g| format!("{g:.1}"));
                    let frac = fraction.map_or("-".to_string(), |f| format!("{:.0}% of {bandwidth:.1}", f * 100.0));
                    println(&format!("{t:>7}  {test:>8}  {depth:>6}  {tokens_per_s:>12.1}  {gbs:>14}  {frac:>12}"))?;
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Deterministic token ids spread over the vocabulary.
fn tokens(model: &Model, n: usize, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % model.config.vocab_size as u64) as u32
        })
        .collect()
}

/// Tokens per second of one `p`-token prompt after `depth` tokens of context.
fn time_prompt(model: &Model, depth: usize, p: usize) -> Result<f64> {
    let mut session = model.session(Some(depth + p))?;
    if depth > 0 {
        session.feed(&tokens(model, depth, 1))?;
    }
    let prompt = tokens(model, p, 2);
    let start = Instant::now();
    session.feed(&prompt)?;
    Ok(p as f64 / start.elapsed().as_secs_f64())
}

/// Tokens per second of `n` single-token decode steps after `depth` tokens of context.
fn time_generation(model: &Model, depth: usize, n: usize) -> Result<f64> {
    let mut session = model.session(Some(depth + n))?;
    if depth > 0 {
        session.feed(&tokens(model, depth, 1))?;
    }
    let ids = tokens(model, n, 3);
    let start = Instant::now();
    for &id in &ids {
        session.feed(&[id])?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn median(reps: usize, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut v = (0..reps).map(|_| f()).collect::<Result<Vec<f64>>>()?;
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// GB/s of reading a buffer far past any cache (512 MiB, or a quarter of the available memory
/// on small machines) on the current pool's threads: best of 3.
fn read_bandwidth(model: &Model) -> f64 {
    use rayon::prelude::*;
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemAvailable:").map(str::to_string)))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(usize::MAX, |kb| kb * 1024);
    let bytes = (available / 4).clamp(64 << 20, 512 << 20);
    let buf = vec![1.0f32; bytes / 4];
    let threads = rayon::current_num_threads();
    let chunk = buf.len().div_ceil(threads);
    (0..3)
        .map(|_| {
            let start = Instant::now();
            let total: f32 = buf.par_chunks(chunk).map(|c| model.kernels.sum(c)).sum();
            let secs = start.elapsed().as_secs_f64();
            std::hint::black_box(total);
            (buf.len() * 4) as f64 / secs / 1e9
        })
        .fold(0.0, f64::max)
}
