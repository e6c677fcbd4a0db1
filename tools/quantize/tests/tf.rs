//! OpenAI GPT-2 TensorFlow checkpoints as `quantize`'s input, on tests/data/tf-gpt2-tiny/ (made
//! by tools/fixtures/make_tf_checkpoint.py with TensorFlow's own TF1 Saver; golden.json holds
//! transformers' logits after `load_tf_weights_in_gpt2`):
//! - the tensor-bundle parsers (CRC-32C, protobuf varints and fields, the SSTable, the bundle
//!   protos) on hand-made bytes and on the fixture's real index;
//! - `quantize DIR OUT --type f32` gives transformers' logits within 1e-4, f16 and q8_0 convert;
//! - a broken checkpoint, or one without its tokenizer files, is a clear error, exit code 1, and
//!   leaves nothing behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

// The parsers (in quill's `tf` module) are plain functions without an error type: tested here
// directly.
#[allow(dead_code)]
#[path = "../../../src/tf/crc32c.rs"]
mod crc32c;
#[allow(dead_code)]
#[path = "../../../src/tf/proto.rs"]
mod proto;
#[allow(dead_code)]
#[path = "../../../src/tf/sstable.rs"]
mod sstable;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_quantize");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name)
}

const TINY: &str = "tf-gpt2-tiny";
const SHARDED: &str = "tf-gpt2-tiny/sharded";

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(TINY).join("golden.json")).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Parsers

#[test]
fn crc32c_known_values() {
    // RFC 3720 (iSCSI) B.4 and the usual check value.
    assert_eq!(crc32c::value(b"123456789"), 0xe306_9283);
    assert_eq!(crc32c::value(&[0u8; 32]), 0x8a91_36aa);
    assert_eq!(crc32c::value(&[0xffu8; 32]), 0x62a8_ab43);
    assert_eq!(crc32c::value(&(0u8..32).collect::<Vec<_>>()), 0x46dd_794e);
    assert_eq!(crc32c::value(b""), 0);
    // Slice-by-8 and the byte tail agree wherever the data is split.
    let text: Vec<u8> = (0..100u32).map(|i| (i * 37 % 251) as u8).collect();
    for split in 0..text.len() {
        assert_eq!(crc32c::extend(crc32c::value(&text[..split]), &text[split..]), crc32c::value(&text), "{split}");
    }
    assert_eq!(crc32c::mask(0), 0xa282_ead8);
    assert_eq!(crc32c::mask(0x8000), 0xa282_ead9);
}

#[test]
fn varints() {
    let read = |bytes: &[u8]| {
        let mut pos = 0;
        proto::varint(bytes, &mut pos).map(|v| (v, pos))
    };
    assert_eq!(read(&[0]), Ok((0, 1)));
    assert_eq!(read(&[0x7f, 0xff]), Ok((127, 1)));
    assert_eq!(read(&[0xac, 0x02]), Ok((300, 2)));
    let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(read(&max), Ok((u64::MAX, 10)));
    // -1 as an int32 field: sign-extended to ten bytes.
    assert_eq!(read(&max).unwrap().0 as i64, -1);
    assert!(read(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).unwrap_err().contains("64 bits"));
    assert!(read(&[0xff; 11]).unwrap_err().contains("64 bits"));
    assert!(read(&[0x80, 0x80]).unwrap_err().contains("truncated"));
    assert!(read(&[]).unwrap_err().contains("truncated"));
    let mut pos = 0;
    assert!(proto::varint32(&[0x80, 0x80, 0x80, 0x80, 0x10], &mut pos).unwrap_err().contains("32 bits"));
}

