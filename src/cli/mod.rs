//! The `quill` command line: argument parsing, and one module per subcommand.

mod bench;
mod choose;
mod decode;
mod embed;
mod flags;
mod generate;
mod info;
mod interrupt;
mod logits;
mod output;
mod score;
mod tokenize;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::builtin;
use crate::error::{Error, Result};
use crate::generation_config::GenerationDefaults;
use crate::kv_cache::KvType;
use crate::model::{LoadOptions, Model};
use crate::quill_file;
use crate::tokenizer::Tokenizer;

#[derive(Parser, Debug)]
#[command(name = "quill", version, about = "Run GPT-2 and GPT-Neo models on the CPU with transformers' exact numerics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads for the kernels (default: the number of physical cores); `bench` takes a
    /// list, e.g. 1,2.
    #[arg(long, global = true, value_name = "N", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Vec<u16>,
    /// Element type of the KV cache: f32 (exact, default) or f16 (half the memory; attention
    /// then reads half the bytes per token).
    #[arg(long, global = true, value_name = "TYPE", value_parser = ["f32", "f16"])]
    kv: Option<String>,
    /// Force a kernel level: scalar, avx2, avx2dot, avx512, avx512vnni, neon or neondot (default: the best this CPU
    /// supports; also QUILL_KERNELS).
    #[arg(long, global = true, value_name = "LEVEL")]
    kernels: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Continue a prompt (greedy or sampled), streaming the text as it is produced.
    Generate(Box<generate::GenerateArgs>),
    /// Show the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Turn token ids back into text.
    Decode(decode::DecodeArgs),
    /// Show the next-token logits after a prompt.
    Logits(logits::LogitsArgs),
    /// Describe a model: architecture, sizes, dtype, parameters, kernels.
    Info(info::InfoArgs),
    /// Measure prompt and generation speed (llama-bench style) and the machine's read bandwidth.
    Bench(bench::BenchArgs),
    /// Loss, perplexity and bits per byte of a text file (strided sliding windows).
    Score(score::ScoreArgs),
    /// A vector per text from the final hidden states (mean-pooled or the last token's).
    Embed(embed::EmbedArgs),
    /// Pick the best of several candidate texts with a GPT2DoubleHeadsModel's multiple-choice head.
    Choose(choose::ChooseArgs),
}

/// The model every subcommand takes.
#[derive(Args, Debug)]
pub(crate) struct ModelArg {
    /// A Hugging Face model folder (config.json, model.safetensors, vocab.json + merges.txt or
    /// tokenizer.json), one Quill file made by `quantize`, or an OpenAI TensorFlow checkpoint
    /// folder (hparams.json, model.ckpt.*) [default: the built-in demo model].
    #[arg(short = 'm', long = "model", value_name = "PATH")]
    model: Option<PathBuf>,
}

impl ModelArg {
    /// The model's path, or the built-in model's name.
    pub(crate) fn path(&self) -> &Path {
        self.model.as_deref().unwrap_or(Path::new(builtin::NAME))
    }

    pub(crate) fn load(&self, opts: &LoadOptions) -> Result<(Model, Tokenizer)> {
        match &self.model {
            Some(path) => load_model(path, opts),
            None => {
                let model = builtin::model(opts)?;
                let tokenizer = quill_file::tokenizer(self.path(), model.metadata())?;
                Ok((model, tokenizer))
            }
        }
    }

    /// The model and, where it has one, its tokenizer: a folder may carry weights only, which is
    /// enough for commands that take token ids.
    pub(crate) fn load_tokenizer_if_any(&self, opts: &LoadOptions) -> Result<(Model, Option<Tokenizer>)> {
        match &self.model {
            Some(dir) if dir.is_dir() && !Tokenizer::in_folder(dir) => Ok((Model::load(dir, opts)?, None)),
            _ => self.load(opts).map(|(model, tokenizer)| (model, Some(tokenizer))),
        }
    }

    /// The generation defaults: the folder's generation_config.json or the Quill file's copy.
    pub(crate) fn generation_defaults(&self, model: &Model) -> Result<GenerationDefaults> {
        match &self.model {
            Some(dir) if dir.is_dir() => GenerationDefaults::from_model_dir(dir),
            _ => quill_file::generation_defaults(self.path(), model.metadata()),
        }
    }

    pub(crate) fn load_tokenizer(&self) -> Result<Tokenizer> {
        let Some(path) = &self.model else {
            return builtin::tokenizer();
        };
        if path.is_file() {
            let (_, checkpoint) = quill_file::open(path)?;
            return quill_file::tokenizer(path, checkpoint.metadata());
        }
        if !path.is_dir() {
            return Err(Error::not_a_model_folder(path));
        }
        Tokenizer::from_model_dir(path)
    }
}

