//! Sampling: the distribution of one step (checked statistically on fixed logits, deterministic
//! seeds), reproducibility across runs and thread counts, the cases that must equal greedy, and
//! the support the processors leave with no_repeat_ngram_size and min_new_tokens, step by step
//! along transformers' own sampled sequences (`constraint_sampled_cases` of generation.json).

mod generate_util;

use generate_util::{generate_json, golden, hub, u32s};
use quill::generate::processors::{History, LogitsProcessors, SeenTokens};
use quill::generate::sampler::{sample, Pcg32};
use quill::generate::{DecodeOptions, Sampling, Strategy};
use serde_json::Value;

/// Upper 0.1% point of the chi-square distribution with `df` degrees of freedom
/// (Wilson–Hilferty; within a few percent for df >= 2, conservative enough here).
fn chi2_bound(df: usize) -> f64 {
    let d = df as f64;
    let z = 3.09;
    let a = 2.0 / (9.0 * d);
    d * (1.0 - a + z * a.sqrt()).powi(3)
}

/// The distribution transformers' warpers define: softmax(logits / T), restricted to the top k,
/// then to the smallest most-probable set reaching p, then renormalised. Computed independently
/// of the crate, in f64, on sorted probabilities.
fn reference(logits: &[f32], t: f64, k: usize, p: f64) -> Vec<f64> {
    let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l) / t).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]));
    if k > 0 {
        order.truncate(k);
    }
    let w: Vec<f64> = order.iter().map(|&i| (scaled[i] - max).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut kept = 0;
    let mut mass = 0.0;
    for &wi in &w {
        if kept > 0 && mass >= p * total {
            break;
        }
        mass += wi;
        kept += 1;
    }
    let mut probs = vec![0.0; logits.len()];
    for (&i, &wi) in order.iter().zip(&w).take(kept) {
        probs[i] = wi / mass;
    }
    probs
}

/// Draws `n` tokens, one per seed 0..n, through the crate's processors and sampler; counts them.
fn draw(logits: &[f32], s: &Sampling, n: u64) -> Vec<u64> {
    let mut counts = vec![0u64; logits.len()];
    let opts = DecodeOptions { strategy: Strategy::Sample(s.clone()), ..DecodeOptions::greedy(1) };
    let mut processors = LogitsProcessors::new(&opts, logits.len());
    let mut work = logits.to_vec();
    for seed in 0..n {
        work.copy_from_slice(logits);
        processors.apply(&mut work, &[], Default::default());
        let id = sample(&work, &mut Pcg32::new(seed, 0)).unwrap();
        counts[id as usize] += 1;
    }
    counts
}

fn check_frequencies(logits: &[f32], s: &Sampling, n: u64) {
    let want = reference(logits, f64::from(s.temperature), s.top_k, f64::from(s.top_p));
    let counts = draw(logits, s, n);
    let mut chi2 = 0.0;
    let mut df = 0;
    for (i, (&c, &p)) in counts.iter().zip(&want).enumerate() {
        if p == 0.0 {
            assert_eq!(c, 0, "token {i} is outside the top-k/top-p set but was drawn {c} times ({s:?})");
            continue;
        }
        let expected = p * n as f64;
        assert!(expected >= 5.0, "test set-up: expected count {expected} too small for chi-square");
        chi2 += (c as f64 - expected).powi(2) / expected;
        df += 1;
    }
    let df = df - 1;
    assert!(df >= 1, "test set-up: need at least two kept tokens");
    let bound = chi2_bound(df);
    assert!(chi2 < bound, "chi-square {chi2:.2} >= {bound:.2} (df {df}) for {s:?}: counts {counts:?}, want {want:?}");
}

fn spread_logits(n: usize) -> Vec<f32> {
    // Irregular values in about [-2, 2], no ties.
    (0..n).map(|i| ((i * 37 % n) as f32 / n as f32) * 4.0 - 2.0 + (i as f32) * 1e-3).collect()
}

#[test]
fn one_step_matches_softmax_over_temperature() {
    let logits = spread_logits(40);
    let s = Sampling { temperature: 0.8, top_k: 0, top_p: 1.0, min_p: None, seed: 0 };
    check_frequencies(&logits, &s, 40_000);
    let s = Sampling { temperature: 1.7, ..s };
    check_frequencies(&logits, &s, 40_000);
}

#[test]
fn one_step_matches_softmax_restricted_to_top_k_and_top_p() {
    let logits = spread_logits(40);
    for (t, k, p) in [(1.0, 8, 1.0), (0.7, 0, 0.8), (1.3, 12, 0.6), (0.9, 5, 0.95)] {
        let s = Sampling { temperature: t, top_k: k, top_p: p, min_p: None, seed: 0 };
        check_frequencies(&logits, &s, 30_000);
    }
}

