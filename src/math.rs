//! Reductions over one row of logits that scoring, sampling and beam search share: argmax,
//! log-sum-exp, negative log-likelihood, the log-softmax variants and the KL divergence.
//!
//! A leaf module: it depends on nothing else in the crate. Each function is named by its
//! numerics (where the sum runs in f64, where values are rounded back to f32), because callers
//! reproduce a particular torch expression and differ in the last bit otherwise.

/// Index of the first largest value (as `torch.argmax`: the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// `ln(sum(exp(row)))` in f64, shifted by the row's maximum (stable for large logits). A row of
/// `-inf` (or one with a NaN maximum) returns that maximum.
pub fn log_sum_exp_f64(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY || max.is_nan() {
        return max;
    }
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln()
}

/// Negative log-likelihood, in nats, of `target` under the softmax of `logits`:
/// `log_sum_exp_f64(logits) - logits[target]`, in f64.
pub fn nll_f64(logits: &[f32], target: usize) -> f64 {
    log_sum_exp_f64(logits) - logits[target] as f64
}

/// Log-softmax of `logits` computed in f64 (`x - log_sum_exp_f64`), rounded to f32 into `out`.
pub fn log_softmax_f64_into(logits: &[f32], out: &mut [f32]) {
    let lse = log_sum_exp_f64(logits);
    for (o, &v) in out.iter_mut().zip(logits) {
        *o = (v as f64 - lse) as f32;
    }
}

/// `log_softmax(logits)[id]` in f64 as `x - max - ln(sum(exp(x - max)))`: the log-probability
/// generation reports for a chosen token. `-inf` when every logit is `-inf`.
pub fn log_softmax_at_f64(logits: &[f32], id: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let max = f64::from(max);
    let sum: f64 = logits.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    f64::from(logits[id as usize]) - max - sum.ln()
}

/// In-place log-softmax in torch's order of operations on f32 rows, `(x - max) - ln(sum)`, with
/// only the sum of exponentials in f64: what beam search scores its candidates with.
pub fn log_softmax_torch_f32(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| f64::from(x - max).exp()).sum();
    let ln = sum.ln() as f32;
    row.iter_mut().for_each(|x| *x = (*x - max) - ln);
}

/// Softmax in f64 (for printing probabilities: no f32 rounding of small ones).
pub fn softmax_f64(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// `KL(base ‖ this) = Σ p_base (log p_base - log p_this)` in nats, from two rows of
/// log-probabilities, in f64; terms where `p_base` underflows to 0 count 0.
pub fn kl_divergence_f64(base: &[f32], this: &[f32]) -> f64 {
    base.iter()
        .zip(this)
        .map(|(&b, &t)| {
            let p = (b as f64).exp();
            if p == 0.0 {
                0.0
            } else {
                p * (b as f64 - t as f64)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[-5.0]), 0);
    }

    #[test]
    fn log_sum_exp_is_stable_and_kl_of_equal_rows_is_zero() {
        let logits = [1000.0f32, 1000.0, -1000.0];
        assert!((log_sum_exp_f64(&logits) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        let mut lp = [0.0f32; 3];
        log_softmax_f64_into(&[0.5, -1.0, 2.0], &mut lp);
        assert_eq!(kl_divergence_f64(&lp, &lp), 0.0);
        let mut other = [0.0f32; 3];
        log_softmax_f64_into(&[0.0, 0.0, 0.0], &mut other);
        assert!(kl_divergence_f64(&lp, &other) > 0.0);
    }

    #[test]
    fn the_log_softmax_variants_agree_to_rounding() {
        let logits = [0.5f32, -1.0, 2.0, 0.0];
        let mut rounded = [0.0f32; 4];
        log_softmax_f64_into(&logits, &mut rounded);
        let mut torch = logits;
        log_softmax_torch_f32(&mut torch);
        for i in 0..4 {
            let at = log_softmax_at_f64(&logits, i as u32);
            assert!((at + nll_f64(&logits, i)).abs() < 1e-12);
            assert!((f64::from(rounded[i]) - at).abs() < 1e-6);
            assert!((f64::from(torch[i]) - at).abs() < 1e-6);
        }
        assert_eq!(log_softmax_at_f64(&[f32::NEG_INFINITY; 3], 1), f64::NEG_INFINITY);
        assert!((softmax_f64(&logits).iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
