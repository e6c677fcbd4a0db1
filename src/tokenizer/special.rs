//! Added tokens (`<|endoftext|>` and friends): splitting text around them before
//! pre-tokenization, as transformers' slow tokenizers do with their `tokens_trie`.

/// Python's `str.isspace()` (used by `str.strip()`); unlike `regex`'s `\s` it includes
/// U+001C–U+001F.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1C}'..='\u{1F}')
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddedToken {
    pub content: String,
    pub id: u32,
    pub special: bool,
    /// Strip whitespace on the left of the token (from the text before it).
    pub lstrip: bool,
    /// Strip whitespace on the right of the token (from the text after it).
    pub rstrip: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Text(&'a str),
    Added(u32),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct AddedTokens {
    tokens: Vec<AddedToken>,
    /// For each first byte, indices into `tokens`, longest content first.
    by_first_byte: Vec<Vec<usize>>,
    /// The first byte of every token when they all share one ASCII first byte (GPT-2's `<`):
    /// then the text is searched for it with `str::find`, which skips a word at a time.
    only_first: Option<char>,
}

impl AddedTokens {
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether cutting a text at a whitespace character cannot change how it splits: no token
    /// holds whitespace (so none spans the cut) and none strips whitespace next to it.
    pub(crate) fn cut_at_whitespace_is_safe(&self) -> bool {
        self.tokens.iter().all(|t| !t.lstrip && !t.rstrip && !t.content.contains(char::is_whitespace))
    }

    pub(crate) fn get(&self, content: &str) -> Option<&AddedToken> {
        self.tokens.iter().find(|t| t.content == content)
    }

    /// Adds or replaces (same content) a token. Empty contents are ignored.
    pub(crate) fn insert(&mut self, token: AddedToken) {
        if token.content.is_empty() {
            return;
        }
        match self.tokens.iter_mut().find(|t| t.content == token.content) {
            Some(t) => *t = token,
            None => self.tokens.push(token),
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        let mut index = vec![Vec::new(); 256];
        for (i, t) in self.tokens.iter().enumerate() {
            index[t.content.as_bytes()[0] as usize].push(i);
        }
        for list in &mut index {
            list.sort_by_key(|&i| std::cmp::Reverse(self.tokens[i].content.len()));
        }
        let firsts: Vec<usize> = (0..256).filter(|&b| !index[b].is_empty()).collect();
        self.only_first = match firsts[..] {
            [b] if b < 0x80 => Some(char::from(b as u8)),
            _ => None,
        };
        self.by_first_byte = index;
    }

    /// The first position at or after `i` where an added token may start.
    fn next_candidate(&self, text: &str, i: usize) -> Option<usize> {
        match self.only_first {
            // `i` is a char boundary: it is 0 or just after a match, or the position after an
            // ASCII byte.
            Some(c) => text[i..].find(c).map(|k| i + k),
            None => {
                text.as_bytes()[i..].iter().position(|&b| !self.by_first_byte[b as usize].is_empty()).map(|k| i + k)
            }
        }
    }

    /// Splits `text` at added tokens: leftmost match first, longest token at that position.
    /// Whitespace next to tokens with `lstrip`/`rstrip` is removed; empty texts are dropped.
    pub(crate) fn split<'a>(&self, text: &'a str) -> Vec<Segment<'a>> {
        let mut segs = Vec::new();
        if self.tokens.is_empty() {
            if !text.is_empty() {
                segs.push(Segment::Text(text));
            }
            return segs;
        }
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut i = 0;
        // rstrip of the previous token applies to the text that follows it.
        let mut strip_next = false;
        while i < bytes.len() {
            let Some(next) = self.next_candidate(text, i) else { break };
            i = next;
            let found = self.by_first_byte[bytes[i] as usize]
                .iter()
                .map(|&k| &self.tokens[k])
                .find(|t| bytes[i..].starts_with(t.content.as_bytes()));
            let Some(tok) = found else {
                i += 1;
                continue;
            };
            // A match starts with a UTF-8 lead byte, so `i` is a char boundary.
            let mut before = &text[start..i];
            if strip_next {
                before = before.trim_start_matches(py_isspace);
            }
            if tok.lstrip {
                before = before.trim_end_matches(py_isspace);
            }
            if !before.is_empty() {
                segs.push(Segment::Text(before));
            }
            segs.push(Segment::Added(tok.id));
            strip_next = tok.rstrip;
            i += tok.content.len();
            start = i;
        }
        let mut rest = &text[start..];
        if strip_next {
            rest = rest.trim_start_matches(py_isspace);
        }
        if !rest.is_empty() {
            segs.push(Segment::Text(rest));
        }
        segs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(content: &str, id: u32, lstrip: bool, rstrip: bool) -> AddedToken {
        AddedToken { content: content.into(), id, special: true, lstrip, rstrip }
    }

    #[test]
    fn splits_leftmost_longest() {
        let mut a = AddedTokens::default();
        a.insert(tok("<|endoftext|>", 50256, false, false));
        a.insert(tok("<|end", 7, false, false));
        use Segment::*;
        assert_eq!(
            a.split("x <|endoftext|><|endoftext|> y<|end"),
            [Text("x "), Added(50256), Added(50256), Text(" y"), Added(7)]
        );
        assert_eq!(a.split("<|endoftext|>"), [Added(50256)]);
        assert_eq!(a.split(""), []);
        assert_eq!(a.split("é<|end|>"), [Text("é"), Added(7), Text("|>")]);
    }

    #[test]
    fn strips_around_tokens() {
        let mut a = AddedTokens::default();
        a.insert(tok("<mask>", 4, true, false));
        a.insert(tok("<r>", 5, false, true));
        use Segment::*;
        assert_eq!(a.split("a  <mask> b"), [Text("a"), Added(4), Text(" b")]);
        assert_eq!(a.split("a <r> \u{1C} b"), [Text("a "), Added(5), Text("b")]);
        assert_eq!(a.split("<r>   "), [Added(5)]);
    }
}
