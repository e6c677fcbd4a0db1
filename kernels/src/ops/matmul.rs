//! Matmul with f32 activations and f32 or f16 weights in either layout, or q8_0 weights stored
//! `(out, in)`.
//!
//! One row (decode) is a GEMV that streams every weight exactly once, which is what bounds
//! decoding: the weights do not fit in cache, so speed is memory bandwidth. More rows (prefill)
//! go through a cache-blocked GEMM: W is packed (and widened from f16) one `KC × NR` panel at a
//! time, then an `MR × NR` register-blocked micro-kernel multiplies the panel with every `MR`
//! rows of x, prefetching the next panel's weights as it goes.

use std::cell::RefCell;

use half::f16;

use crate::elem::Elem;
use crate::simd::Simd;
use crate::weight::{Layout, Weight, WeightData, Q8_BLOCK};

/// Depth of one packed panel: `KC × NR` floats stay in L1 while `M / MR` micro-kernels use them.
const KC: usize = 256;

/// Depth of one step of the `(out, in)` GEMM: its micro-tiles' slice of an xᵀ panel
/// (`KC_OUT_IN × NR` floats, 32 KB with AVX-512) stays in L1.
const KC_OUT_IN: usize = 256;
/// Weight rows the `(out, in)` GEMM widens at a time, for every xᵀ panel (64 KB of f32 at
/// [`KC_OUT_IN`]: in L2).
const MC_OUT_IN: usize = 64;
const _: () = assert!(KC_OUT_IN.is_multiple_of(Q8_BLOCK), "q8_0 rows are widened in whole blocks");

/// How many rows ahead the `(out, in)` GEMVs prefetch. Four rows (3 KB of q8_0 at K = 768)
/// left the q8_0 GEMVs waiting on memory; eight gained 7–16% there and up to 10% for f16 on one
/// thread, nothing lost for f32 (docs/PERFORMANCE.md, session 4).
pub(crate) const PREFETCH_ROWS: usize = 8;

/// From this many rows on, the GEMM path is used.
const GEMM_MIN_ROWS: usize = 2;

/// Whether an `(out, in)` f32/f16 matmul of `m` rows streams the weights once per tile of
/// [`gemv_out_in`] instead of running the GEMM, whose panels of NR rows of x (NR = 32 with
/// AVX-512, 16 with AVX2 and NEON) are mostly padding for a short prompt: below 3/4 of NR.
/// 2-token f16 prompts ran 4× faster; the measured crossover was about 24 rows on AVX-512 and
/// 12 on AVX2 (docs/PERFORMANCE.md, session 7; NEON is not measured).
#[inline(always)]
fn few_rows<S: Simd, const NV: usize>(m: usize) -> bool {
    4 * m < 3 * NV * S::LANES
}

thread_local! {
    /// Per-thread packing buffers, grown once to the largest size seen and then reused.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Columns `n0..n1` of `out[M, N] = x[M, K] · W + bias`.
///
/// # Safety
/// The CPU supports `S`; `out` is valid for writes of `M × N` floats; no other thread writes
/// columns `n0..n1` of it meanwhile.
#[inline(always)]
pub(crate) unsafe fn matmul_cols<S: Simd, D: Q8Matmul, const MR: usize, const NV: usize>(
    x: &[f32],
    w: Weight,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    match w.data {
        WeightData::F32(d) => matmul_typed::<S, f32, MR, NV>(x, d, w, bias, out, n0, n1),
        WeightData::F16(d) => matmul_typed::<S, half::f16, MR, NV>(x, d, w, bias, out, n0, n1),
        WeightData::Q8_0 { q, scales } => matmul_q8::<S, D, MR, NV>(x, q, scales, w, bias, out, n0, n1),
    }
}

/// Bias (or zero) into columns `n0..n1` of every output row.
#[inline(always)]
unsafe fn init_out(m: usize, n: usize, bias: Option<&[f32]>, out: *mut f32, n0: usize, n1: usize) {
    for i in 0..m {
        let row = std::slice::from_raw_parts_mut(out.add(i * n + n0), n1 - n0);
        match bias {
            Some(b) => row.copy_from_slice(&b[n0..n1]),
            None => row.fill(0.0),
        }
    }
}

/// How activations meet q8_0 weights: the level's choice, measured in docs/PERFORMANCE.md
/// ("q8_0 decode: widen or integer dots").
pub(crate) trait Q8Matmul {
    /// `out[j] += x · W[j, :]` for `j` in `n0..n1`: one row (decode).
    ///
    /// # Safety
    /// As [`matmul_cols`], and the CPU has what the implementation needs.
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize);

    /// Columns `n0..n1` of `out[M, N] += x · Wᵀ`: several rows (a prompt). By default exact:
    /// the weights widened into the f32 GEMM.
    ///
    /// # Safety
    /// As [`matmul_cols`], and the CPU has what the implementation needs.
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
        gemm_out_in::<S, Q8Rows, MR, NV>(x, m, rows, shape, OutStart::Ready, out, n0, n1)
    }
}

