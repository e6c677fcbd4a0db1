//! The model built into the binary (models/kjv-demo.safetensors): every command runs it when no
//! `-m` is given; a build without it says how to give one.

mod common;

use common::quill;

#[test]
fn commands_without_a_model_run_the_built_in_one_or_say_what_to_do() {
    let (code, out, err) = quill(&["generate", "And God said", "-n", "8", "--seed", "1"]);
    if quill::builtin::available() {
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("And God said") && out.len() > "And God said".len(), "{out}");
        let (code, out, err) = quill(&["info"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("<built-in demo model>"), "{out}");
        let (code, out, _) = quill(&["tokenize", "And God said"]);
        assert_eq!((code, out.trim()), (0, "1870 1793 531"));
    } else {
        assert_eq!(code, 2);
        assert!(err.contains("no model given: pass -m MODEL"), "{err}");
    }
}

/// The shipped model's held-out perplexity (docs/QUALITY.md): `quill score` on Revelation;
/// 84.7367 on a level that quantizes the q8_0 activations of prompts (avx512vnni), 84.7340 on
/// the others (scoring feeds whole windows: avx2dot runs its exact GEMM there).
#[test]
fn the_built_in_model_scores_its_recorded_perplexity() {
    assert!(quill::builtin::available(), "this build lacks models/kjv-demo.safetensors");
    let text = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/train-demo/revelation.txt");
    let (code, out, err) = quill(&["score", text.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ppl = v["perplexity"].as_f64().unwrap();
    assert_eq!(v["tokens_scored"], 15030);
    // `quill` runs with the best level (the test helper clears QUILL_KERNELS).
    let best = *quill_kernels::Level::available().last().unwrap();
    let want = if best.quantizes_q8_activations(2) { 84.7367 } else { 84.7340 };
    assert!((ppl / want - 1.0).abs() < 1e-5, "perplexity {ppl}, want {want}");
}
