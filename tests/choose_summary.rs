//! `quill choose` and `forward_double_heads` over every `summary_*` combination, against
//! transformers (tests/data/forward/choose-summary.json, made by
//! tools/fixtures/make_choose_goldens.py). Each case's checkpoint is dh-choose's body with the
//! case's config fields and summary Linear. The library gives transformers' `mc_logits`, shape
//! and values, for all of them; `choose` ranks the combinations whose `mc_logits` hold one score
//! per choice and refuses the others, naming the field.

mod common;

use std::path::Path;

use quill::model::{ForwardInput, LogitsWanted, Model, MultipleChoiceHead};
use serde_json::Value;

const TOL: f32 = 1e-4;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A checkpoint folder for `case`: dh-choose's tensors, the case's head, its config fields.
fn checkpoint(gold: &Value, case: &Value, dir: &Path) {
    let src = common::data_dir().join("forward/dh-choose");
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    for field in ["summary_type", "summary_use_proj", "summary_proj_to_labels", "summary_activation"] {
        config[field] = case[field].clone();
    }
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut tensors: Vec<common::RawTensor> = common::read_safetensors(&src.join("model.safetensors"))
        .into_iter()
        .filter(|t| !t.0.starts_with("multiple_choice_head."))
        .collect();
    if let Some(head) = case["head"].as_str() {
        let h = &gold["heads"][head];
        let rows: Vec<Vec<f32>> = h["weight"].as_array().unwrap().iter().map(common::f32s).collect();
        let weight: Vec<f32> = rows.concat();
        let bias = common::f32s(&h["bias"]);
        let shape = vec![rows.len(), rows[0].len()];
        tensors.push(("multiple_choice_head.summary.weight".into(), "F32".into(), shape, f32_bytes(&weight)));
        tensors.push(("multiple_choice_head.summary.bias".into(), "F32".into(), vec![bias.len()], f32_bytes(&bias)));
    }
    common::write_safetensors(&dir.join("model.safetensors"), &tensors, 8);
}

fn what(case: &Value) -> String {
    format!(
        "summary_type {} use_proj {} proj_to_labels {} activation {}",
        case["summary_type"], case["summary_use_proj"], case["summary_proj_to_labels"], case["summary_activation"]
    )
}

#[test]
fn every_summary_combination_against_transformers() {
    let path = common::data_dir().join("forward/choose-summary.json");
    let gold: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let cases = gold["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 32);
    let ids: Vec<Vec<u32>> = gold["ids"].as_array().unwrap().iter().map(common::u32s).collect();
    let texts: Vec<&str> = gold["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let seq = ids.iter().map(Vec::len).max().unwrap();
    let flat: Vec<u32> = ids.iter().flat_map(|e| e.iter().copied().chain(std::iter::repeat(50256)).take(seq)).collect();
    let last: Vec<u32> = ids.iter().map(|e| e.len() as u32 - 1).collect();
    let tmp = tempfile::tempdir().unwrap();
    let choices = tmp.path().join("choices.txt");
    std::fs::write(&choices, texts.join("\n")).unwrap();
    for (i, case) in cases.iter().enumerate() {
        let what = what(case);
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir(&dir).unwrap();
        checkpoint(&gold, case, &dir);

        // The library: transformers' mc_logits, whatever their shape.
        let model = Model::load(&dir, &Default::default()).unwrap();
        let head = MultipleChoiceHead::load(&model).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut past = model.sessions(ids.len(), Some(seq)).unwrap();
        let input =
            ForwardInput { batch: ids.len(), input_ids: Some(&flat), logits: LogitsWanted::None, ..Default::default() };
        let out = model.forward_double_heads(&head, &mut past, &input, ids.len(), Some(&last), None).unwrap();
        let shape: Vec<usize> =
            case["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(out.mc_logits_shape, shape, "{what}");
        let (d, k) = common::max_abs_diff(&out.mc_logits, &common::f32s(&case["mc_logits"]));
        assert!(d <= TOL, "{what}: mc_logits element {k} off by {d}");

        // The command: a ranking where transformers gives one score per choice, else a refusal.
        let args = ["choose", "-m", dir.to_str().unwrap(), "--choices", choices.to_str().unwrap(), "--json"];
        let (code, out, err) = common::quill(&args);
        if case["per_choice"].as_bool().unwrap() {
            assert_eq!(code, 0, "{what}: {err}");
            let got: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(got["best"], case["best"], "{what}");
            let scores: Vec<f32> =
                got["choices"].as_array().unwrap().iter().map(|c| c["mc_logit"].as_f64().unwrap() as f32).collect();
            let (d, _) = common::max_abs_diff(&scores, &common::f32s(&case["mc_logits"]));
            assert!(d <= TOL, "{what}: choose's mc_logit off by {d}");
        } else {
            assert_eq!(code, 2, "{what}: {out}");
            let field = if case["summary_type"] != "cls_index" {
                "summary_type"
            } else if case["summary_use_proj"] == false {
                "summary_use_proj is false"
            } else {
                "summary_proj_to_labels is false"
            };
            assert!(err.contains(field) && err.contains("not"), "{what}: {err}");
            assert!(out.is_empty(), "{what}: {out}");
        }
    }
}
