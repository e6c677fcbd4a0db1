//! Helpers for the generation tests: running the quill binary on the committed fixtures.
#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

#[path = "../common/mod.rs"]
pub mod common;

#[allow(unused_imports)]
pub use common::{data_dir, golden, hub, quill, u32s};

pub fn generate_json(model: &Path, prompt: &str, args: &[&str]) -> Value {
    let mut all = vec!["generate", "-m", model.to_str().unwrap(), prompt, "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = quill(&all);
    assert_eq!(code, 0, "quill {all:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("quill {all:?}: {e}: {out}"))
}

/// Expects exit `code` with every needle on stderr.
pub fn expect_error(args: &[&str], code: i32, needles: &[&str]) {
    let (got, _, stderr) = quill(args);
    assert_eq!(got, code, "quill {args:?}: exit code {got}, stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "quill {args:?}: stderr lacks '{needle}': {stderr}");
    }
}

/// A copy of the hub fixture with `generation_config.json` set to `config` (if given).
pub fn hub_with_generation_config(config: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(hub().join(f), dir.path().join(f)).unwrap();
    }
    if let Some(text) = config {
        std::fs::write(dir.path().join("generation_config.json"), text).unwrap();
    }
    dir
}
