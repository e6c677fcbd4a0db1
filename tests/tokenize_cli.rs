//! `quill tokenize`: `--file` streams the ids of the whole text (the library's `encode`), in
//! every output form, `--count`, and clear errors.

mod common;

use common::{hub, quill};
use serde_json::Value;

/// A text with multi-byte characters, added tokens and long lines, a few hundred KB.
fn mixed_text() -> String {
    let line = "It's 2024: naïve café, 日本語テキスト, Привет мир! 😀 x = f(y)<|endoftext|>  \t{\"k\": [1, 2]}\n";
    (0..3000).map(|i| format!("{i} {line}")).collect()
}

#[test]
fn a_file_gives_the_ids_of_the_whole_text_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.txt");
    let text = mixed_text();
    std::fs::write(&path, &text).unwrap();
    let want = quill::Tokenizer::from_model_dir(&hub()).unwrap().encode(&text);
    let (m, f) = (hub(), path.to_str().unwrap().to_string());
    let m = m.to_str().unwrap();
    for threads in ["1", "2"] {
        let (code, out, err) = quill(&["tokenize", "-m", m, "--file", &f, "--json", "--threads", threads]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(common::u32s(&v["ids"]), want, "--threads {threads}");
    }
    let (_, out, _) = quill(&["tokenize", "-m", m, "--file", &f]);
    let plain: Vec<u32> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(plain, want);
    assert!(out.ends_with('\n'));
    let (_, out, _) = quill(&["tokenize", "-m", m, "--file", &f, "--count"]);
    assert_eq!(out.trim(), want.len().to_string());
    let (_, out, _) = quill(&["tokenize", "-m", m, "--file", &f, "--count", "--json"]);
    assert_eq!(out.trim(), format!("{{\"count\":{}}}", want.len()));
    let (_, out, _) = quill(&["tokenize", "-m", m, "--file", &f, "--tokens"]);
    assert_eq!(out.lines().count(), want.len() + 1);
    assert_eq!(out.lines().last().unwrap(), format!("{} tokens", want.len()));
    let (_, out, _) = quill(&["tokenize", "-m", m, "--file", &f, "--tokens", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(common::u32s(&v["ids"]), want);
    assert_eq!(v["tokens"].as_array().unwrap().len(), want.len());
}

#[test]
fn an_empty_text_and_a_text_argument() {
    let m = hub();
    let m = m.to_str().unwrap();
    let (code, out, _) = quill(&["tokenize", "-m", m, "", "--json"]);
    assert_eq!((code, out.as_str()), (0, "{\"ids\":[]}\n"));
    let (_, out, _) = quill(&["tokenize", "-m", m, "", "--count"]);
    assert_eq!(out, "0\n");
    let (_, out, _) = quill(&["tokenize", "-m", m, "Hello world"]);
    assert_eq!(out, "15496 995\n");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    let mut bytes = "fine text ".repeat(1000).into_bytes();
    bytes.extend_from_slice(b"\xff more");
    std::fs::write(&path, bytes).unwrap();
    let m = hub();
    let m = m.to_str().unwrap();
    let (code, _, err) = quill(&["tokenize", "-m", m, "--file", path.to_str().unwrap(), "--count"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.txt") && err.contains("not valid UTF-8 (first bad byte at offset 10000)"), "{err}");
    let (code, _, err) = quill(&["tokenize", "-m", m, "x", "--count", "--tokens"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--count") && err.contains("--tokens"), "{err}");
}
