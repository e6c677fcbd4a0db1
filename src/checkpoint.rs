//! Memory-mapped safetensors checkpoints with typed tensor views.
//!
//! Weight matrices stored as f32, f16, q8_0 (int8 plus a `.scale` tensor of f16 block scales) or
//! a block format (GGUF's blocks as a `U8` tensor of whole blocks per row; which format, a Quill
//! file's metadata says) are used in place: a view borrows straight from the mapping and the
//! kernels read that element type. bf16 weights are widened to f32 once at load (no bf16 kernels
//! yet), as are the small vectors (biases, LayerNorm) of any type.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::f16;
use memmap2::Mmap;
use quill_kernels::{BlockFormat, WeightData, Q8_BLOCK};
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::error::{read_json, Error, Result};

/// Element types Quill reads from checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// q8_0: a matrix of int8 values stored as safetensors `I8`, with a `.scale` tensor of f16
    /// block scales beside it.
    Q8_0,
    /// A block format: a matrix `(N, K)` stored as `U8` `(N, row bytes)`.
    Blocks(BlockFormat),
}

/// How a checkpoint stores its weight matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixOrder {
    /// As transformers saves them: GPT-2's Conv1D matrices `(in, out)`, GPT-Neo's nn.Linear ones
    /// `(out, in)`.
    Transformers,
    /// Every matrix `(out, in)`: a Quill file (`quantize` transposed GPT-2's Conv1D matrices).
    OutIn,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Blocks(format) => format.name(),
        }
    }
}

/// One read-only mapping of a checkpoint file, or bytes built into the binary (the default
/// model), which the OS maps from the executable the same way.
struct MappedFile {
    path: PathBuf,
    map: Bytes,
}

enum Bytes {
    Mapped(Mmap),
    Static(&'static [u8]),
    /// A copy in 8-byte words, so that tensor views are as aligned as in a mapping.
    Owned {
        words: Vec<u64>,
        len: usize,
    },
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Static(b) => b,
            Bytes::Owned { words, len } => &bytemuck::cast_slice(words)[..*len],
        }
    }
}

/// Where one tensor lies: which file, the byte range inside it, its type and shape.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    file: usize,
    range: Range<usize>,
    pub dtype: Option<DType>,
    /// The type as the file names it, for messages about unsupported types.
    pub dtype_name: String,
    pub shape: Vec<usize>,
}

impl TensorEntry {
    /// Elements of the tensor: of a block-format matrix, the weights its blocks hold.
    pub fn elements(&self) -> usize {
        match (self.dtype, self.shape.as_slice()) {
            (Some(DType::Blocks(f)), &[n, row]) => n * (row / f.block_bytes() * f.block_weights()),
            _ => self.shape.iter().product(),
        }
    }
}

/// All tensors of a (possibly sharded) safetensors checkpoint, mapped and validated.
pub struct Checkpoint {
    files: Vec<Arc<MappedFile>>,
    tensors: HashMap<String, TensorEntry>,
    /// The first file's `__metadata__` (a Quill file's config and tokenizer live there).
    metadata: HashMap<String, String>,
}

/// A tensor's f32 data, borrowed from the mapping or widened once at load.
#[derive(Clone)]
pub struct TensorF32 {
    storage: Storage,
    pub shape: Vec<usize>,
}

/// A weight matrix in the element type the kernels read it in: f32, f16 or q8_0, in place when
/// the file's alignment allows.
#[derive(Clone)]
pub(crate) struct WeightTensor {
    storage: Storage,
    kind: WeightKind,
}

#[derive(Clone)]
enum WeightKind {
    F32,
    F16,
    /// int8 values in `storage`, one f16 scale per 32 of them here.
    Q8 {
        scales: Storage,
    },
    /// Whole blocks of the format in `storage`.
    Blocks(BlockFormat),
}

