//! The download cache: where fetched models and archives live, and the
//! names and hashes the fetchers check them by.

use crate::error::Result;
use std::path::{Path, PathBuf};

/// Root of infer-eval's cache: $INFER_EVAL_CACHE, else the user cache dir.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("INFER_EVAL_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("infer-eval")))
        .unwrap_or_else(|| PathBuf::from(".cache/infer-eval"))
}

pub(super) fn sha256_of(path: &Path) -> Result<String> {
    crate::formats::sha256_file(path)
}

/// A path beside `dest` that no other thread or process uses.
pub(super) fn unique_path(dir: &Path, dest: &Path, what: &str) -> PathBuf {
    crate::fsio::unique_sibling(
        dir,
        &dest.file_name().unwrap_or_default().to_string_lossy(),
        what,
    )
}
