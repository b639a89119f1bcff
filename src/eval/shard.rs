//! Shards: one evaluation split over machines. Shard I of N runs the
//! samples whose global index i has i mod N = I: stable, and independent of
//! the machines and of batch size. The index and count come from flags or
//! from the engine running the shard (Slurm job arrays, Kubernetes Indexed
//! Jobs); `merge` puts shards back together (see `merge.rs`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::Usage(format!(
                "shard index {index} of count {count}: the count must be at least 1 and the index below it"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Does global sample `i` belong to this shard?
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index
    }

    /// How many of `total` samples this shard runs.
    pub fn len_of(&self, total: usize) -> usize {
        (total + self.count - 1 - self.index) / self.count
    }
}

/// What a shard's manifest records about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    pub index: usize,
    pub count: usize,
    /// Where index and count came from: flags, slurm, kubernetes.
    pub source: String,
    /// Samples of the whole run (all shards).
    pub total_samples: usize,
    /// sha256 of the whole run's resolved config less the keys that do not
    /// decide outputs (`run.threads`, `run.batch_size`, `run.prefill_chunk`):
    /// equal for every shard of one run.
    pub whole_config_sha256: String,
}

/// Config keys that change speed, never bits: shards may differ in them.
pub const BITS_FREE_KEYS: [&str; 3] = ["threads", "batch_size", "prefill_chunk"];

/// sha256 of a resolved config tree without the keys outputs do not depend on.
pub fn whole_config_sha256(tree: &Value) -> String {
    let mut t = tree.clone();
    if let Some(Value::Object(run)) = t.get_mut("run") {
        for k in BITS_FREE_KEYS {
            run.remove(k);
        }
    }
    // serde_json maps are sorted: the bytes do not depend on key order.
    hex::encode(Sha256::digest(serde_json::to_vec(&t).expect("serializes")))
}

fn parse(name: &str, v: &str) -> Result<usize> {
    v.trim().parse().map_err(|_| {
        Error::Usage(format!(
            "{name}={v:?}: not a non-negative integer (the shard index and count come from it)"
        ))
    })
}

/// The shard from flags, else from the environment (`get` reads a
/// variable): a Slurm array task (`SLURM_ARRAY_TASK_ID`, `_MIN`, `_STEP`,
/// `_COUNT`: k = (id - min) / step of n = count), or a Kubernetes Indexed
/// Job pod (`JOB_COMPLETION_INDEX` of `INFER_EVAL_SHARD_COUNT`, which the Job
/// passes). None: not sharded.
pub fn resolve(
    index: Option<usize>,
    count: Option<usize>,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, String)>> {
    match (index, count) {
        (Some(i), Some(n)) => return Ok(Some((Shard::new(i, n)?, "flags".into()))),
        (None, None) => {}
        _ => {
            return Err(Error::Usage(
                "--shard-index and --shard-count go together".into(),
            ))
        }
    }
    let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    if let Some(id) = var("SLURM_ARRAY_TASK_ID") {
        let id = parse("SLURM_ARRAY_TASK_ID", &id)?;
        let min = var("SLURM_ARRAY_TASK_MIN")
            .map(|v| parse("SLURM_ARRAY_TASK_MIN", &v))
            .transpose()?
            .unwrap_or(0);
        let step = var("SLURM_ARRAY_TASK_STEP")
            .map(|v| parse("SLURM_ARRAY_TASK_STEP", &v))
            .transpose()?
            .unwrap_or(1)
            .max(1);
        let count = var("SLURM_ARRAY_TASK_COUNT")
            .map(|v| parse("SLURM_ARRAY_TASK_COUNT", &v))
            .transpose()?
            .ok_or_else(|| {
                Error::Usage("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
            })?;
        if id < min || (id - min) % step != 0 {
            return Err(Error::Usage(format!(
                "SLURM_ARRAY_TASK_ID {id} is not min {min} plus a multiple of step {step}"
            )));
        }
        return Ok(Some((
            Shard::new((id - min) / step, count)?,
            "slurm".into(),
        )));
    }
    if let Some(i) = var("JOB_COMPLETION_INDEX") {
        let i = parse("JOB_COMPLETION_INDEX", &i)?;
        let n = var("INFER_EVAL_SHARD_COUNT").ok_or_else(|| {
            Error::Usage(
                "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but INFER_EVAL_SHARD_COUNT is not: the Job must pass its completions count"
                    .into(),
            )
        })?;
        return Ok(Some((
            Shard::new(i, parse("INFER_EVAL_SHARD_COUNT", &n)?)?,
            "kubernetes".into(),
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(a, _)| *a == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shards_partition_the_samples() {
        for n in 1..9 {
            let total = 23;
            let mut seen = vec![0; total];
            for i in 0..n {
                let s = Shard::new(i, n).unwrap();
                let mine: Vec<usize> = (0..total).filter(|&k| s.owns(k)).collect();
                assert_eq!(mine.len(), s.len_of(total));
                mine.iter().for_each(|&k| seen[k] += 1);
            }
            assert!(seen.iter().all(|&c| c == 1));
        }
        assert!(Shard::new(3, 3).is_err() && Shard::new(0, 0).is_err());
    }

    #[test]
    fn the_shard_comes_from_flags_slurm_or_kubernetes() {
        assert_eq!(resolve(None, None, env(&[])).unwrap(), None);
        let (s, src) = resolve(Some(2), Some(5), env(&[("SLURM_ARRAY_TASK_ID", "0")]))
            .unwrap()
            .unwrap();
        assert_eq!((s, src.as_str()), (Shard { index: 2, count: 5 }, "flags"));
        // --array=1-7:2 is tasks 1, 3, 5, 7: task 5 is the third of four.
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        let (s, src) = resolve(None, None, env(&slurm)).unwrap().unwrap();
        assert_eq!((s, src.as_str()), (Shard { index: 2, count: 4 }, "slurm"));
        let k8s = [
            ("JOB_COMPLETION_INDEX", "6"),
            ("INFER_EVAL_SHARD_COUNT", "7"),
        ];
        let (s, src) = resolve(None, None, env(&k8s)).unwrap().unwrap();
        assert_eq!(
            (s, src.as_str()),
            (Shard { index: 6, count: 7 }, "kubernetes")
        );
        assert!(resolve(None, None, env(&[("JOB_COMPLETION_INDEX", "1")])).is_err());
        assert!(resolve(Some(1), None, env(&[])).is_err());
        assert!(resolve(
            None,
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "2")
            ])
        )
        .is_err());
    }

    #[test]
    fn the_whole_config_hash_ignores_speed_only_keys() {
        let a =
            serde_json::json!({"run": {"threads": 2, "batch_size": 4, "limit": 3}, "name": "x"});
        let b =
            serde_json::json!({"run": {"threads": null, "batch_size": 1, "limit": 3}, "name": "x"});
        let c =
            serde_json::json!({"run": {"threads": 2, "batch_size": 4, "limit": 4}, "name": "x"});
        assert_eq!(whole_config_sha256(&a), whole_config_sha256(&b));
        assert_ne!(whole_config_sha256(&a), whole_config_sha256(&c));
    }
}
