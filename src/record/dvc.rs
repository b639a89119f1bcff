//! DVC-tracked inputs: where a dataset or template file is tracked by DVC
//! (its own `.dvc` file, a directory tracked as a whole, or an output of a
//! `dvc.lock` stage), the run records DVC's md5 and size, the repo revision
//! and remote, and checks the bytes read against DVC's md5.
//!
//! Hashes are computed as DVC 3.x does (dvc-data's `hashfile`): a file's md5
//! is the md5 of its raw bytes; a directory's is the md5 of the JSON listing
//! `[{"md5": .., "relpath": ..}, ..]` sorted by relpath and serialised like
//! Python's `json.dumps(sort_keys=True)`, followed by `.dir`.

use crate::error::{Error, Result};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a run records about one DVC-tracked input file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DvcRecord {
    /// The input, as the config names it.
    pub file: String,
    /// The `.dvc` file, or `dvc.lock:<stage>`, that tracks it (relative to
    /// the DVC repo root).
    pub tracked_by: String,
    /// The tracked output: the file itself or a directory above it
    /// (relative to the DVC repo root).
    pub out_path: String,
    /// "file" or "directory".
    pub kind: String,
    /// DVC's recorded md5 (a directory's ends in `.dir`).
    pub md5: String,
    /// The md5 of what is on disk now, computed the same way.
    pub actual_md5: String,
    pub matches: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfiles: Option<u64>,
    /// The `.dvc` entry's `hash` field (`md5` for DVC 3.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The DVC repo root (absolute).
    pub repo_root: String,
    /// The git commit of the repo, when it is a git work tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_rev: Option<String>,
    /// The default remote's URL from `.dvc/config` (never `config.local`,
    /// which holds credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// md5 of a file's bytes, streamed.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn md5_bytes(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

/// A string as Python's `json.dumps` writes it (ensure_ascii): `\uXXXX`
/// for everything outside printable ASCII, surrogate pairs above U+FFFF.
fn py_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// The `.dir` md5 of a listing of (relpath with `/`, md5) pairs.
pub fn dir_md5_of(entries: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut s = String::from("[");
    for (i, (rel, md5)) in sorted.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str("{\"md5\": ");
        py_json_string(md5, &mut s);
        s.push_str(", \"relpath\": ");
        py_json_string(rel, &mut s);
        s.push('}');
    }
    s.push(']');
    format!("{}.dir", md5_bytes(s.as_bytes()))
}

/// Every file under `dir` (symlinks followed; `.git`, `.hg` and `.dvc`
/// folders skipped, as DVC skips them), as (relpath, md5), and the total size.
pub fn dir_listing(dir: &Path) -> Result<(Vec<(String, String)>, u64)> {
    fn walk(base: &Path, rel: &str, out: &mut Vec<(String, String)>, size: &mut u64) -> Result<()> {
        let here = if rel.is_empty() {
            base.to_path_buf()
        } else {
            base.join(rel)
        };
        let rd = std::fs::read_dir(&here).map_err(|e| Error::io(&here, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&here, e))?;
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                Error::bad_file(
                    entry.path(),
                    "a file name that is not UTF-8 (DVC lists names as text)",
                )
            })?;
            let r = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let p = entry.path();
            let meta = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
            if meta.is_dir() {
                if matches!(name, ".git" | ".hg" | ".dvc") {
                    continue;
                }
                walk(base, &r, out, size)?;
            } else {
                *size += meta.len();
                out.push((r, md5_file(&p)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let mut size = 0;
    walk(dir, "", &mut out, &mut size)?;
    Ok((out, size))
}

pub fn dir_md5(dir: &Path) -> Result<String> {
    Ok(dir_md5_of(&dir_listing(dir)?.0))
}

#[derive(Debug, Deserialize)]
struct Out {
    path: String,
    md5: Option<String>,
    size: Option<u64>,
    nfiles: Option<u64>,
    hash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DvcFile {
    #[serde(default)]
    outs: Vec<Out>,
}

#[derive(Debug, Deserialize)]
struct Stage {
    #[serde(default)]
    outs: Vec<Out>,
}

#[derive(Debug, Deserialize)]
struct DvcLock {
    #[serde(default)]
    stages: std::collections::BTreeMap<String, Stage>,
}

/// The nearest folder at or above `start` that holds a `.dvc` folder.
pub fn repo_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join(".dvc").is_dir())
        .map(Path::to_path_buf)
}

fn read_yaml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    crate::formats::yaml::read(path).map_err(|e| match e {
        Error::BadFile { path, msg } => Error::BadFile {
            path,
            msg: format!("not a DVC file: {msg}"),
        },
        e => e,
    })
}

