//! The `quantize` binary on the committed fixtures: every fixture in every type gives a file that
//! follows the Quill format (v1) tensor by tensor, checked against the source read here
//! independently; quill runs it; and every refusal is a clear error that leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use half::f16;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

const BIN: &str = env!("CARGO_BIN_EXE_quantize");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name)
}

/// The fixtures: GPT-2 as the hub ships it (f32, bare names, vocab + merges); GPT-2 as
/// save_pretrained writes it (f16, `transformer.` names, tokenizer.json, n_embd 48); GPT-Neo;
/// GPT-2 with n_inner 40 and no tokenizer (its mlp.c_proj has k = 40).
const FIXTURES: [&str; 4] = ["tiny-gpt2-hub", "tiny-gpt2-saved", "tiny-gpt-neo", "forward/gpt2-inner-relu"];
const TYPES: [&str; 3] = ["f32", "f16", "q8_0"];

struct Run {
    code: i32,
    stderr: String,
}

fn quantize(args: &[&Path], flags: &[&str]) -> Run {
    let out = Command::new(BIN).args(args).args(flags).output().expect("run quantize");
    Run { code: out.status.code().unwrap_or(-1), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

/// Runs and expects success.
fn convert(input: &Path, output: &Path, flags: &[&str]) {
    let r = quantize(&[input, output], flags);
    assert_eq!(r.code, 0, "quantize {} {flags:?}: {}", input.display(), r.stderr);
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn assert_no_temp_file(dir: &Path) {
    let names = listing(dir);
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "temporary file left in {}: {names:?}", dir.display());
}

/// A tensor as f32 values (F32, F16 and BF16 sources).
fn floats(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => panic!("not a float tensor: {other:?}"),
    }
}

/// An owned tensor: dtype, shape, little-endian bytes.
type Raw = (Dtype, Vec<usize>, Vec<u8>);

fn read_tensors(bytes: &[u8]) -> BTreeMap<String, Raw> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    st.tensors().into_iter().map(|(n, t)| (n, (t.dtype(), t.shape().to_vec(), t.data().to_vec()))).collect()
}

fn write_tensors(path: &Path, tensors: &BTreeMap<String, Raw>) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// The metadata of a written file.
fn metadata_of(bytes: &[u8]) -> HashMap<String, String> {
    let (_, m) = SafeTensors::read_metadata(bytes).unwrap();
    m.metadata().clone().unwrap_or_default()
}

fn is_legacy_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")
}

/// The matmul weights of the blocks, by bare name.
fn is_matrix(name: &str) -> bool {
    name.starts_with("h.")
        && [".c_attn.weight", ".c_proj.weight", ".c_fc.weight", "_proj.weight"].iter().any(|s| name.ends_with(s))
}

/// The output type the format's rules give a (bare-named) tensor of output shape `shape`.
fn expected_type(name: &str, shape: &[usize], ty: &str, lm_head: &str) -> &'static str {
    let matrix = |t: &str| match t {
        "q8_0" if !shape[1].is_multiple_of(32) => "f16",
        "q8_0" => "q8_0",
        "f16" => "f16",
        _ => "f32",
    };
    if is_matrix(name) {
        matrix(ty)
    } else if name == "wte.weight" || name == "lm_head.weight" {
        matrix(lm_head)
    } else if name == "wpe.weight" {
        if ty == "f32" {
            "f32"
        } else {
            "f16"
        }
    } else {
        "f32"
    }
}

