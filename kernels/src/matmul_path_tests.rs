//! One test per [`MatmulPath`]: [`MatmulPath::choose`] picks it for a representative shape, and
//! at every level of this CPU that takes it for that shape, its result matches the scalar
//! reference. A path no level here takes (tiles of two rows of x need a level with 16 registers,
//! tiles of four one with 32) is checked for its choice only, and says so on stderr.

use half::f16;

use crate::dispatch::{select, Level};
use crate::formats::BlockFormat;
use crate::ops::matmul::{LevelShape, MatmulPath, WeightType, PATH_TAKEN};
use crate::scalar;
use crate::weight::{quantize_q8_0, Layout, Weight, WeightData, Q8_BLOCK};

/// The levels' shapes as the choice sees them: AVX2 (16 registers, panels of 16 rows of x),
/// AVX-512 (32 registers, 32 rows), NEON (32 registers, 16 rows).
const AVX2: LevelShape = LevelShape { panel_rows: 16, registers: 16 };
const AVX512: LevelShape = LevelShape { panel_rows: 32, registers: 32 };
const NEON: LevelShape = LevelShape { panel_rows: 16, registers: 32 };
const EVERY_SHAPE: [LevelShape; 3] = [AVX2, AVX512, NEON];

/// K (whole q8_0 blocks, more than one four-vector step) and N (partial tiles of weight rows).
const K: usize = 64;
const N: usize = 37;

/// Deterministic values in [-1, 1).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `path` is chosen for `m` rows of `weights` stored as `layout` on each of `shapes`; then every
/// level of this CPU that takes `path` for the shape (on one thread, so that the path taken is
/// this thread's) matches the scalar reference.
fn check(path: MatmulPath, layout: Layout, weights: WeightType, m: usize, shapes: &[LevelShape]) {
    for &shape in shapes {
        assert_eq!(MatmulPath::choose(layout, weights, m, shape), path, "choice for M = {m} on {shape:?}");
    }
    let w = values(0x52, K * N);
    let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
    let (mut q, mut scales) = (vec![0i8; N * K], vec![f16::ZERO; N * K / Q8_BLOCK]);
    quantize_q8_0(&w, &mut q, &mut scales);
    let data = match weights {
        WeightType::F32 => WeightData::F32(&w),
        WeightType::F16 => WeightData::F16(&w16),
        WeightType::Q8_0 => WeightData::Q8_0 { q: &q, scales: &scales },
        WeightType::Blocks => unreachable!("check_blocks"),
    };
    compare(path, Weight { data, k: K, n: N, layout }, m);
}

/// [`check`] for the block formats.
fn check_blocks(path: MatmulPath, m: usize) {
    for shape in EVERY_SHAPE {
        assert_eq!(MatmulPath::choose(Layout::OutIn, WeightType::Blocks, m, shape), path, "choice for M = {m}");
    }
    // K = 512 (two k-quant blocks), and 96 (an odd number of blocks of 32) for the formats of
    // 32-weight blocks.
    let shapes = BlockFormat::ALL
        .into_iter()
        .map(|f| (f, 512))
        .chain(BlockFormat::ALL.into_iter().filter(|f| f.block_weights() == Q8_BLOCK).map(|f| (f, 96)));
    for (format, k) in shapes {
        let w = values(0x54, k * N);
        let mut data = vec![0u8; format.row_bytes(k).unwrap() * N];
        for (row, out) in w.chunks_exact(k).zip(data.chunks_exact_mut(format.row_bytes(k).unwrap())) {
            format.quantize_row(row, out);
        }
        let weight = Weight { data: WeightData::Blocks { format, data: &data }, k, n: N, layout: Layout::OutIn };
        compare(path, weight, m);
    }
}

/// Whether `level` multiplies `weight` on `path` with integer kernels (x rounded per block of
/// 32 as [`rounded_per_block`] does): at `avx512vnni` and `neondot`, both for every format; at
/// `avx2dot`, the GEMV for every format.
fn integer_block_kernel(level: Level, weight: Weight, path: MatmulPath) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Level::Avx512Vnni, WeightData::Blocks { .. }) = (level, weight.data) {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    if let (Level::Avx2Dot, WeightData::Blocks { .. }) = (level, weight.data) {
        return path == MatmulPath::BlockGemv;
    }
    #[cfg(target_arch = "aarch64")]
    if let (Level::NeonDot, WeightData::Blocks { .. }) = (level, weight.data) {
        return true;
    }
    let _ = (level, weight, path);
    false
}

/// `x` as the integer kernels see it: per block of 32, `round(x · 127 / max |x|)` (ties to
/// even) times `max |x| / 127`.
fn rounded_per_block(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(Q8_BLOCK)
        .flat_map(|b| {
            let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let (d, inv) = (amax / 127.0, 127.0 / amax);
            b.iter().map(move |v| (v * inv).round_ties_even() * d).collect::<Vec<_>>()
        })
        .collect()
}

/// The most that rounding `x` to int8 per block of 32 can move output `j`: per block,
/// `max |x| / 254 · Σ |w|`.
fn rounding_bound(x: &[f32], weight: Weight, j: usize) -> f32 {
    let k = weight.k;
    let mut w = vec![0.0; k];
    weight.data.slice(j * k..(j + 1) * k).to_f32(&mut w);
    x.chunks_exact(Q8_BLOCK)
        .zip(w.chunks_exact(Q8_BLOCK))
        .map(|(xb, wb)| {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            amax / 254.0 * wb.iter().map(|v| v.abs()).sum::<f32>()
        })
        .sum()
}

