//! `quill tokenize`: text → token ids (and, with `--tokens`, their GPT-2 token strings).
//!
//! The ids are written as the tokenizer makes them, a block of text at a time
//! ([`Tokenizer::encode_reader`]): a long `--file` never sits in memory whole, nor do its ids
//! (except with `--json --tokens`, whose token strings follow all the ids).

use std::path::{Path, PathBuf};

use clap::Args;

use super::output::{println, write_flush};
use super::ModelArg;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

#[derive(Args, Debug)]
pub(crate) struct TokenizeArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The text to tokenize.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    text: Option<String>,
    /// Read the text from a UTF-8 file instead, streaming the ids out as they are made (long
    /// files are encoded on --threads threads, a few MB at a time).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Also show each token as GPT-2 writes it (e.g. 'Ġlong').
    #[arg(long, conflicts_with = "count")]
    tokens: bool,
    /// Print only the number of tokens ({"count":N} with --json).
    #[arg(long)]
    count: bool,
    /// Print {"ids":[...]} (and "tokens" with --tokens).
    #[arg(long)]
    json: bool,
}

/// How the ids are printed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `1 2 3`
    Plain,
    /// `{"ids":[1,2,3]}`
    Json,
    /// One `id  "token"` line per id, then `N tokens`.
    Table,
    /// Nothing per id: the count at the end.
    Count,
}

pub(crate) fn run(args: &TokenizeArgs) -> Result<()> {
    let tokenizer = args.model.load_tokenizer()?;
    let format = match (args.count, args.tokens, args.json) {
        (true, _, _) => Format::Count,
        (false, true, false) => Format::Table,
        (false, false, true) => Format::Json,
        (false, false, false) => Format::Plain,
        (false, true, true) => return json_with_tokens(&tokenizer, args),
    };
    let mut out = IdWriter::new(&tokenizer, format);
    out.start()?;
    let count = encode(&tokenizer, args, |ids| out.write(ids))?;
    out.finish(count, args.json)
}

/// Encodes the text or the file, handing the ids to `emit` as they come.
fn encode(tokenizer: &Tokenizer, args: &TokenizeArgs, emit: impl FnMut(&[u32]) -> Result<()>) -> Result<u64> {
    match (&args.text, &args.file) {
        (_, Some(path)) => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            tokenizer.encode_reader(file, path, emit)
        }
        (Some(text), None) => tokenizer.encode_reader(text.as_bytes(), Path::new("<text>"), emit),
        (None, None) => Err(Error::usage("give the text to tokenize, or --file PATH")),
    }
}

/// `{"ids":[...],"tokens":[...]}`: the tokens follow every id, so the ids are kept.
fn json_with_tokens(tokenizer: &Tokenizer, args: &TokenizeArgs) -> Result<()> {
    let mut ids = Vec::new();
    encode(tokenizer, args, |part| {
        ids.extend_from_slice(part);
        Ok(())
    })?;
    let tokens: Vec<&str> = ids.iter().map(|&id| tokenizer.id_to_token(id).unwrap_or("")).collect();
    println(&serde_json::json!({ "ids": ids, "tokens": tokens }).to_string())
}

/// Formats ids into a reused buffer and writes each block's to stdout.
struct IdWriter<'t> {
    tokenizer: &'t Tokenizer,
    format: Format,
    buf: Vec<u8>,
    /// Whether an id has been written (for the separators).
    any: bool,
}

impl<'t> IdWriter<'t> {
    fn new(tokenizer: &'t Tokenizer, format: Format) -> Self {
        IdWriter { tokenizer, format, buf: Vec::new(), any: false }
    }

    fn start(&mut self) -> Result<()> {
        if self.format == Format::Json {
            self.buf.extend_from_slice(b"{\"ids\":[");
        }
        Ok(())
    }

    fn write(&mut self, ids: &[u32]) -> Result<()> {
        match self.format {
            Format::Count => return Ok(()),
            Format::Plain | Format::Json => {
                let sep = if self.format == Format::Json { b',' } else { b' ' };
                for &id in ids {
                    if self.any {
                        self.buf.push(sep);
                    }
                    push_decimal(&mut self.buf, u64::from(id));
                    self.any = true;
                }
            }
            Format::Table => {
                for &id in ids {
                    let token = self.tokenizer.id_to_token(id).unwrap_or("");
                    self.buf.extend_from_slice(format!("{id:>7}  {token:?}\n").as_bytes());
                }
            }
        }
        self.flush()
    }

    fn finish(mut self, count: u64, json: bool) -> Result<()> {
        match self.format {
            Format::Plain => self.buf.push(b'\n'),
            Format::Json => self.buf.extend_from_slice(b"]}\n"),
            Format::Table => self.buf.extend_from_slice(format!("{count} tokens\n").as_bytes()),
            Format::Count if json => self.buf.extend_from_slice(format!("{{\"count\":{count}}}\n").as_bytes()),
            Format::Count => self.buf.extend_from_slice(format!("{count}\n").as_bytes()),
        }
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        write_flush(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// Appends `v` in decimal (no `fmt` machinery: millions of ids are written per second).
fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals() {
        for v in [0u64, 7, 10, 99, 50256, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            super::push_decimal(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }
}
