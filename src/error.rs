//! One error type for the whole engine. Every variant names what was wrong and, where it helps,
//! what to do; the CLI prints it on one line and maps it to an exit code.
//!
//! The library speaks of its own settings by their API names (transformers' where it has one),
//! written in backticks (`` `max_new_tokens` ``), and never of command-line flags: the CLI maps
//! a [`Setting`] to its flag when it prints an error.

use std::path::{Path, PathBuf};

/// A setting of the engine's API, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// A session's context size in positions.
    Ctx,
    /// Scoring's window step.
    Stride,
    MaxNewTokens,
    RepetitionPenalty,
    Temperature,
    TopP,
    MinP,
    NumBeams,
    NumReturnSequences,
    LengthPenalty,
    /// The KV cache's element type.
    Kv,
}

impl Setting {
    pub const ALL: [Setting; 11] = [
        Setting::Ctx,
        Setting::Stride,
        Setting::MaxNewTokens,
        Setting::RepetitionPenalty,
        Setting::Temperature,
        Setting::TopP,
        Setting::MinP,
        Setting::NumBeams,
        Setting::NumReturnSequences,
        Setting::LengthPenalty,
        Setting::Kv,
    ];

    /// Its name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Ctx => "ctx",
            Setting::Stride => "stride",
            Setting::MaxNewTokens => "max_new_tokens",
            Setting::RepetitionPenalty => "repetition_penalty",
            Setting::Temperature => "temperature",
            Setting::TopP => "top_p",
            Setting::MinP => "min_p",
            Setting::NumBeams => "num_beams",
            Setting::NumReturnSequences => "num_return_sequences",
            Setting::LengthPenalty => "length_penalty",
            Setting::Kv => "kv",
        }
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`", self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read at all.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file was read but its contents are wrong (bad JSON, missing field, bad tensor...).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// Input given at run time is unusable (an unknown token id, an empty prompt, ...).
    #[error("{0}")]
    Input(String),
    /// Settings or arguments that do not go together (a command line's, or a library call's such
    /// as sampling options for beam search); the CLI exits with code 2.
    #[error("{0}")]
    Usage(String),
    /// A setting's value is outside its range; `allowed` says what is (naming other settings as
    /// [`Setting`] displays them). The CLI exits with code 2.
    #[error("{setting} {value} is out of range: {allowed}")]
    OutOfRange { setting: Setting, value: String, allowed: String },
    /// `tokens` more tokens do not fit a session holding `used` of its `capacity` positions
    /// (`n_positions`: the most any session of the model holds).
    #[error(
        "{tokens} tokens do not fit the context: {used} already used of {capacity} positions{}",
        if capacity < n_positions {
            format!(" (a session's {} can be up to n_positions = {n_positions})", Setting::Ctx)
        } else {
            " (the model's n_positions)".to_string()
        }
    )]
    ContextFull { tokens: usize, used: usize, capacity: usize, n_positions: usize },
    /// A prompt of `tokens` is longer than the `room` left in a session of `capacity` positions.
    #[error(
        "the prompt has {tokens} tokens but the context holds {room} (n_positions {n_positions}{}): shorten the prompt",
        if capacity < n_positions { format!(", or a larger {}", Setting::Ctx) } else { String::new() }
    )]
    PromptTooLong { tokens: usize, room: usize, capacity: usize, n_positions: usize },
    /// A KV arena of `bytes` for `ctx` positions does not fit the `available` memory; `fits`
    /// positions would.
    #[error(
        "the KV cache for {ctx} positions needs {:.1} GiB, but only {:.1} GiB of memory is available: \
         use a {} of {fits} or less (or an f16 {} to halve it)",
        gib(*bytes), gib(*available), Setting::Ctx, Setting::Kv
    )]
    KvTooLarge { ctx: usize, bytes: u64, available: u64, fits: u64 },
    /// `source`, in the part of the input `context` names (a batch row, a line of a file).
    #[error("{context}: {source}")]
    In { context: String, source: Box<Error> },
}

/// Bytes in GiB, for messages.
pub(crate) fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn bad_file(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }

    /// `path` is given as a model but is neither a folder nor a file. A missing path that reads
    /// like a hub name (`gpt2`, `openai-community/gpt2`) says how to fetch that model: Quill
    /// reads local files only.
    pub fn not_a_model_folder(path: &Path) -> Self {
        if path.exists() {
            return Error::bad_file(path, "not a folder (expected a model folder with config.json)");
        }
        let name = path.to_string_lossy();
        let hub_like = !name.is_empty()
            && name.split('/').count() <= 2
            && !name.starts_with(['.', '/', '~'])
            && name
                .split('/')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        if hub_like {
            Error::bad_file(
                path,
                format!(
                    "no such folder: Quill reads models from local folders and files, not from the hub; fetch \
                     it with `huggingface-cli download {name} --local-dir {dir}` (or a `git clone` of its hub \
                     repository) and give that folder",
                    dir = name.rsplit('/').next().unwrap_or(&name)
                ),
            )
        } else {
            Error::bad_file(path, "no such folder")
        }
    }

    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn out_of_range(setting: Setting, value: impl ToString, allowed: impl Into<String>) -> Self {
        Error::OutOfRange { setting, value: value.to_string(), allowed: allowed.into() }
    }

    /// `self`, in the part of the input `context` names. A file's or a path's error names its
    /// file already and is returned as it is.
    pub fn within(self, context: impl Into<String>) -> Self {
        match self {
            Error::Io { .. } | Error::BadFile { .. } => self,
            source => Error::In { context: context.into(), source: Box::new(source) },
        }
    }

    /// Process exit code: 2 for usage errors (a setting out of range included), 1 for everything
    /// else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::OutOfRange { .. } => 2,
            Error::In { source, .. } => source.exit_code(),
            _ => 1,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads and parses a JSON file, naming it in the error.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))
}
