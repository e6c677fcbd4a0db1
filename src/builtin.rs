//! The demo model built into the binary (models/kjv-demo.safetensors, a Quill file: weights,
//! config, tokenizer and generation defaults in one), which every command runs when no `-m` is
//! given. Its bytes are part of the executable, which the OS maps like any file: nothing is
//! copied at start-up.

use std::path::Path;

use crate::checkpoint::{Checkpoint, MatrixOrder};
use crate::error::{Error, Result};
use crate::model::{LoadOptions, Model};
use crate::quill_file;
use crate::tokenizer::Tokenizer;

/// How messages name the built-in model.
pub const NAME: &str = "<built-in demo model>";

#[cfg(quill_builtin_model)]
fn bytes() -> Option<&'static [u8]> {
    /// 64-byte alignment, so every tensor is as aligned as in a mapped file.
    #[repr(C, align(64))]
    struct Aligned<T: ?Sized>(T);
    static MODEL: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/kjv-demo.safetensors")));
    Some(&MODEL.0)
}

#[cfg(not(quill_builtin_model))]
fn bytes() -> Option<&'static [u8]> {
    None
}

/// Whether this build carries the demo model.
pub fn available() -> bool {
    bytes().is_some()
}

fn checkpoint() -> Result<Checkpoint> {
    let bytes = bytes().ok_or_else(|| {
        Error::usage("no model given: pass -m MODEL (a model folder or a Quill file); this build has no built-in model")
    })?;
    Checkpoint::from_static(Path::new(NAME), bytes)
}

/// The built-in model.
pub fn model(opts: &LoadOptions) -> Result<Model> {
    let (config, checkpoint) = quill_file::from_checkpoint(Path::new(NAME), checkpoint()?)?;
    Model::from_checkpoint(config, checkpoint, MatrixOrder::OutIn, opts)
}

/// The built-in model's tokenizer.
pub fn tokenizer() -> Result<Tokenizer> {
    quill_file::tokenizer(Path::new(NAME), checkpoint()?.metadata())
}
