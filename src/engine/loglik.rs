//! Log-likelihood scoring (multiple choice, lm-eval's `loglikelihood`).
//!
//! Requests that follow one another with the same context (the choices of
//! one item) share it: the context, less its last token, is prefilled once
//! and each request's cache starts as a copy of that KV state. Its logits
//! are the same bits as a whole prefill's, since a position's keys and
//! values do not depend on how the prompt was chunked (docs/DETERMINISM.md
//! §8). Only the positions that predict continuation tokens go through the
//! output head (`Logits::Tail`).

use std::collections::HashMap;

use super::{check_finite, LoglikOutput, LoglikRequest};
use crate::error::{Error, Result};
use crate::model::attention::KvCache;
use crate::model::transformer::{Logits, SeqStep, Transformer};

/// Log-likelihoods of continuations, `batch_size` requests per forward call,
/// prompts fed in chunks of `prefill_chunk`. Bits do not depend on either,
/// nor on whether a context was shared.
pub fn loglikelihoods(
    model: &Transformer,
    reqs: &[LoglikRequest],
    batch_size: usize,
    prefill_chunk: usize,
) -> Result<Vec<LoglikOutput>> {
    if batch_size == 0 || prefill_chunk == 0 {
        return Err(Error::Input(
            "batch size and prefill chunk must be at least 1".into(),
        ));
    }
    let ctx_len = model.config.max_position_embeddings;
    for r in reqs {
        if r.context.is_empty() || r.continuation.is_empty() {
            return Err(Error::Input(
                "log-likelihood needs a non-empty context and continuation".into(),
            ));
        }
        if !super::loglik_fits(r.context.len(), r.continuation.len(), ctx_len) {
            return Err(Error::Resource(format!(
                "a log-likelihood request of {} tokens (context plus continuation) exceeds the model's context of {ctx_len} positions",
                r.context.len() + r.continuation.len()
            )));
        }
    }
    // Runs of consecutive requests with one context: group index per
    // request, and each group's last request.
    let mut group_of = Vec::with_capacity(reqs.len());
    let mut group_last: Vec<usize> = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        if i > 0 && reqs[i - 1].context == r.context {
            *group_last.last_mut().unwrap() = i;
        } else {
            group_last.push(i);
        }
        group_of.push(group_last.len() - 1);
    }
    let shares = |g: usize| {
        let first = if g == 0 { 0 } else { group_last[g - 1] + 1 };
        group_last[g] > first && reqs[first].context.len() > 1
    };
    // Shared KV states by group, dropped after the group's last request.
    let mut shared: HashMap<usize, KvCache> = HashMap::new();
    let mut out = Vec::with_capacity(reqs.len());
    for (bi, group) in reqs.chunks(batch_size).enumerate() {
        let start = bi * batch_size;
        shared.retain(|g, _| group_last[*g] >= start);
        let mut need: Vec<usize> = (start..start + group.len())
            .map(|i| group_of[i])
            .filter(|&g| shares(g) && !shared.contains_key(&g))
            .collect();
        need.dedup();
        let prefixes: Vec<&[u32]> = need
            .iter()
            .map(|&g| {
                let c = &reqs[group_last[g]].context;
                &c[..c.len() - 1]
            })
            .collect();
        let caches = prefill(model, &prefixes, prefill_chunk)?;
        shared.extend(need.into_iter().zip(caches));

        let mut seqs = Vec::with_capacity(group.len());
        for (i, r) in group.iter().enumerate() {
            let mut toks = r.context.clone();
            toks.extend_from_slice(&r.continuation[..r.continuation.len() - 1]);
            let mut cache = model.new_cache(toks.len())?;
            let mut fed = 0;
            if let Some(s) = shared.get(&group_of[start + i]) {
                fed = r.context.len() - 1;
                cache.copy_prefix_from(s, fed)?;
            }
            seqs.push((toks, cache, fed, Vec::<Vec<f32>>::new()));
        }
        loop {
            let mut steps = Vec::new();
            let mut owners = Vec::new();
            for (i, (toks, cache, fed, _)) in seqs.iter_mut().enumerate() {
                if *fed < toks.len() {
                    let end = (*fed + prefill_chunk).min(toks.len());
                    // Only positions from the context's last on predict the continuation.
                    let first = group[i].context.len() - 1;
                    let tail = end - first.max(*fed).min(end);
                    owners.push((i, end - tail, end));
                    steps.push(SeqStep {
                        tokens: &toks[*fed..end],
                        cache,
                        logits: Logits::Tail(tail),
                    });
                    *fed = end;
                }
            }
            if steps.is_empty() {
                break;
            }
            let res = model.forward(&mut steps)?;
            drop(steps);
            for ((i, start, end), logits) in owners.into_iter().zip(res) {
                let Some(logits) = logits else { continue };
                let rows: Vec<Vec<f32>> = logits.to_vec2()?;
                for (p, row) in (start..end).zip(rows) {
                    check_finite(&row, "log-likelihood request", p + 1)?;
                    seqs[i].3.push(row);
                }
            }
        }
        for (r, (_, _, _, rows)) in group.iter().zip(seqs) {
            let mut ll = 0f64;
            let mut is_greedy = true;
            for (row, &t) in rows.iter().zip(&r.continuation) {
                ll += crate::kernels::softmax::log_softmax_at(model.isa, row, &[t as usize])[0];
                // Finite (checked), so the largest logit is well defined.
                let top = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                is_greedy &= row[t as usize] >= top;
            }
            out.push(LoglikOutput {
                loglik: ll,
                is_greedy,
            });
        }
    }
    Ok(out)
}

/// KV states of `prompts`, fed together in chunks, with no logits.
fn prefill(model: &Transformer, prompts: &[&[u32]], chunk: usize) -> Result<Vec<KvCache>> {
    let mut caches = prompts
        .iter()
        .map(|p| model.new_cache(p.len()))
        .collect::<Result<Vec<_>>>()?;
    let mut fed = vec![0usize; prompts.len()];
    loop {
        let mut steps = Vec::new();
        for ((p, cache), f) in prompts.iter().zip(caches.iter_mut()).zip(fed.iter_mut()) {
            if *f < p.len() {
                let end = (*f + chunk).min(p.len());
                steps.push(SeqStep {
                    tokens: &p[*f..end],
                    cache,
                    logits: Logits::None,
                });
                *f = end;
            }
        }
        if steps.is_empty() {
            return Ok(caches);
        }
        model.forward(&mut steps)?;
    }
}
