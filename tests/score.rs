//! `quill::score` against transformers' strided perplexity recipe (goldens from
//! tools/fixtures/make_score_goldens.py), and its invariants: non-overlapping windows give the
//! plain mean of the windows' token losses; the log-probability file reads back what was written.

mod common;

use common::{data_dir, golden, u32s};
use quill::model::LoadOptions;
use quill::score::{self, LogProbHeader, LogProbReader, LogProbWriter, Window};
use quill::tokenizer::Tokenizer;
use quill::Model;
use quill_kernels::Level;

/// Relative tolerance on the loss against transformers (the issue asks for 1e-3; we see ~1e-7).
const REL_TOL: f64 = 1e-5;

fn text() -> String {
    std::fs::read_to_string(data_dir().join("score-text.txt")).unwrap()
}

fn model(name: &str, level: Option<Level>) -> Model {
    let kernels = level.map(|level| quill_kernels::select(Some(level.name())).unwrap());
    Model::load(&data_dir().join(name), &LoadOptions { kernels, ..Default::default() }).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn loss_matches_transformers_strided_recipe() {
    let gold = golden("score.json");
    let text = text();
    assert_eq!(text.len() as u64, gold["text_bytes"].as_u64().unwrap());
    for (name, g) in gold["models"].as_object().unwrap() {
        let tokenizer = Tokenizer::from_model_dir(&data_dir().join(name)).unwrap();
        let ids = tokenizer.encode(&text);
        assert_eq!(ids, u32s(&g["ids"]), "{name}: token ids differ from transformers'");
        for level in common::float_levels() {
            let model = model(name, Some(level));
            for run in g["runs"].as_array().unwrap() {
                let opt = |k: &str| run[k].as_u64().map(|v| v as usize);
                let (ctx, stride) =
                    score::resolve_settings(opt("ctx"), opt("stride"), model.config().n_positions).unwrap();
                assert_eq!((ctx, stride), (opt("resolved_ctx").unwrap(), opt("resolved_stride").unwrap()));
                let tag = format!("{name} [{}] ctx {ctx} stride {stride}", level.name());

                let windows = score::windows(ids.len(), ctx, stride);
                let want: Vec<Window> = run["windows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| {
                        let w = u32s(w);
                        Window { begin: w[0] as usize, end: w[1] as usize, first_scored: w[2] as usize }
                    })
                    .collect();
                assert_eq!(windows, want, "{tag}: windows");

                let mut seen = Vec::new();
                let totals = score::score(&model, &ids, ctx, stride, None, |s| {
                    seen.push(s.pos);
                    assert_eq!(s.target, ids[s.pos]);
                    Ok(())
                })
                .unwrap();
                assert_eq!(seen, score::scored_positions(&windows), "{tag}: scored positions");
                assert_eq!(totals.tokens_scored as u64, run["tokens_scored"].as_u64().unwrap(), "{tag}");
                assert_eq!(totals.windows, windows.len(), "{tag}");
                let (loss, want_loss) = (totals.loss(), run["loss"].as_f64().unwrap());
                assert!(rel(loss, want_loss) <= REL_TOL, "{tag}: loss {loss}, transformers {want_loss}");
                let ppl = run["perplexity"].as_f64().unwrap();
                assert!(rel(totals.perplexity(), ppl) <= 20.0 * REL_TOL, "{tag}: perplexity");

                let bytes: usize = seen.iter().map(|&p| tokenizer.decode_bytes(&ids[p..=p]).unwrap().len()).sum();
                assert_eq!(bytes as u64, run["bytes_scored"].as_u64().unwrap(), "{tag}: bytes scored");
                let bpb = totals.nll_sum / std::f64::consts::LN_2 / bytes as f64;
                assert!(rel(bpb, run["bits_per_byte"].as_f64().unwrap()) <= REL_TOL, "{tag}: bits per byte");
            }
        }
    }
}

/// Per-token NLL of `ids` in one fresh session, positions 1.. (plain log-softmax in f64).
fn window_nlls(model: &Model, ids: &[u32]) -> Vec<f64> {
    let v = model.config().vocab_size;
    let mut logits = Vec::new();
    model.session(Some(ids.len())).unwrap().feed_all_logits(ids, &mut logits).unwrap();
    (1..ids.len())
        .map(|p| {
            let row = &logits[(p - 1) * v..p * v];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            max + sum.ln() - row[ids[p] as usize] as f64
        })
        .collect()
}