#[derive(Clone)]
enum Storage {
    Mapped { file: Arc<MappedFile>, range: Range<usize> },
    OwnedF32(Arc<Vec<f32>>),
    OwnedF16(Arc<Vec<f16>>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped { file, range } => &file.map[range.clone()],
            Storage::OwnedF32(v) => bytemuck::cast_slice(v),
            Storage::OwnedF16(v) => bytemuck::cast_slice(v),
        }
    }
}

impl TensorF32 {
    pub fn data(&self) -> &[f32] {
        // Alignment and element type were checked when the view was made.
        bytemuck::cast_slice(self.storage.bytes())
    }

    /// True when the data is read in place from the mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }
}

impl WeightTensor {
    pub(crate) fn data(&self) -> WeightData<'_> {
        // Alignment and element type were checked when the view was made.
        let bytes = self.storage.bytes();
        match &self.kind {
            WeightKind::F32 => WeightData::F32(bytemuck::cast_slice(bytes)),
            WeightKind::F16 => WeightData::F16(bytemuck::cast_slice(bytes)),
            WeightKind::Q8 { scales } => {
                WeightData::Q8_0 { q: bytemuck::cast_slice(bytes), scales: bytemuck::cast_slice(scales.bytes()) }
            }
            WeightKind::Blocks(format) => WeightData::Blocks { format: *format, data: bytes },
        }
    }

    /// Bytes the kernels read for this matrix (scales included).
    pub(crate) fn bytes(&self) -> usize {
        self.storage.bytes().len()
            + match &self.kind {
                WeightKind::Q8 { scales } => scales.bytes().len(),
                _ => 0,
            }
    }

    /// True when the data is read in place from the mapped file.
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// Row `i` of a 2-D tensor, widened (or decoded) into `out`.
    pub(crate) fn row_to_f32(&self, i: usize, out: &mut [f32]) {
        let n = out.len();
        self.data().slice(i * n..(i + 1) * n).to_f32(out);
    }
}

