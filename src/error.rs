//! One error type for the whole engine. Every variant names what was wrong and, where it helps,
//! what to do; the CLI prints it on one line and maps it to an exit code.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read at all.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file was read but its contents are wrong (bad JSON, missing field, bad tensor...).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// Input given at run time is unusable (prompt too long, unknown token id, ...).
    #[error("{0}")]
    Input(String),
    /// The command line asks for something inconsistent; the CLI exits with code 2.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn bad_file(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }

    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// Process exit code: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
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