/// Weights widened to f32, activations kept f32: exact with respect to the stored weights.
pub(crate) struct WidenWeights;

impl Q8Matmul for WidenWeights {
    #[inline(always)]
    unsafe fn gemv<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
        gemv_q8::<S>(x, w, out, n0, n1)
    }
}

/// q8_0 weights `(N, K)`: the level's q8_0 GEMV for a single row (decode), its GEMM for more.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn matmul_q8<S: Simd, D: Q8Matmul, const MR: usize, const NV: usize>(
    x: &[f32],
    q: &[i8],
    scales: &[f16],
    w: Weight,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    let (k, n) = (w.k, w.n);
    let m = x.len() / k;
    init_out(m, n, bias, out, n0, n1);
    let rows = Q8Rows { q: q.as_ptr(), scales: scales.as_ptr(), k };
    if m < GEMM_MIN_ROWS {
        for i in 0..m {
            D::gemv::<S>(&x[i * k..][..k], rows, out.add(i * n), n0, n1);
        }
    } else {
        D::gemm::<S, MR, NV>(x, m, rows, w, out, n0, n1);
    }
}

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
    let (k, n) = (w.k, w.n);
    let m = x.len() / k;
    // The GEMVs add to out, so it starts as the bias; the GEMMs write the bias with their first
    // K step's tiles, with no pass over out before them.
    let gemv = m < GEMM_MIN_ROWS || (w.layout == Layout::OutIn && few_rows::<S, NV>(m));
    if gemv {
        init_out(m, n, bias, out, n0, n1);
    }
    match w.layout {
        Layout::InOut if gemv => {
            for i in 0..m {
                gemv_in_out::<S, E>(&x[i * k..][..k], data.as_ptr(), n, out.add(i * n), n0, n1)
            }
        }
        Layout::InOut => gemm::<S, E, MR, NV>(x, m, data.as_ptr(), w, bias, out, n0, n1),
        // f16 decodes one weight row at a time, with 256-bit vectors on AVX-512 too (both
        // measured faster than four-row tiles: docs/PERFORMANCE.md, sessions 9 and 10). f32,
        // which needs more bandwidth per multiply-add, measured 2–6% slower one row at a time
        // on Zen 1.
        Layout::OutIn if m < GEMM_MIN_ROWS && std::mem::size_of::<E>() == 2 => {
            gemv_one_row_out_in::<S::F16Gemv, E>(x, data.as_ptr(), k, out, n0, n1)
        }
        Layout::OutIn if m < GEMM_MIN_ROWS => gemv_out_in::<S, E, 1>(x, data.as_ptr(), k, n, out, n0, n1),
        // Four rows of x per tile where 32 registers hold the 16 accumulators, else two.
        Layout::OutIn if gemv && S::REGISTERS >= 32 => gemv_out_in::<S, E, 4>(x, data.as_ptr(), k, n, out, n0, n1),
        Layout::OutIn if gemv => gemv_out_in::<S, E, 2>(x, data.as_ptr(), k, n, out, n0, n1),
        Layout::OutIn => {
            let rows = PlainRows { w: data.as_ptr(), k };
            gemm_out_in::<S, PlainRows<E>, MR, NV>(x, m, rows, w, OutStart::Bias(bias), out, n0, n1)
        }
    }
}

