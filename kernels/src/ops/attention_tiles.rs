//! Attention of a prompt's queries in tiles: the GEMM's micro-kernel, twice per block of queries.
//!
//! One query at a time (ops::attention) reads every visible key and value once per query and
//! ends each score with a horizontal sum, so a prompt's cost per token grows with the context it
//! follows (docs/PERFORMANCE.md, "Attention"). Here a head's visible keys
//! are packed once per call into `D × NR` panels (keys transposed, NR keys wide) and its values
//! into `span × NR` panels (NR of the D columns wide); then each block of MR queries runs
//! [`micro_kernel`] for `scores = q · Kᵀ` (MR × NR scores per panel, no horizontal sums) and,
//! after each row's softmax, for `out = P · V`, each key and value read from cache once per
//! block instead of once per query.

use std::cell::RefCell;

use super::matmul::micro_kernel::micro_kernel;
use super::vector::softmax;
use crate::attention_args::AttentionHead;
use crate::elem::Elem;
use crate::simd::Simd;

thread_local! {
    /// Per-thread panels and probability rows, grown once to the largest size seen.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether `m` queries are enough for tiles to pay for packing the head's keys and values: one
/// full block of the micro-kernel.
#[inline(always)]
pub(crate) fn worth_tiles<const MR: usize>(m: usize) -> bool {
    m >= MR
}

/// As `ops::attention::attention_head` for one head's `h.n_queries` queries.
///
/// # Safety
/// The CPU supports `S`; `out` must be valid for rows `i * stride .. + D`; `keys` and `values`
/// hold the head's slots (checked by `Kernels::attention`).
#[inline(always)]
pub(crate) unsafe fn attend_tiles<S: Simd, E: Elem, const MR: usize, const NV: usize>(
    h: &AttentionHead,
    keys: &[E],
    values: &[E],
    scores: &mut [f32],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: the contract above. The scratch holds the key panels (⌈span / NR⌉ × D × NR), the
    // value panels (⌈D / NR⌉ × span × NR), MR rows of probabilities (row length `hi + NR`, so a
    // panel's NR scores fit past the last position), a padded query block (MR × D) and a tile (MR ×
    // NR); a block reads MR query rows (in place when whole, else copied into the pad) and writes
    // `mr` output rows, `width ≤ D - c·NR` floats per panel.
    unsafe {
        let (d, m, nr) = (h.d, h.n_queries, NV * S::LANES);
        // Positions lo..hi are in view of some query; row lengths are absolute positions, padded so
        // that the last key panel's NR scores fit.
        let (lo, hi) = (h.first_visible(0), h.positions());
        let span = hi - lo;
        let key_panels = span.div_ceil(nr);
        let d_panels = d.div_ceil(nr);
        let row_len = hi + nr;
        let sizes = [key_panels * d * nr, d_panels * span * nr, MR * row_len, MR * d, MR * nr];
        let need: usize = sizes.iter().sum();
        // Taken out of the thread-local and put back after: no closure may hold the vector code.
        let mut scratch = SCRATCH.with(|cell| cell.take());
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        {
            let (kt, rest) = scratch.split_at_mut(sizes[0]);
            let (vp, rest) = rest.split_at_mut(sizes[1]);
            let (probs, rest) = rest.split_at_mut(sizes[2]);
            let (q_pad, tile) = rest.split_at_mut(sizes[3]);
            pack_keys::<E>(h, keys, lo, hi, nr, kt);
            pack_values::<S, E>(h, values, lo, hi, nr, vp);
            let scale = S::splat(h.scale);
            for i0 in (0..m).step_by(MR) {
                let mr = MR.min(m - i0);
                // Positions blo..bhi are in view of some query of the block.
                let (blo, bhi) = (h.first_visible(i0), h.first_pos + i0 + mr);
                let (a, lda) = if mr == MR {
                    (h.q.as_ptr().add(i0 * h.q_stride), h.q_stride)
                } else {
                    // The last queries, zero-padded to a full block.
                    q_pad.fill(0.0);
                    for r in 0..mr {
                        q_pad[r * d..][..d].copy_from_slice(&h.q[(i0 + r) * h.q_stride..][..d]);
                    }
                    (q_pad.as_ptr(), d)
                };
                for p in (blo - lo) / nr..(bhi - lo).div_ceil(nr) {
                    micro_kernel::<S, MR, NV>(d, a, lda, kt.as_ptr().add(p * d * nr), tile.as_mut_ptr());
                    let col = lo + p * nr;
                    for r in 0..mr {
                        for v in 0..NV {
                            let s = S::load(tile.as_ptr().add(r * nr + v * S::LANES)).mul(scale);
                            s.store(probs.as_mut_ptr().add(r * row_len + col + v * S::LANES));
                        }
                    }
                }
                for r in 0..mr {
                    let i = i0 + r;
                    let (start, pos) = (h.first_visible(i), h.first_pos + i);
                    let row = &mut probs[r * row_len..][..hi];
                    h.add_key_bias(&mut row[start..=pos], start);
                    softmax::<S>(&mut row[start..=pos]);
                    h.finish_probs(row, start, pos);
                    // P · V below reads blo..bhi for every row of the block.
                    row[blo..start].fill(0.0);
                    row[pos + 1..bhi].fill(0.0);
                    if h.keep_probs {
                        let (kept, _, _) = h.scores_row(scores, i);
                        kept.copy_from_slice(row);
                    }
                }
                for c in 0..d_panels {
                    let panel = vp.as_ptr().add(c * span * nr + (blo - lo) * nr);
                    micro_kernel::<S, MR, NV>(bhi - blo, probs.as_ptr().add(blo), row_len, panel, tile.as_mut_ptr());
                    let width = nr.min(d - c * nr);
                    for r in 0..mr {
                        let dst = out.add((i0 + r) * stride + c * nr);
                        std::ptr::copy_nonoverlapping(tile.as_ptr().add(r * nr), dst, width);
                    }
                }
            }
        }
        SCRATCH.with(|cell| cell.replace(scratch));
    }
}

/// Keys `lo..hi` as panels of NR positions, each `[D][NR]` (transposed), zero past `hi`.
#[inline(always)]
fn pack_keys<E: Elem>(h: &AttentionHead, keys: &[E], lo: usize, hi: usize, nr: usize, kt: &mut [f32]) {
    let d = h.d;
    for j in lo..hi {
        let (p, c) = ((j - lo) / nr, (j - lo) % nr);
        let key = &keys[h.row(j)..][..d];
        let panel = &mut kt[p * d * nr..][..d * nr];
        for (kk, e) in key.iter().enumerate() {
            panel[kk * nr + c] = e.to_f32();
        }
    }
    let (last, used) = ((hi - lo) / nr, (hi - lo) % nr);
    if used > 0 {
        for kk in 0..d {
            kt[last * d * nr + kk * nr..][used..nr].fill(0.0);
        }
    }
}

/// Values `lo..hi` as panels of NR of the D columns, each `[span][NR]`, zero past D.
///
/// # Safety
/// The CPU supports `S`; `nr` is a multiple of `LANES`.
#[inline(always)]
unsafe fn pack_values<S: Simd, E: Elem>(
    h: &AttentionHead,
    values: &[E],
    lo: usize,
    hi: usize,
    nr: usize,
    vp: &mut [f32],
) {
    // SAFETY: the contract above: a whole panel row copies `nr` values, in vectors, from a slice
    // `src` at least `nr` long into `dst`, which is `nr` long.
    unsafe {
        let (d, span) = (h.d, hi - lo);
        for j in lo..hi {
            let value = &values[h.row(j)..][..d];
            for c in 0..d.div_ceil(nr) {
                let dst = &mut vp[c * span * nr + (j - lo) * nr..][..nr];
                let src = &value[c * nr..];
                if src.len() >= nr {
                    for v in (0..nr).step_by(S::LANES) {
                        E::load::<S>(src.as_ptr().add(v)).store(dst.as_mut_ptr().add(v));
                    }
                } else {
                    for (k, o) in dst.iter_mut().enumerate() {
                        *o = if k < src.len() { src[k].to_f32() } else { 0.0 };
                    }
                }
            }
        }
    }
}