impl Checkpoint {
    /// Opens `model.safetensors`, or the shards listed by `model.safetensors.index.json`, in `dir`.
    pub fn open_dir(dir: &Path) -> Result<Checkpoint> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.is_file() {
            Self::open_files(&[single])
        } else if index.is_file() {
            Self::open_files(&shards_of(&index)?)
        } else {
            Err(Error::bad_file(
                dir,
                "no model.safetensors or model.safetensors.index.json in this folder \
                 (Quill reads safetensors; convert pytorch_model.bin with transformers' save_pretrained)",
            ))
        }
    }

    pub fn open_files(paths: &[PathBuf]) -> Result<Checkpoint> {
        let mut ckpt = Checkpoint { files: Vec::new(), tensors: HashMap::new(), metadata: HashMap::new() };
        for path in paths {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the mapping is read-only and private to this process. A file truncated by
            // another process while mapped can still fault (SIGBUS); sizes are checked at load.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            ckpt.add_file(path, Bytes::Mapped(map))?;
        }
        Ok(ckpt)
    }

    /// A checkpoint in bytes that live as long as the program (`include_bytes!`, aligned);
    /// `name` stands for the file in messages.
    pub fn from_static(name: &Path, bytes: &'static [u8]) -> Result<Checkpoint> {
        let mut ckpt = Checkpoint { files: Vec::new(), tensors: HashMap::new(), metadata: HashMap::new() };
        ckpt.add_file(name, Bytes::Static(bytes))?;
        Ok(ckpt)
    }

    /// Validates one file's header and adds its tensors (a shard: names must be new).
    /// A checkpoint from bytes in memory (copied once, aligned); `name` stands for the file in
    /// messages. For tests and fuzzing.
    pub fn from_bytes(name: &Path, bytes: &[u8]) -> Result<Checkpoint> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        let mut ckpt = Checkpoint { files: Vec::new(), tensors: HashMap::new(), metadata: HashMap::new() };
        ckpt.add_file(name, Bytes::Owned { words, len: bytes.len() })?;
        Ok(ckpt)
    }

    /// A checkpoint of f32 tensors made in memory (a TensorFlow checkpoint read by
    /// [`crate::tf::load`]): `tensors` names each tensor and its shape, `fill(i, out)` writes
    /// tensor `i`'s values. The tensors are laid out as one safetensors file in a single
    /// allocation, which then goes through the same checks and views as a mapped file; `name`
    /// stands for it in messages.
    pub fn from_f32_tensors(
        name: &Path,
        tensors: &[(String, Vec<usize>)],
        mut fill: impl FnMut(usize, &mut [f32]) -> Result<()>,
    ) -> Result<Checkpoint> {
        let too_large = || Error::bad_file(name, "the tensors are too large to hold in memory");
        let mut header = serde_json::Map::new();
        let mut ranges = Vec::with_capacity(tensors.len());
        let mut offset = 0usize;
        for (tensor, shape) in tensors {
            let bytes = shape.iter().try_fold(4usize, |n, &d| n.checked_mul(d)).ok_or_else(too_large)?;
            let end = offset.checked_add(bytes).ok_or_else(too_large)?;
            header.insert(
                tensor.clone(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
            );
            ranges.push(offset..end);
            offset = end;
        }
        let mut text = serde_json::to_vec(&header).expect("a JSON map serializes");
        // The data starts 8-aligned, as `quantize` aligns a file, so every f32 view is aligned.
        while !(8 + text.len()).is_multiple_of(8) {
            text.push(b' ');
        }
        let start = 8 + text.len();
        let len = start.checked_add(offset).ok_or_else(too_large)?;
        let mut words = Vec::new();
        words.try_reserve_exact(len.div_ceil(8)).map_err(|_| too_large())?;
        words.resize(len.div_ceil(8), 0u64);
        let bytes: &mut [u8] = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len];
        bytes[..8].copy_from_slice(&(text.len() as u64).to_le_bytes());
        bytes[8..start].copy_from_slice(&text);
        for (i, range) in ranges.into_iter().enumerate() {
            let out: &mut [f32] = bytemuck::cast_slice_mut(&mut bytes[start + range.start..start + range.end]);
            fill(i, out)?;
        }
        let mut ckpt = Checkpoint { files: Vec::new(), tensors: HashMap::new(), metadata: HashMap::new() };
        ckpt.add_file(name, Bytes::Owned { words, len })?;
        Ok(ckpt)
    }

    fn add_file(&mut self, path: &Path, map: Bytes) -> Result<()> {
        let (entries, metadata) = parse_header(path, &map)?;
        let idx = self.files.len();
        if idx == 0 {
            self.metadata = metadata;
        }
        self.files.push(Arc::new(MappedFile { path: path.to_path_buf(), map }));
        for (name, mut entry) in entries {
            entry.file = idx;
            if self.tensors.insert(name.clone(), entry).is_some() {
                return Err(Error::bad_file(path, format!("tensor '{name}' also appears in an earlier shard")));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// Marks the `U8` tensor `name` as holding `format`'s blocks (a Quill file's metadata says
    /// which tensors do).
    pub fn mark_blocks(&mut self, name: &str, format: BlockFormat) -> Result<()> {
        let path = self.files[0].path.clone();
        let entry = self.tensors.get_mut(name).ok_or_else(|| {
            Error::bad_file(&path, format!("{} blocks of tensor '{name}', which is missing", format.name()))
        })?;
        if entry.dtype_name != "U8" || entry.shape.len() != 2 {
            return Err(Error::bad_file(
                &path,
                format!(
                    "tensor '{name}' should hold {} blocks as U8 (rows, bytes), but is {} {:?}",
                    format.name(),
                    entry.dtype_name,
                    entry.shape
                ),
            ));
        }
        entry.dtype = Some(DType::Blocks(format));
        Ok(())
    }

    /// The first file's `__metadata__` entries (empty when it has none).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Sum of the mapped files' sizes.
    pub fn file_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.map.len() as u64).sum()
    }

    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }

    /// The entry of `name`, checked to have exactly `shape` and a supported type; errors name the
    /// tensor and both shapes.
    fn checked(&self, name: &str, shape: &[usize]) -> Result<(&Arc<MappedFile>, &TensorEntry, DType)> {
        let entry = self
            .get(name)
            .ok_or_else(|| Error::bad_file(self.files[0].path.as_path(), format!("tensor '{name}' is missing")))?;
        let file = &self.files[entry.file];
        // A block-format matrix (N, K) is stored as its bytes, (N, row bytes).
        let stored = match (entry.dtype, shape) {
            (Some(DType::Blocks(format)), &[n, k]) => match format.row_bytes(k) {
                Some(row) => vec![n, row],
                None => {
                    return Err(Error::bad_file(
                        &file.path,
                        format!(
                            "tensor '{name}' is {} but its rows of {k} are not whole blocks of {}",
                            format.name(),
                            format.block_weights()
                        ),
                    ))
                }
            },
            _ => shape.to_vec(),
        };
        if entry.shape != stored {
            return Err(Error::bad_file(
                &file.path,
                format!("tensor '{name}' has shape {:?}, expected {:?}", entry.shape, stored),
            ));
        }
        let dtype = entry.dtype.ok_or_else(|| {
            Error::bad_file(
                &file.path,
                format!("tensor '{name}' has dtype {}, expected F32, F16, BF16 or I8 (q8_0)", entry.dtype_name),
            )
        })?;
        Ok((file, entry, dtype))
    }

    /// The tensor `name` as f32 with exactly `shape` (widened if stored narrower).
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<TensorF32> {
        let (file, entry, dtype) = self.checked(name, shape)?;
        if dtype == DType::Q8_0 {
            return Err(Error::bad_file(&file.path, format!("tensor '{name}' is int8; expected a float tensor")));
        }
        if let DType::Blocks(format) = dtype {
            let mut values = vec![0.0; shape.iter().product()];
            format.dequantize_row(&file.map[entry.range.clone()], &mut values);
            return Ok(TensorF32 { storage: Storage::OwnedF32(Arc::new(values)), shape: shape.to_vec() });
        }
        let storage = match dtype {
            DType::F32 if entry.range.start % 4 == 0 => {
                Storage::Mapped { file: Arc::clone(file), range: entry.range.clone() }
            }
            _ => Storage::OwnedF32(Arc::new(widen(dtype, &file.map[entry.range.clone()]))),
        };
        Ok(TensorF32 { storage, shape: shape.to_vec() })
    }

    /// The weight matrix `name` with exactly `shape`: f32, f16 and q8_0 in place, bf16 widened
    /// to f32. A q8_0 matrix `(N, K)` is int8 `name` plus f16 `name.scale` `(N, K / 32)`.
    pub(crate) fn weight(&self, name: &str, shape: &[usize]) -> Result<WeightTensor> {
        let (file, entry, dtype) = self.checked(name, shape)?;
        let bytes = &file.map[entry.range.clone()];
        let mapped = || Storage::Mapped { file: Arc::clone(file), range: entry.range.clone() };
        let (storage, kind) = match dtype {
            DType::F32 if entry.range.start % 4 == 0 => (mapped(), WeightKind::F32),
            DType::F16 if entry.range.start % 2 == 0 => (mapped(), WeightKind::F16),
            // Unaligned data (older writers did not pad the header) is copied once.
            DType::F16 => (Storage::OwnedF16(Arc::new(f16_values(bytes))), WeightKind::F16),
            DType::F32 | DType::BF16 => (Storage::OwnedF32(Arc::new(widen(dtype, bytes))), WeightKind::F32),
            DType::Q8_0 => (mapped(), WeightKind::Q8 { scales: self.q8_scales(name, shape)? }),
            DType::Blocks(format) => (mapped(), WeightKind::Blocks(format)),
        };
        Ok(WeightTensor { storage, kind })
    }

    /// The f16 block scales `(N, K / 32)` of the q8_0 matrix `name` `(N, K)`.
    fn q8_scales(&self, name: &str, shape: &[usize]) -> Result<Storage> {
        let scale_name = format!("{name}.scale");
        let path = &self.files[0].path;
        let (rows, cols) = match shape {
            [n, k] if k % Q8_BLOCK == 0 => (*n, k / Q8_BLOCK),
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!(
                    "tensor '{name}' is int8 with shape {shape:?}: q8_0 needs (N, K) with K a multiple of {Q8_BLOCK}"
                ),
                ))
            }
        };
        if self.get(&scale_name).is_none() {
            return Err(Error::bad_file(
                path,
                format!("tensor '{name}' is int8 but its scales '{scale_name}' are missing"),
            ));
        }
        let (file, entry, dtype) = self.checked(&scale_name, &[rows, cols])?;
        if dtype != DType::F16 {
            return Err(Error::bad_file(
                &file.path,
                format!("tensor '{scale_name}' is {}, expected F16", dtype.name()),
            ));
        }
        Ok(if entry.range.start % 2 == 0 {
            Storage::Mapped { file: Arc::clone(file), range: entry.range.clone() }
        } else {
            Storage::OwnedF16(Arc::new(f16_values(&file.map[entry.range.clone()])))
        })
    }
}

