//! The engine's scheduler (engine::core) on a tiny model: sequences batched,
//! chunked, started from the prefix cache, with caches that grow, and
//! aborted beside others, equal each sequence run alone, bit for bit.

use infer_eval::engine::core::*;
use infer_eval::sampling::SamplingParams;

fn model() -> (tempfile::TempDir, infer_eval::loader::LoadedModel) {
    let dir = tempfile::tempdir().unwrap();
    infer_eval::bench::tiny::write_tiny_model(dir.path(), infer_eval::bench::tiny::Dtype::F32, 7)
        .unwrap();
    let m = infer_eval::loader::load(dir.path(), &candle_core::Device::Cpu).unwrap();
    (dir, m)
}

/// Sequences sharing a prefix, greedy and sampled, some with prompt logprobs.
fn specs() -> Vec<SeqSpec> {
    let base: Vec<u32> = (1..40).map(|i| (i * 7) % 50 + 3).collect();
    (0..6u32)
        .map(|k| {
            let mut prompt = base[..20 + 3 * k as usize].to_vec();
            prompt.extend([k + 5, 2 * k + 9]); // vocabulary: 64
            SeqSpec {
                name: format!("s{k}"),
                prompt,
                sampling: SamplingParams {
                    temperature: if k % 2 == 0 { 0.0 } else { 0.9 },
                    seed: 40 + k as u64,
                    max_tokens: 5 + k as usize,
                    ..SamplingParams::default()
                },
                key: k as u64,
                eos: vec![],
                prompt_logprobs: (k % 3 == 0).then_some(PromptLogprobs::echo(3)),
                top_logprobs: 2,
                stop: None,
                keep_logits: false,
            }
        })
        .collect()
}

/// Per sequence: its digests and every logprob's bits.
fn bits(events: &[Event], f: &Finished) -> String {
    let mut s = format!("{} {}", f.digest, f.logits_digest);
    for e in events {
        let l: Vec<&TokenLogprob> = match e {
            Event::Prompt(l) => l.iter().collect(),
            Event::Token(t) => vec![t],
            _ => vec![],
        };
        for t in l {
            s += &format!(" {}:{:x}", t.token, t.logprob.to_bits());
            t.top
                .iter()
                .for_each(|(i, v)| s += &format!(",{i}:{:x}", v.to_bits()));
        }
    }
    s
}

#[test]
fn batched_and_prefix_cached_sequences_equal_each_alone() {
    let (_d, m) = model();
    let alone: Vec<String> = specs()
        .into_iter()
        .map(|s| {
            let opts = EngineOptions {
                prefix_cache_bytes: 0,
                ..EngineOptions::default()
            };
            let r = run_all(&m.model, opts, vec![s], |_| {}).unwrap();
            bits(&r[0].0, &r[0].1)
        })
        .collect();
    // Three at a time, chunks of 3 tokens, a prefix cache: run twice on one engine.
    let opts = EngineOptions {
        max_batch: 3,
        prefill_chunk: 3,
        step_prefill_tokens: 5,
        prefix_cache_bytes: 64 << 20,
        // Caches start with room for 1 generated token and grow.
        kv_start_tokens: 1,
    };
    let mut e = Engine::new(&m.model, opts).unwrap();
    for round in 0..2 {
        for (i, s) in specs().into_iter().enumerate() {
            e.add(i as SeqId, s).unwrap();
        }
        let mut evs: Vec<Vec<Event>> = (0..6).map(|_| Vec::new()).collect();
        let mut got: Vec<Option<String>> = vec![None; 6];
        while !e.is_idle() {
            for (id, ev) in e.step().unwrap() {
                match ev {
                    Event::Done(f) => got[id as usize] = Some(bits(&evs[id as usize], &f)),
                    Event::Failed(f) => panic!("{}", f.message),
                    ev => evs[id as usize].push(ev),
                }
            }
        }
        for (k, (a, b)) in alone.iter().zip(&got).enumerate() {
            assert_eq!(Some(a), b.as_ref(), "round {round}: sequence {k}");
        }
    }
    let pc = e.prefix_cache();
    assert!(
        pc.hits >= 6 && pc.reused_tokens > 100,
        "hits {} reused {}",
        pc.hits,
        pc.reused_tokens
    );
}