/// `out[i, j] += x[i, :] · W[j, :]` for every row `i` of x and `j` in `n0..n1`, W stored `(N, K)`:
/// tiles of four weight rows × `XR` rows of x, so the weights stream once per `XR` rows of x.
/// `XR = 1` is decoding's GEMV for f32 weights (f16 has [`gemv_one_row_out_in`]); a few rows
/// more (a short prompt) use a larger `XR` rather than the GEMM, whose panels of `NR` rows of x
/// would mostly hold padding. A short last tile repeats its first row (results not stored): one
/// code path.
#[inline(always)]
unsafe fn gemv_out_in<S: Simd, E: Elem, const XR: usize>(
    x: &[f32],
    w: *const E,
    k: usize,
    n: usize,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    let m = x.len() / k;
    let full = k / S::LANES * S::LANES;
    let tail = |xr: *const f32, row: *const E| -> f32 { (full..k).map(|i| *xr.add(i) * (*row.add(i)).to_f32()).sum() };
    for i0 in (0..m).step_by(XR) {
        let ir = XR.min(m - i0);
        let xs: [*const f32; XR] = std::array::from_fn(|i| x.as_ptr().add((i0 + if i < ir { i } else { 0 }) * k));
        for j in (n0..n1).step_by(4) {
            let jr = 4.min(n1 - j);
            let rows: [*const E; 4] = std::array::from_fn(|r| w.add((j + if r < jr { r } else { 0 }) * k));
            let mut acc = [[S::zero(); 4]; XR];
            let mut i = 0;
            while i < full {
                // Indexed, not iterated: loops LLVM unrolls, with the accumulators in registers.
                #[allow(clippy::needless_range_loop)]
                for r in 0..4 {
                    // The same column eight rows on: keeps enough lines in flight.
                    S::prefetch(rows[r].wrapping_add(PREFETCH_ROWS * k + i));
                    let wv = E::load::<S>(rows[r].add(i));
                    for xi in 0..XR {
                        acc[xi][r] = wv.mul_add(S::load(xs[xi].add(i)), acc[xi][r]);
                    }
                }
                i += S::LANES;
            }
            for xi in 0..ir {
                for r in 0..jr {
                    *out.add((i0 + xi) * n + j + r) += acc[xi][r].hsum() + tail(xs[xi], rows[r]);
                }
            }
        }
    }
}

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W stored `(N, K)`: decoding's GEMV, one weight
/// row per pass with four accumulators along K. Against tiles of four rows (the few-row path's
/// shape at one row of x) it keeps one weight stream in flight at a time, which decoded an f16
/// file 8–9% faster on Zen 1, as the q8_0 GEMV found. On an AVX-512 Xeon it is run with 256-bit
/// vectors ([`Simd::F16Gemv`]): 512-bit ones were 9% slower than the tiles there, eight
/// accumulators of them level with the tiles, 256-bit ones 3–8% faster (docs/PERFORMANCE.md).
#[inline(always)]
unsafe fn gemv_one_row_out_in<S: Simd, E: Elem>(x: &[f32], w: *const E, k: usize, out: *mut f32, n0: usize, n1: usize) {
    let step = 4 * S::LANES;
    let (full4, full) = (k / step * step, k / S::LANES * S::LANES);
    let px = x.as_ptr();
    for j in n0..n1 {
        let row = w.add(j * k);
        let mut acc = [S::zero(); 4];
        let mut i = 0;
        while i < full4 {
            // Each line of the step, eight rows on: keeps enough lines in flight.
            for line in (0..step * std::mem::size_of::<E>()).step_by(64) {
                S::prefetch(row.wrapping_add(PREFETCH_ROWS * k + i).cast::<u8>().wrapping_add(line));
            }
            // Indexed, not iterated: a loop LLVM unrolls, with the accumulators in registers.
            #[allow(clippy::needless_range_loop)]
            for a in 0..4 {
                let at = i + a * S::LANES;
                acc[a] = E::load::<S>(row.add(at)).mul_add(S::load(px.add(at)), acc[a]);
            }
            i += step;
        }
        while i < full {
            acc[0] = E::load::<S>(row.add(i)).mul_add(S::load(px.add(i)), acc[0]);
            i += S::LANES;
        }
        let tail: f32 = (full..k).map(|i| *px.add(i) * (*row.add(i)).to_f32()).sum();
        *out.add(j) += acc[0].add(acc[1]).add(acc[2].add(acc[3])).hsum() + tail;
    }
}

/// Scales widened per call of [`gemv_q8`]: enough for K up to 32 · 256 = 8192 per pass.
const Q8_SCALE_RUN: usize = 256;

