//! Traces of the forward pass: the sha256 (and optionally the values) of
//! every named intermediate (`model::TAP_ORDER`) at every position of one
//! prompt, and the comparison of two traces that names the first op, layer
//! and position whose bits differ (two machines, CPU and GPU, two versions).

use crate::engine::combine_digests;
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use crate::model::transformer::{Logits, SeqStep};
use crate::model::TAP_ORDER;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceEntry {
    /// None: before the first block (inp_embd) or after the last (result_*).
    pub layer: Option<usize>,
    pub op: String,
    pub pos: usize,
    /// sha256 of the row's f32 bits, little-endian.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trace {
    pub infer_eval_version: String,
    pub determinism_version: u32,
    pub model_sha256: String,
    pub prompt_ids: Vec<u32>,
    pub device: String,
    pub isa: String,
    pub threads: usize,
    pub prefill_chunk: usize,
    pub entries: Vec<TraceEntry>,
    /// sha256 over every entry's sha256 in canonical order.
    pub digest: String,
}

/// Where an entry sits in the forward pass: layer (embedding first, output
/// last), op in computation order, position.
fn key(e: &TraceEntry, n_layers: usize) -> (usize, usize, usize) {
    let layer = match (e.layer, e.op.as_str()) {
        (Some(l), _) => l + 1,
        (None, "inp_embd") => 0,
        (None, _) => n_layers + 1,
    };
    let op = TAP_ORDER
        .iter()
        .position(|o| *o == e.op)
        .unwrap_or(TAP_ORDER.len());
    (layer, op, e.pos)
}

fn sort(entries: &mut [TraceEntry]) {
    let n = entries
        .iter()
        .filter_map(|e| e.layer)
        .max()
        .map_or(0, |l| l + 1);
    entries.sort_by_key(|e| key(e, n));
}

/// Run `prompt_ids` through the model in chunks of `prefill_chunk` (logits
/// at every position) and record every intermediate.
pub fn record(
    m: &LoadedModel,
    prompt_ids: &[u32],
    prefill_chunk: usize,
    threads: usize,
    values: bool,
) -> Result<Trace> {
    if prompt_ids.is_empty() || prefill_chunk == 0 {
        return Err(Error::Input(
            "trace: an empty prompt or a zero chunk".into(),
        ));
    }
    let mut cache = m.model.new_cache(prompt_ids.len())?;
    let mut entries = Vec::new();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Input(format!("cannot start {threads} threads: {e}")))?;
    for chunk in prompt_ids.chunks(prefill_chunk) {
        let pos0 = cache.len;
        let mut tap =
            |layer: Option<usize>, op: &'static str, t: &candle_core::Tensor| -> Result<()> {
                let rows: Vec<Vec<f32>> = t.to_vec2()?;
                for (r, row) in rows.into_iter().enumerate() {
                    let mut h = Sha256::new();
                    row.iter().for_each(|v| h.update(v.to_bits().to_le_bytes()));
                    entries.push(TraceEntry {
                        layer,
                        op: op.to_string(),
                        pos: pos0 + r,
                        sha256: hex::encode(h.finalize()),
                        values: values.then_some(row),
                    });
                }
                Ok(())
            };
        pool.install(|| {
            m.model.forward_tapped(
                &mut [SeqStep {
                    tokens: chunk,
                    cache: &mut cache,
                    logits: Logits::All,
                }],
                &mut tap,
            )
        })?;
    }
    sort(&mut entries);
    let digest = combine_digests(entries.iter().map(|e| e.sha256.as_str()));
    Ok(Trace {
        infer_eval_version: env!("CARGO_PKG_VERSION").into(),
        determinism_version: crate::DETERMINISM_VERSION,
        model_sha256: m.info.sha256.clone(),
        prompt_ids: prompt_ids.to_vec(),
        device: crate::device::describe().0,
        isa: m.model.isa.name().into(),
        threads,
        prefill_chunk,
        entries,
        digest,
    })
}

/// The first place two traces part, in forward order.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The traces are not of the same model or prompt.
    Inputs(String),
    /// The first entry whose bits differ, or that one trace lacks.
    At {
        layer: Option<usize>,
        op: String,
        pos: usize,
        /// With values in both traces: the largest |a - b| in that row.
        max_abs: Option<f32>,
        missing: bool,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Inputs(m) => write!(f, "{m}"),
            Difference::At {
                layer,
                op,
                pos,
                max_abs,
                missing,
            } => {
                let l = layer.map_or("-".to_string(), |l| l.to_string());
                write!(f, "first difference at layer {l}, op {op}, position {pos}")?;
                if *missing {
                    write!(f, " (in one trace only)")?;
                }
                if let Some(d) = max_abs {
                    write!(f, "; max |difference| in that row {d:e}")?;
                }
                Ok(())
            }
        }
    }
}

/// None if every entry has the same bits in both traces. Traces of two
/// model files are compared too (to find where an edited weight first
/// shows); `notes` says what differs besides the entries.
pub fn compare(a: &Trace, b: &Trace) -> Option<Difference> {
    if a.prompt_ids != b.prompt_ids {
        return Some(Difference::Inputs(
            "the traces are of different prompts".into(),
        ));
    }
    let n = a
        .entries
        .iter()
        .chain(&b.entries)
        .filter_map(|e| e.layer)
        .max()
        .map_or(0, |l| l + 1);
    let index = |t: &Trace| -> BTreeMap<(usize, usize, usize), TraceEntry> {
        t.entries.iter().map(|e| (key(e, n), e.clone())).collect()
    };
    let (ia, ib) = (index(a), index(b));
    let mut keys: Vec<_> = ia.keys().chain(ib.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (ia.get(&k), ib.get(&k)) {
            (Some(x), Some(y)) if x.sha256 == y.sha256 => continue,
            (Some(x), Some(y)) => {
                let max_abs = match (&x.values, &y.values) {
                    (Some(p), Some(q)) => {
                        Some(p.iter().zip(q).fold(0f32, |m, (u, v)| m.max((u - v).abs())))
                    }
                    _ => None,
                };
                return Some(Difference::At {
                    layer: x.layer,
                    op: x.op.clone(),
                    pos: x.pos,
                    max_abs,
                    missing: false,
                });
            }
            (Some(e), None) | (None, Some(e)) => {
                return Some(Difference::At {
                    layer: e.layer,
                    op: e.op.clone(),
                    pos: e.pos,
                    max_abs: None,
                    missing: true,
                })
            }
            (None, None) => unreachable!(),
        }
    }
    None
}

/// What differs between two traces besides their entries: model file,
/// determinism version, device, ISA, threads, chunk.
pub fn notes(a: &Trace, b: &Trace) -> Vec<String> {
    let mut n = Vec::new();
    if a.model_sha256 != b.model_sha256 {
        n.push(format!(
            "the model files differ ({} vs {})",
            a.model_sha256, b.model_sha256
        ));
    }
    if a.determinism_version != b.determinism_version {
        n.push(format!(
            "determinism versions differ ({} vs {})",
            a.determinism_version, b.determinism_version
        ));
    }
    n
}

pub fn read(path: &std::path::Path) -> Result<Trace> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("not a trace: {e}")))
}
