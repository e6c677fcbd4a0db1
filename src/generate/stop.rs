//! Stop strings on streamed text: find them as the text grows, and hold back what could still
//! turn out to be the start of one, so that a stop string is never shown.

use crate::error::Result;
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Text arriving piece by piece, searched for stop strings.
///
/// [`push`](Self::push) returns the text that is now safe to show: everything except a suffix
/// that is the start of some stop string. As soon as a stop string is complete, the text is cut
/// just before it (before the earliest, if one push completes several) and nothing more is
/// accepted.
/// Concatenating every returned piece and [`finish`](Self::finish) gives [`text`](Self::text).
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    longest: usize,
    text: String,
    released: usize,
    stopped: bool,
}

impl StopMatcher {
    /// `stops` must not contain an empty string (it would match at once).
    pub fn new(stops: Vec<String>) -> StopMatcher {
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        StopMatcher { stops, longest, text: String::new(), released: 0, stopped: false }
    }

    /// Adds `piece`; returns the newly releasable text and whether a stop string was found (now
    /// or before).
    pub fn push(&mut self, piece: &str) -> (&str, bool) {
        if self.stopped {
            return ("", true);
        }
        let start = self.released;
        self.text.push_str(piece);
        // A stop string that ends in the new text starts at or after `released`: the held-back
        // text is the longest suffix that begins one.
        let window = &self.text[start..];
        if let Some(at) = self.stops.iter().filter_map(|s| window.find(s.as_str())).min() {
            let cut = start + at;
            self.text.truncate(cut);
            self.released = cut;
            self.stopped = true;
            return (&self.text[start..cut], true);
        }
        let len = self.text.len();
        let hold = (1..self.longest.min(len - start + 1))
            .rev()
            .find(|&k| {
                let tail = &self.text.as_bytes()[len - k..];
                self.text.is_char_boundary(len - k) && self.stops.iter().any(|s| s.as_bytes().starts_with(tail))
            })
            .unwrap_or(0);
        self.released = len - hold;
        (&self.text[start..self.released], false)
    }

    /// Ends the text: releases what was held back (nothing after a stop).
    pub fn finish(&mut self) -> &str {
        let start = self.released;
        self.released = self.text.len();
        &self.text[start..]
    }

    /// All the text so far, cut before the stop string if one was found.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }
}

/// Token ids to shown text: a [`StreamDecoder`] (whole characters only) followed by a
/// [`StopMatcher`].
#[derive(Clone, Debug, Default)]
pub struct TextStream {
    decoder: StreamDecoder,
    matcher: StopMatcher,
    /// Leave out special tokens ([`Tokenizer::is_special_id`]), as `skip_special_tokens`.
    skip_special: bool,
}

impl TextStream {
    pub fn new(stops: Vec<String>, skip_special: bool) -> TextStream {
        TextStream { decoder: StreamDecoder::new(), matcher: StopMatcher::new(stops), skip_special }
    }

    /// Adds one token; returns the text safe to show now and whether a stop string was found.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<(&str, bool)> {
        if self.matcher.stopped() {
            return Ok(("", true));
        }
        if self.skip_special && tok.is_special_id(id) {
            return Ok(("", false));
        }
        let piece = self.decoder.push(tok, id)?;
        Ok(self.matcher.push(&piece))
    }

    /// Ends the stream: the rest of the text (an incomplete character at the end becomes U+FFFD,
    /// as [`StreamDecoder::finish`] does).
    pub fn finish(&mut self) -> String {
        let tail = self.decoder.finish();
        let (first, stopped) = self.matcher.push(&tail);
        let mut out = first.to_string();
        if !stopped {
            out.push_str(self.matcher.finish());
        }
        out
    }

    /// The text so far, cut before a stop string.
    pub fn text(&self) -> &str {
        self.matcher.text()
    }

    pub fn stopped(&self) -> bool {
        self.matcher.stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for p in pieces {
            let (s, stop) = m.push(p);
            out.push(s.to_string());
            if stop {
                break;
            }
        }
        out.push(m.finish().to_string());
        (out, m.text().to_string(), m.stopped())
    }

    #[test]
    fn holds_back_a_possible_start() {
        let (out, text, stopped) = run(&["END"], &["hello E", "N", "D more"]);
        assert_eq!(out, ["hello ", "", "", ""]);
        assert_eq!(text, "hello ");
        assert!(stopped);
    }

    #[test]
    fn releases_a_false_start() {
        let (out, text, stopped) = run(&["END"], &["hello E", "N", "d"]);
        assert_eq!(out, ["hello ", "", "ENd", ""]);
        assert_eq!(text, "hello ENd");
        assert!(!stopped);
        let (out, _, _) = run(&["END"], &["ab EN"]);
        assert_eq!(out, ["ab ", "EN"]);
    }

    #[test]
    fn earliest_stop_wins() {
        let (_, text, _) = run(&["cd", "b"], &["abcd"]);
        assert_eq!(text, "a");
        let (_, text, _) = run(&["\n\n", "x"], &["one\n", "\ntwo x"]);
        assert_eq!(text, "one");
    }

    #[test]
    fn multibyte_stops() {
        let (out, text, _) = run(&["é!"], &["café", "!"]);
        assert_eq!(out, ["caf", "", ""]);
        assert_eq!(text, "caf");
    }
}
