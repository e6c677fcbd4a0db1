//! What q4_k and q5_k share: eight sub-blocks of 32, each with a 6-bit scale and a 6-bit min
//! packed into 12 bytes, both relative to the block's f16 `d` and `dmin`; and the search for a
//! sub-block's scale and min.

/// Sub-blocks per 256-weight block.
pub(super) const SUB_BLOCKS: usize = 8;

/// Sub-block `j`'s 6-bit (scale, min) from the 12 packed bytes: bytes 0–3 hold the low six bits
/// of scales 0–3 (their top two bits: the high bits of scales 4–7), bytes 4–7 those of mins 0–3
/// (and of mins 4–7), bytes 8–11 the low nibbles of scales 4–7 and, above, of mins 4–7.
pub(crate) fn scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Packs eight 6-bit scales and mins as [`scale_min`] reads them.
pub(super) fn pack_scales(scales: &[u8; SUB_BLOCKS], mins: &[u8; SUB_BLOCKS], out: &mut [u8]) {
    out[..12].fill(0);
    for j in 0..SUB_BLOCKS {
        let (sc, m) = (scales[j], mins[j]);
        if j < 4 {
            out[j] |= sc;
            out[j + 4] |= m;
        } else {
            out[j + 4] = (sc & 0xF) | ((m & 0xF) << 4);
            out[j - 4] |= (sc >> 4) << 6;
            out[j] |= (m >> 4) << 6;
        }
    }
}

/// The scale and min of one sub-block: `x ≈ scale · q − min` with `q` in `0..=nmax`, `min ≥ 0`,
/// minimising `Σ w·(x − value)²`. As ggml's reference (`make_qkx2_quants`): 21 trial scales
/// around `nmax / (max − min(0, lo))`, each giving the q's whose least-squares scale and min are
/// then scored; the best is kept.
pub(super) fn fit_scale_min(x: &[f32], w: &[f32], nmax: u8) -> (f32, f32) {
    assert!(x.len() <= 32 && w.len() == x.len(), "fit_scale_min: a sub-block of at most 32");
    let lo = x.iter().copied().fold(f32::INFINITY, f32::min).min(0.0);
    let hi = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // A constant sub-block (hi == lo), or one holding NaN: every q is 0 and the min carries it.
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return (0.0, -lo);
    }
    let n = f32::from(nmax);
    // The codes of the current trial, kept for its error: each is computed once per trial.
    let mut ls = [0.0f32; 32];
    let ls = &mut ls[..x.len()];
    let quantize = |iscale: f32, ls: &mut [f32]| {
        for (l, &v) in ls.iter_mut().zip(x) {
            *l = (iscale * (v - lo)).round_ties_even().clamp(0.0, n);
        }
    };
    let error = |scale: f32, min: f32, ls: &[f32]| -> f32 {
        x.iter().zip(w).zip(ls.iter()).map(|((&v, &wi), &l)| wi * (scale * l + min - v).powi(2)).sum()
    };
    // Start: the plain range.
    let mut best = (1.0 / (n / (hi - lo)), lo);
    quantize(n / (hi - lo), ls);
    let mut best_err = error(best.0, best.1, ls);
    for step in 0..=20 {
        let iscale = (-1.0 + 0.1 * step as f32 + n) / (hi - lo);
        quantize(iscale, ls);
        let (mut sw, mut sx, mut sl, mut sl2, mut sxl) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for ((&v, &wi), &l) in x.iter().zip(w).zip(ls.iter()) {
            sw += wi;
            sx += wi * v;
            sl += wi * l;
            sl2 += wi * l * l;
            sxl += wi * l * v;
        }
        let det = sw * sl2 - sl * sl;
        if det <= 0.0 {
            continue;
        }
        let mut scale = (sw * sxl - sx * sl) / det;
        let mut min = (sl2 * sx - sl * sxl) / det;
        if min > 0.0 {
            min = 0.0;
            scale = sxl / sl2;
        }
        let err = error(scale, min, ls);
        if err < best_err {
            best_err = err;
            best = (scale, min);
        }
    }
    (best.0.max(0.0), -best.1)
}

/// The 6-bit codes of `values` (all ≥ 0) against their largest, and the f16-rounded step `d`
/// they multiply: `value ≈ d · code`.
pub(super) fn six_bit_codes(values: &[f32; SUB_BLOCKS]) -> ([u8; SUB_BLOCKS], half::f16) {
    let max = values.iter().copied().fold(0.0f32, f32::max);
    let inv = if max > 0.0 { 63.0 / max } else { 0.0 };
    let codes = values.map(|v| (inv * v).round_ties_even().clamp(0.0, 63.0) as u8);
    (codes, half::f16::from_f32(max / 63.0))
}

/// ggml's importance weights for a sub-block of a 256-weight block: `rms(block) + |x|`.
pub(super) fn importance(block: &[f32], sub: &[f32], out: &mut [f32]) {
    let rms = (block.iter().map(|v| v * v).sum::<f32>() / block.len() as f32).sqrt();
    for (o, v) in out.iter_mut().zip(sub) {
        *o = rms + v.abs();
    }
}