#[test]
fn without_overlap_the_loss_is_the_plain_mean_over_the_windows() {
    let text = text();
    for name in ["tiny-gpt2-hub", "tiny-gpt-neo"] {
        let model = model(name, None);
        let ids = Tokenizer::from_model_dir(&data_dir().join(name)).unwrap().encode(&text);
        for ctx in [16, 32, 41] {
            let totals = score::score(&model, &ids, ctx, ctx, None, |_| Ok(())).unwrap();
            let nlls: Vec<f64> = ids.chunks(ctx).flat_map(|w| window_nlls(&model, w)).collect();
            let mean = nlls.iter().sum::<f64>() / nlls.len() as f64;
            assert_eq!(totals.tokens_scored, nlls.len(), "{name} ctx {ctx}");
            assert!(rel(totals.loss(), mean) <= 1e-9, "{name} ctx {ctx}: {} vs plain mean {mean}", totals.loss());
        }
    }
}

#[test]
fn with_overlap_each_token_gets_the_nll_of_its_window() {
    // Every scored token's NLL equals that of a fresh run over its window up to it.
    let model = model("tiny-gpt2-hub", None);
    let ids: Vec<u32> =
        Tokenizer::from_model_dir(&data_dir().join("tiny-gpt2-hub")).unwrap().encode(&text())[..150].to_vec();
    let (ctx, stride) = (24, 10);
    let windows = score::windows(ids.len(), ctx, stride);
    let mut got = Vec::new();
    score::score(&model, &ids, ctx, stride, None, |s| {
        got.push((s.pos, s.nll));
        Ok(())
    })
    .unwrap();
    let mut want = Vec::new();
    for w in &windows {
        let nlls = window_nlls(&model, &ids[w.begin..w.end]);
        want.extend((w.first_scored..w.end).map(|p| (p, nlls[p - w.begin - 1])));
    }
    assert_eq!(got.len(), want.len());
    // Not bit for bit: the scorer computes logits for the scored rows only, and a matmul of
    // fewer rows may take the few-row GEMV tiles instead of the GEMM (another order of f32
    // additions, ~1e-8 relative). A wrong window would be off by far more.
    for ((p, a), (q, b)) in got.iter().zip(&want) {
        assert_eq!(p, q);
        assert!((a - b).abs() <= 1e-6 * b.abs(), "token {p}: {a} vs {b}");
    }
}

#[test]
fn log_probability_file_round_trips_and_rejects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lp.bin");
    let header = LogProbHeader { vocab_size: 3, ctx: 4, stride: 2, ids: vec![5, 6, 7, 8], positions: vec![1, 2, 3] };
    let rows = [[-0.1f32, -2.0, -3.0], [-1.0, -0.5, -2.5], [-1.1, -1.1, -1.1]];
    let mut w = LogProbWriter::create(&path, &header).unwrap();
    for r in &rows {
        w.write_row(r).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 40 + 4 * 4 + 4 * 3 + 4 * 3 * 3);
    assert_eq!(&bytes[..8], b"QUILLLP\0");
    let mut r = LogProbReader::open(&path).unwrap();
    assert_eq!(r.header, header);
    let mut row = [0f32; 3];
    for want in &rows {
        r.read_row(&mut row).unwrap();
        assert_eq!(&row, want);
    }
    header.check_same_stream(&r.header, &path).unwrap();
    let other = LogProbHeader { ids: vec![5, 6, 9, 8], ..header.clone() };
    let err = header.check_same_stream(&other, &path).unwrap_err().to_string();
    assert!(err.contains("token stream differs") && err.contains("token 2"), "{err}");

    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = LogProbReader::open(&path).err().unwrap().to_string();
    assert!(err.contains("truncated"), "{err}");
    std::fs::write(&path, b"hello").unwrap();
    let err = LogProbReader::open(&path).err().unwrap().to_string();
    assert!(err.contains("not a quill log-probability file"), "{err}");
}

/// Any batch size scores the same tokens with the same NLLs (to float tolerance: one token per
/// pass runs the decode kernels, more the prompt kernels).
#[test]
fn every_batch_size_scores_the_same() {
    let model = model("tiny-gpt2-hub", None);
    let ids: Vec<u32> =
        Tokenizer::from_model_dir(&data_dir().join("tiny-gpt2-hub")).unwrap().encode(&text())[..120].to_vec();
    let (ctx, stride) = (40, 15);
    let run = |batch| {
        let mut got = Vec::new();
        let totals = score::score(&model, &ids, ctx, stride, batch, |s| {
            got.push((s.pos, s.nll));
            Ok(())
        })
        .unwrap();
        (got, totals.tokens_fed)
    };
    let (want, fed) = run(None);
    for batch in [Some(1), Some(3), Some(1000)] {
        let (got, got_fed) = run(batch);
        assert_eq!(got_fed, fed, "batch {batch:?}: tokens fed");
        assert_eq!(got.len(), want.len(), "batch {batch:?}");
        for ((p, a), (q, b)) in got.iter().zip(&want) {
            assert_eq!(p, q);
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "batch {batch:?}, token {p}: {a} vs {b}");
        }
    }
}
