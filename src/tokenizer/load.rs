//! Parsing of tokenizer files: vocab.json, merges.txt, tokenizer.json and the transformers
//! config files of a model folder. Every error names the file and the field or line.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use super::fast_hash::Seeded;

use crate::error::{Error, Result};

/// Largest accepted token id + 1 (keeps a hostile file from making us allocate gigabytes).
pub(crate) const MAX_VOCAB: u64 = 1 << 24;

/// Where a merge came from, for error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MergeLoc {
    /// 1-based line of a merges.txt file.
    Line(usize),
    /// Index in tokenizer.json's `model.merges`.
    Index(usize),
}

#[derive(Clone, Debug)]
pub(crate) struct AddedSpec {
    pub content: String,
    pub id: Option<u32>,
    pub special: bool,
    pub lstrip: bool,
    pub rstrip: bool,
}

/// What a tokenizer file provides, before validation against each other.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub vocab: Vec<(String, u32)>,
    pub merges: Vec<(String, String, MergeLoc)>,
    pub added: Vec<AddedSpec>,
    pub add_prefix_space: Option<bool>,
}

fn file_label(origin: &Path) -> String {
    origin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| origin.display().to_string())
}

pub(crate) fn describe_merge(origin: &Path, loc: MergeLoc) -> String {
    match loc {
        MergeLoc::Line(n) => format!("{} line {n}", file_label(origin)),
        MergeLoc::Index(i) => format!("model.merges[{i}]"),
    }
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

pub(crate) fn parse_json_bytes(bytes: &[u8], origin: &Path) -> Result<Value> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::bad_file(origin, "file is empty (expected JSON)"));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::bad_file(origin, format!("not valid JSON: {e}")))
}

fn not_a_vocab(origin: &Path, field: &str) -> Error {
    Error::bad_file(origin, format!("{field}: expected a JSON object mapping token strings to integer ids"))
}

/// A JSON object of token → id (tokenizer.json's `model.vocab`, added_tokens.json).
pub(crate) fn parse_vocab(value: &Value, origin: &Path, field: &str) -> Result<Vec<(String, u32)>> {
    let Some(map) = value.as_object() else {
        return Err(not_a_vocab(origin, field));
    };
    check_vocab(map.iter(), map.len(), origin, field)
}

/// vocab.json's bytes straight into token → id pairs, without a serde_json `Value`: that builds
/// an ordered map of every token first, a fifth of loading GPT-2's tokenizer. A token listed
/// twice keeps its last id, as Python's `json` (and that map) would.
pub(crate) fn parse_vocab_bytes(bytes: &[u8], origin: &Path, field: &str) -> Result<Vec<(String, u32)>> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Vec<(String, Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(pair) = map.next_entry::<String, Value>()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    // Anything but an object (or nothing) takes the `Value` route, for the same errors.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return parse_vocab(&parse_json_bytes(bytes, origin)?, origin, field);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut pairs = serde::Deserializer::deserialize_map(&mut de, Pairs)
        .and_then(|pairs| de.end().map(|()| pairs))
        .map_err(|e| Error::bad_file(origin, format!("not valid JSON: {e}")))?;
    // Walking back, a token's first sighting is its last entry: the one kept.
    let mut seen = HashSet::with_capacity_and_hasher(pairs.len(), Seeded::default());
    let last: Vec<bool> = pairs.iter().rev().map(|(t, _)| seen.insert(t.as_str())).collect();
    drop(seen);
    let mut keep = last.into_iter().rev();
    pairs.retain(|_| keep.next().unwrap_or(false));
    check_vocab(pairs.iter().map(|(t, v)| (t, v)), pairs.len(), origin, field)
}

/// Token → id pairs checked: ids integers in `0..MAX_VOCAB`, tokens not empty, at least one.
fn check_vocab<'a>(
    pairs: impl Iterator<Item = (&'a String, &'a Value)>,
    len: usize,
    origin: &Path,
    field: &str,
) -> Result<Vec<(String, u32)>> {
    if len == 0 {
        return Err(Error::bad_file(origin, format!("{field}: the vocabulary is empty")));
    }
    let mut vocab = Vec::with_capacity(len);
    for (token, v) in pairs {
        let id = v.as_u64().filter(|&id| id < MAX_VOCAB).ok_or_else(|| {
            Error::bad_file(
                origin,
                format!("{field}: token {}: id {v} is not an integer in 0..{MAX_VOCAB}", short(token)),
            )
        })?;
        if token.is_empty() {
            return Err(Error::bad_file(origin, format!("{field}: empty token string (id {id})")));
        }
        vocab.push((token.clone(), id as u32));
    }
    Ok(vocab)
}