/// Checks `out` (written from the folder `dir` with `ty` and `lm_head`) against the folder:
/// metadata, every tensor's type, shape and values, and alignment.
fn check_file(dir: &Path, out: &Path, ty: &str, lm_head: &str) {
    let ctx = format!("{} → {ty} (lm_head {lm_head})", dir.display());
    let bytes = std::fs::read(out).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + header_len) % 64, 0, "{ctx}: data start");
    let (_, info) = SafeTensors::read_metadata(&bytes).unwrap();
    for (name, t) in info.tensors() {
        let size = match t.dtype {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
            _ => 1,
        };
        assert_eq!(t.data_offsets.0 % size, 0, "{ctx}: {name} offset {:?}", t.data_offsets);
    }

    let text = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let config_text = text("config.json").unwrap();
    let config: serde_json::Value = serde_json::from_str(&config_text).unwrap();
    let gpt2 = config["model_type"] == "gpt2";
    let n_embd = config.get("n_embd").or(config.get("hidden_size")).unwrap().as_u64().unwrap() as usize;
    let actual_lm_head = if lm_head == "q8_0" && !n_embd.is_multiple_of(32) { "f16" } else { lm_head };
    let mut want_meta = HashMap::from([
        ("quill.format", Some("1".to_string())),
        ("quill.type", Some(ty.to_string())),
        ("quill.lm_head", Some(actual_lm_head.to_string())),
        ("quill.config", Some(config_text)),
        ("quill.generation_config", text("generation_config.json")),
    ]);
    match (text("vocab.json"), text("merges.txt"), text("tokenizer.json")) {
        (Some(v), Some(m), _) => {
            want_meta.insert("quill.vocab", Some(v));
            want_meta.insert("quill.merges", Some(m));
        }
        (_, _, json) => {
            want_meta.insert("quill.tokenizer_json", json);
        }
    }
    let want_meta: HashMap<String, String> =
        want_meta.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect();
    let meta = metadata_of(&bytes);
    assert_eq!(meta.keys().collect::<std::collections::BTreeSet<_>>(), want_meta.keys().collect(), "{ctx}");
    for (k, v) in &want_meta {
        assert!(meta[k] == *v, "{ctx}: metadata {k} differs from the folder's file");
    }

    let written = read_tensors(&bytes);
    let source_bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let source = read_tensors(&source_bytes);
    let mut expected_names = Vec::new();
    for (src_name, (dtype, src_shape, raw)) in &source {
        let name = src_name.strip_prefix("transformer.").unwrap_or(src_name);
        // A tied lm_head saved beside wte is dropped (checked by lm_head_type_and_untied_lm_head).
        if is_legacy_buffer(name) || (name == "lm_head.weight" && !written.contains_key(name)) {
            continue;
        }
        let mut values = floats(*dtype, raw);
        let mut shape = src_shape.clone();
        if gpt2 && is_matrix(name) {
            // Conv1D (in, out) → (out, in).
            let (k, n) = (shape[0], shape[1]);
            values = (0..n * k).map(|x| values[(x % k) * n + x / k]).collect();
            shape = vec![n, k];
        }
        let want = expected_type(name, &shape, ty, lm_head);
        let (out_dtype, out_shape, out_raw) =
            written.get(name).unwrap_or_else(|| panic!("{ctx}: tensor {name} is missing"));
        assert_eq!(out_shape, &shape, "{ctx}: {name} shape");
        expected_names.push(name.to_string());
        match want {
            "f32" => {
                assert_eq!(*out_dtype, Dtype::F32, "{ctx}: {name}");
                assert!(floats(Dtype::F32, out_raw) == values, "{ctx}: {name} values differ");
            }
            "f16" => {
                assert_eq!(*out_dtype, Dtype::F16, "{ctx}: {name}");
                let rounded: Vec<f32> = values.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
                assert!(floats(Dtype::F16, out_raw) == rounded, "{ctx}: {name} values differ");
            }
            _ => {
                assert_eq!(*out_dtype, Dtype::I8, "{ctx}: {name}");
                let scale_name = format!("{name}.scale");
                let (sd, ss, sraw) = &written[&scale_name];
                assert_eq!((*sd, ss.clone()), (Dtype::F16, vec![shape[0], shape[1] / 32]), "{ctx}: {scale_name}");
                expected_names.push(scale_name);
                let scales = floats(Dtype::F16, sraw);
                for (x, (&q, &want)) in out_raw.iter().zip(&values).enumerate() {
                    let d = scales[x / 32];
                    let got = q as i8 as f32 * d;
                    assert!(
                        (got - want).abs() <= 0.5 * d * (1.0 + 1e-5) + 1e-7,
                        "{ctx}: {name}[{x}] = {got}, source {want}, scale {d}"
                    );
                }
            }
        }
    }
    expected_names.sort();
    assert_eq!(written.keys().cloned().collect::<Vec<_>>(), expected_names, "{ctx}: tensor names");
}

#[test]
fn every_fixture_in_every_type_follows_the_format() {
    for fixture in FIXTURES {
        for ty in TYPES {
            let tmp = tempfile::tempdir().unwrap();
            let out = tmp.path().join("model.safetensors");
            convert(&data(fixture), &out, &["--type", ty]);
            check_file(&data(fixture), &out, ty, ty);
            assert_eq!(listing(tmp.path()), ["model.safetensors"]);
            eprintln!("{fixture} {ty}: {} bytes", std::fs::metadata(&out).unwrap().len());
        }
    }
}

