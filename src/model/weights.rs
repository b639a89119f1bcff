//! Weight sources: a GGUF file or a folder of safetensors shards. Both give
//! matrices as raw bytes in their stored format (quantised or not) and norm
//! vectors as f32, after checking every name, shape and dtype.

use super::gguf::GgufFile;
use crate::error::{Error, Result};
use crate::kernels::quant::{dequantize_row, WeightFormat};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A weight matrix of `rows` x `cols`, rows stored one after another.
#[derive(Clone)]
pub struct Matrix {
    pub data: Tensor,
    pub fmt: WeightFormat,
    pub rows: usize,
    pub cols: usize,
}

/// The parts of a Llama checkpoint, named per source format.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    Embed,
    Output,
    OutputNorm,
    AttnNorm(usize),
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    FfnNorm(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
}

pub trait WeightSource {
    fn path(&self) -> &Path;
    fn name_of(&self, part: Part) -> String;
    /// Raw bytes, format and shape [rows, cols] of a tensor, if present.
    fn raw(&self, name: &str) -> Result<Option<(&[u8], WeightFormat, Vec<usize>)>>;

    /// Called once `bytes` (from `raw`) have been copied into a tensor: a
    /// mapped file may drop those pages from memory (they are read again from
    /// the file if ever needed), so a loaded model is not resident twice.
    fn release(&self, _bytes: &[u8]) {}

    fn has(&self, part: Part) -> Result<bool> {
        Ok(self.raw(&self.name_of(part))?.is_some())
    }

    fn matrix(&self, part: Part, rows: usize, cols: usize, dev: &Device) -> Result<Matrix> {
        let name = self.name_of(part);
        let (bytes, fmt, shape) = self
            .raw(&name)?
            .ok_or_else(|| Error::bad_file(self.path(), format!("missing tensor '{name}'")))?;
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
        let data = Tensor::from_slice(bytes, bytes.len(), dev)?;
        self.release(bytes);
        Ok(Matrix {
            data,
            fmt,
            rows,
            cols,
        })
    }

    fn vector(&self, part: Part, len: usize, dev: &Device) -> Result<Tensor> {
        let name = self.name_of(part);
        let (bytes, fmt, shape) = self
            .raw(&name)?
            .ok_or_else(|| Error::bad_file(self.path(), format!("missing tensor '{name}'")))?;
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
        Ok(Tensor::from_vec(v, len, dev)?)
    }
}

impl WeightSource for GgufFile {
    fn path(&self) -> &Path {
        &self.path
    }
    fn name_of(&self, part: Part) -> String {
        match part {
            Part::Embed => "token_embd.weight".into(),
            Part::Output => "output.weight".into(),
            Part::OutputNorm => "output_norm.weight".into(),
            Part::AttnNorm(i) => format!("blk.{i}.attn_norm.weight"),
            Part::Q(i) => format!("blk.{i}.attn_q.weight"),
            Part::K(i) => format!("blk.{i}.attn_k.weight"),
            Part::V(i) => format!("blk.{i}.attn_v.weight"),
            Part::O(i) => format!("blk.{i}.attn_output.weight"),
            Part::FfnNorm(i) => format!("blk.{i}.ffn_norm.weight"),
            Part::Gate(i) => format!("blk.{i}.ffn_gate.weight"),
            Part::Up(i) => format!("blk.{i}.ffn_up.weight"),
            Part::Down(i) => format!("blk.{i}.ffn_down.weight"),
        }
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

/// Every tensor of one safetensors image: name -> (format, shape, byte range).
pub fn index_safetensors(
    bytes: &[u8],
    path: &Path,
) -> Result<Vec<(String, (WeightFormat, Vec<usize>, usize, usize))>> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::bad_file(path, format!("invalid safetensors file: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let fmt = match view.dtype() {
            safetensors::Dtype::F32 => WeightFormat::F32,
            safetensors::Dtype::F16 => WeightFormat::F16,
            safetensors::Dtype::BF16 => WeightFormat::BF16,
            other => {
                return Err(Error::bad_file(
                    path,
                    format!("tensor '{name}' has dtype {other:?} (supported: F32, F16, BF16)"),
                ))
            }
        };
        let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
        out.push((
            name,
            (fmt, view.shape().to_vec(), start, start + view.data().len()),
        ));
    }
    Ok(out)
}

/// A Hugging Face model folder: one or more *.safetensors files.
pub struct SafetensorsDir {
    dir: PathBuf,
    maps: Vec<(PathBuf, memmap2::Mmap)>,
    /// name -> (file index, format, shape, byte range in that file)
    index: HashMap<String, (usize, WeightFormat, Vec<usize>, usize, usize)>,
}

impl SafetensorsDir {
    pub fn open(dir: &Path) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::bad_file(
                dir,
                "no *.safetensors files in this model folder",
            ));
        }
        let mut maps = Vec::new();
        let mut index = HashMap::new();
        for (fi, path) in files.into_iter().enumerate() {
            let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: read-only map of a file we do not modify.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(&path, e))?;
            for (name, entry) in index_safetensors(&map, &path)? {
                if index
                    .insert(name.clone(), (fi, entry.0, entry.1, entry.2, entry.3))
                    .is_some()
                {
                    return Err(Error::bad_file(
                        &path,
                        format!("tensor '{name}' appears in two shards"),
                    ));
                }
            }
            maps.push((path, map));
        }
        Ok(SafetensorsDir {
            dir: dir.to_path_buf(),
            maps,
            index,
        })
    }

    /// The files, for hashing.
    pub fn files(&self) -> Vec<&Path> {
        self.maps.iter().map(|(p, _)| p.as_path()).collect()
    }
}

impl WeightSource for SafetensorsDir {
    fn path(&self) -> &Path {
        &self.dir
    }
    fn name_of(&self, part: Part) -> String {
        let l = |i: usize, s: &str| format!("model.layers.{i}.{s}.weight");
        match part {
            Part::Embed => "model.embed_tokens.weight".into(),
            Part::Output => "lm_head.weight".into(),
            Part::OutputNorm => "model.norm.weight".into(),
            Part::AttnNorm(i) => l(i, "input_layernorm"),
            Part::Q(i) => l(i, "self_attn.q_proj"),
            Part::K(i) => l(i, "self_attn.k_proj"),
            Part::V(i) => l(i, "self_attn.v_proj"),
            Part::O(i) => l(i, "self_attn.o_proj"),
            Part::FfnNorm(i) => l(i, "post_attention_layernorm"),
            Part::Gate(i) => l(i, "mlp.gate_proj"),
            Part::Up(i) => l(i, "mlp.up_proj"),
            Part::Down(i) => l(i, "mlp.down_proj"),
        }
    }
    fn raw(&self, name: &str) -> Result<Option<(&[u8], WeightFormat, Vec<usize>)>> {
        Ok(self
            .index
            .get(name)
            .map(|(fi, fmt, shape, a, b)| (&self.maps[*fi].1[*a..*b], *fmt, shape.clone())))
    }
}
