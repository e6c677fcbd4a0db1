//! The random part of sampling: our own small PRNG and the draw from processed logits.
//!
//! Everything here is sequential and in a fixed order, so a seed gives the same tokens on every
//! machine and at every thread count (given the same logits): the generator is PCG32 (O'Neill's
//! PCG-XSH-RR 64/32, written from the published algorithm), the uniform draw takes 53 random
//! bits, and the weights are summed in f64 in token-id order.

/// PCG-XSH-RR with 64-bit state and 32-bit output. `stream` picks one of 2^63 independent
/// sequences for the same seed (the K sequences of `num_return_sequences` use streams 0..K).
#[derive(Clone, Debug)]
pub struct Pcg32 {
    state: u64,
    inc: u64,
}

const PCG_MULT: u64 = 6364136223846793005;

impl Pcg32 {
    /// Seeds as the reference `pcg32_srandom_r(rng, seed, stream)` does.
    pub fn new(seed: u64, stream: u64) -> Pcg32 {
        let mut rng = Pcg32 { state: 0, inc: (stream << 1) | 1 };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(PCG_MULT).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    pub fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        (hi << 32) | u64::from(self.next_u32())
    }

    /// Uniform in [0, 1): the top 53 bits of `next_u64`, exactly representable.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Draws a token from `softmax(logits)`; tokens at `-inf` (filtered out) are never chosen.
///
/// Weights are `exp(logit - max)` in f64, summed in id order; the draw is the first token whose
/// running sum passes `u * total`. Returns `None` when no logit is finite.
pub fn sample(logits: &[f32], rng: &mut Pcg32) -> Option<u32> {
    let max = logits.iter().copied().filter(|v| v.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return None;
    }
    let max = f64::from(max);
    let weight = |v: f32| if v.is_finite() { (f64::from(v) - max).exp() } else { 0.0 };
    let total: f64 = logits.iter().map(|&v| weight(v)).sum();
    let target = rng.next_f64() * total;
    let mut cum = 0.0;
    let mut last = None;
    for (i, &v) in logits.iter().enumerate() {
        let w = weight(v);
        if w > 0.0 {
            cum += w;
            last = Some(i as u32);
            if target < cum {
                return last;
            }
        }
    }
    // Only reachable through rounding of the sum: the last token with weight.
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcg32_matches_the_reference_demo() {
        // pcg32-demo from pcg-c-basic: pcg32_srandom_r(&rng, 42u, 54u), first six outputs.
        let mut rng = Pcg32::new(42, 54);
        let got: Vec<u32> = (0..6).map(|_| rng.next_u32()).collect();
        assert_eq!(got, [0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e]);
    }

    #[test]
    fn uniform_is_in_range() {
        let mut rng = Pcg32::new(7, 0);
        for _ in 0..10_000 {
            let u = rng.next_f64();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn filtered_tokens_are_never_drawn() {
        let logits = [f32::NEG_INFINITY, 0.5, f32::NEG_INFINITY, 0.1];
        for seed in 0..200 {
            let id = sample(&logits, &mut Pcg32::new(seed, 0)).unwrap();
            assert!(id == 1 || id == 3);
        }
        assert_eq!(sample(&[f32::NEG_INFINITY; 3], &mut Pcg32::new(0, 0)), None);
    }
}
