//! GPT-Neo forward pass (global and local attention) against transformers (eager, f32) on the
//! committed random checkpoint `tests/data/tiny-gpt-neo`: 4 layers alternating global/local,
//! window 8, 192 positions. Its prompts cross the window, and the longest (172 tokens) is longer
//! than a prompt chunk and than the local layers' KV ring, which therefore wraps.

mod common;

use common::{
    check_prompt_logits, data_dir, golden, max_abs_diff, read_f32, read_safetensors, u32s, write_safetensors,
};
use quill::config::AttentionKind;
use quill::model::LoadOptions;
use quill::Model;

const TOL: f32 = 2e-4;
const NAME: &str = "tiny-gpt-neo";

/// The fixture once per kernel level this CPU supports.
fn models() -> Vec<(String, Model)> {
    common::float_levels()
        .into_iter()
        .map(|level| {
            let opts =
                LoadOptions { kernels: Some(quill_kernels::select(Some(level.name())).unwrap()), ..Default::default() };
            let model = Model::load(&data_dir().join(NAME), &opts).unwrap_or_else(|e| panic!("{NAME}: {e}"));
            (format!("{NAME} [{}]", level.name()), model)
        })
        .collect()
}

fn prompts() -> Vec<serde_json::Value> {
    golden(&format!("{NAME}.json"))["prompts"].as_array().unwrap().clone()
}

#[test]
fn the_fixture_is_what_the_tests_assume() {
    let model = Model::load(&data_dir().join(NAME), &Default::default()).unwrap();
    let kinds: Vec<_> = model.config().layers.iter().map(|l| l.attention).collect();
    let local = AttentionKind::Local { window: 8 };
    assert_eq!(kinds, [AttentionKind::Global, local, AttentionKind::Global, local]);
    let n = model.config().n_positions;
    let ring = model.kv_slots(n)[1];
    assert_eq!(model.kv_slots(n), [n, ring, n, ring]);
    let longest = prompts().iter().map(|p| u32s(&p["ids"]).len()).max().unwrap();
    assert!(longest > ring, "no prompt wraps the local layers' ring of {ring}: make the fixture longer");
    let session = model.session(None).unwrap();
    assert_eq!(session.kv_bytes(), model.kv_bytes(n));
    assert_eq!(session.kv_bytes(), 2 * (n + ring + n + ring) * 32 * 4);
}

#[test]
fn logits_match_transformers_at_every_position() {
    for (name, model) in models() {
        let v = model.config().vocab_size;
        for (k, p) in prompts().iter().enumerate() {
            let ids = u32s(&p["ids"]);
            let mut all = Vec::new();
            model.session(None).unwrap().feed_all_logits(&ids, &mut all).unwrap();
            check_prompt_logits(&format!("{name} prompt {k}"), &all, v, p, TOL);
        }
    }
}

#[test]
fn incremental_decoding_equals_the_full_forward() {
    for (name, model) in models() {
        let v = model.config().vocab_size;
        for (k, p) in prompts().iter().enumerate() {
            let ids = u32s(&p["ids"]);
            let mut full = Vec::new();
            model.session(None).unwrap().feed_all_logits(&ids, &mut full).unwrap();
            let mut step = model.session(None).unwrap();
            for (pos, &id) in ids.iter().enumerate() {
                let logits = step.feed(&[id]).unwrap();
                let (diff, at) = max_abs_diff(logits, &full[pos * v..][..v]);
                assert!(diff <= 1e-4, "{name} prompt {k} position {pos} id {at}: one-by-one differs by {diff}");
            }
            // Uneven pieces: chunks that start mid-window, after a prefix.
            for piece in [3, 13, 64] {
                let mut session = model.session(None).unwrap();
                let (head, tail) = ids.split_at(ids.len().min(piece));
                let mut got = Vec::new();
                session.feed_all_logits(head, &mut got).unwrap();
                for chunk in tail.chunks(64) {
                    let mut more = Vec::new();
                    session.feed_all_logits(chunk, &mut more).unwrap();
                    got.extend_from_slice(&more);
                }
                let (diff, at) = max_abs_diff(&got, &full);
                assert!(diff <= 1e-4, "{name} prompt {k}, first piece {piece}: logit {at} differs by {diff}");
            }
        }
    }
}

#[test]
fn greedy_continuations_equal_transformers() {
    for (name, model) in models() {
        for (k, p) in prompts().iter().enumerate() {
            let want = u32s(&p["greedy_ids"]);
            let mut session = model.session(None).unwrap();
            let got = common::greedy(&mut session, &u32s(&p["ids"]), 20);
            assert_eq!(got, want, "{name} prompt {k}");
        }
    }
}

/// A shorter context: the local layers' ring is then the whole context (no wrap).
#[test]
fn a_short_context_gives_the_same_logits() {
    let model = Model::load(&data_dir().join(NAME), &Default::default()).unwrap();
    let v = model.config().vocab_size;
    let p = &prompts()[3];
    let ids = u32s(&p["ids"]);
    let mut session = model.session(Some(ids.len())).unwrap();
    assert_eq!(model.kv_slots(ids.len()), vec![ids.len(); 4]);
    let mut all = Vec::new();
    session.feed_all_logits(&ids, &mut all).unwrap();
    let last = read_f32(&data_dir().join("goldens").join(p["last_logits_file"].as_str().unwrap()));
    let (diff, at) = max_abs_diff(&all[(ids.len() - 1) * v..], &last);
    assert!(diff <= TOL, "last-position logit of id {at} differs by {diff}");
}

/// Older GPT-Neo checkpoints carry the attention-mask buffers `attn.attention.bias` (bool) and
/// `attn.attention.masked_bias`: they are ignored.
#[test]
fn legacy_mask_buffers_are_ignored() {
    let src = data_dir().join(NAME);
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "vocab.json", "merges.txt"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut tensors = read_safetensors(&src.join("model.safetensors"));
    let n = 192;
    for i in 0..4 {
        let window = if i % 2 == 1 { 8 } else { n };
        let mask: Vec<u8> = (0..n * n).map(|x| u8::from(x % n <= x / n && x / n - x % n < window)).collect();
        let p = format!("transformer.h.{i}.attn.attention");
        tensors.push((format!("{p}.bias"), "BOOL".into(), vec![1, 1, n, n], mask));
        tensors.push((format!("{p}.masked_bias"), "F32".into(), vec![], (-1e9f32).to_le_bytes().to_vec()));
    }
    write_safetensors(&dir.path().join("model.safetensors"), &tensors, 8);
    let model = Model::load(dir.path(), &Default::default()).unwrap();
    let p = &prompts()[5];
    let mut session = model.session(None).unwrap();
    let logits = session.feed(&u32s(&p["ids"])).unwrap();
    let last = read_f32(&data_dir().join("goldens").join(p["last_logits_file"].as_str().unwrap()));
    let (diff, at) = max_abs_diff(logits, &last);
    assert!(diff <= TOL, "last-position logit of id {at} differs by {diff}");
}