/// Aborting a follower, or the leader others wait for (they then compute
/// the shared tokens themselves), leaves every other sequence's bits alone.
#[test]
fn an_aborted_sequence_leaves_the_others_unchanged() {
    let (_d, m) = model();
    for (abort, chunk) in [(2, 256), (0, 3), (2, 3)] {
        aborted(&m, abort, chunk);
    }
}

fn aborted(m: &infer_eval::loader::LoadedModel, abort: SeqId, chunk: usize) {
    let opts = EngineOptions {
        prefix_cache_bytes: 0,
        prefill_chunk: chunk,
        step_prefill_tokens: chunk,
        ..EngineOptions::default()
    };
    let want = run_all(&m.model, opts.clone(), specs(), |_| {}).unwrap();
    let mut e = Engine::new(&m.model, opts).unwrap();
    for (i, s) in specs().into_iter().enumerate() {
        e.add(i as SeqId, s).unwrap();
    }
    // Events of the first step are kept too: the others' logprobs and
    // logits digests, not only their token ids, must be those of a run
    // without the abort (a 64-token vocabulary makes equal ids cheap).
    let mut evs: Vec<Vec<Event>> = (0..6).map(|_| Vec::new()).collect();
    let mut done = std::collections::HashMap::new();
    let mut first = true;
    while !e.is_idle() || first {
        let step = if first {
            first = false;
            let step = e.step().unwrap();
            assert!(e.abort(abort) && !e.abort(abort));
            step
        } else {
            e.step().unwrap()
        };
        for (id, ev) in step {
            match ev {
                Event::Done(f) => {
                    done.insert(id, bits(&evs[id as usize], &f));
                }
                Event::Failed(f) => panic!("{}", f.message),
                ev => evs[id as usize].push(ev),
            }
        }
    }
    assert_eq!(done.len(), 5);
    assert!(!done.contains_key(&abort), "the aborted sequence finished");
    for (id, got) in done {
        let (wev, wf) = &want[id as usize];
        assert_eq!(
            got,
            bits(wev, wf),
            "sequence {id} (aborted {abort}, chunk {chunk})"
        );
    }
    // Bad input is refused by name.
    let refused = |bad: SeqSpec| {
        Engine::new(&m.model, EngineOptions::default())
            .unwrap()
            .add(9, bad)
            .unwrap_err()
            .to_string()
    };
    let mut bad = specs().remove(0);
    bad.prompt.push(1 << 30);
    let err = refused(bad);
    assert!(
        err.contains("s0: token id") && err.contains("outside the vocabulary"),
        "{err}"
    );
    let mut bad = specs().remove(0);
    bad.prompt_logprobs = Some(PromptLogprobs { from: 99, top: 0 });
    let err = refused(bad);
    assert!(
        err.contains("s0: prompt log-probabilities from token 99"),
        "{err}"
    );
}

/// Multiple-choice scoring prefills a context shared by consecutive
/// requests once and copies its KV state; the log-likelihoods equal each
/// request scored alone (whole prefill), bit for bit, with items whose
/// choices straddle a batch boundary and a one-token context (not shared).
#[test]
fn shared_context_logliks_equal_each_request_alone() {
    use infer_eval::engine::{loglikelihoods, LoglikRequest};
    let (_d, m) = model();
    let mut reqs = Vec::new();
    for item in 0..5u32 {
        let ctx_len = if item == 2 { 1 } else { 6 + 5 * item as usize };
        let context: Vec<u32> = (0..ctx_len as u32)
            .map(|i| (i * 11 + item * 3) % 60 + 2)
            .collect();
        for choice in 0..3u32 {
            let continuation: Vec<u32> = (0..=choice)
                .map(|j| (j * 5 + choice + item) % 60 + 2)
                .collect();
            reqs.push(LoglikRequest {
                context: context.clone(),
                continuation,
            });
        }
    }
    let together = loglikelihoods(&m.model, &reqs, 4, 5).unwrap();
    for (r, t) in reqs.iter().zip(&together) {
        let alone = loglikelihoods(&m.model, std::slice::from_ref(r), 1, 512).unwrap();
        assert_eq!(
            alone[0].loglik.to_bits(),
            t.loglik.to_bits(),
            "context of {} tokens, continuation {:?}",
            r.context.len(),
            r.continuation
        );
        assert!(t.loglik.is_finite() && t.loglik < 0.0);
    }
}

