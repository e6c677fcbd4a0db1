//! `quill generate`: continue a prompt (greedy or sampled), streamed to stdout or as JSON.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::interrupt;
use super::output::{print_flush, println};
use super::{read_prompts, read_text_file, ModelArg};
use crate::error::{Error, Result};
use crate::generate::beam::{BeamGeneration, BeamOptions, BeamSearch, EarlyStopping};
use crate::generate::stop::TextStream;
use crate::generate::{DecodeOptions, FinishReason, Flow, Generation, Generator, OnContextFull, Sampling, Strategy};
use crate::generation_config::GenerationDefaults;
use crate::model::LoadOptions;
use crate::model::{Model, Session};
use crate::tokenizer::Tokenizer;

/// New tokens when neither the flags nor generation_config.json say.
const DEFAULT_MAX_NEW_TOKENS: usize = 50;

#[derive(Args, Debug)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The prompt to continue.
    #[arg(required_unless_present_any = ["prompt_file", "prompts_file"], conflicts_with_all = ["prompt_file", "prompts_file"])]
    prompt: Option<String>,
    /// Read the prompt from a UTF-8 file instead.
    #[arg(long, value_name = "PATH", conflicts_with = "prompts_file")]
    prompt_file: Option<PathBuf>,
    /// Run a batch: one prompt per line of this UTF-8 file (no empty lines), results in order; a
    /// `.jsonl` file holds a JSON string or {"prompt": "..."} per line (prompts with newlines).
    #[arg(long, value_name = "PATH")]
    prompts_file: Option<PathBuf>,
    /// How many tokens to generate at most [default: generation_config.json's, else 50].
    #[arg(long, short = 'n', value_name = "N")]
    max_new_tokens: Option<usize>,
    /// Prompt plus new tokens at most (transformers' max_length); not with --max-new-tokens.
    #[arg(long, value_name = "N")]
    max_length: Option<usize>,
    /// KV-cache size in positions (default and maximum: the model's n_positions).
    #[arg(long, value_name = "N")]
    ctx: Option<usize>,
    /// When the context is full: stop, or slide (keep the last half of it, re-encoded).
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = ContextFull::Stop)]
    on_context_full: ContextFull,
    /// Keep going past the end-of-text token.
    #[arg(long)]
    ignore_eos: bool,
    /// Stop after any of these token ids (comma-separated), instead of the model's eos
    /// (generation_config.json's eos_token_id, else config.json's), as generate(eos_token_id=...).
    #[arg(long, value_name = "ID,...", value_delimiter = ',', conflicts_with = "ignore_eos")]
    eos_token_id: Vec<u32>,
    /// Accepted as generate(pad_token_id=...) is, and checked against the vocabulary; it changes
    /// no output: Quill runs every row of a batch on its own, so nothing is padded.
    #[arg(long, value_name = "ID")]
    pad_token_id: Option<u32>,
    /// Leave special tokens (bos, eos, unk, pad, additional_special_tokens) out of the text
    /// printed and returned, as decode(..., skip_special_tokens=True); the ids keep them.
    #[arg(long)]
    skip_special_tokens: bool,
    /// Stop before this text (repeatable); it is not printed.
    #[arg(long = "stop", value_name = "STRING")]
    stop: Vec<String>,
    /// Sample (the default when generation_config.json says do_sample, or --temperature T > 0 is
    /// given); --top-k, --top-p, --min-p and --seed apply only when sampling, as in transformers.
    #[arg(long)]
    do_sample: bool,
    /// Sampling temperature; 0 means greedy decoding [default: 1].
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Sample among the K most likely tokens; 0 disables [default: 50, as transformers].
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Sample among the most likely tokens that make up probability P, in (0, 1] [default: 1].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Drop tokens less likely than P times the best one, P in [0, 1] [default: off].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    min_p: Option<f32>,
    /// Divide seen tokens' positive logits by F and multiply negative ones (transformers' rule), F > 0.
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    repetition_penalty: Option<f32>,
    /// Never repeat an n-gram of N tokens (prompt included), as transformers'
    /// no_repeat_ngram_size; 0 = off [default: generation_config.json's, else 0].
    #[arg(long, value_name = "N")]
    no_repeat_ngram_size: Option<usize>,
    /// Hold the eos token(s) back until N new tokens are out (transformers' min_new_tokens)
    /// [default: generation_config.json's, else 0].
    #[arg(long, value_name = "N")]
    min_new_tokens: Option<usize>,
    /// Random seed for sampling [default: a fresh one, shown by --json and --stats].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Sample K sequences, best (highest total logprob) first; with --num-beams N, the K best
    /// hypotheses (K <= N).
    #[arg(long, value_name = "K")]
    num_return_sequences: Option<usize>,
    /// Beam search with N beams (transformers' num_beams, do_sample=False); 1 = greedy.
    #[arg(long, value_name = "N")]
    num_beams: Option<usize>,
    /// Beam search: a hypothesis' summed log-probability is divided by length^F [default: 1].
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    length_penalty: Option<f64>,
    /// Beam search: when to stop (transformers' early_stopping) [default: false].
    #[arg(long, value_enum, value_name = "WHEN")]
    early_stopping: Option<EarlyStop>,
    /// Print {"prompt_ids","new_ids","text","finish_reason",...} instead of streaming.
    #[arg(long)]
    json: bool,
    /// With --json: add "logprobs", log-softmax of the raw logits at each new token.
    #[arg(long)]
    logprobs: bool,
    /// Print load time and tokens/s on stderr.
    #[arg(long)]
    stats: bool,
}

