//! A TensorFlow checkpoint in the tensor-bundle format (tensorflow/core/util/tensor_bundle),
//! which TF1's `Saver` writes by default (checkpoint format V2):
//!
//! - `PREFIX.index`: an SSTable ([`super::sstable`]) whose entry under the empty key is a
//!   `BundleHeaderProto` (number of data files, endianness, version) and whose other entries map
//!   each tensor's name to a `BundleEntryProto` (type, shape, data file, offset, size, masked
//!   CRC-32C of its bytes);
//! - `PREFIX.data-SSSSS-of-NNNNN`: the data files, each tensor's raw bytes at its offset.
//!
//! Opening reads and checks the whole index and that every tensor lies inside its data file;
//! the bytes are read, checksummed and widened to f32 one tensor at a time.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use super::proto::{self, BundleEntry};
use super::{crc32c, sstable};
use crate::error::{Error, Result};

/// The newest bundle version this reader knows (TensorFlow's `kTensorBundleVersion`).
const BUNDLE_VERSION: i64 = 1;

/// The float types this reader converts, by TensorFlow's `DataType` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Float,
    Half,
    BFloat16,
    /// Any other type, kept by its number and name for messages.
    Other(i64),
}

impl DataType {
    fn from_proto(v: i64) -> DataType {
        match v {
            1 => DataType::Float,
            19 => DataType::Half,
            14 => DataType::BFloat16,
            v => DataType::Other(v),
        }
    }

    /// Bytes per element of the float types.
    fn size(self) -> Option<u64> {
        match self {
            DataType::Float => Some(4),
            DataType::Half | DataType::BFloat16 => Some(2),
            DataType::Other(_) => None,
        }
    }

    /// TensorFlow's name for it (`DT_FLOAT`, ...).
    pub fn name(self) -> String {
        let n = match self {
            DataType::Float => return "DT_FLOAT".into(),
            DataType::Half => return "DT_HALF".into(),
            DataType::BFloat16 => return "DT_BFLOAT16".into(),
            DataType::Other(n) => n,
        };
        let name = match n {
            2 => "DT_DOUBLE",
            3 => "DT_INT32",
            4 => "DT_UINT8",
            5 => "DT_INT16",
            6 => "DT_INT8",
            7 => "DT_STRING",
            8 => "DT_COMPLEX64",
            9 => "DT_INT64",
            10 => "DT_BOOL",
            17 => "DT_UINT16",
            18 => "DT_COMPLEX128",
            20 => "DT_RESOURCE",
            21 => "DT_VARIANT",
            22 => "DT_UINT32",
            23 => "DT_UINT64",
            _ => return format!("DataType {n}"),
        };
        name.into()
    }
}

/// One tensor of the bundle.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub dtype: DataType,
    pub shape: Vec<usize>,
    /// A partitioned variable: its entry lists slices stored under other keys; not supported.
    pub partitioned: bool,
    shard: usize,
    offset: u64,
    size: u64,
    crc32c: u32,
}

pub struct Bundle {
    index: PathBuf,
    index_bytes: u64,
    /// Each data file and its length.
    shards: Vec<(PathBuf, u64)>,
    big_endian: bool,
    tensors: BTreeMap<String, Tensor>,
}

