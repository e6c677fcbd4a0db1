//! `Model::forward` and `forward_double_heads` against transformers (tests/data/forward, made by
//! tools/fixtures/make_forward_goldens.py): hidden states, attentions, loss, inputs_embeds,
//! position_ids, head_mask, token_type_ids, left padding, past, every GPT-2 config switch and
//! the double-heads summaries, at every kernel level.

mod common;

use std::path::PathBuf;

use quill::model::LoadOptions;
use quill::model::{ForwardInput, ForwardOutput, HeadMask, Model, MultipleChoiceHead};
use serde_json::Value;

const TOL: f32 = 2e-4;

fn forward_dir() -> PathBuf {
    common::data_dir().join("forward")
}

fn goldens() -> Value {
    let path = forward_dir().join("goldens.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A nested list flattened, and its shape.
fn flat(v: &Value) -> (Vec<f64>, Vec<usize>) {
    fn walk(v: &Value, depth: usize, out: &mut Vec<f64>, shape: &mut Vec<usize>) {
        match v {
            Value::Array(items) => {
                if shape.len() <= depth {
                    shape.push(items.len());
                }
                items.iter().for_each(|x| walk(x, depth + 1, out, shape));
            }
            Value::Bool(b) => out.push(*b as u8 as f64),
            x => out.push(x.as_f64().expect("number")),
        }
    }
    let (mut out, mut shape) = (Vec::new(), Vec::new());
    walk(v, 0, &mut out, &mut shape);
    (out, shape)
}

fn ints<T: TryFrom<i64>>(v: &Value) -> Vec<T> {
    flat(v).0.iter().map(|&x| T::try_from(x as i64).ok().expect("integer in range")).collect()
}

fn floats(v: &Value) -> Vec<f32> {
    flat(v).0.iter().map(|&x| x as f32).collect()
}

/// Owned inputs of one call, borrowed by `ForwardInput`.
#[derive(Default)]
struct Inputs {
    batch: usize,
    seq: usize,
    ids: Option<Vec<u32>>,
    embeds: Option<Vec<f32>>,
    mask: Option<Vec<u8>>,
    positions: Option<Vec<u32>>,
    types: Option<Vec<u32>>,
    head_mask: Option<(Vec<f32>, bool)>,
    labels: Option<Vec<i64>>,
    hidden: bool,
    attentions: bool,
}

impl Inputs {
    fn parse(v: &Value) -> Inputs {
        let get = |k: &str| v.get(k).filter(|x| !x.is_null());
        let (batch, seq) = match (get("input_ids"), get("inputs_embeds")) {
            (Some(ids), _) => {
                let shape = flat(ids).1;
                // [batch, choices, seq] for double heads: rows are batch · choices.
                (shape[..shape.len() - 1].iter().product(), shape[shape.len() - 1])
            }
            (None, Some(e)) => {
                let shape = flat(e).1;
                (shape[0], shape[1])
            }
            _ => panic!("no input"),
        };
        Inputs {
            batch,
            seq,
            ids: get("input_ids").map(ints),
            embeds: get("inputs_embeds").map(floats),
            mask: get("attention_mask").map(ints),
            positions: get("position_ids").map(ints),
            types: get("token_type_ids").map(ints),
            head_mask: get("head_mask").map(|h| (floats(h), flat(h).1.len() == 2)),
            labels: get("labels").map(ints),
            hidden: get("output_hidden_states").and_then(Value::as_bool).unwrap_or(false),
            attentions: get("output_attentions").and_then(Value::as_bool).unwrap_or(false),
        }
    }

    fn input(&self) -> ForwardInput<'_> {
        ForwardInput {
            batch: self.batch,
            input_ids: self.ids.as_deref(),
            inputs_embeds: self.embeds.as_deref(),
            attention_mask: self.mask.as_deref(),
            position_ids: self.positions.as_deref(),
            token_type_ids: self.types.as_deref(),
            head_mask: self.head_mask.as_ref().map(|(h, per_layer)| {
                if *per_layer {
                    HeadMask::PerLayer(h)
                } else {
                    HeadMask::PerHead(h)
                }
            }),
            labels: self.labels.as_deref(),
            output_hidden_states: self.hidden,
            output_attentions: self.attentions,
            ..Default::default()
        }
    }

    /// Whether query `i` of row `b` is a real token (its mask is 1); padded queries are not
    /// compared (transformers' GPT-2 lets them see later tokens; their outputs mean nothing).
    fn real(&self, b: usize, i: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| {
            let t = m.len() / self.batch;
            m[b * t + t - self.seq + i] == 1
        })
    }
}

