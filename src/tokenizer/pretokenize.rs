//! GPT-2's pre-tokenizer: a hand-written scanner equivalent to Python `regex`'s
//! `findall(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", text)`.
//!
//! At each position the first alternative that matches wins:
//! 1. a lowercase contraction (`'s 't 're 've 'm 'll 'd`, case-sensitive);
//! 2. an optional single U+0020 followed by a maximal run of one class (letters, numbers, or
//!    "other" = neither whitespace, letter nor number);
//! 3. a whitespace run: taken whole if it reaches the end of the text; otherwise all but its last
//!    character (which then starts the next piece, e.g. as the space of " word"); a single
//!    whitespace character followed by a non-space is a piece on its own.
//!
//! Every step consumes at least what it looks at, except the whitespace rule which looks one
//! character further; the scanner is therefore linear in the text length.
//!
//! Character classes (checked against Python `regex` 2026.11.19 over all code points):
//! * `\s` = the Unicode `White_Space` property: U+0009–U+000D, U+0020, U+0085, U+00A0, U+1680,
//!   U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. Note that U+001C–U+001F are *not*
//!   in it (they are in Python's `str.isspace()` and the `re` module's `\s`, but not `regex`'s).
//! * `\p{L}` = general categories Lu Ll Lt Lm Lo; `\p{N}` = Nd Nl No, from the
//!   `unicode-general-category` crate (Unicode 16), plus [`NEWER_UNICODE`]: the code points that
//!   are unassigned in Unicode 16 but letters/numbers in `regex` 2026.11.19's newer data. With that
//!   table the classes equal `regex` 2026.11.19's on all code points (checked exhaustively);
//!   older `regex` releases treat those newer code points as "other".
//! * Marks (Mn Mc Me, e.g. U+0301), symbols, punctuation, controls, ZWJ, unassigned code points
//!   are all in the "other" class.

use unicode_general_category::{get_general_category, GeneralCategory};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Class {
    Space,
    Letter,
    Number,
    Other,
}

/// Python `regex`'s `\s` for `str` patterns (the Unicode White_Space property).
pub(crate) fn is_regex_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{85}' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

const fn ascii_classes() -> [Class; 128] {
    let mut t = [Class::Other; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphabetic() {
            Class::Letter
        } else if b.is_ascii_digit() {
            Class::Number
        } else if matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
            Class::Space
        } else {
            Class::Other
        };
        i += 1;
    }
    t
}

static ASCII_CLASSES: [Class; 128] = ascii_classes();

pub(crate) fn classify(c: char) -> Class {
    if c.is_ascii() {
        return ASCII_CLASSES[c as usize];
    }
    if is_regex_space(c) {
        return Class::Space;
    }
    use GeneralCategory as G;
    match get_general_category(c) {
        G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter => {
            Class::Letter
        }
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        G::Unassigned => newer_unicode_class(c),
        _ => Class::Other,
    }
}

