//! Batched prompts (`Generator::run_batch`, `BeamSearch::run_batch`, `quill generate
//! --prompts-file`) against transformers' left-padded batched greedy generate()
//! (generation.json's "batch_cases", made by tools/fixtures/make_generation_goldens.py), and
//! each row against the same prompt run alone.

mod generate_util;

use generate_util::{data_dir, expect_error, generate_json, golden, quill, u32s};
use quill::generate::beam::{BeamOptions, BeamSearch};
use quill::generate::{DecodeOptions, Flow, Generator, Sampling, Strategy};
use quill::Model;
use serde_json::Value;

/// A batched step whose best and second-best scores are closer than this may go either way.
const MARGIN: f64 = 1e-3;
/// Logits after the prompt against transformers' batched run.
const TOL: f32 = 2e-4;

fn batch_cases() -> Vec<Value> {
    golden("generation.json")["batch_cases"].as_array().expect("batch_cases").clone()
}

fn rows(case: &Value) -> Vec<Value> {
    case["rows"].as_array().unwrap().clone()
}

/// How many leading tokens are sure (no near-tie in the batched run), and the row's ids.
fn expected(row: &Value) -> (usize, Vec<u32>) {
    assert_eq!(row["agrees_with_single"], true, "transformers' batch and single runs differ: {row}");
    let sure = row["margins"].as_array().unwrap().iter().position(|m| m.as_f64().unwrap() < MARGIN);
    let want = u32s(&row["new_ids"]);
    (sure.unwrap_or(want.len()), want)
}

