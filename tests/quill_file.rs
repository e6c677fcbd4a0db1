//! One-file Quill models (the format `quantize` writes, see src/quill_file.rs), made here by an
//! independent writer from the committed fixtures: f32 gives the folder's logits, q8_0 stays
//! close to them, the CLI runs the file with nothing beside it, and broken files are clear
//! errors.

mod common;

use std::path::{Path, PathBuf};

use common::{quill, read_safetensors, write_safetensors_with_metadata, RawTensor};
use quill::model::Model;
use quill_kernels::{f16, quantize_q8_0, BlockFormat, Q8_BLOCK};

/// GPT-2's Conv1D matrices, stored (in, out) in the folder and (out, in) in a Quill file.
fn is_conv1d(name: &str) -> bool {
    ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn f32s_of(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Writes `dir` (a GPT-2 folder with f32 weights) as a Quill file of `kind` ("f32", "f16",
/// "q8_0", or "blocks-" and a block format's name for the matrices, named in `quill.blocks`).
fn write_quill_file(dir: &Path, out: &Path, kind: &str, version: &str) {
    let mut tensors: Vec<RawTensor> = Vec::new();
    let mut blocks = serde_json::Map::new();
    for (name, dtype, shape, bytes) in read_safetensors(&dir.join("model.safetensors")) {
        let name = name.trim_start_matches("transformer.").to_string();
        if name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") {
            continue;
        }
        assert_eq!(dtype, "F32");
        let (mut shape, mut values) = (shape, f32s_of(&bytes));
        if is_conv1d(&name) {
            let (k, n) = (shape[0], shape[1]);
            values = (0..n * k).map(|i| values[(i % k) * n + i / k]).collect();
            shape = vec![n, k];
        }
        let matrix = is_conv1d(&name) || name == "wte.weight";
        let keep_head = kind == "q8_0-head-f16" && name == "wte.weight";
        let kind = if kind == "q8_0-head-f16" { "q8_0" } else { kind };
        if (kind == "f16" && (matrix || name == "wpe.weight")) || (kind == "q8_0" && name == "wpe.weight") || keep_head
        {
            let bytes = values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect();
            tensors.push((name, "F16".into(), shape, bytes));
        } else if let (Some(format), true) = (block_format(kind), matrix) {
            let row = format.row_bytes(shape[1]).unwrap();
            let mut bytes = vec![0u8; shape[0] * row];
            format.quantize_row(&values, &mut bytes);
            blocks.insert(name.clone(), format.name().into());
            tensors.push((name, "U8".into(), vec![shape[0], row], bytes));
        } else if kind == "q8_0" && matrix {
            let (mut q, mut d) = (vec![0i8; values.len()], vec![f16::ZERO; values.len() / Q8_BLOCK]);
            quantize_q8_0(&values, &mut q, &mut d);
            tensors.push((
                format!("{name}.scale"),
                "F16".into(),
                vec![shape[0], shape[1] / Q8_BLOCK],
                d.iter().flat_map(|h| h.to_le_bytes()).collect(),
            ));
            tensors.push((name, "I8".into(), shape, q.iter().map(|&v| v as u8).collect()));
        } else {
            tensors.push((name, "F32".into(), shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
        }
    }
    // F32, then F16, then I8: every tensor naturally aligned.
    tensors.sort_by_key(|t| match t.1.as_str() {
        "F32" => 0,
        "F16" => 1,
        _ => 2,
    });
    let blocks = serde_json::Value::Object(blocks).to_string();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (config, vocab, merges) = (read("config.json"), read("vocab.json"), read("merges.txt"));
    let meta = [
        ("quill.format", version),
        ("quill.type", kind),
        ("quill.lm_head", kind),
        ("quill.config", config.as_str()),
        ("quill.vocab", vocab.as_str()),
        ("quill.merges", merges.as_str()),
        ("quill.blocks", blocks.as_str()),
    ];
    write_safetensors_with_metadata(out, &tensors, 64, &meta);
}

fn last_logits(model: &Model, ids: &[u32]) -> Vec<f32> {
    model.session(None).unwrap().feed(ids).unwrap().to_vec()
}

/// The block format of a `kind` "blocks-FORMAT".
fn block_format(kind: &str) -> Option<BlockFormat> {
    kind.strip_prefix("blocks-").and_then(BlockFormat::parse)
}

fn make(kind: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(format!("model-{kind}.safetensors"));
    let version = if block_format(kind).is_some() { "2" } else { "1" };
    write_quill_file(&common::hub(), &file, kind, version);
    (tmp, file)
}

#[test]
fn block_format_files_stay_close_and_bad_block_metadata_is_a_clear_error() {
    let folder = Model::load(&common::hub(), &Default::default()).unwrap();
    let ids: Vec<u32> = vec![464, 3290, 318, 257, 1332, 286, 262, 1110, 13, 198, 464, 1893];
    let want = last_logits(&folder, &ids);
    // Only whole blocks of 32 fit the hub's width of 32 (wte included): q4_0, q5_0, q5_1, q8_0.
    let mut errors = Vec::new();
    for format in ["q4_0", "q5_1", "q8_0"] {
        let (_t, file) = make(&format!("blocks-{format}"));
        let model = Model::load(&file, &Default::default()).unwrap();
        assert_eq!(model.stored_dtype(), quill::checkpoint::DType::Blocks(BlockFormat::parse(format).unwrap()));
        let (d, _) = common::max_abs_diff(&last_logits(&model, &ids), &want);
        eprintln!("{format}: off by {d}");
        errors.push(d);
    }
    // The fixture's logits are sharp (a few units apart): q8_0 stays within 0.5, and fewer bits
    // stray further.
    assert!(errors[2] < 0.5 && errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
    let (code, out, err) = quill(&["generate", "-m", make("blocks-q4_0").1.to_str().unwrap(), "Hello", "-n", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Hello"), "{out}");

    // The metadata (JSON inside a JSON string, so its quotes are escaped) names a tensor that is
    // missing, a format that does not exist, a tensor that is not U8 rows, or a format whose
    // blocks do not fit the rows. Each edit keeps
    // the header's length.
    let (_t, good) = make("blocks-q4_0");
    let bytes = std::fs::read(&good).unwrap();
    let entry = r#"\"h.0.mlp.c_fc.weight\":\"q4_0\""#;
    let broken = |to: &str| {
        assert_eq!(entry.len(), to.len());
        let at = bytes.windows(entry.len()).position(|w| w == entry.as_bytes()).expect("the entry is in the header");
        let mut edited = bytes.clone();
        edited[at..at + to.len()].copy_from_slice(to.as_bytes());
        let path = good.with_file_name("broken.safetensors");
        std::fs::write(&path, edited).unwrap();
        let (code, _, err) = quill(&["info", "-m", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{err}");
        err
    };
    let err = broken(r#"\"h.0.mlp.c_fx.weight\":\"q4_0\""#);
    assert!(err.contains("'h.0.mlp.c_fx.weight'") && err.contains("missing"), "{err}");
    let err = broken(r#"\"h.0.mlp.c_fc.weight\":\"q3_0\""#);
    assert!(err.contains("unknown format") && err.contains("q3_0"), "{err}");
    let err = broken(r#"\"h.0.mlp.c_fc.bias\"  :\"q4_0\""#);
    assert!(err.contains("'h.0.mlp.c_fc.bias' should hold q4_0 blocks as U8") && err.contains("F32"), "{err}");
    // A format whose blocks do not fit the matrix's rows (32 inputs, 256-weight blocks).
    let err = broken(r#"\"h.0.mlp.c_fc.weight\":\"q4_k\""#);
    assert!(err.contains("'h.0.mlp.c_fc.weight' is q4_k but its rows of 32 are not whole blocks of 256"), "{err}");
}

#[test]
fn an_f32_quill_file_gives_the_folders_logits_and_q8_0_stays_close() {
    let folder = Model::load(&common::hub(), &Default::default()).unwrap();
    let ids: Vec<u32> = vec![464, 3290, 318, 257, 1332, 286, 262, 1110, 13, 198, 464, 1893];
    let want = last_logits(&folder, &ids);
    let (_t1, f32_file) = make("f32");
    let model = Model::load(&f32_file, &Default::default()).unwrap();
    let (d, _) = common::max_abs_diff(&last_logits(&model, &ids), &want);
    assert!(d < 1e-4, "f32 Quill file: off by {d}");

    let (_t2, q8_file) = make("q8_0");
    let model = Model::load(&q8_file, &Default::default()).unwrap();
    assert_eq!(model.stored_dtype().name(), "q8_0");
    let got = last_logits(&model, &ids);
    let kl = quill::math::kl_divergence_f64(&log_softmax(&want), &log_softmax(&got));
    // Quantized activations (avx512vnni) add their rounding: see the quality-bounds test below.
    let int_activations = quill_kernels::kernels().unwrap().level().quantizes_q8_activations(ids.len());
    assert!(kl < if int_activations { 2.5e-3 } else { 2e-3 }, "q8_0: KL {kl}");
    let argmax = |v: &[f32]| quill::math::argmax(v);
    assert_eq!(argmax(&got), argmax(&want));
    // A decode step reads int8 values and f16 scales: 34 bytes per 32 weights instead of 128.
    let f32_bytes = Model::load(&f32_file, &Default::default()).unwrap().weight_bytes_per_token() as f64;
    let ratio = model.weight_bytes_per_token() as f64 / f32_bytes;
    assert!((ratio - 34.0 / 128.0).abs() < 1e-9, "bytes per token ratio {ratio}");
}

fn log_softmax(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    quill::math::log_softmax_f64_into(x, &mut out);
    out
}

#[test]
fn the_cli_runs_a_quill_file_with_nothing_beside_it() {
    let (_t, file) = make("f32");
    let file = file.to_str().unwrap();
    let hub = common::hub();
    let args = |m: &str| {
        vec!["generate".to_string(), "-m".into(), m.into(), "The Manhattan bridge".into(), "-n".into(), "12".into()]
    };
    let folder_args = args(hub.to_str().unwrap());
    let file_args = args(file);
    let (c1, want, e1) = quill(&folder_args.iter().map(String::as_str).collect::<Vec<_>>());
    let (c2, got, e2) = quill(&file_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!((c1, c2), (0, 0), "{e1}{e2}");
    assert_eq!(got, want);
    let (code, out, err) = quill(&["tokenize", "-m", file, "Hello world"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "15496 995");
    let (_t, q8) = make("q8_0");
    let (code, out, err) = quill(&["info", "-m", q8.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("q8_0"), "{out}");
}

#[test]
fn broken_quill_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let newer = tmp.path().join("newer.safetensors");
    write_quill_file(&common::hub(), &newer, "f32", "3");
    let (code, _, err) = quill(&["info", "-m", newer.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("format version 3 is not supported") && err.contains("versions 1 and 2"), "{err}");

    // A plain safetensors file (no Quill metadata).
    let plain = common::hub().join("model.safetensors");
    let (code, _, err) = quill(&["info", "-m", plain.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("without Quill metadata"), "{err}");

    // q8_0 values whose scales are missing, or of the wrong shape.
    let (_t, q8) = make("q8_0");
    let tensors = read_safetensors(&q8);
    let bytes = std::fs::read(&q8).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta: Vec<(String, String)> = header["__metadata__"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let victim = "h.0.mlp.c_fc.weight.scale";
    let missing: Vec<RawTensor> = tensors.iter().filter(|t| t.0 != victim).cloned().collect();
    let path = tmp.path().join("missing.safetensors");
    write_safetensors_with_metadata(&path, &missing, 64, &meta);
    let (code, _, err) = quill(&["info", "-m", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("its scales 'h.0.mlp.c_fc.weight.scale' are missing"), "{err}");

    let reshaped: Vec<RawTensor> = tensors
        .iter()
        .cloned()
        .map(|mut t| {
            if t.0 == victim {
                t.2 = vec![t.2[1], t.2[0]];
            }
            t
        })
        .collect();
    write_safetensors_with_metadata(&path, &reshaped, 64, &meta);
    let (code, _, err) = quill(&["info", "-m", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("'h.0.mlp.c_fc.weight.scale' has shape"), "{err}");
}

/// Mean KL divergence from the f32 model, top-1 agreement, and the largest f32 logit gap between
/// the two models' choices where they disagree, over every position of `ids`: fed at once (the
/// prompt kernels) or, with `decode`, one token at a time (the decode kernels).
fn quality(base: &Model, model: &Model, ids: &[u32], decode: bool) -> (f64, f64, f32) {
    let v = base.config().vocab_size;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    base.session(None).unwrap().feed_all_logits(ids, &mut a).unwrap();
    if decode {
        let mut session = model.session(None).unwrap();
        for &id in ids {
            b.extend_from_slice(session.feed(&[id]).unwrap());
        }
    } else {
        model.session(None).unwrap().feed_all_logits(ids, &mut b).unwrap();
    }
    let (mut kl, mut agree, mut gap) = (0.0, 0, 0.0f32);
    for (x, y) in a.chunks_exact(v).zip(b.chunks_exact(v)) {
        kl += quill::math::kl_divergence_f64(&log_softmax(x), &log_softmax(y));
        let (i, j) = (quill::math::argmax(x), quill::math::argmax(y));
        agree += (i == j) as usize;
        gap = gap.max(x[i] - x[j]);
    }
    let rows = ids.len() as f64;
    (kl / rows, agree as f64 / rows, gap)
}

/// The quantization issue's quality bounds, on the committed GPT-2 fixture: f16 top-1 agreement
/// ≥ 99.9% and mean KL ≤ 1e-5; q8_0 mean KL ≤ 2e-3. The fixture's random weights leave near
/// ties among 50257 logits, so q8_0 flips 1–2 of its 64 choices (the 99% top-1 target is
/// measured on the demo model, docs/QUALITY.md); a flip is only allowed at a near tie: the f32
/// logits of the two choices within 0.15 (the logits here have a std of a few units).
///
/// A level that quantizes the activations of q8_0 matmuls (avx512vnni; avx2dot when decoding)
/// adds their rounding: on this fixture, whose rows of 32 are a single block each, the mean KL
/// is 2.2e-3 (the trained demo model: 2.7e-5) and a flip's gap 0.23, so q8_0 there is held to
/// 2.5e-3 and 0.3.
#[test]
fn f16_and_q8_0_stay_within_the_quality_bounds() {
    let base = Model::load(&common::hub(), &Default::default()).unwrap();
    let text = std::fs::read_to_string(common::data_dir().join("score-text.txt")).unwrap();
    let tokenizer = quill::tokenizer::Tokenizer::from_model_dir(&common::hub()).unwrap();
    let ids = tokenizer.encode(&text);
    let ids = &ids[..base.config().n_positions.min(ids.len())];
    let mut failed = Vec::new();
    let level = quill_kernels::kernels().unwrap().level();
    for (kind, max_kl, min_top1) in [("f16", 1e-5, 0.999), ("q8_0", 2e-3, 0.95), ("q8_0-head-f16", 2e-3, 0.95)] {
        let (_t, file) = make(kind);
        let model = Model::load(&file, &Default::default()).unwrap();
        for decode in [false, true] {
            let int_activations = level.quantizes_q8_activations(if decode { 1 } else { ids.len() });
            let (max_kl, max_gap) = if int_activations && kind != "f16" { (2.5e-3, 0.3) } else { (max_kl, 0.15) };
            let (kl, top1, gap) = quality(&base, &model, ids, decode);
            let path = if decode { "decode" } else { "prompt" };
            println!(
                "{kind} {path}: mean KL {kl:.3e}, top-1 agreement {:.2}% over {} positions, largest gap at a flip {gap:.4}",
                top1 * 100.0,
                ids.len()
            );
            if kl > max_kl || top1 < min_top1 || gap > max_gap {
                failed.push(format!("{kind} {path}: mean KL {kl:e}, top-1 {top1}, gap {gap}"));
            }
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}
