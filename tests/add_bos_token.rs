//! `add_bos_token` in tokenizer_config.json: transformers' `GPT2Tokenizer` then puts the bos id
//! first, and every command that encodes text sees it (the library's encode included).
mod common;

use common::{hub, quill};
use serde_json::Value;

/// A copy of the tiny hub model whose tokenizer_config.json says `add_bos_token`.
fn model_with_bos() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(hub().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"add_bos_token": true}"#).unwrap();
    dir
}

fn json(args: &[&str]) -> Value {
    let (code, out, err) = quill(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(out.lines().next().unwrap()).unwrap()
}

#[test]
fn the_library_puts_bos_first() {
    let dir = model_with_bos();
    let plain = quill::Tokenizer::from_model_dir(&hub()).unwrap();
    let with_bos = quill::Tokenizer::from_model_dir(dir.path()).unwrap();
    assert!(with_bos.options().add_bos_token && !plain.options().add_bos_token);
    let text = "Hello world, and again.";
    let mut want = vec![50256];
    want.extend(plain.encode(text));
    assert_eq!(with_bos.encode(text), want);
    assert_eq!(with_bos.encode_parallel_chunks(&text.repeat(50), 16)[0], 50256);
    assert_eq!(with_bos.encode_parallel_chunks(&text.repeat(50), 16)[1..], plain.encode(&text.repeat(50)));
    assert_eq!(with_bos.encode(""), [50256], "as GPT2Tokenizer: bos even for empty text");
}

#[test]
fn every_command_that_encodes_sees_bos() {
    let dir = model_with_bos();
    let (m, plain) = (dir.path().to_str().unwrap(), hub());
    let plain = plain.to_str().unwrap();
    let text = "The Manhattan bridge";
    let ids = |m: &str| json(&["tokenize", "-m", m, "--json", text])["ids"].clone();
    let (with, without) = (ids(m), ids(plain));
    assert_eq!(with[0], 50256);
    assert_eq!(with.as_array().unwrap()[1..], without.as_array().unwrap()[..]);

    let logits = |m: &str| json(&["logits", "-m", m, "--prompt", text, "--json"])["ids"].clone();
    assert_eq!(logits(m), with);
    let generated = json(&["generate", "-m", m, text, "-n", "2", "--json"]);
    assert_eq!(generated["prompt_ids"], with);
    let tokens = |m: &str| json(&["embed", "-m", m, "--json", text])["tokens"].as_u64().unwrap();
    assert_eq!(tokens(m), tokens(plain) + 1);

    let file = dir.path().join("text.txt");
    std::fs::write(&file, "It was the best of times, it was the worst of times.").unwrap();
    let scored =
        |m: &str| json(&["score", "-m", m, file.to_str().unwrap(), "--json"])["tokens_scored"].as_u64().unwrap();
    assert_eq!(scored(m), scored(plain) + 1, "the first text token is scored, predicted from bos");
}
