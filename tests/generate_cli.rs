//! `quill generate` stop rules, context overflow, JSON fields, generation_config.json defaults
//! and usage errors, on the tiny-gpt2-hub fixture (64 positions).

mod generate_util;

use generate_util::{expect_error, generate_json, golden, hub, hub_with_generation_config, quill, u32s};
use quill::generate::{DecodeOptions, FinishReason, Flow, Generator, OnContextFull};
use quill::tokenizer::Tokenizer;
use quill::Model;
use serde_json::Value;

const PROMPT: &str = "The Manhattan bridge";

fn m() -> String {
    hub().to_str().unwrap().to_string()
}

/// The greedy continuation of `PROMPT` and the text of each of its tokens.
fn greedy_pieces(n: usize) -> (Vec<u32>, Vec<String>) {
    let v = generate_json(&hub(), PROMPT, &["-n", &n.to_string()]);
    let ids = u32s(&v["new_ids"]);
    let tok = Tokenizer::from_model_dir(&hub()).unwrap();
    let pieces = ids.iter().map(|&id| tok.decode(&[id]).unwrap()).collect();
    (ids, pieces)
}

#[test]
fn stop_strings_are_cut_and_never_printed() {
    let (ids, pieces) = greedy_pieces(20);
    let full: String = pieces.concat();
    assert!(pieces.iter().all(|p| p.len() >= 2 && !p.contains('\u{FFFD}')), "fixture changed: {pieces:?}");
    // A stop string from the middle of token 5 to the middle of token 6: the tokens before it
    // are shown in full, and the start of token 5 is shown although it was held back.
    let start: usize = pieces[..5].iter().map(String::len).sum::<usize>() + 1;
    let end: usize = pieces[..6].iter().map(String::len).sum::<usize>() + 1;
    let stop = &full[start..end];
    let cut = full.find(stop).unwrap();
    let v = generate_json(&hub(), PROMPT, &["-n", "20", "--stop", stop]);
    assert_eq!(v["text"], full[..cut], "stop {stop:?}");
    assert_eq!(v["finish_reason"], "stop");
    // The token that completed the stop string is the last one generated.
    let got = u32s(&v["new_ids"]);
    assert_eq!(got, ids[..got.len()]);
    let completed = (1..=ids.len()).find(|&k| pieces[..k].concat().contains(stop)).unwrap();
    assert_eq!(got.len(), completed);

    // Streaming shows the same text, the stop string held back and dropped.
    let (code, out, _) = quill(&["generate", "-m", &m(), PROMPT, "-n", "20", "--stop", stop]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("{PROMPT}{}\n", &full[..cut]));

    // Several stop strings: the earliest in the text wins, whatever their order on the line.
    let later = &pieces[9];
    for args in [["--stop", later.as_str(), "--stop", stop], ["--stop", stop, "--stop", later.as_str()]] {
        let mut all = vec!["-n", "20"];
        all.extend_from_slice(&args);
        let v = generate_json(&hub(), PROMPT, &all);
        assert_eq!(v["text"], full[..cut]);
    }

    // A stop string that never appears: everything is printed, nothing held back at the end.
    let (code, out, _) = quill(&["generate", "-m", &m(), PROMPT, "-n", "20", "--stop", "\u{1F600}zz"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("{PROMPT}{full}\n"));
    // A stop string that is a false start at the very end: released at the end.
    let last_start = &pieces[19][..1];
    let false_start = format!("{last_start}\u{1F600}");
    let v = generate_json(&hub(), PROMPT, &["-n", "20", "--stop", &false_start]);
    assert_eq!(v["text"], full);
    assert_eq!(v["finish_reason"], "length");
}

#[test]
fn max_length_and_max_new_tokens() {
    let v = generate_json(&hub(), PROMPT, &["--max-length", "8"]);
    assert_eq!(v["new_ids"].as_array().unwrap().len(), 5);
    assert_eq!(v["finish_reason"], "length");
    let v = generate_json(&hub(), PROMPT, &["-n", "0"]);
    assert_eq!(v["new_ids"].as_array().unwrap().len(), 0);
    assert_eq!(v["text"], "");
    // Default: 50 new tokens.
    let v = generate_json(&hub(), PROMPT, &[]);
    assert_eq!(v["new_ids"].as_array().unwrap().len(), 50);
    expect_error(&["generate", "-m", &m(), PROMPT, "--max-length", "3"], 2, &["--max-length 3", "3 tokens"]);
    expect_error(
        &["generate", "-m", &m(), PROMPT, "--max-length", "9", "--max-new-tokens", "4"],
        2,
        &["--max-length", "--max-new-tokens"],
    );
}

#[test]
fn context_full_stops_with_a_message() {
    // 3 prompt tokens, 64 positions: tokens 1..=62 are fed after the prompt, the 62nd is not.
    let (code, out, err) = quill(&["generate", "-m", &m(), PROMPT, "-n", "100", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["finish_reason"], "context_full");
    assert_eq!(v["new_ids"].as_array().unwrap().len(), 62);
    assert!(err.contains("context is full (64 positions)") && err.contains("slide"), "{err}");
    let (code, _, err) = quill(&["generate", "-m", &m(), PROMPT, "-n", "100", "--ctx", "16", "--json"]);
    assert_eq!(code, 0);
    assert!(err.contains("context is full (16 positions) after 14 new tokens"), "{err}");
    // The context exactly full is not an overflow.
    let v = generate_json(&hub(), PROMPT, &["-n", "62"]);
    assert_eq!(v["finish_reason"], "length");
}

#[test]
fn sliding_keeps_the_last_half_and_goes_on() {
    let model = Model::load(&hub(), &Default::default()).unwrap();
    let tok = Tokenizer::from_model_dir(&hub()).unwrap();
    let prompt = tok.encode(PROMPT);
    let ctx = 16;
    let mut session = model.session(Some(ctx)).unwrap();
    let opts = DecodeOptions { on_context_full: OnContextFull::Slide, ..DecodeOptions::greedy(40) };
    let mut generator = Generator::new(opts, model.config().vocab_size).unwrap();
    let slid = generator.run(&mut session, &prompt, 0, |_| Ok(Flow::Continue)).unwrap();
    assert_eq!(slid.finish_reason, FinishReason::Length);
    assert_eq!(slid.new_ids.len(), 40);
    assert!(slid.context_slides >= 2, "{} slides", slid.context_slides);

    // Until the first slide, it is plain greedy decoding.
    let first = ctx + 1 - prompt.len();
    let mut stop = Generator::new(DecodeOptions::greedy(40), model.config().vocab_size).unwrap();
    session.reset();
    let plain = stop.run(&mut session, &prompt, 0, |_| Ok(Flow::Continue)).unwrap();
    assert_eq!(plain.finish_reason, FinishReason::ContextFull);
    assert_eq!(plain.new_ids, slid.new_ids[..first]);
    // After it, greedy decoding from the last ctx/2 tokens re-encoded at positions 0...
    let all: Vec<u32> = prompt.iter().chain(&slid.new_ids).copied().collect();
    let kept = &all[prompt.len() + first - ctx / 2..prompt.len() + first];
    session.reset();
    let resumed = stop.run(&mut session, kept, 0, |_| Ok(Flow::Continue)).unwrap();
    // ...up to the next slide, where the context is full again.
    assert_eq!(resumed.finish_reason, FinishReason::ContextFull);
    assert_eq!(resumed.new_ids, slid.new_ids[first..first + resumed.new_ids.len()]);

    // The CLI does the same.
    let v = generate_json(&hub(), PROMPT, &["-n", "40", "--ctx", "16", "--on-context-full", "slide"]);
    assert_eq!(u32s(&v["new_ids"]), slid.new_ids);
    assert_eq!(v["finish_reason"], "length");
}

#[test]
fn json_fields_and_logprobs() {
    let gold = golden("tiny-gpt2-hub.json");
    let p = &gold["prompts"][1];
    let v = generate_json(&hub(), p["text"].as_str().unwrap(), &["-n", "20", "--logprobs"]);
    assert_eq!(v["prompt_ids"], p["ids"]);
    assert_eq!(v["new_ids"], p["greedy_ids"]);
    assert_eq!(v["text"], p["greedy_text"]);
    assert_eq!(v["finish_reason"], "length");
    assert!(v.get("seed").is_none() && v.get("sequences").is_none());
    // The first logprob is log_softmax of the prompt's last-position logits (transformers').
    let raw =
        std::fs::read(generate_util::data_dir().join("goldens").join(p["last_logits_file"].as_str().unwrap())).unwrap();
    let logits: Vec<f64> = raw.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap()))).collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    let first = u32s(&p["greedy_ids"])[0] as usize;
    let lp: Vec<f64> = v["logprobs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(lp.len(), 20);
    assert!((lp[0] - (logits[first] - lse)).abs() < 1e-3, "{} vs {}", lp[0], logits[first] - lse);
    assert!(lp.iter().all(|&l| l <= 0.0));
    let without = generate_json(&hub(), p["text"].as_str().unwrap(), &["-n", "20"]);
    assert!(without.get("logprobs").is_none());
}

