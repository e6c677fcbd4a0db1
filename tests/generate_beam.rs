//! Beam search against transformers' generate(num_beams=3, do_sample=False)
//! (`beam_cases` of tests/data/goldens/generation.json, made by
//! tools/fixtures/make_generation_goldens.py): tokens exactly, scores within 1e-4.

mod generate_util;

use generate_util::{data_dir, golden, u32s};
use quill::generate::beam::{BeamOptions, BeamSearch, EarlyStopping};
use quill::generate::DecodeOptions;
use quill::Model;
use serde_json::Value;

fn beam_cases() -> Vec<Value> {
    golden("generation.json")["beam_cases"].as_array().expect("beam_cases").clone()
}

fn early_stopping(v: &Value) -> EarlyStopping {
    match v {
        Value::Null | Value::Bool(false) => EarlyStopping::Heuristic,
        Value::Bool(true) => EarlyStopping::Yes,
        Value::String(s) if s == "never" => EarlyStopping::Never,
        other => panic!("early_stopping {other}"),
    }
}

fn check(case: &Value, got: &[(Vec<u32>, f64, &str)]) {
    let want = case["sequences"].as_array().unwrap();
    let what = format!("{} {:?} {}", case["name"], case["text"], case["args"]);
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, u32s(&w["new_ids"]), "{what}");
        // The summed log-probabilities within 1e-4 (the score is divided by len^length_penalty).
        let score = w["score"].as_f64().unwrap();
        let scale = (g.0.len() as f64).powf(case["args"]["length_penalty"].as_f64().unwrap_or(1.0));
        assert!((g.1 - score).abs() * scale < 1e-4, "{what}: score {} vs {score}", g.1);
        assert_eq!(g.2, w["finish_reason"], "{what}");
    }
}

#[test]
fn beam_search_matches_transformers_library() {
    let cases = beam_cases();
    assert!(cases.len() >= 30);
    let mut models = std::collections::HashMap::new();
    for case in &cases {
        let dir = case["model_dir"].as_str().unwrap();
        let model = models.entry(dir.to_string()).or_insert_with(|| Model::load_dir(&data_dir().join(dir)).unwrap());
        let a = &case["args"];
        let opts = DecodeOptions {
            repetition_penalty: a["repetition_penalty"].as_f64().unwrap_or(1.0) as f32,
            eos_token_ids: vec![a["eos_token_id"].as_u64().unwrap() as u32],
            ..DecodeOptions::greedy(a["max_new_tokens"].as_u64().unwrap() as usize)
        };
        let beam = BeamOptions {
            num_beams: a["num_beams"].as_u64().unwrap() as usize,
            length_penalty: a["length_penalty"].as_f64().unwrap_or(1.0),
            early_stopping: early_stopping(&a["early_stopping"]),
            num_return_sequences: a["num_return_sequences"].as_u64().unwrap_or(1) as usize,
        };
        let mut search = BeamSearch::new(model, None, opts, beam).unwrap();
        let g = search.run(&u32s(&case["ids"])).unwrap();
        let got: Vec<_> = g.sequences.iter().map(|s| (s.new_ids.clone(), s.score, s.finish_reason.name())).collect();
        check(case, &got);
        // A second run on the same buffers gives the same result.
        let again = search.run(&u32s(&case["ids"])).unwrap();
        assert_eq!(again.sequences[0].new_ids, g.sequences[0].new_ids);
    }
}
