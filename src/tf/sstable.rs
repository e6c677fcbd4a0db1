//! LevelDB's table ("SSTable") format, as TensorFlow's table library writes a checkpoint's
//! `.index` file (tensorflow/core/lib/io/{format,block,table}.cc). Layout:
//!
//! ```text
//! data block ... data block | metaindex block | index block | footer (48 bytes)
//! ```
//!
//! - Footer: the metaindex and index blocks' handles (each a varint offset and a varint size),
//!   zero-padded to 40 bytes, then the magic number 0xdb4775248b80fb57 as a little-endian u64.
//! - Every block is followed by a 5-byte trailer: its compression type (0 none, 1 snappy) and
//!   the masked CRC-32C of the block's bytes plus that type byte.
//! - A block is a run of entries, each `varint32 shared, varint32 non_shared, varint32
//!   value_len, key[shared..] (non_shared bytes), value`, where the key's first `shared` bytes
//!   are the previous key's; then the restart points (u32 offsets of entries whose `shared` is
//!   0, every 16th entry by default) and their count (u32).
//! - The index block has one entry per data block: a key >= that block's last key, and the
//!   block's handle as the value. TensorFlow leaves the metaindex block empty.
//!
//! The whole index is small (one entry per tensor), so it is read at once into a sorted list.

use super::crc32c;
use super::proto::{varint, varint32, Result};

pub const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
pub const FOOTER_LEN: usize = 48;
pub const TRAILER_LEN: usize = 5;

/// Where a block lies in the file (its trailer follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    pub fn decode(buf: &[u8], pos: &mut usize) -> Result<BlockHandle> {
        Ok(BlockHandle { offset: varint(buf, pos)?, size: varint(buf, pos)? })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    pub metaindex: BlockHandle,
    pub index: BlockHandle,
}

/// The footer of a whole table file.
pub fn footer(file: &[u8]) -> Result<Footer> {
    if file.len() < FOOTER_LEN {
        return Err(format!(
            "{} bytes, shorter than an SSTable footer ({FOOTER_LEN} bytes): not a checkpoint index, or truncated",
            file.len()
        ));
    }
    let f = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(f[40..].try_into().expect("8 bytes"));
    if magic != MAGIC {
        return Err(format!(
            "no SSTable magic number at the end (found {magic:#018x}): not a TensorFlow checkpoint index, or truncated"
        ));
    }
    let mut pos = 0;
    let handles = &f[..40];
    let metaindex = BlockHandle::decode(handles, &mut pos).map_err(|e| format!("footer: {e}"))?;
    let index = BlockHandle::decode(handles, &mut pos).map_err(|e| format!("footer: {e}"))?;
    Ok(Footer { metaindex, index })
}

/// The contents of the block at `h` (`what` names it in errors), its trailer checked: only
/// uncompressed blocks are supported, and the checksum must match.
pub fn block<'a>(file: &'a [u8], h: BlockHandle, what: &str) -> Result<&'a [u8]> {
    let body_end = file.len().saturating_sub(FOOTER_LEN) as u64;
    let end = h.offset.checked_add(h.size).and_then(|e| e.checked_add(TRAILER_LEN as u64));
    let Some(end) = end.filter(|&e| e <= body_end) else {
        return Err(format!(
            "{what} at bytes {}..{} (+{TRAILER_LEN}) runs past the blocks' end ({body_end}): truncated or corrupt",
            h.offset,
            h.offset.saturating_add(h.size)
        ));
    };
    let (start, end) = (h.offset as usize, end as usize);
    let contents = &file[start..end - TRAILER_LEN];
    let trailer = &file[end - TRAILER_LEN..end];
    match trailer[0] {
        0 => {}
        1 => {
            return Err(format!(
                "{what} is snappy-compressed; only uncompressed indexes are supported (TensorFlow writes them \
                 uncompressed by default)"
            ))
        }
        t => return Err(format!("{what} has unknown compression type {t}")),
    }
    let stored = u32::from_le_bytes(trailer[1..].try_into().expect("4 bytes"));
    let actual = crc32c::mask(crc32c::extend(crc32c::value(contents), &trailer[..1]));
    if stored != actual {
        return Err(format!("{what} at byte {start} fails its checksum (CRC-32C): the file is corrupt"));
    }
    Ok(contents)
}

