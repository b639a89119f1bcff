//! Model files: formats, the typed config, weights and the forward pass.

pub mod config;
pub mod gguf;
pub mod layers;
pub mod llama;
pub mod weights;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use candle_core::Device;
use config::LlamaConfig;
use gguf::GgufFile;
use llama::Llama;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What was loaded, for run records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: &'static str,
    /// sha256 of the one model file, or over the sorted shard hashes.
    pub sha256: String,
    pub files: Vec<(String, String)>,
    pub config: LlamaConfig,
}

pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub info: ModelInfo,
}

/// sha256 of a file. Remembered for the life of the process by path, size
/// and modification time, so a model checked by `fetch` is not read again by `load`.
pub fn sha256_file(path: &Path) -> Result<String> {
    type Key = (PathBuf, u64, Option<std::time::SystemTime>);
    static SEEN: std::sync::Mutex<Vec<(Key, String)>> = std::sync::Mutex::new(Vec::new());
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let key: Key = (
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        meta.len(),
        meta.modified().ok(),
    );
    if let Some((_, h)) = SEEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
    {
        return Ok(h.clone());
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    let hex = hex::encode(h.finalize());
    SEEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, hex.clone()));
    Ok(hex)
}

/// Bytes of memory we may use: $INFER_EVAL_MEMORY_LIMIT (bytes, or with a
/// K/M/G suffix), else the kernel's MemAvailable; None if unknown.
pub fn memory_limit() -> Option<u64> {
    if let Ok(v) = std::env::var("INFER_EVAL_MEMORY_LIMIT") {
        let v = v.trim();
        let (num, mult) = match v.char_indices().last() {
            Some((i, 'K' | 'k')) => (&v[..i], 1u64 << 10),
            Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
            Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
            _ => (v, 1),
        };
        return num
            .trim()
            .parse::<u64>()
            .ok()
            .map(|n| n.saturating_mul(mult));
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Refuse, before loading, a model whose weights would not fit in memory.
fn check_memory(path: &Path, weight_bytes: u64) -> Result<()> {
    if let Some(limit) = memory_limit() {
        // Weights are copied into tensors once; allow 10% for tables, caches and buffers.
        let need = weight_bytes + weight_bytes / 10;
        if need > limit {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            return Err(Error::Resource(format!(
                "{}: the model needs about {:.2} GiB of memory but only {:.2} GiB are available (INFER_EVAL_MEMORY_LIMIT overrides the limit)",
                path.display(),
                gib(need),
                gib(limit)
            )));
        }
    }
    Ok(())
}

/// Load a .gguf file or a Hugging Face model folder.
pub fn load(path: &Path, dev: &Device) -> Result<LoadedModel> {
    if path.is_dir() {
        load_hf_dir(path, dev)
    } else if path.is_file() {
        load_gguf(path, dev)
    } else {
        Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ))
    }
}

fn load_gguf(path: &Path, dev: &Device) -> Result<LoadedModel> {
    let g = GgufFile::open(path)?;
    check_memory(
        path,
        g.tensors
            .iter()
            .filter_map(|t| t.range)
            .map(|(a, b)| (b - a) as u64)
            .sum(),
    )?;
    let config = LlamaConfig::from_gguf(&g)?;
    let tokenizer = Tokenizer::from_gguf(&g)?;
    if tokenizer.vocab_size != config.vocab_size {
        return Err(Error::bad_file(
            path,
            format!(
                "the tokenizer has {} tokens but the embedding has {} rows",
                tokenizer.vocab_size, config.vocab_size
            ),
        ));
    }
    let factors = match g.tensor("rope_freqs.weight") {
        Some(t) => {
            let b = g.tensor_bytes(t)?;
            if t.format() != Some(crate::kernels::quant::WeightFormat::F32)
                || t.n_elems() != config.head_dim / 2
            {
                return Err(Error::bad_file(
                    path,
                    "rope_freqs.weight must be F32 of head_dim/2 elements",
                ));
            }
            Some(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    let model = Llama::load(&g, config.clone(), factors.as_deref(), dev)?;
    let sha = sha256_file(path)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        info: ModelInfo {
            path: path.to_path_buf(),
            format: "gguf",
            files: vec![(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into(),
                sha.clone(),
            )],
            sha256: sha,
            config,
        },
    })
}

fn load_hf_dir(dir: &Path, dev: &Device) -> Result<LoadedModel> {
    let config = LlamaConfig::from_hf_json(&dir.join("config.json"))?;
    let tokenizer = Tokenizer::from_hf_dir(dir)?;
    if tokenizer.vocab_size > config.vocab_size {
        return Err(Error::bad_file(
            dir.join("tokenizer.json"),
            format!(
                "the tokenizer has {} tokens but config.json says vocab_size {}",
                tokenizer.vocab_size, config.vocab_size
            ),
        ));
    }
    let st = weights::SafetensorsDir::open(dir)?;
    let bytes: u64 = st
        .files()
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    check_memory(dir, bytes)?;
    let model = Llama::load(&st, config.clone(), None, dev)?;
    let mut files = Vec::new();
    for f in st.files() {
        files.push((
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            sha256_file(f)?,
        ));
    }
    let mut h = Sha256::new();
    for (name, sha) in &files {
        h.update(name.as_bytes());
        h.update(sha.as_bytes());
    }
    Ok(LoadedModel {
        model,
        tokenizer,
        info: ModelInfo {
            path: dir.to_path_buf(),
            format: "safetensors",
            sha256: hex::encode(h.finalize()),
            files,
            config,
        },
    })
}
