//! Tests with the real GPT-2 files (expected ids from transformers' GPT2Tokenizer 4.46).

use super::encode::{CACHE_MAX_ENTRIES, CACHE_MAX_IDS, CACHE_MAX_PIECE};
use super::special::Segment;
use super::*;
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpt2-tokenizer")
}

fn gpt2() -> Tokenizer {
    let d = data_dir();
    Tokenizer::from_vocab_merges(&d.join("encoder.json"), &d.join("vocab.bpe")).unwrap()
}

#[test]
fn loads_gpt2() {
    let t = gpt2();
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.merges_len(), 50000);
    assert_eq!((t.eos_id(), t.bos_id(), t.pad_id()), (Some(50256), Some(50256), None));
    assert_eq!(t.id_to_token(50256), Some("<|endoftext|>"));
    assert_eq!(t.id_to_token(995), Some("Ġworld"));
    assert_eq!(t.token_to_id("Ġworld"), Some(995));
    assert_eq!(t.id_to_token(50257), None);
}

#[test]
fn encodes_like_transformers() {
    let t = gpt2();
    let cases: &[(&str, &[u32])] = &[
        ("Hello world", &[15496, 995]),
        ("I can't believe it's not butter!", &[40, 460, 470, 1975, 340, 338, 407, 9215, 0]),
        ("a  b\n\n  c \t", &[64, 220, 275, 628, 220, 269, 220, 197]),
        (
            "日本語 🤗👩\u{200d}💻 café",
            &[33768, 98, 17312, 105, 45739, 252, 12520, 97, 245, 41840, 102, 447, 235, 8582, 240, 119, 40304],
        ),
        ("x<|endoftext|>y", &[87, 50256, 88]),
        (" <|endoftext|> ", &[220, 50256, 220]),
        ("\r\n12345 ½", &[201, 198, 10163, 2231, 25208]),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &[24794, 24794, 24794, 24794, 24794, 24794, 24794, 7252]),
        ("", &[]),
    ];
    for (text, ids) in cases {
        assert_eq!(t.encode(text), *ids, "{text:?}");
        assert_eq!(t.decode(ids).unwrap(), *text);
    }
    assert_eq!(t.encode(&" ".repeat(20)), vec![220; 20]);
}

#[test]
fn options() {
    let mut t = gpt2();
    t.options_mut().split_special_tokens = true;
    assert_eq!(t.encode("x<|endoftext|>y"), [87, 27, 91, 437, 1659, 5239, 91, 29, 88]);
    t.options_mut().split_special_tokens = false;
    t.options_mut().add_prefix_space = true;
    // transformers prepends the space unconditionally.
    assert_eq!(t.encode(""), [220]);
    assert_eq!(t.encode("hi"), [23105]);
    assert_eq!(t.encode(" hi"), [220, 23105]);
    assert_eq!(t.encode("\nhi"), [220, 198, 5303]);
    assert_eq!(t.encode("<|endoftext|>hi"), [220, 50256, 5303]);
}

#[test]
fn decode_errors_and_unknown_ids() {
    let mut t = gpt2();
    // 447 = "âĢ" = bytes E2 80 (an incomplete character).
    assert_eq!(t.decode(&[447, 447, 5303]).unwrap(), "\u{FFFD}\u{FFFD}hi");
    assert_eq!(t.decode_bytes(&[447]).unwrap(), b"\xE2\x80");
    t.options_mut().errors = DecodeErrors::Ignore;
    assert_eq!(t.decode(&[447, 447, 5303]).unwrap(), "hi");
    t.options_mut().errors = DecodeErrors::Strict;
    assert!(matches!(t.decode(&[447]), Err(Error::Input(_))));
    let err = t.decode(&[50257]).unwrap_err().to_string();
    assert!(err.contains("50257") && err.contains("50257)"), "{err}");
}

