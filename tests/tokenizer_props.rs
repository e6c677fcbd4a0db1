//! Properties of the GPT-2 tokenizer with the real GPT-2 files, long-input checks, and the
//! goldens made by transformers' GPT2Tokenizer (tests/data/goldens/tokenizer.json).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use quill::tokenizer::{pre_tokenize, StreamDecoder, Tokenizer};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

fn gpt2() -> &'static Tokenizer {
    static TOK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_vocab_merges(&data("gpt2-tokenizer/encoder.json"), &data("gpt2-tokenizer/vocab.bpe"))
            .expect("load GPT-2 tokenizer")
    })
}

/// Text mixing the characters the pre-tokenizer treats differently.
fn tricky_text() -> impl Strategy<Value = String> {
    let parts = prop_oneof![
        Just("'s".to_string()),
        Just("'ll".to_string()),
        Just("'".to_string()),
        Just("<|endoftext|>".to_string()),
        Just("\r\n".to_string()),
        "[ \t\n\r\u{b}\u{c}\u{1c}-\u{1f}\u{85}\u{a0}\u{2000}\u{3000}]{1,4}",
        "[a-zA-Z0-9]{1,6}",
        "[!-/:-@\\[-`{-~]{1,3}",
        "[\u{300}-\u{36f}\u{200d}\u{fe0f}]",
        "[éßΩЖ日本語🤗👩💻½²٣Ⅻ]{1,3}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(parts, 0..24).prop_map(|v| v.concat())
}

/// A rayon pool of `n` threads, made once.
fn pool(n: usize) -> &'static rayon::ThreadPool {
    static POOLS: std::sync::OnceLock<Vec<rayon::ThreadPool>> = std::sync::OnceLock::new();
    &POOLS.get_or_init(|| (1..=4).map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()).collect())
        [n - 1]
}

/// Text made to be cut: whitespace runs of every kind next to words, contractions, numbers,
/// punctuation and non-ASCII letters, marks and emoji (the places a cut could go wrong).
fn cuttable_text() -> impl Strategy<Value = String> {
    let parts = prop_oneof![
        3 => "[ \t\n\r\u{b}\u{c}\u{85}\u{a0}\u{1680}\u{2000}\u{2028}\u{3000}]{1,5}",
        2 => "[a-zA-Z]{1,5}",
        1 => "'(s|t|re|ve|m|ll|d|S|x)?",
        1 => "[0-9]{1,4}",
        1 => "[!-/:-@\\[-`{-~]{1,3}",
        1 => "[éßΩЖ日本語テ😀👍🏽½²٣\u{301}\u{200d}\u{1c}]{1,3}",
        1 => Just("<|endoftext|>".to_string()),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(parts, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parallel_encode_equals_encode(s in cuttable_text(), chunk in 1usize..48, threads in 1usize..=4) {
        let t = gpt2();
        let want = t.encode(&s);
        prop_assert_eq!(pool(threads).install(|| t.encode_parallel_chunks(&s, chunk)), want.clone());
        prop_assert_eq!(pool(threads).install(|| t.encode_parallel(&s)), want);
    }

    #[test]
    fn parallel_encode_equals_encode_on_any_input(s in any::<String>(), chunk in 1usize..16) {
        let t = gpt2();
        prop_assert_eq!(pool(2).install(|| t.encode_parallel_chunks(&s, chunk)), t.encode(&s));
    }

    #[test]
    fn parallel_encode_equals_encode_with_options(
        s in cuttable_text(), chunk in 1usize..32, prefix in any::<bool>(), split in any::<bool>()
    ) {
        let mut t = gpt2().clone();
        t.options_mut().add_prefix_space = prefix;
        t.options_mut().split_special_tokens = split;
        prop_assert_eq!(pool(3).install(|| t.encode_parallel_chunks(&s, chunk)), t.encode(&s));
    }

    #[test]
    fn decode_inverts_encode(s in any::<String>()) {
        let t = gpt2();
        prop_assert_eq!(t.decode(&t.encode(&s)).unwrap(), s);
    }

    #[test]
    fn decode_inverts_encode_tricky(s in tricky_text()) {
        let t = gpt2();
        prop_assert_eq!(t.decode(&t.encode(&s)).unwrap(), s);
    }

    #[test]
    fn pieces_concatenate_to_input(s in tricky_text()) {
        let pieces: Vec<&str> = pre_tokenize(&s).collect();
        prop_assert!(pieces.iter().all(|p| !p.is_empty()));
        prop_assert_eq!(pieces.concat(), s);
    }

    #[test]
    fn pieces_concatenate_to_any_input(s in any::<String>()) {
        prop_assert_eq!(pre_tokenize(&s).collect::<String>(), s);
    }

    #[test]
    fn stream_decoder_matches_decode(s in tricky_text()) {
        let t = gpt2();
        let ids = t.encode(&s);
        let mut dec = StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&dec.push(t, id).unwrap());
            prop_assert!(dec.pending_len() <= 3);
        }
        out.push_str(&dec.finish());
        prop_assert_eq!(out, s);
    }

    #[test]
    fn stream_decoder_matches_decode_on_any_ids(ids in prop::collection::vec(0u32..50257, 0..32)) {
        let t = gpt2();
        let mut dec = StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&dec.push(t, id).unwrap());
        }
        out.push_str(&dec.finish());
        prop_assert_eq!(out, t.decode(&ids).unwrap());
    }
}

