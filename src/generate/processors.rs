//! Logits processors, as transformers' `generate()` applies them, in its order: the repetition
//! penalty, the n-gram ban and the eos suppression of `min_new_tokens` (greedy, sampling and beam
//! search), then, when sampling, the warpers temperature, top-k, top-p and min-p. Each works in place on a copy of the model's logits; filtered tokens become `-inf`
//! (transformers' `filter_value`). Scratch buffers are allocated once, in
//! [`LogitsProcessors::new`], never per token.

use super::{DecodeOptions, Sampling, Strategy};

/// transformers' `RepetitionPenaltyLogitsProcessor`: the logit of every token in `seen` (each
/// once) is divided by `penalty` if it is positive (or zero) and multiplied by it if negative.
pub fn repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    for &id in seen {
        let s = &mut logits[id as usize];
        *s = if *s < 0.0 { *s * penalty } else { *s / penalty };
    }
}

/// The tokens a step continues: `before` then `after` (a beam's prompt and its own tokens; one
/// slice may be empty), of which the last `new_tokens` were generated.
#[derive(Clone, Copy, Debug, Default)]
pub struct History<'a> {
    pub before: &'a [u32],
    pub after: &'a [u32],
    pub new_tokens: usize,
}

impl History<'_> {
    fn len(&self) -> usize {
        self.before.len() + self.after.len()
    }

    fn at(&self, i: usize) -> u32 {
        match i.checked_sub(self.before.len()) {
            None => self.before[i],
            Some(j) => self.after[j],
        }
    }
}

