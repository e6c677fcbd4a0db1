//! Byte-pair merging of one pre-tokenizer piece, exactly as the Python `bpe()` of GPT-2's
//! encoder: repeatedly take the adjacent pair with the lowest merge rank and merge *all* its
//! non-overlapping occurrences, left to right, in one step.
//!
//! Implementation: a doubly linked list of symbols plus a queue of candidate pairs by (rank,
//! position). Each step takes all candidates of the lowest rank and merges them in position
//! order (one Python step); the pairs the step creates are queued only after it, so a merged
//! token never takes part in the step that made it. Stale candidates (the pair at that position
//! changed) are detected by looking the pair up again. Nothing rescans the piece: every merge
//! costs O(1) plus its queue operations.
//!
//! Two queues, with the same steps: short pieces use a binary heap of (rank, position), O(n log
//! n); long ones (over [`LONG`] bytes) a bucket of positions per rank plus a heap of the ranks
//! that have one, so that a step costs O(its candidates) and a long run of one letter or digit
//! (a few distinct ranks, each with a huge bucket) is merged in linear time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::fast_hash::Seeded;

/// Symbol id for a byte whose token is missing from the vocabulary; never merges.
pub(crate) const NO_TOKEN: u32 = u32::MAX;

const NONE: u32 = u32::MAX;
/// `prev` of a symbol merged into its left neighbour.
const DEAD: u32 = u32::MAX - 1;

/// Pieces longer than this use the bucket queue.
pub(crate) const LONG: usize = 256;

/// Merge table: (left id, right id) → (rank, merged id).
#[derive(Debug, Default, Clone)]
pub(crate) struct Merges {
    map: HashMap<u64, (u32, u32), Seeded>,
    /// Largest rank + 1.
    ranks: usize,
}

fn key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

impl Merges {
    /// Adds a merge; a pair that is already present gets the new rank (as Python's dict would).
    pub(crate) fn insert(&mut self, left: u32, right: u32, rank: u32, merged: u32) {
        self.map.insert(key(left, right), (rank, merged));
        self.ranks = self.ranks.max(rank as usize + 1);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[inline]
    fn get(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        if left == NO_TOKEN || right == NO_TOKEN {
            return None;
        }
        self.map.get(&key(left, right)).copied()
    }
}

/// A symbol of the linked list (12 bytes: a 1 MB piece needs 12 MB of them).
#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    /// Index of the symbol on the left, `NONE` for the first, `DEAD` once merged away.
    prev: u32,
    next: u32,
}

/// Candidate pairs, taken one step (all of the lowest rank) at a time.
trait Queue {
    fn push(&mut self, rank: u32, pos: u32);
    /// Fills `step` with the positions of the lowest rank, in increasing order; returns the rank.
    fn pop_step(&mut self, step: &mut Vec<u32>) -> Option<u32>;
}

/// Binary heap of rank << 32 | position: pops come out in rank, then position order.
#[derive(Default)]
struct HeapQueue(BinaryHeap<Reverse<u64>>);

impl Queue for HeapQueue {
    #[inline]
    fn push(&mut self, rank: u32, pos: u32) {
        self.0.push(Reverse(u64::from(rank) << 32 | u64::from(pos)));
    }

    fn pop_step(&mut self, step: &mut Vec<u32>) -> Option<u32> {
        let Reverse(first) = self.0.pop()?;
        let rank = (first >> 32) as u32;
        step.clear();
        step.push(first as u32);
        while let Some(&Reverse(next)) = self.0.peek() {
            if (next >> 32) as u32 != rank {
                break;
            }
            self.0.pop();
            step.push(next as u32);
        }
        Some(rank)
    }
}

/// One bucket of positions per rank, and a heap of the ranks that have a bucket (each once).
#[derive(Default)]
struct BucketQueue {
    /// rank → 1 + index in `buckets`, 0 for none; as long as the merge table has ranks.
    slot_of_rank: Vec<u32>,
    buckets: Vec<Vec<u32>>,
    free: Vec<u32>,
    ranks: BinaryHeap<Reverse<u32>>,
}

