//! GPT-2 forward pass against transformers (eager, f32) on the committed random checkpoints.

mod common;

use common::{check_prompt_logits, data_dir, golden, max_abs_diff, read_f32, u32s};
use quill::model::LoadOptions;
use quill::Model;

const TOL: f32 = 2e-4;
const FIXTURES: &[&str] = &["tiny-gpt2-hub", "tiny-gpt2-saved"];

/// Every fixture model once per kernel level this CPU supports.
fn models() -> Vec<(String, Model, serde_json::Value)> {
    let mut out = Vec::new();
    for name in FIXTURES {
        for level in common::float_levels() {
            let opts =
                LoadOptions { kernels: Some(quill_kernels::select(Some(level.name())).unwrap()), ..Default::default() };
            let model = Model::load(&data_dir().join(name), &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((format!("{name} [{}]", level.name()), model, golden(&format!("{name}.json"))));
        }
    }
    out
}

#[test]
fn logits_match_transformers_at_every_position() {
    for (name, model, gold) in models() {
        let v = model.config().vocab_size;
        for (k, p) in gold["prompts"].as_array().unwrap().iter().enumerate() {
            let ids = u32s(&p["ids"]);
            let mut session = model.session(None).unwrap();
            let mut all = Vec::new();
            session.feed_all_logits(&ids, &mut all).unwrap();
            check_prompt_logits(&format!("{name} prompt {k}"), &all, v, p, TOL);
        }
    }
}

#[test]
fn incremental_decoding_equals_the_full_forward() {
    for (name, model, gold) in models() {
        let v = model.config().vocab_size;
        for p in gold["prompts"].as_array().unwrap() {
            let ids = u32s(&p["ids"]);
            let mut full = Vec::new();
            model.session(None).unwrap().feed_all_logits(&ids, &mut full).unwrap();
            let mut step = model.session(None).unwrap();
            for (pos, &id) in ids.iter().enumerate() {
                let logits = step.feed(&[id]).unwrap();
                let (diff, at) = max_abs_diff(logits, &full[pos * v..][..v]);
                assert!(diff <= 1e-4, "{name}: position {pos} id {at}: one-by-one differs from full by {diff}");
            }
        }
    }
}

#[test]
fn greedy_continuations_equal_transformers() {
    for (name, model, gold) in models() {
        for (k, p) in gold["prompts"].as_array().unwrap().iter().enumerate() {
            let want = u32s(&p["greedy_ids"]);
            let mut session = model.session(None).unwrap();
            let got = common::greedy(&mut session, &u32s(&p["ids"]), 20);
            assert_eq!(got, want, "{name} prompt {k}");
        }
    }
}

/// An f16 KV cache is not exact (keys and values are rounded), but stays close to transformers.
#[test]
fn an_f16_kv_cache_stays_close() {
    for name in FIXTURES {
        let opts = LoadOptions { kv: quill::kv_cache::KvType::F16, ..Default::default() };
        let model = Model::load(&data_dir().join(name), &opts).unwrap();
        let gold = golden(&format!("{name}.json"));
        let v = model.config().vocab_size;
        let mut worst = 0.0f32;
        for p in gold["prompts"].as_array().unwrap() {
            let ids = u32s(&p["ids"]);
            let mut all = Vec::new();
            model.session(None).unwrap().feed_all_logits(&ids, &mut all).unwrap();
            let last = read_f32(&data_dir().join("goldens").join(p["last_logits_file"].as_str().unwrap()));
            worst = worst.max(max_abs_diff(&all[(ids.len() - 1) * v..], &last).0);
        }
        eprintln!("{name}: f16 KV, max |logit diff| {worst:e}");
        assert!(worst <= 2e-2, "{name}: f16 KV logits differ from transformers by {worst}");
    }
}
