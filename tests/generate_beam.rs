//! Beam search against transformers' generate(num_beams=3, do_sample=False)
//! (`beam_cases` and `constraint_beam_cases`, with no_repeat_ngram_size and min_new_tokens, of
//! tests/data/goldens/generation.json, made by tools/fixtures/make_generation_goldens.py): tokens
//! exactly, scores within 1e-4.

mod generate_util;

use generate_util::{data_dir, expect_error, generate_json, golden, hub, quill, u32s};
use quill::generate::beam::{BeamOptions, BeamSearch, EarlyStopping};
use quill::generate::DecodeOptions;
use quill::Model;
use serde_json::Value;

fn beam_cases() -> Vec<Value> {
    let gold = golden("generation.json");
    let mut cases = gold["beam_cases"].as_array().expect("beam_cases").clone();
    let constrained = gold["constraint_beam_cases"].as_array().expect("constraint_beam_cases");
    assert!(constrained.len() >= 8);
    cases.extend(constrained.iter().cloned());
    cases
}

/// A golden case's count argument, 0 when absent.
fn count(a: &Value, name: &str) -> usize {
    a[name].as_u64().unwrap_or(0) as usize
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
        let model = models
            .entry(dir.to_string())
            .or_insert_with(|| Model::load(&data_dir().join(dir), &Default::default()).unwrap());
        let a = &case["args"];
        let opts = DecodeOptions {
            repetition_penalty: a["repetition_penalty"].as_f64().unwrap_or(1.0) as f32,
            eos_token_ids: vec![a["eos_token_id"].as_u64().unwrap() as u32],
            no_repeat_ngram_size: count(a, "no_repeat_ngram_size"),
            min_new_tokens: count(a, "min_new_tokens"),
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

/// The CLI flags for a golden case's generate() arguments.
fn flags(a: &Value) -> Vec<String> {
    let mut f =
        vec!["--num-beams".to_string(), a["num_beams"].to_string(), "-n".into(), a["max_new_tokens"].to_string()];
    if let Some(lp) = a.get("length_penalty") {
        f.extend(["--length-penalty".into(), lp.to_string()]);
    }
    match &a["early_stopping"] {
        Value::Null => {}
        Value::String(s) => f.extend(["--early-stopping".into(), s.clone()]),
        v => f.extend(["--early-stopping".into(), v.to_string()]),
    }
    if let Some(k) = a.get("num_return_sequences") {
        f.extend(["--num-return-sequences".into(), k.to_string()]);
    }
    if let Some(p) = a.get("repetition_penalty") {
        f.extend(["--repetition-penalty".into(), p.to_string()]);
    }
    for name in ["no_repeat_ngram_size", "min_new_tokens"] {
        if let Some(n) = a.get(name) {
            f.extend([format!("--{}", name.replace('_', "-")), n.to_string()]);
        }
    }
    f
}

#[test]
fn beam_search_matches_transformers_cli() {
    // The eos of these cases is a token of the text: a copy of the model with that eos.
    for case in beam_cases().iter().filter(|c| c["name"] != "beam3_eos" || c["text"] == "The Manhattan bridge") {
        let a = &case["args"];
        let eos = a["eos_token_id"].as_u64().unwrap();
        let config = format!(r#"{{"eos_token_id": {eos}}}"#);
        let dir = if case["model_dir"] == "tiny-gpt2-hub" {
            Some(generate_util::hub_with_generation_config(Some(&config)))
        } else {
            assert_eq!(eos, 50256);
            None
        };
        let model =
            dir.as_ref().map_or_else(|| data_dir().join(case["model_dir"].as_str().unwrap()), |d| d.path().into());
        let f = flags(a);
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        let v = generate_json(&model, case["text"].as_str().unwrap(), &f);
        assert_eq!(v["prompt_ids"], case["ids"]);
        let want = &case["sequences"][0];
        assert_eq!(v["new_ids"], want["new_ids"], "{} {}", case["name"], a);
        assert_eq!(v["text"], want["new_text"]);
        assert_eq!(v["finish_reason"], want["finish_reason"]);
        let got: Vec<_> = match v.get("sequences") {
            Some(seqs) => seqs
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (u32s(&s["new_ids"]), s["score"].as_f64().unwrap(), s["finish_reason"].as_str().unwrap()))
                .collect(),
            None => vec![(u32s(&v["new_ids"]), v["score"].as_f64().unwrap(), v["finish_reason"].as_str().unwrap())],
        };
        check(case, &got);
    }
}

#[test]
fn one_beam_is_greedy() {
    let text = "The Manhattan bridge";
    let greedy = generate_json(&hub(), text, &["-n", "8"]);
    let one = generate_json(&hub(), text, &["-n", "8", "--num-beams", "1"]);
    assert_eq!(one, greedy);
}

#[test]
fn streaming_prints_the_best_sequences() {
    let case = &beam_cases()[0];
    let text = case["text"].as_str().unwrap();
    let m = hub();
    let (code, out, err) = quill(&["generate", "-m", m.to_str().unwrap(), text, "--num-beams", "3", "-n", "12"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{text}{}\n", case["sequences"][0]["new_text"].as_str().unwrap()));
    let (code, out, _) = quill(&[
        "generate",
        "-m",
        m.to_str().unwrap(),
        text,
        "--num-beams",
        "3",
        "-n",
        "12",
        "--num-return-sequences",
        "2",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.matches(text).count(), 2);
    assert!(out.contains("\n\n"));
}

#[test]
fn invalid_beam_flags_are_usage_errors() {
    let m = hub();
    let m = m.to_str().unwrap();
    let base = ["generate", "-m", m, "Hello"];
    for (extra, needle) in [
        (&["--num-beams", "0"][..], "--num-beams 0"),
        (&["--num-beams", "2", "--num-return-sequences", "3"][..], "--num-return-sequences 3"),
        (&["--num-beams", "2", "--do-sample"][..], "--do-sample"),
        (&["--num-beams", "2", "--temperature", "0.7"][..], "--temperature"),
        (&["--num-beams", "2", "--stop", "x"][..], "--stop"),
        (&["--num-beams", "2", "--json", "--logprobs"][..], "--logprobs"),
        (&["--num-beams", "2", "--on-context-full", "slide"][..], "slide"),
        (&["--length-penalty", "2"][..], "--num-beams"),
        (&["--early-stopping", "true"][..], "--num-beams"),
        (&["--num-beams", "2", "--early-stopping", "maybe"][..], "maybe"),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        expect_error(&args, 2, &[needle]);
    }
}

#[test]
fn beams_stop_at_a_full_context() {
    // 3 prompt tokens, a context of 8: at most 6 new tokens.
    let v =
        generate_json(&hub(), "The Manhattan bridge", &["--num-beams", "3", "-n", "20", "--ctx", "8", "--ignore-eos"]);
    assert_eq!(v["new_ids"].as_array().unwrap().len(), 6);
    assert_eq!(v["finish_reason"], "context_full");
}