/// Compares `got` and `want`, both `[batch, X, seq, W]`-like with rows of `width` for the
/// (batch, query) pairs, skipping padded queries.
fn compare_rows(what: &str, got: &[f32], want: &[f32], inputs: &Inputs, outer: usize, width: usize) {
    assert_eq!(got.len(), want.len(), "{what}: sizes differ");
    let per_batch = got.len() / inputs.batch;
    let mut worst = 0.0f32;
    for b in 0..inputs.batch {
        for o in 0..outer {
            for i in 0..inputs.seq {
                if !inputs.real(b, i) {
                    continue;
                }
                let at = b * per_batch + (o * inputs.seq + i) * width;
                let (d, k) = common::max_abs_diff(&got[at..at + width], &want[at..at + width]);
                assert!(d <= TOL, "{what}: batch {b} block {o} query {i} element {k}: off by {d}");
                worst = worst.max(d);
            }
        }
    }
    assert!(worst.is_finite());
}

fn check_lm(what: &str, model: &Model, case: &Value, out: &ForwardOutput, inputs: &Inputs) {
    let want = &case["outputs"];
    let cfg = model.config();
    compare_rows(&format!("{what} logits"), &out.logits, &floats(&want["logits"]), inputs, 1, cfg.vocab_size);
    if let Some(loss) = want.get("loss").and_then(Value::as_f64) {
        let got = out.loss.expect("loss") as f64;
        assert!(((got - loss) / loss).abs() < 1e-4, "{what}: loss {got} vs {loss}");
    }
    if let Some(hs) = want.get("hidden_states") {
        let hs = hs.as_array().unwrap();
        assert_eq!(out.hidden_states.len(), hs.len(), "{what}: hidden_states entries");
        for (l, (got, want)) in out.hidden_states.iter().zip(hs).enumerate() {
            compare_rows(&format!("{what} hidden_states[{l}]"), got, &floats(want), inputs, 1, cfg.n_embd);
        }
    }
    if let Some(att) = want.get("attentions") {
        let att = att.as_array().unwrap();
        assert_eq!(out.attentions.len(), att.len(), "{what}: attentions entries");
        let t = out.past + out.seq;
        for (l, (got, want)) in out.attentions.iter().zip(att).enumerate() {
            compare_rows(&format!("{what} attentions[{l}]"), got, &floats(want), inputs, cfg.n_head, t);
        }
    }
}

fn load(name: &str) -> Model {
    load_with(name, &LoadOptions::default())
}

