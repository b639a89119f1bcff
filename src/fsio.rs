//! The ground floor of file handling every module may use: files read only
//! when they are regular files and within a size, records written
//! atomically (a sibling file, fsync, rename, the folder fsynced), unique
//! sibling names.

use crate::error::{Error, Result};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

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
