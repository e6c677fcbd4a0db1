//! The cache-blocked GEMM for `(in, out)` weights (GPT-2's `Conv1D`): W packed (and widened
//! from f16) one `KC × NR` panel at a time, each panel multiplied with every `MR` rows of packed
//! x by the micro-kernel, which prefetches the next panel's weights as it goes.

use super::micro_kernel::{micro_tile, store_tile};
use super::pack::{pack_panel, pack_rows, SCRATCH};
use super::prefetch::LineFetch;
use crate::elem::Elem;
use crate::simd::Simd;
use crate::weight::Weight;

/// Depth of one packed panel: `KC × NR` floats stay in L1 while `M / MR` micro-kernels use them.
const KC: usize = 256;

/// Columns multiplied together over all of K: their rows of out (`M × NG` floats, 256 KB at
/// M = 128) stay in L2 while the K steps add into them.
const NG: usize = 512;

/// Blocked GEMM over columns `n0..n1` of `out = x · W + bias`: the first K step's tiles
/// overwrite out (with the bias added), later steps add to it.
///
/// # Safety
/// The CPU supports `S`; `x` holds `m ≥ 1` rows of K; `w` holds K × N elements, `(in, out)` (K and
/// N from `shape`); `n0 ≤ n1 ≤ N`; the bias, if any, holds N floats; `out` is valid for reads and
/// writes of `m` rows of N at columns `n0..n1`, which no other thread writes meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn gemm_in_out<S: Simd, E: Elem, const MR: usize, const NV: usize>(
    x: &[f32],
    m: usize,
    w: *const E,
    shape: Weight,
    bias: Option<&[f32]>,
    out: *mut f32,
    n0: usize,
    n1: usize,
) {
    // SAFETY: the contract above. The scratch holds a panel (KC × NR), x packed (⌈m / MR⌉ blocks of
    // MR × K) and a tile (MR × NR); each panel is W's rows `k0..k0 + kc` at columns `j0..j0 + nc`
    // inside `n0..n1`; a tile writes only its `mr` rows and `nc` columns of out; prefetches never
    // fault.
    unsafe {
        let (k, n) = (shape.k, shape.n);
        let nr = NV * S::LANES;
        let group = NG.next_multiple_of(nr);
        let blocks = m.div_ceil(MR);
        // Taken out of the thread-local and put back after, so that no closure holds the vector
        // code (closures would not inherit the caller's target features).
        let mut scratch = SCRATCH.with(|cell| cell.take());
        let need = KC * nr + blocks * MR * k + MR * nr;
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        {
            let (panel, rest) = scratch.split_at_mut(KC * nr);
            let (xp, tile) = rest.split_at_mut(blocks * MR * k);
            pack_rows::<MR>(x, m, k, xp);
            // Panels in the order they are multiplied: column groups, then K steps, then the
            // group's panels. Each is packed just before its micro-tiles (the packed copy stays in
            // L1), and those micro-tiles prefetch the next panel's rows of W.
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
}
