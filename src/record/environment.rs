//! The environment a run happened in: code, dependencies, hardware and OS.
//! `verify` lists every field that differs from the recorded one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const CARGO_LOCK: &str = include_str!("../../Cargo.lock");

pub use crate::device::CudaInfo;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    pub infer_eval_version: String,
    pub determinism_version: u32,
    pub git_sha: String,
    pub git_dirty: String,
    pub rustc: String,
    pub cargo_lock_sha256: String,
    pub candle_version: String,
    pub tokenizers_version: String,
    pub cpu_model: String,
    /// The kernel ISA used (bits do not depend on it, by contract).
    pub isa: String,
    /// What that ISA runs (`avx512` is the AVX2 float code with VNNI
    /// integer block sums).
    #[serde(default)]
    pub isa_kernels: String,
    pub cpu_features: Vec<String>,
    pub cores: usize,
    pub threads: usize,
    pub os: String,
    pub kernel: String,
    pub device: String,
    /// Filled on CUDA runs.
    pub cuda: Option<CudaInfo>,
    /// The container image the run ran in, as its launcher passed it in
    /// `INFER_EVAL_IMAGE` (a reference, `repo@sha256:...` when pinned) and
    /// `INFER_EVAL_IMAGE_ID` (the image's config digest); see the Dockerfile.
    #[serde(default)]
    pub image: Option<ImageInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageInfo {
    pub reference: Option<String>,
    pub id: Option<String>,
    /// The reference names a digest (`@sha256:`), not only a tag.
    pub pinned: bool,
}

impl ImageInfo {
    /// From `INFER_EVAL_IMAGE` and `INFER_EVAL_IMAGE_ID`; None when neither is set.
    pub fn from_env() -> Option<Self> {
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let (reference, id) = (get("INFER_EVAL_IMAGE"), get("INFER_EVAL_IMAGE_ID"));
        if reference.is_none() && id.is_none() {
            return None;
        }
        let pinned = reference.as_deref().is_some_and(|r| r.contains("@sha256:"));
        Some(ImageInfo {
            reference,
            id,
            pinned,
        })
    }
}

fn lock_version(name: &str) -> String {
    let mut lines = CARGO_LOCK.lines();
    while let Some(l) = lines.next() {
        if l == format!("name = \"{name}\"") {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = ")) {
                return v.trim_matches('"').to_string();
            }
        }
    }
    "unknown".into()
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn cpu_features() -> Vec<String> {
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($name:tt),*) => { $( if std::is_x86_feature_detected!($name) { f.push($name.to_string()); } )* };
        }
        check!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avxvnni"
        );
    }
    f
}

impl Environment {
    /// The environment of a run on `threads` threads with the CPU kernels of `isa`.
    pub fn current(threads: usize, isa: crate::kernels::Isa) -> Self {
        let (device, cuda) = crate::device::describe();
        Environment {
            infer_eval_version: env!("CARGO_PKG_VERSION").into(),
            determinism_version: crate::DETERMINISM_VERSION,
            git_sha: env!("INFER_EVAL_GIT_SHA").into(),
            git_dirty: env!("INFER_EVAL_GIT_DIRTY").into(),
            rustc: env!("INFER_EVAL_RUSTC").into(),
            cargo_lock_sha256: hex::encode(Sha256::digest(CARGO_LOCK.as_bytes())),
            candle_version: lock_version("candle-core"),
            tokenizers_version: lock_version("tokenizers"),
            cpu_model: cpu_model(),
            isa: isa.name().into(),
            isa_kernels: isa.describe().into(),
            cpu_features: cpu_features(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            threads,
            os: format!(
                "{} {}",
                std::env::consts::OS,
                read_trim("/proc/sys/kernel/ostype")
            ),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            device,
            cuda,
            image: ImageInfo::from_env(),
        }
    }

    /// Fields that differ: (field, recorded, current).
    pub fn differences(&self, other: &Environment) -> Vec<(String, String, String)> {
        let flat = |e: &Environment| -> BTreeMap<String, String> {
            match serde_json::to_value(e).unwrap() {
                serde_json::Value::Object(m) => {
                    m.into_iter().map(|(k, v)| (k, v.to_string())).collect()
                }
                _ => BTreeMap::new(),
            }
        };
        let (a, b) = (flat(self), flat(other));
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let get = |m: &BTreeMap<String, String>, k: &str| {
            m.get(k).cloned().unwrap_or_else(|| "(absent)".into())
        };
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| (k.clone(), get(&a, k), get(&b, k)))
            .collect()
    }
}
