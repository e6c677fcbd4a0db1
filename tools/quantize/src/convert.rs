//! One tensor's f32 values → the little-endian bytes of its output type.
//!
//! Work is split by rows across the rayon pool: a large model's wte or MLP matrix is the bulk
//! of the run, and rows are independent for transposition, f16 conversion, q8_0 and the block
//! formats (whose blocks never straddle a row: the plan fits each format to `k`).

use half::f16;
use half::slice::HalfFloatSliceExt;
use quill_kernels::{quantize_q8_0, BlockFormat, Q8_BLOCK};
use rayon::prelude::*;

use crate::plan::{Encoding, Item};

/// Rows per parallel task: large enough that task overhead vanishes, small enough to balance.
const ROWS_PER_TASK: usize = 64;

/// The bytes of one item: its values, and a q8_0 matrix's scales.
pub struct Encoded {
    pub values: Vec<u8>,
    pub scales: Option<Vec<u8>>,
}

/// `src` is `[k, n]` row-major; returns `[n, k]`.
fn transpose(src: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; src.len()];
    out.par_chunks_mut(k * ROWS_PER_TASK).enumerate().for_each(|(t, rows)| {
        let j0 = t * ROWS_PER_TASK;
        // Walk the source row by row so its reads stay sequential; the few output rows of this
        // task stay in cache while their columns fill.
        for i in 0..k {
            let src_row = &src[i * n..][..n];
            for (r, out_row) in rows.chunks_exact_mut(k).enumerate() {
                out_row[i] = src_row[j0 + r];
            }
        }
    });
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; values.len() * 4];
    out.par_chunks_mut(4 * 4096).zip(values.par_chunks(4096)).for_each(|(o, v)| {
        for (b, x) in o.chunks_exact_mut(4).zip(v) {
            b.copy_from_slice(&x.to_le_bytes());
        }
    });
    out
}

fn f16_bytes(values: &[f16]) -> Vec<u8> {
    values.iter().flat_map(|h| h.to_le_bytes()).collect()
}

fn to_f16(values: &[f32]) -> Vec<f16> {
    let mut out = vec![f16::ZERO; values.len()];
    out.par_chunks_mut(4096).zip(values.par_chunks(4096)).for_each(|(o, v)| o.convert_from_f32_slice(v));
    out
}

/// q8_0 of a `[n, k]` matrix: int8 values and one f16 scale per 32 of them, row by row.
fn q8_0(values: &[f32], k: usize) -> (Vec<i8>, Vec<f16>) {
    let mut q = vec![0i8; values.len()];
    let mut d = vec![f16::ZERO; values.len() / Q8_BLOCK];
    let rows = ROWS_PER_TASK * k;
    q.par_chunks_mut(rows)
        .zip(d.par_chunks_mut(rows / Q8_BLOCK))
        .zip(values.par_chunks(rows))
        .for_each(|((q, d), x)| quantize_q8_0(x, q, d));
    (q, d)
}

/// Encodes `data` (the source tensor, in its source layout) as `item` says.
pub fn encode(item: &Item, data: &[f32]) -> Encoded {
    let transposed;
    let values = if item.transpose {
        let (k, n) = (item.source_shape[0], item.source_shape[1]);
        transposed = transpose(data, k, n);
        &transposed[..]
    } else {
        data
    };
    match item.encoding {
        Encoding::F32 => Encoded { values: f32_bytes(values), scales: None },
        Encoding::F16 => Encoded { values: f16_bytes(&to_f16(values)), scales: None },
        Encoding::Q8_0 => {
            let (q, d) = q8_0(values, item.shape[1]);
            Encoded { values: q.into_iter().map(|v| v as u8).collect(), scales: Some(f16_bytes(&d)) }
        }
        Encoding::Blocks(format) => Encoded { values: blocks(format, values, item.shape[1]), scales: None },
    }
}

/// A `[n, k]` matrix in GGUF's blocks of `format`, row by row (k is whole blocks).
fn blocks(format: BlockFormat, values: &[f32], k: usize) -> Vec<u8> {
    let row = format.row_bytes(k).expect("the plan fits the format to k");
    let mut out = vec![0u8; values.len() / k * row];
    out.par_chunks_mut(row * ROWS_PER_TASK)
        .zip(values.par_chunks(k * ROWS_PER_TASK))
        .for_each(|(o, x)| format.quantize_row(x, o));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_definition() {
        for (k, n) in [(1, 1), (3, 5), (70, 130), (40, 32)] {
            let src: Vec<f32> = (0..k * n).map(|v| v as f32).collect();
            let out = transpose(&src, k, n);
            for i in 0..k {
                for j in 0..n {
                    assert_eq!(out[j * k + i], src[i * n + j], "k {k} n {n} i {i} j {j}");
                }
            }
        }
    }

    #[test]
    fn q8_0_rows_in_parallel_equal_one_pass() {
        let (n, k) = (200, 64);
        let x: Vec<f32> = (0..n * k).map(|v| ((v * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let (q, d) = q8_0(&x, k);
        let (mut q1, mut d1) = (vec![0i8; x.len()], vec![f16::ZERO; x.len() / Q8_BLOCK]);
        quantize_q8_0(&x, &mut q1, &mut d1);
        assert_eq!((q, d), (q1, d1));
    }

    #[test]
    fn block_rows_in_parallel_equal_one_pass() {
        let (n, k) = (130, 512);
        let x: Vec<f32> = (0..n * k).map(|v| ((v * 37 % 101) as f32 - 50.0) / 700.0).collect();
        for format in [BlockFormat::Q4_0, BlockFormat::Q4K, BlockFormat::Q6K] {
            let mut one = vec![0u8; format.row_bytes(k).unwrap() * n];
            format.quantize_row(&x, &mut one);
            assert_eq!(blocks(format, &x, k), one, "{}", format.name());
        }
    }

    #[test]
    fn bytes_are_little_endian() {
        assert_eq!(f32_bytes(&[1.0, -2.5]), [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
        assert_eq!(f16_bytes(&to_f16(&[1.0])), f16::ONE.to_le_bytes());
    }
}