/// `out[j] += x · W[j, :]` for `j` in `n0..n1`, W q8_0 `(N, K)`: four rows at a time, each
/// block's 32 products summed in f32 and then multiplied by its scale. The weights are widened
/// to f32 (exact); the activations stay f32.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // block b indexes the weights, x and four rows' scales
unsafe fn gemv_q8<S: Simd>(x: &[f32], w: Q8Rows, out: *mut f32, n0: usize, n1: usize) {
    let (k, px) = (w.k, x.as_ptr());
    let blocks = k / Q8_BLOCK;
    let mut d = [[0.0f32; Q8_SCALE_RUN]; 4];
    let mut j = n0;
    while j < n1 {
        let nr = 4.min(n1 - j);
        let mut acc = [S::zero(); 4];
        for b0 in (0..blocks).step_by(Q8_SCALE_RUN) {
            let bn = Q8_SCALE_RUN.min(blocks - b0);
            for (r, dr) in d.iter_mut().enumerate().take(nr) {
                widen_f16::<S>(w.scales.add((j + r) * blocks + b0), &mut dr[..bn]);
            }
            for b in 0..bn {
                let i0 = (b0 + b) * Q8_BLOCK;
                for (r, a) in acc.iter_mut().enumerate().take(nr) {
                    let row = w.q.add((j + r) * k + i0);
                    // The same block eight rows on: keeps enough lines in flight.
                    S::prefetch(row.wrapping_add(PREFETCH_ROWS * k));
                    let mut t = S::zero();
                    let mut i = 0;
                    while i < Q8_BLOCK {
                        t = S::load_i8(row.add(i)).mul_add(S::load(px.add(i0 + i)), t);
                        i += S::LANES;
                    }
                    *a = S::splat(d[r][b]).mul_add(t, *a);
                }
            }
        }
        for (r, a) in acc.iter().enumerate().take(nr) {
            *out.add(j + r) += a.hsum();
        }
        j += nr;
    }
}

/// `src[..dst.len()]` f16 values widened into `dst`.
#[inline(always)]
pub(crate) unsafe fn widen_f16<S: Simd>(src: *const f16, dst: &mut [f32]) {
    let full = dst.len() / S::LANES * S::LANES;
    for i in (0..full).step_by(S::LANES) {
        S::load_f16(src.add(i) as *const u16).store(dst.as_mut_ptr().add(i));
    }
    for (i, o) in dst.iter_mut().enumerate().skip(full) {
        *o = (*src.add(i)).to_f32();
    }
}

/// `out[n0..n1] += Σ_k x[k] · W[k, n0..n1]`, W stored `(K, N)`: the output slice stays in L1
/// while four weight rows at a time stream through, each read once, in order.
#[inline(always)]
unsafe fn gemv_in_out<S: Simd, E: Elem>(x: &[f32], w: *const E, n: usize, out: *mut f32, n0: usize, n1: usize) {
    let k = x.len();
    let width = n1 - n0;
    let full = width / S::LANES * S::LANES;
    let o = out.add(n0);
    let mut kk = 0;
    while kk + 4 <= k {
        let rows = [w.add(kk * n + n0), w.add((kk + 1) * n + n0), w.add((kk + 2) * n + n0), w.add((kk + 3) * n + n0)];
        let xs = [S::splat(x[kk]), S::splat(x[kk + 1]), S::splat(x[kk + 2]), S::splat(x[kk + 3])];
        let mut j = 0;
        while j < full {
            let mut acc = S::load(o.add(j));
            for (xv, r) in xs.iter().zip(rows) {
                // The same columns four rows further: keeps enough lines in flight.
                S::prefetch(r.wrapping_add(4 * n + j));
                acc = xv.mul_add(E::load::<S>(r.add(j)), acc);
            }
            acc.store(o.add(j));
            j += S::LANES;
        }
        for j in full..width {
            for (r, row) in rows.iter().enumerate() {
                *o.add(j) += x[kk + r] * (*row.add(j)).to_f32();
            }
        }
        kk += 4;
    }
    while kk < k {
        let row = w.add(kk * n + n0);
        let xv = S::splat(x[kk]);
        let mut j = 0;
        while j < full {
            xv.mul_add(E::load::<S>(row.add(j)), S::load(o.add(j))).store(o.add(j));
            j += S::LANES;
        }
        for j in full..width {
            *o.add(j) += x[kk] * (*row.add(j)).to_f32();
        }
        kk += 1;
    }
}

/// Columns multiplied together over all of K: their rows of out (`M × NG` floats, 256 KB at
/// M = 128) stay in L2 while the K steps add into them.
const NG: usize = 512;