/// transformers' `NoRepeatNGramLogitsProcessor`: every token that would complete an n-gram
/// already in `history` (prompt included) becomes `-inf`, i.e. the token after each earlier
/// occurrence of the last `n - 1` tokens. `n == 0` disables it; `n == 1` bans every token seen.
/// A scan of the history per step, no table: O(len × n), nothing next to a forward pass.
pub fn no_repeat_ngram(logits: &mut [f32], n: usize, history: History) {
    let len = history.len();
    if n == 0 || len < n {
        return;
    }
    let tail = len - (n - 1);
    for i in 0..=len - n {
        if (0..n - 1).all(|k| history.at(i + k) == history.at(tail + k)) {
            if let Some(s) = logits.get_mut(history.at(i + n - 1) as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
    }
}

/// `MinNewTokensLengthLogitsProcessor`: while fewer than `min_new` tokens are new, every eos id
/// becomes `-inf`.
pub fn min_new_tokens(logits: &mut [f32], min_new: usize, new_tokens: usize, eos_token_ids: &[u32]) {
    if new_tokens >= min_new {
        return;
    }
    for &id in eos_token_ids {
        if let Some(s) = logits.get_mut(id as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TemperatureLogitsWarper`: every logit divided by `t` (> 0).
pub fn temperature(logits: &mut [f32], t: f32) {
    if t == 1.0 {
        return;
    }
    for s in logits {
        *s /= t;
    }
}

/// `TopKLogitsWarper`: removes every token whose logit is below the k-th largest (ties with the
/// k-th are kept, so a few more than k can stay). `k == 0` disables it. `scratch` is any buffer;
/// with capacity for all the logits it is not reallocated.
pub fn top_k(logits: &mut [f32], k: usize, scratch: &mut Vec<f32>) {
    if k == 0 || k >= logits.len() {
        return;
    }
    scratch.clear();
    scratch.extend_from_slice(logits);
    let (_, kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let kth = *kth;
    for s in logits {
        if *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TopPLogitsWarper`: keeps the most probable tokens, best first, until the probability of
/// those kept before the next one reaches `p` (so at least one token stays). transformers says
/// the same from the other end: with probabilities sorted ascending it removes the tokens whose
/// cumulative sum is at most `1 - p`. Ties are ordered by token id; sums are in f64. `p >= 1`
/// disables it. `order` is scratch, like `top_k`'s.
pub fn top_p(logits: &mut [f32], p: f32, order: &mut Vec<u32>) {
    if p >= 1.0 {
        return;
    }
    order.clear();
    order.extend((0..logits.len() as u32).filter(|&i| logits[i as usize] > f32::NEG_INFINITY));
    if order.is_empty() {
        return;
    }
    // Best first; a strict total order, so a partial selection agrees with a full sort.
    let better = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    // Usually a few hundred tokens reach `p`: sort those first, and the rest only if needed.
    let head = TOP_P_HEAD.min(order.len());
    if head < order.len() {
        order.select_nth_unstable_by(head - 1, better);
    }
    order[..head].sort_unstable_by(better);
    let max = f64::from(logits[order[0] as usize]);
    let weight = |i: u32| (f64::from(logits[i as usize]) - max).exp();
    // Summed in id order, whatever order the selection left.
    let total: f64 = (0..logits.len() as u32).filter(|&i| logits[i as usize] > f32::NEG_INFINITY).map(weight).sum();
    let limit = f64::from(p) * total;
    let mut mass = 0.0;
    let mut keep = None;
    for (j, &i) in order[..head].iter().enumerate() {
        if j > 0 && mass >= limit {
            keep = Some(j);
            break;
        }
        mass += weight(i);
    }
    let keep = keep.unwrap_or_else(|| {
        order[head..].sort_unstable_by(better);
        let mut keep = order.len();
        for (j, &i) in order.iter().enumerate().skip(head) {
            if mass >= limit {
                keep = j;
                break;
            }
            mass += weight(i);
        }
        keep
    });
    for &i in &order[keep..] {
        logits[i as usize] = f32::NEG_INFINITY;
    }
}

/// How many of the best tokens [`top_p`] sorts before it knows whether it needs the others.
const TOP_P_HEAD: usize = 256;

/// `MinPLogitsWarper`: removes tokens less probable than `p` times the most probable one, i.e.
/// with `logit - max < ln p` (computed in f64). The best token always stays.
pub fn min_p(logits: &mut [f32], p: f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let ln_p = f64::from(p).ln();
    for s in logits {
        if (f64::from(*s) - f64::from(max)) < ln_p {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// The distinct tokens of the sequence so far (prompt and generated), for the repetition
/// penalty. Tracks nothing when `enabled` is false.
#[derive(Clone, Debug)]
pub struct SeenTokens {
    flags: Vec<bool>,
    ids: Vec<u32>,
}

impl SeenTokens {
    pub fn new(vocab_size: usize, enabled: bool) -> SeenTokens {
        let n = if enabled { vocab_size } else { 0 };
        SeenTokens { flags: vec![false; n], ids: Vec::with_capacity(n) }
    }

    pub fn clear(&mut self) {
        for &id in &self.ids {
            self.flags[id as usize] = false;
        }
        self.ids.clear();
    }

    pub fn insert(&mut self, id: u32) {
        if let Some(flag) = self.flags.get_mut(id as usize) {
            if !*flag {
                *flag = true;
                self.ids.push(id);
            }
        }
    }

    /// Becomes a copy of `other` (same vocabulary and setting), without allocating.
    pub fn copy_from(&mut self, other: &SeenTokens) {
        self.clear();
        for &id in &other.ids {
            self.insert(id);
        }
    }

    /// Each distinct token once, in order of first appearance.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// The processors of one generation, with their scratch buffers.
#[derive(Clone, Debug)]
pub struct LogitsProcessors {
    penalty: f32,
    no_repeat_ngram_size: usize,
    min_new_tokens: usize,
    eos_token_ids: Vec<u32>,
    sampling: Option<Sampling>,
    values: Vec<f32>,
    order: Vec<u32>,
}

impl LogitsProcessors {
    /// The processors `opts` asks for: the warpers only when its strategy samples (in
    /// transformers they belong to `do_sample`).
    pub fn new(opts: &DecodeOptions, vocab_size: usize) -> LogitsProcessors {
        let sampling = match &opts.strategy {
            Strategy::Sample(s) => Some(s.clone()),
            Strategy::Greedy => None,
        };
        let (values, order) = match &sampling {
            Some(s) => (
                Vec::with_capacity(if s.top_k > 0 { vocab_size } else { 0 }),
                Vec::with_capacity(if s.top_p < 1.0 { vocab_size } else { 0 }),
            ),
            None => (Vec::new(), Vec::new()),
        };
        LogitsProcessors {
            penalty: opts.repetition_penalty,
            no_repeat_ngram_size: opts.no_repeat_ngram_size,
            min_new_tokens: opts.min_new_tokens,
            eos_token_ids: opts.eos_token_ids.clone(),
            sampling,
            values,
            order,
        }
    }

    /// Applies every processor, in transformers' order, to `logits`; `seen` lists the distinct
    /// tokens of the sequence, `history` the sequence itself.
    pub fn apply(&mut self, logits: &mut [f32], seen: &[u32], history: History) {
        repetition_penalty(logits, seen, self.penalty);
        no_repeat_ngram(logits, self.no_repeat_ngram_size, history);
        min_new_tokens(logits, self.min_new_tokens, history.new_tokens, &self.eos_token_ids);
        if let Some(s) = &self.sampling {
            temperature(logits, s.temperature);
            top_k(logits, s.top_k, &mut self.values);
            top_p(logits, s.top_p, &mut self.order);
            if let Some(p) = s.min_p {
                min_p(logits, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEG: f32 = f32::NEG_INFINITY;

    #[test]
    fn penalty_divides_positive_and_multiplies_negative() {
        let mut l = [2.0, -2.0, 0.0, 3.0];
        repetition_penalty(&mut l, &[0, 1, 2], 2.0);
        assert_eq!(l, [1.0, -4.0, 0.0, 3.0]);
    }

    fn banned(n: usize, before: &[u32], after: &[u32]) -> Vec<usize> {
        let mut l = [0.0; 8];
        no_repeat_ngram(&mut l, n, History { before, after, new_tokens: after.len() });
        (0..8).filter(|&i| l[i] == NEG).collect()
    }

    #[test]
    fn no_repeat_ngram_bans_what_followed_the_last_n_minus_1_tokens() {
        // Bigrams: after 1 came 2 and 3, so 1 at the end bans both.
        assert_eq!(banned(2, &[1, 2, 5, 1, 3], &[1]), [2, 3]);
        // Across the prompt and the new tokens alike.
        assert_eq!(banned(2, &[1], &[2, 5, 1]), [2]);
        // Trigrams: (4, 5) was followed by 6; (5, 4) never occurred before.
        assert_eq!(banned(3, &[4, 5, 6, 5], &[4, 5]), [6]);
        assert_eq!(banned(3, &[4, 5, 6], &[5, 4]), Vec::<usize>::new());
        // n = 1 bans everything seen; n = 0 nothing; too short a history nothing.
        assert_eq!(banned(1, &[7, 1], &[1]), [1, 7]);
        assert_eq!(banned(0, &[1, 1], &[1]), Vec::<usize>::new());
        assert_eq!(banned(4, &[1, 1], &[1]), Vec::<usize>::new());
    }

    #[test]
    fn min_new_tokens_holds_eos_back_until_then() {
        let mut l = [1.0, 2.0, 3.0];
        min_new_tokens(&mut l, 2, 1, &[2, 0]);
        assert_eq!(l, [NEG, 2.0, NEG]);
        let mut l = [1.0, 2.0, 3.0];
        min_new_tokens(&mut l, 2, 2, &[2]);
        assert_eq!(l, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth() {
        let mut l = [1.0, 3.0, 2.0, 2.0, 0.5];
        top_k(&mut l, 2, &mut Vec::new());
        assert_eq!(l, [NEG, 3.0, 2.0, 2.0, NEG]);
        let mut l = [1.0, 3.0];
        top_k(&mut l, 0, &mut Vec::new());
        assert_eq!(l, [1.0, 3.0]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 (ids 2, 0, 1, 3).
        let ln = |p: f64| p.ln() as f32;
        let base = [ln(0.25), ln(0.125), ln(0.5), ln(0.125)];
        let mut l = base;
        top_p(&mut l, 0.6, &mut Vec::new());
        assert_eq!(l, [base[0], NEG, base[2], NEG]);
        let mut l = base;
        top_p(&mut l, 0.5, &mut Vec::new());
        assert_eq!(l, [NEG, NEG, base[2], NEG]);
        let mut l = base;
        top_p(&mut l, 1e-9, &mut Vec::new());
        assert_eq!(l, [NEG, NEG, base[2], NEG]);
    }

    #[test]
    fn top_p_over_many_tokens_equals_a_full_sort() {
        // More tokens than the sorted head, with ties, for p that end inside and past it.
        let n = 3000;
        let base: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0) * 6.0 - 3.0).collect();
        for p in [0.05, 0.3, 0.9, 0.999, 0.9999999] {
            let mut fast = base.clone();
            top_p(&mut fast, p, &mut Vec::new());
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| base[b].total_cmp(&base[a]).then(a.cmp(&b)));
            let max = f64::from(base[order[0]]);
            let w: Vec<f64> = order.iter().map(|&i| (f64::from(base[i]) - max).exp()).collect();
            let total: f64 = w.iter().sum();
            let mut mass = 0.0;
            let mut want = vec![NEG; n];
            for (j, &i) in order.iter().enumerate() {
                if j > 0 && mass >= f64::from(p) * total {
                    break;
                }
                mass += w[j];
                want[i] = base[i];
            }
            assert_eq!(fast, want, "p {p}");
        }
    }

    #[test]
    fn min_p_is_relative_to_the_best() {
        let ln = |p: f64| p.ln() as f32;
        let mut l = [ln(0.5), ln(0.3), ln(0.2)];
        min_p(&mut l, 0.5);
        assert_eq!(l[2], NEG);
        assert!(l[0].is_finite() && l[1].is_finite());
        let mut l = [1.0, 1.0, 0.0];
        min_p(&mut l, 1.0);
        assert_eq!(l, [1.0, 1.0, NEG]);
    }

    #[test]
    fn seen_tokens_are_distinct_and_resettable() {
        let mut s = SeenTokens::new(10, true);
        for id in [3, 1, 3, 9, 1] {
            s.insert(id);
        }
        assert_eq!(s.ids(), [3, 1, 9]);
        s.clear();
        s.insert(1);
        assert_eq!(s.ids(), [1]);
        let mut off = SeenTokens::new(10, false);
        off.insert(1);
        assert!(off.ids().is_empty());
    }
}
