//! Checkpoint layouts: sharded files, unaligned data, f16/bf16 widening, hostile shard indexes.

mod common;

use std::path::Path;

use common::{data_dir, read_safetensors, write_safetensors};
use quill::checkpoint::Checkpoint;
use quill::Model;

fn copy_side_files(to: &Path) {
    for f in ["config.json", "vocab.json", "merges.txt"] {
        std::fs::copy(data_dir().join("tiny-gpt2-hub").join(f), to.join(f)).unwrap();
    }
}

fn last_logits(dir: &Path) -> Vec<f32> {
    let model = Model::load(dir, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut s = model.session(None).unwrap();
    s.feed(&[464, 3290, 318, 257, 1263]).unwrap().to_vec()
}

#[test]
fn sharded_and_unaligned_checkpoints_give_the_same_logits() {
    let reference = last_logits(&data_dir().join("tiny-gpt2-hub"));
    let tensors = read_safetensors(&data_dir().join("tiny-gpt2-hub/model.safetensors"));

    // Two shards plus the index transformers writes.
    let dir = tempfile::tempdir().unwrap();
    copy_side_files(dir.path());
    let (a, b) = tensors.split_at(tensors.len() / 2);
    write_safetensors(&dir.path().join("model-00001-of-00002.safetensors"), a, 8);
    write_safetensors(&dir.path().join("model-00002-of-00002.safetensors"), b, 8);
    let mut map = serde_json::Map::new();
    for (i, part) in [a, b].iter().enumerate() {
        for t in *part {
            map.insert(t.0.clone(), format!("model-0000{}-of-00002.safetensors", i + 1).into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_eq!(last_logits(dir.path()), reference);

    // Data starting at an offset that is not a multiple of 4: read by copying, same result.
    let dir = tempfile::tempdir().unwrap();
    copy_side_files(dir.path());
    write_safetensors(&dir.path().join("model.safetensors"), &tensors, 1);
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    if (8 + n).is_multiple_of(4) {
        // One more space of header puts the data off 4-byte alignment.
        let mut shifted = ((n + 1) as u64).to_le_bytes().to_vec();
        shifted.extend_from_slice(&bytes[8..8 + n]);
        shifted.push(b' ');
        shifted.extend_from_slice(&bytes[8 + n..]);
        std::fs::write(&path, shifted).unwrap();
    }
    let model = Model::load(dir.path(), &Default::default()).unwrap();
    assert!(model.copied_weight_bytes() > 0, "unaligned f32 data must be copied, not cast");
    assert_eq!(last_logits(dir.path()), reference);
}

#[test]
fn f16_and_bf16_are_widened_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let values = [1.0f32, -2.5, 0.0, 65504.0, 1.0 / 1024.0];
    let f16: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let bf16: Vec<u8> = values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
    write_safetensors(
        &path,
        &[("a".into(), "F16".into(), vec![5], f16), ("b".into(), "BF16".into(), vec![5], bf16)],
        8,
    );
    let ckpt = Checkpoint::open_files(&[path]).unwrap();
    assert_eq!(ckpt.tensor_f32("a", &[5]).unwrap().data(), values);
    let b = ckpt.tensor_f32("b", &[5]).unwrap();
    let want: Vec<f32> = values.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
    assert_eq!(b.data(), want);
    assert!(!b.is_mapped());
}

#[test]
fn f32_weights_are_used_in_place() {
    let model = Model::load(&data_dir().join("tiny-gpt2-hub"), &Default::default()).unwrap();
    assert_eq!(model.copied_weight_bytes(), 0);
}

#[test]
fn hostile_shard_indexes_are_refused() {
    let cases = [
        (serde_json::json!({"weight_map": {"wte.weight": "../../etc/passwd"}}), "not a plain file name"),
        (serde_json::json!({"weight_map": {}}), "lists no tensors"),
        (serde_json::json!({"nothing": 1}), "missing object field 'weight_map'"),
    ];
    for (index, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
        let err = Checkpoint::open_dir(dir.path()).err().expect("must fail").to_string();
        assert!(err.contains(needle) && err.contains("model.safetensors.index.json"), "{err}");
    }
    // The same tensor in two shards.
    let dir = tempfile::tempdir().unwrap();
    let t = ("w".to_string(), "F32".to_string(), vec![1], vec![0u8; 4]);
    write_safetensors(&dir.path().join("a.safetensors"), std::slice::from_ref(&t), 8);
    write_safetensors(&dir.path().join("b.safetensors"), &[t], 8);
    let index = serde_json::json!({"weight_map": {"w": "a.safetensors", "v": "b.safetensors"}});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let err = Checkpoint::open_dir(dir.path()).err().expect("must fail").to_string();
    assert!(err.contains("tensor 'w' also appears in an earlier shard"), "{err}");
}