fn prompts_file(dir: &tempfile::TempDir, lines: &[&str]) -> String {
    let path = dir.path().join("prompts.txt");
    std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    path.to_str().unwrap().to_string()
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn run_batch_matches_transformers_batched_greedy() {
    let cases = batch_cases();
    assert_eq!(cases.len(), 2);
    for case in &cases {
        let model = Model::load(&data_dir().join(case["model_dir"].as_str().unwrap()), &Default::default()).unwrap();
        let v = model.config().vocab_size;
        let rows = rows(case);
        let prompts: Vec<Vec<u32>> = rows.iter().map(|r| u32s(&r["ids"])).collect();
        let opts = DecodeOptions { eos_token_ids: vec![50256], ..DecodeOptions::greedy(20) };
        let mut generator = Generator::new(opts, v).unwrap();
        let mut session = model.session(None).unwrap();
        let mut seen = vec![Vec::new(); rows.len()];
        let got = generator
            .run_batch(&mut session, &prompts, |row, id| {
                seen[row].push(id);
                Ok(Flow::Continue)
            })
            .unwrap();
        assert_eq!(got.len(), rows.len());
        for (row, g) in rows.iter().zip(&got) {
            let i = row["index"].as_u64().unwrap() as usize;
            let (sure, want) = expected(row);
            assert_eq!(g.new_ids[..sure], want[..sure], "{} row {i}", case["name"]);
            assert_eq!(g.new_ids.len(), want.len(), "{} row {i}", case["name"]);
            assert_eq!(g.finish_reason.name(), row["finish_reason"]);
            assert_eq!(seen[i], g.new_ids, "on_token saw row {i}'s tokens");
            // The same prompt alone gives the same tokens.
            session.reset();
            let alone = generator.run(&mut session, &prompts[i], 0, |_| Ok(Flow::Continue)).unwrap();
            assert_eq!(alone.new_ids, g.new_ids);
            // The logits after the prompt, against the batched run of transformers.
            session.reset();
            let logits = session.feed(&prompts[i]).unwrap();
            for (id, want) in u32s(&row["first_top_ids"]).iter().zip(row["first_top_logits"].as_array().unwrap()) {
                let diff = (logits[*id as usize] - want.as_f64().unwrap() as f32).abs();
                assert!(diff <= TOL, "{} row {i}: logit of id {id} differs by {diff}", case["name"]);
            }
        }
    }
}

#[test]
fn sampled_rows_use_stream_i_and_beams_run_per_row() {
    let model = Model::load(&generate_util::hub(), &Default::default()).unwrap();
    let v = model.config().vocab_size;
    let prompts: Vec<Vec<u32>> = rows(&batch_cases()[0]).iter().map(|r| u32s(&r["ids"])).collect();
    let sampling = Sampling { seed: 7, ..Sampling::default() };
    let opts = DecodeOptions { strategy: Strategy::Sample(sampling), ..DecodeOptions::greedy(12) };
    let mut generator = Generator::new(opts, v).unwrap();
    let mut session = model.session(None).unwrap();
    let batch = generator.run_batch(&mut session, &prompts, |_, _| Ok(Flow::Continue)).unwrap();
    for (i, g) in batch.iter().enumerate() {
        session.reset();
        let alone = generator.run(&mut session, &prompts[i], i as u64, |_| Ok(Flow::Continue)).unwrap();
        assert_eq!(alone.new_ids, g.new_ids, "row {i} is stream {i}");
    }
    // A row stopped by on_token ends alone; the next row goes on.
    let batch = generator
        .run_batch(&mut session, &prompts, |row, _| Ok(if row == 1 { Flow::Stop } else { Flow::Continue }))
        .unwrap();
    assert_eq!(batch[1].new_ids.len(), 1);
    assert_eq!(batch[2].new_ids.len(), 12);

    let opts = DecodeOptions::greedy(10);
    let mut search = BeamSearch::new(&model, None, opts, BeamOptions::new(3)).unwrap();
    let batch = search.run_batch(&prompts).unwrap();
    for (i, g) in batch.iter().enumerate() {
        let alone = search.run(&prompts[i]).unwrap();
        assert_eq!(alone.sequences[0].new_ids, g.sequences[0].new_ids, "beam row {i}");
        assert_eq!(alone.sequences[0].score, g.sequences[0].score);
    }

    // Errors name the row.
    let e = generator.run_batch(&mut session, &[vec![1], vec![]], |_, _| Ok(Flow::Continue)).unwrap_err();
    assert!(e.to_string().contains("batch row 1"), "{e}");
    let long = vec![vec![1], vec![1; 65]];
    let e = generator.run_batch(&mut session, &long, |_, _| Ok(Flow::Continue)).unwrap_err();
    assert!(e.to_string().contains("batch row 1") && e.to_string().contains("65 tokens"), "{e}");
}

#[test]
fn prompts_file_json_lines_in_order_match_the_goldens() {
    let dir = tempfile::tempdir().unwrap();
    for case in batch_cases() {
        let m = data_dir().join(case["model_dir"].as_str().unwrap());
        let rows = rows(&case);
        let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
        let file = prompts_file(&dir, &texts);
        let (code, out, err) =
            quill(&["generate", "-m", m.to_str().unwrap(), "--prompts-file", &file, "-n", "20", "--json"]);
        assert_eq!(code, 0, "{err}");
        let records = json_lines(&out);
        assert_eq!(records.len(), rows.len());
        for (i, (rec, row)) in records.iter().zip(&rows).enumerate() {
            assert_eq!(rec["index"], i);
            assert_eq!(rec["prompt_ids"], row["ids"]);
            let (sure, want) = expected(row);
            assert_eq!(sure, want.len(), "a close call: compare through the library only");
            assert_eq!(rec["new_ids"], row["new_ids"], "{} row {i}", case["name"]);
            assert_eq!(rec["text"], row["new_text"]);
            assert_eq!(rec["finish_reason"], row["finish_reason"]);
            // The same record as the prompt alone, plus "index".
            let mut alone = generate_json(&m, texts[i], &["-n", "20"]);
            alone["index"] = i.into();
            assert_eq!(*rec, alone);
        }
    }
}

#[test]
fn prompts_file_text_output_sampling_and_beams() {
    let dir = tempfile::tempdir().unwrap();
    let hub = generate_util::hub();
    let m = hub.to_str().unwrap();
    let texts = ["The Manhattan bridge", "long long ago, I was a boy, I love", "It was"];
    let file = prompts_file(&dir, &texts);

    // Text: a "--- row I ---" line, then the prompt and its continuation.
    let (code, out, err) = quill(&["generate", "-m", m, "--prompts-file", &file, "-n", "6"]);
    assert_eq!(code, 0, "{err}");
    let mut want = String::new();
    for (i, t) in texts.iter().enumerate() {
        let (_, alone, _) = quill(&["generate", "-m", m, t, "-n", "6"]);
        want.push_str(&format!("--- row {i} ---\n{alone}"));
    }
    assert_eq!(out, want);

    // Sampling: row i is stream i of the seed; row 0 is the single run.
    let (code, out, _) =
        quill(&["generate", "-m", m, "--prompts-file", &file, "-n", "8", "--do-sample", "--seed", "5", "--json"]);
    assert_eq!(code, 0);
    let recs = json_lines(&out);
    assert_eq!(
        recs[0]["new_ids"],
        generate_json(&hub, texts[0], &["-n", "8", "--do-sample", "--seed", "5"])["new_ids"]
    );
    let model = Model::load(&hub, &Default::default()).unwrap();
    let prompts: Vec<Vec<u32>> = recs.iter().map(|r| u32s(&r["prompt_ids"])).collect();
    let opts = DecodeOptions {
        eos_token_ids: vec![50256],
        strategy: Strategy::Sample(Sampling { seed: 5, ..Sampling::default() }),
        ..DecodeOptions::greedy(8)
    };
    let mut generator = Generator::new(opts, model.config().vocab_size).unwrap();
    let mut session = model.session(None).unwrap();
    let batch = generator.run_batch(&mut session, &prompts, |_, _| Ok(Flow::Continue)).unwrap();
    for (rec, g) in recs.iter().zip(&batch) {
        assert_eq!(u32s(&rec["new_ids"]), g.new_ids);
        assert_eq!(rec["seed"], 5);
    }

    // Beams per row: each record equals the prompt's own beam search.
    let (code, out, _) =
        quill(&["generate", "-m", m, "--prompts-file", &file, "-n", "8", "--num-beams", "3", "--json"]);
    assert_eq!(code, 0);
    for (i, rec) in json_lines(&out).iter().enumerate() {
        let mut alone = generate_json(&hub, texts[i], &["-n", "8", "--num-beams", "3"]);
        alone["index"] = i.into();
        assert_eq!(*rec, alone);
    }

    // --max-length counts each row's own prompt.
    let (code, out, _) = quill(&["generate", "-m", m, "--prompts-file", &file, "--max-length", "14", "--json"]);
    assert_eq!(code, 0);
    for rec in json_lines(&out) {
        assert_eq!(rec["prompt_ids"].as_array().unwrap().len() + rec["new_ids"].as_array().unwrap().len(), 14);
    }
}

#[test]
fn prompts_file_usage_errors_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let hub = generate_util::hub();
    let m = hub.to_str().unwrap();
    let good = prompts_file(&dir, &["The Manhattan bridge", "It was"]);
    expect_error(&["generate", "-m", m, "--prompts-file", &good, "Hello"], 2, &["--prompts-file"]);
    expect_error(&["generate", "-m", m, "--prompts-file", &good, "--prompt-file", &good], 2, &["--prompts-file"]);
    expect_error(&["generate", "-m", m], 2, &["PROMPT"]);

    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let empty_line = write("empty_line.txt", b"The bridge\n\nIt was\n");
    expect_error(&["generate", "-m", m, "--prompts-file", &empty_line], 1, &["empty_line.txt", "line 2 is empty"]);
    let crlf_empty = write("crlf.txt", b"a\r\n\r\nb\r\n");
    expect_error(&["generate", "-m", m, "--prompts-file", &crlf_empty], 1, &["line 2 is empty"]);
    let empty = write("empty.txt", b"");
    expect_error(&["generate", "-m", m, "--prompts-file", &empty], 1, &["empty.txt", "no prompts"]);
    let bad = write("bad.txt", b"The bridge\nIt \xff was\n");
    expect_error(&["generate", "-m", m, "--prompts-file", &bad], 1, &["bad.txt", "UTF-8", "offset 14"]);
    let missing = dir.path().join("missing.txt");
    expect_error(&["generate", "-m", m, "--prompts-file", missing.to_str().unwrap()], 1, &["missing.txt"]);
    // A row too long for the context names its line.
    let long = write("long.txt", format!("It was\n{}\n", "a ".repeat(70)).as_bytes());
    expect_error(&["generate", "-m", m, "--prompts-file", &long, "-n", "2"], 1, &["--prompts-file line 2", "tokens"]);
    // --max-length too short for one row names its line.
    expect_error(
        &["generate", "-m", m, "--prompts-file", &good, "--max-length", "3"],
        2,
        &["line 1", "--max-length 3"],
    );
}

