//! An OpenAI GPT-2 TensorFlow checkpoint folder run directly (`-m TFDIR`, `Model::load`), read
//! into memory as f32: transformers' logits after `load_tf_weights_in_gpt2` (the golden.json of
//! tests/data/tf-gpt2-tiny, made by tools/fixtures/make_tf_checkpoint.py), its tokenizer from
//! encoder.json + vocab.bpe, a note that `quantize` makes a mappable file, and clear errors.

mod common;

use std::path::PathBuf;

use quill::model::{ForwardInput, Model};
use serde_json::Value;

fn tf_dir(name: &str) -> PathBuf {
    common::data_dir().join(name)
}

#[test]
fn the_folder_gives_transformers_logits() {
    let path = tf_dir("tf-gpt2-tiny/golden.json");
    let gold: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for name in ["tf-gpt2-tiny", "tf-gpt2-tiny/sharded"] {
        let model = Model::load(&tf_dir(name), &Default::default()).unwrap();
        let m = &gold["models"][name];
        let vocab = model.config().vocab_size;
        assert_eq!(vocab as u64, m["hparams"]["n_vocab"].as_u64().unwrap());
        for case in m["cases"].as_array().unwrap() {
            let ids = common::u32s(&case["ids"]);
            let mut past = model.sessions(1, None).unwrap();
            let out = model.forward(&mut past, &ForwardInput { input_ids: Some(&ids), ..Default::default() }).unwrap();
            let columns = common::u32s(&case["columns"]);
            for (p, row) in case["logits"].as_array().unwrap().iter().enumerate() {
                let got: Vec<f32> = columns.iter().map(|&c| out.logits[p * vocab + c as usize]).collect();
                let (d, k) = common::max_abs_diff(&got, &common::f32s(row));
                assert!(d <= 1e-4, "{name}: position {p}, column {}: off by {d}", columns[k]);
            }
        }
    }
}

#[test]
fn generate_runs_the_folder_and_says_quantize_maps_it() {
    let dir = tf_dir("tf-gpt2-tiny");
    let m = dir.to_str().unwrap();
    let (code, out, err) = common::quill(&["generate", "-m", m, "Hello world", "-n", "4", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["prompt_ids"], serde_json::json!([15496, 995]));
    assert_eq!(v["new_ids"].as_array().unwrap().len(), 4);
    assert!(err.contains("TensorFlow checkpoint") && err.contains("quantize"), "{err}");
    // The same tokens as the library's greedy decoding.
    let model = Model::load(&dir, &Default::default()).unwrap();
    let mut session = model.session(None).unwrap();
    assert_eq!(common::u32s(&v["new_ids"]), common::greedy(&mut session, &[15496, 995], 4));
}

#[test]
fn a_folder_without_tokenizer_files_still_takes_ids() {
    let m = tf_dir("tf-gpt2-tiny/sharded");
    let m = m.to_str().unwrap();
    let (code, out, err) = common::quill(&["logits", "-m", m, "--ids", "1,2,3", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"top\""), "{out}");
    let (code, _, err) = common::quill(&["generate", "-m", m, "Hello"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no tokenizer found") && err.contains("encoder.json"), "{err}");
}

#[test]
fn a_broken_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(tf_dir("tf-gpt2-tiny")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
        }
    }
    let data = tmp.path().join("model.ckpt.data-00000-of-00001");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[7] ^= 0x10;
    std::fs::write(&data, bytes).unwrap();
    let (code, _, err) = common::quill(&["generate", "-m", tmp.path().to_str().unwrap(), "Hello"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("model.ckpt.data-00000-of-00001") && err.contains("checksum"), "{err}");
}
