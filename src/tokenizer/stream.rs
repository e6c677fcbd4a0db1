//! UTF-8 decoding with Python's `errors=` modes, and the incremental [`StreamDecoder`].
//!
//! Invalid input is handled per "maximal subpart" (what both CPython's decoder and Rust's
//! `from_utf8` error lengths implement): e.g. `F0 80 41` gives two U+FFFD then "A", and an
//! incomplete sequence at the very end gives one U+FFFD.

use super::{DecodeErrors, Tokenizer};
use crate::error::{Error, Result};

/// Decodes as much of `bytes` as possible into `out`. When `at_end` is false, an incomplete but
/// so-far-valid sequence at the end is left undecoded. Returns the number of bytes consumed.
pub(crate) fn decode_utf8_into(bytes: &[u8], mode: DecodeErrors, at_end: bool, out: &mut String) -> Result<usize> {
    let mut pos = 0;
    loop {
        match std::str::from_utf8(&bytes[pos..]) {
            Ok(s) => {
                out.push_str(s);
                return Ok(bytes.len());
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // The prefix up to `valid` was just checked.
                out.push_str(std::str::from_utf8(&bytes[pos..pos + valid]).unwrap_or_default());
                pos += valid;
                let bad_len = match e.error_len() {
                    Some(n) => n,
                    None if at_end => bytes.len() - pos,
                    None => return Ok(pos),
                };
                match mode {
                    DecodeErrors::Replace => out.push('\u{FFFD}'),
                    DecodeErrors::Ignore => {}
                    DecodeErrors::Strict => {
                        let shown: Vec<String> = bytes[pos..pos + bad_len].iter().map(|b| format!("{b:02X}")).collect();
                        return Err(Error::input(format!(
                            "decoded tokens are not valid UTF-8: bytes [{}] at byte offset {pos} \
                             (use the replace or ignore error mode to decode anyway)",
                            shown.join(" ")
                        )));
                    }
                }
                pos += bad_len;
            }
        }
    }
}

/// Turns ids into text one at a time, returning only whole characters.
///
/// Bytes of a character split across tokens are held back (at most 3) until the character is
/// complete; a sequence is replaced (or dropped, or reported, per the tokenizer's
/// [`DecodeErrors`] mode) as soon as it is known to be invalid. Concatenating every `push`
/// result and `finish` gives the same text as [`Tokenizer::decode`] on all the ids.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    ignore: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one token; returns the text that became complete (possibly empty).
    /// Unknown ids and (in `Strict` mode) invalid UTF-8 are errors; the decoder stays usable.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        let mode = tok.options().errors;
        self.ignore = mode == DecodeErrors::Ignore;
        self.pending.extend_from_slice(tok.token_bytes(id)?);
        let mut out = String::new();
        let consumed = match decode_utf8_into(&self.pending, mode, false, &mut out) {
            Ok(n) => n,
            Err(e) => {
                self.pending.clear();
                return Err(e);
            }
        };
        self.pending.drain(..consumed);
        Ok(out)
    }

    /// Number of bytes held back waiting for the rest of a character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Ends the stream: an incomplete trailing character becomes one U+FFFD (dropped in `Ignore`
    /// mode). The decoder is empty afterwards and can be reused.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        if !self.pending.is_empty() && !self.ignore {
            out.push('\u{FFFD}');
        }
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(bytes: &[u8], mode: DecodeErrors) -> Result<String> {
        let mut s = String::new();
        decode_utf8_into(bytes, mode, true, &mut s)?;
        Ok(s)
    }

    #[test]
    fn error_modes() {
        let bad = b"a\xF0\x80A\xE2\x82";
        assert_eq!(lossy(bad, DecodeErrors::Replace).unwrap(), "a\u{FFFD}\u{FFFD}A\u{FFFD}");
        assert_eq!(lossy(bad, DecodeErrors::Ignore).unwrap(), "aA");
        assert!(matches!(lossy(bad, DecodeErrors::Strict), Err(Error::Input(_))));
        assert_eq!(lossy("ok\u{FFFD}".as_bytes(), DecodeErrors::Ignore).unwrap(), "ok\u{FFFD}");
        assert_eq!(lossy(b"\xED\xA0\x80", DecodeErrors::Replace).unwrap(), "\u{FFFD}".repeat(3));
        for bytes in [&b"\xE2\x80\xE2\x80\xA6"[..], b"\xFF\xC3\xA9\xC3", b"\x80\x80abc"] {
            assert_eq!(lossy(bytes, DecodeErrors::Replace).unwrap(), String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn holds_back_incomplete_tail() {
        let mut out = String::new();
        let n = decode_utf8_into(b"ab\xE2\x82", DecodeErrors::Replace, false, &mut out).unwrap();
        assert_eq!((n, out.as_str()), (2, "ab"));
        out.clear();
        let n = decode_utf8_into(b"\xE2\x41", DecodeErrors::Replace, false, &mut out).unwrap();
        assert_eq!((n, out.as_str()), (2, "\u{FFFD}A"));
    }
}
