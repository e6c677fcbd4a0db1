//! Arbitrary bytes as tokenizer files: vocab.json + merges.txt (split at the first 0xFF byte,
//! which UTF-8 text never holds) and tokenizer.json; a tokenizer that loads then encodes and
//! decodes a little.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quill::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let origin = std::path::Path::new("fuzz");
    let (vocab, merges) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    for tok in
        [Tokenizer::from_bytes_vocab_merges(vocab, merges, origin), Tokenizer::from_bytes_tokenizer_json(data, origin)]
            .into_iter()
            .flatten()
    {
        let ids = tok.encode("Hello, world! 123 ünïcödé 日本語");
        let _ = tok.decode(&ids);
    }
});
