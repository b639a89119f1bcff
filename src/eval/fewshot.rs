//! Few-shot examples for the built-in tasks (`task.fewshot`). Each item's
//! examples are drawn without replacement by the counter-based Philox RNG
//! keyed by the few-shot seed and the item's `<dataset>/<id>` (a sparse
//! Fisher-Yates), so they do not depend on the order, batch, shard or limit
//! the item runs in. An example is `task.fewshot.example` rendered from its
//! item (`{target}`: the answer, or the correct choice) followed by the
//! delimiter; the examples go where the prompt file says `{fewshot}`, else
//! before it. Each sample records its examples' source, index and sha256.

use super::config::{DatasetConfig, FewshotConfig, TaskKind};
use super::dataset::FewshotRef;
use super::dataset::Item;
use super::sample::{sha_hex, FileHash};
use super::template::Template;
use crate::error::{Error, Result};
use crate::sampling::{sequence_key, uniform};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// The examples of one dataset's items.
pub struct Shots {
    n: usize,
    seed: u64,
    delimiter: String,
    example: Template,
    /// The examples' items, and whether they are the evaluated dataset.
    pool: Vec<Item>,
    is_self: bool,
    /// How records name the source: `self` or the file's path.
    source: String,
    kind: TaskKind,
}

/// `n` distinct indices of `0..len` without `exclude`, in draw order: a
/// Fisher-Yates shuffle's first `n` steps over a virtual array, the swaps
/// kept in a map (O(n) per item however large the pool).
pub fn draw(seed: u64, key: u64, len: usize, exclude: Option<usize>, n: usize) -> Vec<usize> {
    let m = len - exclude.map_or(0, |_| 1);
    let actual = |v: usize| match exclude {
        Some(x) if v >= x => v + 1,
        _ => v,
    };
    let mut swapped: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::with_capacity(n);
    for k in 0..n.min(m) {
        let span = m - k;
        let j = k + ((uniform(seed, key, k as u64) * span as f64) as usize).min(span - 1);
        let at_j = *swapped.get(&j).unwrap_or(&j);
        let at_k = *swapped.get(&k).unwrap_or(&k);
        swapped.insert(j, at_k);
        out.push(actual(at_j));
    }
    out
}

impl Shots {
    /// `pool` is the whole evaluated dataset (`is_self`) or the parsed
    /// examples file named `source`.
    pub fn new(
        cfg: &FewshotConfig,
        pool: Vec<Item>,
        is_self: bool,
        source: &str,
        kind: TaskKind,
        dataset: &str,
    ) -> Result<Self> {
        let have = pool.len().saturating_sub(is_self as usize);
        if have < cfg.n {
            let from = if is_self {
                format!(
                    "dataset '{dataset}' has {have} other item(s) (the item itself is left out)"
                )
            } else {
                format!("{source} has {have} example(s) for dataset '{dataset}'")
            };
            return Err(Error::Input(format!(
                "task.fewshot.n is {} but {from}",
                cfg.n
            )));
        }
        Ok(Shots {
            n: cfg.n,
            seed: cfg.seed,
            delimiter: cfg.delimiter.clone(),
            example: Template::from_bytes(
                Path::new("task.fewshot.example"),
                cfg.example.as_bytes(),
            )?,
            pool,
            is_self,
            source: source.to_string(),
            kind,
        })
    }

    /// The examples of dataset `d` (its items `items`, before any limit):
    /// `self`, or the examples file read through `pin` (its sha256 checked)
    /// and listed in `files`.
    pub fn load(
        cfg: &FewshotConfig,
        d: &DatasetConfig,
        items: &[Item],
        root: &Path,
        pin: &mut dyn FnMut(&str, &str) -> Result<Vec<u8>>,
        files: &mut Vec<FileHash>,
    ) -> Result<Self> {
        if cfg.source == "self" {
            return Shots::new(cfg, items.to_vec(), true, "self", d.kind, &d.name);
        }
        let sha = cfg.sha256.as_deref().expect("validated");
        let bytes = pin(&cfg.source, sha)?;
        files.push(FileHash {
            name: format!("{}:fewshot", d.name),
            path: cfg.source.clone(),
            sha256: sha_hex(&bytes),
        });
        let pool = super::dataset::parse(d, &root.join(&cfg.source), &bytes)?;
        Shots::new(cfg, pool, false, &cfg.source, d.kind, &d.name)
    }