/// FNV-1a 64 of the ids as little-endian u32 (as tools/tokenizer-bench/bench.py computes it).
fn fnv1a64(ids: &[u32]) -> u64 {
    ids.iter()
        .flat_map(|id| id.to_le_bytes())
        .fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3))
}

/// The benchmark corpus (benches/data/tokenizer-corpus/, its regular files but *.md in name
/// order): transformers' GPT2Tokenizer gives 269,112 ids with FNV-1a-64 4bd30d3a9debf346 (see
/// its README); so must every encoder here, with or without threads.
#[test]
fn corpus_ids_match_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/data/tokenizer-corpus");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    names.sort();
    let text: String = names.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert_eq!(text.len(), 676_669);
    let t = gpt2();
    let ids = t.encode(&text);
    assert_eq!((ids.len(), format!("{:016x}", fnv1a64(&ids))), (269_112, "4bd30d3a9debf346".to_string()));
    for (threads, chunk) in [(2, 1), (2, 4096), (4, 100_000)] {
        assert_eq!(pool(threads).install(|| t.encode_parallel_chunks(&text, chunk)), ids, "{threads} threads, {chunk}");
    }
    assert_eq!(t.decode(&ids).unwrap(), text);
}

#[test]
fn megabyte_inputs() {
    // The benchmark's worst cases, at 1 MB: one digit, emoji, random bytes (lossy UTF-8).
    let t = gpt2();
    let digits = "7".repeat(1_000_000);
    let ids = t.encode(&digits);
    assert_eq!(t.decode(&ids).unwrap(), digits);
    let emoji: String = (0..250_000u32).map(|i| char::from_u32(0x1F600 + (i * 7919) % 80).unwrap()).collect();
    let ids = t.encode(&emoji);
    assert_eq!(t.decode(&ids).unwrap(), emoji);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..1_000_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let ids = t.encode(&text);
    assert_eq!(pool(2).install(|| t.encode_parallel_chunks(&text, 10_000)), ids);
    assert_eq!(t.decode(&ids).unwrap(), text);
}

#[test]
fn long_single_char_line_is_not_quadratic() {
    let t = gpt2();
    // 200 KB of one letter: one pre-tokenizer piece. "a"×30 → 7×24794 ("aaaa") + 7252 ("aa").
    let text = "a".repeat(200_000);
    let ids = t.encode(&text);
    assert_eq!(ids.len(), 50_000);
    assert!(ids.iter().all(|&id| id == 24794));
    assert_eq!(t.decode(&ids).unwrap(), text);

    let text = "a".repeat(200_002);
    let ids = t.encode(&text);
    assert_eq!(ids.len(), 50_001);
    assert_eq!(*ids.last().unwrap(), 7252);
}