#[test]
fn protobuf_fields() {
    use proto::Value::*;
    // 1: varint 150; 2: "ab"; 6: fixed32; 9: fixed64.
    let msg = [0x08, 0x96, 0x01, 0x12, 0x02, b'a', b'b', 0x35, 1, 2, 3, 4, 0x49, 1, 0, 0, 0, 0, 0, 0, 0x80];
    assert_eq!(
        proto::fields(&msg).unwrap(),
        [(1, Varint(150)), (2, Bytes(b"ab")), (6, Fixed32(0x0403_0201)), (9, Fixed64(0x8000_0000_0000_0001))]
    );
    assert!(proto::fields(&[0x12, 0x05, b'a']).unwrap_err().contains("truncated"));
    assert!(proto::fields(&[0x35, 1, 2]).unwrap_err().contains("truncated"));
    assert!(proto::fields(&[0x0b]).unwrap_err().contains("wire type 3"));
    assert!(proto::fields(&[0x00, 0x00]).unwrap_err().contains("bad field key"));

    // BundleEntryProto { dtype: DT_HALF, shape: [1, 3], shard_id: 1, offset: 300, size: 6,
    // crc32c, an unknown field 15 }.
    let shape = [0x12, 0x02, 0x08, 0x01, 0x12, 0x02, 0x08, 0x03];
    let mut entry = vec![0x08, 19, 0x12, shape.len() as u8];
    entry.extend(shape);
    entry.extend([0x18, 1, 0x20, 0xac, 0x02, 0x28, 6, 0x35, 0xef, 0xbe, 0xad, 0xde, 0x78, 5]);
    let e = proto::bundle_entry(&entry).unwrap();
    assert_eq!((e.dtype, e.shape.clone(), e.shard_id, e.offset, e.size), (19, vec![1, 3], 1, 300, 6));
    assert_eq!((e.crc32c, e.slices), (0xdead_beef, 0));
    // A crc32c sent as a varint, a negative offset, an unknown dimension.
    assert!(proto::bundle_entry(&[0x30, 1]).unwrap_err().contains("crc32c"));
    let neg = [0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert!(proto::bundle_entry(&neg).unwrap_err().contains("offset"));
    let unknown_dim = [0x12, 0x0d, 0x12, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert!(proto::bundle_entry(&unknown_dim).unwrap_err().contains("unknown"));

    // BundleHeaderProto { num_shards: 2, endianness: BIG, version { producer: 1, bad_consumers: [3, 4] packed } }.
    let h = proto::bundle_header(&[0x08, 2, 0x10, 1, 0x1a, 0x06, 0x08, 1, 0x1a, 0x02, 3, 4]).unwrap();
    assert_eq!((h.num_shards, h.big_endian, h.producer, h.min_consumer), (2, true, 1, 0));
    assert_eq!(h.bad_consumers, [3, 4]);
    assert!(proto::bundle_header(&[0x10, 2]).unwrap_err().contains("endianness"));
}

/// A block by hand: `(shared, key suffix, value)` entries, then the restart points.
fn block(entries: &[(u8, &[u8], &[u8])], restarts: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    for (shared, key, value) in entries {
        b.extend([*shared, key.len() as u8, value.len() as u8]);
        b.extend(*key);
        b.extend(*value);
    }
    for r in restarts {
        b.extend(r.to_le_bytes());
    }
    b.extend((restarts.len() as u32).to_le_bytes());
    b
}

#[test]
fn blocks_expand_prefix_compressed_keys() {
    // "model/a", "model/b" (shares 6), "model/bc" (shares 7), then a restart: "x".
    let entries: [(u8, &[u8], &[u8]); 4] = [(0, b"model/a", b"1"), (6, b"b", b"22"), (7, b"c", b""), (0, b"x", b"4")];
    let b = block(&entries, &[0, 21]);
    let got = sstable::block_entries(&b).unwrap();
    let keys: Vec<&[u8]> = got.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(keys, [&b"model/a"[..], b"model/b", b"model/bc", b"x"]);
    let values: Vec<&[u8]> = got.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, [&b"1"[..], b"22", b"", b"4"]);

    // An empty block (TensorFlow's metaindex) has one restart point and no entries.
    assert!(sstable::block_entries(&block(&[], &[0])).unwrap().is_empty());
    // A restart in the middle of an entry, at an entry with a shared prefix, past the end.
    assert!(sstable::block_entries(&block(&entries, &[0, 5])).unwrap_err().contains("restart point 5"));
    assert!(sstable::block_entries(&block(&entries, &[0, 11])).unwrap_err().contains("restart point 11"));
    assert!(sstable::block_entries(&block(&entries, &[0, 21, 99])).is_err());
    assert!(sstable::block_entries(&block(&entries, &[21, 0])).unwrap_err().contains("first restart"));
    // More shared bytes than the previous key has; an entry running past the entries.
    assert!(sstable::block_entries(&block(&[(3, b"a", b"")], &[0])).unwrap_err().contains("shares 3"));
    let mut long = block(&[(0, b"a", b"xy")], &[0]);
    long[2] = 9;
    assert!(sstable::block_entries(&long).unwrap_err().contains("runs past"));
    assert!(sstable::block_entries(&[1, 0]).unwrap_err().contains("no restart count"));
    assert!(sstable::block_entries(&[0, 0, 0, 0x10]).unwrap_err().contains("do not fit"));
}

/// A table as LevelDB's builder writes one: `per_block` entries per data block, a restart every
/// `interval` entries, keys prefix-compressed in between; then the metaindex, the index and the
/// footer.
fn write_table(entries: &[(Vec<u8>, Vec<u8>)], per_block: usize, interval: usize) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn build(entries: &[(Vec<u8>, Vec<u8>)], interval: usize) -> Vec<u8> {
        let (mut b, mut restarts, mut prev): (Vec<u8>, Vec<u32>, &[u8]) = (vec![], vec![], &[]);
        for (i, (key, value)) in entries.iter().enumerate() {
            let shared = if i % interval == 0 {
                restarts.push(b.len() as u32);
                0
            } else {
                key.iter().zip(prev).take_while(|(a, b)| a == b).count()
            };
            for n in [shared, key.len() - shared, value.len()] {
                varint(&mut b, n as u64);
            }
            b.extend(&key[shared..]);
            b.extend(value);
            prev = key;
        }
        if restarts.is_empty() {
            restarts.push(0);
        }
        for r in &restarts {
            b.extend(r.to_le_bytes());
        }
        b.extend((restarts.len() as u32).to_le_bytes());
        b
    }
    fn append(file: &mut Vec<u8>, block: &[u8]) -> (u64, u64) {
        let at = file.len() as u64;
        file.extend(block);
        file.push(0);
        let crc = crc32c::mask(crc32c::value(&file[at as usize..]));
        file.extend(crc.to_le_bytes());
        (at, block.len() as u64)
    }
    let mut file = Vec::new();
    let mut index = Vec::new();
    for chunk in entries.chunks(per_block) {
        let (offset, size) = append(&mut file, &build(chunk, interval));
        let mut handle = Vec::new();
        varint(&mut handle, offset);
        varint(&mut handle, size);
        index.push((chunk.last().unwrap().0.clone(), handle));
    }
    let meta = append(&mut file, &build(&[], 1));
    let idx = append(&mut file, &build(&index, 1));
    let mut footer = Vec::new();
    for v in [meta.0, meta.1, idx.0, idx.1] {
        varint(&mut footer, v);
    }
    footer.resize(40, 0);
    footer.extend(sstable::MAGIC.to_le_bytes());
    file.extend(footer);
    file
}

