//! `quill generate`, `logits`, `tokenize` and `info` on the GPT-Neo fixture folder, and the
//! errors a bad `attention_types` gives.

mod common;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use common::quill;

fn neo() -> PathBuf {
    common::data_dir().join("tiny-gpt-neo")
}

fn gold() -> Value {
    common::golden("tiny-gpt-neo.json")
}

#[test]
fn generate_continues_like_transformers() {
    let m = neo();
    let m = m.to_str().unwrap();
    let gold = gold();
    // The 172-token prompt: two prompt chunks, and generation far past the window of 8.
    for k in [1, 5] {
        let p = &gold["prompts"][k];
        let text = p["text"].as_str().unwrap();
        let (code, out, err) = quill(&["generate", "-m", m, text, "-n", "20", "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(common::u32s(&v["prompt_ids"]), common::u32s(&p["ids"]), "prompt {k}");
        assert_eq!(common::u32s(&v["new_ids"]), common::u32s(&p["greedy_ids"]), "prompt {k}");
        assert_eq!(v["text"], p["greedy_text"], "prompt {k}");

        let (code, out, _) = quill(&["generate", "-m", m, text, "-n", "20"]);
        assert_eq!(code, 0);
        assert_eq!(out.trim_end_matches('\n'), format!("{text}{}", p["greedy_text"].as_str().unwrap()));
    }
    let (code, out, _) = quill(&["tokenize", "-m", m, gold["prompts"][1]["text"].as_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(common::u32s(&v["ids"]), common::u32s(&gold["prompts"][1]["ids"]));
}

#[test]
fn logits_match_transformers() {
    let m = neo();
    let m = m.to_str().unwrap();
    let gold = gold();
    let dir = tempfile::tempdir().unwrap();
    for k in [3, 5] {
        let p = &gold["prompts"][k];
        let ids: Vec<String> = common::u32s(&p["ids"]).iter().map(|i| i.to_string()).collect();
        let raw = dir.path().join(format!("p{k}.f32"));
        let args = ["logits", "-m", m, "--ids", &ids.join(","), "--top", "5", "--json"];
        let (code, out, err) = quill(&[&args[..], &["--raw-out", raw.to_str().unwrap()]].concat());
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let top: Vec<u32> = v["top"].as_array().unwrap().iter().map(|e| e[0].as_u64().unwrap() as u32).collect();
        assert_eq!(top, common::u32s(&p["top5_last"]), "prompt {k}");
        let want = common::read_f32(&common::data_dir().join("goldens").join(p["last_logits_file"].as_str().unwrap()));
        let (diff, at) = common::max_abs_diff(&common::read_f32(&raw), &want);
        assert!(diff <= 2e-4, "prompt {k}: logit {at} differs by {diff}");
    }
}

#[test]
fn info_describes_the_local_layers() {
    let (code, out, err) = quill(&["info", "-m", neo().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("gpt_neo (4 layers, 4 heads of 8, width 32, MLP 128)"), "{out}");
    assert!(out.contains("positions      192"), "{out}");
    assert!(out.contains("tied to wte"), "{out}");
    // 2 global layers of 192 positions and 2 local ones of a ring (window 8 + a prompt chunk - 1),
    // each 2 × 32 floats per position.
    let ring = quill::Model::load(&neo(), &Default::default()).unwrap().kv_slots(192)[1];
    assert!(ring < 192);
    let (full, used) = (4 * 192 * 256, 2 * (192 + ring) * 256);
    let want = format!(
        "kv cache       1.0 KiB per token, {:.1} KiB at 192 positions (the 2 local layers, window 8, keep only their \
         last {ring}: {:.1} KiB saved, {:.0}%)",
        used as f64 / 1024.0,
        (full - used) as f64 / 1024.0,
        100.0 * (full - used) as f64 / full as f64
    );
    assert!(out.contains(&want), "{out}\nlacks\n{want}");
}

/// A copy of the GPT-Neo fixture whose config.json has `edit` applied.
fn with_config(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(neo().join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    dir
}

fn expect_error(dir: &Path, needles: &[&str]) {
    for args in
        [&["generate", "-m", dir.to_str().unwrap(), "hello", "-n", "2"][..], &["info", "-m", dir.to_str().unwrap()]]
    {
        let (code, _, stderr) = quill(args);
        assert_eq!(code, 1, "quill {args:?}: exit code {code}, stderr: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "quill {args:?}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "quill {args:?}: stderr lacks '{needle}': {stderr}");
        }
    }
}

#[test]
fn bad_attention_types_are_named() {
    let dir = with_config(|c| drop(c.insert("attention_types".into(), json!([[["global", "local"], 3]]))));
    expect_error(dir.path(), &["config.json", "'attention_types' gives 6 layer kinds but num_layers is 4"]);
    let dir = with_config(|c| drop(c.insert("attention_types".into(), json!([[["global", "sliding"], 2]]))));
    expect_error(dir.path(), &["config.json", "'attention_types': unknown attention kind \"sliding\""]);
    let dir = with_config(|c| drop(c.insert("attention_types".into(), json!([["global", 4]]))));
    expect_error(dir.path(), &["config.json", "'attention_types' entry 0", "[[kinds...], repeat]"]);
    let dir = with_config(|c| drop(c.remove("attention_types")));
    expect_error(dir.path(), &["config.json", "missing required field 'attention_types'"]);
    let dir = with_config(|c| drop(c.insert("attention_layers".into(), json!(["local", "global", "global", "local"]))));
    expect_error(dir.path(), &["config.json", "'attention_layers' disagrees"]);
    let dir = with_config(|c| drop(c.insert("window_size".into(), json!(0))));
    expect_error(dir.path(), &["config.json", "'window_size' should be an integer from 1"]);
    // A layer count that matches attention_types but not the weights: the missing tensor is named.
    let dir = with_config(|c| {
        c.insert("num_layers".into(), json!(6));
        c.insert("attention_types".into(), json!([[["global", "local"], 3]]));
        c.remove("attention_layers");
    });
    expect_error(dir.path(), &["model.safetensors", "tensor 'transformer.h.4.ln_1.weight' is missing"]);
}
