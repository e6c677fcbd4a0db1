//! SIMD kernels written once, generic over [`Simd`](crate::simd::Simd); `crate::isa` instantiates
//! them per ISA. Every function here is `unsafe`: it may only run where the vector type's ISA is
//! present, and callers (the `Kernels` methods) have checked all lengths.

pub(crate) mod attention;
pub(crate) mod attention_tiles;
#[cfg(target_arch = "x86_64")]
pub(crate) mod blocks_avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod blocks_sdot;
#[cfg(target_arch = "x86_64")]
pub(crate) mod blocks_vnni;
pub(crate) mod matmul;
#[cfg(target_arch = "x86_64")]
pub(crate) mod q8_avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod q8_sdot;
#[cfg(target_arch = "x86_64")]
pub(crate) mod q8_vnni;
#[cfg(target_arch = "aarch64")]
pub(crate) mod quantize_neon;
#[cfg(target_arch = "x86_64")]
pub(crate) mod quantize_x256;
#[cfg(target_arch = "x86_64")]
pub(crate) mod quantize_x512;
pub(crate) mod vector;
