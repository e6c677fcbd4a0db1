//! Token bytes: one arena for decoding (id → bytes) and an index for the whole-token shortcut
//! of encoding (bytes → id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use super::fast_hash::Seeded;

const NO_SPAN: u32 = u32::MAX;

/// Bytes copied per token when decoding: a token this long or shorter is copied as one
/// fixed-size block (the arena and the output have that much slack), longer ones by length.
const COPY: usize = 16;

/// id → the bytes it decodes to, all in one arena (decoding copies straight out of it).
#[derive(Clone, Debug)]
pub(crate) struct TokenBytes {
    /// The tokens' bytes, then `COPY` zero bytes (so a block copy never runs off the end).
    arena: Vec<u8>,
    /// (start, len) in `arena`; start `NO_SPAN` for ids without a token.
    spans: Vec<(u32, u32)>,
}

impl Default for TokenBytes {
    fn default() -> Self {
        TokenBytes { arena: vec![0; COPY], spans: Vec::new() }
    }
}

impl TokenBytes {
    /// Sets the bytes of `id` (a new copy at the arena's end; a replaced one stays unused).
    pub(crate) fn set(&mut self, id: u32, bytes: &[u8]) {
        let idx = id as usize;
        if idx >= self.spans.len() {
            self.spans.resize(idx + 1, (NO_SPAN, 0));
        }
        let start = self.arena.len() - COPY;
        self.arena.truncate(start);
        self.arena.extend_from_slice(bytes);
        self.arena.resize(self.arena.len() + COPY, 0);
        self.spans[idx] = (start as u32, bytes.len() as u32);
    }

    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&[u8]> {
        let &(start, len) = self.spans.get(id as usize)?;
        if start == NO_SPAN {
            return None;
        }
        Some(&self.arena[start as usize..(start + len) as usize])
    }

    /// The bytes of `ids` one after the other; `Err(id)` names the first id without a token.
    pub(crate) fn concat(&self, ids: &[u32]) -> std::result::Result<Vec<u8>, u32> {
        let mut total = 0;
        for &id in ids {
            total += self.get(id).ok_or(id)?.len();
        }
        let mut out = vec![0; total + COPY];
        let mut pos = 0;
        for &id in ids {
            let (start, len) = (self.spans[id as usize].0 as usize, self.spans[id as usize].1 as usize);
            if len <= COPY {
                out[pos..pos + COPY].copy_from_slice(&self.arena[start..start + COPY]);
            } else {
                out[pos..pos + len].copy_from_slice(&self.arena[start..start + len]);
            }
            pos += len;
        }
        out.truncate(total);
        Ok(out)
    }
}

const UNKNOWN: u8 = 0;
const WHOLE: u8 = 1;
const NOT_WHOLE: u8 = 2;

/// Tokens of up to this many bytes (nearly all) keep their bytes inline in the index.
const SHORT: usize = 15;

/// Up to 15 bytes packed into two words: bytes 0..8 little-endian in the first, bytes 8..15 in
/// the low 7 bytes of the second, and the length in its top byte. Packing reads the slice with
/// a few overlapping loads, and comparing two keys is two integer compares (no `memcmp`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ShortKey(u64, u64);

impl ShortKey {
    #[inline]
    fn new(b: &[u8]) -> Self {
        let n = b.len();
        debug_assert!(n <= SHORT);
        let word =
            |i: usize| u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        let half = |i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
        let (lo, hi) = if n >= 8 {
            // The last 8 bytes, shifted so that bytes 8..n land at the bottom.
            (word(0), if n == 8 { 0 } else { word(n - 8) >> ((16 - n) * 8) })
        } else if n >= 4 {
            (half(0) | if n == 4 { 0 } else { (half(n - 4) >> ((8 - n) * 8)) << 32 }, 0)
        } else {
            (b.iter().enumerate().fold(0, |w, (i, &x)| w | u64::from(x) << (8 * i)), 0)
        };
        ShortKey(lo, hi | (n as u64) << 56)
    }
}

/// An indexed token: its id and whether its bytes merge back to it (UNKNOWN / WHOLE /
/// NOT_WHOLE). Any thread may set the flag; all compute the same value.
pub(crate) struct Entry {
    pub(crate) id: u32,
    whole: AtomicU8,
}

impl Entry {
    /// `Some(true)` when the token's bytes are known to merge back to it, `Some(false)` when
    /// known not to, `None` before it is known.
    #[inline]
    pub(crate) fn is_whole(&self) -> Option<bool> {
        match self.whole.load(Ordering::Relaxed) {
            WHOLE => Some(true),
            NOT_WHOLE => Some(false),
            _ => None,
        }
    }

    /// Records what BPE made of the token's bytes.
    pub(crate) fn set_whole(&self, whole: bool) {
        self.whole.store(if whole { WHOLE } else { NOT_WHOLE }, Ordering::Relaxed);
    }
}

impl Clone for Entry {
    fn clone(&self) -> Self {
        Entry { id: self.id, whole: AtomicU8::new(self.whole.load(Ordering::Relaxed)) }
    }
}

/// Vocabulary tokens of two bytes or more by their bytes, each with a flag that says whether
/// BPE merges those bytes, taken as one piece, back into that one token ("whole"). For GPT-2's
/// files every merged token is whole, but other merge lists need not be; the flag is found the
/// first time the token's bytes are encoded as a piece (by running the merges, which encoding
/// that piece needs anyway), so loading stays cheap and the shortcut is never taken unproven.
#[derive(Clone, Default)]
pub(crate) struct VocabIndex {
    short: HashMap<ShortKey, Entry, Seeded>,
    long: HashMap<Box<[u8]>, Entry, Seeded>,
    /// The longest indexed token's length (longer pieces are not hashed at all).
    max_len: usize,
}

impl VocabIndex {
    /// Indexes `ids` (those with two bytes or more in `bytes`); of several tokens with the same
    /// bytes the first is kept.
    pub(crate) fn new(bytes: &TokenBytes, ids: impl Iterator<Item = u32>) -> Self {
        let mut index = VocabIndex::default();
        for id in ids {
            let Some(b) = bytes.get(id).filter(|b| b.len() >= 2) else { continue };
            let entry = Entry { id, whole: AtomicU8::new(UNKNOWN) };
            if b.len() <= SHORT {
                index.short.entry(ShortKey::new(b)).or_insert(entry);
            } else {
                index.long.entry(b.into()).or_insert(entry);
            }
            index.max_len = index.max_len.max(b.len());
        }
        index
    }

    /// The token whose bytes are `piece`, if indexed.
    #[inline]
    pub(crate) fn find(&self, piece: &[u8]) -> Option<&Entry> {
        if piece.len() <= SHORT {
            self.short.get(&ShortKey::new(piece))
        } else if piece.len() <= self.max_len {
            self.long.get(piece)
        } else {
            None
        }
    }
}

impl std::fmt::Debug for VocabIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VocabIndex").field("tokens", &(self.short.len() + self.long.len())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_the_bytes() {
        // Every length, with distinct bytes in every position (0 included): packing is
        // injective and puts byte i where a plain little-endian copy would.
        for n in 0..=SHORT {
            let b: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut want = [0u8; 16];
            want[..n].copy_from_slice(&b);
            want[15] = n as u8;
            let k = ShortKey::new(&b);
            let mut got = [0u8; 16];
            got[..8].copy_from_slice(&k.0.to_le_bytes());
            got[8..].copy_from_slice(&k.1.to_le_bytes());
            assert_eq!(got, want, "length {n}");
        }
    }
}