#[test]
fn eos_from_generation_config_and_ignore_eos() {
    let (ids, _) = greedy_pieces(10);
    // Make the 4th greedy token an end-of-sequence token (a list, as transformers allows).
    let config = format!(r#"{{"eos_token_id": [50256, {}]}}"#, ids[3]);
    let dir = hub_with_generation_config(Some(&config));
    let v = generate_json(dir.path(), PROMPT, &["-n", "10"]);
    assert_eq!(v["finish_reason"], "eos");
    assert_eq!(u32s(&v["new_ids"]), ids[..4]);
    let v = generate_json(dir.path(), PROMPT, &["-n", "10", "--ignore-eos"]);
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(u32s(&v["new_ids"]), ids);
    // --eos-token-id overrides the file's (and the model's) eos, one id or several.
    let v = generate_json(dir.path(), PROMPT, &["-n", "10", "--eos-token-id", &ids[5].to_string()]);
    assert_eq!((v["finish_reason"].as_str(), u32s(&v["new_ids"])), (Some("eos"), ids[..6].to_vec()));
    let list = format!("{},{}", ids[7], ids[1]);
    let v = generate_json(&hub(), PROMPT, &["-n", "10", "--eos-token-id", &list]);
    assert_eq!(u32s(&v["new_ids"]), ids[..2]);
    let m = hub();
    let m = m.to_str().unwrap();
    expect_error(
        &["generate", "-m", m, PROMPT, "--eos-token-id", "50257"],
        2,
        &["--eos-token-id 50257 is out of range"],
    );
    expect_error(&["generate", "-m", m, PROMPT, "--eos-token-id", "1", "--ignore-eos"], 2, &["--ignore-eos"]);
}

#[test]
fn pad_token_id_is_checked_and_changes_nothing() {
    let (ids, _) = greedy_pieces(10);
    // As generate(pad_token_id=...) on one unpadded row: the same tokens.
    let v = generate_json(&hub(), PROMPT, &["-n", "10", "--pad-token-id", "50256"]);
    assert_eq!(u32s(&v["new_ids"]), ids);
    let m = hub();
    expect_error(
        &["generate", "-m", m.to_str().unwrap(), PROMPT, "--pad-token-id", "50257"],
        2,
        &["--pad-token-id 50257 is out of range"],
    );
}

#[test]
fn generation_config_turns_on_sampling() {
    let greedy = generate_json(&hub(), PROMPT, &["-n", "7"]);
    let dir = hub_with_generation_config(Some(r#"{"do_sample": true, "top_k": 1, "max_new_tokens": 7}"#));
    let v = generate_json(dir.path(), PROMPT, &[]);
    assert!(v["seed"].is_u64(), "do_sample from the file samples: {v}");
    assert_eq!(v["new_ids"], greedy["new_ids"]);
    // --temperature 0 forces greedy decoding.
    let v = generate_json(dir.path(), PROMPT, &["--temperature", "0"]);
    assert!(v.get("seed").is_none());
    assert_eq!(v["new_ids"], greedy["new_ids"]);
    // The saved fixture's own generation_config.json (bos/eos only) is read fine.
    let saved = generate_util::data_dir().join("tiny-gpt2-saved");
    let v = generate_json(&saved, PROMPT, &["-n", "3"]);
    assert!(v.get("seed").is_none());

    let bad = hub_with_generation_config(Some(r#"{"top_p": 2}"#));
    expect_error(
        &["generate", "-m", bad.path().to_str().unwrap(), PROMPT],
        1,
        &["generation_config.json", "top_p must be in (0, 1]"],
    );
    let bad = hub_with_generation_config(Some("{oops"));
    expect_error(&["generate", "-m", bad.path().to_str().unwrap(), PROMPT], 1, &["generation_config.json"]);
}

#[test]
fn text_mode_prints_several_sequences() {
    let v = generate_json(&hub(), PROMPT, &["-n", "5", "--do-sample", "--seed", "9", "--num-return-sequences", "3"]);
    let (code, out, _) = quill(&[
        "generate",
        "-m",
        &m(),
        PROMPT,
        "-n",
        "5",
        "--do-sample",
        "--seed",
        "9",
        "--num-return-sequences",
        "3",
    ]);
    assert_eq!(code, 0);
    let want: Vec<String> =
        v["sequences"].as_array().unwrap().iter().map(|s| format!("{PROMPT}{}", s["text"].as_str().unwrap())).collect();
    assert_eq!(out, format!("{}\n", want.join("\n\n")));
}

#[test]
fn invalid_values_are_usage_errors() {
    let m = m();
    let g = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["generate", "-m", &m, PROMPT, "-n", "2"].iter().map(|s| s.to_string()).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: &[(&[&str], &[&str])] = &[
        (&["--top-p", "0"], &["--top-p 0", "(0, 1]"]),
        (&["--top-p", "1.5"], &["--top-p 1.5"]),
        (&["--top-p", "-0.5"], &["--top-p -0.5"]),
        (&["--temperature", "-1"], &["--temperature -1"]),
        (&["--temperature", "nan"], &["--temperature NaN"]),
        (&["--min-p", "1.01"], &["--min-p 1.01", "[0, 1]"]),
        (&["--min-p", "-0.1"], &["--min-p -0.1"]),
        (&["--repetition-penalty", "0"], &["--repetition-penalty 0"]),
        (&["--repetition-penalty", "-1.2"], &["--repetition-penalty -1.2"]),
        (&["--num-return-sequences", "0"], &["--num-return-sequences 0"]),
        (&["--num-return-sequences", "2"], &["needs sampling"]),
        (&["--temperature", "0", "--do-sample"], &["--temperature 0", "--do-sample"]),
        (&["--max-length", "9"], &["--max-length", "--max-new-tokens"]),
        (&["--logprobs"], &["--json"]),
        (&["--stop", ""], &["--stop", "empty"]),
        (&["--on-context-full", "wrap"], &["wrap"]),
        (&["--top-k", "-1"], &["-1"]),
        (&["--seed", "x"], &["--seed"]),
        // With beams: the range checks of the flags first, as without, then the beam checks.
        (&["--num-beams", "2", "--top-p", "2"], &["--top-p 2 is out of range"]),
        (&["--num-beams", "2", "--temperature", "-1"], &["--temperature -1 is out of range"]),
        (&["--num-beams", "2", "--repetition-penalty", "0"], &["--repetition-penalty 0 is out of range"]),
        (&["--num-beams", "2", "--num-return-sequences", "0"], &["--num-return-sequences 0"]),
        (&["--num-beams", "2", "--stop", ""], &["--stop", "empty"]),
        (&["--num-beams", "2", "--logprobs"], &["--json"]),
        (
            &["--num-beams", "2", "--length-penalty", "inf"],
            &["--length-penalty inf is out of range: give a finite number"],
        ),
        (
            &["--num-beams", "2", "--length-penalty", "nan"],
            &["--length-penalty NaN is out of range: give a finite number"],
        ),
    ];
    for (extra, needles) in cases {
        let args = g(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_error(&args, 2, needles);
    }
    // top-k 0 disables top-k, as in transformers: not an error.
    let v = generate_json(&hub(), PROMPT, &["-n", "2", "--do-sample", "--top-k", "0", "--seed", "1"]);
    assert_eq!(v["new_ids"].as_array().unwrap().len(), 2);
}

/// As transformers reads them: --top-k, --top-p, --min-p and --seed only apply when sampling
/// (--do-sample, --temperature T > 0, or do_sample in generation_config.json). Without it they
/// change nothing, and one line on stderr says so; --top-k 0 does not sample.
#[test]
fn sampling_options_without_sampling_decode_greedily_and_say_so() {
    let greedy = generate_json(&hub(), PROMPT, &["-n", "6"]);
    for extra in [
        &["--top-k", "5"][..],
        &["--top-k", "0"],
        &["--top-p", "0.5"],
        &["--min-p", "0.2"],
        &["--seed", "3"],
        &["--temperature", "0", "--top-k", "5"],
        &["--num-beams", "2", "--top-p", "0.5"],
    ] {
        let mut args = vec!["generate".to_string(), "-m".into(), m(), PROMPT.into(), "-n".into(), "6".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push("--json".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = quill(&args);
        assert_eq!(code, 0, "{extra:?}: {err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v.get("seed").is_none(), "{extra:?} must not sample: {v}");
        if extra[0] != "--num-beams" {
            assert_eq!(v["new_ids"], greedy["new_ids"], "{extra:?}");
        }
        let flag = extra.iter().find(|f| ["--top-k", "--top-p", "--min-p", "--seed"].contains(f)).unwrap();
        assert_eq!(err.lines().filter(|l| l.starts_with("note:")).count(), 1, "{extra:?}: {err}");
        assert!(err.contains(&format!("note: {flag} only applies to sampling")), "{extra:?}: {err}");
    }
    // With sampling on, the same options are read and nothing is noted.
    let (code, _, err) =
        quill(&["generate", "-m", &m(), PROMPT, "-n", "3", "--do-sample", "--top-k", "5", "--seed", "3"]);
    assert_eq!(code, 0);
    assert!(!err.contains("note:"), "{err}");
}

#[test]
fn generation_config_defaults_apply_to_beams_as_to_greedy() {
    let dir = hub_with_generation_config(Some(r#"{"repetition_penalty": 1.3, "max_new_tokens": 6}"#));
    for mode in [&[][..], &["--num-beams", "3"][..]] {
        let from_file = generate_json(dir.path(), PROMPT, mode);
        let mut flags = vec!["--repetition-penalty", "1.3", "-n", "6"];
        flags.extend_from_slice(mode);
        assert_eq!(from_file, generate_json(&hub(), PROMPT, &flags), "{mode:?}");
        // A flag wins over the file.
        let mut flags = vec!["-n", "4"];
        flags.extend_from_slice(mode);
        assert_eq!(generate_json(dir.path(), PROMPT, &flags)["new_ids"].as_array().unwrap().len(), 4, "{mode:?}");
    }
}

#[test]
fn beams_and_generation_config_clashes_are_usage_errors() {
    let m = m();
    expect_error(
        &["generate", "-m", &m, PROMPT, "--num-beams", "2", "--max-length", "3"],
        2,
        &["--max-length 3 leaves no room after the prompt's 3 tokens"],
    );
    // --temperature 0 is greedy, so beam search takes it.
    let v = generate_json(&hub(), PROMPT, &["-n", "4", "--num-beams", "2", "--temperature", "0"]);
    assert_eq!(v, generate_json(&hub(), PROMPT, &["-n", "4", "--num-beams", "2"]));

    // generation_config.json's do_sample: beam search asks for --temperature 0.
    let dir = hub_with_generation_config(Some(r#"{"do_sample": true}"#));
    let file = dir.path().to_str().unwrap();
    expect_error(
        &["generate", "-m", file, PROMPT, "-n", "2", "--num-beams", "2"],
        2,
        &["generation_config.json sets do_sample", "add --temperature 0"],
    );
    let v = generate_json(dir.path(), PROMPT, &["-n", "4", "--num-beams", "2", "--temperature", "0"]);
    assert_eq!(v, generate_json(&hub(), PROMPT, &["-n", "4", "--num-beams", "2"]));

    // generation_config.json's temperature 0 with sampling asked for, by the file or a flag.
    for (config, flags) in [
        (r#"{"do_sample": true, "temperature": 0}"#, &[][..]),
        (r#"{"temperature": 0}"#, &["--do-sample"][..]),
        (r#"{"temperature": 0}"#, &["--do-sample", "--seed", "3"][..]),
    ] {
        let dir = hub_with_generation_config(Some(config));
        let mut args = vec!["generate", "-m", dir.path().to_str().unwrap(), PROMPT, "-n", "2"];
        args.extend_from_slice(flags);
        expect_error(&args, 2, &["generation_config.json sets temperature 0", "give --temperature"]);
        let mut with_t = flags.to_vec();
        with_t.extend_from_slice(&["-n", "2", "--temperature", "0.5"]);
        assert!(generate_json(dir.path(), PROMPT, &with_t)["seed"].is_u64(), "{config} {flags:?}");
    }
}