fn load_with(name: &str, opts: &LoadOptions) -> Model {
    Model::load(&forward_dir().join(name), opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn forward_matches_transformers_on_every_case() {
    let g = goldens();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for level in common::float_levels() {
        for case in cases {
            let kernels = Some(quill_kernels::select(Some(level.name())).unwrap());
            let model = load_with(case["model"].as_str().unwrap(), &LoadOptions { kernels, ..Default::default() });
            let what = format!("{} {} {}", case["model"], case["name"], level.name());
            let inputs = Inputs::parse(&case["inputs"]);
            let mut past = model.sessions(inputs.batch, None).unwrap();
            if let Some(p) = case.get("past").filter(|p| !p.is_null()) {
                let first = Inputs::parse(p);
                model.forward(&mut past, &first.input()).unwrap();
            }
            match case["class"].as_str().unwrap() {
                "lm" => {
                    let out = model.forward(&mut past, &inputs.input()).unwrap_or_else(|e| panic!("{what}: {e}"));
                    check_lm(&what, &model, case, &out, &inputs);
                }
                "double_heads" => {
                    let head = MultipleChoiceHead::load(&model).unwrap();
                    let choices = flat(&case["inputs"]["input_ids"]).1[1];
                    let mc_ids: Vec<u32> = ints(&case["inputs"]["mc_token_ids"]);
                    let mc_labels: Vec<i64> = ints(&case["inputs"]["mc_labels"]);
                    let out = model
                        .forward_double_heads(
                            &head,
                            &mut past,
                            &inputs.input(),
                            choices,
                            Some(&mc_ids),
                            Some(&mc_labels),
                        )
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    check_lm(&what, &model, case, &out.lm, &inputs);
                    let (want, shape) = flat(&case["outputs"]["mc_logits"]);
                    assert_eq!(out.mc_logits_shape, shape, "{what}: mc_logits shape");
                    let want: Vec<f32> = want.iter().map(|&x| x as f32).collect();
                    let (d, k) = common::max_abs_diff(&out.mc_logits, &want);
                    assert!(d <= TOL, "{what}: mc_logits element {k} off by {d}");
                    let mc_loss = case["outputs"]["mc_loss"].as_f64().unwrap();
                    let got = out.mc_loss.unwrap() as f64;
                    assert!(((got - mc_loss) / mc_loss).abs() < 1e-4, "{what}: mc_loss {got} vs {mc_loss}");
                }
                other => panic!("unknown class {other}"),
            }
        }
    }
}

#[test]
fn use_cache_false_leaves_the_sessions_as_they_were() {
    for name in ["gpt2", "gpt-neo"] {
        let model = load(name);
        let mut past = model.sessions(1, None).unwrap();
        let first =
            model.forward(&mut past, &ForwardInput { input_ids: Some(&[5, 6, 7]), ..Default::default() }).unwrap();
        let probe = ForwardInput { input_ids: Some(&[8, 9]), use_cache: false, ..Default::default() };
        let a = model.forward(&mut past, &probe).unwrap();
        assert_eq!(past[0].len(), 3);
        let b = model.forward(&mut past, &ForwardInput { use_cache: true, ..probe }).unwrap();
        assert_eq!(a.logits, b.logits, "{name}");
        assert_eq!(past[0].len(), 5);
        assert_eq!(first.past, 0);
    }
}

#[test]
fn last_only_logits_are_the_last_row_of_all() {
    let model = load("gpt-neo");
    let ids: Vec<u32> = (0..20).map(|i| (i * 37 % 384) as u32).collect();
    let all = model.sessions(2, None).and_then(|mut p| {
        model.forward(&mut p, &ForwardInput { batch: 2, input_ids: Some(&ids), ..Default::default() })
    });
    let last = model.sessions(2, None).and_then(|mut p| {
        model.forward(
            &mut p,
            &ForwardInput {
                batch: 2,
                input_ids: Some(&ids),
                logits: quill::model::LogitsWanted::Last,
                ..Default::default()
            },
        )
    });
    let (all, last) = (all.unwrap(), last.unwrap());
    let v = model.config().vocab_size;
    assert_eq!(last.logits.len(), 2 * v);
    for b in 0..2 {
        // The same numbers up to summation order (one row runs a GEMV, ten a GEMM).
        let (d, _) = common::max_abs_diff(&last.logits[b * v..][..v], &all.logits[(b * 10 + 9) * v..][..v]);
        assert!(d < 1e-5, "row {b}: off by {d}");
    }
}

#[test]
fn bad_shapes_and_ranges_are_clear_errors() {
    let model = load("gpt2");
    let cfg = model.config();
    let ids = [1u32, 2, 3, 4];
    let embeds = vec![0.0f32; 4 * cfg.n_embd];
    let mask3 = [1u8, 1, 1];
    let mask2 = [1u8, 2, 1, 1];
    let far = [0u32, 1, 2, cfg.n_positions as u32];
    let labels = [1i64, -100, 384, 2];
    let neg = [1i64, -1, 2, 3];
    let hm = [1.0f32; 3];
    let cases: Vec<(ForwardInput, &str)> = vec![
        (ForwardInput { input_ids: Some(&ids), inputs_embeds: Some(&embeds), ..Default::default() }, "not both"),
        (ForwardInput::default(), "give input_ids or inputs_embeds"),
        (
            ForwardInput { input_ids: Some(&ids), attention_mask: Some(&mask3), ..Default::default() },
            "attention_mask has 3 values",
        ),
        (
            ForwardInput { input_ids: Some(&ids), attention_mask: Some(&mask2), ..Default::default() },
            "attention_mask holds 2",
        ),
        (
            ForwardInput { input_ids: Some(&ids), position_ids: Some(&far), ..Default::default() },
            "position id 32 is out of range",
        ),
        (
            ForwardInput { input_ids: Some(&ids), labels: Some(&labels), ..Default::default() },
            "label 384 is out of range",
        ),
        (ForwardInput { input_ids: Some(&ids), labels: Some(&neg), ..Default::default() }, "label -1 is out of range"),
        (ForwardInput { input_ids: Some(&[1, 2, 400]), ..Default::default() }, "token id 400 is out of range"),
        (
            ForwardInput { input_ids: Some(&ids), head_mask: Some(HeadMask::PerHead(&hm)), ..Default::default() },
            "head_mask has 3 values",
        ),
        (ForwardInput { batch: 3, input_ids: Some(&ids), ..Default::default() }, "do not make 3 equal"),
        (
            ForwardInput { input_ids: Some(&ids), token_type_ids: Some(&ids[..2]), ..Default::default() },
            "token_type_ids has 2",
        ),
    ];
    for (input, want) in cases {
        let mut past = model.sessions(input.batch.max(1), None).unwrap();
        let err = model.forward(&mut past, &input).unwrap_err().to_string();
        assert!(err.contains(want), "expected '{want}' in: {err}");
        assert!(past.iter().all(|s| s.is_empty()), "a failed call must not change the sessions");
    }
    // A mask of the wrong length once there is a past: it must cover past + new tokens.
    let mut past = model.sessions(1, None).unwrap();
    model.forward(&mut past, &ForwardInput { input_ids: Some(&ids), ..Default::default() }).unwrap();
    let err = model
        .forward(&mut past, &ForwardInput { input_ids: Some(&[5]), attention_mask: Some(&[1]), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("[batch, past + seq] = 5"), "{err}");
}

#[test]
fn choose_and_embed_match_transformers() {
    let g = goldens();
    let dir = forward_dir().join("dh-choose");
    let dir = dir.to_str().unwrap();
    // choose: one JSON object, the best index and every choice's mc_logit.
    let choose = &g["choose"];
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("choices.txt");
    let texts: Vec<&str> = choose["choices"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    std::fs::write(&file, texts.join("\n") + "\n\n").unwrap();
    let (code, out, err) = common::quill(&["choose", "-m", dir, "--choices", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["best"], choose["best"]);
    for (c, want) in got["choices"].as_array().unwrap().iter().zip(choose["choices"].as_array().unwrap()) {
        assert_eq!(c["tokens"].as_u64().unwrap() as usize, want["ids"].as_array().unwrap().len());
        let (a, b) = (c["mc_logit"].as_f64().unwrap(), want["mc_logit"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-4, "mc_logit {a} vs {b}");
    }
    // The plain table marks the best choice.
    let (code, out, _) = common::quill(&["choose", "-m", dir, "--choices", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let best = choose["best"].as_u64().unwrap() as usize;
    assert!(out.lines().nth(best).unwrap().starts_with('*'), "{out}");

    // embed: mean and last pooling of the final hidden states.
    let embed = &g["embed"];
    let text = embed["text"].as_str().unwrap();
    for pool in ["mean", "last"] {
        let (code, out, err) = common::quill(&["embed", "-m", dir, text, "--pool", pool, "--json"]);
        assert_eq!(code, 0, "{err}");
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(got["dim"], 16);
        let (d, k) = common::max_abs_diff(&floats(&got["embedding"]), &floats(&embed[pool]));
        assert!(d < TOL, "embed --pool {pool}: element {k} off by {d}");
    }
    // A model without a multiple-choice head: a clear error.
    let hub = common::hub();
    let (code, _, err) = common::quill(&["choose", "-m", hub.to_str().unwrap(), "--choices", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no multiple-choice head"), "{err}");
}