#[test]
fn min_p_removes_tokens_below_the_relative_threshold() {
    let logits = spread_logits(40);
    let s = Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: Some(0.3), seed: 0 };
    let counts = draw(&logits, &s, 20_000);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (i, &c) in counts.iter().enumerate() {
        let relative = f64::from(logits[i] - max).exp();
        if relative < 0.3 {
            assert_eq!(c, 0, "token {i} (p/p_max {relative:.3}) is below min-p but was drawn");
        } else {
            assert!(c > 0, "token {i} (p/p_max {relative:.3}) was never drawn");
        }
    }
}

#[test]
fn the_generator_is_reproducible_and_seeds_differ() {
    let a: Vec<u32> = {
        let mut r = Pcg32::new(1234, 0);
        (0..100).map(|_| r.next_u32()).collect()
    };
    let b: Vec<u32> = {
        let mut r = Pcg32::new(1234, 0);
        (0..100).map(|_| r.next_u32()).collect()
    };
    assert_eq!(a, b);
    let c: Vec<u32> = {
        let mut r = Pcg32::new(1234, 1);
        (0..100).map(|_| r.next_u32()).collect()
    };
    assert_ne!(a, c, "streams of one seed must differ");
}

fn prompts() -> Vec<String> {
    let gold = golden("tiny-gpt2-hub.json");
    gold["prompts"].as_array().unwrap()[..4].iter().map(|p| p["text"].as_str().unwrap().to_string()).collect()
}

#[test]
fn same_seed_same_text_across_runs_and_thread_counts() {
    let m = hub();
    let args = ["-n", "100", "--on-context-full", "slide", "--temperature", "0.9", "--top-k", "0", "--seed", "77"];
    let first = generate_json(&m, "The Manhattan bridge", &args);
    for threads in ["1", "2", "1"] {
        let mut with_threads = args.to_vec();
        with_threads.extend_from_slice(&["--threads", threads]);
        let again = generate_json(&m, "The Manhattan bridge", &with_threads);
        assert_eq!(again, first, "--threads {threads}");
    }
    assert_eq!(first["seed"], 77);
    assert_eq!(first["new_ids"].as_array().unwrap().len(), 100);
    let mut other = args.to_vec();
    other[args.len() - 1] = "78";
    let different = generate_json(&m, "The Manhattan bridge", &other);
    assert_ne!(different["new_ids"], first["new_ids"], "seeds 77 and 78 gave the same 100 tokens");
}

#[test]
fn top_k_1_and_tiny_top_p_equal_greedy() {
    let m = hub();
    for (k, prompt) in prompts().iter().enumerate() {
        let greedy = generate_json(&m, prompt, &["-n", "20"]);
        assert!(greedy.get("seed").is_none(), "greedy runs have no seed");
        for seed in ["1", "2"] {
            let top1 = generate_json(&m, prompt, &["-n", "20", "--do-sample", "--top-k", "1", "--seed", seed]);
            assert_eq!(top1["new_ids"], greedy["new_ids"], "prompt {k}, --top-k 1, seed {seed}");
            let tiny_p = generate_json(&m, prompt, &["-n", "20", "--do-sample", "--top-p", "1e-6", "--seed", seed]);
            assert_eq!(tiny_p["new_ids"], greedy["new_ids"], "prompt {k}, --top-p 1e-6, seed {seed}");
            let tiny_p = generate_json(
                &m,
                prompt,
                &["-n", "20", "--do-sample", "--top-p", "1e-6", "--top-k", "0", "--seed", seed],
            );
            assert_eq!(tiny_p["new_ids"], greedy["new_ids"], "prompt {k}, --top-p 1e-6 --top-k 0, seed {seed}");
        }
    }
}