#[test]
fn gpt2_matrices_are_transposed_and_k_40_falls_back_to_f16() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.safetensors");
    convert(&data("tiny-gpt2-hub"), &out, &["--type", "f32"]);
    let written = read_tensors(&std::fs::read(&out).unwrap());
    let source = read_tensors(&std::fs::read(data("tiny-gpt2-hub/model.safetensors")).unwrap());
    let (_, in_shape, in_raw) = &source["h.1.attn.c_attn.weight"];
    let (_, out_shape, out_raw) = &written["h.1.attn.c_attn.weight"];
    assert_eq!((in_shape.as_slice(), out_shape.as_slice()), (&[32, 96][..], &[96, 32][..]));
    let (w_in, w_out) = (floats(Dtype::F32, in_raw), floats(Dtype::F32, out_raw));
    for (i, j) in [(0, 0), (3, 70), (31, 95), (17, 2)] {
        assert_eq!(w_out[j * 32 + i], w_in[i * 96 + j], "W_out[{j}][{i}]");
    }

    let r = quantize(&[&data("forward/gpt2-inner-relu"), &tmp.path().join("relu.safetensors")], &["--type", "q8_0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stderr.lines().find(|l| l.contains("h.0.mlp.c_proj.weight")).unwrap();
    assert!(line.contains("f16") && line.contains("k = 40"), "{line}");
    assert!(r.stderr.contains("no tokenizer"), "{}", r.stderr);
    let written = read_tensors(&std::fs::read(tmp.path().join("relu.safetensors")).unwrap());
    assert_eq!(written["h.0.mlp.c_proj.weight"].0, Dtype::F16);
    assert_eq!(written["h.0.mlp.c_fc.weight"].0, Dtype::I8);
    assert!(!written.contains_key("h.0.mlp.c_proj.weight.scale"));
}

#[test]
fn lm_head_type_and_untied_lm_head() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = data("tiny-gpt2-hub");
    let out = tmp.path().join("a.safetensors");
    convert(&hub, &out, &["--type", "q8_0", "--lm-head", "f16"]);
    check_file(&hub, &out, "q8_0", "f16");

    // A folder whose lm_head.weight differs from wte (untied) keeps it, typed as wte; one whose
    // lm_head.weight is wte's data again (tied, saved twice) drops it.
    let mut tensors = read_tensors(&std::fs::read(hub.join("model.safetensors")).unwrap());
    let (d, s, mut head) = tensors["wte.weight"].clone();
    for folder in ["tied", "untied"] {
        let dir = tmp.path().join(folder);
        std::fs::create_dir(&dir).unwrap();
        for f in ["config.json", "vocab.json", "merges.txt"] {
            std::fs::copy(hub.join(f), dir.join(f)).unwrap();
        }
        if folder == "untied" {
            head[..4].copy_from_slice(&1.5f32.to_le_bytes());
        }
        tensors.insert("lm_head.weight".into(), (d, s.clone(), head.clone()));
        write_tensors(&dir.join("model.safetensors"), &tensors);
        let out = tmp.path().join(format!("{folder}.safetensors"));
        convert(&dir, &out, &["--type", "f16", "--lm-head", "q8_0"]);
        let written = read_tensors(&std::fs::read(&out).unwrap());
        assert_eq!(written["wte.weight"].0, Dtype::I8);
        assert_eq!(metadata_of(&std::fs::read(&out).unwrap())["quill.lm_head"], "q8_0");
        if folder == "tied" {
            assert!(!written.contains_key("lm_head.weight"));
            check_file(&dir, &out, "f16", "q8_0");
        } else {
            let (hd, hs, hq) = &written["lm_head.weight"];
            assert_eq!((*hd, hs.as_slice()), (Dtype::I8, &[50257, 32][..]));
            let scale = f16::from_le_bytes(written["lm_head.weight.scale"].2[..2].try_into().unwrap()).to_f32();
            assert!((hq[0] as i8 as f32 * scale - 1.5).abs() <= 0.5 * scale, "lm_head[0]");
        }
    }
}

