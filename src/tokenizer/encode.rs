//! The encoding hot path: text → pieces → ids, sequential and parallel.
//!
//! Each pre-tokenizer piece gets BPE's own result, by the first of:
//! 1. one byte: its byte token;
//! 2. a *whole-token* piece: a vocabulary token whose bytes, merged by rank, give back that one
//!    token. Whether they do is found by running the merge loop the first time the token is met
//!    as a piece, and kept ([`VocabIndex`]), so the shortcut returns exactly what the merge loop
//!    would; for GPT-2 every token is whole (tested over the whole vocabulary);
//! 3. the piece cache of this call: pieces of up to [`CACHE_MAX_PIECE`] bytes already merged;
//! 4. the merge loop ([`bpe::bpe`]), whose result then goes into the cache.
//!
//! The cache keys borrow from the text (no allocation per piece) and it is bounded: at
//! [`CACHE_MAX_ENTRIES`] pieces or [`CACHE_MAX_IDS`] ids it is emptied and refilled.

use std::borrow::Cow;
use std::collections::HashMap;

use rayon::prelude::*;

use super::bpe::{self, Scratch, NO_TOKEN};
use super::fast_hash::Seeded;
use super::pretokenize;
use super::special::Segment;
#[cfg(doc)]
use super::vocab_index::VocabIndex;
use super::Tokenizer;

/// Pieces longer than this are not cached (long pieces seldom repeat).
pub(crate) const CACHE_MAX_PIECE: usize = 64;
/// The cache is emptied when it holds this many pieces (the map is then about 1.6 MB)...
pub(crate) const CACHE_MAX_ENTRIES: usize = 1 << 15;
/// ... or this many ids (1 MB).
pub(crate) const CACHE_MAX_IDS: usize = 1 << 18;
/// `encode_parallel` cuts texts into chunks of about this many bytes or more.
pub(crate) const MIN_PARALLEL_CHUNK: usize = 256 * 1024;

/// Buffers of one encoding call (or one chunk of a parallel call).
#[derive(Default)]
pub(crate) struct EncodeState<'a> {
    /// Piece → (start, len) in `cache_ids`.
    cache: HashMap<&'a [u8], (u32, u32), Seeded>,
    /// The cached pieces' ids (BPE's output, `NO_TOKEN` included).
    cache_ids: Vec<u32>,
    scratch: Scratch,
    buf: Vec<u32>,
}

