//! `quill score` on the command line: the JSON report against the transformers goldens,
//! --save-logits / --kl-base (a model against itself, against another model, against the f16 KV
//! cache), and bad input (usage errors exit 2, others 1, one clear line).

mod common;

use std::path::{Path, PathBuf};

use common::{data_dir, golden, quill};
use serde_json::Value;

fn text_file() -> String {
    data_dir().join("score-text.txt").to_str().unwrap().to_string()
}

fn model_dir(name: &str) -> String {
    data_dir().join(name).to_str().unwrap().to_string()
}

/// Runs `quill score` and parses its --json output; fails on a non-zero exit.
fn score_json(args: &[&str]) -> Value {
    let mut all = vec!["score"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, stdout, stderr) = quill(&all);
    assert_eq!(code, 0, "quill {all:?}: {stderr}");
    // The progress bar is drawn only on a terminal.
    assert!(stderr.is_empty(), "quill {all:?}: unexpected stderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn rel(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    (a - b).abs() / b.abs()
}

#[test]
fn json_report_matches_the_goldens() {
    let gold = golden("score.json");
    for (name, g) in gold["models"].as_object().unwrap() {
        for run in g["runs"].as_array().unwrap() {
            let mut args = vec!["-m".to_string(), model_dir(name), text_file()];
            for key in ["ctx", "stride"] {
                if let Some(n) = run[key].as_u64() {
                    args.extend([format!("--{key}"), n.to_string()]);
                }
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let got = score_json(&args);
            let tag = format!("{name} {args:?}");
            let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["bits_per_byte", "loss", "perplexity", "tokens_per_s", "tokens_scored"], "{tag}");
            assert_eq!(got["tokens_scored"], run["tokens_scored"], "{tag}");
            assert!(rel(&got["loss"], &run["loss"]) <= 1e-5, "{tag}: loss {} vs {}", got["loss"], run["loss"]);
            assert!(rel(&got["perplexity"], &run["perplexity"]) <= 2e-4, "{tag}: perplexity");
            assert!(rel(&got["bits_per_byte"], &run["bits_per_byte"]) <= 1e-5, "{tag}: bits per byte");
            assert!(got["tokens_per_s"].as_f64().unwrap() > 0.0, "{tag}");
        }
    }
}

#[test]
fn text_report_names_the_settings() {
    let (code, stdout, stderr) = quill(&["score", "-m", &model_dir("tiny-gpt2-hub"), &text_file(), "--ctx", "32"]);
    assert_eq!(code, 0, "{stderr}");
    for needle in
        ["tokens scored    908 of 909 (ctx 32, stride 16, 56 windows)", "perplexity", "bits per byte", "tokens/s"]
    {
        assert!(stdout.contains(needle), "lacks '{needle}': {stdout}");
    }
}

/// The first 700 bytes of the committed text (about 170 tokens), to keep the saved files small.
fn short_text() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.txt");
    let text = std::fs::read(data_dir().join("score-text.txt")).unwrap();
    std::fs::write(&path, &text[..700]).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

struct Saved {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn save(model: &str, extra: &[&str]) -> (Saved, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.lp");
    let mut args = vec!["-m", model, "--save-logits", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let report = score_json(&args);
    (Saved { _dir: dir, path }, report)
}

fn kl(model: &str, base: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["-m", model, "--kl-base", base.to_str().unwrap()];
    args.extend_from_slice(extra);
    score_json(&args)
}

#[test]
fn kl_of_a_model_against_itself_is_zero() {
    let (_dir, text) = short_text();
    for name in ["tiny-gpt2-hub", "tiny-gpt-neo"] {
        let m = model_dir(name);
        let extra = [text.as_str(), "--ctx", "32", "--stride", "16"];
        let (saved, base) = save(&m, &extra);
        // Header, token ids and positions, then one row of f32 log-probabilities per scored token.
        let n = base["tokens_scored"].as_u64().unwrap();
        let len = std::fs::metadata(&saved.path).unwrap().len();
        assert_eq!(len, 40 + 4 * (n + 1) + 4 * n + 4 * n * 50257, "{name}: file size");
        let got = kl(&m, &saved.path, &extra);
        assert_eq!(got["kl_divergence"].as_f64().unwrap(), 0.0, "{name}: {got}");
        assert_eq!(got["kl_max"].as_f64().unwrap(), 0.0, "{name}: {got}");
        assert_eq!(got["top1_agreement"].as_f64().unwrap(), 1.0, "{name}: {got}");
        assert_eq!(got["loss"], base["loss"], "{name}");
        assert!(rel(&got["base_loss"], &base["loss"]) <= 1e-6, "{name}: base loss {got}");
    }
}

#[test]
fn kl_against_another_model_or_the_f16_kv_cache_is_positive() {
    let (_dir, text) = short_text();
    let extra = [text.as_str(), "--ctx", "32", "--stride", "16"];
    let (saved, base) = save(&model_dir("tiny-gpt2-hub"), &extra);
    // Another model with the same tokenizer: a large divergence, and base_loss is the base's loss.
    let other = kl(&model_dir("tiny-gpt-neo"), &saved.path, &extra);
    assert!(other["kl_divergence"].as_f64().unwrap() > 1.0, "{other}");
    assert!(other["top1_agreement"].as_f64().unwrap() < 0.5, "{other}");
    assert!(rel(&other["base_loss"], &base["loss"]) <= 1e-6, "{other}");
    // The same model with an f16 KV cache: close to the f32 base but not identical.
    let mut f16 = vec!["--kv", "f16"];
    f16.extend_from_slice(&extra);
    let got = kl(&model_dir("tiny-gpt2-hub"), &saved.path, &f16);
    let d = got["kl_divergence"].as_f64().unwrap();
    assert!(d > 0.0 && d < 1e-3, "f16 KV: KL {d}");
    assert!(got["top1_agreement"].as_f64().unwrap() > 0.95, "{got}");
    assert!(got["kl_max"].as_f64().unwrap() >= d);
}

fn expect(args: &[&str], code: i32, needles: &[&str]) {
    let mut all = vec!["score"];
    all.extend_from_slice(args);
    let (got, stdout, stderr) = quill(&all);
    assert_eq!(got, code, "quill {all:?}: exit code {got}, stderr: {stderr}");
    assert!(stdout.is_empty(), "quill {all:?}: stdout {stdout}");
    for needle in needles {
        assert!(stderr.contains(needle), "quill {all:?}: stderr lacks '{needle}': {stderr}");
    }
    assert_eq!(stderr.trim_end().lines().count(), 1, "quill {all:?}: not one line: {stderr}");
}

#[test]
fn kl_base_from_another_text_or_other_settings_is_refused() {
    let hub = model_dir("tiny-gpt2-hub");
    let (_short, text) = short_text();
    let (saved, _) = save(&hub, &[text.as_str(), "--ctx", "32", "--stride", "16"]);
    let base = saved.path.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.txt");
    std::fs::write(&other, "The Lighthouse Keeper's Diary, and something else entirely.").unwrap();
    expect(&["-m", &hub, other.to_str().unwrap(), "--ctx", "32", "--kl-base", base], 1, &["token stream differs"]);
    expect(&["-m", &hub, &text, "--ctx", "32", "--stride", "8", "--kl-base", base], 1, &["--stride 16", "--stride 8"]);
    let junk = dir.path().join("junk.lp");
    std::fs::write(&junk, vec![7u8; 100]).unwrap();
    expect(
        &["-m", &hub, &text, "--kl-base", junk.to_str().unwrap()],
        1,
        &["junk.lp", "not a quill log-probability file (bad magic; write one with quill score --save-logits)"],
    );
    let cut = dir.path().join("cut.lp");
    let bytes = std::fs::read(&saved.path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 4]).unwrap();
    expect(&["-m", &hub, &text, "--ctx", "32", "--kl-base", cut.to_str().unwrap()], 1, &["cut.lp", "truncated"]);
    expect(&["-m", &hub, &text, "--kl-base", "/no/such/base.lp"], 1, &["/no/such/base.lp"]);
    expect(&["-m", &hub, &text, "--kl-base", base, "--save-logits", base], 2, &["same file"]);
}

#[test]
fn bad_input_is_a_clear_error() {
    let hub = model_dir("tiny-gpt2-hub");
    let text = text_file();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let empty = write("empty.txt", b"");
    let one = write("one.txt", b"Hello");
    let latin1 = write("latin1.txt", b"caf\xe9 au lait");

    expect(&["-m", &hub, "/no/such/text.txt"], 1, &["/no/such/text.txt"]);
    expect(&["-m", &hub, &latin1], 1, &["latin1.txt", "not valid UTF-8", "offset 3"]);
    expect(&["-m", &hub, &empty], 1, &["empty.txt", "empty"]);
    expect(&["-m", &hub, &one], 1, &["one.txt", "single token", "nothing to score"]);
    expect(&["-m", &hub, &text, "--stride", "0"], 2, &["--stride 0"]);
    expect(&["-m", &hub, &text, "--ctx", "32", "--stride", "33"], 2, &["--stride 33", "1 to --ctx (32)"]);
    expect(&["-m", &hub, &text, "--stride", "65"], 2, &["--stride 65"]);
    expect(&["-m", &hub, &text, "--ctx", "65"], 2, &["--ctx 65", "64 positions"]);
    expect(&["-m", &hub, &text, "--ctx", "1"], 2, &["--ctx 1", "at least 2"]);
    expect(&["-m", "/no/such/model", &text], 1, &["/no/such/model"]);
    let (code, _, _) = quill(&["score", "-m", &hub, &text, "--ctx", "many"]);
    assert_eq!(code, 2);
}
