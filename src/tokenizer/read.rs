//! Encoding a text as it is read (`quill tokenize --file`): block by block, each cut at its last
//! safe split point (where cutting cannot change the ids, see `pretokenize::is_safe_split`) and
//! encoded on the rayon pool, the ids handed on before the next block is read. Memory is one
//! block of text and its ids, not the whole text and all its ids.

use std::io::Read;
use std::path::Path;

use super::encode::MIN_PARALLEL_CHUNK;
use super::{pretokenize, Tokenizer};
use crate::error::{Error, Result};

/// Text read per block, per thread of the pool. A block's chunks each start with a cold piece
/// cache, so blocks much smaller than this cost encoding speed (docs/PERFORMANCE.md,
/// "Tokenizer").
const BLOCK_PER_THREAD: usize = 4 << 20;

impl Tokenizer {
    /// The ids of the UTF-8 text `reader` yields, exactly [`Tokenizer::encode`]'s on the whole
    /// text, handed to `emit` in order, a block's worth at a time (the bos id first, on its own,
    /// when the options ask for it). Returns the number of ids.
    ///
    /// Blocks hold about 4 MiB per thread of the current rayon pool; a stretch of text without
    /// whitespace longer than that grows the block until it ends. Added tokens that hold or strip
    /// whitespace make cutting unsafe: then the whole text is read first. Invalid UTF-8 is an
    /// error naming `origin` and the offset of the first bad byte; the ids of the blocks before
    /// it have been emitted by then.
    pub fn encode_reader(
        &self,
        reader: impl Read,
        origin: &Path,
        emit: impl FnMut(&[u32]) -> Result<()>,
    ) -> Result<u64> {
        self.encode_blocks(reader, origin, BLOCK_PER_THREAD * rayon::current_num_threads(), emit)
    }

    /// [`Tokenizer::encode_reader`] with blocks of `block` bytes.
    pub(crate) fn encode_blocks(
        &self,
        mut reader: impl Read,
        origin: &Path,
        block: usize,
        mut emit: impl FnMut(&[u32]) -> Result<()>,
    ) -> Result<u64> {
        let threads = rayon::current_num_threads();
        let block = if self.cuts_are_safe() { block.max(1) } else { usize::MAX };
        let mut count = 0u64;
        if let (true, Some(bos)) = (self.options.add_bos_token, self.bos) {
            emit(&[bos])?;
            count += 1;
        }
        let mut buf: Vec<u8> = Vec::new();
        // Offset in the whole text of `buf[0]`, for messages.
        let mut base = 0u64;
        let mut first = true;
        let mut eof = false;
        let mut want = block;
        while !eof || !buf.is_empty() {
            eof = eof || fill(&mut reader, &mut buf, want, origin)?;
            let valid = match std::str::from_utf8(&buf) {
                Ok(_) => buf.len(),
                // A character cut by the end of the block: its rest comes with the next one.
                Err(e) if e.error_len().is_none() && !eof => e.valid_up_to(),
                Err(e) => {
                    return Err(Error::bad_file(
                        origin,
                        format!("not valid UTF-8 (first bad byte at offset {})", base + e.valid_up_to() as u64),
                    ))
                }
            };
            let text = std::str::from_utf8(&buf[..valid]).expect("checked above");
            let cut = if eof {
                text.len()
            } else {
                match pretokenize::last_safe_split(text) {
                    Some(p) => p,
                    None => {
                        // No place to cut yet: read on.
                        want = buf.len().saturating_add(block);
                        continue;
                    }
                }
            };
            let chunk = (cut / threads).max(MIN_PARALLEL_CHUNK);
            let ids = if self.cuts_are_safe() {
                let part = &text[..cut];
                self.encode_cut_text(&if first { self.with_prefix(part) } else { part.into() }, chunk)
            } else {
                // The whole text, in one block: as `encode_parallel` (prefix space included).
                self.encode_in_chunks(text, chunk)
            };
            if !ids.is_empty() {
                emit(&ids)?;
            }
            count += ids.len() as u64;
            first = false;
            buf.drain(..cut);
            base += cut as u64;
            want = block;
        }
        Ok(count)
    }
}

/// Reads from `reader` until `buf` holds `want` bytes or the text ends; says whether it ended.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize, origin: &Path) -> Result<bool> {
    let mut chunk = [0u8; 64 * 1024];
    while buf.len() < want {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(origin, e)),
        }
    }
    Ok(false)
}