impl Tokenizer {
    /// Appends the ids of `text` (no added tokens in it) to `out`.
    pub(crate) fn encode_ordinary<'a>(&self, text: &'a str, st: &mut EncodeState<'a>, out: &mut Vec<u32>) {
        let mut pos = 0;
        while pos < text.len() {
            let end = pretokenize::piece_end(text, pos);
            self.encode_piece(&text.as_bytes()[pos..end], st, out);
            pos = end;
        }
    }

    #[inline]
    pub(crate) fn encode_piece<'a>(&self, piece: &'a [u8], st: &mut EncodeState<'a>, out: &mut Vec<u32>) {
        if let [b] = piece {
            self.push_id(self.byte_ids[*b as usize], out);
            return;
        }
        let token = self.vocab_index.find(piece);
        if let Some(entry) = token {
            if entry.is_whole() == Some(true) {
                out.push(entry.id);
                return;
            }
        }
        let cacheable = piece.len() <= CACHE_MAX_PIECE;
        if cacheable {
            if let Some(&(start, len)) = st.cache.get(piece) {
                for &id in &st.cache_ids[start as usize..(start + len) as usize] {
                    self.push_id(id, out);
                }
                return;
            }
        }
        st.buf.clear();
        st.buf.extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
        bpe::bpe(&self.merges, &mut st.buf, &mut st.scratch);
        for &id in &st.buf {
            self.push_id(id, out);
        }
        if let Some(entry) = token {
            let whole = st.buf[..] == [entry.id];
            entry.set_whole(whole);
            if whole {
                return; // the flag serves it from now on
            }
        }
        if cacheable {
            if st.cache.len() >= CACHE_MAX_ENTRIES || st.cache_ids.len() >= CACHE_MAX_IDS {
                st.cache.clear();
                st.cache_ids.clear();
            }
            st.cache.insert(piece, (st.cache_ids.len() as u32, st.buf.len() as u32));
            st.cache_ids.extend_from_slice(&st.buf);
        }
    }

    /// Pushes a BPE output id; a byte without a token becomes unk (or nothing without one).
    #[inline]
    fn push_id(&self, id: u32, out: &mut Vec<u32>) {
        if id != NO_TOKEN {
            out.push(id);
        } else if let Some(unk) = self.unk {
            out.push(unk);
        }
    }

    /// The ids of a run of segments.
    pub(crate) fn encode_segments<'a>(&self, segs: &[Segment<'a>], st: &mut EncodeState<'a>) -> Vec<u32> {
        let bytes: usize = segs.iter().map(|s| if let Segment::Text(t) = s { t.len() } else { 0 }).sum();
        let mut out = Vec::with_capacity(bytes / 2 + segs.len());
        for seg in segs {
            match *seg {
                Segment::Text(t) => self.encode_ordinary(t, st, &mut out),
                Segment::Added(id) => out.push(id),
            }
        }
        out
    }

    /// `text` with the prefix space when `add_prefix_space` asks for it.
    pub(crate) fn with_prefix<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.options.add_prefix_space {
            Cow::Owned(format!(" {text}"))
        } else {
            Cow::Borrowed(text)
        }
    }

    /// The parts of `text` (prefix space added) to encode: ordinary text and added tokens.
    pub(crate) fn segments<'a>(&self, text: &'a str) -> Vec<Segment<'a>> {
        if self.options.split_special_tokens || self.added.is_empty() {
            if text.is_empty() {
                Vec::new()
            } else {
                vec![Segment::Text(text)]
            }
        } else {
            self.added.split(text)
        }
    }

    /// Same ids as [`Tokenizer::encode`], computed on the threads of the current rayon pool: the
    /// text is cut into chunks of at least `chunk_bytes` bytes at points where cutting cannot
    /// change the pieces (an ASCII whitespace character after a non-whitespace one), the chunks
    /// are encoded in parallel and the ids concatenated. Added tokens (`<|endoftext|>`) are
    /// found in each chunk, unless one of them holds or strips whitespace: then they are found
    /// in the whole text first. Texts too short to cut, or a pool of one thread, are encoded on
    /// the calling thread.
    pub fn encode_parallel_chunks(&self, text: &str, chunk_bytes: usize) -> Vec<u32> {
        self.with_bos(self.encode_in_chunks(text, chunk_bytes))
    }

    /// [`Tokenizer::encode_parallel_chunks`] without the bos id.
    pub(crate) fn encode_in_chunks(&self, text: &str, chunk_bytes: usize) -> Vec<u32> {
        let text = self.with_prefix(text);
        if self.cuts_are_safe() {
            return self.encode_cut_text(&text, chunk_bytes);
        }
        // Added tokens that hold or strip whitespace: split at them first, then group the
        // segments into chunks, each closed once it holds `chunk_bytes` of text (a text segment is
        // cut at the first safe point that fills the chunk).
        let mut chunks: Vec<Vec<Segment<'_>>> = Vec::new();
        let mut chunk = Vec::new();
        let mut size = 0;
        for seg in self.segments(&text) {
            let Segment::Text(mut t) = seg else {
                chunk.push(seg);
                continue;
            };
            while let Some(p) = pretokenize::next_safe_split(t, chunk_bytes.saturating_sub(size)) {
                chunk.push(Segment::Text(&t[..p]));
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
                t = &t[p..];
            }
            chunk.push(Segment::Text(t));
            size += t.len();
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        self.encode_chunks(&chunks, |segs, st| self.encode_segments(segs, st))
    }

    /// Whether cutting the text at a safe split point (see `pretokenize::is_safe_split`) leaves
    /// its ids unchanged, added tokens included.
    pub(crate) fn cuts_are_safe(&self) -> bool {
        self.options.split_special_tokens || self.added.cut_at_whitespace_is_safe()
    }

    /// The ids of `text` (prefix space already added, no bos), cut into chunks of at least
    /// `chunk_bytes` at safe split points and encoded in parallel; only when
    /// [`Tokenizer::cuts_are_safe`]. The added tokens are found in each chunk.
    pub(crate) fn encode_cut_text(&self, text: &str, chunk_bytes: usize) -> Vec<u32> {
        let mut chunks = Vec::new();
        let mut rest = text;
        while let Some(p) = pretokenize::next_safe_split(rest, chunk_bytes) {
            chunks.push(&rest[..p]);
            rest = &rest[p..];
        }
        chunks.push(rest);
        self.encode_chunks(&chunks, |t, st| self.encode_segments(&self.segments(t), st))
    }

    /// Encodes `chunks` with `encode` on the current rayon pool and concatenates the ids.
    fn encode_chunks<'a, C: Sync>(
        &self,
        chunks: &[C],
        encode: impl Fn(&C, &mut EncodeState<'a>) -> Vec<u32> + Sync,
    ) -> Vec<u32> {
        let mut parts: Vec<Vec<u32>> = if rayon::current_num_threads() > 1 && chunks.len() > 1 {
            // One state (and so one cache) per rayon job, kept across the chunks of that job.
            chunks.par_iter().map_init(EncodeState::default, |st, c| encode(c, st)).collect()
        } else {
            let mut st = EncodeState::default();
            chunks.iter().map(|c| encode(c, &mut st)).collect()
        };
        if parts.len() == 1 {
            return parts.pop().unwrap_or_default();
        }
        // Copied into place in parallel: the output's pages are first touched by both threads.
        let mut out = vec![0; parts.iter().map(Vec::len).sum()];
        let mut dst: Vec<&mut [u32]> = Vec::with_capacity(parts.len());
        let mut rest = &mut out[..];
        for part in &parts {
            let (head, tail) = rest.split_at_mut(part.len());
            dst.push(head);
            rest = tail;
        }
        dst.into_par_iter().zip(&parts).for_each(|(d, s)| d.copy_from_slice(s));
        out
    }

    /// [`Tokenizer::encode_parallel_chunks`] with one chunk per thread, of at least 256 KB: each
    /// chunk starts with an empty piece cache, so chunks beyond one per thread only add cold
    /// caches.
    pub fn encode_parallel(&self, text: &str) -> Vec<u32> {
        let chunk = (text.len() / rayon::current_num_threads()).max(MIN_PARALLEL_CHUNK);
        self.encode_parallel_chunks(text, chunk)
    }
}
