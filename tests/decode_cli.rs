//! `quill decode` and `--skip-special-tokens`: ids back to text as transformers'
//! `tokenizer.decode(ids, skip_special_tokens=...)` gives it.
mod common;

use std::io::Write;
use std::process::Stdio;

use common::{hub, quill, quill_command};
use serde_json::Value;

const PROMPT: &str = "The Manhattan bridge";

fn decode_stdin(m: &str, input: &str, extra: &[&str]) -> (i32, String, String) {
    let mut child = quill_command()
        .args(["decode", "-m", m, "--json"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn decode_gives_the_text_back() {
    let m = hub();
    let m = m.to_str().unwrap();
    let (code, out, err) = quill(&["decode", "-m", m, "--ids", "15496,995,50256"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Hello world<|endoftext|>\n");
    let (_, out, _) = quill(&["decode", "-m", m, "--ids", "15496,995,50256", "--skip-special-tokens"]);
    assert_eq!(out, "Hello world\n");
    // What tokenize --json prints decodes back; a bare list too.
    let (_, ids, _) = quill(&["tokenize", "-m", m, "--json", "It was the best of times"]);
    assert_eq!(decode_stdin(m, &ids, &[]).1, "It was the best of times\n");
    assert_eq!(decode_stdin(m, "[50256, 15496]", &["--skip-special-tokens"]).1, "Hello\n");
    // Half a character decodes as transformers' errors="replace" does.
    let (_, euro, _) = quill(&["tokenize", "-m", m, "--json", "🤗"]);
    let first = serde_json::from_str::<Value>(&euro).unwrap()["ids"][0].clone();
    assert_eq!(decode_stdin(m, &format!("[{first}]"), &[]).1, "\u{FFFD}\n");
    // Bad input names what is wrong.
    for (input, needle) in [("[1, -2]", "-2 is not a token id"), ("{\"x\": 1}", "\"ids\""), ("nope", "not valid JSON")]
    {
        let (code, _, err) = decode_stdin(m, input, &[]);
        assert_eq!(code, 1, "{input}");
        assert!(err.contains(needle), "{input}: {err}");
    }
    let (code, _, err) = quill(&["decode", "-m", m, "--ids", "99999"]);
    assert_eq!(code, 1);
    assert!(err.contains("token id 99999"), "{err}");
}

/// additional_special_tokens count as special, and generate's --skip-special-tokens leaves them
/// out of the text (the ids keep them), as decode(..., skip_special_tokens=True).
#[test]
fn skip_special_tokens_leaves_special_tokens_out_of_generated_text() {
    let m = hub();
    let greedy = |m: &str, extra: &[&str]| {
        let mut args = vec!["generate", "-m", m, PROMPT, "-n", "12", "--json"];
        args.extend(extra);
        let (code, out, err) = quill(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(out.trim()).unwrap()
    };
    let plain = greedy(m.to_str().unwrap(), &[]);
    let tokenizer = quill::Tokenizer::from_model_dir(&m).unwrap();
    // A generated token whose vocabulary string is its text (no byte-level marks).
    let (special, content) = plain["new_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .map(|id| (id, tokenizer.id_to_token(id).unwrap().to_string()))
        .find(|(_, t)| t.chars().all(|c| c.is_ascii_alphanumeric()))
        .expect("a plain ASCII token among the greedy ones");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(m.join(f), dir.path().join(f)).unwrap();
    }
    let config = serde_json::json!({ "additional_special_tokens": [content] });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let with_special = quill::Tokenizer::from_model_dir(dir.path()).unwrap();
    assert!(with_special.is_special_id(special) && with_special.is_special_id(50256));
    assert!(!tokenizer.is_special_id(special));

    let d = dir.path().to_str().unwrap();
    let kept = greedy(d, &[]);
    let skipped = greedy(d, &["--skip-special-tokens"]);
    assert_eq!(kept["new_ids"], plain["new_ids"]);
    assert_eq!(skipped["new_ids"], plain["new_ids"], "the ids keep the special tokens");
    let kept_text = kept["text"].as_str().unwrap();
    assert!(kept_text.contains(&content));
    assert_eq!(skipped["text"].as_str().unwrap(), kept_text.replace(&content, ""));
    // The streamed text too.
    let (_, out, _) = quill(&["generate", "-m", d, PROMPT, "-n", "12", "--skip-special-tokens"]);
    assert_eq!(out.trim_end(), format!("{PROMPT}{}", skipped["text"].as_str().unwrap()).trim_end());
}
