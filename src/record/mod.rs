//! Records: the JSON record of a generation run (`--out`), the run
//! environment, and atomic writes.

pub mod dvc;
pub mod environment;
pub mod flat;

use crate::error::{Error, Result};
use crate::sampling::SamplingParams;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRecord {
    pub name: String,
    pub path: String,
    pub format: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOptions {
    pub threads: usize,
    pub batch_size: usize,
    pub prefill_chunk: usize,
    pub isa: String,
    pub chat: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SequenceRecord {
    pub id: String,
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub output_ids: Vec<u32>,
    pub text: String,
    /// sha256 of output_ids as little-endian u32.
    pub digest: String,
    /// sha256 of the f32 bits of every step's logits.
    pub logits_digest: String,
    pub stop: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub infer_eval_version: String,
    pub determinism_version: u32,
    pub model: ModelRecord,
    pub tokenizer_sha256: String,
    pub sampling: SamplingParams,
    pub options: RunOptions,
    pub sequences: Vec<SequenceRecord>,
    /// sha256 over the sequence digests in order.
    pub digest: String,
}

/// The size of `path`, which must be a regular file (a symlink to one is
/// followed): a folder, FIFO, socket or device is refused by name before
/// anything reads it (a FIFO would block, a device never end).
pub fn regular_size(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::bad_file(
            path,
            "is a folder; a file is expected here",
        ));
    }
    if !meta.is_file() {
        return Err(Error::bad_file(
            path,
            "is not a regular file (a FIFO, socket or device); a file is expected here",
        ));
    }
    Ok(meta.len())
}

/// Read `path`, a regular file of at most `max` bytes (refused by its size
/// before it is read).
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>> {
    // Checked on the open handle, and read at most max + 1 bytes, so a file
    // swapped or growing between the check and the read is still bounded.
    regular_size(path)?;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::bad_file(
            path,
            "is not a regular file (a FIFO, socket or device); a file is expected here",
        ));
    }
    let too_big = |n: u64| Error::bad_file(path, format!("{n} bytes; at most {max} are read here"));
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    let mut b = Vec::with_capacity(meta.len() as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(f, max.saturating_add(1)), &mut b)
        .map_err(|e| Error::io(path, e))?;
    if b.len() as u64 > max {
        return Err(too_big(b.len() as u64));
    }
    Ok(b)
}

/// `read_regular`, as UTF-8 text (an error names the first bad byte).
pub fn read_regular_text(path: &Path, max: u64) -> Result<String> {
    String::from_utf8(read_regular(path, max)?).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not UTF-8 text (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::Input(format!("{}: not a file path", path.display())))?;
    let tmp = unique_sibling(dir, &name.to_string_lossy(), "tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    rename_durably(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A path in `dir` for a temporary `.{name}.{what}-…` that no other thread
/// or process uses at the same time (process id, a counter, the time).
pub fn unique_sibling(dir: &Path, name: &str, what: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    dir.join(format!(
        ".{name}.{what}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ))
}

/// Rename `from` to `to`, then fsync the folder that holds `to`, so that the
/// rename itself survives a crash (without the second step a power cut can
/// leave the old name, or neither).
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    sync_dir(
        to.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// fsync a folder: its entries (new names, renames, removals) reach the disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).expect("records serialize");
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// UTC (date "YYYY-MM-DD", time "HHMMSS") now.
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// UTC now as "YYYY-MM-DDTHH:MM:SSZ".
pub fn utc_timestamp() -> String {
    let (d, t) = utc_now();
    format!("{d}T{}:{}:{}Z", &t[0..2], &t[2..4], &t[4..6])
}