#[test]
fn several_sequences_best_first() {
    let m = hub();
    let prompt = "The Manhattan bridge";
    let args = ["-n", "12", "--do-sample", "--seed", "5", "--num-return-sequences", "4", "--logprobs"];
    let v = generate_json(&m, prompt, &args);
    let seqs = v["sequences"].as_array().unwrap();
    assert_eq!(seqs.len(), 4);
    let totals: Vec<f64> = seqs.iter().map(|s| s["total_logprob"].as_f64().unwrap()).collect();
    for w in totals.windows(2) {
        assert!(w[0] >= w[1], "not best first: {totals:?}");
    }
    for s in seqs {
        let lp: f64 = s["logprobs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).sum();
        assert!((lp - s["total_logprob"].as_f64().unwrap()).abs() < 1e-3);
        assert_eq!(s["new_ids"].as_array().unwrap().len(), 12);
    }
    assert_eq!(v["new_ids"], seqs[0]["new_ids"]);
    assert_eq!(v["text"], seqs[0]["text"]);
    assert_eq!(v["logprobs"], seqs[0]["logprobs"]);
    let distinct: std::collections::HashSet<String> = seqs.iter().map(|s| s["new_ids"].to_string()).collect();
    assert_eq!(distinct.len(), 4, "four samples of 12 tokens should differ");
    // Sequence i uses random stream i: a single sequence with the same seed is one of them.
    let single = generate_json(&m, prompt, &["-n", "12", "--do-sample", "--seed", "5"]);
    assert!(seqs.iter().any(|s| s["new_ids"] == single["new_ids"]));
    assert!(single.get("sequences").is_none());
    let one: Value =
        generate_json(&m, prompt, &["-n", "12", "--do-sample", "--seed", "5", "--num-return-sequences", "1"]);
    assert_eq!(one["sequences"].as_array().unwrap().len(), 1);
    assert_eq!(u32s(&one["new_ids"]), u32s(&single["new_ids"]));
}

/// Replays each of transformers' sampled sequences: at every step the processors and warpers
/// leave the same tokens finite as transformers' `output_scores` show (it then feeds
/// transformers' token, so the random draws never need to agree).
#[test]
fn processors_leave_transformers_support_along_its_sampled_sequences() {
    let gold = golden("generation.json");
    let cases = gold["constraint_sampled_cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    let model = quill::Model::load(&hub(), &Default::default()).unwrap();
    let vocab = model.config().vocab_size;
    let mut session = model.session(None).unwrap();
    for case in cases {
        let a = &case["args"];
        let count = |k: &str| a[k].as_u64().unwrap_or(0) as usize;
        let sampling = Sampling {
            temperature: a["temperature"].as_f64().unwrap_or(1.0) as f32,
            top_k: a["top_k"].as_u64().unwrap_or(50) as usize,
            ..Sampling::default()
        };
        let opts = DecodeOptions {
            strategy: Strategy::Sample(sampling),
            no_repeat_ngram_size: count("no_repeat_ngram_size"),
            min_new_tokens: count("min_new_tokens"),
            eos_token_ids: vec![a["eos_token_id"].as_u64().unwrap() as u32],
            ..DecodeOptions::greedy(count("max_new_tokens"))
        };
        let mut processors = LogitsProcessors::new(&opts, vocab);
        let prompt = u32s(&case["ids"]);
        let new_ids = u32s(&case["new_ids"]);
        session.reset();
        let mut logits = session.feed(&prompt).unwrap().to_vec();
        for (step, want) in case["steps"].as_array().unwrap().iter().enumerate() {
            let history = History { before: &prompt, after: &new_ids[..step], new_tokens: step };
            processors.apply(&mut logits, SeenTokens::new(0, false).ids(), history);
            let finite: Vec<u32> = (0..vocab as u32).filter(|&i| logits[i as usize].is_finite()).collect();
            let what = format!("{} {:?}, step {step}", case["name"], case["text"]);
            match (want.get("kept"), want.get("banned")) {
                (Some(kept), None) => assert_eq!(finite, u32s(kept), "{what}"),
                (None, Some(banned)) => {
                    let got: Vec<u32> = (0..vocab as u32).filter(|&i| !logits[i as usize].is_finite()).collect();
                    assert_eq!(got, u32s(banned), "{what}");
                }
                _ => panic!("{what}: a step needs kept or banned"),
            }
            logits = session.feed(&[new_ids[step]]).unwrap().to_vec();
        }
    }
}

#[test]
fn sampled_text_never_repeats_an_ngram() {
    for seed in ["1", "2", "3"] {
        let text = "long long ago, I was a boy, I love";
        let v = generate_json(
            &hub(),
            text,
            &["--do-sample", "--top-k", "5", "--seed", seed, "-n", "40", "--no-repeat-ngram-size", "2"],
        );
        let all: Vec<u32> = u32s(&v["prompt_ids"]).into_iter().chain(u32s(&v["new_ids"])).collect();
        let mut bigrams: Vec<(u32, u32)> = all.windows(2).map(|w| (w[0], w[1])).collect();
        let n = bigrams.len();
        bigrams.sort_unstable();
        bigrams.dedup();
        // The prompt itself repeats "I": its own bigrams may repeat, the new ones may not add any.
        let prompt = u32s(&v["prompt_ids"]);
        let mut prompt_bigrams: Vec<(u32, u32)> = prompt.windows(2).map(|w| (w[0], w[1])).collect();
        let pn = prompt_bigrams.len();
        prompt_bigrams.sort_unstable();
        prompt_bigrams.dedup();
        assert_eq!(n - bigrams.len(), pn - prompt_bigrams.len(), "seed {seed}: {all:?}");
    }
}
