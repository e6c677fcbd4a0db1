//! GPT-2's real tokenizer on arbitrary text (bytes made UTF-8) and arbitrary ids (valid or not):
//! encode, decode, and that decoding an encoding gives the text back.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quill::tokenizer::Tokenizer;

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/gpt2-tokenizer");
        Tokenizer::from_vocab_merges(&dir.join("encoder.json"), &dir.join("vocab.bpe")).expect("GPT-2 tokenizer")
    })
}

fuzz_target!(|data: &[u8]| {
    let tok = tokenizer();
    let text = String::from_utf8_lossy(data);
    let ids = tok.encode(&text);
    assert_eq!(tok.decode(&ids).expect("own ids decode"), text, "round trip");
    let ids: Vec<u32> = data.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).collect();
    let _ = tok.decode(&ids);
});