/// The tracking entry of `file` (absolute, normalised): (owner file, stage,
/// the out's absolute path, the out).
fn find_owner(repo: &Path, file: &Path) -> Result<Option<(PathBuf, Option<String>, PathBuf, Out)>> {
    for target in file
        .ancestors()
        .take_while(|d| d.starts_with(repo) && *d != repo)
    {
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            continue;
        };
        let dvc = parent.join(format!("{}.dvc", name.to_string_lossy()));
        if dvc.is_file() {
            let f: DvcFile = read_yaml(&dvc)?;
            if let Some(o) = f.outs.into_iter().find(|o| parent.join(&o.path) == target) {
                return Ok(Some((dvc, None, target.to_path_buf(), o)));
            }
        }
    }
    for dir in file.ancestors().skip(1).take_while(|d| d.starts_with(repo)) {
        let lock = dir.join("dvc.lock");
        if !lock.is_file() {
            continue;
        }
        let l: DvcLock = read_yaml(&lock)?;
        for (stage, s) in l.stages {
            for o in s.outs {
                let out = normalise(&dir.join(&o.path));
                if file.starts_with(&out) {
                    return Ok(Some((lock, Some(stage), out, o)));
                }
            }
        }
    }
    Ok(None)
}

/// `a/./b/../c` as `a/c` without touching the file system.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn git_rev(repo: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The default remote's URL in `.dvc/config` (an INI file).
fn default_remote(repo: &Path) -> Option<String> {
    let text = std::fs::read_to_string(repo.join(".dvc/config")).ok()?;
    let mut section = String::new();
    let mut default = None;
    let mut urls = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            let (k, v) = (k.trim(), v.trim().to_string());
            if section == "core" && k == "remote" {
                default = Some(v);
            } else if k == "url" {
                if let Some(name) = section
                    .strip_prefix("'remote \"")
                    .and_then(|s| s.strip_suffix("\"'"))
                    .or_else(|| {
                        section
                            .strip_prefix("remote \"")
                            .and_then(|s| s.strip_suffix('"'))
                    })
                {
                    urls.push((name.to_string(), v));
                }
            }
        }
    }
    let want = default?;
    urls.into_iter().find(|(n, _)| *n == want).map(|(_, u)| u)
}

