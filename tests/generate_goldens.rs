//! Greedy decoding with a repetition penalty, and `max_length`, against transformers' generate()
//! (tests/data/goldens/generation.json, made by tools/fixtures/make_generation_goldens.py).

mod generate_util;

use generate_util::{generate_json, golden, hub, u32s};
use quill::generate::{DecodeOptions, Generator};
use quill::Model;
use serde_json::Value;

/// Steps whose best and second-best processed scores are closer than this may go either way
/// within float tolerance; comparison stops before the first of them.
const MARGIN: f64 = 1e-3;

fn sure_prefix(case: &Value) -> usize {
    case["margins"].as_array().unwrap().iter().position(|m| m.as_f64().unwrap() < MARGIN).unwrap_or(usize::MAX)
}

fn cases(name: &str) -> Vec<Value> {
    let gold = golden("generation.json");
    let all: Vec<Value> = gold["cases"].as_array().unwrap().iter().filter(|c| c["name"] == name).cloned().collect();
    assert!(!all.is_empty(), "no '{name}' cases in generation.json");
    all
}

#[test]
fn repetition_penalty_matches_transformers_library() {
    let model = Model::load(&hub(), &Default::default()).unwrap();
    let mut session = model.session(None).unwrap();
    for name in ["repetition_penalty_1.3", "repetition_penalty_0.8"] {
        for case in cases(name) {
            let penalty = case["args"]["repetition_penalty"].as_f64().unwrap() as f32;
            let want = u32s(&case["new_ids"]);
            let opts = DecodeOptions {
                repetition_penalty: penalty,
                eos_token_ids: vec![50256],
                ..DecodeOptions::greedy(case["args"]["max_new_tokens"].as_u64().unwrap() as usize)
            };
            let mut generator = Generator::new(opts, model.config().vocab_size).unwrap();
            session.reset();
            let got = generator
                .run(&mut session, &u32s(&case["ids"]), 0, |_| Ok(quill::generate::Flow::Continue))
                .unwrap()
                .new_ids;
            let n = sure_prefix(&case).min(want.len());
            assert_eq!(got[..n], want[..n], "{name}, prompt {:?}", case["text"]);
            assert_eq!(got.len(), want.len());
        }
    }
}

#[test]
fn repetition_penalty_matches_transformers_cli() {
    let m = hub();
    for name in ["repetition_penalty_1.3", "repetition_penalty_0.8"] {
        for case in cases(name) {
            assert_eq!(sure_prefix(&case), usize::MAX, "a close call: compare ids only");
            let penalty = case["args"]["repetition_penalty"].to_string();
            let v = generate_json(&m, case["text"].as_str().unwrap(), &["-n", "20", "--repetition-penalty", &penalty]);
            assert_eq!(v["prompt_ids"], case["ids"]);
            assert_eq!(v["new_ids"], case["new_ids"], "{name}, prompt {:?}", case["text"]);
            assert_eq!(v["text"], case["new_text"]);
            assert_eq!(v["finish_reason"], "length");
        }
    }
}

#[test]
fn max_length_counts_the_prompt() {
    for case in cases("max_length") {
        let total = case["args"]["max_length"].to_string();
        let v = generate_json(&hub(), case["text"].as_str().unwrap(), &["--max-length", &total]);
        assert_eq!(v["new_ids"], case["new_ids"]);
        assert_eq!(
            v["prompt_ids"].as_array().unwrap().len() + v["new_ids"].as_array().unwrap().len(),
            case["args"]["max_length"].as_u64().unwrap() as usize
        );
        assert_eq!(v["finish_reason"], "length");
    }
}

#[test]
fn generation_config_supplies_the_penalty_and_max_length() {
    let case = &cases("repetition_penalty_1.3")[1];
    let n = case["ids"].as_array().unwrap().len();
    let config = format!(r#"{{"repetition_penalty": 1.3, "max_length": {}, "eos_token_id": 50256}}"#, n + 20);
    let dir = generate_util::hub_with_generation_config(Some(&config));
    let v = generate_json(dir.path(), case["text"].as_str().unwrap(), &[]);
    assert_eq!(v["new_ids"], case["new_ids"]);
    // The flags override the file.
    let v = generate_json(dir.path(), case["text"].as_str().unwrap(), &["--repetition-penalty", "1", "-n", "3"]);
    let plain = generate_json(&hub(), case["text"].as_str().unwrap(), &["-n", "3"]);
    assert_eq!(v["new_ids"], plain["new_ids"]);
}