/// The entries of one block, keys expanded: `(key, value)` in stored order. Checks the restart
/// array: in range, ascending, each at an entry that shares nothing with its predecessor.
pub fn block_entries(block: &[u8]) -> Result<Vec<(Vec<u8>, &[u8])>> {
    let fixed32 = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"));
    if block.len() < 4 {
        return Err(format!("a block of {} bytes has no restart count", block.len()));
    }
    let num_restarts = fixed32(block.len() - 4) as usize;
    let restarts_at = num_restarts
        .checked_mul(4)
        .and_then(|n| (block.len() - 4).checked_sub(n))
        .ok_or_else(|| format!("{num_restarts} restart points do not fit a block of {} bytes", block.len()))?;
    let restarts: Vec<usize> = (0..num_restarts).map(|i| fixed32(restarts_at + 4 * i) as usize).collect();
    let data = &block[..restarts_at];

    let mut entries: Vec<(Vec<u8>, &[u8])> = Vec::new();
    // Where each entry starts, whether it is a full key (shared == 0).
    let mut starts: Vec<(usize, bool)> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        let shared = varint32(data, &mut pos)? as usize;
        let non_shared = varint32(data, &mut pos)? as usize;
        let value_len = varint32(data, &mut pos)? as usize;
        let prev = entries.last().map_or(&[][..], |(k, _)| &k[..]);
        if shared > prev.len() {
            return Err(format!("entry at byte {start} shares {shared} bytes with a {}-byte previous key", prev.len()));
        }
        let key_end = pos + non_shared;
        let value_end = key_end + value_len;
        if value_end > data.len() {
            return Err(format!("entry at byte {start} runs past its block's entries ({} bytes)", data.len()));
        }
        let mut key = Vec::with_capacity(shared + non_shared);
        key.extend_from_slice(&prev[..shared]);
        key.extend_from_slice(&data[pos..key_end]);
        entries.push((key, &data[key_end..value_end]));
        starts.push((start, shared == 0));
        pos = value_end;
    }
    if !entries.is_empty() && restarts.first() != Some(&0) {
        return Err("the first restart point is not the first entry".into());
    }
    for (i, &r) in restarts.iter().enumerate() {
        if i > 0 && r <= restarts[i - 1] {
            return Err(format!("restart points out of order ({} then {r})", restarts[i - 1]));
        }
        if !entries.is_empty() && !matches!(starts.binary_search_by_key(&r, |s| s.0), Ok(j) if starts[j].1) {
            return Err(format!("restart point {r} is not the start of an entry with a full key"));
        }
    }
    Ok(entries)
}

/// Every entry of the table, in key order (which is checked: strictly ascending).
pub fn read_table(file: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let footer = footer(file)?;
    let index = block(file, footer.index, "the index block")?;
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (n, (_, value)) in block_entries(index).map_err(|e| format!("the index block: {e}"))?.into_iter().enumerate() {
        let mut pos = 0;
        let handle = BlockHandle::decode(value, &mut pos).map_err(|e| format!("the index block, entry {n}: {e}"))?;
        if pos != value.len() {
            return Err(format!("the index block, entry {n}: {} bytes after the block handle", value.len() - pos));
        }
        let what = format!("data block {n}");
        for (key, value) in block_entries(block(file, handle, &what)?).map_err(|e| format!("{what}: {e}"))? {
            if let Some((prev, _)) = out.last() {
                if key <= *prev {
                    return Err(format!(
                        "{what}: keys out of order ({:?} after {:?})",
                        String::from_utf8_lossy(&key),
                        String::from_utf8_lossy(prev)
                    ));
                }
            }
            out.push((key, value.to_vec()));
        }
    }
    Ok(out)
}
