//! Quill: a CPU inference engine for GPT-2 and GPT-Neo with transformers' exact numerics.
//!
//! Data flows tokenizer → model (kernels) → sampler → detokenizer; each stage owns its buffers.

pub mod tokenizer;