/// Blocked GEMM over columns `n0..n1` of `out = x · W + bias`: the first K step's tiles
/// overwrite out (with the bias added), later steps add to it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gemm<S: Simd, E: Elem, const MR: usize, const NV: usize>(
    x: &[f32],
    m: usize,
    w: *const E,
    shape: Weight,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    let (k, n) = (shape.k, shape.n);
    let nr = NV * S::LANES;
    let group = NG.next_multiple_of(nr);
    let blocks = m.div_ceil(MR);
    // Taken out of the thread-local and put back after, so that no closure holds the vector code
    // (closures would not inherit the caller's target features).
    let mut scratch = SCRATCH.with(|cell| cell.take());
    let need = KC * nr + blocks * MR * k + MR * nr;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    {
        let (panel, rest) = scratch.split_at_mut(KC * nr);
        let (xp, tile) = rest.split_at_mut(blocks * MR * k);
        pack_rows::<MR>(x, m, k, xp);
        // Panels in the order they are multiplied: column groups, then K steps, then the group's
        // panels. Each is packed just before its micro-tiles (the packed copy stays in L1), and
        // those micro-tiles prefetch the next panel's rows of W.
        let mut order = (n0..n1).step_by(group).flat_map(|g0| {
            let g1 = (g0 + group).min(n1);
            (0..k).step_by(KC).flat_map(move |k0| (g0..g1).step_by(nr).map(move |j0| (k0, j0, nr.min(g1 - j0))))
        });
        let mut next = order.next();
        while let Some((k0, j0, nc)) = next {
            let (kc, first) = (KC.min(k - k0), k0 == 0);
            pack_panel::<S, E, NV>(w, n, k0, kc, j0, nc, panel);
            next = order.next();
            let mut fetch = next.map_or(LineFetch::none(), |(kn, jn, ncn)| {
                let size = std::mem::size_of::<E>();
                let start = w.wrapping_add(kn * n + jn).cast::<u8>();
                LineFetch::runs(start, ncn * size, n * size, KC.min(k - kn))
            });
            let per_tile = fetch.left.div_ceil(blocks);
            for b in 0..blocks {
                let (i0, a) = (b * MR, xp.as_ptr().add((b * k + k0) * MR));
                let acc = micro_tile::<S, MR, NV>(kc, a, 1, MR, panel.as_ptr(), &mut fetch, per_tile);
                let mr = MR.min(m - i0);
                // What the tile adds to: out so far, or (first K step) the bias or nothing.
                if nc == nr {
                    for (r, row) in acc.iter().enumerate().take(mr) {
                        let dst = out.add((i0 + r) * n + j0);
                        for (v, a) in row.iter().enumerate() {
                            let at = v * S::LANES;
                            let base = match bias {
                                _ if !first => S::load(dst.add(at)),
                                Some(bias) => S::load(bias.as_ptr().add(j0 + at)),
                                None => S::zero(),
                            };
                            a.add(base).store(dst.add(at));
                        }
                    }
                } else {
                    store_tile::<S, MR, NV>(&acc, tile.as_mut_ptr());
                    for r in 0..mr {
                        let dst = out.add((i0 + r) * n + j0);
                        for c in 0..nc {
                            let base = match bias {
                                _ if !first => *dst.add(c),
                                Some(bias) => bias[j0 + c],
                                None => 0.0,
                            };
                            *dst.add(c) = tile[r * nr + c] + base;
                        }
                    }
                }
            }
        }
    }
    SCRATCH.with(|cell| cell.replace(scratch));
}

/// x `(M, K)` packed as `[⌈M / R⌉][K][R]` (rows past M zero). The `(in, out)` GEMM packs R = MR
/// rows, so that its micro-kernel reads them at one k as one contiguous run, with no per-row
/// address arithmetic in its loop; the `(out, in)` GEMM's xᵀ panels are R = NR rows.
#[inline(never)]
fn pack_rows<const R: usize>(x: &[f32], m: usize, k: usize, dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), m.div_ceil(R) * R * k);
    for (b, block) in dst.chunks_exact_mut(R * k).enumerate() {
        let rows = R.min(m - b * R);
        for (kk, at) in block.chunks_exact_mut(R).enumerate() {
            for (i, v) in at.iter_mut().enumerate() {
                *v = if i < rows { x[(b * R + i) * k + kk] } else { 0.0 };
            }
        }
    }
}

/// What out holds when a GEMM starts.
#[derive(Clone, Copy)]
pub(crate) enum OutStart<'a> {
    /// The bias already: every K step adds to it.
    Ready,
    /// Nothing yet: the first K step's tiles overwrite it, with this bias (if any) added.
    Bias(Option<&'a [f32]>),
}