/// transformers' `early_stopping` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EarlyStop {
    /// Stop as soon as N hypotheses have ended.
    True,
    /// Stop when the best running beam cannot beat the finished ones (a heuristic).
    False,
    /// Stop only when no running beam can become better.
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ContextFull {
    Stop,
    Slide,
}

/// What a run decodes with: the flags over generation_config.json's defaults over Quill's, each
/// resolved once by [`settings`], for greedy decoding, sampling and beam search alike.
struct Settings {
    opts: DecodeOptions,
    /// Sequences per prompt (--num-return-sequences).
    sequences: usize,
    /// Beam search, with --num-beams above 1.
    beam: Option<BeamOptions>,
}

/// How the tokens are chosen, as the flags and generation_config.json decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Greedy,
    Sample,
    /// Beam search with this many beams (above 1).
    Beams(usize),
}

/// The settings of a run on a prompt of `prompt_len` tokens (what --max-length counts): the
/// flags checked once by [`check`], then each value resolved once, flag over file over default.
fn settings(
    args: &GenerateArgs,
    file: &GenerationDefaults,
    default_eos: Option<u32>,
    prompt_len: usize,
) -> Result<Settings> {
    let mode = check(args, file)?;
    let sequences = args.num_return_sequences.unwrap_or(1);
    let strategy = match mode {
        Mode::Sample => {
            let d = Sampling::default();
            Strategy::Sample(Sampling {
                temperature: args.temperature.or(file.temperature).unwrap_or(d.temperature),
                top_k: args.top_k.or(file.top_k).unwrap_or(d.top_k),
                top_p: args.top_p.or(file.top_p).unwrap_or(d.top_p),
                min_p: args.min_p.or(file.min_p),
                seed: args.seed.unwrap_or_else(fresh_seed),
            })
        }
        Mode::Greedy | Mode::Beams(_) => Strategy::Greedy,
    };
    let opts = DecodeOptions {
        max_new_tokens: max_new_tokens(args, file, prompt_len)?,
        eos_token_ids: match (args.ignore_eos, &file.eos_token_ids) {
            (true, _) => Vec::new(),
            _ if !args.eos_token_id.is_empty() => args.eos_token_id.clone(),
            (false, Some(ids)) => ids.clone(),
            (false, None) => default_eos.into_iter().collect(),
        },
        strategy,
        repetition_penalty: args.repetition_penalty.or(file.repetition_penalty).unwrap_or(1.0),
        no_repeat_ngram_size: args.no_repeat_ngram_size.or(file.no_repeat_ngram_size).unwrap_or(0),
        min_new_tokens: args.min_new_tokens.or(file.min_new_tokens).unwrap_or(0),
        // Beam search stops at a full context: `check` refuses slide there.
        on_context_full: match args.on_context_full {
            ContextFull::Stop => OnContextFull::Stop,
            ContextFull::Slide => OnContextFull::Slide,
        },
        // Sampled sequences are ranked by total logprob; beams by their own score.
        logprobs: !matches!(mode, Mode::Beams(_)) && (args.logprobs || sequences > 1),
    };
    // The resolved values, the file's among them, in the library's own ranges.
    opts.validate()?;
    let beam = match mode {
        Mode::Beams(num_beams) => {
            let beam = BeamOptions {
                num_beams,
                length_penalty: args.length_penalty.unwrap_or(1.0),
                early_stopping: match args.early_stopping {
                    None | Some(EarlyStop::False) => EarlyStopping::Heuristic,
                    Some(EarlyStop::True) => EarlyStopping::Yes,
                    Some(EarlyStop::Never) => EarlyStopping::Never,
                },
                num_return_sequences: sequences,
            };
            beam.validate()?;
            Some(beam)
        }
        Mode::Greedy | Mode::Sample => None,
    };
    Ok(Settings { opts, sequences, beam })
}