/// `PREFIX` + `suffix`, beside it.
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(prefix.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

impl Bundle {
    /// Opens `PREFIX.index` and checks it against the data files' lengths.
    pub fn open(prefix: &Path) -> Result<Bundle> {
        let index = with_suffix(prefix, ".index");
        let bad = |msg: String| Error::bad_file(&index, msg);
        let bytes = std::fs::read(&index).map_err(|e| Error::io(&index, e))?;
        let entries = sstable::read_table(&bytes).map_err(bad)?;

        let mut entries = entries.into_iter();
        let header = match entries.next() {
            Some((key, value)) if key.is_empty() => {
                proto::bundle_header(&value).map_err(|e| bad(format!("the bundle header: {e}")))?
            }
            _ => return Err(bad("no bundle header (the entry under the empty key): not a tensor bundle".into())),
        };
        if header.min_consumer > BUNDLE_VERSION {
            return Err(bad(format!(
                "bundle version: written by a TensorFlow that needs a reader of version {} or later (this one reads \
                 version {BUNDLE_VERSION})",
                header.min_consumer
            )));
        }
        if header.bad_consumers.contains(&BUNDLE_VERSION) {
            return Err(bad(format!(
                "bundle version: its writer marks readers of version {BUNDLE_VERSION} as unable to read it"
            )));
        }
        if header.num_shards == 0 {
            return Err(bad("the bundle header says there are no data files".into()));
        }
        let n = header.num_shards;
        let mut shards = Vec::with_capacity(n as usize);
        for i in 0..n {
            let path = with_suffix(prefix, &format!(".data-{i:05}-of-{n:05}"));
            let len = std::fs::metadata(&path)
                .map_err(|e| {
                    Error::bad_file(
                        &path,
                        format!("data file {} of {n} of the checkpoint is missing or unreadable ({e})", i + 1),
                    )
                })?
                .len();
            shards.push((path, len));
        }

        let mut tensors = BTreeMap::new();
        for (key, value) in entries {
            let name = String::from_utf8_lossy(&key).into_owned();
            let e = proto::bundle_entry(&value).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
            let tensor = check_entry(&name, &e, &shards).map_err(bad)?;
            tensors.insert(name, tensor);
        }
        Ok(Bundle { index, index_bytes: bytes.len() as u64, shards, big_endian: header.big_endian, tensors })
    }

    /// The `.index` file.
    pub fn index(&self) -> &Path {
        &self.index
    }

    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    /// The index and the data files.
    pub fn paths(&self) -> Vec<PathBuf> {
        std::iter::once(self.index.clone()).chain(self.shards.iter().map(|(p, _)| p.clone())).collect()
    }

    pub fn file_bytes(&self) -> u64 {
        self.index_bytes + self.shards.iter().map(|(_, len)| len).sum::<u64>()
    }

    /// The tensor `name`'s values as f32 (f16 and bf16 widened exactly), its checksum verified.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let n = self.tensors.get(name).map_or(0, |t| t.shape.iter().product());
        let mut out = vec![0.0; n];
        self.read_f32_into(name, &mut out)?;
        Ok(out)
    }

    /// [`Bundle::read_f32`] into `out`, which must hold exactly the tensor's elements.
    pub fn read_f32_into(&self, name: &str, out: &mut [f32]) -> Result<()> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::bad_file(&self.index, format!("no tensor '{name}' in the checkpoint")))?;
        let (path, _) = &self.shards[t.shard];
        let fail = |msg: String| Error::bad_file(path, format!("tensor '{name}': {msg}"));
        if t.partitioned {
            return Err(fail("a partitioned variable (stored as slices), which this reader does not support".into()));
        }
        if t.dtype.size().is_none() {
            return Err(fail(format!(
                "of type {}; only DT_FLOAT, DT_HALF and DT_BFLOAT16 convert to a Quill file",
                t.dtype.name()
            )));
        }
        let mut bytes = vec![0u8; t.size as usize];
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(t.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| fail(format!("cannot read bytes {}..{}: {e}", t.offset, t.offset + t.size)))?;
        if crc32c::mask(crc32c::value(&bytes)) != t.crc32c {
            return Err(fail(format!(
                "bytes {}..{} fail their checksum (CRC-32C): the data file is corrupt",
                t.offset,
                t.offset + t.size
            )));
        }
        let big = self.big_endian;
        let width = bytes.len() / out.len().max(1);
        if out.len() * width != bytes.len() {
            return Err(fail(format!("{} bytes do not make {} values", bytes.len(), out.len())));
        }
        match t.dtype {
            DataType::Float => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    let b = b.try_into().expect("4 bytes");
                    *o = if big { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) };
                }
            }
            DataType::Half | DataType::BFloat16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    let b: [u8; 2] = b.try_into().expect("2 bytes");
                    let bits = if big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) };
                    *o = if t.dtype == DataType::Half {
                        f16::from_bits(bits).to_f32()
                    } else {
                        bf16::from_bits(bits).to_f32()
                    };
                }
            }
            DataType::Other(_) => unreachable!("refused above"),
        }
        Ok(())
    }
}

/// Checks one entry against the data files: the shard exists, the bytes lie inside it, and a
/// float tensor's size matches its shape.
fn check_entry(name: &str, e: &BundleEntry, shards: &[(PathBuf, u64)]) -> std::result::Result<Tensor, String> {
    let at = |msg: String| format!("tensor '{name}': {msg}");
    let shape = e
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| at(format!("dimension {d} is too large"))))
        .collect::<std::result::Result<Vec<usize>, String>>()?;
    let dtype = DataType::from_proto(e.dtype);
    let shard = usize::try_from(e.shard_id)
        .ok()
        .filter(|&s| s < shards.len())
        .ok_or_else(|| at(format!("in data file {} of a checkpoint with {}", e.shard_id, shards.len())))?;
    let (path, len) = &shards[shard];
    e.offset.checked_add(e.size).filter(|end| end <= len).ok_or_else(|| {
        at(format!(
            "bytes {}..{} of {}, which has only {len} bytes: the data file is truncated or does not belong to \
             this index",
            e.offset,
            e.offset.saturating_add(e.size),
            path.display()
        ))
    })?;
    if e.slices == 0 {
        if let Some(elem) = dtype.size() {
            let want = shape.iter().try_fold(elem, |n, &d| n.checked_mul(d as u64));
            if want != Some(e.size) {
                return Err(at(format!(
                    "{} bytes for shape {shape:?} of {}, expected {}",
                    e.size,
                    dtype.name(),
                    want.map_or("more than 2^64".into(), |w| w.to_string())
                )));
            }
        }
    }
    Ok(Tensor { dtype, shape, partitioned: e.slices > 0, shard, offset: e.offset, size: e.size, crc32c: e.crc32c })
}
