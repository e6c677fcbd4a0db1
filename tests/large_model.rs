//! The 124M-shape checkpoint (not committed; make it with
//! `python tools/fixtures/make_fixtures.py --large`): HF parity and resident memory.
//! Where the files are absent the test says so and checks nothing else; run it with
//! `cargo test --release --test large_model -- --nocapture` after making them.

mod common;

use common::{check_large_prompt, resident_bytes};
use quill::Model;

#[test]
fn gpt2_124m_shape_matches_transformers_within_memory_budget() {
    let dir = common::data_dir().join("large");
    if !dir.join("gpt2-124m-random/model.safetensors").is_file() {
        eprintln!("large_model: {} absent; make it with tools/fixtures/make_fixtures.py --large", dir.display());
        return;
    }
    let gold = common::golden("../large/goldens/large.json");
    let before = resident_bytes();
    let model = Model::load(&dir.join("gpt2-124m-random"), &Default::default()).unwrap();
    let mut session = model.session(None).unwrap();
    for (k, p) in gold["prompts"].as_array().unwrap().iter().enumerate() {
        check_large_prompt(&mut session, &dir.join("goldens"), k, p);
    }
    let used = resident_bytes().saturating_sub(before);
    let budget = model.file_bytes() + session.kv_bytes() as u64 + 50 * (1 << 20);
    eprintln!("resident growth {:.1} MiB, budget {:.1} MiB", used as f64 / 1048576.0, budget as f64 / 1048576.0);
    assert!(used <= budget, "resident memory grew by {used} bytes, budget {budget}");
}
