//! Helpers for the generation tests: running the quill binary on the committed fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn hub() -> PathBuf {
    data_dir().join("tiny-gpt2-hub")
}

pub fn golden(name: &str) -> Value {
    let path = data_dir().join("goldens").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// The quill binary, behind the cross runner (e.g. qemu) when the tests run under one.
fn quill_command() -> Command {
    let runner = std::env::var(format!(
        "CARGO_TARGET_{}_RUNNER",
        if cfg!(target_arch = "aarch64") { "AARCH64_UNKNOWN_LINUX_GNU" } else { "NONE" }
    ));
    match runner.ok().filter(|r| !r.trim().is_empty()) {
        Some(runner) => {
            let mut parts = runner.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap());
            cmd.args(parts).arg(env!("CARGO_BIN_EXE_quill"));
            cmd
        }
        None => Command::new(env!("CARGO_BIN_EXE_quill")),
    }
}

/// Runs quill; returns (exit code, stdout, stderr). Never a panic inside quill.
pub fn quill(args: &[&str]) -> (i32, String, String) {
    let out = quill_command().args(args).env_remove("QUILL_KERNELS").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "quill {args:?} panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// `quill generate -m MODEL PROMPT ARGS... --json`, which must succeed; the parsed record.
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
