//! `quill-kernels`: every numeric hot loop of Quill.
//!
//! Shape legend used throughout the crate:
//! - `M` rows of activations (tokens processed together),
//! - `K` input features of a matmul, `N` output features,
//! - `H` attention heads, `T` positions held in the KV cache for one head, `D` the head dimension.
//!
//! Each op has a scalar reference in [`scalar`], the readable twin and test oracle of the SIMD
//! variants. The SIMD variants are written once in `ops`, generic over a small vector trait
//! (`simd`), and instantiated per ISA in `isa`. One [`Kernels`] table is chosen per process
//! ([`kernels`]) by runtime CPU detection or `QUILL_KERNELS`; callers only go through its safe
//! methods, which check every length and split large ops across the threads of the current
//! rayon pool (run on a spinning team of that size, kernels/src/team.rs).

#![warn(unsafe_op_in_unsafe_fn)]

mod activation;
mod attention_args;
mod dispatch;
mod elem;
mod formats;
mod isa;
#[cfg(test)]
mod matmul_path_tests;
mod ops;
pub mod scalar;
mod simd;
mod team;
mod weight;

pub use activation::Activation;
pub use attention_args::{AttentionExtras, AttentionHead, AttentionLayer, KvData};
pub use dispatch::{cpu_features, init, kernels, physical_cores, select, Kernels, Level, LevelError};
pub use formats::BlockFormat;
pub use half::f16;
pub use weight::{quantize_q8_0, Layout, Weight, WeightData, Q8_BLOCK};