#[test]
fn stream_decoder_holds_partial_characters() {
    let t = gpt2();
    let ids = t.encode("naïve 🤗 ok");
    let mut s = StreamDecoder::new();
    let mut out = String::new();
    for &id in &ids {
        let piece = s.push(&t, id).unwrap();
        assert!(s.pending_len() <= 3);
        out.push_str(&piece);
    }
    out.push_str(&s.finish());
    assert_eq!(out, "naïve 🤗 ok");
    // Incomplete then invalid: replaced as soon as known.
    assert_eq!(s.push(&t, 447).unwrap(), "");
    assert_eq!(s.push(&t, 5303).unwrap(), "\u{FFFD}hi");
    assert_eq!(s.push(&t, 447).unwrap(), "");
    assert_eq!(s.finish(), "\u{FFFD}");
    assert!(s.push(&t, 99_999).is_err());
}

#[test]
fn batch_uses_eos_as_pad() {
    let t = gpt2();
    let b = t.encode_batch(&["Hello world", "a"], &BatchOptions { max_length: Some(8), padding: Padding::Left });
    assert_eq!(b.input_ids, [vec![15496, 995], vec![50256, 64]]);
    assert_eq!(b.attention_mask, [vec![1, 1], vec![0, 1]]);
}

fn tiny(vocab: &str, merges: &str) -> Result<Tokenizer> {
    Tokenizer::from_bytes_vocab_merges(vocab.as_bytes(), merges.as_bytes(), Path::new("/mem"))
}