#[test]
fn a_sharded_folder_gives_the_same_file() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = data("tiny-gpt2-hub");
    let dir = tmp.path().join("sharded");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "vocab.json", "merges.txt"] {
        std::fs::copy(hub.join(f), dir.join(f)).unwrap();
    }
    let tensors = read_tensors(&std::fs::read(hub.join("model.safetensors")).unwrap());
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in tensors.into_iter().enumerate() {
        let shard = if i % 2 == 0 { "model-00001-of-00002.safetensors" } else { "model-00002-of-00002.safetensors" };
        weight_map.insert(name.clone(), shard.into());
        (if i % 2 == 0 { &mut a } else { &mut b }).insert(name, t);
    }
    write_tensors(&dir.join("model-00001-of-00002.safetensors"), &a);
    write_tensors(&dir.join("model-00002-of-00002.safetensors"), &b);
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();

    for ty in TYPES {
        let (one, sharded) = (tmp.path().join("one"), tmp.path().join("sharded.safetensors"));
        convert(&hub, &one, &["--type", ty]);
        // One worker thread gives the same bytes as the default pool.
        convert(&dir, &sharded, &["--type", ty, "--force", "--threads", "1"]);
        assert!(std::fs::read(&one).unwrap() == std::fs::read(&sharded).unwrap(), "{ty}: files differ");
        std::fs::remove_file(&one).unwrap();
    }
}

#[test]
fn a_quill_file_as_input_is_not_transposed_again() {
    let tmp = tempfile::tempdir().unwrap();
    for fixture in ["tiny-gpt2-hub", "tiny-gpt-neo"] {
        let (f32_file, via) = (tmp.path().join("f32.safetensors"), tmp.path().join("via.safetensors"));
        convert(&data(fixture), &f32_file, &["--type", "f32", "--force"]);
        for ty in TYPES {
            // f32 → Quill f32 → ty is exactly folder → ty.
            let direct = tmp.path().join(format!("direct-{ty}.safetensors"));
            convert(&data(fixture), &direct, &["--type", ty, "--force"]);
            convert(&f32_file, &via, &["--type", ty, "--force"]);
            assert!(std::fs::read(&direct).unwrap() == std::fs::read(&via).unwrap(), "{fixture} {ty}");
        }
        // A f16 Quill file as input works too; its generation config and tokenizer carry over.
        let f16_file = tmp.path().join("f16.safetensors");
        convert(&data(fixture), &f16_file, &["--type", "f16", "--force"]);
        convert(&f16_file, &via, &["--type", "f32", "--force"]);
        let (a, b) = (metadata_of(&std::fs::read(&f16_file).unwrap()), metadata_of(&std::fs::read(&via).unwrap()));
        for (k, v) in &a {
            if k != "quill.type" && k != "quill.lm_head" {
                assert!(b.get(k) == Some(v), "{fixture}: metadata {k}");
            }
        }
        assert_eq!(a.len(), b.len());
    }
}

/// quill itself maps the files: f32 gives the folder's logits, f16 and q8_0 close ones.
#[test]
fn quill_runs_the_written_files() {
    use quill::model::Model;
    let tmp = tempfile::tempdir().unwrap();
    let ids = [464u32, 3290, 318, 257, 1332, 286, 262, 1110, 13, 198];
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    for fixture in ["tiny-gpt2-hub", "tiny-gpt-neo", "tiny-gpt2-saved"] {
        let folder = Model::load(&data(fixture), &Default::default()).unwrap();
        let want = folder.session(None).unwrap().feed(&ids).unwrap().to_vec();
        for ty in TYPES {
            let out = tmp.path().join(format!("{}-{ty}.safetensors", fixture.replace('/', "-")));
            convert(&data(fixture), &out, &["--type", ty]);
            let model = Model::load(&out, &Default::default()).unwrap();
            let got = model.session(None).unwrap().feed(&ids).unwrap().to_vec();
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let tol = match ty {
                "f32" => 1e-4,
                "f16" => 5e-2,
                _ => 0.5,
            };
            eprintln!("{fixture} {ty}: logits off by {diff}");
            assert!(diff <= tol, "{fixture} {ty}: logits off by {diff}");
            // Random weights leave near-ties among the top logits, which q8_0 may swap.
            if ty != "q8_0" {
                assert_eq!(argmax(&got), argmax(&want), "{fixture} {ty}");
            }
        }
    }
}

