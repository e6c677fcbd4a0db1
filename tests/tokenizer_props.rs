//! Properties of the GPT-2 tokenizer with the real GPT-2 files, long-input checks, and the
//! goldens made by transformers' GPT2Tokenizer (tests/data/goldens/tokenizer.json).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use quill::tokenizer::{pre_tokenize, StreamDecoder, Tokenizer};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

fn gpt2() -> &'static Tokenizer {
    static TOK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_vocab_merges(&data("gpt2-tokenizer/encoder.json"), &data("gpt2-tokenizer/vocab.bpe"))
            .expect("load GPT-2 tokenizer")
    })
}

/// Text mixing the characters the pre-tokenizer treats differently.
fn tricky_text() -> impl Strategy<Value = String> {
    let parts = prop_oneof![
        Just("'s".to_string()),
        Just("'ll".to_string()),
        Just("'".to_string()),
        Just("<|endoftext|>".to_string()),
        Just("\r\n".to_string()),
        "[ \t\n\r\u{b}\u{c}\u{1c}-\u{1f}\u{85}\u{a0}\u{2000}\u{3000}]{1,4}",
        "[a-zA-Z0-9]{1,6}",
        "[!-/:-@\\[-`{-~]{1,3}",
        "[\u{300}-\u{36f}\u{200d}\u{fe0f}]",
        "[éßΩЖ日本語🤗👩💻½²٣Ⅻ]{1,3}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(parts, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_inverts_encode(s in any::<String>()) {
        let t = gpt2();
        prop_assert_eq!(t.decode(&t.encode(&s)).unwrap(), s);
    }

    #[test]
    fn decode_inverts_encode_tricky(s in tricky_text()) {
        let t = gpt2();
        prop_assert_eq!(t.decode(&t.encode(&s)).unwrap(), s);
    }

    #[test]
    fn pieces_concatenate_to_input(s in tricky_text()) {
        let pieces: Vec<&str> = pre_tokenize(&s).collect();
        prop_assert!(pieces.iter().all(|p| !p.is_empty()));
        prop_assert_eq!(pieces.concat(), s);
    }

    #[test]
    fn pieces_concatenate_to_any_input(s in any::<String>()) {
        prop_assert_eq!(pre_tokenize(&s).collect::<String>(), s);
    }

    #[test]
    fn stream_decoder_matches_decode(s in tricky_text()) {
        let t = gpt2();
        let ids = t.encode(&s);
        let mut dec = StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&dec.push(t, id).unwrap());
            prop_assert!(dec.pending_len() <= 3);
        }
        out.push_str(&dec.finish());
        prop_assert_eq!(out, s);
    }

    #[test]
    fn stream_decoder_matches_decode_on_any_ids(ids in prop::collection::vec(0u32..50257, 0..32)) {
        let t = gpt2();
        let mut dec = StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&dec.push(t, id).unwrap());
        }
        out.push_str(&dec.finish());
        prop_assert_eq!(out, t.decode(&ids).unwrap());
    }
}

#[test]
fn long_single_char_line_is_not_quadratic() {
    let t = gpt2();
    // 200 KB of one letter: one pre-tokenizer piece. "a"×30 → 7×24794 ("aaaa") + 7252 ("aa").
    let text = "a".repeat(200_000);
    let ids = t.encode(&text);
    assert_eq!(ids.len(), 50_000);
    assert!(ids.iter().all(|&id| id == 24794));
    assert_eq!(t.decode(&ids).unwrap(), text);

    let text = "a".repeat(200_002);
    let ids = t.encode(&text);
    assert_eq!(ids.len(), 50_001);
    assert_eq!(*ids.last().unwrap(), 7252);
}

#[test]
fn hundred_thousand_spaces() {
    let t = gpt2();
    let spaces = " ".repeat(100_000);
    assert_eq!(t.encode(&spaces), vec![220; 100_000]);
    let text = format!("{spaces}hello");
    let ids = t.encode(&text);
    assert_eq!(ids.len(), 100_000);
    assert_eq!(ids[99_999], 23748); // " hello"
    assert_eq!(t.decode(&ids).unwrap(), text);
    let newlines = "\n".repeat(100_001);
    let ids = t.encode(&newlines);
    assert_eq!(ids.len(), 50_001); // 628 = "\n\n"
    assert!(ids[..50_000].iter().all(|&id| id == 628));
}

#[test]
fn model_dirs_load_the_same_tokenizer() {
    let t = gpt2();
    let text = "Hello world<|endoftext|> It's 2024 — naïve café 🤗\n\n";
    for dir in ["tiny-gpt2-hub", "tiny-gpt2-saved"] {
        let path = data(dir);
        if !path.is_dir() {
            eprintln!("note: {} is absent; skipped", path.display());
            continue;
        }
        let other = Tokenizer::from_model_dir(&path).unwrap();
        assert_eq!(other.vocab_size(), 50257, "{dir}");
        assert_eq!(other.eos_id(), Some(50256), "{dir}");
        assert_eq!(other.pad_id(), None, "{dir}");
        assert_eq!(other.encode(text), t.encode(text), "{dir}");
    }
}

/// Checks tests/data/goldens/tokenizer.json (or the file named by QUILL_TOKENIZER_GOLDENS):
/// `{"cases":[{"text":..., "ids":[...]}]}`, optionally with per-case `add_prefix_space`,
/// `split_special_tokens` and `pieces` (the pre-tokenizer output).
#[test]
fn goldens_from_transformers() {
    let path = std::env::var_os("QUILL_TOKENIZER_GOLDENS")
        .map(PathBuf::from)
        .unwrap_or_else(|| data("goldens/tokenizer.json"));
    if !path.is_file() {
        eprintln!("note: {} is absent; tokenizer goldens skipped", path.display());
        return;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("goldens are JSON");
    let cases = json["cases"].as_array().expect("goldens have a \"cases\" array");
    let mut failures = Vec::new();
    let mut tok = gpt2().clone();
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().expect("case.text is a string");
        let opts = tok.options_mut();
        opts.add_prefix_space = case["add_prefix_space"].as_bool().unwrap_or(false);
        opts.split_special_tokens = case["split_special_tokens"].as_bool().unwrap_or(false);
        let want: Vec<u32> = case["ids"]
            .as_array()
            .expect("case.ids is an array")
            .iter()
            .map(|v| v.as_u64().expect("ids are integers") as u32)
            .collect();
        let got = tok.encode(text);
        if got != want {
            failures.push(format!("case {i} {text:?}:\n  expected {want:?}\n  got      {got:?}"));
        }
        if let Some(pieces) = case["pieces"].as_array() {
            let want: Vec<&str> = pieces.iter().map(|p| p.as_str().unwrap()).collect();
            let got: Vec<&str> = pre_tokenize(text).collect();
            if got != want {
                failures.push(format!("case {i} {text:?} pieces:\n  expected {want:?}\n  got      {got:?}"));
            }
        }
        // Special tokens decode to their literal text, so the expected ids decode to the input.
        let back = tok.decode(&want).unwrap();
        let prefix = if tok.options().add_prefix_space { " " } else { "" };
        if back != format!("{prefix}{text}") {
            failures.push(format!("case {i} {text:?}: decoding the expected ids gave {back:?}"));
        }
    }
    eprintln!("{} tokenizer golden cases from {}, {} failures", cases.len(), path.display(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
