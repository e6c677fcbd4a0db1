//! Quill: a CPU inference engine for GPT-2 and GPT-Neo with transformers' exact numerics.
//!
//! Data flows tokenizer → model (kernels) → sampler → detokenizer; each stage owns its buffers.

pub mod builtin;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod error;
pub mod generate;
pub mod generation_config;
pub mod kv_cache;
pub mod math;
pub mod model;
pub mod quill_file;
pub mod score;
pub mod tokenizer;

pub use error::{Error, Result};
pub use model::{Model, Session};