fn check_range(flag: &str, v: Option<f32>, ok: impl Fn(f32) -> bool, want: &str) -> Result<()> {
    match v {
        Some(x) if !ok(x) => Err(Error::usage(format!("{flag} {x} is out of range: give {want}"))),
        _ => Ok(()),
    }
}

/// The first flag given of `flags` (given, name).
fn first_given(flags: impl IntoIterator<Item = (bool, &'static str)>) -> Option<&'static str> {
    flags.into_iter().find_map(|(given, flag)| given.then_some(flag))
}

/// The first flag given that turns sampling on: --do-sample, or a --temperature other than 0
/// (--temperature 0 asks for greedy decoding).
fn sampling_flag(args: &GenerateArgs) -> Option<&'static str> {
    first_given([(args.do_sample, "--do-sample"), (args.temperature.is_some_and(|t| t != 0.0), "--temperature")])
}

/// The first flag given that only sampling reads. As in transformers, these do not turn sampling
/// on (`generate(top_k=...)` without `do_sample` decodes greedily and warns).
fn sampling_only_flag(args: &GenerateArgs) -> Option<&'static str> {
    first_given([
        (args.top_k.is_some(), "--top-k"),
        (args.top_p.is_some(), "--top-p"),
        (args.min_p.is_some(), "--min-p"),
        (args.seed.is_some(), "--seed"),
    ])
}

/// The one line on stderr (transformers warns likewise) when a sampling option will not be read.
fn note_unused_sampling_flag(args: &GenerateArgs, decoding: &str) {
    if let Some(flag) = sampling_only_flag(args) {
        eprintln!("note: {flag} only applies to sampling, and this run is {decoding}: add --do-sample to sample");
    }
}

/// Every usage check of the flags, and of where they clash with generation_config.json, each
/// once, in the order the errors are reported; says how the tokens are chosen. The length
/// limits are checked by [`max_new_tokens`], which counts the prompt.
fn check(args: &GenerateArgs, file: &GenerationDefaults) -> Result<Mode> {
    check_range("--temperature", args.temperature, |t| t.is_finite() && t >= 0.0, "0 (greedy) or a number > 0")?;
    check_range("--top-p", args.top_p, |p| p > 0.0 && p <= 1.0, "a number in (0, 1]")?;
    check_range("--min-p", args.min_p, |p| (0.0..=1.0).contains(&p), "a number in [0, 1]")?;
    check_range("--repetition-penalty", args.repetition_penalty, |p| p.is_finite() && p > 0.0, "a number > 0")?;
    if args.num_return_sequences == Some(0) {
        return Err(Error::usage("--num-return-sequences 0 is out of range: give 1 or more"));
    }
    if args.max_length.is_some() && args.max_new_tokens.is_some() {
        return Err(Error::usage("--max-length and --max-new-tokens both limit the length: give one of them"));
    }
    if args.logprobs && !args.json {
        return Err(Error::usage("--logprobs shows in the JSON record: add --json"));
    }
    if let Some(s) = args.stop.iter().find(|s| s.is_empty()) {
        return Err(Error::usage(format!("--stop '{s}': a stop string cannot be empty")));
    }
    let sequences = args.num_return_sequences.unwrap_or(1);
    match args.num_beams.unwrap_or(1) {
        0 => Err(Error::usage("--num-beams 0 is out of range: give 1 or more (1 = greedy)")),
        1 => {
            let beam_flag = first_given([
                (args.length_penalty.is_some(), "--length-penalty"),
                (args.early_stopping.is_some(), "--early-stopping"),
            ]);
            if let Some(flag) = beam_flag {
                return Err(Error::usage(format!("{flag} is for beam search: add --num-beams N (N > 1)")));
            }
            check_sampling(args, file, sequences)
        }
        beams => {
            check_beams(args, file, sequences, beams)?;
            Ok(Mode::Beams(beams))
        }
    }
}