fn f16_values(bytes: &[u8]) -> Vec<f16> {
    bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect()
}

/// Little-endian elements of `dtype` as f32.
fn widen(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        DType::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        DType::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        DType::Q8_0 | DType::Blocks(_) => unreachable!("int8 and blocks are never widened (checked by the callers)"),
    }
}

/// Shard file names from `model.safetensors.index.json`'s `weight_map`, in first-seen order.
fn shards_of(index: &Path) -> Result<Vec<PathBuf>> {
    let json = read_json(index)?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::bad_file(index, "missing object field 'weight_map'"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut shards: Vec<PathBuf> = Vec::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .filter(|f| !f.is_empty() && !f.contains(['/', '\\']) && *f != "..")
            .ok_or_else(|| Error::bad_file(index, format!("weight_map['{tensor}'] is not a plain file name")))?;
        let path = dir.join(file);
        if !shards.contains(&path) {
            shards.push(path);
        }
    }
    if shards.is_empty() {
        return Err(Error::bad_file(index, "weight_map lists no tensors"));
    }
    Ok(shards)
}

/// A file's `__metadata__`: string keys and values.
type Metadata = HashMap<String, String>;

/// Validates the header against the file (offsets in range, contiguous, sizes matching shapes)
/// and returns every tensor's entry with absolute byte ranges.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<(Vec<(String, TensorEntry)>, Metadata)> {
    let bad = |msg: String| Error::bad_file(path, msg);
    if bytes.len() < 8 {
        return Err(bad(format!("file is {} bytes, too short to be a safetensors file", bytes.len())));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if header_len > bytes.len() as u64 - 8 {
        return Err(bad(format!(
            "header length {header_len} is larger than the file ({} bytes): truncated download or not a safetensors file",
            bytes.len()
        )));
    }
    let (n, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| {
        bad(match e {
            SafeTensorError::MetadataIncompleteBuffer => {
                format!("tensor data does not fill the file exactly ({} bytes): truncated or corrupted", bytes.len())
            }
            e => format!("invalid safetensors header: {e}"),
        })
    })?;
    let data_start = 8 + n;
    let mut entries = Vec::new();
    for (name, info) in metadata.tensors() {
        let (s, e) = info.data_offsets;
        let dtype = match info.dtype {
            Dtype::F32 => Some(DType::F32),
            Dtype::F16 => Some(DType::F16),
            Dtype::BF16 => Some(DType::BF16),
            Dtype::I8 => Some(DType::Q8_0),
            _ => None,
        };
        entries.push((
            name,
            TensorEntry {
                file: 0,
                range: data_start + s..data_start + e,
                dtype,
                dtype_name: format!("{:?}", info.dtype),
                shape: info.shape.clone(),
            },
        ));
    }
    Ok((entries, metadata.metadata().clone().unwrap_or_default()))
}