/// The DVC facts of `path` (read as `bytes`), or None where no DVC repo
/// tracks it. `rel` is how the config names it.
pub fn inspect(path: &Path, rel: &str, bytes: &[u8]) -> Result<Option<DvcRecord>> {
    let abs = normalise(&std::path::absolute(path).map_err(|e| Error::io(path, e))?);
    let Some(repo) = abs.parent().and_then(repo_root) else {
        return Ok(None);
    };
    let Some((owner, stage, out_path, out)) = find_owner(&repo, &abs)? else {
        return Ok(None);
    };
    let Some(md5) = out.md5.clone() else {
        return Err(Error::bad_file(
            &owner,
            format!(
                "the entry for {} has no md5 (only DVC's md5 hashes are supported)",
                out.path
            ),
        ));
    };
    let is_dir = out_path != abs;
    let actual_md5 = if is_dir {
        dir_md5(&out_path)?
    } else {
        md5_bytes(bytes)
    };
    let rel_to_repo = |p: &Path| p.strip_prefix(&repo).unwrap_or(p).display().to_string();
    Ok(Some(DvcRecord {
        file: rel.to_string(),
        tracked_by: match stage {
            Some(s) => format!("{}:{s}", rel_to_repo(&owner)),
            None => rel_to_repo(&owner),
        },
        out_path: rel_to_repo(&out_path),
        kind: if is_dir { "directory" } else { "file" }.into(),
        matches: actual_md5 == md5,
        md5,
        actual_md5,
        size: out.size,
        nfiles: out.nfiles,
        hash: out.hash,
        repo_rev: git_rev(&repo),
        remote: default_remote(&repo),
        repo_root: repo.display().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_md5_matches_dvcs_listing_format() {
        // Recomputed with dvc-data 3.18.3 (../shared/INTEROP-NOTES.md): four
        // files, one in a subfolder, one with non-ASCII names.
        let entries = vec![
            (
                "sub/2.txt".to_string(),
                "4a8a08f09d37b73795649038408b5f33".to_string(),
            ),
            ("1.txt".into(), "c5053d4da03789bfbc4bee760fade936".into()),
            (
                "ün\u{ef}/é.txt".into(),
                "9dd4e461268c8034f5c8564e155c67a6".into(),
            ),
            ("0.txt".into(), "60b725f10c9c85c70d97880dfe8191b3".into()),
        ];
        assert_eq!(dir_md5_of(&entries), "39a346abf9ca9450671bf3cf6644653d.dir");
    }

    #[test]
    fn python_json_escapes() {
        let mut s = String::new();
        py_json_string("a\"b\\c\n\u{1F600}é", &mut s);
        assert_eq!(s, r#""a\"b\\c\n\ud83d\ude00\u00e9""#);
    }

    #[test]
    fn a_file_outside_any_dvc_repo_has_no_record() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.jsonl");
        std::fs::write(&f, b"{}\n").unwrap();
        assert_eq!(inspect(&f, "x.jsonl", b"{}\n").unwrap(), None);
    }

    #[test]
    fn a_dvc_file_and_a_lock_entry_are_found_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join(".dvc")).unwrap();
        std::fs::write(
            r.join(".dvc/config"),
            "[core]\n    remote = store\n['remote \"store\"']\n    url = /srv/dvc\n",
        )
        .unwrap();
        std::fs::create_dir_all(r.join("data")).unwrap();
        std::fs::write(r.join("data/a.txt"), b"hello").unwrap();
        std::fs::write(
            r.join("data/a.txt.dvc"),
            format!(
                "outs:\n- md5: {}\n  size: 5\n  hash: md5\n  path: a.txt\n",
                md5_bytes(b"hello")
            ),
        )
        .unwrap();
        let rec = inspect(&r.join("data/a.txt"), "data/a.txt", b"hello")
            .unwrap()
            .unwrap();
        assert!(rec.matches);
        assert_eq!(rec.tracked_by, "data/a.txt.dvc");
        assert_eq!(rec.remote.as_deref(), Some("/srv/dvc"));
        let changed = inspect(&r.join("data/a.txt"), "data/a.txt", b"hellO")
            .unwrap()
            .unwrap();
        assert!(!changed.matches);
        // A stage output folder in dvc.lock.
        std::fs::create_dir_all(r.join("gen/sub")).unwrap();
        std::fs::write(r.join("gen/sub/b.txt"), b"b").unwrap();
        let md5 = dir_md5(&r.join("gen")).unwrap();
        std::fs::write(
            r.join("dvc.lock"),
            format!("schema: '2.0'\nstages:\n  make:\n    cmd: x\n    outs:\n    - path: gen\n      hash: md5\n      md5: {md5}\n      size: 1\n      nfiles: 1\n"),
        )
        .unwrap();
        let rec = inspect(&r.join("gen/sub/b.txt"), "gen/sub/b.txt", b"b")
            .unwrap()
            .unwrap();
        assert_eq!(
            (rec.tracked_by.as_str(), rec.kind.as_str(), rec.matches),
            ("dvc.lock:make", "directory", true)
        );
        assert_eq!(rec.out_path, "gen");
    }
}