/// Greedy decoding or sampling, and the checks of that choice.
fn check_sampling(args: &GenerateArgs, file: &GenerationDefaults, sequences: usize) -> Result<Mode> {
    let flag = sampling_flag(args);
    let sample = if args.temperature == Some(0.0) {
        if let Some(flag) = flag.or((sequences > 1).then_some("--num-return-sequences")) {
            return Err(Error::usage(format!(
                "--temperature 0 means greedy decoding, which {flag} does not go with: give a temperature > 0"
            )));
        }
        false
    } else {
        flag.is_some() || file.do_sample == Some(true)
    };
    if sequences > 1 && !sample {
        return Err(Error::usage(
            "--num-return-sequences above 1 needs sampling (--do-sample or --temperature T); \
             or beam search (--num-beams N)",
        ));
    }
    if !sample {
        note_unused_sampling_flag(args, "greedy decoding");
        return Ok(Mode::Greedy);
    }
    if args.temperature.or(file.temperature) == Some(0.0) {
        return Err(Error::usage(
            "generation_config.json sets temperature 0 (greedy) but sampling was asked for: give --temperature",
        ));
    }
    Ok(Mode::Sample)
}

/// The checks of a beam search (`beams` > 1): no sampling, stop strings, logprobs or sliding.
fn check_beams(args: &GenerateArgs, file: &GenerationDefaults, sequences: usize, beams: usize) -> Result<()> {
    if let Some(flag) = sampling_flag(args) {
        return Err(Error::usage(format!(
            "--num-beams {beams} is beam search, which does not sample: drop {flag} (beam sampling is not supported)"
        )));
    }
    note_unused_sampling_flag(args, "a beam search");
    if file.do_sample == Some(true) && args.temperature != Some(0.0) {
        return Err(Error::usage(
            "generation_config.json sets do_sample, and beam sampling is not supported: \
             add --temperature 0 for beam search without sampling",
        ));
    }
    if !args.stop.is_empty() {
        return Err(Error::usage("--stop does not work with beam search (--num-beams above 1)"));
    }
    if args.logprobs {
        return Err(Error::usage(
            "--logprobs does not work with beam search: the JSON record has each sequence's \"score\"",
        ));
    }
    if args.on_context_full == ContextFull::Slide {
        return Err(Error::usage(
            "--on-context-full slide does not work with beam search: beams stop at a full context",
        ));
    }
    if sequences > beams {
        return Err(Error::usage(format!(
            "--num-return-sequences {sequences} is more than --num-beams {beams}: give at most {beams}"
        )));
    }
    Ok(())
}

/// New tokens at most after a prompt of `prompt_len` tokens: the flags, else the file, else 50.
fn max_new_tokens(args: &GenerateArgs, file: &GenerationDefaults, prompt_len: usize) -> Result<usize> {
    Ok(match (args.max_new_tokens, args.max_length) {
        (Some(n), _) => n,
        (None, Some(total)) => new_tokens_within("--max-length", total, prompt_len)?,
        (None, None) => match (file.max_new_tokens, file.max_length) {
            (Some(n), _) => n,
            (None, Some(total)) => new_tokens_within("generation_config.json's max_length", total, prompt_len)?,
            (None, None) => DEFAULT_MAX_NEW_TOKENS,
        },
    })
}

fn new_tokens_within(what: &str, total: usize, prompt_len: usize) -> Result<usize> {
    if total <= prompt_len {
        return Err(Error::usage(format!(
            "{what} {total} leaves no room after the prompt's {prompt_len} tokens: raise it, or give --max-new-tokens"
        )));
    }
    Ok(total - prompt_len)
}

