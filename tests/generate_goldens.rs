//! Greedy decoding with a repetition penalty, `no_repeat_ngram_size`, `min_new_tokens` and
//! `max_length`, against transformers' generate() (tests/data/goldens/generation.json, made by
//! tools/fixtures/make_generation_goldens.py).

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
    let all: Vec<Value> = gold["cases"]
        .as_array()
        .unwrap()
        .iter()
        .chain(gold["constraint_cases"].as_array().unwrap())
        .filter(|c| c["name"] == name)
        .cloned()
        .collect();
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

/// A golden case's eos: one id or a list, 50256 when absent.
fn eos_ids(a: &Value) -> Vec<u32> {
    match &a["eos_token_id"] {
        Value::Null => vec![50256],
        Value::Array(_) => u32s(&a["eos_token_id"]),
        v => vec![v.as_u64().unwrap() as u32],
    }
}

const CONSTRAINED: [&str; 3] = ["no_repeat_ngram", "min_new_tokens", "min_new_ngram_penalty"];

#[test]
fn no_repeat_ngram_and_min_new_tokens_match_transformers_library() {
    let model = Model::load(&hub(), &Default::default()).unwrap();
    let mut session = model.session(None).unwrap();
    for name in CONSTRAINED {
        for case in cases(name) {
            let a = &case["args"];
            let count = |k: &str| a[k].as_u64().unwrap_or(0) as usize;
            let opts = DecodeOptions {
                repetition_penalty: a["repetition_penalty"].as_f64().unwrap_or(1.0) as f32,
                no_repeat_ngram_size: count("no_repeat_ngram_size"),
                min_new_tokens: count("min_new_tokens"),
                eos_token_ids: eos_ids(a),
                ..DecodeOptions::greedy(count("max_new_tokens"))
            };
            let mut generator = Generator::new(opts, model.config().vocab_size).unwrap();
            session.reset();
            let got = generator
                .run(&mut session, &u32s(&case["ids"]), 0, |_| Ok(quill::generate::Flow::Continue))
                .unwrap()
                .new_ids;
            let want = u32s(&case["new_ids"]);
            assert_eq!(sure_prefix(&case), usize::MAX, "a close call in {name}: compare a prefix");
            assert_eq!(got, want, "{name} {a}, prompt {:?}", case["text"]);
        }
    }
}

#[test]
fn no_repeat_ngram_and_min_new_tokens_match_transformers_cli() {
    for name in CONSTRAINED {
        for case in cases(name).iter().take(2) {
            let a = &case["args"];
            let mut flags = vec!["-n".to_string(), a["max_new_tokens"].to_string()];
            for key in ["no_repeat_ngram_size", "min_new_tokens", "repetition_penalty"] {
                if let Some(v) = a.get(key) {
                    flags.extend([format!("--{}", key.replace('_', "-")), v.to_string()]);
                }
            }
            let eos: Vec<String> = eos_ids(a).iter().map(u32::to_string).collect();
            flags.extend(["--eos-token-id".to_string(), eos.join(",")]);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let v = generate_json(&hub(), case["text"].as_str().unwrap(), &flags);
            assert_eq!(v["new_ids"], case["new_ids"], "{name} {a}");
            assert_eq!(v["text"], case["new_text"]);
        }
    }
}

#[test]
fn min_new_tokens_holds_back_an_eos_that_would_end_at_once() {
    let case = &cases("min_new_tokens")[0];
    let first = case["args"]["eos_token_id"][0].to_string();
    let text = case["text"].as_str().unwrap();
    let without = generate_json(&hub(), text, &["-n", "16", "--eos-token-id", &first]);
    assert_eq!(without["new_ids"].as_array().unwrap().len(), 1);
    assert_eq!(without["finish_reason"], "eos");
    let with = generate_json(&hub(), text, &["-n", "16", "--eos-token-id", &first, "--min-new-tokens", "6"]);
    assert_eq!(with["new_ids"], case["new_ids"]);
}

#[test]
fn generation_config_supplies_no_repeat_ngram_size_and_min_new_tokens() {
    let case = cases("no_repeat_ngram").into_iter().find(|c| c["args"]["no_repeat_ngram_size"] == 2).unwrap();
    let text = case["text"].as_str().unwrap();
    let dir = generate_util::hub_with_generation_config(Some(r#"{"no_repeat_ngram_size": 2}"#));
    let v = generate_json(dir.path(), text, &["-n", "24"]);
    assert_eq!(v["new_ids"], case["new_ids"]);
    // --no-repeat-ngram-size 0 turns the file's off: plain greedy decoding, which repeats here.
    let off = generate_json(dir.path(), text, &["-n", "24", "--no-repeat-ngram-size", "0"]);
    let plain = generate_json(&hub(), text, &["-n", "24"]);
    assert_eq!(off["new_ids"], plain["new_ids"]);
    assert_ne!(off["new_ids"], case["new_ids"]);

    let case = &cases("min_new_tokens")[0];
    let config = format!(r#"{{"min_new_tokens": 6, "eos_token_id": {}}}"#, case["args"]["eos_token_id"]);
    let dir = generate_util::hub_with_generation_config(Some(&config));
    let v = generate_json(dir.path(), case["text"].as_str().unwrap(), &["-n", "16"]);
    assert_eq!(v["new_ids"], case["new_ids"]);
}