#[test]
fn refuses_an_existing_out_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.safetensors");
    std::fs::write(&out, b"keep me").unwrap();
    let r = quantize(&[&data("tiny-gpt2-hub"), &out], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("error: ") && r.stderr.contains("exists") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    assert_eq!(listing(tmp.path()), ["m.safetensors"]);

    convert(&data("tiny-gpt2-hub"), &out, &["--type", "f16", "--force"]);
    check_file(&data("tiny-gpt2-hub"), &out, "f16", "f16");
    assert_eq!(listing(tmp.path()), ["m.safetensors"]);
}

#[test]
fn refuses_to_write_over_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "vocab.json", "merges.txt", "model.safetensors"] {
        std::fs::copy(data("tiny-gpt2-hub").join(f), dir.join(f)).unwrap();
    }
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    // The folder's weights, spelled another way, even with --force.
    let sneaky = dir.join("..").join("model").join(".").join("model.safetensors");
    let r = quantize(&[&dir, &sneaky], &["--type", "f16", "--force"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is the input"), "{}", r.stderr);
    assert!(std::fs::read(dir.join("model.safetensors")).unwrap() == weights);

    let file = tmp.path().join("q.safetensors");
    convert(&dir, &file, &["--type", "f16"]);
    let before = std::fs::read(&file).unwrap();
    let r = quantize(&[&file, &file], &["--type", "f32", "--force"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is the input"), "{}", r.stderr);
    assert!(std::fs::read(&file).unwrap() == before);
    assert_no_temp_file(tmp.path());
    assert_no_temp_file(&dir);
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.safetensors");
    let hub = data("tiny-gpt2-hub");
    for flags in [
        &["--type", "q3_k"][..],
        &[],
        &["--type", "f16", "--lm-head", "bf16"],
        &["--type", "f16", "--threads", "0"],
        &["--type", "f16", "--bogus"],
    ] {
        let r = quantize(&[&hub, &out], flags);
        assert_eq!(r.code, 2, "{flags:?}: {}", r.stderr);
    }
    assert!(listing(tmp.path()).is_empty());
}

#[test]
fn input_errors_name_the_path_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out").join("m.safetensors");
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    let missing = tmp.path().join("no-such-model");
    let r = quantize(&[&missing, &out], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(missing.to_str().unwrap()), "{}", r.stderr);

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let r = quantize(&[&empty, &out], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no config.json"), "{}", r.stderr);

    let r = quantize(&[&data("tiny-gpt2-hub"), &tmp.path().join("nowhere").join("m.safetensors")], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("nowhere") && r.stderr.contains("does not exist"), "{}", r.stderr);

    // A plain safetensors file is not a Quill file.
    let r = quantize(&[&data("tiny-gpt2-hub/model.safetensors"), &out], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not a Quill file"), "{}", r.stderr);

    // A q8_0 Quill file, or an f16 one whose lm_head is q8_0.
    let q8 = tmp.path().join("q8.safetensors");
    convert(&data("tiny-gpt2-hub"), &q8, &["--type", "q8_0"]);
    let r = quantize(&[&q8, &out], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("already q8_0; quantize from the f32/f16 source instead"), "{}", r.stderr);
    let mixed = tmp.path().join("mixed.safetensors");
    convert(&data("tiny-gpt2-hub"), &mixed, &["--type", "f16", "--lm-head", "q8_0"]);
    let r = quantize(&[&mixed, &out], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("already q8_0"), "{}", r.stderr);

    // A config that disagrees with the weights names the tensor and both shapes.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(data("tiny-gpt2-hub/model.safetensors"), bad.join("model.safetensors")).unwrap();
    let config = std::fs::read_to_string(data("tiny-gpt2-hub/config.json")).unwrap();
    std::fs::write(bad.join("config.json"), config.replace("\"n_layer\": 2", "\"n_inner\": 64, \"n_layer\": 2"))
        .unwrap();
    let r = quantize(&[&bad, &out], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("'h.0.mlp.c_fc.weight' has shape [32, 128], expected [32, 64]"), "{}", r.stderr);
    std::fs::write(bad.join("config.json"), config.replace("\"n_layer\": 2", "\"n_layer\": 3")).unwrap();
    let r = quantize(&[&bad, &out], &["--type", "f16"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("'h.2.ln_1.weight' is missing"), "{}", r.stderr);

    assert!(listing(&tmp.path().join("out")).is_empty());
}

/// A full disk, simulated by a file-size limit: the write fails with EFBIG (SIGXFSZ ignored),
/// the error says so, and neither OUT nor the temporary file is left.
#[test]
fn a_failed_write_is_an_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.safetensors");
    // The file is a 1.8 MB header and 6.4 MB of tensors. ulimit -f counts 512-byte blocks (dash)
    // or 1024-byte ones (bash): 5000 blocks is 2.6 or 5.1 MB, inside the tensors either way.
    let status = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 5000 || exit 99; exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg(data("tiny-gpt2-hub"))
        .arg(&out)
        .args(["--type", "f32"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: writing ") && last.contains(".m.safetensors.tmp-"), "{stderr}");
    assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));
}

/// Ctrl-C stops the conversion before its next tensor: exit code 130, a message, and neither OUT
/// nor the temporary file left. The model has 300 layers (3,600 tensors), so its progress lines
/// overflow the stderr pipe, which this test stops reading after the first: quantize is surely
/// mid-conversion (blocked on stderr) when the signal arrives.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_and_leaves_nothing() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    let tmp = tempfile::tempdir().unwrap();
    let hub = data("tiny-gpt2-hub");
    let input = tmp.path().join("deep");
    std::fs::create_dir(&input).unwrap();
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(hub.join(f), input.join(f)).unwrap();
    }
    let layers = 300;
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hub.join("config.json")).unwrap()).unwrap();
    config["n_layer"] = layers.into();
    std::fs::write(input.join("config.json"), config.to_string()).unwrap();
    let mut tensors = read_tensors(&std::fs::read(hub.join("model.safetensors")).unwrap());
    let layer0: Vec<(String, Raw)> =
        tensors.iter().filter_map(|(n, t)| n.strip_prefix("h.0.").map(|rest| (rest.to_string(), t.clone()))).collect();
    for l in 1..layers {
        for (rest, t) in &layer0 {
            tensors.insert(format!("h.{l}.{rest}"), t.clone());
        }
    }
    write_tensors(&input.join("model.safetensors"), &tensors);

    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut child = Command::new(BIN)
        .arg(&input)
        .arg(out_dir.join("m.safetensors"))
        .args(["--type", "q8_0", "--threads", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with('[') {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "quantize ended before its first tensor");
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "{rest}");
    let last = rest.lines().last().unwrap_or_default();
    assert_eq!(last, "error: interrupted (Ctrl-C): nothing was written", "{rest}");
    assert!(!rest.contains("panicked"), "{rest}");
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));
}

