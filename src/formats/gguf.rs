//! A GGUF reader that trusts nothing: every count, length, offset and shape
//! is checked against the file before anything is allocated or sliced.
//! Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md

use crate::error::{Error, Result};
use crate::kernels::quant::WeightFormat;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
const MAX_DIMS: u32 = 4;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    /// A stable byte encoding (for hashing tokenizer metadata).
    pub fn hash_into(&self, h: &mut impl sha2::Digest) {
        match self {
            Value::String(s) => {
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Value::Array(a) => {
                h.update((a.len() as u64).to_le_bytes());
                a.iter().for_each(|v| v.hash_into(h));
            }
            Value::Bool(b) => h.update([*b as u8]),
            Value::F32(v) => h.update(v.to_le_bytes()),
            Value::F64(v) => h.update(v.to_le_bytes()),
            other => h.update(
                other
                    .as_u64()
                    .map(|v| v as i128)
                    .unwrap_or(-1)
                    .to_le_bytes(),
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: dims[0] is the fastest-varying (columns).
    pub dims: Vec<usize>,
    pub ggml_type: u32,
    /// Absolute byte range in the file, when the type is one we know.
    pub range: Option<(usize, usize)>,
}

impl TensorInfo {
    pub fn format(&self) -> Option<WeightFormat> {
        WeightFormat::from_ggml_type(self.ggml_type)
    }
    pub fn n_elems(&self) -> usize {
        self.dims.iter().product()
    }
}

pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    data: Bytes,
}

/// The file's bytes: mapped from disk, or owned (tests, fuzzing).
enum Bytes {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::bad_file(
            self.path,
            format!("not a valid GGUF file: {msg} (at byte {})", self.pos),
        )
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.buf.len() - self.pos {
            return Err(self.err(format!(
                "truncated: {what} needs {n} bytes but only {} remain",
                self.buf.len() - self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > self.remaining() as u64 {
            return Err(self.err(format!(
                "{what}: string length {n} extends past the end of the file (truncated or corrupt)"
            )));
        }
        let bytes = self.take(n as usize, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.err(format!("{what}: string is not valid UTF-8")))
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.take(1, key)?[0]),
            1 => Value::I8(self.take(1, key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.take(2, key)?.try_into().unwrap())),
            3 => Value::I16(i16::from_le_bytes(self.take(2, key)?.try_into().unwrap())),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(self.u32(key)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(key)?)),
            7 => match self.take(1, key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(self.err(format!(
                        "metadata '{key}': bool byte {b} is neither 0 nor 1"
                    )))
                }
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth > 2 {
                    return Err(self.err(format!("metadata '{key}': arrays nested too deep")));
                }
                let ity = self.u32(key)?;
                let n = self.u64(key)?;
                let min_size: u64 = match ity {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4 | 5 | 6 => 4,
                    8..=12 => 8,
                    _ => {
                        return Err(
                            self.err(format!("metadata '{key}': unknown array item type {ity}"))
                        )
                    }
                };
                if n.saturating_mul(min_size) > self.remaining() as u64 {
                    return Err(self.err(format!("metadata '{key}': array of {n} items extends past the end of the file (truncated or corrupt)")));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(ity, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            _ => return Err(self.err(format!("metadata '{key}': unknown value type {ty}"))),
        })
    }
}

impl GgufFile {
    /// Drop the whole pages inside `bytes` (a slice of this file) from memory.
    /// A hint: errors are ignored, and the bytes stay readable.
    pub fn release_pages(&self, bytes: &[u8]) {
        #[cfg(unix)]
        if let Bytes::Map(m) = &self.data {
            const PAGE: usize = 4096;
            let base = m.as_ptr() as usize;
            let (start, end) = (
                bytes.as_ptr() as usize,
                bytes.as_ptr() as usize + bytes.len(),
            );
            if start < base || end > base + m.len() {
                return;
            }
            let first = (start - base).div_ceil(PAGE) * PAGE;
            let last = (end - base) / PAGE * PAGE;
            if last > first {
                // Safety: the map is a read-only, private view of the file;
                // dropped pages are read back from the file unchanged if used.
                let _ = unsafe {
                    m.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        first,
                        last - first,
                    )
                };
            }
        }
    }

    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; we never hand out references that
        // outlive it, and a file changed under us is outside our contract.
        let data = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let data = Bytes::Map(data);
        let (version, metadata, tensors) = Self::parse(&data, path)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data,
        })
    }

    /// Parse a GGUF image held in memory; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let (version, metadata, tensors) = Self::parse(&bytes, path)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data: Bytes::Owned(bytes),
        })
    }

    /// A tensor-less file with the given metadata (tests, fuzzing).
    pub fn from_metadata(path: &Path, metadata: BTreeMap<String, Value>) -> Self {
        GgufFile {
            path: path.to_path_buf(),
            version: 3,
            metadata,
            tensors: Vec::new(),
            data: Bytes::Owned(Vec::new()),
        }
    }

    fn parse(buf: &[u8], path: &Path) -> Result<(u32, BTreeMap<String, Value>, Vec<TensorInfo>)> {
        let mut r = Reader { buf, pos: 0, path };
        if buf.len() < 4 || &buf[..4] != MAGIC {
            return Err(r.err("missing GGUF magic (is this a GGUF model file?)"));
        }
        r.pos = 4;
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(r.err(format!(
                "unsupported GGUF version {version} (supported: 2, 3)"
            )));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Each metadata entry takes at least 12 bytes, each tensor info at least 24.
        if n_kv.saturating_mul(12) > r.remaining() as u64 {
            return Err(r.err(format!(
                "metadata count {n_kv} extends past the end of the file (truncated or corrupt)"
            )));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32("metadata type")?;
            let v = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(r.err(format!("duplicate metadata key '{key}'")));
            }
        }
        if n_tensors.saturating_mul(24) > r.remaining() as u64 {
            return Err(r.err(format!(
                "tensor count {n_tensors} extends past the end of the file (truncated or corrupt)"
            )));
        }
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let nd = r.u32("tensor dims")?;
            if nd == 0 || nd > MAX_DIMS {
                return Err(r.err(format!(
                    "tensor '{name}': {nd} dimensions (1 to {MAX_DIMS} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                let d = r.u64("tensor dim")?;
                if d == 0 || d > (1 << 40) {
                    return Err(r.err(format!("tensor '{name}': dimension {d} is out of range")));
                }
                dims.push(d as usize);
            }
            let ty = r.u32("tensor type")?;
            let off = r.u64("tensor offset")?;
            raw.push((name, dims, ty, off));
        }
        let align = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 20 => a as usize,
                _ => return Err(r.err("general.alignment must be a power of two")),
            },
        };
        let data_start = r.pos.div_ceil(align) * align;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut names = std::collections::HashSet::new();
        for (name, dims, ty, off) in raw {
            if !names.insert(name.clone()) {
                return Err(r.err(format!("duplicate tensor '{name}'")));
            }
            let n: usize = dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| r.err(format!("tensor '{name}': shape {dims:?} overflows")))?;
            let range = match WeightFormat::from_ggml_type(ty) {
                None => None,
                Some(f) => {
                    let bytes = f.row_bytes(dims[0]).map(|rb| rb * (n / dims[0])).ok_or_else(|| {
                        r.err(format!(
                            "tensor '{name}': row of {} elements is not a whole number of {} blocks",
                            dims[0],
                            f.name()
                        ))
                    })?;
                    let start = (data_start as u64)
                        .checked_add(off)
                        .filter(|s| s % align as u64 == 0 || off == 0);
                    let start =
                        start.ok_or_else(|| r.err(format!("tensor '{name}': bad offset {off}")))?;
                    let end = start.checked_add(bytes as u64).filter(|&e| e <= buf.len() as u64).ok_or_else(|| {
                        Error::bad_file(
                            path,
                            format!(
                                "truncated or corrupt GGUF: tensor '{name}' ({} bytes at offset {start}) extends past the end of the file ({} bytes)",
                                bytes,
                                buf.len()
                            ),
                        )
                    })?;
                    Some((start as usize, end as usize))
                }
            };
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type: ty,
                range,
            });
        }
        Ok((version, metadata, tensors))
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Raw bytes of a tensor whose type we support.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8]> {
        match t.range {
            Some((a, b)) => Ok(&self.data[a..b]),
            None => Err(Error::bad_file(
                &self.path,
                format!("tensor '{}' has GGML type {}, which infer-eval does not support (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K)", t.name, t.ggml_type),
            )),
        }
    }

    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata
            .get(key)
            .ok_or_else(|| Error::bad_file(&self.path, format!("missing metadata key '{key}'")))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get(key)?.as_u64().ok_or_else(|| {
            Error::bad_file(
                &self.path,
                format!("metadata '{key}' is not an unsigned integer"),
            )
        })
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key)?
            .as_f64()
            .ok_or_else(|| Error::bad_file(&self.path, format!("metadata '{key}' is not a number")))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| Error::bad_file(&self.path, format!("metadata '{key}' is not a string")))
    }
}
