//! The GPT-Neo 125M-shape checkpoint (not committed; make it with
//! `python tools/fixtures/make_fixtures.py --large --large-models gpt-neo`): 12 layers alternating
//! global and local attention (window 256), 2048 positions, the longest prompt 2028 tokens.
//! HF parity, and resident memory with the local layers' smaller KV rings.
//! Where the files are absent the test says so and checks nothing else; run it with
//! `cargo test --release --test gpt_neo_large -- --nocapture` after making them.

mod common;

use common::{check_large_prompt, resident_bytes};
use quill::Model;

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
    let model = Model::load(&dir.join("gpt-neo-125m-random"), &Default::default()).unwrap();
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
        check_large_prompt(&mut session, &dir.join("goldens"), k, p);
    }
    drop(gold);
    let used = resident_bytes().saturating_sub(before);
    let budget = model.file_bytes() + session.kv_bytes() as u64 + 50 * (1 << 20);
    eprintln!("resident growth {:.1} MiB, budget {:.1} MiB", used as f64 / 1048576.0, budget as f64 / 1048576.0);
    assert!(used <= budget, "resident memory grew by {used} bytes, budget {budget}");
}