/// A seed for runs without --seed: the clock and the process id through SplitMix64.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut z = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One finished sequence: the generation and its text (cut before a stop string).
struct Sequence {
    generation: Generation,
    text: String,
}

impl Sequence {
    fn record(&self, with_logprobs: bool, with_total: bool) -> Value {
        let g = &self.generation;
        let mut r = sequence_record(&g.new_ids, &self.text, g.finish_reason);
        if with_logprobs {
            r["logprobs"] = json!(g.logprobs);
        }
        if with_total {
            r["total_logprob"] = json!(g.total_logprob());
        }
        r
    }
}

/// One sequence's fields in the JSON record: "new_ids", "text", "finish_reason"; the caller
/// adds those of its kind ("logprobs", "total_logprob", or a beam's "score").
fn sequence_record(new_ids: &[u32], text: &str, finish_reason: FinishReason) -> Value {
    json!({ "new_ids": new_ids, "text": text, "finish_reason": finish_reason.name() })
}

/// The JSON record of one prompt, for greedy decoding, sampling and beams alike: the best
/// sequence's fields, "index" in a batch, "prompt_ids", "seed" when sampled, and with
/// --num-return-sequences (even 1) "sequences", every sequence's fields best first.
fn json_record(
    args: &GenerateArgs,
    best: Value,
    index: Option<usize>,
    prompt_ids: &[u32],
    seed: Option<u64>,
    all: impl FnOnce() -> Vec<Value>,
) -> Value {
    let mut record = best;
    if let Some(i) = index {
        record["index"] = json!(i);
    }
    record["prompt_ids"] = json!(prompt_ids);
    if let Some(seed) = seed {
        record["seed"] = json!(seed);
    }
    if args.num_return_sequences.is_some() {
        record["sequences"] = Value::Array(all());
    }
    record
}

/// Each sequence after the prompt, best first, a blank line between.
fn print_texts<'a>(prompt: &str, texts: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for (i, text) in texts.into_iter().enumerate() {
        if i > 0 {
            println("")?;
        }
        println(&format!("{prompt}{text}"))?;
    }
    Ok(())
}

/// What generates: a beam search, or a session and a generator.
enum Engine<'m> {
    Beam(BeamSearch<'m>),
    Plain { session: Session<'m>, generator: Generator },
}

pub(crate) fn run(args: &GenerateArgs, load: &LoadOptions) -> Result<()> {
    let load_start = Instant::now();
    let (model, tokenizer) = args.model.load(load)?;
    let defaults = args.model.generation_defaults(&model)?;
    let default_eos = model.config.eos_token_id.or(tokenizer.eos_id());
    let vocab = model.config.vocab_size;
    let given = args.eos_token_id.iter().map(|&id| ("--eos-token-id", id));
    if let Some((flag, bad)) =
        given.chain(args.pad_token_id.map(|id| ("--pad-token-id", id))).find(|&(_, id)| id as usize >= vocab)
    {
        return Err(Error::usage(format!(
            "{flag} {bad} is out of range: the vocabulary has {vocab} tokens (0..{})",
            vocab - 1
        )));
    }
    if let Some(path) = &args.prompts_file {
        let prompts = read_prompts(path)?;
        let mut rows = Vec::with_capacity(prompts.len());
        for (i, text) in prompts.into_iter().enumerate() {
            let ids = tokenizer.encode(&text);
            if ids.is_empty() {
                return Err(Error::bad_file(path, format!("line {}: the prompt has no tokens", i + 1)));
            }
            rows.push((text, ids));
        }
        // Each row's own max_new_tokens is set below, naming its line when --max-length is too short.
        let settings = settings(args, &defaults, default_eos, 0)?;
        let mut engine = engine(args, &model, &settings)?;
        let load_time = load_start.elapsed();
        let line = |i: usize, e: Error| e.within(format!("--prompts-file line {}", i + 1));
        for (i, (text, ids)) in rows.iter().enumerate() {
            // --max-length counts each row's own prompt, as when the prompt runs alone.
            let n = max_new_tokens(args, &defaults, ids.len()).map_err(|e| line(i, e))?;
            match &mut engine {
                Engine::Beam(search) => search.set_max_new_tokens(n),
                Engine::Plain { generator, .. } => generator.set_max_new_tokens(n),
            }
            if !args.json {
                println(&format!("--- row {i} ---"))?;
            }
            generate_row(args, &model, &tokenizer, &mut engine, &settings, text, ids, Some(i), load_time)
                .map_err(|e| line(i, e))?;
        }
        return Ok(());
    }
    let prompt = match (&args.prompt, &args.prompt_file) {
        (_, Some(path)) => read_text_file(path)?,
        (Some(p), None) => p.clone(),
        (None, None) => return Err(Error::usage("give a prompt, or --prompt-file PATH, or --prompts-file PATH")),
    };
    let prompt_ids = tokenizer.encode(&prompt);
    if prompt_ids.is_empty() {
        return Err(Error::input("the prompt is empty: give some text to continue"));
    }
    let settings = settings(args, &defaults, default_eos, prompt_ids.len())?;
    let mut engine = engine(args, &model, &settings)?;
    let load_time = load_start.elapsed();
    generate_row(args, &model, &tokenizer, &mut engine, &settings, &prompt, &prompt_ids, None, load_time)
}

fn engine<'m>(args: &GenerateArgs, model: &'m Model, settings: &Settings) -> Result<Engine<'m>> {
    Ok(match &settings.beam {
        Some(beam) => Engine::Beam(BeamSearch::new(model, args.ctx, settings.opts.clone(), beam.clone())?),
        None => Engine::Plain {
            session: model.session(args.ctx)?,
            generator: Generator::new(settings.opts.clone(), model.config.vocab_size)?,
        },
    })
}

