//! Arbitrary bytes as a one-file Quill model: metadata (format version, config, tokenizer,
//! generation config), then the weights checked against the config, then one token through it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quill::checkpoint::{Checkpoint, MatrixOrder};
use quill::model::{LoadOptions, Model};
use quill::quill_file;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.safetensors");
    let Ok(ckpt) = Checkpoint::from_bytes(path, data) else { return };
    let _ = quill_file::tokenizer(path, ckpt.metadata());
    let _ = quill_file::generation_defaults(path, ckpt.metadata());
    let Ok((config, ckpt)) = quill_file::from_checkpoint(path, ckpt) else { return };
    // Keep the work per input small: the fuzzer's seeds are tiny models.
    if config.n_embd * config.n_layer > 1 << 16 || config.n_positions > 4096 {
        return;
    }
    let Ok(model) = Model::from_checkpoint(config, ckpt, MatrixOrder::OutIn, &LoadOptions::default()) else { return };
    if let Ok(mut session) = model.session(Some(2)) {
        let _ = session.feed(&[0]);
    }
});