/// Blocked GEMM for an `(out, in)` weight over output columns `n0..n1` (see [`OutStart`]).
///
/// Transposing W into `K × NR` panels would touch every weight element one by one, so the
/// operands swap roles instead: `outᵀ = W · xᵀ`. The weight's rows (contiguous along K, read
/// once, in order) are the micro-kernel's broadcast operand, and the small activation matrix is
/// packed once per call as `xᵀ` panels of NR rows of x.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_out_in<S: Simd, R: OutInRows, const MR: usize, const NV: usize>(
    x: &[f32],
    m: usize,
    w: R,
    shape: Weight,
    start: OutStart,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    let (k, n) = (shape.k, shape.n);
    let nr = NV * S::LANES;
    let panels = m.div_ceil(nr);
    let mut scratch = SCRATCH.with(|cell| cell.take());
    let need = panels * k * nr + MC_OUT_IN.next_multiple_of(MR) * KC_OUT_IN + MR * nr;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    {
        let (xt, rest) = scratch.split_at_mut(panels * k * nr);
        let (a_pad, tile) = rest.split_at_mut(MC_OUT_IN.next_multiple_of(MR) * KC_OUT_IN);
        // xᵀ panels: panel p holds rows p·NR.. of x as [K][NR], zero-padded past M. (In the
        // levels' code the compiler turned this transposition into AVX-512 scatters: 5% of a
        // prompt; [`pack_rows`] is compiled apart, for the NR of each level.)
        const { assert!(NV * S::LANES == 16 || NV * S::LANES == 32, "a GEMM panel of 16 or 32 rows of x") };
        match nr {
            16 => pack_rows::<16>(x, m, k, xt),
            32 => pack_rows::<32>(x, m, k, xt),
            _ => unreachable!("every level's GEMM panel holds 16 or 32 rows of x"),
        }
        // K steps outermost, then blocks of MC_OUT_IN weight rows (widened once, kept in L2),
        // then xᵀ panels, then MR rows of the block: each micro-tile's slice of the xᵀ panel
        // (KC_OUT_IN × NR floats) stays in L1 while the block's rows stream past it.
        for k0 in (0..k).step_by(KC_OUT_IN) {
            let kc = KC_OUT_IN.min(k - k0);
            for jb in (n0..n1).step_by(MC_OUT_IN) {
                let rows = MC_OUT_IN.min(n1 - jb);
                let padded = rows.next_multiple_of(MR);
                // The block's rows as f32: in place when they are, except a short last tile,
                // which is widened (and zero-padded) like every tile of other weights.
                let in_place = w.in_place(jb, k0).is_some();
                let widen_from = if in_place { rows / MR * MR } else { 0 };
                for r in widen_from..rows {
                    w.widen::<S>(jb + r, k0, kc, a_pad.as_mut_ptr().add(r * KC_OUT_IN));
                }
                a_pad[rows * KC_OUT_IN..padded * KC_OUT_IN].fill(0.0);
                // The next block's weight rows are fetched over this block's micro-tiles: read
                // in bursts, one block at a time, they left the widening waiting on DRAM.
                let next = if jb + rows < n1 {
                    Some((jb + rows, k0, kc))
                } else {
                    Some((n0, k0 + kc, KC_OUT_IN.min(k - (k0 + kc)))).filter(|_| k0 + kc < k)
                };
                let mut fetch = next.map_or(LineFetch::none(), |(j, kk, c)| {
                    let (start, bytes, stride) = w.run(j, kk, c);
                    LineFetch::runs(start, bytes, stride, MC_OUT_IN.min(n1 - j))
                });
                let per_tile = fetch.left.div_ceil(panels * padded / MR);
                for p in 0..panels {
                    let panel = xt.as_ptr().add(p * k * nr + k0 * nr);
                    let cols = nr.min(m - p * nr);
                    for j0 in (jb..jb + rows).step_by(MR) {
                        let mr = MR.min(jb + rows - j0);
                        let (a, lda) = match w.in_place(j0, k0) {
                            Some(row) if mr == MR => (row, k),
                            _ => (a_pad.as_ptr().add((j0 - jb) * KC_OUT_IN), KC_OUT_IN),
                        };
                        let mut acc = micro_tile::<S, MR, NV>(kc, a, lda, 1, panel, &mut fetch, per_tile);
                        // The tile's element (r, c) belongs to out[p·NR + c][j0 + r]: row r of
                        // the tile takes bias[j0 + r] on the first step.
                        let overwrite = match start {
                            OutStart::Bias(bias) if k0 == 0 => {
                                for (r, row) in acc.iter_mut().enumerate().take(mr) {
                                    let b = S::splat(bias.map_or(0.0, |b| b[j0 + r]));
                                    row.iter_mut().for_each(|a| *a = a.add(b));
                                }
                                true
                            }
                            _ => false,
                        };
                        let dst = out.add(p * nr * n + j0);
                        S::add_transposed::<MR, NV>(&acc, mr, cols, dst, n, !overwrite, tile.as_mut_ptr());
                    }
                }
            }
        }
    }
    SCRATCH.with(|cell| cell.replace(scratch));
}

