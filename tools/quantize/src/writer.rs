//! The safetensors writer: header, then tensor bytes at their planned offsets, into a temporary
//! file beside OUT that replaces OUT only when complete.
//!
//! Writing beside OUT (not in /tmp) keeps the final rename on one filesystem, so OUT is either
//! the old file or the whole new one, never a torn write; and any error (a full disk, a bad
//! tensor) removes the temporary file on the way out.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Metadata, TensorInfo};

use crate::error::{Error, Result};
use crate::plan::Slot;

/// The data section starts at a multiple of this, so mapped tensors are aligned for any element
/// type (and for SIMD loads of a whole cache line).
pub const DATA_ALIGN: usize = 64;

/// The length-prefixed header: 8 bytes of little-endian length, then the JSON, padded with
/// spaces (which the safetensors format allows) so the data starts at a multiple of
/// [`DATA_ALIGN`].
pub fn header(metadata: HashMap<String, String>, slots: &[Slot]) -> Result<Vec<u8>> {
    let infos: Vec<(String, TensorInfo)> = slots
        .iter()
        .map(|s| (s.name.clone(), TensorInfo { dtype: s.dtype, shape: s.shape.clone(), data_offsets: s.offsets }))
        .collect();
    // Metadata::new checks what readers will check: offsets contiguous and matching the shapes.
    Metadata::new(None, infos.clone())
        .map_err(|e| Error::runtime(format!("internal error: the planned layout is not valid safetensors: {e}")))?;
    // Serialized by hand, in a fixed order (metadata keys sorted, then tensors in data order), so
    // the same input and flags give the same bytes.
    let internal = |e: serde_json::Error| Error::runtime(format!("internal error: serializing the header: {e}"));
    let mut obj = serde_json::Map::new();
    let sorted: BTreeMap<String, String> = metadata.into_iter().collect();
    obj.insert("__metadata__".into(), serde_json::to_value(sorted).map_err(internal)?);
    for (name, info) in infos {
        obj.insert(name, serde_json::to_value(info).map_err(internal)?);
    }
    let mut json = serde_json::to_vec(&obj).map_err(internal)?;
    let padded = (8 + json.len()).next_multiple_of(DATA_ALIGN) - 8;
    json.resize(padded, b' ');
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// The file being written: `.NAME.tmp-PID` beside OUT until [`Output::commit`].
pub struct Output {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    data_start: u64,
    /// Set once the file is OUT; until then, dropping the output removes it.
    committed: bool,
}

impl Output {
    /// Creates the temporary file and writes the header.
    pub fn create(dest: &Path, header: &[u8]) -> Result<Output> {
        let name = dest.file_name().ok_or_else(|| Error::usage(format!("{}: not a file name", dest.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("cannot create", &tmp, e))?;
        crate::interrupt::set_temp_file(Some(tmp.clone()));
        let mut out = Output {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
            data_start: header.len() as u64,
            committed: false,
        };
        out.write_at_file(0, header)?;
        Ok(out)
    }

    fn write_at_file(&mut self, pos: u64, bytes: &[u8]) -> Result<()> {
        let file = self.file.as_mut().expect("open until commit");
        file.seek(SeekFrom::Start(pos))
            .and_then(|_| file.write_all(bytes))
            .map_err(|e| Error::io("writing", &self.tmp, e))
    }

    /// Writes `bytes` at `offset` of the data section.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.write_at_file(self.data_start + offset as u64, bytes)
    }

    /// Flushes the file to disk and moves it to OUT. Without `replace`, an OUT that appeared
    /// meanwhile is not overwritten.
    pub fn commit(mut self, replace: bool) -> Result<()> {
        let file = self.file.take().expect("open until commit");
        // A full disk can surface only here (delayed allocation); the data must be on disk
        // before the rename makes it OUT.
        file.sync_all().map_err(|e| Error::io("writing", &self.tmp, e))?;
        drop(file);
        if replace {
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io("cannot rename to", &self.dest, e))?;
        } else {
            // A hard link fails if OUT exists: no window in which another file there is lost.
            match std::fs::hard_link(&self.tmp, &self.dest) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.tmp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::runtime(format!(
                        "{} appeared while writing; not replaced (use --force to overwrite)",
                        self.dest.display()
                    )))
                }
                // Filesystems without hard links: check, then rename.
                Err(_) if self.dest.exists() => {
                    return Err(Error::runtime(format!(
                        "{} appeared while writing; not replaced (use --force to overwrite)",
                        self.dest.display()
                    )))
                }
                Err(_) => {
                    std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io("cannot rename to", &self.dest, e))?
                }
            }
        }
        self.committed = true;
        crate::interrupt::set_temp_file(None);
        Ok(())
    }
}

impl Drop for Output {
    /// An unfinished output is removed: an error never leaves a partial file behind.
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
            crate::interrupt::set_temp_file(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Part;
    use safetensors::{Dtype, SafeTensors};

    #[test]
    fn header_pads_data_start_to_64_and_reads_back() {
        let slots = vec![
            Slot { item: 0, part: Part::Values, name: "a".into(), dtype: Dtype::F32, shape: vec![3], offsets: (0, 12) },
            Slot { item: 1, part: Part::Values, name: "b".into(), dtype: Dtype::I8, shape: vec![5], offsets: (12, 17) },
        ];
        let meta = HashMap::from([("quill.format".to_string(), "1".to_string())]);
        let mut bytes = header(meta, &slots).unwrap();
        assert_eq!(bytes.len() % DATA_ALIGN, 0);
        bytes.extend(std::iter::repeat_n(7u8, 17));
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("b").unwrap().data(), [7u8; 5]);
        let (_, m) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["quill.format"], "1");
    }

    #[test]
    fn dropped_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.safetensors");
        let mut out = Output::create(&dest, b"12345678").unwrap();
        out.write(0, b"data").unwrap();
        drop(out);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_without_replace_keeps_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.safetensors");
        std::fs::write(&dest, b"old").unwrap();
        let out = Output::create(&dest, b"12345678").unwrap();
        assert!(out.commit(false).unwrap_err().to_string().contains("--force"));
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let out = Output::create(&dest, b"12345678").unwrap();
        out.commit(true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"12345678");
    }
}
