//! A task's dataset from the Hugging Face datasets cache, found as
//! `datasets.load_dataset(dataset_path, dataset_name)` finds it offline
//! (`CachedDatasetModuleFactory` and the `cache` builder of datasets 2.16
//! and later): `<cache>/<namespace>___<snake_name>/<config>/<version>/<hash>/`
//! holding `dataset_info.json` and one Arrow IPC stream per split (or its
//! shards). Of several versions and hashes the most recently modified is
//! taken, as `datasets` takes it; the files read are pinned by sha256 in the
//! resolved config like any data file, so a re-run reads the same bytes.

use super::task::Task;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The datasets cache folder: `HF_DATASETS_CACHE`, else `$HF_HOME/datasets`,
/// else `$XDG_CACHE_HOME/huggingface/datasets`, else
/// `~/.cache/huggingface/datasets`, as `datasets.config` has it.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("HF_DATASETS_CACHE")
        .or_else(|| env("HF_HOME").map(|h| h.join("datasets")))
        .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("huggingface/datasets")))
        .or_else(|| dirs::home_dir().map(|h| h.join(".cache/huggingface/datasets")))
}

/// `datasets.naming.camelcase_to_snakecase`.
pub fn snake(name: &str) -> String {
    let upper_upper = regex::Regex::new(r"([A-Z]+)([A-Z][a-z])").expect("valid");
    let lower_upper = regex::Regex::new(r"([a-z\d])([A-Z])").expect("valid");
    let n = upper_upper.replace_all(name, "${1}_${2}");
    lower_upper.replace_all(&n, "${1}_${2}").to_lowercase()
}

/// The cache folder of a dataset named `path` (`owner/name` or `name`).
fn dataset_root(cache: &Path, path: &str) -> PathBuf {
    let mut parts: Vec<String> = path.split('/').map(String::from).collect();
    let last = parts.last_mut().expect("split gives one part");
    *last = snake(last);
    cache.join(parts.join("___"))
}

