//! Weight sources: a GGUF file or a folder of safetensors shards. Both give
//! matrices as raw bytes in their stored format (quantised or not) and norm
//! vectors as f32, after checking every name, shape and dtype.

use crate::error::{Error, Result};
use crate::formats::gguf::GgufFile;
use crate::formats::safetensors::SafetensorsDir;
use crate::kernels::quant::{dequantize_row, WeightFormat};
use candle_core::{Device, Tensor};
use std::path::Path;

/// A weight matrix of `rows` x `cols`, rows stored one after another.
#[derive(Clone)]
pub struct Matrix {
    pub data: Tensor,
    pub fmt: WeightFormat,
    pub rows: usize,
    pub cols: usize,
    /// `data` is in `kernels::gemm_int`'s interleaved layout (CPU matrices
    /// of Q4_0, Q4_1 and Q8_0 that are only multiplied, never gathered).
    pub interleaved: bool,
}

use super::arch::Family;
pub use super::names::Part;

pub trait WeightSource {
    fn path(&self) -> &Path;
    /// Every tensor the source holds.
    fn names(&self) -> Vec<String>;
    /// The name of `part` in this source's convention.
    fn name_of(&self, part: Part, family: Family) -> String;
    /// Raw bytes, format and shape [rows, cols] of a tensor, if present.
    fn raw(&self, name: &str) -> Result<Option<(&[u8], WeightFormat, Vec<usize>)>>;

    /// Called once `bytes` (from `raw`) have been copied into a tensor: a
    /// mapped file may drop those pages from memory (they are read again from
    /// the file if ever needed), so a loaded model is not resident twice.
    fn release(&self, _bytes: &[u8]) {}
}

/// Tensors that a checkpoint may carry and the forward pass rightly ignores:
/// precomputed RoPE inverse frequencies of older Hugging Face checkpoints
/// (we compute our own, docs/DETERMINISM.md §5).
fn ignorable(name: &str) -> bool {
    name.ends_with(".rotary_emb.inv_freq")
}

