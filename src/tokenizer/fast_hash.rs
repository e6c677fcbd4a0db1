//! The hasher of the tokenizer's tables (merge pairs, whole-token pieces, the piece cache): a
//! folded 64×64→128-bit multiply per 8 bytes, several times faster than std's SipHash on these
//! short keys. Seeded once per process from std's `RandomState`, so that text cannot be made to
//! collide on purpose without knowing the seed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// `BuildHasher` for the tokenizer's `HashMap`s.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seeded {
    seed: u64,
}

impl Default for Seeded {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| RandomState::new().build_hasher().finish() | 1);
        Seeded { seed }
    }
}

impl BuildHasher for Seeded {
    type Hasher = FoldHasher;

    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher { h: self.seed }
    }
}

pub(crate) struct FoldHasher {
    h: u64,
}

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.h;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = fold_mul(h ^ u64::from_le_bytes(w), K);
        }
        let r = chunks.remainder();
        let n = r.len();
        if n > 0 {
            // Overlapping loads cover every byte; slices hash their length first (`Hash for
            // [u8]`), so equal loads of different lengths still differ.
            let v = if n >= 4 {
                let lo = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
                let hi = u32::from_le_bytes([r[n - 4], r[n - 3], r[n - 2], r[n - 1]]);
                u64::from(lo) | (u64::from(hi) << 32)
            } else {
                u64::from(r[0]) | (u64::from(r[n / 2]) << 8) | (u64::from(r[n - 1]) << 16)
            };
            h = fold_mul(h ^ v, K);
        }
        self.h = h;
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.h = fold_mul(self.h ^ x, K);
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn short_slices_do_not_collide() {
        // Every slice of length 0..=3 over a small alphabet, and lengths 4..=11 varied in each
        // position: no two hash alike (the overlapping loads must cover every byte).
        let s = Seeded::default();
        let mut seen = HashSet::new();
        let alphabet = [0u8, 1, b'a', 0xFF];
        let mut count = 0;
        for len in 0..=3u32 {
            for code in 0..4usize.pow(len) {
                let v: Vec<u8> = (0..len).map(|i| alphabet[code / 4usize.pow(i) % 4]).collect();
                seen.insert(s.hash_one(v.as_slice()));
                count += 1;
            }
        }
        for len in 4..=11 {
            for pos in 0..len {
                for b in [1u8, 0x80] {
                    let mut v = vec![b'x'; len];
                    v[pos] = b;
                    seen.insert(s.hash_one(v.as_slice()));
                    count += 1;
                }
            }
        }
        assert_eq!(seen.len(), count);
    }
}