/// A random GPT-2 folder wide enough for the k-quants (n_embd 256, n_inner 1024), `n_layer`
/// layers, a 512-token vocabulary, no tokenizer; weights N(0, 0.02)-like, as GPT-2's init.
fn wide_gpt2(dir: &Path, n_layer: usize) {
    let (v, p, c, inner) = (512usize, 64usize, 256usize, 1024usize);
    let config = serde_json::json!({
        "model_type": "gpt2", "vocab_size": v, "n_positions": p, "n_embd": c, "n_head": 4,
        "n_layer": n_layer, "n_inner": inner, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5, "bos_token_id": 0, "eos_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut values = |n: usize, std: f32| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // The sum of four uniforms: roughly normal, std 1 after scaling.
                let u: f32 = (0..4).map(|s| ((seed >> (16 * s)) & 0xFFFF) as f32 / 65535.0 - 0.5).sum::<f32>();
                (u * std * 1.73).to_le_bytes()
            })
            .collect()
    };
    let mut t = BTreeMap::new();
    // A LayerNorm gain is all ones (std None), everything else random.
    let mut add = |name: String, shape: Vec<usize>, std: Option<f32>| {
        let n = shape.iter().product();
        let bytes = std.map_or_else(|| 1.0f32.to_le_bytes().repeat(n), |std| values(n, std));
        t.insert(name, (Dtype::F32, shape, bytes));
    };
    add("wte.weight".into(), vec![v, c], Some(0.3));
    add("wpe.weight".into(), vec![p, c], Some(0.01));
    for l in 0..n_layer {
        for (name, shape, std) in [
            ("attn.c_attn.weight", vec![c, 3 * c], 0.05),
            ("attn.c_attn.bias", vec![3 * c], 0.01),
            ("attn.c_proj.weight", vec![c, c], 0.02),
            ("attn.c_proj.bias", vec![c], 0.01),
            ("mlp.c_fc.weight", vec![c, inner], 0.02),
            ("mlp.c_fc.bias", vec![inner], 0.01),
            ("mlp.c_proj.weight", vec![inner, c], 0.02),
            ("mlp.c_proj.bias", vec![c], 0.01),
        ] {
            add(format!("h.{l}.{name}"), shape, Some(std));
        }
        for ln in ["ln_1", "ln_2"] {
            add(format!("h.{l}.{ln}.bias"), vec![c], Some(0.01));
            add(format!("h.{l}.{ln}.weight"), vec![c], None);
        }
    }
    add("ln_f.bias".into(), vec![c], Some(0.01));
    add("ln_f.weight".into(), vec![c], None);
    write_tensors(&dir.join("model.safetensors"), &t);
}