/// merges.txt: an optional `#version` line, then one `left right` pair per line.
pub(crate) fn parse_merges_txt(bytes: &[u8], origin: &Path) -> Result<Vec<(String, String, MergeLoc)>> {
    if bytes.is_empty() {
        return Err(Error::bad_file(
            origin,
            "file is empty (expected a \"#version\" line, then one merge \"left right\" per line)",
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::bad_file(origin, format!("not valid UTF-8 at byte {}", e.valid_up_to())))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut merges = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with("#version") || line.trim_ascii().is_empty() {
            continue;
        }
        let mut parts = line.split_ascii_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push((a.to_owned(), b.to_owned(), MergeLoc::Line(i + 1))),
            _ => {
                return Err(Error::bad_file(
                    origin,
                    format!(
                        "{} line {}: expected two tokens separated by a space, found {}",
                        file_label(origin),
                        i + 1,
                        short(line)
                    ),
                ))
            }
        }
    }
    Ok(merges)
}

/// vocab.json + merges.txt contents.
pub(crate) fn parts_from_vocab_merges(
    vocab: &[u8],
    vocab_origin: &Path,
    merges: &[u8],
    merges_origin: &Path,
) -> Result<Parts> {
    Ok(Parts {
        vocab: parse_vocab_bytes(vocab, vocab_origin, &file_label(vocab_origin))?,
        merges: parse_merges_txt(merges, merges_origin)?,
        added: Vec::new(),
        add_prefix_space: None,
    })
}

fn get_bool(obj: &Value, key: &str, origin: &Path, field: &str) -> Result<Option<bool>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(Error::bad_file(origin, format!("{field}.{key}: expected true or false, found {v}"))),
    }
}

/// One entry of tokenizer.json's `added_tokens` or tokenizer_config.json's
/// `added_tokens_decoder` (where the id is the key).
pub(crate) fn parse_added_token(v: &Value, id: Option<u32>, origin: &Path, field: &str) -> Result<AddedSpec> {
    let content = v
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_file(origin, format!("{field}.content: missing or not a string")))?;
    let id = match id {
        Some(id) => Some(id),
        None => Some(v.get("id").and_then(Value::as_u64).filter(|&id| id < MAX_VOCAB).ok_or_else(|| {
            Error::bad_file(origin, format!("{field}.id: missing or not an integer in 0..{MAX_VOCAB}"))
        })? as u32),
    };
    Ok(AddedSpec {
        content: content.to_owned(),
        id,
        special: get_bool(v, "special", origin, field)?.unwrap_or(true),
        lstrip: get_bool(v, "lstrip", origin, field)?.unwrap_or(false),
        rstrip: get_bool(v, "rstrip", origin, field)?.unwrap_or(false),
    })
}

fn find_byte_level_prefix_space(pre: &Value) -> Option<bool> {
    match pre.get("type").and_then(Value::as_str) {
        Some("ByteLevel") => pre.get("add_prefix_space").and_then(Value::as_bool),
        Some("Sequence") => {
            pre.get("pretokenizers").and_then(Value::as_array)?.iter().find_map(find_byte_level_prefix_space)
        }
        _ => None,
    }
}

/// Hugging Face tokenizers' tokenizer.json (BPE model only).
pub(crate) fn parts_from_tokenizer_json(bytes: &[u8], origin: &Path) -> Result<Parts> {
    let root = parse_json_bytes(bytes, origin)?;
    let model = root
        .get("model")
        .filter(|m| m.is_object())
        .ok_or_else(|| Error::bad_file(origin, "missing object field \"model\""))?;
    if let Some(t) = model.get("type") {
        if t.as_str() != Some("BPE") {
            return Err(Error::bad_file(origin, format!("model.type is {t}; only \"BPE\" is supported")));
        }
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if let Some(s) = model.get(key).and_then(Value::as_str) {
            if !s.is_empty() {
                return Err(Error::bad_file(
                    origin,
                    format!("model.{key} is {s:?}; only GPT-2-style byte-level BPE is supported"),
                ));
            }
        }
    }
    let vocab_value = model.get("vocab").ok_or_else(|| Error::bad_file(origin, "missing field \"model.vocab\""))?;
    let vocab = parse_vocab(vocab_value, origin, "model.vocab")?;
    let merges_value = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::bad_file(origin, "missing array field \"model.merges\""))?;
    let mut merges = Vec::with_capacity(merges_value.len());
    for (i, m) in merges_value.iter().enumerate() {
        let pair = match m {
            Value::String(s) => {
                let mut it = s.split(' ');
                match (it.next(), it.next(), it.next()) {
                    (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => Some((a, b)),
                    _ => None,
                }
            }
            Value::Array(a) if a.len() == 2 => match (a[0].as_str(), a[1].as_str()) {
                (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => Some((x, y)),
                _ => None,
            },
            _ => None,
        };
        let (a, b) = pair.ok_or_else(|| {
            Error::bad_file(
                origin,
                format!("model.merges[{i}]: expected \"left right\" or [\"left\", \"right\"], found {m}"),
            )
        })?;
        merges.push((a.to_owned(), b.to_owned(), MergeLoc::Index(i)));
    }
    let mut added = Vec::new();
    match root.get("added_tokens") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, t) in list.iter().enumerate() {
                added.push(parse_added_token(t, None, origin, &format!("added_tokens[{i}]"))?);
            }
        }
        Some(_) => return Err(Error::bad_file(origin, "added_tokens: expected an array")),
    }
    let add_prefix_space = root.get("pre_tokenizer").and_then(find_byte_level_prefix_space);
    Ok(Parts { vocab, merges, added, add_prefix_space })
}

