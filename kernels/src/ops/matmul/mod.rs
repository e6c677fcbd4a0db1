//! Matmul with f32 activations and f32 or f16 weights in either layout, or q8_0 or block-format
//! weights stored `(out, in)`.
//!
//! One row (decode) is a GEMV that streams every weight exactly once, which is what bounds
//! decoding: the weights do not fit in cache, so speed is memory bandwidth. More rows (prefill)
//! go through a cache-blocked GEMM: W is packed (and widened from f16) one `KC × NR` panel at a
//! time, then an `MR × NR` register-blocked micro-kernel multiplies the panel with every `MR`
//! rows of x, prefetching the next panel's weights as it goes.
//!
//! This file chooses the path; the paths live in
//! - `gemv.rs`: the GEMVs (one row of either layout; a few rows of `(out, in)`),
//! - `gemm_in_out.rs`: the GEMM for `(in, out)` weights,
//! - `gemm_out_in.rs`: the GEMM for `(out, in)` weights (f32, f16, and q8_0 widened),
//! - `rows.rs`: an `(out, in)` weight's rows as those kernels read them,
//! - `micro_kernel.rs`: the register-blocked tile both GEMMs (and attention's tiles) run,
//! - `pack.rs`: packing x and `(in, out)` weight panels, and the buffers for it,
//! - `prefetch.rs`: how far ahead the GEMVs prefetch, and the micro-kernels' line fetcher.
//!
//! The levels' own q8_0 kernels (integer dots) are `ops::q8_*`, the block formats' `ops::blocks_*`,
//! behind [`QuantMatmul`].

mod gemm_in_out;
mod gemm_out_in;
pub(crate) mod gemv;
pub(crate) mod micro_kernel;
mod pack;
pub(crate) mod prefetch;
pub(crate) mod rows;

use half::f16;

use self::gemm_in_out::gemm_in_out;
use self::gemm_out_in::{gemm_out_in, OutStart};
use self::gemv::{gemv_blocks, gemv_in_out, gemv_one_row_out_in, gemv_out_in, gemv_q8};
use self::rows::{BlockRows, PlainRows, Q8Rows};
use crate::elem::Elem;
use crate::formats::BlockFormat;
use crate::simd::Simd;
use crate::weight::{Layout, Weight, WeightData};

/// From this many rows on, the GEMM path is used.
const GEMM_MIN_ROWS: usize = 2;

/// Whether an `(out, in)` f32/f16 matmul of `m` rows on `level` streams the weights once per
/// tile of [`gemv_out_in`] instead of running the GEMM, whose panels of NR rows of x (NR = 32
/// with AVX-512, 16 with AVX2 and NEON) are mostly padding for a short prompt: below 3/4 of NR,
/// where the tiles beat the GEMM on AVX2 and AVX-512 (docs/PERFORMANCE.md, "Decoding: GEMVs that stream";
/// NEON takes the same rule without a measurement of its own).
#[inline(always)]
fn few_rows(m: usize, level: LevelShape) -> bool {
    4 * m < 3 * level.panel_rows
}

/// What the path choice needs to know of a level.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LevelShape {
    /// Rows of x in a GEMM panel: NR = NV · LANES.
    pub(crate) panel_rows: usize,
    /// Vector registers of the ISA.
    pub(crate) registers: usize,
}

impl LevelShape {
    /// The shape of a level with vectors `S` and GEMM tiles `NV` vectors wide.
    #[inline(always)]
    pub(crate) const fn of<S: Simd, const NV: usize>() -> LevelShape {
        LevelShape { panel_rows: NV * S::LANES, registers: S::REGISTERS }
    }
}

/// The weights' element type, as the path choice sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WeightType {
    F32,
    F16,
    Q8_0,
    /// A block format ([`crate::formats`]).
    Blocks,
}

/// The kernel a matmul runs: one per arm of [`MatmulPath::choose`]. "One row" is fewer than
/// [`GEMM_MIN_ROWS`]. Each path has a test (kernels/src/matmul_path_tests.rs): the choice picks it
/// for a representative shape, and its result matches the scalar reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MatmulPath {
    /// `(in, out)` f32/f16, one row: [`gemv_in_out`].
    GemvInOut,
    /// `(in, out)` f32/f16, more rows: [`gemm_in_out()`].
    GemmInOut,
    /// `(out, in)` f16, one row: [`gemv_one_row_out_in`], on the level's [`Simd::F16Gemv`].
    GemvOneRowOutIn,
    /// `(out, in)` f32, one row: [`gemv_out_in`], tiles of one row of x.
    GemvOutIn1,
    /// `(out, in)` f32/f16, a few rows ([`few_rows`]) on a level with 32 registers:
    /// [`gemv_out_in`], tiles of four rows of x.
    GemvOutIn4,
    /// `(out, in)` f32/f16, a few rows on a level with fewer registers: [`gemv_out_in`], tiles of
    /// two rows of x.
    GemvOutIn2,
    /// `(out, in)` f32/f16, more rows: [`gemm_out_in()`].
    GemmOutIn,
    /// q8_0, one row: the level's [`QuantMatmul::gemv`].
    Q8Gemv,
    /// q8_0, more rows: the level's [`QuantMatmul::gemm`].
    Q8Gemm,
    /// A block format, one row: [`gemv_blocks`], each weight row decoded a block at a time.
    BlockGemv,
    /// A block format, more rows: [`gemm_out_in()`] on rows decoded as it widens them.
    BlockGemm,
}