#[test]
fn tables_of_several_data_blocks() {
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = (0..100)
        .map(|i| (format!("model/h{}/attn/c_attn/w{i:03}", i / 7).into_bytes(), format!("value {i}").into_bytes()))
        .collect();
    entries.sort();
    for (per_block, interval) in [(100, 16), (7, 3), (1, 1), (30, 100)] {
        let file = write_table(&entries, per_block, interval);
        assert_eq!(sstable::read_table(&file).unwrap(), entries, "{per_block} per block, restart every {interval}");
    }
    // Keys out of order across blocks.
    let mut swapped = entries.clone();
    swapped.swap(10, 50);
    assert!(sstable::read_table(&write_table(&swapped, 20, 4)).unwrap_err().contains("out of order"));
    // An empty table.
    assert!(sstable::read_table(&write_table(&[], 1, 1)).unwrap().is_empty());
}

fn index_bytes(dir: &str) -> Vec<u8> {
    std::fs::read(data(dir).join("model.ckpt.index")).unwrap()
}

#[test]
fn the_fixture_index_parses() {
    let index = index_bytes(TINY);
    let footer = sstable::footer(&index).unwrap();
    // TensorFlow writes one data block (tensors are few), the empty metaindex, then the index.
    let index_block = sstable::block(&index, footer.index, "index").unwrap();
    let index_entries = sstable::block_entries(index_block).unwrap();
    assert_eq!(index_entries.len(), 1);
    let mut pos = 0;
    let data_handle = sstable::BlockHandle::decode(index_entries[0].1, &mut pos).unwrap();
    assert_eq!(data_handle.offset, 0);
    assert_eq!(footer.metaindex.offset, data_handle.size + sstable::TRAILER_LEN as u64);
    assert!(sstable::block_entries(sstable::block(&index, footer.metaindex, "metaindex").unwrap()).unwrap().is_empty());
    // 29 entries with a restart every 16: the keys after the first of each run are prefix-compressed.
    let data_block = sstable::block(&index, data_handle, "data").unwrap();
    let restarts = u32::from_le_bytes(data_block[data_block.len() - 4..].try_into().unwrap());
    assert_eq!(restarts, 2);

    let table = sstable::read_table(&index).unwrap();
    let keys: Vec<String> = table.iter().map(|(k, _)| String::from_utf8(k.clone()).unwrap()).collect();
    let g = golden();
    let mut want = vec![String::new()];
    want.extend(g["models"][TINY]["tf_names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()));
    assert_eq!(keys, want);

    let header = proto::bundle_header(&table[0].1).unwrap();
    assert_eq!((header.num_shards, header.big_endian, header.producer, header.min_consumer), (1, false, 1, 0));

    // Every tensor: float32, the shapes of OpenAI's model.py, contiguous in the data file, and
    // its masked CRC-32C is that of its bytes.
    let shard = std::fs::read(data(TINY).join("model.ckpt.data-00000-of-00001")).unwrap();
    let mut covered = 0;
    for (key, value) in &table[1..] {
        let name = String::from_utf8_lossy(key);
        let e = proto::bundle_entry(value).unwrap();
        assert_eq!((e.dtype, e.shard_id, e.slices), (1, 0, 0), "{name}");
        let numel: u64 = e.shape.iter().product();
        assert_eq!(e.size, 4 * numel, "{name}");
        let bytes = &shard[e.offset as usize..(e.offset + e.size) as usize];
        assert_eq!(crc32c::mask(crc32c::value(bytes)), e.crc32c, "{name}");
        covered += e.size;
        let want: &[u64] = match name.rsplit('/').next().unwrap() {
            "wte" => &[50257, 8],
            "wpe" => &[32, 8],
            "g" | "b" if name.contains("ln_") => &[8],
            "w" if name.contains("c_attn") => &[1, 8, 24],
            "b" if name.contains("c_attn") => &[24],
            "w" if name.contains("c_fc") => &[1, 8, 32],
            "b" if name.contains("c_fc") => &[32],
            "w" if name.contains("mlp/c_proj") => &[1, 32, 8],
            "w" => &[1, 8, 8],
            _ => &[8],
        };
        assert_eq!(e.shape, want, "{name}");
    }
    assert_eq!(covered, shard.len() as u64);
}

#[test]
fn the_sharded_fixture_index_parses() {
    let table = sstable::read_table(&index_bytes(SHARDED)).unwrap();
    let header = proto::bundle_header(&table[0].1).unwrap();
    assert_eq!(header.num_shards, 2);
    let entries: HashMap<String, proto::BundleEntry> = table[1..]
        .iter()
        .map(|(k, v)| (String::from_utf8(k.clone()).unwrap(), proto::bundle_entry(v).unwrap()))
        .collect();
    assert_eq!(entries.len(), 28);
    // DT_HALF and DT_BFLOAT16, both data files used.
    assert_eq!((entries["model/wpe"].dtype, entries["model/wpe"].size), (19, 16 * 8 * 2));
    assert_eq!((entries["model/ln_f/g"].dtype, entries["model/ln_f/g"].size), (14, 16));
    assert_eq!(entries["model/wte"].shape, [64, 8]);
    let shards: std::collections::BTreeSet<u64> = entries.values().map(|e| e.shard_id).collect();
    assert_eq!(shards.into_iter().collect::<Vec<_>>(), [0, 1]);
    for (name, e) in &entries {
        let file = data(SHARDED).join(format!("model.ckpt.data-{:05}-of-00002", e.shard_id));
        let bytes = std::fs::read(file).unwrap();
        let bytes = &bytes[e.offset as usize..(e.offset + e.size) as usize];
        assert_eq!(crc32c::mask(crc32c::value(bytes)), e.crc32c, "{name}");
    }
}

#[test]
fn a_damaged_index_is_refused() {
    let index = index_bytes(TINY);
    let footer = sstable::footer(&index).unwrap();
    let data_end = footer.metaindex.offset as usize - sstable::TRAILER_LEN;

    let mut flipped = index.clone();
    flipped[40] ^= 1;
    assert!(sstable::read_table(&flipped).unwrap_err().contains("checksum"));
    let mut snappy = index.clone();
    snappy[data_end] = 1;
    assert!(sstable::read_table(&snappy).unwrap_err().contains("snappy"));
    let mut other = index.clone();
    other[data_end] = 7;
    assert!(sstable::read_table(&other).unwrap_err().contains("compression type 7"));
    assert!(sstable::read_table(&index[..index.len() - 1]).unwrap_err().contains("magic"));
    assert!(sstable::read_table(&index[..20]).unwrap_err().contains("shorter than"));
    // The index block's handle pointing past the blocks.
    let mut past = index.clone();
    let footer_at = past.len() - sstable::FOOTER_LEN;
    past[footer_at..footer_at + 40].fill(0);
    past[footer_at..footer_at + 6].copy_from_slice(&[0, 0, 0xe8, 0x07, 0x10, 0]); // metaindex 0+0, index 1000+16
    assert!(sstable::read_table(&past).unwrap_err().contains("runs past"));
}

// ---------------------------------------------------------------------------------------------
// The tool

struct Run {
    code: i32,
    stderr: String,
}

fn quantize(input: &Path, output: &Path, flags: &[&str]) -> Run {
    let out = Command::new(BIN).arg(input).arg(output).args(flags).output().expect("run quantize");
    Run { code: out.status.code().unwrap_or(-1), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

fn convert(input: &Path, output: &Path, ty: &str) {
    let r = quantize(input, output, &["--type", ty]);
    assert_eq!(r.code, 0, "quantize {} --type {ty}: {}", input.display(), r.stderr);
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Every position's logits of `ids`, flat `[seq, V]`.
fn logits(file: &Path, ids: &[u32]) -> Vec<f32> {
    let model = quill::model::Model::load(file, &Default::default()).unwrap();
    let mut past = model.sessions(1, None).unwrap();
    let input = quill::model::ForwardInput { input_ids: Some(ids), ..Default::default() };
    model.forward(&mut past, &input).unwrap().logits
}

/// The largest difference from the golden logits over every case; argmax checked where not a
/// near-tie at `tol`.
fn off_from_golden(file: &Path, model: &str, tol: f32) -> f32 {
    let g = golden();
    let m = &g["models"][model];
    let vocab = m["hparams"]["n_vocab"].as_u64().unwrap() as usize;
    let mut worst = 0.0f32;
    for case in m["cases"].as_array().unwrap() {
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = logits(file, &ids);
        assert_eq!(got.len(), ids.len() * vocab);
        let columns: Vec<usize> =
            case["columns"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        for (p, row) in case["logits"].as_array().unwrap().iter().enumerate() {
            let row_got = &got[p * vocab..(p + 1) * vocab];
            for (&c, want) in columns.iter().zip(row.as_array().unwrap()) {
                worst = worst.max((row_got[c] - want.as_f64().unwrap() as f32).abs());
            }
            let mut sorted = row_got.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > 2.0 * tol {
                let argmax = row_got.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
                assert_eq!(argmax as u64, case["argmax"][p].as_u64().unwrap(), "{model}: position {p}");
            }
        }
    }
    worst
}

/// A written file's metadata, and each tensor's type and shape.
type Header = (HashMap<String, String>, HashMap<String, (Dtype, Vec<usize>)>);

fn header_of(file: &Path) -> Header {
    let bytes = std::fs::read(file).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tensors = st.tensors().into_iter().map(|(n, t)| (n, (t.dtype(), t.shape().to_vec()))).collect();
    (meta.metadata().clone().unwrap_or_default(), tensors)
}

/// The sharded fixture has no tokenizer files: a copy with the tiny one's (the same real GPT-2
/// vocabulary), as OpenAI ships a folder.
fn complete(model: &str, tmp: &Path) -> PathBuf {
    if model == TINY {
        return data(TINY);
    }
    let dir = tmp.join(model.replace('/', "-"));
    std::fs::create_dir(&dir).unwrap();
    copy_files(&data(model), &dir);
    dir
}

/// Copies the files of `from` into `to`, and the tiny fixture's tokenizer files where missing.
fn copy_files(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    for f in ["encoder.json", "vocab.bpe"] {
        if !to.join(f).exists() {
            std::fs::copy(data(TINY).join(f), to.join(f)).unwrap();
        }
    }
}

#[test]
fn f32_gives_transformers_logits() {
    let tmp = tempfile::tempdir().unwrap();
    for model in [TINY, SHARDED] {
        let out = tmp.path().join(format!("{}.safetensors", model.replace('/', "-")));
        convert(&complete(model, tmp.path()), &out, "f32");
        let diff = off_from_golden(&out, model, 1e-4);
        eprintln!("{model} f32: logits off by {diff}");
        assert!(diff <= 1e-4, "{model} f32: logits off by {diff}");

        let (meta, tensors) = header_of(&out);
        assert_eq!(tensors.len(), 4 + 12 * 2);
        for (name, (dtype, _)) in &tensors {
            assert_eq!(*dtype, Dtype::F32, "{name}");
        }
        // Conv1D (in, out) → (out, in).
        assert_eq!(tensors["h.1.attn.c_attn.weight"].1, [24, 8]);
        assert_eq!(tensors["h.1.mlp.c_proj.weight"].1, [8, 32]);
        let config: Value = serde_json::from_str(&meta["quill.config"]).unwrap();
        let h = &golden()["models"][model]["hparams"];
        assert_eq!(config["model_type"], "gpt2");
        assert_eq!(config["vocab_size"], h["n_vocab"]);
        assert_eq!(config["n_positions"], h["n_ctx"]);
        assert_eq!(config["n_ctx"], h["n_ctx"]);
        for key in ["n_embd", "n_head", "n_layer"] {
            assert_eq!(config[key], h[key], "{key}");
        }
        assert_eq!(config["activation_function"], "gelu_new");
        assert_eq!(config["layer_norm_epsilon"], 1e-5);
        assert_eq!((config["bos_token_id"].as_u64(), config["eos_token_id"].as_u64()), (Some(50256), Some(50256)));
        assert_eq!(config["architectures"], serde_json::json!(["GPT2LMHeadModel"]));
        assert_eq!((meta["quill.format"].as_str(), meta["quill.type"].as_str()), ("1", "f32"));
    }

    // The tokenizer travels as vocab + merges, and quill reads it back.
    let out = tmp.path().join("tf-gpt2-tiny.safetensors");
    let (meta, _) = header_of(&out);
    let text = |f: &str| std::fs::read_to_string(data(TINY).join(f)).unwrap();
    assert!(meta["quill.vocab"] == text("encoder.json"));
    assert!(meta["quill.merges"] == text("vocab.bpe"));
    let tokenizer = quill::quill_file::tokenizer(&out, &meta).unwrap();
    assert_eq!(tokenizer.encode("Hello world"), [15496, 995]);
}

#[test]
fn a_folder_without_its_tokenizer_files_is_refused_up_front() {
    // The committed sharded fixture has neither file; a copy lacks one.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.safetensors");
    let r = quantize(&data(SHARDED), &out, &["--type", "f32"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("encoder.json and vocab.bpe are missing"), "{}", r.stderr);
    assert!(!out.exists());
    refused(
        TINY,
        "f16",
        |d| std::fs::remove_file(d.join("vocab.bpe")).unwrap(),
        &["vocab.bpe is missing", "copy them in"],
    );
}

#[test]
fn f16_and_q8_0_convert() {
    let tmp = tempfile::tempdir().unwrap();
    for (ty, tol) in [("f16", 5e-2), ("q8_0", 0.5)] {
        let out = tmp.path().join(format!("{ty}.safetensors"));
        convert(&data(TINY), &out, ty);
        let (meta, tensors) = header_of(&out);
        assert_eq!(meta["quill.type"], ty);
        // n_embd 8: k = 8 is not a multiple of 32, so q8_0 falls back to f16 there; mlp.c_proj's
        // k = 32 takes q8_0.
        assert_eq!(meta["quill.lm_head"], "f16");
        for (name, (dtype, _)) in &tensors {
            let want = if name.ends_with(".bias") || name.contains("ln_") {
                Dtype::F32
            } else if ty == "q8_0" && name.contains("mlp.c_proj.weight") {
                if name.ends_with(".scale") {
                    Dtype::F16
                } else {
                    Dtype::I8
                }
            } else {
                Dtype::F16
            };
            assert_eq!(*dtype, want, "{ty}: {name}");
        }
        let diff = off_from_golden(&out, TINY, tol);
        eprintln!("{ty}: logits off by {diff}");
        assert!(diff <= tol, "{ty}: logits off by {diff}");
    }
    let out = tmp.path().join("sharded-q8_0.safetensors");
    convert(&complete(SHARDED, tmp.path()), &out, "q8_0");
    assert!(off_from_golden(&out, SHARDED, 0.5) <= 0.5);
}

/// A copy of a fixture folder (with tokenizer files) to break.
fn copy_of(model: &str, tmp: &Path) -> PathBuf {
    let dir = tmp.join("in");
    std::fs::create_dir(&dir).unwrap();
    copy_files(&data(model), &dir);
    dir
}

/// Runs on a broken copy: exit code 1, an `error:` line holding every part of `want`, nothing written.
fn refused(model: &str, ty: &str, breaks: impl FnOnce(&Path), want: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_of(model, tmp.path());
    breaks(&dir);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let r = quantize(&dir, &out_dir.join("m.safetensors"), &["--type", ty]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{}", r.stderr));
    for w in want {
        assert!(line.contains(w), "expected '{w}' in: {line}");
    }
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_truncated_index_is_an_error() {
    let cut = |len: usize| move |d: &Path| edit(&d.join("model.ckpt.index"), |b| b.truncate(len));
    refused(TINY, "f32", cut(900), &["model.ckpt.index", "not a TensorFlow checkpoint index, or truncated"]);
    refused(TINY, "f16", cut(30), &["model.ckpt.index", "shorter than an SSTable footer"]);
    refused(TINY, "f32", cut(0), &["model.ckpt.index", "shorter than"]);
    // A flipped bit inside the data block.
    refused(TINY, "f32", |d| edit(&d.join("model.ckpt.index"), |b| b[100] ^= 4), &["model.ckpt.index", "checksum"]);
}

#[test]
fn a_missing_data_file_is_an_error() {
    refused(
        SHARDED,
        "f32",
        |d| std::fs::remove_file(d.join("model.ckpt.data-00001-of-00002")).unwrap(),
        &["model.ckpt.data-00001-of-00002", "data file 2 of 2", "missing"],
    );
    refused(
        TINY,
        "q8_0",
        |d| std::fs::remove_file(d.join("model.ckpt.data-00000-of-00001")).unwrap(),
        &["model.ckpt.data-00000-of-00001", "data file 1 of 1", "missing"],
    );
}

#[test]
fn a_tensor_past_its_data_file_is_an_error() {
    // model/wte is stored last: cutting the file leaves its entry pointing past the end.
    refused(
        TINY,
        "f32",
        |d| edit(&d.join("model.ckpt.data-00000-of-00001"), |b| b.truncate(b.len() - 100)),
        &["model.ckpt.index", "tensor 'model/wte'", "which has only 1616188 bytes", "truncated"],
    );
    // A changed byte of a tensor's data: its checksum.
    refused(
        TINY,
        "f16",
        |d| edit(&d.join("model.ckpt.data-00000-of-00001"), |b| b[7] ^= 0x10),
        &["model.ckpt.data-00000-of-00001", "tensor 'model/h0/attn/c_attn/b'", "checksum"],
    );
}

#[test]
fn bad_hparams_are_errors() {
    let hparams = |f: fn(&str) -> String| {
        move |d: &Path| {
            let p = d.join("hparams.json");
            let text = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, f(&text)).unwrap();
        }
    };
    refused(TINY, "f32", hparams(|t| t.replace("\"n_head\": 2,", "")), &["hparams.json", "'n_head' is missing"]);
    refused(TINY, "f32", hparams(|t| t.replace("\"n_embd\": 8", "\"n_embd\": \"8\"")), &["'n_embd' is \"8\""]);
    refused(
        TINY,
        "f32",
        hparams(|t| t.replace("\"n_head\": 2", "\"n_head\": 3")),
        &["hparams.json", "does not divide"],
    );
    refused(TINY, "f32", hparams(|_| "{".into()), &["hparams.json", "not valid JSON"]);
    // Sizes that disagree with the checkpoint name its tensor.
    refused(
        TINY,
        "f32",
        hparams(|t| t.replace("\"n_ctx\": 32", "\"n_ctx\": 64")),
        &["'model/wpe' has shape [32, 8], expected [64, 8]"],
    );
    refused(TINY, "f32", hparams(|t| t.replace("\"n_layer\": 2", "\"n_layer\": 3")), &["'h.2.ln_1.weight' is missing"]);
    // No hparams.json: the folder is not taken for a Hugging Face one silently.
    refused(
        TINY,
        "f32",
        |d| std::fs::remove_file(d.join("hparams.json")).unwrap(),
        &["no config.json", "model.ckpt.index without hparams.json"],
    );
}

#[test]
fn out_may_not_be_a_file_of_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_of(TINY, tmp.path());
    let data_file = dir.join("model.ckpt.data-00000-of-00001");
    let before = std::fs::read(&data_file).unwrap();
    let r = quantize(&dir, &data_file, &["--type", "f16", "--force"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is the input"), "{}", r.stderr);
    assert!(std::fs::read(&data_file).unwrap() == before);
}