/// Code points unassigned in Unicode 16 (the general-category crate's data) that Python `regex`
/// 2026.11.19 (newer Unicode data) classifies as letters or numbers. Derived by comparing the
/// two over all code points; every other code point classifies identically.
const NEWER_UNICODE: &[(u32, u32, Class)] = &[
    (0x558, 0x558, Class::Letter),
    (0x58B, 0x58C, Class::Letter),
    (0x88F, 0x88F, Class::Letter),
    (0xC5C, 0xC5C, Class::Letter),
    (0xCDC, 0xCDC, Class::Letter),
    (0x208F, 0x208F, Class::Letter),
    (0x209D, 0x209F, Class::Letter),
    (0xA7CE, 0xA7CF, Class::Letter),
    (0xA7D2, 0xA7D2, Class::Letter),
    (0xA7D4, 0xA7D4, Class::Letter),
    (0xA7DD, 0xA7DD, Class::Letter),
    (0xA7E2, 0xA7E2, Class::Letter),
    (0xA7F1, 0xA7F1, Class::Letter),
    (0xAB6C, 0xAB6D, Class::Letter),
    (0x107BB, 0x107BF, Class::Letter),
    (0x10940, 0x10959, Class::Letter),
    (0x10EC5, 0x10EC7, Class::Letter),
    (0x10ED9, 0x10EEE, Class::Letter),
    (0x11B0A, 0x11B0A, Class::Letter),
    (0x11DB0, 0x11DDB, Class::Letter),
    (0x11DE0, 0x11DE9, Class::Number),
    (0x11DF1, 0x11DF1, Class::Letter),
    (0x1246F, 0x1246F, Class::Number),
    (0x12475, 0x1247F, Class::Number),
    (0x12550, 0x12686, Class::Number),
    (0x16EA0, 0x16EB8, Class::Letter),
    (0x16EBB, 0x16ED3, Class::Letter),
    (0x16FF2, 0x16FF3, Class::Letter),
    (0x16FF4, 0x16FF6, Class::Number),
    (0x187F8, 0x187FF, Class::Letter),
    (0x18CD6, 0x18CDA, Class::Letter),
    (0x18D09, 0x18D20, Class::Letter),
    (0x18D80, 0x18DF2, Class::Letter),
    (0x18E00, 0x19191, Class::Letter),
    (0x191A0, 0x191D2, Class::Letter),
    (0x1B123, 0x1B128, Class::Letter),
    (0x1B168, 0x1B168, Class::Letter),
    (0x1D6A6, 0x1D6A6, Class::Letter),
    (0x1DF1F, 0x1DF24, Class::Letter),
    (0x1DF2B, 0x1DF81, Class::Letter),
    (0x1DF90, 0x1DF96, Class::Letter),
    (0x1DFCD, 0x1DFFF, Class::Letter),
    (0x1E6C0, 0x1E6DE, Class::Letter),
    (0x1E6E0, 0x1E6E2, Class::Letter),
    (0x1E6E4, 0x1E6E5, Class::Letter),
    (0x1E6E7, 0x1E6ED, Class::Letter),
    (0x1E6F0, 0x1E6F4, Class::Letter),
    (0x1E6FE, 0x1E6FF, Class::Letter),
    (0x2B73A, 0x2B73F, Class::Letter),
    (0x2B81E, 0x2B81E, Class::Letter),
    (0x2CEA2, 0x2CEAD, Class::Letter),
    (0x323B0, 0x33479, Class::Letter),
    (0x3D000, 0x3FC3F, Class::Letter),
];