impl MatmulPath {
    /// The path for `m` rows of x times `weights` stored as `layout`, on a level shaped `level`.
    #[inline(always)]
    pub(crate) fn choose(layout: Layout, weights: WeightType, m: usize, level: LevelShape) -> MatmulPath {
        let one_row = m < GEMM_MIN_ROWS;
        match (weights, layout) {
            (WeightType::Q8_0, _) if one_row => MatmulPath::Q8Gemv,
            (WeightType::Q8_0, _) => MatmulPath::Q8Gemm,
            (WeightType::Blocks, _) if one_row => MatmulPath::BlockGemv,
            (WeightType::Blocks, _) => MatmulPath::BlockGemm,
            (_, Layout::InOut) if one_row => MatmulPath::GemvInOut,
            (_, Layout::InOut) => MatmulPath::GemmInOut,
            // f16 decodes one weight row at a time (one weight stream in flight), on 256-bit
            // vectors on AVX-512 too; f32, with twice the bytes per multiply-add, decodes faster
            // in tiles of four weight rows (docs/PERFORMANCE.md, "Decoding: GEMVs that stream").
            (WeightType::F16, Layout::OutIn) if one_row => MatmulPath::GemvOneRowOutIn,
            (_, Layout::OutIn) if one_row => MatmulPath::GemvOutIn1,
            // Four rows of x per tile where 32 registers hold the 16 accumulators, else two.
            (_, Layout::OutIn) if few_rows(m, level) && level.registers >= 32 => MatmulPath::GemvOutIn4,
            (_, Layout::OutIn) if few_rows(m, level) => MatmulPath::GemvOutIn2,
            (_, Layout::OutIn) => MatmulPath::GemmOutIn,
        }
    }

    /// Whether the path adds to out, which must then start as the bias: every path but the
    /// f32/f16 GEMMs, which write the bias with their first K step's tiles, with no pass over out
    /// before them.
    #[inline(always)]
    fn adds_to_out(self) -> bool {
        !matches!(self, MatmulPath::GemmInOut | MatmulPath::GemmOutIn)
    }
}

#[cfg(test)]
thread_local! {
    /// The path the calling thread's last matmul took (tests only): the tests of each path check
    /// that a level took it before they compare its result.
    pub(crate) static PATH_TAKEN: std::cell::Cell<Option<MatmulPath>> = const { std::cell::Cell::new(None) };
}

/// Columns `n0..n1` of `out[M, N] = x[M, K] · W + bias`.
///
/// # Safety
/// The CPU supports `S` (and what `D` needs); the shapes agree as [`Kernels::matmul`] checks them
/// (`x` holds M ≥ 1 rows of K, W holds K × N elements and, for q8_0, is `(N, K)` with one scale
/// per block of 32, the bias holds N floats); `n0 ≤ n1 ≤ N`; `out` is valid for reads and
/// writes of `M × N` floats; no other thread writes columns `n0..n1` of it meanwhile.
///
/// [`Kernels::matmul`]: crate::Kernels::matmul
#[inline(always)]
pub(crate) unsafe fn matmul_cols<S: Simd, D: QuantMatmul, const MR: usize, const NV: usize>(
    x: &[f32],
    w: Weight,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above is each path's.
    unsafe {
        match w.data {
            WeightData::F32(d) => matmul_typed::<S, f32, MR, NV>(x, d, w, bias, out, n0, n1),
            WeightData::F16(d) => matmul_typed::<S, half::f16, MR, NV>(x, d, w, bias, out, n0, n1),
            WeightData::Q8_0 { q, scales } => matmul_q8::<S, D, MR, NV>(x, q, scales, w, bias, out, n0, n1),
            WeightData::Blocks { format, data } => {
                matmul_blocks::<S, D, MR, NV>(x, format, data.as_ptr(), w, bias, out, n0, n1)
            }
        }
    }
}