/// The rows of an `(out, in)` weight as the out-in GEMM reads them: in place when they are f32,
/// else widened (or dequantized) to f32, `kc` inputs from `k0` at a time.
pub(crate) trait OutInRows: Copy {
    /// Row `j` from input `k0` on, if it is f32 already.
    unsafe fn in_place(&self, j: usize, k0: usize) -> Option<*const f32>;
    /// Inputs `k0..k0 + kc` of row `j`, as f32, into `dst`.
    unsafe fn widen<S: Simd>(&self, j: usize, k0: usize, kc: usize, dst: *mut f32);
    /// Where inputs `k0..k0 + kc` of row `j` are stored (start and bytes), and the distance in
    /// bytes from one row to the next, for prefetching.
    fn run(&self, j: usize, k0: usize, kc: usize) -> (*const u8, usize, usize);
}

/// f32 or f16 rows of `k` elements.
#[derive(Clone, Copy)]
struct PlainRows<E> {
    w: *const E,
    k: usize,
}

impl<E: Elem> OutInRows for PlainRows<E> {
    fn run(&self, j: usize, k0: usize, kc: usize) -> (*const u8, usize, usize) {
        let size = std::mem::size_of::<E>();
        (self.w.wrapping_add(j * self.k + k0).cast(), kc * size, self.k * size)
    }

    #[inline(always)]
    unsafe fn in_place(&self, j: usize, k0: usize) -> Option<*const f32> {
        E::IS_F32.then(|| self.w.add(j * self.k + k0) as *const f32)
    }

    #[inline(always)]
    unsafe fn widen<S: Simd>(&self, j: usize, k0: usize, kc: usize, dst: *mut f32) {
        let src = self.w.add(j * self.k + k0);
        let full = kc / S::LANES * S::LANES;
        for kk in (0..full).step_by(S::LANES) {
            E::load::<S>(src.add(kk)).store(dst.add(kk));
        }
        for kk in full..kc {
            *dst.add(kk) = (*src.add(kk)).to_f32();
        }
    }
}

/// q8_0 rows of `k` int8 values and `k / 32` f16 scales.
#[derive(Clone, Copy)]
pub(crate) struct Q8Rows {
    pub(crate) q: *const i8,
    pub(crate) scales: *const f16,
    pub(crate) k: usize,
}

impl OutInRows for Q8Rows {
    fn run(&self, j: usize, k0: usize, kc: usize) -> (*const u8, usize, usize) {
        (self.q.wrapping_add(j * self.k + k0).cast(), kc, self.k)
    }

    #[inline(always)]
    unsafe fn in_place(&self, _: usize, _: usize) -> Option<*const f32> {
        None
    }

    /// `k0` and `kc` are whole blocks (KC_OUT_IN and K are multiples of 32).
    #[inline(always)]
    unsafe fn widen<S: Simd>(&self, j: usize, k0: usize, kc: usize, dst: *mut f32) {
        let (q, scales) = (self.q.add(j * self.k + k0), self.scales.add((j * self.k + k0) / Q8_BLOCK));
        for b in 0..kc / Q8_BLOCK {
            let d = S::splat((*scales.add(b)).to_f32());
            for i in (0..Q8_BLOCK).step_by(S::LANES) {
                let at = b * Q8_BLOCK + i;
                S::load_i8(q.add(at)).mul(d).store(dst.add(at));
            }
        }
    }
}

/// Packs `W[k0..k0+kc, j0..j0+nc]` of an `(in, out)` W with `n` columns as one `[kc][NR]`
/// panel of f32, zero-padding columns past `nc`.
#[inline(always)]
unsafe fn pack_panel<S: Simd, E: Elem, const NV: usize>(
    w: *const E,
    n: usize,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    panel: &mut [f32],
) {
    let nr = NV * S::LANES;
    for kk in 0..kc {
        let (src, row) = (w.add((k0 + kk) * n + j0), panel.as_mut_ptr().add(kk * nr));
        if nc == nr {
            for v in 0..NV {
                E::load::<S>(src.add(v * S::LANES)).store(row.add(v * S::LANES));
            }
        } else {
            for c in 0..nr {
                *row.add(c) = if c < nc { (*src.add(c)).to_f32() } else { 0.0 };
            }
        }
    }
}

/// `tile[MR][NR] = a[MR rows, kc] · panel[kc][NR]`, row i of a at `a + i·lda`.
#[inline(always)]
pub(crate) unsafe fn micro_kernel<S: Simd, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    panel: *const f32,
    tile: *mut f32,
) {
    let acc = micro_tile::<S, MR, NV>(kc, a, lda, 1, panel, &mut LineFetch::none(), 0);
    store_tile::<S, MR, NV>(&acc, tile);
}