fn config_name_of(dir: &Path) -> Option<String> {
    let b = std::fs::read(dir.join("dataset_info.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    v.get("config_name")?.as_str().map(String::from)
}

/// `<root>/<config>/<version>/<hash>` folders whose dataset_info.json names
/// the config of the folder it is in.
fn prepared(root: &Path, config: Option<&str>) -> Vec<(String, PathBuf, std::time::SystemTime)> {
    let sub = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        v
    };
    let mut out = Vec::new();
    for c in sub(root) {
        let cname = c
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if config.is_some_and(|want| want != cname) {
            continue;
        }
        for v in sub(&c) {
            for h in sub(&v) {
                if config_name_of(&h).as_deref() == Some(cname.as_str()) {
                    let t = std::fs::metadata(&h)
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    out.push((cname.clone(), h, t));
                }
            }
        }
    }
    out
}

/// The Arrow files of the splits `t` names, from the cache: `(split,
/// required)`, an absent optional split is left out (lm-eval only reads the
/// training split for few-shot, say); `origin` (the task file) is named in
/// errors.
pub fn data_files(
    t: &Task,
    splits: &[(&str, bool)],
    origin: &Path,
) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let what = match &t.dataset_name {
        Some(n) => format!("dataset '{}' (config '{n}')", t.dataset_path),
        None => format!("dataset '{}'", t.dataset_path),
    };
    let Some(cache) = cache_dir() else {
        return Err(Error::bad_file(
            origin,
            format!("{what}: no Hugging Face datasets cache folder (set HF_DATASETS_CACHE)"),
        ));
    };
    if t.dataset_path.split('/').count() > 2
        || t.dataset_path.split('/').any(|p| p.is_empty() || p == "..")
    {
        return Err(Error::bad_file(
            origin,
            format!("{what}: dataset_path is neither a packaged format (json, csv, parquet) nor a Hub dataset name (owner/name)"),
        ));
    }
    let root = dataset_root(&cache, &t.dataset_path);
    let hint = format!(
        "load it once with `datasets.load_dataset(\"{}\"{})` on a machine with the Hub (lm-eval does), or export it to JSON Lines and name the files in dataset_kwargs.data_files",
        t.dataset_path,
        t.dataset_name.as_ref().map(|n| format!(", \"{n}\"")).unwrap_or_default()
    );
    let mut found = prepared(&root, t.dataset_name.as_deref());
    if found.is_empty() {
        let configs: std::collections::BTreeSet<String> = prepared(&root, None)
            .into_iter()
            .map(|(c, _, _)| c)
            .collect();
        return Err(Error::bad_file(
            origin,
            format!(
                "{what} is not in the Hugging Face datasets cache: no prepared copy under {}{}; {hint}",
                root.display(),
                if configs.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (configs there: {})",
                        configs.into_iter().collect::<Vec<_>>().join(", ")
                    )
                }
            ),
        ));
    }
    // The most recently modified, as datasets' _find_hash_in_cache.
    found.sort_by_key(|(_, _, t)| *t);
    let (_, dir, _) = found.pop().expect("non-empty");
    if t.dataset_name.is_none() {
        let tail = dir.strip_prefix(&root).expect("under root");
        let vh: PathBuf = tail.components().skip(1).collect();
        let others: Vec<String> = prepared(&root, None)
            .into_iter()
            .filter(|(_, d, _)| {
                d.strip_prefix(&root)
                    .is_ok_and(|x| x.components().skip(1).collect::<PathBuf>() == vh)
            })
            .map(|(c, _, _)| c)
            .collect();
        if others.len() > 1 {
            return Err(Error::bad_file(
                origin,
                format!(
                    "{what}: the cache holds several configs ({}); name one in dataset_name",
                    others.join(", ")
                ),
            ));
        }
    }
    let info_path = dir.join("dataset_info.json");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&info_path).map_err(|e| Error::io(&info_path, e))?)
            .map_err(|e| Error::bad_file(&info_path, format!("invalid JSON: {e}")))?;
    let split_infos = info
        .get("splits")
        .and_then(|s| s.as_object())
        .ok_or_else(|| Error::bad_file(&info_path, "no 'splits' (not a prepared dataset)"))?;
    let name = t.dataset_path.rsplit('/').next().expect("non-empty");
    let prefix = snake(name);
    let mut out = BTreeMap::new();
    for &(split, required) in splits {
        if out.contains_key(split) {
            continue;
        }
        let Some(si) = split_infos.get(split) else {
            if !required {
                continue;
            }
            return Err(Error::bad_file(
                origin,
                format!(
                    "{what}: split '{split}' is not in the cached copy {} (splits: {})",
                    dir.display(),
                    split_infos.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let shards = si
            .get("shard_lengths")
            .and_then(|s| s.as_array())
            .map_or(0, |a| a.len());
        let files: Vec<PathBuf> = if shards > 1 {
            (0..shards)
                .map(|i| dir.join(format!("{prefix}-{split}-{i:05}-of-{shards:05}.arrow")))
                .collect()
        } else {
            vec![dir.join(format!("{prefix}-{split}.arrow"))]
        };
        for f in &files {
            if !f.is_file() {
                return Err(Error::bad_file(
                    origin,
                    format!(
                        "{what}: the cached copy lacks {} (split '{split}')",
                        f.display()
                    ),
                ));
            }
        }
        out.insert(split.to_string(), files);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_as_datasets_writes_it() {
        assert_eq!(snake("ai2_arc"), "ai2_arc");
        assert_eq!(snake("HellaSwag"), "hella_swag");
        assert_eq!(snake("MMLUPro"), "mmlu_pro");
        assert_eq!(snake("gsm8kTest"), "gsm8k_test");
    }

    #[test]
    fn dataset_root_joins_the_namespace() {
        let r = dataset_root(Path::new("/c"), "allenai/OpenBookQA");
        assert_eq!(r, Path::new("/c/allenai___open_book_qa"));
    }
}
