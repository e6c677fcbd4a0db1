//! Writing to stdout: a closed pipe (`quill generate ... | head`) ends the command quietly.

use std::io::Write;

use crate::error::{Error, Result};

/// Writes `s` to stdout and flushes, so streamed tokens appear at once.
pub(crate) fn print_flush(s: &str) -> Result<()> {
    write_flush(s.as_bytes())
}

/// [`print_flush`] for bytes.
pub(crate) fn write_flush(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|_| out.flush()).map_err(stdout_error)
}

pub(crate) fn println(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}").map_err(stdout_error)
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

pub(crate) fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Parses "1,2,3" into token ids.
pub(crate) fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>()
                .map_err(|_| Error::usage(format!("--ids: '{p}' is not a token id (expected e.g. 464,3290,318)")))
        })
        .collect()
}