fn newer_unicode_class(c: char) -> Class {
    let cp = c as u32;
    match NEWER_UNICODE.binary_search_by(|&(lo, hi, _)| {
        if hi < cp {
            std::cmp::Ordering::Less
        } else if lo > cp {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => NEWER_UNICODE[i].2,
        Err(_) => Class::Other,
    }
}

/// Byte classes for the scanner: the four classes for ASCII bytes, [`NON_ASCII`] for the bytes of
/// multi-byte characters (which are then decoded and classified).
const SPACE: u8 = Class::Space as u8;
const NON_ASCII: u8 = 4;

const fn byte_classes() -> [u8; 256] {
    let ascii = ascii_classes();
    let mut t = [NON_ASCII; 256];
    let mut i = 0;
    while i < 128 {
        t[i] = ascii[i] as u8;
        i += 1;
    }
    t
}

static BYTE_CLASSES: [u8; 256] = byte_classes();

/// The character starting at byte `i` of `text` (a char boundary before its end).
#[inline]
fn char_at(text: &str, i: usize) -> char {
    text[i..].chars().next().unwrap_or('\0')
}

/// End of the maximal run of `class` characters starting at byte `i`: ASCII bytes by table,
/// other characters decoded and classified.
#[inline]
fn run_end(text: &str, mut i: usize, class: Class) -> usize {
    let b = text.as_bytes();
    let want = class as u8;
    while i < b.len() {
        let c = BYTE_CLASSES[b[i] as usize];
        if c == want {
            i += 1;
        } else if c == NON_ASCII {
            let ch = char_at(text, i);
            if classify(ch) != class {
                break;
            }
            i += ch.len_utf8();
        } else {
            break;
        }
    }
    i
}

/// Class of the character starting at byte `i`.
#[inline]
fn class_at(text: &str, i: usize) -> Class {
    let c = BYTE_CLASSES[text.as_bytes()[i] as usize];
    if c == NON_ASCII {
        classify(char_at(text, i))
    } else {
        ASCII_CLASSES[text.as_bytes()[i] as usize]
    }
}

fn contraction_len(b: &[u8]) -> usize {
    match b.get(1) {
        Some(b's' | b't' | b'm' | b'd') => 2,
        Some(b'r' | b'v') if b.get(2) == Some(&b'e') => 3,
        Some(b'l') if b.get(2) == Some(&b'l') => 3,
        _ => 0,
    }
}

/// End (byte offset) of the piece that starts at byte `start` of `text` (`start < text.len()`,
/// a char boundary). A single pass: the piece's bytes are looked at once, plus the one character
/// after a whitespace run.
#[inline]
pub(crate) fn piece_end(text: &str, start: usize) -> usize {
    let b = text.as_bytes();
    let first = b[start];
    if first == b'\'' {
        let n = contraction_len(&b[start..]);
        if n > 0 {
            return start + n;
        }
    }
    if first == b' ' {
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` with the space taken.
        if start + 1 < b.len() {
            let class = class_at(text, start + 1);
            if class != Class::Space {
                return run_end(text, start + 1, class);
            }
        }
    }
    let class = class_at(text, start);
    if class != Class::Space {
        return run_end(text, start, class);
    }
    // `\s+(?!\S)` then `\s+`: the run, less its last character when a non-space follows it
    // (unless the run is that one character).
    let mut i = start;
    let mut last_start = start;
    while i < b.len() {
        let c = BYTE_CLASSES[b[i] as usize];
        if c == SPACE {
            last_start = i;
            i += 1;
        } else if c == NON_ASCII {
            let ch = char_at(text, i);
            if !is_regex_space(ch) {
                break;
            }
            last_start = i;
            i += ch.len_utf8();
        } else {
            break;
        }
    }
    if i == b.len() || last_start == start {
        i
    } else {
        last_start
    }
}

/// Iterator over the pre-tokenizer pieces of `text`; the pieces concatenate back to `text`.
pub(crate) fn pieces(text: &str) -> Pieces<'_> {
    Pieces { text, pos: 0 }
}

pub(crate) struct Pieces<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        self.pos = piece_end(self.text, start);
        Some(&self.text[start..self.pos])
    }
}

/// Whether the pieces of `text` are those of `text[..p]` followed by those of `text[p..]`, for
/// a `p` that this says yes to: `text[p]` is an ASCII whitespace byte and the character before it
/// is not whitespace.
///
/// Why: no piece holds a non-space character and a later whitespace character (only the optional
/// single space that *starts* a letter, number or "other" piece is whitespace inside such a piece;
/// a contraction is an apostrophe and letters), so the piece holding the character before `p`
/// ends at `p` in both texts — its run stops at the whitespace, or at the end of `text[..p]`;
/// a contraction test that would read past `p` sees whitespace, which is no contraction letter,
/// exactly as it sees the end of the shorter text. Every earlier piece looked at most one
/// character past its own end, i.e. not beyond `p - 1`. From `p` on the scanner starts afresh in
/// both texts, and what a piece is depends only on the text from its start.
pub(crate) fn is_safe_split(text: &str, p: usize) -> bool {
    let b = text.as_bytes();
    if p == 0 || p >= b.len() || BYTE_CLASSES[b[p] as usize] != SPACE {
        return false;
    }
    match BYTE_CLASSES[b[p - 1] as usize] {
        NON_ASCII => text[..p].chars().next_back().is_some_and(|c| !is_regex_space(c)),
        c => c != SPACE,
    }
}

/// The last [`is_safe_split`] point of `text`.
pub(crate) fn last_safe_split(text: &str) -> Option<usize> {
    (1..text.len()).rev().find(|&p| is_safe_split(text, p))
}

/// The first [`is_safe_split`] point at or after `from`.
pub(crate) fn next_safe_split(text: &str, from: usize) -> Option<usize> {
    (from.max(1)..text.len()).find(|&p| is_safe_split(text, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        pieces(s).collect()
    }

    #[test]
    fn space_set_is_white_space_property() {
        for cp in 0..0x11_0000u32 {
            if let Some(c) = char::from_u32(cp) {
                assert_eq!(is_regex_space(c), c.is_whitespace(), "U+{cp:04X}");
            }
        }
        for c in ['\u{1C}', '\u{1D}', '\u{1E}', '\u{1F}', '\u{200B}', '\u{FEFF}'] {
            assert_eq!(classify(c), Class::Other);
        }
    }

    #[test]
    fn newer_unicode_table_is_sorted_and_unassigned() {
        for w in NEWER_UNICODE.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0);
        }
        for &(lo, hi, _) in NEWER_UNICODE {
            for cp in lo..=hi {
                let c = char::from_u32(cp).unwrap();
                assert_eq!(get_general_category(c), GeneralCategory::Unassigned);
            }
        }
    }

    #[test]
    fn words_and_spaces() {
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(split("a  b"), ["a", " ", " b"]);
        assert_eq!(split("a   b"), ["a", "  ", " b"]);
        assert_eq!(split("a\n b"), ["a", "\n", " b"]);
        assert_eq!(split("a \nb"), ["a", " ", "\n", "b"]);
        assert_eq!(split("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(split("a\n\n\nb"), ["a", "\n\n", "\n", "b"]);
        assert_eq!(split("  \n"), ["  \n"]);
        assert_eq!(split("a  "), ["a", "  "]);
        assert_eq!(split(" "), [" "]);
        assert_eq!(split(""), Vec::<&str>::new());
        assert_eq!(split("\tx"), ["\t", "x"]);
        assert_eq!(split(" \tx"), [" ", "\t", "x"]);
        assert_eq!(split("line\r\nnext\r\n"), ["line", "\r", "\n", "next", "\r\n"]);
        assert_eq!(split("a \u{A0}b"), ["a", " ", "\u{A0}", "b"]);
        assert_eq!(split("a\u{A0} b"), ["a", "\u{A0}", " b"]);
        assert_eq!(split("x\u{3000}\u{3000}y"), ["x", "\u{3000}", "\u{3000}", "y"]);
    }

    #[test]
    fn contractions() {
        assert_eq!(split("don't"), ["don", "'t"]);
        assert_eq!(
            split("we're we've I'm you'll he'd it's"),
            ["we", "'re", " we", "'ve", " I", "'m", " you", "'ll", " he", "'d", " it", "'s"]
        );
        assert_eq!(split("IT'S"), ["IT", "'", "S"]);
        assert_eq!(split("'sup"), ["'s", "up"]);
        assert_eq!(split("'ll've"), ["'ll", "'ve"]);
        assert_eq!(split("''s"), ["''", "s"]);
        assert_eq!(split(" 's"), [" '", "s"]);
        assert_eq!(split("!'s"), ["!'", "s"]);
        assert_eq!(split("'r"), ["'", "r"]);
        assert_eq!(split("'"), ["'"]);
    }

    #[test]
    fn digits_and_punctuation() {
        assert_eq!(split("abc123 456,7"), ["abc", "123", " 456", ",", "7"]);
        assert_eq!(split("x²³ ½"), ["x", "²³", " ½"]);
        assert_eq!(split("Ⅻ٣"), ["Ⅻ٣"]);
        assert_eq!(split("hi!!! ...ok"), ["hi", "!!!", " ...", "ok"]);
        assert_eq!(split("$5.00"), ["$", "5", ".", "00"]);
        assert_eq!(split("a_b"), ["a", "_", "b"]);
    }

    #[test]
    fn unicode_letters_marks_emoji() {
        assert_eq!(split("naïve café"), ["naïve", " café"]);
        // Combining acute accent is Mn: it is not a letter.
        assert_eq!(split("cafe\u{301} x"), ["cafe", "\u{301}", " x"]);
        assert_eq!(split(" \u{301}e"), [" \u{301}", "e"]);
        assert_eq!(split("日本語テキスト"), ["日本語テキスト"]);
        assert_eq!(split("Привет мир"), ["Привет", " мир"]);
        assert_eq!(split("👩\u{200D}💻 ok"), ["👩\u{200D}💻", " ok"]);
        assert_eq!(split("a👍🏽b"), ["a", "👍🏽", "b"]);
        assert_eq!(split("ǅx"), ["ǅx"]);
        assert_eq!(split("\u{1C}\u{1D}ab"), ["\u{1C}\u{1D}", "ab"]);
        // Unassigned in Unicode 16, a letter in newer data (as Python `regex` sees it).
        assert_eq!(split("s\u{3D06A}eb"), ["s\u{3D06A}eb"]);
        assert_eq!(split("s\u{3D06A}\u{E0080}"), ["s\u{3D06A}", "\u{E0080}"]);
    }

    #[test]
    fn long_runs_are_linear() {
        let spaces = " ".repeat(100_000);
        assert_eq!(split(&spaces), [spaces.as_str()]);
        let text = format!("{spaces}x");
        let p = split(&text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1], " x");
        let letters = "é".repeat(500_000);
        assert_eq!(split(&letters).len(), 1);
    }
}