/// Generates from one prompt and prints the result; `index` is the row of a batch, whose
/// sampled sequence `k` uses random stream `index * sequences + k`.
#[allow(clippy::too_many_arguments)]
fn generate_row(
    args: &GenerateArgs,
    model: &Model,
    tokenizer: &Tokenizer,
    engine: &mut Engine<'_>,
    settings: &Settings,
    prompt: &str,
    prompt_ids: &[u32],
    index: Option<usize>,
    load_time: Duration,
) -> Result<()> {
    let (session, generator) = match engine {
        Engine::Beam(search) => {
            let generation = search.run(prompt_ids)?;
            let capacity = search.capacity();
            return print_beams(args, prompt, prompt_ids, tokenizer, &generation, capacity, load_time, index);
        }
        Engine::Plain { session, generator } => (session, generator),
    };

    let streaming = !args.json && settings.sequences == 1;
    if streaming {
        print_flush(prompt)?;
    }
    let first_stream = (index.unwrap_or(0) * settings.sequences) as u64;
    let mut sequences = Vec::with_capacity(settings.sequences);
    for k in 0..settings.sequences {
        if k > 0 && interrupt::requested() {
            break;
        }
        session.reset();
        let mut text = TextStream::new(args.stop.clone(), args.skip_special_tokens);
        let generation = generator.run(session, prompt_ids, first_stream + k as u64, |id| {
            let (piece, stopped) = text.push(tokenizer, id)?;
            if streaming {
                print_flush(piece)?;
            }
            Ok(if stopped {
                Flow::Stop
            } else if interrupt::requested() {
                Flow::Interrupt
            } else {
                Flow::Continue
            })
        })?;
        let rest = text.finish();
        if streaming {
            println(&rest)?;
        }
        sequences.push(Sequence { generation, text: text.text().to_string() });
    }
    // Best first: highest total logprob (the order of generation on ties).
    sequences.sort_by(|a, b| b.generation.total_logprob().total_cmp(&a.generation.total_logprob()));
    for s in &sequences {
        if s.generation.finish_reason == FinishReason::ContextFull {
            eprintln!(
                "note: {}the context is full ({} positions) after {} new tokens: stopped \
                 (--on-context-full slide keeps going{})",
                row_prefix(index),
                session.capacity(),
                s.generation.new_ids.len(),
                if session.capacity() < model.config.n_positions { "; or raise --ctx" } else { "" }
            );
            break;
        }
    }

    let seed = match &settings.opts.strategy {
        Strategy::Sample(s) => Some(s.seed),
        Strategy::Greedy => None,
    };
    if args.json {
        let best = sequences[0].record(args.logprobs, false);
        let all = || sequences.iter().map(|s| s.record(args.logprobs, true)).collect();
        println(&json_record(args, best, index, prompt_ids, seed, all).to_string())?;
    } else if !streaming {
        print_texts(prompt, sequences.iter().map(|s| s.text.as_str()))?;
    }
    if args.stats {
        print_stats(load_time, prompt_ids.len(), &sequences, seed, index);
    }
    Ok(())
}

