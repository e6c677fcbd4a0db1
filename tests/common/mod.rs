//! Helpers shared by the integration tests: fixture paths and golden files.
#![allow(dead_code)]

pub mod counting_alloc;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The kernel levels this CPU supports, for tests of f32 and f16 models: `avx512vnni` and
/// `avx2dot` run exactly `avx512`'s and `avx2`'s kernels on those (they differ only where
/// activations meet q8_0 weights), so they are left out rather than run twice.
pub fn float_levels() -> Vec<quill_kernels::Level> {
    quill_kernels::Level::available().into_iter().filter(|l| !l.quantizes_q8_activations(1)).collect()
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The committed GPT-2 fixture in the hub's layout.
pub fn hub() -> PathBuf {
    data_dir().join("tiny-gpt2-hub")
}

/// The quill binary, behind the cross runner (e.g. qemu) when the tests run under one.
pub fn quill_command() -> Command {
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

/// Runs quill; returns (exit code, stdout, stderr), and fails the test if quill panicked.
pub fn quill(args: &[&str]) -> (i32, String, String) {
    let out = quill_command().args(args).env_remove("QUILL_KERNELS").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "quill {args:?} panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

pub fn golden(name: &str) -> Value {
    let path = data_dir().join("goldens").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

/// Largest absolute difference, and where it is.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| ((x - y).abs(), i))
        .fold((0.0, 0), |m, d| if d.0 > m.0 { d } else { m })
}

/// One tensor to write with [`write_safetensors`]: name, dtype as safetensors spells it, shape, bytes.
pub type RawTensor = (String, String, Vec<usize>, Vec<u8>);

/// Writes a safetensors file by hand; `pad_to` aligns the data start (1 = no padding).
pub fn write_safetensors(path: &Path, tensors: &[RawTensor], pad_to: usize) {
    write_safetensors_with_metadata(path, tensors, pad_to, &[]);
}

/// [`write_safetensors`] with `__metadata__` entries.
pub fn write_safetensors_with_metadata(path: &Path, tensors: &[RawTensor], pad_to: usize, metadata: &[(&str, &str)]) {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, Value> =
            metadata.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        header.insert("__metadata__".into(), Value::Object(meta));
    }
    let mut offset = 0;
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut text = serde_json::to_vec(&header).unwrap();
    while !(8 + text.len()).is_multiple_of(pad_to) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    std::fs::write(path, out).unwrap();
}

/// Every tensor of a safetensors file, in file order.
pub fn read_safetensors(path: &Path) -> Vec<RawTensor> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out: Vec<(usize, RawTensor)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let off = &v["data_offsets"];
            let (s, e) = (off[0].as_u64().unwrap() as usize, off[1].as_u64().unwrap() as usize);
            let shape = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (s, (k.clone(), v["dtype"].as_str().unwrap().to_string(), shape, bytes[8 + n + s..8 + n + e].to_vec()))
        })
        .collect();
    out.sort_by_key(|(s, _)| *s);
    out.into_iter().map(|(_, t)| t).collect()
}

/// Checks all-position logits `all` `[len, V]` of one golden prompt against transformers: the
/// sampled columns at every position, the argmax (or a tie within `tol`), and the full last
/// row; panics naming the prompt, position and token that differ. Returns the largest
/// difference seen.
pub fn check_prompt_logits(what: &str, all: &[f32], v: usize, p: &Value, tol: f32) -> f32 {
    let ids = u32s(&p["ids"]);
    let cols = u32s(&p["logits_columns"]);
    let mut worst = 0.0f32;
    for (pos, want) in p["logits_at_columns"].as_array().unwrap().iter().enumerate() {
        let got: Vec<f32> = cols.iter().map(|&c| all[pos * v + c as usize]).collect();
        let (diff, at) = max_abs_diff(&got, &f32s(want));
        assert!(diff <= tol, "{what} position {pos}: logit of id {} differs by {diff}", cols[at]);
        worst = worst.max(diff);
    }
    for (pos, &want) in u32s(&p["argmax"]).iter().enumerate() {
        let row = &all[pos * v..][..v];
        let got = quill::math::argmax(row) as u32;
        assert!(
            got == want || (row[got as usize] - row[want as usize]).abs() <= tol,
            "{what} position {pos}: argmax {got}, transformers {want}"
        );
    }
    let last = read_f32(&data_dir().join("goldens").join(p["last_logits_file"].as_str().unwrap()));
    let (diff, at) = max_abs_diff(&all[(ids.len() - 1) * v..], &last);
    assert!(diff <= tol, "{what}: last-position logit of id {at} differs by {diff}");
    worst.max(diff)
}

/// Resident memory of this process (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Greedy continuation of `prompt` by up to `max_new` tokens, stopping after the model's eos (kept
/// in the output), as transformers' `generate()` does.
pub fn greedy(session: &mut quill::Session, prompt: &[u32], max_new: usize) -> Vec<u32> {
    use quill::generate::{DecodeOptions, Flow, Generator};
    let config = session.model().config();
    let opts =
        DecodeOptions { eos_token_ids: config.eos_token_id.into_iter().collect(), ..DecodeOptions::greedy(max_new) };
    let mut generator = Generator::new(opts, config.vocab_size).unwrap();
    generator.run(session, prompt, 0, |_| Ok(Flow::Continue)).unwrap().new_ids
}

/// One prompt of a large (uncommitted) golden: logits at the sampled columns and the full last
/// row within 2e-4, then greedy tokens equal up to (and including) the first step whose top-2
/// margin is within float tolerance, where either choice is right.
pub fn check_large_prompt(session: &mut quill::Session, goldens: &Path, k: usize, p: &Value) {
    let model = session.model();
    let v = model.config().vocab_size;
    let ids = u32s(&p["ids"]);
    session.reset();
    let mut all = Vec::new();
    session.feed_all_logits(&ids, &mut all).unwrap();
    let cols = u32s(&p["logits_columns"]);
    let mut worst = 0.0f32;
    for (pos, want) in p["logits_at_columns"].as_array().unwrap().iter().enumerate() {
        let got: Vec<f32> = cols.iter().map(|&c| all[pos * v + c as usize]).collect();
        worst = worst.max(max_abs_diff(&got, &f32s(want)).0);
    }
    let last = read_f32(&goldens.join(p["last_logits_file"].as_str().unwrap()));
    worst = worst.max(max_abs_diff(&all[(ids.len() - 1) * v..], &last).0);
    eprintln!("prompt {k} ({} tokens): max |logit diff| {worst:e}", ids.len());
    assert!(worst <= 2e-4, "prompt {k}: logits differ from transformers by {worst}");

    session.reset();
    let got = greedy(session, &ids, 20);
    let want = u32s(&p["greedy_ids"]);
    let margins = f32s(&p["greedy_margins"]);
    let sure = margins.iter().position(|&m| m < 1e-3).unwrap_or(want.len());
    assert_eq!(got[..sure], want[..sure], "prompt {k}: greedy continuation");
}