/// Every level of this CPU that takes `path` for `m` rows of `weight` matches the scalar
/// reference.
fn compare(path: MatmulPath, weight: Weight, m: usize) {
    let (k, n) = (weight.k, weight.n);
    let what = match weight.data {
        WeightData::F32(_) => "f32",
        WeightData::F16(_) => "f16",
        WeightData::Q8_0 { .. } => "q8_0",
        WeightData::Blocks { format, .. } => format.name(),
    };
    let x = values(0x51, m * k);
    let bias = values(0x53, n);
    let mut want = vec![0.0; m * n];
    scalar::matmul(&x, weight, Some(&bias), &mut want);
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut ran = Vec::new();
    for level in Level::available() {
        let kernels = select(Some(level.name())).unwrap();
        let mut got = vec![f32::NAN; m * n];
        let taken = one_thread.install(|| {
            PATH_TAKEN.set(None);
            kernels.matmul(&x, weight, Some(&bias), &mut got);
            PATH_TAKEN.get()
        });
        if taken != Some(path) {
            continue;
        }
        // A block format's integer kernel works on x rounded to int8 per block of 32: it must
        // give the reference on that rounded x, to f32 rounding.
        if integer_block_kernel(level, weight, path) {
            let mut want_q = vec![0.0; m * n];
            scalar::matmul(&rounded_per_block(&x), weight, Some(&bias), &mut want_q);
            for (i, (g, w)) in got.iter().zip(&want_q).enumerate() {
                let err = (g - w).abs() / w.abs().max(1.0);
                assert!(
                    err <= 1e-5 * (k as f32).sqrt(),
                    "{path:?} at {level:?}, {what}: element {i}: got {g}, want {w}"
                );
            }
            ran.push(level);
            continue;
        }
        // A level that quantizes x to int8 per block of 32 for q8_0 is off by at most half a
        // step of each block's scale, max |x| / 254, times Σ |w| over the block: that bound per
        // output (plus f32 slack), else f32 rounding only.
        let quantized = level.quantizes_q8_activations(m) && matches!(weight.data, WeightData::Q8_0 { .. });
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let bound = if quantized { rounding_bound(&x[(i / n) * k..][..k], weight, i % n) } else { 0.0 };
            let err = (g - w).abs() - bound * 1.01;
            assert!(
                err / w.abs().max(1.0) <= 2e-5 * (k as f32).sqrt(),
                "{path:?} at {level:?}, M = {m}, {what}: element {i}: got {g}, want {w} (bound {bound})"
            );
        }
        ran.push(level);
    }
    if ran.is_empty() {
        eprintln!("{path:?}: no level of this CPU takes it; only the choice was checked");
    }
}

#[test]
fn gemv_in_out() {
    check(MatmulPath::GemvInOut, Layout::InOut, WeightType::F32, 1, &EVERY_SHAPE);
    check(MatmulPath::GemvInOut, Layout::InOut, WeightType::F16, 1, &EVERY_SHAPE);
}

#[test]
fn gemm_in_out() {
    check(MatmulPath::GemmInOut, Layout::InOut, WeightType::F32, 5, &EVERY_SHAPE);
    check(MatmulPath::GemmInOut, Layout::InOut, WeightType::F16, 5, &EVERY_SHAPE);
}

#[test]
fn gemv_one_row_out_in() {
    check(MatmulPath::GemvOneRowOutIn, Layout::OutIn, WeightType::F16, 1, &EVERY_SHAPE);
}

#[test]
fn gemv_out_in_1() {
    check(MatmulPath::GemvOutIn1, Layout::OutIn, WeightType::F32, 1, &EVERY_SHAPE);
}

#[test]
fn gemv_out_in_4() {
    check(MatmulPath::GemvOutIn4, Layout::OutIn, WeightType::F32, 3, &[AVX512, NEON]);
    check(MatmulPath::GemvOutIn4, Layout::OutIn, WeightType::F16, 3, &[AVX512, NEON]);
}

#[test]
fn gemv_out_in_2() {
    check(MatmulPath::GemvOutIn2, Layout::OutIn, WeightType::F32, 3, &[AVX2]);
    check(MatmulPath::GemvOutIn2, Layout::OutIn, WeightType::F16, 3, &[AVX2]);
}

#[test]
fn gemm_out_in() {
    // 24 rows: the first count past few rows on every level (3/4 of AVX-512's 32-row panel).
    check(MatmulPath::GemmOutIn, Layout::OutIn, WeightType::F32, 24, &EVERY_SHAPE);
    check(MatmulPath::GemmOutIn, Layout::OutIn, WeightType::F16, 24, &EVERY_SHAPE);
}

#[test]
fn q8_gemv() {
    check(MatmulPath::Q8Gemv, Layout::OutIn, WeightType::Q8_0, 1, &EVERY_SHAPE);
}

#[test]
fn q8_gemm() {
    check(MatmulPath::Q8Gemm, Layout::OutIn, WeightType::Q8_0, 3, &EVERY_SHAPE);
}

#[test]
fn block_gemv() {
    check_blocks(MatmulPath::BlockGemv, 1);
}

#[test]
fn block_gemm() {
    check_blocks(MatmulPath::BlockGemm, 5);
}
