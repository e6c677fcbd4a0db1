//! A hand-written reader of the protocol-buffer wire format: varints, field keys,
//! length-delimited bytes, and the three messages a tensor-bundle index stores
//! (tensorflow/core/protobuf/tensor_bundle.proto, tensor_shape.proto, versions.proto).
//!
//! Unknown fields are skipped, as protobuf readers do; a known field with the wrong wire type, a
//! truncated message or an impossible value is an error (a plain message; the caller names the
//! file and the tensor).

pub type Result<T> = std::result::Result<T, String>;

/// Reads a base-128 varint at `*pos` and moves past it.
pub fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or_else(|| format!("truncated varint at byte {pos}"))?;
        *pos += 1;
        // The 10th byte holds bit 63 only.
        if i == 9 && b > 1 {
            return Err(format!("varint longer than 64 bits at byte {}", *pos - 10));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    unreachable!("the 10th byte either ends the varint or is refused")
}

/// Reads a varint that must fit 32 bits (the SSTable's lengths).
pub fn varint32(buf: &[u8], pos: &mut usize) -> Result<u32> {
    let at = *pos;
    let v = varint(buf, pos)?;
    u32::try_from(v).map_err(|_| format!("varint {v} at byte {at} does not fit 32 bits"))
}

/// One field's value, by wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Every field of a message, in order: `(field number, value)`.
pub fn fields(msg: &[u8]) -> Result<Vec<(u32, Value<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let end = pos.checked_add(n).filter(|&e| e <= msg.len());
        let bytes = end.map(|e| &msg[*pos..e]).ok_or_else(|| format!("field truncated at byte {pos}"))?;
        *pos += n;
        Ok(bytes)
    };
    while pos < msg.len() {
        let key = varint(msg, &mut pos)?;
        let number = u32::try_from(key >> 3).ok().filter(|&n| n != 0).ok_or_else(|| format!("bad field key {key}"))?;
        let value = match key & 7 {
            0 => Value::Varint(varint(msg, &mut pos)?),
            1 => Value::Fixed64(u64::from_le_bytes(take(&mut pos, 8)?.try_into().expect("8 bytes"))),
            2 => {
                let n = varint(msg, &mut pos)?;
                let n = usize::try_from(n).map_err(|_| format!("field length {n} too large"))?;
                Value::Bytes(take(&mut pos, n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4 bytes"))),
            w => return Err(format!("field {number} has wire type {w} (groups), which these messages never use")),
        };
        out.push((number, value));
    }
    Ok(out)
}

fn int(field: &str, v: &Value) -> Result<i64> {
    match v {
        // int32 and int64 alike: negative values are sign-extended to 64 bits.
        Value::Varint(x) => Ok(*x as i64),
        other => Err(format!("field '{field}' is {other:?}, expected a varint")),
    }
}

fn bytes<'a>(field: &str, v: &Value<'a>) -> Result<&'a [u8]> {
    match v {
        Value::Bytes(b) => Ok(b),
        other => Err(format!("field '{field}' is {other:?}, expected bytes")),
    }
}

fn non_negative(field: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| format!("field '{field}' is {v}, expected a value >= 0"))
}

/// The `BundleHeaderProto` stored under the empty key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleHeader {
    pub num_shards: u32,
    pub big_endian: bool,
    /// `version` (a `VersionDef`): who wrote it and the oldest reader that may read it.
    pub producer: i64,
    pub min_consumer: i64,
    pub bad_consumers: Vec<i64>,
}

pub fn bundle_header(msg: &[u8]) -> Result<BundleHeader> {
    let mut h = BundleHeader { num_shards: 0, big_endian: false, producer: 0, min_consumer: 0, bad_consumers: vec![] };
    for (number, v) in fields(msg)? {
        match number {
            1 => {
                let n = int("num_shards", &v)?;
                h.num_shards = u32::try_from(n).map_err(|_| format!("num_shards is {n}"))?;
            }
            2 => {
                h.big_endian = match int("endianness", &v)? {
                    0 => false,
                    1 => true,
                    e => return Err(format!("endianness is {e}, neither LITTLE (0) nor BIG (1)")),
                }
            }
            3 => {
                for (number, v) in fields(bytes("version", &v)?)? {
                    match (number, v) {
                        (1, v) => h.producer = int("version.producer", &v)?,
                        (2, v) => h.min_consumer = int("version.min_consumer", &v)?,
                        (3, Value::Varint(x)) => h.bad_consumers.push(x as i64),
                        // A packed repeated int32.
                        (3, Value::Bytes(packed)) => {
                            let mut pos = 0;
                            while pos < packed.len() {
                                h.bad_consumers.push(varint(packed, &mut pos)? as i64);
                            }
                        }
                        (3, v) => return Err(format!("field 'version.bad_consumers' is {v:?}")),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(h)
}

/// A `BundleEntryProto`: one tensor's type, shape and place in the data files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    /// A `DataType` enum value (1 = DT_FLOAT, ...).
    pub dtype: i64,
    pub shape: Vec<u64>,
    pub shard_id: u64,
    pub offset: u64,
    pub size: u64,
    /// Masked CRC-32C of the tensor's bytes.
    pub crc32c: u32,
    /// How many `TensorSliceProto`s: non-zero for a partitioned variable, whose data is stored
    /// under other keys.
    pub slices: usize,
}

pub fn bundle_entry(msg: &[u8]) -> Result<BundleEntry> {
    let mut e = BundleEntry { dtype: 0, shape: vec![], shard_id: 0, offset: 0, size: 0, crc32c: 0, slices: 0 };
    for (number, v) in fields(msg)? {
        match number {
            1 => e.dtype = int("dtype", &v)?,
            2 => e.shape = tensor_shape(bytes("shape", &v)?)?,
            3 => e.shard_id = non_negative("shard_id", int("shard_id", &v)?)?,
            4 => e.offset = non_negative("offset", int("offset", &v)?)?,
            5 => e.size = non_negative("size", int("size", &v)?)?,
            6 => match v {
                Value::Fixed32(c) => e.crc32c = c,
                other => return Err(format!("field 'crc32c' is {other:?}, expected fixed32")),
            },
            7 => e.slices += 1,
            _ => {}
        }
    }
    Ok(e)
}

/// A `TensorShapeProto`'s dimensions; an unknown rank or dimension is an error (a saved
/// variable's shape is always known).
pub fn tensor_shape(msg: &[u8]) -> Result<Vec<u64>> {
    let mut dims = Vec::new();
    for (number, v) in fields(msg)? {
        match number {
            2 => {
                let mut size = 0;
                for (number, v) in fields(bytes("dim", &v)?)? {
                    if number == 1 {
                        size = int("dim.size", &v)?;
                    }
                }
                dims.push(u64::try_from(size).map_err(|_| format!("dimension {} is {size} (unknown)", dims.len()))?);
            }
            3 if int("unknown_rank", &v)? != 0 => return Err("the shape has unknown rank".into()),
            _ => {}
        }
    }
    Ok(dims)
}
