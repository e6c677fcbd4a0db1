//! The tool's one error type: a message for the user and which exit code it earns.
//!
//! Two kinds (and Ctrl-C) are enough: the command line asked for something that cannot work (exit code 2, as
//! clap's own usage errors), or the work failed on the files at hand (exit code 1). Both carry a
//! finished one-line message naming the file or tensor at fault.

use std::fmt;
use std::path::Path;

#[derive(Debug)]
pub enum Error {
    /// The arguments contradict each other (e.g. OUT is IN); exit code 2.
    Usage(String),
    /// Reading, checking or writing failed; exit code 1.
    Runtime(String),
    /// Ctrl-C: stopped before finishing, nothing written; exit code 130 (128 + SIGINT), as a
    /// shell expects of an interrupted program.
    Interrupted,
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn runtime(msg: impl Into<String>) -> Self {
        Error::Runtime(msg.into())
    }

    /// An I/O failure on `path`, saying what was being done (`"reading"`, `"writing"`, ...).
    pub fn io(doing: &str, path: &Path, e: std::io::Error) -> Self {
        Error::Runtime(format!("{doing} {}: {e}", path.display()))
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Runtime(_) => 1,
            Error::Interrupted => 130,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) | Error::Runtime(msg) => f.write_str(msg),
            Error::Interrupted => f.write_str("interrupted (Ctrl-C): nothing was written"),
        }
    }
}

/// The engine's errors already name their file; they are runtime failures here.
impl From<quill::Error> for Error {
    fn from(e: quill::Error) -> Self {
        Error::Runtime(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
