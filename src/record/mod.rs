//! Records: the JSON record of a generation run (`--out`), the run
//! environment, and atomic writes.

pub mod dvc;
pub mod environment;
pub mod flat;

use crate::sampling::SamplingParams;
use serde::{Deserialize, Serialize};

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
