//! Loading a model: the file or folder, its tokenizer and its fingerprint.
//! This sits above both `model` (weights, forward pass) and `tokenizer`,
//! which know nothing of each other.

use crate::error::{Error, Result};
use crate::formats::gguf::GgufFile;
use crate::formats::safetensors::SafetensorsDir;
use crate::formats::sha256_file;
use crate::model::arch::ArchSpec;
use crate::model::transformer::Transformer;
use crate::model::LoadOptions;
use crate::tokenizer::Tokenizer;
use candle_core::Device;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What was loaded, for run records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: &'static str,
    /// sha256 of the one model file, or, for a folder, over the names and
    /// hashes of every file that changes the outputs (weights, config.json,
    /// tokenizer and generation files), in name order.
    pub sha256: String,
    pub files: Vec<(String, String)>,
    pub config: ArchSpec,
    /// Tensors of the file the forward pass does not use (only with
    /// `--allow-extra-tensors`; otherwise loading refuses them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_tensors: Vec<String>,
}

pub struct LoadedModel {
    pub model: Transformer,
    /// Shared, so a stop-string rule can decode on the engine's side.
    pub tokenizer: std::sync::Arc<Tokenizer>,
    pub info: ModelInfo,
}

/// Refuse, before loading, a model whose weights would not fit in memory.
fn check_memory(path: &Path, weight_bytes: u64, config: &ArchSpec) -> Result<()> {
    let need = weight_bytes + Transformer::load_overhead_bytes(config, weight_bytes);
    crate::model::check_memory(need, || format!("{}: loading the model", path.display()))
}

/// Only the tokenizer of a .gguf file (its metadata: a vocab-only GGUF
/// with no tensors is enough) or of a Hugging Face model folder.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if path.is_dir() {
        Tokenizer::from_hf_dir(path)
    } else {
        Tokenizer::from_gguf(&GgufFile::open(path)?)
    }
}

/// Load a .gguf file or a Hugging Face model folder.
pub fn load(path: &Path, dev: &Device) -> Result<LoadedModel> {
    load_with(path, dev, &LoadOptions::default())
}

pub fn load_with(path: &Path, dev: &Device, opts: &LoadOptions) -> Result<LoadedModel> {
    if path.is_dir() {
        load_hf_dir(path, dev, opts)
    } else if path.is_file() {
        load_gguf(path, dev, opts)
    } else {
        Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ))
    }
}

fn load_gguf(path: &Path, dev: &Device, opts: &LoadOptions) -> Result<LoadedModel> {
    let g = GgufFile::open(path)?;
    let config = ArchSpec::from_gguf(&g)?;
    check_memory(
        path,
        g.tensors
            .iter()
            .filter_map(|t| t.range)
            .map(|(a, b)| (b - a) as u64)
            .sum(),
        &config,
    )?;
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
    let (model, ignored_tensors) = Transformer::load(&g, config.clone(), dev, opts)?;
    let sha = sha256_file(path)?;
    Ok(LoadedModel {
        model,
        tokenizer: std::sync::Arc::new(tokenizer),
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
            ignored_tensors,
        },
    })
}

/// Files of a Hugging Face folder besides the weights that change what the
/// model computes or how text becomes tokens; each is hashed if present.
pub const HF_OUTPUT_FILES: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

fn load_hf_dir(dir: &Path, dev: &Device, opts: &LoadOptions) -> Result<LoadedModel> {
    let config = ArchSpec::from_hf_json(&dir.join("config.json"))?;
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
    let st = SafetensorsDir::open(dir)?;
    let bytes: u64 = st
        .files()
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    check_memory(dir, bytes, &config)?;
    let (model, ignored_tensors) = Transformer::load(&st, config.clone(), dev, opts)?;
    let mut paths: Vec<PathBuf> = st.files().iter().map(|p| p.to_path_buf()).collect();
    paths.extend(
        HF_OUTPUT_FILES
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.is_file()),
    );
    let mut files = Vec::new();
    for f in &paths {
        files.push((
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            sha256_file(f)?,
        ));
    }
    files.sort();
    let mut h = Sha256::new();
    for (name, sha) in &files {
        h.update(name.as_bytes());
        h.update(sha.as_bytes());
    }
    Ok(LoadedModel {
        model,
        tokenizer: std::sync::Arc::new(tokenizer),
        info: ModelInfo {
            path: dir.to_path_buf(),
            format: "safetensors",
            sha256: hex::encode(h.finalize()),
            files,
            config,
            ignored_tensors,
        },
    })
}