#[test]
fn a_jsonl_prompts_file_holds_json_strings_or_prompt_objects() {
    let dir = tempfile::tempdir().unwrap();
    let hub = generate_util::hub();
    let m = hub.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let run = |file: &str| {
        let (code, out, err) = quill(&["generate", "-m", m, "--prompts-file", file, "-n", "4", "--json"]);
        assert_eq!(code, 0, "{err}");
        json_lines(&out)
    };
    // The same prompts as plain lines and as JSON lines give the same records.
    let text = run(&write("p.txt", "The Manhattan bridge\nIt was\n"));
    let jsonl = run(&write("p.jsonl", "\"The Manhattan bridge\"\n{\"prompt\": \"It was\", \"id\": 7}\n"));
    assert_eq!(text.len(), 2);
    for (a, b) in text.iter().zip(&jsonl) {
        assert_eq!(a["new_ids"], b["new_ids"]);
        assert_eq!(a["prompt_ids"], b["prompt_ids"]);
    }
    // A prompt may hold a newline: it is one prompt, tokenized with it.
    let (_, out, _) = quill(&["tokenize", "-m", m, "--json", "It was\nthe bridge"]);
    let want: Value = serde_json::from_str(out.trim()).unwrap();
    let rec = run(&write("nl.jsonl", "\"It was\\nthe bridge\"\n"));
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0]["prompt_ids"], want["ids"]);
    // Bad lines name the file and the line.
    for (name, body, needle) in [
        ("bad_json.jsonl", "\"ok\"\n{not json\n", "line 2 is not valid JSON"),
        ("number.jsonl", "42\n", "line 1 is not a JSON string"),
        ("no_prompt.jsonl", "{\"text\": \"x\"}\n", "line 1 has no \"prompt\" string"),
        ("empty_prompt.jsonl", "\"\"\n", "line 1 holds an empty prompt"),
    ] {
        expect_error(&["generate", "-m", m, "--prompts-file", &write(name, body)], 1, &[name, needle]);
    }
}