impl BucketQueue {
    fn reset(&mut self, ranks: usize) {
        // Left clean by the previous piece (every bucket is taken before the loop ends).
        debug_assert!(self.ranks.is_empty());
        if self.slot_of_rank.len() < ranks {
            self.slot_of_rank.resize(ranks, 0);
        }
    }
}

impl Queue for BucketQueue {
    #[inline]
    fn push(&mut self, rank: u32, pos: u32) {
        let slot = &mut self.slot_of_rank[rank as usize];
        if *slot == 0 {
            let b = self.free.pop().unwrap_or_else(|| {
                self.buckets.push(Vec::new());
                self.buckets.len() as u32 - 1
            });
            *slot = b + 1;
            self.ranks.push(Reverse(rank));
        }
        self.buckets[*slot as usize - 1].push(pos);
    }

    fn pop_step(&mut self, step: &mut Vec<u32>) -> Option<u32> {
        let Reverse(rank) = self.ranks.pop()?;
        let b = std::mem::take(&mut self.slot_of_rank[rank as usize]) - 1;
        // Swap the bucket out whole; it comes back empty as `step`'s old buffer.
        step.clear();
        std::mem::swap(step, &mut self.buckets[b as usize]);
        self.free.push(b);
        // Positions queued in different steps may be out of order.
        if !step.is_sorted() {
            step.sort_unstable();
        }
        Some(rank)
    }
}

/// Reusable buffers for [`bpe`].
#[derive(Default)]
pub(crate) struct Scratch {
    syms: Vec<Sym>,
    heap: HeapQueue,
    buckets: BucketQueue,
    step: Vec<u32>,
    merged: Vec<u32>,
}

/// Merges `ids` (the initial one-byte symbols) in place.
pub(crate) fn bpe(merges: &Merges, ids: &mut Vec<u32>, scratch: &mut Scratch) {
    let bucketed = ids.len() > LONG;
    bpe_with(merges, ids, scratch, bucketed);
}

fn bpe_with(merges: &Merges, ids: &mut Vec<u32>, scratch: &mut Scratch, bucketed: bool) {
    let n = ids.len();
    if n < 2 {
        return;
    }
    if n == 2 {
        if let Some((_, m)) = merges.get(ids[0], ids[1]) {
            ids.truncate(1);
            ids[0] = m;
        }
        return;
    }
    let Scratch { syms, heap, buckets, step, merged } = scratch;
    if bucketed {
        buckets.reset(merges.ranks);
        merge_loop(merges, ids, syms, buckets, step, merged);
    } else {
        heap.0.clear();
        merge_loop(merges, ids, syms, heap, step, merged);
    }
}