#[test]
fn four_bit_types_follow_llama_cpp_recipes_and_run() {
    use quill::model::Model;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wide");
    std::fs::create_dir(&dir).unwrap();
    // 8 layers: use_more_bits picks 0, 3, 6 and 7.
    wide_gpt2(&dir, 8);
    let ids: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 512).collect();
    let folder = Model::load(&dir, &Default::default()).unwrap();
    let want = folder.session(None).unwrap().feed(&ids).unwrap().to_vec();
    let spread = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    let mut errors = Vec::new();
    // About 1.5× what each gives here: q4_0 ~0.10, q4_k_m ~0.045, q8_0 ~0.007 of the largest logit.
    for (ty, rel_tol) in [("q4_0", 0.15), ("q4_k_m", 0.07), ("q8_0", 0.012)] {
        let out = tmp.path().join(format!("{ty}.safetensors"));
        convert(&dir, &out, &["--type", ty]);
        let bytes = std::fs::read(&out).unwrap();
        let meta = metadata_of(&bytes);
        assert_eq!(meta["quill.type"], ty);
        let blocks: serde_json::Value =
            meta.get("quill.blocks").map_or(serde_json::json!({}), |b| serde_json::from_str(b).unwrap());
        match ty {
            "q4_0" => {
                assert_eq!(meta["quill.format"], "2");
                assert_eq!(blocks["wte.weight"], "q6_k");
                assert_eq!(blocks["h.5.mlp.c_fc.weight"], "q4_0");
                assert_eq!(blocks["h.0.attn.c_attn.weight"], "q4_0");
            }
            "q4_k_m" => {
                assert_eq!(meta["quill.format"], "2");
                assert_eq!(blocks["wte.weight"], "q6_k");
                assert_eq!(meta["quill.lm_head"], "q6_k");
                for l in 0..8 {
                    let more = [0, 3, 6, 7].contains(&l);
                    assert_eq!(
                        blocks[format!("h.{l}.attn.c_attn.weight")],
                        if more { "q6_k" } else { "q4_k" },
                        "layer {l}"
                    );
                    assert_eq!(
                        blocks[format!("h.{l}.mlp.c_proj.weight")],
                        if more { "q6_k" } else { "q4_k" },
                        "layer {l}"
                    );
                    assert_eq!(blocks[format!("h.{l}.mlp.c_fc.weight")], "q4_k", "layer {l}");
                    assert_eq!(blocks[format!("h.{l}.attn.c_proj.weight")], "q4_k", "layer {l}");
                }
                let written = read_tensors(&bytes);
                // (N, row bytes): c_fc is 1024 rows of 256 weights, one q4_k block of 144 bytes.
                assert_eq!(written["h.1.mlp.c_fc.weight"].0, Dtype::U8);
                assert_eq!(written["h.1.mlp.c_fc.weight"].1, [1024, 144]);
                assert_eq!(written["wpe.weight"].0, Dtype::F16);
            }
            _ => assert_eq!(meta["quill.format"], "1"),
        }
        let model = Model::load(&out, &Default::default()).unwrap();
        let got = model.session(None).unwrap().feed(&ids).unwrap().to_vec();
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        eprintln!("{ty}: logits off by {diff} (largest logit {spread})");
        assert!(diff <= rel_tol * spread, "{ty}: logits off by {diff}, largest {spread}");
        errors.push(diff);
    }
    // More bits, closer logits: q4_0 > q4_k_m > q8_0.
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
}