/// k steps of [`micro_tile`] between two prefetches (lines left over are issued after the
/// tile). At [`KC`] that spreads 32 lines over a micro-tile: what one AVX-512 panel of f32
/// weights (256 rows × 128 bytes) needs over the 16 micro-tiles of a 128-row prompt.
const FETCH_EVERY: usize = 8;

/// `a[MR rows, kc] · panel[kc][NR]` in MR·NV accumulator registers: element (i, kk) of a is at
/// `a + i·row_step + kk·k_step` (rows in place: lda and 1; packed by [`pack_rows`]: 1 and MR).
/// On the way it prefetches `lines` lines of `fetch`, one every [`FETCH_EVERY`] k steps (any
/// left over at the end), so that only a few are in flight at a time.
#[inline(always)]
unsafe fn micro_tile<S: Simd, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    row_step: usize,
    k_step: usize,
    panel: *const f32,
    fetch: &mut LineFetch,
    lines: usize,
) -> [[S; NV]; MR] {
    let mut acc = [[S::zero(); NV]; MR];
    let mut left = lines;
    let mut kk = 0;
    while kk + FETCH_EVERY <= kc {
        if left > 0 {
            fetch.next::<S>();
            left -= 1;
        }
        for kk in kk..kk + FETCH_EVERY {
            mac_step::<S, MR, NV>(&mut acc, a.add(kk * k_step), row_step, panel.add(kk * NV * S::LANES));
        }
        kk += FETCH_EVERY;
    }
    for kk in kk..kc {
        mac_step::<S, MR, NV>(&mut acc, a.add(kk * k_step), row_step, panel.add(kk * NV * S::LANES));
    }
    for _ in 0..left {
        fetch.next::<S>();
    }
    acc
}

/// One k step of [`micro_tile`]: `acc[i] += a[i·row_step] · b[..NR]`.
#[inline(always)]
unsafe fn mac_step<S: Simd, const MR: usize, const NV: usize>(
    acc: &mut [[S; NV]; MR],
    a: *const f32,
    row_step: usize,
    b: *const f32,
) {
    let mut bv = [S::zero(); NV];
    for (v, slot) in bv.iter_mut().enumerate() {
        *slot = S::load(b.add(v * S::LANES));
    }
    for (i, row) in acc.iter_mut().enumerate() {
        let av = S::splat(*a.add(i * row_step));
        for (slot, bvv) in row.iter_mut().zip(bv) {
            *slot = av.mul_add(bvv, *slot);
        }
    }
}

/// Cache lines to prefetch from inside micro-kernels, one at a time: `rows` runs of bytes,
/// `stride` bytes apart.
struct LineFetch {
    /// The next line, and the start of its run.
    at: *const u8,
    run: *const u8,
    /// Lines left in this run, lines per run, and lines left in all.
    left_in_run: usize,
    run_lines: usize,
    left: usize,
    stride: usize,
}

impl LineFetch {
    /// Nothing to fetch.
    fn none() -> Self {
        LineFetch { at: std::ptr::null(), run: std::ptr::null(), left_in_run: 0, run_lines: 0, left: 0, stride: 0 }
    }

    /// `rows` runs of `bytes` bytes from `start` on, `stride` bytes apart.
    fn runs(start: *const u8, bytes: usize, stride: usize, rows: usize) -> Self {
        // Lines the first run touches; one more where the others may lie differently on lines.
        let first = (start as usize + bytes.max(1) - 1) / 64 - start as usize / 64 + 1;
        let run_lines = if stride.is_multiple_of(64) { first } else { bytes.div_ceil(64) + 1 };
        let start = start.wrapping_sub(start as usize % 64);
        LineFetch { at: start, run: start, left_in_run: run_lines, run_lines, left: run_lines * rows, stride }
    }

    /// Prefetches the next line, if any.
    #[inline(always)]
    unsafe fn next<S: Simd>(&mut self) {
        if self.left == 0 {
            return;
        }
        S::prefetch(self.at);
        self.left -= 1;
        self.left_in_run -= 1;
        if self.left_in_run == 0 {
            self.run = self.run.wrapping_add(self.stride);
            self.at = self.run;
            self.left_in_run = self.run_lines;
        } else {
            self.at = self.at.wrapping_add(64);
        }
    }
}

/// The accumulators of [`micro_tile`] into `tile[MR][NR]`.
#[inline(always)]
unsafe fn store_tile<S: Simd, const MR: usize, const NV: usize>(acc: &[[S; NV]; MR], tile: *mut f32) {
    let nr = NV * S::LANES;
    for (i, row) in acc.iter().enumerate() {
        for (v, slot) in row.iter().enumerate() {
            slot.store(tile.add(i * nr + v * S::LANES));
        }
    }
}