/// "row I: " for a row of a batch, else nothing.
fn row_prefix(index: Option<usize>) -> String {
    index.map(|i| format!("row {i}: ")).unwrap_or_default()
}

/// Beam search output: the best sequence (K of them with --num-return-sequences), as text or JSON.
#[allow(clippy::too_many_arguments)]
fn print_beams(
    args: &GenerateArgs,
    prompt: &str,
    prompt_ids: &[u32],
    tokenizer: &crate::tokenizer::Tokenizer,
    g: &BeamGeneration,
    capacity: usize,
    load_time: Duration,
    index: Option<usize>,
) -> Result<()> {
    let mut records = Vec::with_capacity(g.sequences.len());
    let mut texts = Vec::with_capacity(g.sequences.len());
    for s in &g.sequences {
        let mut stream = TextStream::new(Vec::new(), args.skip_special_tokens);
        for &id in &s.new_ids {
            stream.push(tokenizer, id)?;
        }
        stream.finish();
        let text = stream.text().to_string();
        let mut record = sequence_record(&s.new_ids, &text, s.finish_reason);
        record["score"] = json!(s.score);
        records.push(record);
        texts.push(text);
    }
    if g.sequences.iter().any(|s| s.finish_reason == FinishReason::ContextFull) {
        eprintln!("note: {}the context is full ({capacity} positions): the beams stopped there", row_prefix(index));
    }
    if args.json {
        let best = records[0].clone();
        println(&json_record(args, best, index, prompt_ids, None, || records).to_string())?;
    } else {
        print_texts(prompt, texts.iter().map(String::as_str))?;
    }
    if args.stats {
        let per_s = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let beams = args.num_beams.unwrap_or(1);
        let reasons: Vec<&str> = g.sequences.iter().map(|s| s.finish_reason.name()).collect();
        eprintln!(
            "{}load {:.0} ms | prompt {} tokens, {:.1} tokens/s | {} beams, {} steps, {:.1} beam tokens/s | stop: {}",
            row_prefix(index),
            load_time.as_secs_f64() * 1e3,
            prompt_ids.len(),
            per_s(prompt_ids.len(), g.prompt_time.as_secs_f64()),
            beams,
            g.steps,
            per_s(g.steps * beams, g.decode_time.as_secs_f64()),
            reasons.join(",")
        );
    }
    Ok(())
}

fn print_stats(
    load_time: Duration,
    prompt_len: usize,
    sequences: &[Sequence],
    seed: Option<u64>,
    index: Option<usize>,
) {
    let per_s = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let prompt_time: Duration = sequences.iter().map(|s| s.generation.prompt_time).sum();
    let decode_time: Duration = sequences.iter().map(|s| s.generation.decode_time).sum();
    let generated: usize = sequences.iter().map(|s| s.generation.new_ids.len()).sum();
    let decoded: usize = sequences.iter().map(|s| s.generation.new_ids.len().saturating_sub(1)).sum();
    let slides: usize = sequences.iter().map(|s| s.generation.context_slides).sum();
    let reasons: Vec<&str> = sequences.iter().map(|s| s.generation.finish_reason.name()).collect();
    let mut line = format!(
        "{}load {:.0} ms | prompt {} tokens, {:.1} tokens/s | generated {} tokens, {:.1} tokens/s | stop: {}",
        row_prefix(index),
        load_time.as_secs_f64() * 1e3,
        prompt_len,
        per_s(prompt_len * sequences.len(), prompt_time.as_secs_f64()),
        generated,
        per_s(decoded, decode_time.as_secs_f64()),
        reasons.join(",")
    );
    if slides > 0 {
        line.push_str(&format!(" | context slides: {slides}"));
    }
    if let Some(seed) = seed {
        line.push_str(&format!(" | seed {seed}"));
    }
    eprintln!("{line}");
}