/// Reads a model's tensors from a source onto a device, remembering which it
/// used, so that a tensor the forward pass would silently ignore (a bias, a
/// norm of another architecture) is reported instead of dropped.
pub struct WeightReader<'a> {
    src: &'a dyn WeightSource,
    family: Family,
    dev: &'a Device,
    used: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl<'a> WeightReader<'a> {
    pub fn new(src: &'a dyn WeightSource, family: Family, dev: &'a Device) -> Self {
        WeightReader {
            src,
            family,
            dev,
            used: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        self.src.path()
    }

    pub fn name_of(&self, part: Part) -> String {
        self.src.name_of(part, self.family)
    }

    pub fn has(&self, part: Part) -> Result<bool> {
        Ok(self.src.raw(&self.name_of(part))?.is_some())
    }

    fn take(&self, part: Part) -> Result<(String, &'a [u8], WeightFormat, Vec<usize>)> {
        let name = self.name_of(part);
        let (bytes, fmt, shape) = self
            .src
            .raw(&name)?
            .ok_or_else(|| Error::bad_file(self.path(), format!("missing tensor '{name}'")))?;
        self.used.borrow_mut().insert(name.clone());
        Ok((name, bytes, fmt, shape))
    }

    pub fn matrix(&self, part: Part, rows: usize, cols: usize) -> Result<Matrix> {
        let (name, bytes, fmt, shape) = self.take(part)?;
        if shape != [rows, cols] {
            return Err(Error::bad_file(
                self.path(),
                format!("tensor '{name}' has shape {shape:?}, expected [{rows}, {cols}]"),
            ));
        }
        if let Some(i) = crate::kernels::quant::first_non_finite(fmt, bytes) {
            return Err(Error::bad_file(
                self.path(),
                format!(
                    "tensor '{name}' holds NaN or infinity ({} block {i}); the file is corrupt",
                    fmt.name()
                ),
            ));
        }
        // CPU matrices that are only multiplied are interleaved once here
        // for the integer tile (same bits, same size); the embedding is
        // gathered by row, and a head tied to it stays in the GGUF layout.
        let interleaved = self.dev.is_cpu()
            && part != Part::Embed
            && crate::kernels::gemm_int::packable(fmt, rows);
        let data = if interleaved {
            let packed = crate::kernels::gemm_int::pack(fmt, bytes, rows, cols);
            Tensor::from_vec(packed, bytes.len(), self.dev)?
        } else {
            Tensor::from_slice(bytes, bytes.len(), self.dev)?
        };
        self.src.release(bytes);
        Ok(Matrix {
            data,
            fmt,
            rows,
            cols,
            interleaved,
        })
    }

    /// A vector of `len` values, dequantised to f32 on the host.
    pub fn host_vector(&self, part: Part, len: usize) -> Result<Vec<f32>> {
        let (name, bytes, fmt, shape) = self.take(part)?;
        if shape.iter().product::<usize>() != len || fmt.row_bytes(len) != Some(bytes.len()) {
            return Err(Error::bad_file(
                self.path(),
                format!("tensor '{name}' has shape {shape:?}, expected [{len}]"),
            ));
        }
        let mut v = vec![0f32; len];
        dequantize_row(fmt, bytes, &mut v);
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::bad_file(
                self.path(),
                format!("tensor '{name}' holds a non-finite value at {i}"),
            ));
        }
        Ok(v)
    }

    pub fn vector(&self, part: Part, len: usize) -> Result<Tensor> {
        let v = self.host_vector(part, len)?;
        Ok(Tensor::from_vec(v, len, self.dev)?)
    }

    /// Tensors of the source that nothing read (beyond the known ignorable ones).
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.src
            .names()
            .into_iter()
            .filter(|n| !used.contains(n) && !ignorable(n))
            .collect()
    }

    /// An error naming the unused tensors, unless `allow` (then they are returned).
    pub fn check_unused(&self, allow: bool) -> Result<Vec<String>> {
        let unused = self.unused();
        if unused.is_empty() || allow {
            return Ok(unused);
        }
        let shown: Vec<&str> = unused.iter().take(8).map(|s| s.as_str()).collect();
        let more = if unused.len() > shown.len() {
            format!(" and {} more", unused.len() - shown.len())
        } else {
            String::new()
        };
        Err(Error::bad_file(
            self.path(),
            format!(
                "{} tensor(s) that this architecture does not use: {}{more}; the file is probably another architecture or variant (e.g. attention biases), which would run wrong. --allow-extra-tensors loads it anyway and records the ignored tensors",
                unused.len(),
                shown.join(", ")
            ),
        ))
    }
}

impl WeightSource for GgufFile {
    fn path(&self) -> &Path {
        &self.path
    }
    fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.name.clone()).collect()
    }
    fn name_of(&self, part: Part, _family: Family) -> String {
        super::names::gguf(part)
    }
    fn release(&self, bytes: &[u8]) {
        self.release_pages(bytes)
    }
    fn raw(&self, name: &str) -> Result<Option<(&[u8], WeightFormat, Vec<usize>)>> {
        let Some(t) = self.tensor(name) else {
            return Ok(None);
        };
        let bytes = self.tensor_bytes(t)?;
        let fmt = t.format().expect("tensor_bytes checked the type");
        // GGUF lists dims fastest first; we speak [rows, cols].
        let shape: Vec<usize> = t.dims.iter().rev().copied().collect();
        Ok(Some((bytes, fmt, shape)))
    }
}

impl WeightSource for SafetensorsDir {
    fn path(&self) -> &Path {
        self.dir()
    }
    fn names(&self) -> Vec<String> {
        SafetensorsDir::names(self)
    }
    fn name_of(&self, part: Part, family: Family) -> String {
        super::names::hf(part, family)
    }
    fn raw(&self, name: &str) -> Result<Option<(&[u8], WeightFormat, Vec<usize>)>> {
        Ok(self
            .tensor(name)
            .map(|(bytes, fmt, shape)| (bytes, fmt, shape.to_vec())))
    }
}