fn merge_loop<Q: Queue>(
    merges: &Merges,
    ids: &mut Vec<u32>,
    syms: &mut Vec<Sym>,
    queue: &mut Q,
    step: &mut Vec<u32>,
    merged: &mut Vec<u32>,
) {
    let n = ids.len();
    syms.clear();
    syms.extend(ids.iter().enumerate().map(|(i, &id)| Sym {
        id,
        prev: if i == 0 { NONE } else { i as u32 - 1 },
        next: if i + 1 == n { NONE } else { i as u32 + 1 },
    }));
    for i in 0..n - 1 {
        if let Some((rank, _)) = merges.get(ids[i], ids[i + 1]) {
            queue.push(rank, i as u32);
        }
    }
    while let Some(rank) = queue.pop_step(step) {
        merged.clear();
        for &pos in step.iter() {
            let s = syms[pos as usize];
            if s.prev == DEAD || s.next == NONE {
                continue;
            }
            let right = syms[s.next as usize];
            match merges.get(s.id, right.id) {
                Some((r, new_id)) if r == rank => {
                    syms[pos as usize].id = new_id;
                    syms[pos as usize].next = right.next;
                    if right.next != NONE {
                        syms[right.next as usize].prev = pos;
                    }
                    syms[s.next as usize].prev = DEAD;
                    merged.push(pos);
                }
                _ => {}
            }
        }
        for &pos in merged.iter() {
            let s = syms[pos as usize];
            if s.prev != NONE {
                if let Some((r, _)) = merges.get(syms[s.prev as usize].id, s.id) {
                    queue.push(r, s.prev);
                }
            }
            if s.next != NONE {
                if let Some((r, _)) = merges.get(s.id, syms[s.next as usize].id) {
                    queue.push(r, pos);
                }
            }
        }
    }
    ids.clear();
    let mut i = 0u32;
    while i != NONE {
        let s = syms[i as usize];
        ids.push(s.id);
        i = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Literal transliteration of the Python `bpe()` loop, as the reference.
    fn reference(merges: &Merges, ids: &[u32]) -> Vec<u32> {
        let mut word = ids.to_vec();
        loop {
            if word.len() < 2 {
                return word;
            }
            let best = word.windows(2).filter_map(|w| merges.get(w[0], w[1])).min_by_key(|&(r, _)| r);
            let Some((rank, new_id)) = best else {
                return word;
            };
            let mut out = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && merges.get(word[i], word[i + 1]).map(|m| m.0) == Some(rank) {
                    out.push(new_id);
                    i += 2;
                } else {
                    out.push(word[i]);
                    i += 1;
                }
            }
            word = out;
        }
    }

    /// Tiny xorshift generator so the test needs no extra crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn matches_reference_on_random_tables() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut scratch = Scratch::default();
        for _ in 0..300 {
            // Alphabet 0..4, merged ids from 100; ranks in random order (including "bad" tables
            // where a merge ranks below the merge that creates its input).
            let mut merges = Merges::default();
            let mut tokens: Vec<u32> = (0..4).collect();
            let n_merges = 1 + rng.below(12) as u32;
            let mut ranks: Vec<u32> = (0..n_merges).collect();
            for i in (1..ranks.len()).rev() {
                ranks.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for (k, &rank) in ranks.iter().enumerate() {
                let a = tokens[rng.below(tokens.len() as u64) as usize];
                let b = tokens[rng.below(tokens.len() as u64) as usize];
                // A pair already present is sometimes given a new rank (a repeated merges.txt line).
                if merges.get(a, b).is_some() && rng.below(2) == 0 {
                    continue;
                }
                let new_id = 100 + k as u32;
                merges.insert(a, b, rank, new_id);
                tokens.push(new_id);
            }
            for _ in 0..20 {
                // Both queues on short words; the long one's default use (> LONG) too.
                let len = if rng.below(10) == 0 { LONG + rng.below(300) as usize } else { rng.below(40) as usize };
                let word: Vec<u32> = (0..len).map(|_| rng.below(4) as u32).collect();
                let want = reference(&merges, &word);
                for bucketed in [false, true] {
                    let mut got = word.clone();
                    bpe_with(&merges, &mut got, &mut scratch, bucketed);
                    assert_eq!(got, want, "word {word:?}, bucketed {bucketed}");
                }
                let mut got = word.clone();
                bpe(&merges, &mut got, &mut scratch);
                assert_eq!(got, want, "word {word:?}");
            }
        }
    }

    #[test]
    fn long_uniform_piece() {
        // "a a" → A (rank 0), "A A" → B (rank 1).
        let mut merges = Merges::default();
        merges.insert(0, 0, 0, 1);
        merges.insert(1, 1, 1, 2);
        for bucketed in [false, true] {
            let mut ids = vec![0u32; 200_001];
            bpe_with(&merges, &mut ids, &mut Scratch::default(), bucketed);
            assert_eq!(ids.len(), 50_001);
            assert!(ids[..50_000].iter().all(|&x| x == 2));
            assert_eq!(ids[50_000], 0);
        }
    }
}
