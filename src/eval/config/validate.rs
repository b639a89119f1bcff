//! A composed config's checks beyond its types: sampling and run bounds,
//! few-shot and seed settings, each dataset's scorer and lm-eval limits;
//! each error names the key.

use super::schema::{EvalConfig, Scorer, TaskKind};

/// Largest `run.batch_size` (sequences decoded together).
pub const MAX_BATCH: usize = 4096;
/// Largest `run.prefill_chunk` (tokens per prefill step).
pub const MAX_CHUNK: usize = 1 << 20;
/// Largest `run.threads`.
pub const MAX_THREADS: usize = 1024;
/// Largest `run.bootstrap` (resamples per interval: the work is this times
/// the samples, after they are computed).
pub const MAX_BOOTSTRAP: usize = 100_000;
/// Most seeds a run repeats its sampled tasks with.
pub const MAX_SEEDS: usize = 10_000;
/// Largest `max_tokens` (a generation also ends at the model's context).
pub const MAX_TOKENS: usize = 1 << 20;

/// Checks beyond types.
pub fn validate(c: &EvalConfig) -> std::result::Result<(), String> {
    checks(c, true)
}

pub(super) fn checks(c: &EvalConfig, own_task: bool) -> std::result::Result<(), String> {
    c.sampling
        .validate()
        .map_err(|m| format!("key 'sampling': {m}"))?;
    if c.run.batch_size == 0 || c.run.prefill_chunk == 0 || c.run.threads == Some(0) {
        return Err("key 'run': batch_size, prefill_chunk and threads must be at least 1".into());
    }
    // Bounds that keep every run's work and memory sane (each names its key).
    let bounded: [(&str, Option<usize>, usize, usize); 8] = [
        ("run.batch_size", Some(c.run.batch_size), 1, MAX_BATCH),
        ("run.prefill_chunk", Some(c.run.prefill_chunk), 1, MAX_CHUNK),
        ("run.threads", c.run.threads, 1, MAX_THREADS),
        ("run.limit", c.run.limit, 1, usize::MAX),
        ("run.bootstrap", Some(c.run.bootstrap), 0, MAX_BOOTSTRAP),
        ("run.num_seeds", c.run.num_seeds, 1, MAX_SEEDS),
        (
            "run.seeds",
            c.run.seeds.as_ref().map(|s| s.len()),
            1,
            MAX_SEEDS,
        ),
        (
            "sampling.max_tokens",
            Some(c.sampling.max_tokens),
            1,
            MAX_TOKENS,
        ),
    ];
    for (key, v, lo, hi) in bounded {
        if let Some(v) = v.filter(|v| *v < lo || *v > hi) {
            let what = if key == "run.seeds" { " seeds" } else { "" };
            return Err(if hi == usize::MAX {
                format!("key '{key}': {v}{what}; must be at least {lo} (null: all)")
            } else {
                format!("key '{key}': {v}{what}; must be in {lo}..={hi}")
            });
        }
    }
    if c.task.datasets.is_empty() {
        return Err("key 'task.datasets': no datasets".into());
    }
    match (&c.run.seeds, c.run.num_seeds) {
        (Some(_), Some(_)) => {
            return Err("key 'run': give run.seeds or run.num_seeds, not both".into())
        }
        (Some(s), None) => {
            if s.is_empty() {
                return Err("key 'run.seeds': an empty list".into());
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(d) = s.iter().find(|x| !seen.insert(**x)) {
                return Err(format!("key 'run.seeds': seed {d} is listed twice"));
            }
        }
        (None, Some(0)) => return Err("key 'run.num_seeds': must be at least 1".into()),
        _ => {}
    }
    if let Some(f) = &c.task.fewshot {
        if f.n == 0 {
            return Err("key 'task.fewshot.n': must be at least 1".into());
        }
        match (f.source.as_str(), &f.sha256) {
            ("self", _) => {}
            (_, None) => {
                return Err(format!(
                    "key 'task.fewshot.sha256': the examples file {} needs its sha256 pinned",
                    f.source
                ))
            }
            (_, Some(h)) if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) => {
                return Err(format!(
                    "key 'task.fewshot.sha256': '{h}' is not a sha256 (64 hex digits)"
                ))
            }
            _ => {}
        }
        if c.prompt.chat || !c.prompt.messages.is_empty() {
            return Err("key 'task.fewshot': few-shot examples go into a plain prompt; with prompt.chat or prompt.messages put them in the messages".into());
        }
        if c.task.datasets.iter().any(|d| d.lm_eval.is_some()) {
            return Err("key 'task.fewshot': lm-eval task files draw their own examples (num_fewshot, --num-fewshot)".into());
        }
        crate::eval::template::Template::from_bytes(
            std::path::Path::new("task.fewshot.example"),
            f.example.as_bytes(),
        )
        .map_err(|e| format!("key 'task.fewshot.example': {e}"))?;
    }
    if own_task && c.seeds().is_some() && !c.task.datasets.iter().any(|d| c.samples_with_seed(d)) {
        return Err("key 'run.seeds': no task samples (sampling.temperature is 0 or no task generates), so every seed would give the same outputs".into());
    }
    let mut names = std::collections::HashSet::new();
    for (i, d) in c.task.datasets.iter().enumerate() {
        if !names.insert(&d.name) {
            return Err(format!(
                "key 'task.datasets.{i}.name': duplicate dataset '{}'",
                d.name
            ));
        }
        if d.kind == TaskKind::Generate && d.scorer.is_none() && d.lm_eval.is_none() {
            return Err(format!("key 'task.datasets.{i}.scorer': generation tasks need a scorer (exact_match, contains, regex)"));
        }
        if let Some(m) = d.max_tokens.filter(|m| *m == 0 || *m > MAX_TOKENS) {
            return Err(format!(
                "key 'task.datasets.{i}.max_tokens': {m}; must be in 1..={MAX_TOKENS}"
            ));
        }
        if let Some(n) = d.lm_eval.as_ref().and_then(|l| l.max_length) {
            if n < 3 {
                return Err(format!(
                    "key 'task.datasets.{i}.lm_eval.max_length': {n} leaves no room for a context and a token to score (lm-eval feeds max_length - 1; at least 3)"
                ));
            }
        }
        if d.scorer == Some(Scorer::Regex) {
            let p = d.pattern.as_deref().ok_or_else(|| {
                format!("key 'task.datasets.{i}.pattern': the regex scorer needs a pattern")
            })?;
            regex::Regex::new(p).map_err(|e| format!("key 'task.datasets.{i}.pattern': {e}"))?;
        }
    }
    Ok(())
}