/// Loads the model (a folder or a Quill file) and its tokenizer and checks that they agree.
fn load_model(dir: &Path, opts: &LoadOptions) -> Result<(Model, Tokenizer)> {
    let model = Model::load(dir, opts)?;
    if crate::tf::is_checkpoint_folder(dir) {
        eprintln!(
            "note: {}: a TensorFlow checkpoint, read into memory as f32; `quantize {} OUT.safetensors --type f16` \
             makes a Quill file that maps instantly (and f16 or q8_0 halves or quarters it)",
            dir.display(),
            dir.display()
        );
    }
    if model.config.add_cross_attention {
        eprintln!(
            "note: {}: the config adds cross-attention, whose weights are not used: transformers runs them only on \
             encoder_hidden_states, which Quill does not take",
            dir.display()
        );
    }
    let tokenizer =
        if dir.is_file() { quill_file::tokenizer(dir, model.metadata())? } else { Tokenizer::from_model_dir(dir)? };
    if tokenizer.vocab_size() > model.config.vocab_size {
        return Err(Error::bad_file(
            dir,
            format!(
                "the tokenizer has {} tokens but config.json's vocab_size is {}",
                tokenizer.vocab_size(),
                model.config.vocab_size
            ),
        ));
    }
    Ok((model, tokenizer))
}

/// Parses a command line (`args[0]` is the program name) without running it: the usage error
/// clap would print, if any. For fuzzing the argument parser.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> std::result::Result<(), String> {
    Cli::try_parse_from(args).map(|_| ()).map_err(|e| e.to_string())
}

/// Runs the CLI on the process arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            // clap already formats its message ("error: ..." plus usage) or the help text.
            let _ = e.print();
            return code;
        }
    };
    interrupt::install();
    // The command runs on a worker of the kernels' pool: parallel kernels called from inside the
    // pool split work with no hand-off from a foreign thread (which would allocate per call).
    let result = setup(&cli).and_then(|(pool, load)| {
        pool.install(|| match &cli.command {
            Command::Generate(args) => generate::run(args, &load),
            Command::Tokenize(args) => tokenize::run(args),
            Command::Decode(args) => decode::run(args),
            Command::Logits(args) => logits::run(args, &load),
            Command::Info(args) => info::run(args, &load),
            Command::Bench(args) => bench::run(args, &cli.threads, &load),
            Command::Score(args) => score::run(args, &load),
            Command::Embed(args) => embed::run(args, &load),
            Command::Choose(args) => choose::run(args, &load),
        })
    });
    match result {
        Ok(()) if interrupt::requested() => interrupt::EXIT_CODE,
        Ok(()) => 0,
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {}", flags::message(&e));
            e.exit_code()
        }
    }
}

/// Chooses the kernel table and the KV type every model is loaded with, and starts the thread
/// pool, once, before any model is loaded.
fn setup(cli: &Cli) -> Result<(rayon::ThreadPool, LoadOptions)> {
    let kernels = quill_kernels::init(cli.kernels.as_deref()).map_err(|e| {
        Error::usage(if cli.kernels.is_some() { format!("--kernels: {e}") } else { format!("QUILL_KERNELS: {e}") })
    })?;
    let kv = if cli.kv.as_deref() == Some("f16") { KvType::F16 } else { KvType::F32 };
    let load = LoadOptions { kernels: Some(kernels), kv };
    let threads = match (&cli.command, cli.threads.as_slice()) {
        (_, []) => quill_kernels::physical_cores(),
        (Command::Bench(_), list) => list.iter().copied().max().map_or(1, usize::from),
        (_, [n]) => usize::from(*n),
        (_, _) => return Err(Error::usage("--threads takes one number here (a list only for bench)")),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::input(format!("cannot start {threads} worker threads: {e}")))?;
    Ok((pool, load))
}

/// The prompts of `--prompts-file`: one per line (a final newline ends the last line, a `\r`
/// before a newline is dropped), or with a `.jsonl` name one JSON string or `{"prompt": "..."}`
/// object per line (so that a prompt can hold newlines); an empty line or file is an error
/// naming the file.
pub(crate) fn read_prompts(path: &Path) -> Result<Vec<String>> {
    let text = read_text_file(path)?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    if body.is_empty() {
        return Err(Error::bad_file(path, "no prompts: give one prompt per line"));
    }
    let json_lines = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let mut prompts = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bad = |what: &str| Error::bad_file(path, format!("line {} {what}", i + 1));
        if line.is_empty() {
            return Err(bad("is empty: give one prompt per line, without empty lines"));
        }
        if !json_lines {
            prompts.push(line.to_string());
            continue;
        }
        let prompt = match serde_json::from_str::<Value>(line) {
            Ok(Value::String(s)) => s,
            Ok(Value::Object(mut o)) => match o.remove("prompt") {
                Some(Value::String(s)) => s,
                _ => return Err(bad("has no \"prompt\" string: give {\"prompt\": \"...\"} or a JSON string")),
            },
            Ok(_) => return Err(bad("is not a JSON string or an object with a \"prompt\" string")),
            Err(e) => return Err(bad(&format!("is not valid JSON ({e})"))),
        };
        if prompt.is_empty() {
            return Err(bad("holds an empty prompt"));
        }
        prompts.push(prompt);
    }
    Ok(prompts)
}

/// Reads the text of `--file`, which must be UTF-8.
pub(crate) fn read_text_file(path: &Path) -> Result<String> {
    let bytes = crate::error::read_file(path)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::bad_file(path, format!("not valid UTF-8 (first bad byte at offset {})", e.utf8_error().valid_up_to()))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