/// The rows of x and the path a matmul of `weights` takes at this level; when the path adds
/// into out, columns `n0..n1` of out start as the bias (or zero).
///
/// # Safety
/// As [`init_out`] for the `M = x.len() / w.k` rows of x.
#[inline(always)]
unsafe fn start_path<S: Simd, const NV: usize>(
    x: &[f32],
    w: Weight,
    weights: WeightType,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) -> (usize, MatmulPath) {
    let m = x.len() / w.k;
    let path = MatmulPath::choose(w.layout, weights, m, LevelShape::of::<S, NV>());
    #[cfg(test)]
    PATH_TAKEN.set(Some(path));
    if path.adds_to_out() {
        // SAFETY: the caller's contract is init_out's.
        unsafe { init_out(m, w.n, bias, out, n0, n1) };
    }
    (m, path)
}

/// Bias (or zero) into columns `n0..n1` of every output row.
///
/// # Safety
/// `out` is valid for writes at columns `n0..n1` of `m` rows of `n`; the bias, if any, holds at
/// least `n1` floats.
#[inline(always)]
unsafe fn init_out(m: usize, n: usize, bias: Option<&[f32]>, out: *mut f32, n0: usize, n1: usize) {
    // SAFETY: rows `i < m`, columns `n0..n1` of out, which the caller vouched for.
    unsafe {
        for i in 0..m {
            let row = std::slice::from_raw_parts_mut(out.add(i * n + n0), n1 - n0);
            match bias {
                Some(b) => row.copy_from_slice(&b[n0..n1]),
                None => row.fill(0.0),
            }
        }
    }
}

/// How activations meet quantized weights, q8_0's and the block formats': the level's choice
/// (docs/PERFORMANCE.md, "q8_0: int8 weights, and int8 activations where it pays" and "Block
/// formats: GGUF's blocks, integer dots").
pub(crate) trait QuantMatmul {
    /// `out[j] += x · W[j, :]` for `j` in `n0..n1`: one row (decode).
    ///
    /// # Safety
    /// The CPU supports `S` and what the implementation needs; `x` is one row of K (a multiple
    /// of 32); `w` holds rows `n0..n1`; `out` is valid for reads and writes at `n0..n1`, which no
    /// other thread writes meanwhile.
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize);

    /// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W in a block format: one row (decode). By
    /// default [`gemv_blocks`], exact: each row decoded, then multiplied in f32.
    ///
    /// # Safety
    /// As [`QuantMatmul::gemv`], for W's rows of blocks.
    #[inline(always)]
    unsafe fn gemv_blocks<S: Simd>(x: &[f32], w: BlockRows, out: *mut f32, n0: usize, n1: usize) {
        // SAFETY: the trait method's contract is `gemv_blocks`'.
        unsafe { gemv_blocks::<S>(x, w, out, n0, n1) }
    }

    /// Columns `n0..n1` of `out[M, N] += x · Wᵀ`, W in a block format: several rows (a prompt).
    /// By default exact: the out-in GEMM on rows decoded as it widens them.
    ///
    /// # Safety
    /// As [`QuantMatmul::gemm`], for W's rows of blocks.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn gemm_blocks<S: Simd, const MR: usize, const NV: usize>(
        x: &[f32],
        m: usize,
        rows: BlockRows,
        shape: Weight,
        out: *mut f32,
        n0: usize,
        n1: usize,
    ) {
        // SAFETY: this method's contract is `gemm_out_in`'s for block rows, and out already holds
        // the bias.
        unsafe { gemm_out_in::<S, BlockRows, MR, NV>(x, m, rows, shape, OutStart::Ready, out, n0, n1) }
    }

    /// Columns `n0..n1` of `out[M, N] += x · Wᵀ`: several rows (a prompt). By default exact:
    /// the weights widened into the f32 GEMM.
    ///
    /// # Safety
    /// As [`matmul_cols`] for q8_0 weights (`x` holds `m` rows of K, `shape` is the weight's),
    /// and the CPU has what the implementation needs; `out` is read as well as written.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn gemm<S: Simd, const MR: usize, const NV: usize>(
        x: &[f32],
        m: usize,
        rows: Q8Rows,
        shape: Weight,
        out: *mut f32,
        n0: usize,
        n1: usize,
    ) {
        // SAFETY: this method's contract is `gemm_out_in`'s for q8_0 rows, and out already holds
        // the bias.
        unsafe { gemm_out_in::<S, Q8Rows, MR, NV>(x, m, rows, shape, OutStart::Ready, out, n0, n1) }
    }
}

/// Weights widened to f32, activations kept f32: exact with respect to the stored weights.
pub(crate) struct WidenWeights;

impl QuantMatmul for WidenWeights {
    #[inline(always)]
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
        // SAFETY: the trait method's contract is `gemv_q8`'s.
        unsafe { gemv_q8::<S>(x, w, out, n0, n1) }
    }
}