#[test]
fn hundred_thousand_spaces() {
    let t = gpt2();
    let spaces = " ".repeat(100_000);
    assert_eq!(t.encode(&spaces), vec![220; 100_000]);
    let text = format!("{spaces}hello");
    let ids = t.encode(&text);
    assert_eq!(ids.len(), 100_000);
    assert_eq!(ids[99_999], 23748); // " hello"
    assert_eq!(t.decode(&ids).unwrap(), text);
    let newlines = "\n".repeat(100_001);
    let ids = t.encode(&newlines);
    assert_eq!(ids.len(), 50_001); // 628 = "\n\n"
    assert!(ids[..50_000].iter().all(|&id| id == 628));
}

#[test]
fn model_dirs_load_the_same_tokenizer() {
    let t = gpt2();
    let text = "Hello world<|endoftext|> It's 2024 — naïve café 🤗\n\n";
    for dir in ["tiny-gpt2-hub", "tiny-gpt2-saved"] {
        let path = data(dir);
        if !path.is_dir() {
            eprintln!("note: {} is absent; skipped", path.display());
            continue;
        }
        let other = Tokenizer::from_model_dir(&path).unwrap();
        assert_eq!(other.vocab_size(), 50257, "{dir}");
        assert_eq!(other.eos_id(), Some(50256), "{dir}");
        assert_eq!(other.pad_id(), None, "{dir}");
        assert_eq!(other.encode(text), t.encode(text), "{dir}");
    }
}

/// Checks tests/data/goldens/tokenizer.json (or the file named by QUILL_TOKENIZER_GOLDENS):
/// `{"cases":[{"text":..., "ids":[...]}]}`, optionally with per-case `add_prefix_space`,
/// `split_special_tokens` and `pieces` (the pre-tokenizer output).
#[test]
fn goldens_from_transformers() {
    let path = std::env::var_os("QUILL_TOKENIZER_GOLDENS")
        .map(PathBuf::from)
        .unwrap_or_else(|| data("goldens/tokenizer.json"));
    if !path.is_file() {
        eprintln!("note: {} is absent; tokenizer goldens skipped", path.display());
        return;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("goldens are JSON");
    let cases = json["cases"].as_array().expect("goldens have a \"cases\" array");
    let mut failures = Vec::new();
    let mut tok = gpt2().clone();
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().expect("case.text is a string");
        let opts = tok.options_mut();
        opts.add_prefix_space = case["add_prefix_space"].as_bool().unwrap_or(false);
        opts.split_special_tokens = case["split_special_tokens"].as_bool().unwrap_or(false);
        let want: Vec<u32> = case["ids"]
            .as_array()
            .expect("case.ids is an array")
            .iter()
            .map(|v| v.as_u64().expect("ids are integers") as u32)
            .collect();
        let got = tok.encode(text);
        if got != want {
            failures.push(format!("case {i} {text:?}:\n  expected {want:?}\n  got      {got:?}"));
        }
        if let Some(pieces) = case["pieces"].as_array() {
            let want: Vec<&str> = pieces.iter().map(|p| p.as_str().unwrap()).collect();
            let got: Vec<&str> = pre_tokenize(text).collect();
            if got != want {
                failures.push(format!("case {i} {text:?} pieces:\n  expected {want:?}\n  got      {got:?}"));
            }
        }
        // Special tokens decode to their literal text, so the expected ids decode to the input.
        let back = tok.decode(&want).unwrap();
        let prefix = if tok.options().add_prefix_space { " " } else { "" };
        if back != format!("{prefix}{text}") {
            failures.push(format!("case {i} {text:?}: decoding the expected ids gave {back:?}"));
        }
    }
    eprintln!("{} tokenizer golden cases from {}, {} failures", cases.len(), path.display(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
