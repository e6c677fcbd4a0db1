//! Quill: a CPU inference engine for GPT-2 and GPT-Neo with transformers' exact numerics.
//!
//! Data flows tokenizer → model (kernels) → sampler → detokenizer; each stage owns its buffers.
//!
//! - [`Model::load`] maps a Hugging Face model folder or a Quill file, or reads an OpenAI
//!   TensorFlow checkpoint folder ([`tf`]) ([`LoadOptions`]: kernels, KV type);
//!   [`Tokenizer::from_model_dir`] reads its tokenizer (GPT-2's byte-level BPE).
//! - [`Session`]: one sequence and its KV cache; [`Session::feed`] returns the next-token logits.
//! - [`Model::forward`]: transformers' `forward()` over a batch (masks, positions, hidden states,
//!   attentions, loss).
//! - [`generate`]: greedy decoding, sampling and beam search with transformers' processors.
//! - [`score`]: loss and perplexity with transformers' sliding windows; [`embed()`]: a vector
//!   per text.
//!
//! ```
//! use quill::generate::{DecodeOptions, Flow, Generator};
//! use quill::{LoadOptions, Model, Tokenizer};
//! # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2-hub");
//! // `dir`: a model folder (config.json, model.safetensors, vocab.json, merges.txt).
//! let model = Model::load(&dir, &LoadOptions::default())?;
//! let tokenizer = Tokenizer::from_model_dir(&dir)?;
//!
//! let prompt = tokenizer.encode("The Manhattan bridge");
//! let mut session = model.session(None)?;
//! let mut generator = Generator::new(DecodeOptions::greedy(8), model.config().vocab_size)?;
//! let out = generator.run(&mut session, &prompt, 0, |_id| Ok(Flow::Continue))?;
//! assert_eq!(out.new_ids.len(), 8);
//! println!("{}", tokenizer.decode(&out.new_ids)?);
//! # Ok::<(), quill::Error>(())
//! ```
//!
//! Errors are [`Error`]s: a file's names the file, a setting's names the setting ([`Setting`]).

pub mod builtin;
pub mod checkpoint;
/// The `quill` command line (the binary's `main`; `parse_args` for the fuzz target).
#[doc(hidden)]
pub mod cli;
pub mod config;
mod embed;
pub mod error;
pub mod generate;
pub mod generation_config;
pub mod kv_cache;
pub mod math;
pub mod model;
pub mod quill_file;
pub mod score;
pub mod tf;
pub mod tokenizer;

pub use config::ModelConfig;
pub use embed::{embed, Pool};
pub use error::{Error, Result, Setting};
pub use kv_cache::KvType;
pub use model::{ForwardInput, ForwardOutput, LoadOptions, Model, Session};
/// The kernel crate, for [`LoadOptions::kernels`] (`quill::kernels::select(Some("scalar"))`).
pub use quill_kernels as kernels;
pub use tokenizer::Tokenizer;
