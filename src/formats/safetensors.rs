//! Safetensors: the header index of one file, and a Hugging Face folder of
//! shards mapped read-only. Every name, dtype and byte range is checked.

use crate::error::{Error, Result};
use crate::kernels::quant::WeightFormat;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.index.keys().cloned().collect();
        v.sort();
        v
    }

    /// Raw bytes, format and shape of a tensor, if present.
    pub fn tensor(&self, name: &str) -> Option<(&[u8], WeightFormat, &[usize])> {
        self.index
            .get(name)
            .map(|(fi, fmt, shape, a, b)| (&self.maps[*fi].1[*a..*b], *fmt, shape.as_slice()))
    }
}
