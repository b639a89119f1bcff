//! Model file formats: GGUF and safetensors readers that check every count,
//! offset and shape against the file, and file hashing. They know nothing of
//! models or tokenizers; both read through them.

pub mod gguf;
pub mod gguf_write;
pub mod safetensors;
pub mod yaml;

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

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