/// A special-token entry of tokenizer_config.json / special_tokens_map.json:
/// `"<|endoftext|>"`, `{"content": "<|endoftext|>", ...}`, or `null`.
/// Returns `Ok(None)` when the key is absent, `Ok(Some(None))` for an explicit null.
pub(crate) fn special_token_entry(obj: &Value, key: &str, origin: &Path) -> Result<Option<Option<AddedSpec>>> {
    special_token_value(obj.get(key), key, origin)
}

/// One special token's entry `v` (named `key` in errors): a string, an object with
/// `"content"`, or null; `None` when absent.
pub(crate) fn special_token_value(v: Option<&Value>, key: &str, origin: &Path) -> Result<Option<Option<AddedSpec>>> {
    let spec = |content: &str, v: Option<&Value>| -> Result<AddedSpec> {
        let flags = |k: &str| -> Result<bool> {
            match v {
                Some(v) => Ok(get_bool(v, k, origin, key)?.unwrap_or(false)),
                None => Ok(false),
            }
        };
        Ok(AddedSpec {
            content: content.to_owned(),
            id: None,
            special: true,
            lstrip: flags("lstrip")?,
            rstrip: flags("rstrip")?,
        })
    };
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(spec(s, None)?))),
        Some(v @ Value::Object(_)) => match v.get("content").and_then(Value::as_str) {
            Some(s) => Ok(Some(Some(spec(s, Some(v))?))),
            None => Err(Error::bad_file(origin, format!("{key}.content: missing or not a string"))),
        },
        Some(v) => Err(Error::bad_file(
            origin,
            format!("{key}: expected a string, an object with \"content\", or null; found {v}"),
        )),
    }
}

pub(crate) fn config_bool(obj: &Value, key: &str, origin: &Path) -> Result<Option<bool>> {
    get_bool(obj, key, origin, "config").map_err(|_| Error::bad_file(origin, format!("{key}: expected true or false")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_txt_errors_name_the_line() {
        let p = Path::new("/m/merges.txt");
        let err = parse_merges_txt(b"#version: 0.2\na b\nabc\n", p).unwrap_err().to_string();
        assert!(err.contains("merges.txt line 3: expected two tokens"), "{err}");
        let err = parse_merges_txt(b"", p).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = parse_merges_txt(b"a b\n\xFF", p).unwrap_err().to_string();
        assert!(err.contains("UTF-8"), "{err}");
        let ok = parse_merges_txt(b"#version: 0.2\r\na b\r\n\r\nc  d", p).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!((ok[1].0.as_str(), ok[1].1.as_str()), ("c", "d"));
    }

    #[test]
    fn vocab_errors() {
        let p = Path::new("/m/vocab.json");
        let bad = |s: &str| {
            let v = parse_json_bytes(s.as_bytes(), p).and_then(|v| parse_vocab(&v, p, "vocab.json"));
            let direct = parse_vocab_bytes(s.as_bytes(), p, "vocab.json").unwrap_err().to_string();
            let via_value = v.unwrap_err().to_string();
            assert_eq!(direct, via_value, "{s}");
            direct
        };
        assert!(bad("").contains("empty"));
        assert!(bad("[1,2]").contains("expected a JSON object"));
        assert!(bad("{\"a\": 1.5}").contains("\"a\": id 1.5 is not an integer"));
        assert!(bad("{\"a\": -1}").contains("not an integer"));
        assert!(bad("{\"a\": \"1\"}").contains("not an integer"));
        assert!(bad("{\"a\": 99999999999}").contains("not an integer"));
        assert!(bad("{}").contains("empty"));
        assert!(bad("{\"a\": 1").contains("not valid JSON"));
        assert!(bad("{\"a\": 1} x").contains("not valid JSON"));
        assert!(bad("\"a\"").contains("expected a JSON object"));
    }

    /// vocab.json parsed directly gives what the `Value` route gives, a repeated token's last
    /// id included.
    #[test]
    fn vocab_bytes_match_the_value_route() {
        let p = Path::new("/m/vocab.json");
        for s in ["{\"b\": 2, \"a\": 1, \"\\u0120c\": 0}", "{\"a\": 1, \"b\": 2, \"a\": 0, \"c\": 3, \"b\": 4}"] {
            let mut direct = parse_vocab_bytes(s.as_bytes(), p, "vocab.json").unwrap();
            let mut via_value = parse_vocab(&parse_json_bytes(s.as_bytes(), p).unwrap(), p, "vocab.json").unwrap();
            direct.sort();
            via_value.sort();
            assert_eq!(direct, via_value, "{s}");
        }
        let direct = parse_vocab_bytes(b"{\"a\": 1, \"b\": 2, \"a\": 0}", p, "vocab.json").unwrap();
        assert_eq!(direct, [("b".to_string(), 2), ("a".to_string(), 0)]);
    }
}
