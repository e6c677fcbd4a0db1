//! The block formats against gguf-py (tests/data/goldens/block-formats.json, made by
//! tools/fixtures/make_block_format_goldens.py): every decoder bit for bit, the q4_0 and q5_0
//! quantizers byte for byte; q8_0's quantizer against Quill's q8_0; and the k-quant quantizers
//! by how close their round trip comes.

use quill_kernels::{quantize_q8_0, BlockFormat};
use serde_json::Value;

fn golden() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/goldens/block-formats.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn hex(s: &Value) -> Vec<u8> {
    let s = s.as_str().unwrap();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn f32s(s: &Value) -> Vec<f32> {
    hex(s).chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn sizes_are_gguf_s() {
    let want = [
        ("q4_0", 32, 18),
        ("q5_0", 32, 22),
        ("q8_0", 32, 34),
        ("q4_k", 256, 144),
        ("q5_k", 256, 176),
        ("q6_k", 256, 210),
    ];
    for (name, weights, bytes) in want {
        let f = BlockFormat::parse(name).unwrap();
        assert_eq!((f.name(), f.block_weights(), f.block_bytes()), (name, weights, bytes));
        assert_eq!(f.row_bytes(weights * 3), Some(bytes * 3));
        assert_eq!(f.row_bytes(weights + 1), None);
    }
    assert_eq!(BlockFormat::parse("Q4_K"), Some(BlockFormat::Q4K));
    assert_eq!(BlockFormat::parse("q4_k_m"), None);
}

#[test]
fn decoders_equal_gguf_py() {
    let g = golden();
    for f in BlockFormat::ALL {
        let entry = &g["formats"][f.name()];
        let cases = entry.get("blocks").or(entry.get("rows")).unwrap().as_array().unwrap();
        assert!(!cases.is_empty(), "{}", f.name());
        for (i, case) in cases.iter().enumerate() {
            let bytes = hex(&case["bytes"]);
            let want = f32s(&case["y"]);
            let mut got = vec![0.0; want.len()];
            f.dequantize_row(&bytes, &mut got);
            assert_eq!(bits(&got), bits(&want), "{} case {i}", f.name());
        }
    }
}

#[test]
fn q4_0_q5_0_and_q5_1_quantize_as_ggml() {
    let g = golden();
    for f in [BlockFormat::Q4_0, BlockFormat::Q5_0, BlockFormat::Q5_1] {
        for (i, row) in g["formats"][f.name()]["rows"].as_array().unwrap().iter().enumerate() {
            let x = f32s(&row["x"]);
            let mut got = vec![0u8; f.row_bytes(x.len()).unwrap()];
            f.quantize_row(&x, &mut got);
            assert_eq!(got, hex(&row["bytes"]), "{} row {i}", f.name());
        }
    }
}

/// A deterministic spread of values (no RNG crate here): mostly small, a few large.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let u = (s as f32 / u32::MAX as f32) * 2.0 - 1.0;
            if i % 37 == 0 {
                u * 0.4
            } else {
                u * 0.05
            }
        })
        .collect()
}

#[test]
fn q8_0_quantizes_as_quill_s_q8_0() {
    let x = values(32 * 40, 3);
    let mut q = vec![0i8; x.len()];
    let mut scales = vec![half::f16::ZERO; x.len() / 32];
    quantize_q8_0(&x, &mut q, &mut scales);
    let mut blocks = vec![0u8; BlockFormat::Q8_0.row_bytes(x.len()).unwrap()];
    BlockFormat::Q8_0.quantize_row(&x, &mut blocks);
    for (b, block) in blocks.chunks_exact(34).enumerate() {
        assert_eq!(block[..2], scales[b].to_le_bytes(), "block {b}");
        let qs: Vec<i8> = block[2..].iter().map(|&v| v as i8).collect();
        assert_eq!(qs, q[32 * b..32 * (b + 1)], "block {b}");
    }
}

/// Root-mean-square round-trip error relative to the values' own RMS.
fn relative_rms_error(f: BlockFormat, x: &[f32]) -> f32 {
    let mut bytes = vec![0u8; f.row_bytes(x.len()).unwrap()];
    f.quantize_row(x, &mut bytes);
    let mut y = vec![0.0; x.len()];
    f.dequantize_row(&bytes, &mut y);
    let err: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
    let norm: f32 = x.iter().map(|a| a * a).sum();
    (err / norm).sqrt()
}

#[test]
fn every_quantizer_round_trips_within_its_bits() {
    // Relative RMS error bounds, about 10% above what each gives on these values (one value in
    // 37 eight times larger than the rest, so a 32-weight block's scale is set by it).
    for (f, bound) in [
        (BlockFormat::Q4_0, 0.18),
        (BlockFormat::Q4K, 0.105),
        (BlockFormat::Q5_0, 0.09),
        (BlockFormat::Q5_1, 0.09),
        (BlockFormat::Q5K, 0.055),
        (BlockFormat::Q6K, 0.033),
        (BlockFormat::Q8_0, 0.0115),
    ] {
        for seed in 0..4 {
            let x = values(256 * 8, seed);
            let e = relative_rms_error(f, &x);
            assert!(e < bound, "{}: relative RMS error {e} (bound {bound})", f.name());
        }
    }
    // More bits, less error, on the same values.
    let x = values(256 * 16, 9);
    let e: Vec<f32> = [BlockFormat::Q4_0, BlockFormat::Q4K, BlockFormat::Q5K, BlockFormat::Q6K, BlockFormat::Q8_0]
        .map(|f| relative_rms_error(f, &x))
        .to_vec();
    assert!(e.windows(2).all(|w| w[1] < w[0]), "{e:?}");
}

#[test]
fn zero_and_constant_blocks_decode_exactly() {
    for f in BlockFormat::ALL {
        for value in [0.0f32, 0.25, -0.5] {
            let x = vec![value; 256];
            let mut bytes = vec![0u8; f.row_bytes(256).unwrap()];
            f.quantize_row(&x, &mut bytes);
            let mut y = vec![1.0; 256];
            f.dequantize_row(&bytes, &mut y);
            let worst = y.iter().map(|v| (v - value).abs()).fold(0.0f32, f32::max);
            assert!(worst <= value.abs() * 2e-3, "{} of {value}: off by {worst}", f.name());
        }
    }
}

#[test]
fn codes_rebuild_the_decoded_weights() {
    let x = values(256 * 4, 5);
    for f in BlockFormat::ALL {
        let mut bytes = vec![0u8; f.row_bytes(x.len()).unwrap()];
        f.quantize_row(&x, &mut bytes);
        let mut want = vec![0.0; x.len()];
        f.dequantize_row(&bytes, &mut want);
        let groups = x.len() / f.group();
        let (mut q, mut alpha, mut beta) = (vec![0i8; x.len()], vec![0.0; groups], vec![0.0; groups]);
        f.codes(&bytes, &mut q, &mut alpha, &mut beta);
        for (i, w) in want.iter().enumerate() {
            let g = i / f.group();
            let got = alpha[g] * f32::from(q[i]) + beta[g];
            assert!((got - w).abs() <= 1e-6 * w.abs().max(1e-3), "{} weight {i}: {got} vs {w}", f.name());
        }
    }
}
