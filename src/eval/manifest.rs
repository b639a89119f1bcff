//! What a run folder records about itself: the manifest written at the
//! end, the fingerprint written when the folder is made (everything that
//! decides the outputs), the names of the marker files, and a merged run's
//! shard records. The folder code writes them; the proof checks them.

use super::dataset::Drift;
use super::run::Prepared;
use super::sample::FileHash;
use crate::error::{Error, Result};
use crate::record::environment::Environment;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const INCOMPLETE: &str = "INCOMPLETE";

pub const FINGERPRINT: &str = "fingerprint.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub run_name: String,
    pub infer_eval_version: String,
    pub determinism_version: u32,
    pub environment: Environment,
    pub model: crate::record::ModelRecord,
    pub model_files: Vec<(String, String)>,
    pub tokenizer_sha256: String,
    pub config_sha256: String,
    pub datasets: Vec<FileHash>,
    pub templates: Vec<FileHash>,
    pub data_drift: Vec<Drift>,
    /// DVC facts of the inputs DVC tracks (md5, size, repo revision, remote).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dvc: Vec<crate::record::dvc::DvcRecord>,
    /// This run is one shard of a larger one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<super::shard::ShardInfo>,
    /// A merged run: each shard's folder, machine and digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRecord>,
    pub n_samples: usize,
    pub resumed: bool,
    /// sha256 over the per-sample digests in order.
    pub run_digest: String,
    /// Size and sha256 of every other file in the folder (`proof::RECORDED`).
    #[serde(default)]
    pub files: Vec<WrittenFile>,
}

/// Everything that decides a run's outputs, written when its folder is
/// made: a resumed run must match it field for field, so that samples from
/// another binary, determinism version, model, tokenizer, config or data are
/// never appended to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    pub infer_eval_version: String,
    pub git_sha: String,
    pub git_dirty: String,
    /// sha256 of the running executable.
    pub binary_sha256: String,
    pub determinism_version: u32,
    pub model_sha256: String,
    pub tokenizer_sha256: String,
    /// sha256 of the resolved config as saved (config.yaml).
    pub config_sha256: String,
    pub datasets: Vec<FileHash>,
    pub templates: Vec<FileHash>,
    /// The shard this folder runs (a retried shard must be the same one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<super::shard::Shard>,
}

impl Fingerprint {
    /// The fingerprint of `prep` run by this executable, with `config_yaml`.
    pub fn current(prep: &Prepared, config_yaml: &[u8]) -> Result<Self> {
        let exe = std::env::current_exe().map_err(|e| Error::io("<current executable>", e))?;
        Ok(Fingerprint {
            infer_eval_version: env!("CARGO_PKG_VERSION").into(),
            git_sha: env!("INFER_EVAL_GIT_SHA").into(),
            git_dirty: env!("INFER_EVAL_GIT_DIRTY").into(),
            binary_sha256: crate::formats::sha256_file(&exe)?,
            determinism_version: crate::DETERMINISM_VERSION,
            model_sha256: prep.model.info.sha256.clone(),
            tokenizer_sha256: prep.model.tokenizer.sha256.clone(),
            config_sha256: hex::encode(Sha256::digest(config_yaml)),
            datasets: prep.datasets.clone(),
            templates: prep.templates.clone(),
            shard: prep.shard.as_ref().map(|s| super::shard::Shard {
                index: s.index,
                count: s.count,
            }),
        })
    }

    /// Fields that differ: (field, recorded, current).
    pub fn differences(&self, now: &Fingerprint) -> Vec<(String, String, String)> {
        let flat = |f: &Fingerprint| match serde_json::to_value(f).expect("serializes") {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a struct"),
        };
        let (a, b) = (flat(self), flat(now));
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.to_string(),
                    b.get(k).map(|x| x.to_string()).unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// One shard of a merged run, as its manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardRecord {
    pub index: usize,
    pub count: usize,
    pub source: String,
    pub folder: String,
    pub n_samples: usize,
    /// The shard's own digest (over its samples).
    pub run_digest: String,
    pub resumed: bool,
    pub environment: Environment,
}

/// A file the run wrote: its name in the folder, size and sha256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WrittenFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}