    /// The examples' text for the item at `index` of dataset `dataset`, and
    /// the record of each.
    pub fn for_item(
        &self,
        dataset: &str,
        index: usize,
        item: &Item,
    ) -> Result<(String, Vec<FewshotRef>)> {
        let key = sequence_key(&format!("{dataset}/{}", item.id));
        let picked = draw(
            self.seed,
            key,
            self.pool.len(),
            self.is_self.then_some(index),
            self.n,
        );
        let mut text = String::new();
        let mut refs = Vec::with_capacity(picked.len());
        for i in picked {
            let ex = &self.pool[i];
            let target = match self.kind {
                TaskKind::Generate => ex.answer.clone(),
                TaskKind::MultipleChoice => ex.choices[ex.correct].clone(),
            };
            let mut fields = ex.fields.clone();
            fields.insert("target".into(), Value::String(target));
            let mut one = self.example.render(&fields).map_err(|e| {
                Error::Input(format!(
                    "task.fewshot.example for example {i} ({}) of {}: {e}",
                    ex.id, self.source
                ))
            })?;
            one.push_str(&self.delimiter);
            refs.push(FewshotRef {
                split: self.source.clone(),
                index: i,
                sha256: sha_hex(one.as_bytes()),
            });
            text.push_str(&one);
        }
        Ok((text, refs))
    }
}

/// The prompt file rendered for `fields`, holding `examples` at `{fewshot}`
/// when it has that variable, else after them.
pub fn render(t: &Template, fields: &Map<String, Value>, examples: &str) -> Result<String> {
    if t.variables()?.iter().any(|v| v == "fewshot") {
        let mut f = fields.clone();
        f.insert("fewshot".into(), Value::String(examples.to_string()));
        t.render(&f)
    } else {
        Ok(format!("{examples}{}", t.render(fields)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_distinct_skip_the_item_and_depend_only_on_the_key() {
        for len in [2usize, 5, 40] {
            for x in 0..len {
                let d = draw(1234, 99 + x as u64, len, Some(x), (len - 1).min(4));
                let mut u = d.clone();
                u.sort();
                u.dedup();
                assert_eq!(u.len(), d.len(), "distinct");
                assert!(d.iter().all(|&i| i < len && i != x), "{d:?}");
            }
        }
        assert_eq!(draw(7, 1, 100, None, 5), draw(7, 1, 100, None, 5));
        assert_ne!(draw(7, 1, 100, None, 5), draw(8, 1, 100, None, 5));
        // All of a pool, in some order.
        let mut all = draw(3, 3, 6, None, 6);
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn draws_are_uniform_enough() {
        // Each of 10 indices is the first draw about 1/10 of the time.
        let mut counts = [0usize; 10];
        for key in 0..20_000u64 {
            counts[draw(1, key, 10, None, 1)[0]] += 1;
        }
        assert!(
            counts.iter().all(|&c| (1700..2300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn examples_go_at_the_placeholder_or_before() {
        let mut f = Map::new();
        f.insert("question".into(), "Q?".into());
        let with = Template::from_bytes(Path::new("t"), b"Intro\n\n{fewshot}Question: {question}")
            .unwrap();
        assert_eq!(
            render(&with, &f, "EX\n\n").unwrap(),
            "Intro\n\nEX\n\nQuestion: Q?"
        );
        assert_eq!(render(&with, &f, "").unwrap(), "Intro\n\nQuestion: Q?");
        let without = Template::from_bytes(Path::new("t"), b"Question: {question}").unwrap();
        assert_eq!(
            render(&without, &f, "EX\n\n").unwrap(),
            "EX\n\nQuestion: Q?"
        );
    }
}