/// Scoring requests (continuation tokens from the context's end, nothing
/// generated) give the bits of `echo` over the whole prompt run alone, and
/// the choices of one item feed their context once: the followers copy
/// the leader's KV instead of computing it.
#[test]
fn scoring_equals_echo_and_a_shared_context_is_fed_once() {
    use infer_eval::engine::{loglikelihoods, LoglikRequest};
    let (_d, m) = model();
    let context: Vec<u32> = (0..40u32).map(|i| (i * 13) % 60 + 2).collect();
    let reqs: Vec<LoglikRequest> = (0..4u32)
        .map(|c| LoglikRequest {
            context: context.clone(),
            continuation: (0..=c).map(|j| (j * 7 + c) % 60 + 2).collect(),
        })
        .collect();
    let scored = loglikelihoods(&m.model, &reqs, 8, 512).unwrap();
    let spec = |prompt: Vec<u32>, from: usize| SeqSpec {
        name: "scored".into(),
        prompt,
        sampling: SamplingParams {
            max_tokens: 0,
            ..SamplingParams::default()
        },
        key: 0,
        eos: vec![],
        prompt_logprobs: Some(PromptLogprobs { from, top: 0 }),
        top_logprobs: 0,
        stop: None,
        keep_logits: false,
    };
    let mut fed = Vec::new();
    for (r, s) in reqs.iter().zip(&scored) {
        let prompt: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
        let opts = EngineOptions::batch(1, 7, 0);
        let echo = run_all(&m.model, opts, vec![spec(prompt.clone(), 1)], |_| {}).unwrap();
        let Event::Prompt(rows) = &echo[0].0[0] else {
            panic!("no prompt logprobs")
        };
        assert_eq!(rows.len(), prompt.len() - 1);
        let tail = &rows[r.context.len() - 1..];
        let ll = tail.iter().fold(0f64, |a, t| a + t.logprob);
        assert_eq!(ll.to_bits(), s.loglik.to_bits(), "{:?}", r.continuation);
        assert_eq!(tail.iter().all(|t| t.greedy), s.is_greedy);
        fed.push(prompt.len() - 1);
    }
    // All four on one engine: the context (less its last token, which the
    // first continuation row reads) is computed once. A prefix cache that
    // lends each of them the first `hit` tokens (from an earlier sequence
    // that shares only those) does not stop the sharing.
    for hit in [0, 1, 5] {
        let opts = EngineOptions {
            prefix_cache_bytes: 64 << 20,
            ..EngineOptions::batch(8, 512, 0)
        };
        let mut e = Engine::new(&m.model, opts).unwrap();
        let run = |e: &mut Engine| {
            while !e.is_idle() {
                for (_, ev) in e.step().unwrap() {
                    assert!(!matches!(ev, Event::Failed(_)));
                }
            }
        };
        if hit > 0 {
            let mut primer = context[..hit + 1].to_vec();
            primer[hit] = 63;
            e.add(99, spec(primer, 1)).unwrap();
            run(&mut e);
        }
        let before = e.computed_tokens();
        for (i, r) in reqs.iter().enumerate() {
            let prompt: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
            e.add(i as SeqId, spec(prompt, r.context.len())).unwrap();
        }
        run(&mut e);
        let shared = context.len() - 1;
        let want = fed.iter().sum::<usize>() - 3 * shared - hit;
        let computed = e.computed_tokens() - before;
        assert_eq!(computed, want as u64, "tokens fed to the model (hit {hit})");
        assert_eq!(e.shared_tokens(), 3 * (shared - hit) as u64, "hit {hit}");
    }
}