/// q8_0 weights `(N, K)`: the level's q8_0 GEMV for a single row (decode), its GEMM for more.
///
/// # Safety
/// As [`matmul_cols`], with `q` and `scales` the weights' data.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn matmul_q8<S: Simd, D: QuantMatmul, const MR: usize, const NV: usize>(
    x: &[f32],
    q: &[i8],
    scales: &[f16],
    w: Weight,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: as `matmul_cols` (the contract above): out holds M rows of N, x M rows of K, and the
    // weights N rows of K bytes and K / 32 scales; the paths' contracts are that one.
    unsafe {
        let (k, n) = (w.k, w.n);
        let (m, path) = start_path::<S, NV>(x, w, WeightType::Q8_0, bias, out, n0, n1);
        let rows = Q8Rows { q: q.as_ptr(), scales: scales.as_ptr(), k };
        match path {
            MatmulPath::Q8Gemv => {
                for i in 0..m {
                    D::gemv::<S>(&x[i * k..][..k], rows, out.add(i * n), n0, n1);
                }
            }
            MatmulPath::Q8Gemm => D::gemm::<S, MR, NV>(x, m, rows, w, out, n0, n1),
            other => unreachable!("q8_0 weights on the {other:?} path"),
        }
    }
}

/// Block-format weights `(N, K)`: the level's [`QuantMatmul::gemv_blocks`] for a single row
/// (decode), its [`QuantMatmul::gemm_blocks`] for more.
///
/// # Safety
/// As [`matmul_cols`], with `data` the weights' bytes: N rows of `format.row_bytes(K)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn matmul_blocks<S: Simd, D: QuantMatmul, const MR: usize, const NV: usize>(
    x: &[f32],
    format: BlockFormat,
    data: *const u8,
    w: Weight,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: as `matmul_cols` (the contract above): out holds M rows of N, x M rows of K, and the
    // weights N rows of whole blocks; the paths' contracts are that one.
    unsafe {
        let (k, n) = (w.k, w.n);
        let (m, path) = start_path::<S, NV>(x, w, WeightType::Blocks, bias, out, n0, n1);
        let row_bytes = format.row_bytes(k).expect("K is whole blocks (checked by Kernels::matmul)");
        let rows = BlockRows { data, format, k, row_bytes };
        match path {
            MatmulPath::BlockGemv => {
                for i in 0..m {
                    D::gemv_blocks::<S>(&x[i * k..][..k], rows, out.add(i * n), n0, n1);
                }
            }
            MatmulPath::BlockGemm => D::gemm_blocks::<S, MR, NV>(x, m, rows, w, out, n0, n1),
            other => unreachable!("block-format weights on the {other:?} path"),
        }
    }
}

/// # Safety
/// As [`matmul_cols`], with `data` the weights' elements.
#[inline(always)]
unsafe fn matmul_typed<S: Simd, E: Elem, const MR: usize, const NV: usize>(
    x: &[f32],
    data: &[E],
    w: Weight,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: as `matmul_cols` (the contract above): out holds M rows of N, x M rows of K, and
    // `data` K × N elements in `w.layout`; each path's contract is that one (a GEMV gets row i of x
    // and of out).
    unsafe {
        let (k, n) = (w.k, w.n);
        let weights = if E::IS_F32 { WeightType::F32 } else { WeightType::F16 };
        let (m, path) = start_path::<S, NV>(x, w, weights, bias, out, n0, n1);
        match path {
            MatmulPath::GemvInOut => {
                for i in 0..m {
                    gemv_in_out::<S, E>(&x[i * k..][..k], data.as_ptr(), n, out.add(i * n), n0, n1)
                }
            }
            MatmulPath::GemmInOut => gemm_in_out::<S, E, MR, NV>(x, m, data.as_ptr(), w, bias, out, n0, n1),
            MatmulPath::GemvOneRowOutIn => gemv_one_row_out_in::<S::F16Gemv, E>(x, data.as_ptr(), k, out, n0, n1),
            MatmulPath::GemvOutIn1 => gemv_out_in::<S, E, 1>(x, data.as_ptr(), k, n, out, n0, n1),
            MatmulPath::GemvOutIn4 => gemv_out_in::<S, E, 4>(x, data.as_ptr(), k, n, out, n0, n1),
            MatmulPath::GemvOutIn2 => gemv_out_in::<S, E, 2>(x, data.as_ptr(), k, n, out, n0, n1),
            MatmulPath::GemmOutIn => {
                let rows = PlainRows { w: data.as_ptr(), k };
                gemm_out_in::<S, PlainRows<E>, MR, NV>(x, m, rows, w, OutStart::Bias(bias), out, n0, n1)
            }
            other => unreachable!("f32 or f16 weights on the {other:?} path"),
        }
    }
}
