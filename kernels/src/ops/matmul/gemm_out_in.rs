//! The cache-blocked GEMM for `(out, in)` weights (`nn.Linear`, the tied lm_head, q8_0): the
//! operands swap roles, `outᵀ = W · xᵀ`, so that the weight rows stream in place.

use super::micro_kernel::micro_tile;
use super::pack::{pack_rows, SCRATCH};
use super::prefetch::LineFetch;
use super::rows::OutInRows;
use crate::simd::Simd;
use crate::weight::{Weight, Q8_BLOCK};

/// Depth of one step of the `(out, in)` GEMM: its micro-tiles' slice of an xᵀ panel
/// (`KC_OUT_IN × NR` floats, 32 KB with AVX-512) stays in L1.
const KC_OUT_IN: usize = 256;
/// Weight rows the `(out, in)` GEMM widens at a time, for every xᵀ panel (64 KB of f32 at
/// [`KC_OUT_IN`]: in L2).
const MC_OUT_IN: usize = 64;
const _: () = assert!(KC_OUT_IN.is_multiple_of(Q8_BLOCK), "q8_0 rows are widened in whole blocks");
// Block formats' rows are decoded in whole blocks too: 32 or 256 weights.
const _: () = assert!(KC_OUT_IN.is_multiple_of(256), "k-quant rows are decoded in whole blocks");

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
///
/// # Safety
/// The CPU supports `S`; `x` holds `m ≥ 1` rows of K; `w` holds the rows `n0..n1` of K inputs (as
/// [`OutInRows`] reads them; K and N from `shape`); `out` is valid for reads and writes of `m` rows
/// of N at columns `n0..n1`, which no other thread writes meanwhile; a bias in `start` holds N
/// floats.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_out_in<S: Simd, R: OutInRows, const MR: usize, const NV: usize>(
    x: &[f32],
    m: usize,
    w: R,
    shape: Weight,
    start: OutStart,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above. The scratch holds xᵀ (⌈m / NR⌉ panels of K × NR), a block of
    // widened rows (MC_OUT_IN rounded up to MR, × KC_OUT_IN) and a tile (MR × NR); rows `jb + r` <
    // n1 and inputs `k0..k0 + kc` ≤ K are read in place or widened; a tile writes only its `mr`
    // columns and `cols` rows of out; prefetches never fault.
    unsafe {
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
            // xᵀ panels: panel p holds rows p·NR.. of x as [K][NR], zero-padded past M.
            // [`pack_rows`] is compiled apart, for the NR of each level: inlined into the levels'
            // code, this transposition would become slow AVX-512 scatters.
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
                    // in bursts, one block at a time, they would stall the widening on DRAM.
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
}