#[test]
fn hostile_files() {
    let err = |r: Result<Tokenizer>| r.unwrap_err().to_string();
    let e = err(tiny("not json", "#version: 0.2\n"));
    assert!(e.contains("vocab.json") && e.contains("not valid JSON"), "{e}");
    let e = err(tiny(r#"{"a": 0, "b": 0}"#, "#version: 0.2\n"));
    assert!(e.contains("both have id 0"), "{e}");
    let e = err(tiny(r#"{"a": 0, "b": 1}"#, "#version: 0.2\na c\n"));
    assert!(e.contains("merges.txt line 2") && e.contains("\"c\""), "{e}");
    let e = err(tiny(r#"{"a": 0, "b": 1}"#, "#version: 0.2\na b\n"));
    assert!(e.contains("merges.txt line 2") && e.contains("\"ab\""), "{e}");
    let e = err(tiny(r#"{"a": 0}"#, ""));
    assert!(e.contains("merges.txt") && e.contains("empty"), "{e}");
    let e = err(tiny("", "#version: 0.2\n"));
    assert!(e.contains("empty"), "{e}");
    let e = err(tiny(r#"{"a": true}"#, "#version: 0.2\n"));
    assert!(e.contains("not an integer"), "{e}");
    // A vocabulary without most byte tokens: unknown bytes become unk, and ids without a token
    // are decode errors.
    let t = tiny(r#"{"a": 0, "b": 1, "ab": 5}"#, "#version: 0.2\na b\n").unwrap();
    assert_eq!(t.vocab_size(), 7);
    assert_eq!(t.eos_id(), Some(6));
    assert_eq!(t.encode("abab a"), [5, 5, 6, 0]);
    assert!(t.decode(&[3]).is_err());
}

#[test]
fn tokenizer_json_and_model_dir() {
    let dir = std::env::temp_dir().join(format!("quill-tok-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Tokenizer::from_model_dir(&dir).unwrap_err().to_string();
    assert!(err.contains(&dir.display().to_string()) && err.contains("tokenizer.json"), "{err}");

    let json = r#"{
        "added_tokens": [{"id": 4, "content": "<|eot|>", "special": true, "lstrip": false, "rstrip": false}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 5},
                  "merges": ["a b", ["Ġ", "ab"]]}
    }"#;
    std::fs::write(dir.join("tokenizer.json"), json).unwrap();
    let t = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json")).unwrap();
    assert!(t.options().add_prefix_space);
    assert_eq!(t.encode("ab<|eot|>ab"), [5, 4, 2]);
    assert_eq!(t.vocab_size(), 7); // <|endoftext|> added at 6
    assert_eq!(t.decode(&[5, 4, 2]).unwrap(), " ab<|eot|>ab");

    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"add_prefix_space": false, "eos_token": {"content": "<|eot|>"}, "pad_token": "<pad>", "errors": "ignore"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("special_tokens_map.json"), r#"{"bos_token": "<|eot|>"}"#).unwrap();
    let t = Tokenizer::from_model_dir(&dir).unwrap();
    assert!(!t.options().add_prefix_space);
    assert_eq!(t.options().errors, DecodeErrors::Ignore);
    assert_eq!((t.eos_id(), t.bos_id(), t.pad_id()), (Some(4), Some(4), Some(7)));
    assert_eq!(t.encode("ab<pad>"), [2, 7]);

    // New-style config (with added_tokens_decoder): special_tokens_map.json is not read.
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"added_tokens_decoder": {"4": {"content": "<|eot|>", "special": true}}, "eos_token": "<|eot|>"}"#,
    )
    .unwrap();
    let t = Tokenizer::from_model_dir(&dir).unwrap();
    assert_eq!((t.eos_id(), t.bos_id(), t.pad_id()), (Some(4), Some(6), None));
    // Legacy config: added_tokens.json is read too.
    std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
    std::fs::write(dir.join("added_tokens.json"), r#"{"<new>": 9}"#).unwrap();
    let t = Tokenizer::from_model_dir(&dir).unwrap();
    assert_eq!(t.bos_id(), Some(4));
    assert_eq!(t.encode("<new>ab"), [3, 9, 2]); // add_prefix_space from tokenizer.json
    assert_eq!(t.vocab_size(), 10);
    std::fs::write(dir.join("added_tokens.json"), r#"{"<new>": 4}"#).unwrap();
    let err = Tokenizer::from_model_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("added_tokens.json") && err.contains("already"), "{err}");
    std::fs::remove_file(dir.join("added_tokens.json")).unwrap();

    std::fs::write(dir.join("tokenizer.json"), r#"{"model": {"type": "WordPiece"}}"#).unwrap();
    let err = Tokenizer::from_model_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("only \"BPE\""), "{err}");
    std::fs::write(dir.join("tokenizer.json"), r#"{"model": {"vocab": {"a": 0}, "merges": ["a"]}}"#).unwrap();
    let err = Tokenizer::from_model_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("model.merges[0]"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
    check::<StreamDecoder>();
}

/// The ids of `text` by the merge loop alone: no whole-token shortcut, no cache.
fn encode_by_merges(t: &Tokenizer, text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut scratch = bpe::Scratch::default();
    for seg in t.segments(text) {
        match seg {
            Segment::Added(id) => out.push(id),
            Segment::Text(text) => {
                for piece in pretokenize::pieces(text) {
                    let mut ids: Vec<u32> = piece.bytes().map(|b| t.byte_ids[b as usize]).collect();
                    bpe::bpe(&t.merges, &mut ids, &mut scratch);
                    out.extend(ids.iter().map(|&id| if id == NO_TOKEN { t.unk.unwrap() } else { id }));
                }
            }
        }
    }
    out
}

#[test]
fn whole_token_shortcut_over_the_whole_vocabulary() {
    // Every id's bytes, taken as one piece, through the encoder (twice: the first time finds the
    // whole-token flag, the second uses it) and through the merge loop alone.
    let t = gpt2();
    let mut whole = 0;
    for id in 0..t.vocab_size() as u32 {
        let bytes = t.token_bytes(id).unwrap();
        let mut want: Vec<u32> = bytes.iter().map(|&b| t.byte_ids[b as usize]).collect();
        bpe::bpe(&t.merges, &mut want, &mut bpe::Scratch::default());
        for pass in 0..2 {
            let mut got = Vec::new();
            t.encode_piece(bytes, &mut EncodeState::default(), &mut got);
            assert_eq!(got, want, "token {id} {:?}, pass {pass}", t.id_to_token(id));
        }
        if want == [id] {
            whole += 1;
        }
    }
    // GPT-2: all 256 byte tokens and all 50,000 merged tokens are whole; <|endoftext|> is not
    // (its bytes are several pieces' worth of ordinary text).
    assert_eq!(whole, 50_256);
    let eot = t.vocab_index.find(b"<|endoftext|>").unwrap();
    assert_eq!((eot.id, eot.is_whole()), (50256, Some(false)));
}

#[test]
fn a_token_that_merges_do_not_rebuild_is_no_shortcut() {
    // "b c" ranks first, so "abc" merges to [a, bc], never to the token "abc".
    let t = tiny(r#"{"a": 0, "b": 1, "c": 2, "bc": 3, "ab": 4, "abc": 5}"#, "#version: 0.2\nb c\na b\nab c\n").unwrap();
    for _ in 0..3 {
        assert_eq!(t.encode("abc"), [0, 3]);
        assert_eq!(t.encode("ab"), [4]);
    }
    assert_eq!(t.vocab_index.find(b"abc").unwrap().is_whole(), Some(false));
    assert_eq!(t.vocab_index.find(b"ab").unwrap().is_whole(), Some(true));
}

/// xorshift64 words: `n` pieces of a space and `len.0 + (0..len.1)` letters from `alphabet`.
fn random_words(n: usize, mut seed: u64, len: (u64, u64), alphabet: &[u8]) -> String {
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut text = String::new();
    for _ in 0..n {
        text.push(' ');
        for _ in 0..len.0 + next() % len.1 {
            text.push(char::from(alphabet[(next() % alphabet.len() as u64) as usize]));
        }
    }
    text
}

#[test]
fn the_cache_never_changes_results() {
    let t = gpt2();
    // More distinct non-token pieces than the cache holds, each twice (so that some are
    // cached hits, some evicted and merged again), then a long piece and a repeat of all.
    let lower = b"abcdefghijklmnopqrstuvwxyz";
    let words = random_words(CACHE_MAX_ENTRIES + 5_000, 7, (5, 4), lower);
    let long = "q".repeat(CACHE_MAX_PIECE + 1);
    let text = format!("{words}{words} {long} {long}{words}");
    assert_eq!(t.encode(&text), encode_by_merges(&t, &text));
    // Pieces of many tokens each, so that the ids fill up before the piece count does.
    let mixed_case = b"aBcDeFgHiJkLmNoPqRsTuVwXyZQZXJ";
    let words = random_words(CACHE_MAX_IDS / 12, 11, (30, 34), mixed_case);
    let text = format!("{words}{words}");
    let ids = t.encode(&text);
    assert!(ids.len() > 2 * CACHE_MAX_IDS, "{} ids", ids.len());
    assert_eq!(ids, encode_by_merges(&t, &text));
    let mixed = "It's 2024: naïve café, 日本語テキスト, Привет мир! \t\n  x = f(y)  \r\n{\"k\": [1, 2]}\n";
    let text = mixed.repeat(50);
    assert_eq!(t.encode(&text), encode_by_merges(&t, &text));
}

#[test]
fn pieces_are_unchanged_by_cutting_at_safe_points() {
    let texts = [
        "Hello world  it's   a\ttest\n\n  of  \u{3000}cutting\u{A0} x \u{2000}\u{2000}y'll 'sup '  \r\n",
        "日本語。\nテキスト 😀😀 a\u{301} 12 345,6 ...!! \u{85}z\u{1680}q",
        "  lead\n\n\n\ntrail  ",
    ];
    for text in texts {
        let whole: Vec<&str> = pretokenize::pieces(text).collect();
        let points: Vec<usize> = (0..text.len()).filter(|&p| pretokenize::is_safe_split(text, p)).collect();
        assert!(!points.is_empty());
        assert_eq!(pretokenize::next_safe_split(text, 0), Some(points[0]));
        for p in points {
            let mut cut: Vec<&str> = pretokenize::pieces(&text[..p]).collect();
            cut.extend(pretokenize::pieces(&text[p..]));
            assert_eq!(cut, whole, "cut at {p} of {text:?}");
        }
    }
}

#[test]
fn decode_bytes_of_every_id() {
    // Every id alone and all ids in a row (short tokens are block copies, long ones are not).
    let t = gpt2();
    let ids: Vec<u32> = (0..t.vocab_size() as u32).collect();
    let mut want = Vec::new();
    for &id in &ids {
        let token = t.id_to_token(id).unwrap();
        let mut bytes = Vec::new();
        if id == 50256 {
            bytes.extend_from_slice(token.as_bytes());
        } else {
            byte_map::token_to_bytes(token, &mut bytes);
        }
        assert_eq!(t.decode_bytes(&[id]).unwrap(), bytes, "id {id}");
        want.extend_from_slice(&bytes);
    }
    assert_eq!(t.decode_bytes(&ids).unwrap(), want);
    let longest = ids.iter().map(|&id| t.token_bytes(id).unwrap().len()).max().unwrap();
    assert!(longest > 16, "{longest}");
    assert!(t.decode_bytes(&[5, 50257, 6]).is_err());
}

#[test]
fn parallel_encode_with_added_tokens_that_hold_or_strip_whitespace() {
    // Such tokens are found in the whole text before it is cut (a cut could fall inside one, or
    // between a token and the whitespace it strips).
    let mut t = gpt2();
    let spec =
        |content: &str, lstrip, rstrip| AddedSpec { content: content.into(), id: None, special: true, lstrip, rstrip };
    t.add_token(spec("<r>", false, true), Path::new("test")).unwrap();
    t.add_token(spec("<l>", true, false), Path::new("test")).unwrap();
    t.add_token(spec("a b", false, false), Path::new("test")).unwrap();
    assert!(!t.added.cut_at_whitespace_is_safe());
    let texts = [
        "x <r>  \n y<l>z  <l> a b c\ta b<|endoftext|> it's\n\n a  b <r>\n",
        "<r> <r>  <l>  a b  a  b\u{3000}<l>\u{a0}end",
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for text in texts {
        let want = t.encode(text);
        assert_ne!(want, gpt2().encode(text));
        for chunk in 0..text.len() + 1 {
            assert_eq!(pool.install(|| t.encode_parallel_chunks(text, chunk)), want, "chunk {chunk} of {text:?}");
        }
    }
}

/// A reader that hands out at most `step` bytes per read, to cut characters and blocks anywhere.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// Every block size from 1 byte up and reads of 1 and 7 bytes: the ids of `encode`, in order.
fn check_read_in_blocks(t: &Tokenizer, texts: &[&str]) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for text in texts {
        let want = t.encode(text);
        for block in (1..text.len() + 2).step_by(3) {
            for step in [1, 7] {
                let mut got = Vec::new();
                let reader = Trickle { bytes: text.as_bytes(), step };
                let n = pool
                    .install(|| {
                        t.encode_blocks(reader, Path::new("t"), block, |ids| {
                            got.extend_from_slice(ids);
                            Ok(())
                        })
                    })
                    .unwrap();
                assert_eq!(got, want, "block {block}, reads of {step}: {text:?}");
                assert_eq!(n, want.len() as u64);
            }
        }
    }
}

#[test]
fn reading_in_blocks_gives_the_ids_of_the_whole_text() {
    let texts = [
        "Hello world  it's   a\ttest\n\n  of  \u{3000}cutting\u{A0} x \u{2000}\u{2000}y'll 'sup '  \r\n",
        "日本語。\nテキスト 😀😀 a\u{301} 12 345,6 ...!! <|endoftext|>z\u{1680}q <|endoftext|> end",
        "nowhitespaceatallforquiteawhile😀😀 then some",
        "",
        "  lead\n\n\n\ntrail  ",
    ];
    check_read_in_blocks(&gpt2(), &texts);
    // The prefix space and the bos id go to the start of the text only.
    let mut t = gpt2();
    t.options.add_prefix_space = true;
    t.options.add_bos_token = true;
    t.bos = Some(50256);
    check_read_in_blocks(&t, &texts);
    // Added tokens that strip whitespace: the whole text is read first.
    let mut t = gpt2();
    let spec = AddedSpec { content: "<r>".into(), id: None, special: true, lstrip: false, rstrip: true };
    t.add_token(spec, Path::new("test")).unwrap();
    check_read_in_blocks(&t, &["x <r>  \n y<r>z  <r> a b c\n"]);
}

#[test]
fn reading_invalid_utf8_names_the_offset() {
    let t = gpt2();
    let mut bytes = "ok text here ".repeat(10).into_bytes();
    bytes.push(0xff);
    bytes.extend_from_slice(b" more");
    for block in [4, 1000] {
        let err = t.encode_blocks(&bytes[..], Path::new("f.txt"), block, |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("f.txt") && err.contains("offset 130"), "{err}");
    }
    // A character cut by the end of the text is invalid too.
    let err = t.encode_blocks(&"é".as_bytes()[..1], Path::new("f.txt"), 4, |_| Ok(())).unwrap_err().to_string();
    assert!(err.contains("offset 0"), "{err}");
}
