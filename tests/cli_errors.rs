//! Bad input on the command line: each case exits with the right code and one clear line that
//! names the file or field at fault, and nothing panics.

mod common;

use std::path::Path;

use serde_json::Value;

use common::{hub, quill};

/// A copy of the hub fixture in a temp folder, with `edit` applied to the files there.
fn broken_model(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(hub().join(f), dir.path().join(f)).unwrap();
    }
    edit(dir.path());
    dir
}

/// Rewrites the safetensors header of `dir/model.safetensors` with `edit`, keeping the data.
fn edit_header(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header.as_object_mut().unwrap());
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&path, out).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
}

fn expect(args: &[&str], code: i32, needles: &[&str]) {
    let (got, _, stderr) = quill(args);
    assert_eq!(got, code, "quill {args:?}: exit code {got}, stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "quill {args:?}: stderr lacks '{needle}': {stderr}");
    }
}

fn generate_on(dir: &Path, needles: &[&str]) {
    expect(&["generate", "-m", dir.to_str().unwrap(), "hello", "-n", "2"], 1, needles);
}

#[test]
fn missing_and_unreadable_files() {
    expect(&["info", "-m", "/no/such/model"], 1, &["/no/such/model", "no such folder"]);
    let empty = tempfile::tempdir().unwrap();
    generate_on(empty.path(), &["config.json"]);
    let dir = broken_model(|d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    generate_on(dir.path(), &["no model.safetensors"]);
    let dir = broken_model(|d| std::fs::write(d.join("config.json"), "{not json").unwrap());
    generate_on(dir.path(), &["config.json", "not valid JSON"]);
    let dir = broken_model(|d| {
        std::fs::remove_file(d.join("vocab.json")).unwrap();
        std::fs::remove_file(d.join("merges.txt")).unwrap();
    });
    generate_on(dir.path(), &["tokenizer.json"]);
}

#[test]
fn bad_configs_name_the_field() {
    let dir = broken_model(|d| edit_config(d, |c| drop(c.remove("n_embd"))));
    generate_on(dir.path(), &["config.json", "missing required field 'n_embd'"]);
    let dir = broken_model(|d| edit_config(d, |c| drop(c.insert("n_head".into(), 5.into()))));
    generate_on(dir.path(), &["config.json", "n_head (5) does not divide n_embd (32)"]);
    let dir = broken_model(|d| edit_config(d, |c| drop(c.insert("model_type".into(), "llama".into()))));
    generate_on(dir.path(), &["config.json", "model_type 'llama'"]);
    let dir = broken_model(|d| edit_config(d, |c| drop(c.insert("n_layer".into(), 3.into()))));
    generate_on(dir.path(), &["model.safetensors", "tensor 'h.2.ln_1.weight' is missing"]);
    let dir = broken_model(|d| edit_config(d, |c| drop(c.insert("vocab_size".into(), 1000.into()))));
    generate_on(dir.path(), &["wte.weight", "[50257, 32]", "[1000, 32]"]);
}

#[test]
fn broken_safetensors_files() {
    let dir = broken_model(|d| {
        let p = d.join("model.safetensors");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    });
    generate_on(dir.path(), &["model.safetensors", "truncated"]);
    let dir = broken_model(|d| {
        let p = d.join("model.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&p, bytes).unwrap();
    });
    generate_on(dir.path(), &["model.safetensors", "header length 1099511627776 is larger than the file"]);
    let dir = broken_model(|d| std::fs::write(d.join("model.safetensors"), b"abc").unwrap());
    generate_on(dir.path(), &["too short"]);
    let dir = broken_model(|d| {
        edit_header(d, |h| {
            let t = h.get_mut("ln_f.bias").unwrap();
            t["data_offsets"] = serde_json::json!([0, 128]);
        })
    });
    generate_on(dir.path(), &["model.safetensors", "invalid offset"]);
    let dir = broken_model(|d| edit_header(d, |h| h.get_mut("wte.weight").unwrap()["dtype"] = "I32".into()));
    generate_on(dir.path(), &["tensor 'wte.weight' has dtype I32"]);
    let dir = broken_model(|d| {
        edit_header(d, |h| h.get_mut("h.0.mlp.c_fc.weight").unwrap()["shape"] = serde_json::json!([128, 32]))
    });
    generate_on(dir.path(), &["tensor 'h.0.mlp.c_fc.weight' has shape [128, 32], expected [32, 128]"]);
    let dir = broken_model(|d| {
        edit_header(d, |h| {
            let t = h.remove("ln_f.bias").unwrap();
            h.insert("ln_f.bogus".into(), t);
        })
    });
    generate_on(dir.path(), &["tensor 'ln_f.bias' is missing"]);
    let dir = broken_model(|d| std::fs::write(d.join("model.safetensors"), b"\x08\0\0\0\0\0\0\0[1,2,3] ").unwrap());
    generate_on(dir.path(), &["invalid safetensors header"]);
}

#[test]
fn bad_prompts_and_ids() {
    let m = hub();
    let m = m.to_str().unwrap();
    expect(&["logits", "-m", m, "--ids", "1,50257"], 1, &["token id 50257 is out of range", "50257 tokens"]);
    expect(&["logits", "-m", m, "--ids", "1,x"], 2, &["--ids", "'x'"]);
    expect(&["generate", "-m", m, ""], 1, &["prompt is empty"]);
    expect(&["logits", "-m", m, "--prompt", ""], 1, &["prompt is empty"]);
    expect(&["embed", "-m", m, ""], 1, &["text is empty"]);
    expect(&["embed", "-m", m, &"word ".repeat(70)], 1, &["the text has 71 tokens", "at most 64"]);
    let long = "word ".repeat(100);
    expect(&["generate", "-m", m, long.trim_end()], 1, &["the prompt has 100 tokens", "64"]);
    // logits names its own flags, not generate's.
    let (_, _, err) = quill(&["logits", "-m", m, "--prompt", long.trim_end()]);
    assert!(
        err.contains("the prompt has 100 tokens") && err.contains("at most 64") && !err.contains("--max-new-tokens"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("prompt.txt");
    std::fs::write(&bad, b"caf\xe9 au lait").unwrap();
    expect(
        &["generate", "-m", m, "--prompt-file", bad.to_str().unwrap()],
        1,
        &["prompt.txt", "not valid UTF-8", "offset 3"],
    );
    expect(&["tokenize", "-m", m, "--file", "/no/such/file.txt"], 1, &["/no/such/file.txt"]);
    expect(&["generate", "-m", m, "hi", "--ctx", "0"], 2, &["--ctx 0"]);
    expect(&["generate", "-m", m, "hi", "--ctx", "65"], 2, &["--ctx 65", "64"]);
}

#[test]
fn usage_errors_exit_2() {
    expect(&["generate"], 2, &["Usage"]);
    expect(&["frobnicate"], 2, &["frobnicate"]);
    expect(&["generate", "-m", "x", "hi", "--max-new-tokens", "-3"], 2, &["-3"]);
    expect(&["generate", "-m", "x", "hi", "--max-new-tokens", "many"], 2, &["--max-new-tokens", "many"]);
    expect(&["logits", "-m", "x", "--prompt", "a", "--ids", "1"], 2, &["cannot be used with"]);
}

#[test]
fn machine_readable_outputs() {
    let m = hub();
    let m = m.to_str().unwrap();
    let (code, out, _) = quill(&["tokenize", "-m", m, "long long ago, I was a boy, I love", "--json", "--tokens"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(common::u32s(&v["ids"]), [6511, 890, 2084, 11, 314, 373, 257, 2933, 11, 314, 1842]);
    assert_eq!(v["tokens"][1], "Ġlong");

    let gold = common::golden("tiny-gpt2-hub.json");
    let p = &gold["prompts"][2];
    let ids: Vec<String> = common::u32s(&p["ids"]).iter().map(|i| i.to_string()).collect();
    let (code, out, _) = quill(&["logits", "-m", m, "--ids", &ids.join(","), "--top", "5", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let top: Vec<u32> = v["top"].as_array().unwrap().iter().map(|e| e[0].as_u64().unwrap() as u32).collect();
    assert_eq!(top, common::u32s(&p["top5_last"]));

    let (code, out, _) = quill(&["generate", "-m", m, p["text"].as_str().unwrap(), "-n", "20", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(common::u32s(&v["prompt_ids"]), common::u32s(&p["ids"]));
    assert_eq!(common::u32s(&v["new_ids"]), common::u32s(&p["greedy_ids"]));
    assert_eq!(v["text"], p["greedy_text"]);

    // Streaming prints the prompt and the same continuation.
    let (code, out, _) = quill(&["generate", "-m", m, p["text"].as_str().unwrap(), "-n", "20"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim_end_matches('\n'),
        format!("{}{}", p["text"].as_str().unwrap(), p["greedy_text"].as_str().unwrap())
    );

    let (code, out, _) = quill(&["info", "-m", m]);
    assert_eq!(code, 0);
    assert!(out.contains("gpt2 (2 layers, 4 heads of 8, width 32, MLP 128)"), "{out}");
    assert!(out.contains("kernels"), "{out}");
    assert!(out.contains("activation     gelu_new, layer_norm_epsilon 0.00001"), "{out}");
}

/// `quill ... | head -c 10`: a reader that goes away early ends quill quietly with exit code 0.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    use std::io::Read;
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("long.txt");
    // Far more output (one line per token) than a pipe buffers.
    std::fs::write(&text, "word ".repeat(100_000)).unwrap();
    let mut child = common::quill_command()
        .args(["tokenize", "-m", hub().to_str().unwrap(), "--file", text.to_str().unwrap(), "--tokens"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "nothing on stderr, got: {stderr}");
}

/// Sets every f32 value of tensor `name` in `dir/model.safetensors` to `value`.
fn set_tensor(dir: &Path, name: &str, value: f32) {
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let off = &header[name]["data_offsets"];
    let (s, e) = (8 + n + off[0].as_u64().unwrap() as usize, 8 + n + off[1].as_u64().unwrap() as usize);
    for chunk in bytes[s..e].chunks_exact_mut(4) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn non_finite_weights_and_overflows_are_named() {
    let dir = broken_model(|d| set_tensor(d, "h.1.mlp.c_fc.weight", f32::NAN));
    generate_on(dir.path(), &["non-finite logits", "h.1 mlp.c_fc", "corrupt checkpoint"]);
    let dir = broken_model(|d| set_tensor(d, "h.0.ln_2.weight", 3e38));
    generate_on(dir.path(), &["non-finite logits", "layer 0 is the first whose output is not finite"]);
    let m = dir.path().to_str().unwrap();
    let text = common::data_dir().join("score-text.txt");
    expect(&["score", "-m", m, text.to_str().unwrap()], 1, &["non-finite logits", "layer 0"]);
}

/// More broken inputs: tokenizer files, generation defaults, config values, crafted tensor
/// tables and flags. With the cases above (and those of tests/quill_file.rs, tests/forward.rs
/// and tools/quantize/tests), over 40 distinct broken inputs, each with its exit code and a
/// message naming the problem, none panicking.
#[test]
fn more_broken_inputs_name_the_problem() {
    let write = |name: &'static str, text: &'static str| move |d: &Path| std::fs::write(d.join(name), text).unwrap();
    generate_on(broken_model(write("vocab.json", "{not json")).path(), &["vocab.json"]);
    generate_on(broken_model(write("merges.txt", "#version: 0.2\nĠ t\nlonely\n")).path(), &["merges.txt", "line 3"]);
    let dir = broken_model(write("generation_config.json", r#"{"temperature": "hot"}"#));
    generate_on(dir.path(), &["generation_config.json", "temperature"]);
    let dir = broken_model(|d| edit_config(d, |c| c["n_positions"] = 0.into()));
    generate_on(dir.path(), &["config.json", "n_positions"]);
    let dir = broken_model(|d| edit_config(d, |c| c["vocab_size"] = "many".into()));
    generate_on(dir.path(), &["config.json", "vocab_size"]);
    let dir = broken_model(|d| edit_config(d, |c| c["activation_function"] = "swiglu".into()));
    generate_on(dir.path(), &["config.json", "activation_function 'swiglu' is not supported"]);
    let dir = broken_model(|d| edit_config(d, |c| c["layer_norm_epsilon"] = "small".into()));
    generate_on(dir.path(), &["config.json", "layer_norm_epsilon"]);
    // Crafted tensor tables: a zero dimension, overlapping tensors, a shape whose size overflows.
    let dir = broken_model(|d| edit_header(d, |h| h.get_mut("ln_f.bias").unwrap()["shape"] = serde_json::json!([0])));
    generate_on(dir.path(), &["model.safetensors", "invalid shape, data type, or offset"]);
    let dir = broken_model(|d| {
        edit_header(d, |h| {
            let offsets = h["ln_f.weight"]["data_offsets"].clone();
            h.get_mut("ln_f.bias").unwrap()["data_offsets"] = offsets;
        })
    });
    generate_on(dir.path(), &["model.safetensors", "invalid offset"]);
    let dir = broken_model(|d| {
        edit_header(d, |h| h.get_mut("ln_f.bias").unwrap()["shape"] = serde_json::json!([1u64 << 40, 1u64 << 40]))
    });
    generate_on(dir.path(), &["model.safetensors", "overflow computing buffer size"]);
    // Flags with bad values: usage errors.
    let m = hub();
    let m = m.to_str().unwrap();
    expect(&["generate", "-m", m, "hi", "--top-p", "2"], 2, &["--top-p"]);
    expect(&["generate", "-m", m, "hi", "--temperature", "-1"], 2, &["--temperature"]);
    expect(&["generate", "-m", m, "hi", "--kv", "f8"], 2, &["--kv", "f8"]);
    expect(&["generate", "-m", m, "hi", "--kernels", "sse9"], 2, &["--kernels", "sse9"]);
    expect(&["generate", "-m", m, "hi", "--threads", "0"], 2, &["--threads"]);
    expect(&["generate", "-m", m, "hi", "--threads", "1,2"], 2, &["--threads takes one number"]);
    expect(&["generate", "-m", m, "hi", "--num-beams", "2", "--do-sample"], 2, &["beam"]);
    let empty = tempfile::NamedTempFile::new().unwrap();
    expect(&["score", "-m", m, empty.path().to_str().unwrap()], 1, &["empty"]);
    expect(&["score", "-m", m, empty.path().to_str().unwrap(), "--batch", "0"], 2, &["--batch"]);
}

/// A full disk: stdout or an output file on /dev/full is an error naming it, exit code 1.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_an_error_naming_the_output() {
    let m = hub();
    let m = m.to_str().unwrap();
    let full = std::fs::File::create("/dev/full").unwrap();
    let out = common::quill_command().args(["generate", "-m", m, "hi", "-n", "3"]).stdout(full).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("<stdout>") && stderr.contains("No space left"), "{stderr}");
    let text = common::data_dir().join("score-text.txt");
    expect(
        &["score", "-m", m, text.to_str().unwrap(), "--save-logits", "/dev/full"],
        1,
        &["/dev/full", "No space left"],
    );
}

#[test]
fn a_hub_name_as_the_model_says_how_to_fetch_it() {
    // Run where no folder of these names exists.
    let dir = tempfile::tempdir().unwrap();
    for (name, fetch) in [
        ("gpt2", "huggingface-cli download gpt2 --local-dir gpt2"),
        (
            "openai-community/gpt2-medium",
            "huggingface-cli download openai-community/gpt2-medium --local-dir gpt2-medium",
        ),
    ] {
        let out =
            common::quill_command().args(["generate", "-m", name, "hi"]).current_dir(dir.path()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("not from the hub") && err.contains(fetch), "{err}");
        let out =
            common::quill_command().args(["tokenize", "-m", name, "hi"]).current_dir(dir.path()).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains(fetch));
    }
    // A path that is not a hub name keeps the plain message.
    let out = common::quill_command().args(["info", "-m", "./no/such/dir"]).current_dir(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such folder") && !err.contains("hub"), "{err}");
}

#[test]
fn logits_of_ids_need_no_tokenizer_files() {
    // A folder of weights only: --ids runs, --prompt says the tokenizer is missing.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(hub().join(f), dir.path().join(f)).unwrap();
    }
    let m = dir.path().to_str().unwrap();
    let (code, out, err) = quill(&["logits", "-m", m, "--ids", "464,3290", "--top", "3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let (_, with_tokenizer, _) =
        quill(&["logits", "-m", hub().to_str().unwrap(), "--ids", "464,3290", "--top", "3", "--json"]);
    assert_eq!(out, with_tokenizer);
    let (code, out, _) = quill(&["logits", "-m", m, "--ids", "464,3290", "--top", "3"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");
    expect(&["logits", "-m", m, "--prompt", "hi"], 1, &["no tokenizer found"]);
}

#[test]
fn a_config_with_cross_attention_runs_and_says_those_weights_are_unused() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(hub().join(f), dir.path().join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hub().join("config.json")).unwrap()).unwrap();
    config["add_cross_attention"] = serde_json::json!(true);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let args = |m: &str| ["generate", "-m", m, "The bridge", "-n", "4", "--json"].map(String::from);
    let (code, out, err) = quill(&args(dir.path().to_str().unwrap()).each_ref().map(String::as_str));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cross-attention") && err.contains("not used"), "{err}");
    let (_, plain, plain_err) = quill(&args(hub().to_str().unwrap()).each_ref().map(String::as_str));
    assert!(!plain_err.contains("cross-attention"));
    let ids = |s: &str| serde_json::from_str::<serde_json::Value>(s.trim()).unwrap()["new_ids"].clone();
    assert_eq!(ids(&out), ids(&plain));
}

/// Sets row `row` of the f32 matrix `name` (`cols` wide) in `dir/model.safetensors` to `value`.
fn set_row(dir: &Path, name: &str, row: usize, cols: usize, value: f32) {
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = 8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize + row * cols * 4;
    for chunk in bytes[start..start + cols * 4].chunks_exact_mut(4) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
}

/// An overflow found after more than one chunk fed over a past: a model with local attention
/// cannot rerun those tokens (its ring holds what they overwrote) and says so instead of naming a
/// wrong layer; after a shorter feed it names the layer.
#[test]
fn an_overflow_after_a_long_feed_over_a_past_names_no_wrong_layer() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::data_dir().join("tiny-gpt-neo")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    // Position 150's embedding overflows whatever the token.
    set_row(dir.path(), "transformer.wpe.weight", 150, 32, 3e38);
    let model = quill::Model::load(dir.path(), &Default::default()).unwrap();
    let mut session = model.session(None).unwrap();
    session.feed(&[464, 3290, 318]).unwrap();
    let err = session.feed(&[13; 150]).unwrap_err().to_string();
    assert!(err.contains("non-finite logits") && err.contains("the layer is not named"), "{err}");
    assert_eq!(session.len(), 3, "the session keeps its past");
    session.feed(&[13; 137]).unwrap();
    let err = session.feed(&[13; 20]).unwrap_err().to_string();
    assert!(err.contains("non-finite logits") && !err.contains("the layer is not named"), "{err}");
}

/// `logits --prompts-file`: every prompt's top-K, as each alone; JSON records carry the
/// probabilities (softmax over the whole vocabulary) beside the logits.
#[test]
fn logits_for_a_prompts_file_and_probabilities_in_json() {
    let m = hub();
    let m = m.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.txt");
    std::fs::write(&file, "The Manhattan bridge\nIt was\n").unwrap();
    let (code, out, err) =
        quill(&["logits", "-m", m, "--prompts-file", file.to_str().unwrap(), "--top", "4", "--json"]);
    assert_eq!(code, 0, "{err}");
    let recs: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 2);
    for (i, (rec, text)) in recs.iter().zip(["The Manhattan bridge", "It was"]).enumerate() {
        let (_, alone, _) = quill(&["logits", "-m", m, "--prompt", text, "--top", "4", "--json"]);
        let alone: Value = serde_json::from_str(alone.trim()).unwrap();
        assert_eq!((rec["index"].as_u64(), &rec["top"], &rec["ids"]), (Some(i as u64), &alone["top"], &alone["ids"]));
        let (logits, probs) = (rec["top"].as_array().unwrap(), rec["probs"].as_array().unwrap());
        assert_eq!(probs.len(), 4);
        let p: Vec<f64> = probs.iter().map(|p| p.as_f64().unwrap()).collect();
        assert!(p.windows(2).all(|w| w[0] >= w[1]) && p[0] > 0.0 && p.iter().sum::<f64>() <= 1.0 + 1e-9);
        // Ratios of probabilities are exp of differences of logits.
        let l: Vec<f64> = logits.iter().map(|t| t[1].as_f64().unwrap()).collect();
        assert!(((p[0] / p[1]).ln() - (l[0] - l[1])).abs() < 1e-4);
    }
    let (code, out, _) = quill(&["logits", "-m", m, "--prompts-file", file.to_str().unwrap(), "--top", "2"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("--- row 0 ---\n") && out.contains("\n--- row 1 ---\n"), "{out}");
    let long = dir.path().join("long.txt");
    std::fs::write(&long, format!("hi\n{}\n", "word ".repeat(100))).unwrap();
    expect(&["logits", "-m", m, "--prompts-file", long.to_str().unwrap()], 1, &["--prompts-file line 2", "at most 64"]);
    expect(
        &["logits", "-m", m, "--prompts-file", file.to_str().unwrap(), "--prompt", "x"],
        2,
        &["cannot be used with"],
    );
}
