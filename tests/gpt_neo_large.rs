//! The GPT-Neo 125M-shape checkpoint (not committed; make it with
//! `python tools/fixtures/make_fixtures.py --large --large-models gpt-neo`): 12 layers alternating
//! global and local attention (window 256), 2048 positions, the longest prompt 2028 tokens.
//! HF parity, and resident memory with the local layers' smaller KV rings.
//! Where the files are absent the test says so and checks nothing else; run it with
//! `cargo test --release --test gpt_neo_large -- --nocapture` after making them.

mod common;

use common::{f32s, max_abs_diff, read_f32, u32s};
use quill::generate::{greedy, GenerateOptions};
use quill::Model;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn gpt_neo_125m_shape_matches_transformers_within_memory_budget() {
    let dir = common::data_dir().join("large");
    if !dir.join("gpt-neo-125m-random/model.safetensors").is_file() {
        eprintln!(
            "gpt_neo_large: {}/gpt-neo-125m-random absent; make it with tools/fixtures/make_fixtures.py --large",
            dir.display()
        );
        return;
    }
    let gold = common::golden("../large/goldens/large-gpt-neo.json");
    let before = resident_bytes();
    let model = Model::load_dir(&dir.join("gpt-neo-125m-random")).unwrap();
    let v = model.config.vocab_size;
    let mut session = model.session(None).unwrap();
    // Six local layers keep a ring (window 256 + a prompt chunk - 1) instead of 2048 positions.
    let ring = model.kv_slots(2048)[1];
    assert!(ring < 2048);
    let full = 2 * 12 * 768 * 4 * 2048;
    assert_eq!(session.kv_bytes(), 2 * 6 * 768 * 4 * (2048 + ring));
    eprintln!(
        "kv arena {:.1} MiB (full layers: {:.1} MiB)",
        session.kv_bytes() as f64 / 1048576.0,
        full as f64 / 1048576.0
    );
    for (k, p) in gold["prompts"].as_array().unwrap().iter().enumerate() {
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
        let last = read_f32(&dir.join("goldens").join(p["last_logits_file"].as_str().unwrap()));
        worst = worst.max(max_abs_diff(&all[(ids.len() - 1) * v..], &last).0);
        eprintln!("prompt {k} ({} tokens): max |logit diff| {worst:e}", ids.len());
        assert!(worst <= 2e-4, "prompt {k}: logits differ from transformers by {worst}");

        // Greedy: compare up to (and including) the first step whose top-2 margin is within
        // float tolerance, where either choice is right.
        session.reset();
        let opts = GenerateOptions { max_new_tokens: 20, eos_token_id: model.config.eos_token_id };
        let got = greedy(&mut session, &ids, &opts, |_| Ok(())).unwrap().new_ids;
        let want = u32s(&p["greedy_ids"]);
        let margins = f32s(&p["greedy_margins"]);
        let sure = margins.iter().position(|&m| m < 1e-3).unwrap_or(want.len());
        assert_eq!(got[..sure], want[..sure], "prompt {k}: greedy continuation");
    }
    drop(gold);
    let used = resident_bytes().saturating_sub(before);
    let budget = model.file_bytes() + session.kv_bytes() as u64 + 50 * (1 << 20);
    eprintln!("resident growth {:.1} MiB, budget {:.1} MiB", used as f64 / 1048576.0, budget as f64 / 1048576.0);
    assert!(used <= budget, "resident memory grew by {used} bytes, budget {budget}");
}
