//! Evaluation runs: prepare samples from the resolved config, compute them in
//! batches, append each finished batch to samples.jsonl, and finish with
//! metrics.json and manifest.json. A run directory holds an INCOMPLETE marker
//! until the end, and `--resume` continues it to the same digests.

use super::config::{EvalConfig, Scorer, TaskKind};
use super::dataset::{self, Drift, Item};
use super::lmeval::generate::GenTask;
use super::sample::{
    ids_hash, prompt_hash, sha_hex, CacheMode, FileHash, Latency, Raw, SampleRecord, SampleSpec,
};
use super::score;
use super::template::Template;
use crate::engine::{self, GenOptions, LoglikRequest, Request};
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything needed to compute a run's samples.
pub struct Prepared {
    pub config: EvalConfig,
    pub root: PathBuf,
    pub model: LoadedModel,
    pub samples: Vec<SampleSpec>,
    pub datasets: Vec<FileHash>,
    pub templates: Vec<FileHash>,
    pub drifts: Vec<Drift>,
    /// DVC facts of the inputs DVC tracks.
    pub dvc: Vec<crate::record::dvc::DvcRecord>,
    /// Set when this run is one shard of a larger one (`select_shard`).
    pub shard: Option<super::shard::ShardInfo>,
    stop_ids: Vec<u32>,
    patterns: Vec<Option<regex::Regex>>,
    /// Per dataset: an lm-eval generate_until task's settings and scoring.
    lm_gen: Vec<Option<GenTask>>,
    /// Per dataset: sha256 of the effective parameters (baseline key).
    params_hash: Vec<String>,
    /// Items left out because they cannot fit the context (`run.too_long: skip`).
    pub skipped: Vec<Skipped>,
}

/// Load data, templates and the model, render and tokenize every sample.
pub fn prepare(
    config: &EvalConfig,
    root: &Path,
    model: LoadedModel,
    allow_drift: bool,
) -> Result<Prepared> {
    let mut drifts = Vec::new();
    let mut dvc = Vec::new();
    let mut templates = Vec::new();
    let mut load_template = |name: &str, r: &super::config::TemplateRef| -> Result<Template> {
        let bytes = dataset::check_pinned(root, &r.path, &r.sha256, allow_drift, &mut drifts)?;
        dataset::check_dvc(root, &r.path, &bytes, allow_drift, &mut drifts, &mut dvc)?;
        templates.push(FileHash {
            name: name.into(),
            path: r.path.clone(),
            sha256: sha_hex(&bytes),
        });
        Template::from_bytes(&root.join(&r.path), &bytes)
    };
    let gen_t = load_template("generate", &config.prompt.generate)?;
    let mc_t = load_template("multiple_choice", &config.prompt.multiple_choice)?;
    let tok = &model.tokenizer;
    let chat_prompt = super::chat::ChatPrompt::from_config(&config.prompt)?;
    let chat = config.prompt.chat || chat_prompt.is_some();
    // An item's prompt: the prompt file rendered, or the chat messages
    // (holding it where they say `{prompt}`) rendered by the chat template.
    let render = |t: &Template, item: &Item, examples: Option<&str>| -> Result<String> {
        match &chat_prompt {
            Some(c) => {
                let file = if c.uses_prompt() {
                    t.render(&item.fields)?
                } else {
                    String::new()
                };
                tok.apply_chat_messages(&c.messages(&item.fields, &file, &item.id)?)
            }
            None => match examples {
                Some(e) => super::fewshot::render(t, &item.fields, e),
                None => t.render(&item.fields),
            },
        }
    };
    let encode_prompt = |text: &str| match &chat_prompt {
        Some(_) => tok.encode_rendered(text, true),
        None => tok.encode_prompt(text, chat),
    };
    let ctx_len = model.model.config.max_position_embeddings;
    // The most bytes one token stands for: a text of more than ctx_len times
    // this many bytes cannot fit the context, whatever its tokens.
    let max_token_bytes = (0..tok.vocab_size as u32)
        .filter_map(|i| tok.token_text(i).map(|t| t.len()))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut samples = Vec::new();
    let mut datasets = Vec::new();
    let mut patterns = Vec::new();
    let mut lm_gen = Vec::new();
    for (di, d) in config.task.datasets.iter().enumerate() {
        let bytes = dataset::check_pinned(root, &d.path, &d.sha256, allow_drift, &mut drifts)?;
        dataset::check_dvc(root, &d.path, &bytes, allow_drift, &mut drifts, &mut dvc)?;
        datasets.push(FileHash {
            name: d.name.clone(),
            path: d.path.clone(),
            sha256: sha_hex(&bytes),
        });
        if let Some(src) = &d.lm_eval {
            patterns.push(None);
            let mut pin = |rel: &str, sha: &str| -> Result<Vec<u8>> {
                let b = dataset::check_pinned(root, rel, sha, allow_drift, &mut drifts)?;
                dataset::check_dvc(root, rel, &b, allow_drift, &mut drifts, &mut dvc)?;
                Ok(b)
            };
            let (specs, gen) = super::lmeval::prepare::samples(
                root,
                d,
                src,
                di,
                config.run.limit,
                tok,
                &mut pin,
                &mut datasets,
            )?;
            // A sampled task once per seed (the seed stands for lm_eval's
            // `--model_args seed=S`), as the built-in tasks below.
            match config
                .seeds()
                .filter(|_| gen.as_ref().is_some_and(|g| g.sampled()))
            {
                Some(seeds) => samples.extend(once_per_seed(specs, &seeds)),
                None => samples.extend(specs),
            }
            lm_gen.push(gen);
            continue;
        }
        lm_gen.push(None);
        let first = samples.len();
        let mut items = dataset::parse(d, &root.join(&d.path), &bytes)?;
        let shots = match &config.task.fewshot {
            Some(f) => {
                let mut pin = |rel: &str, sha: &str| -> Result<Vec<u8>> {
                    let b = dataset::check_pinned(root, rel, sha, allow_drift, &mut drifts)?;
                    dataset::check_dvc(root, rel, &b, allow_drift, &mut drifts, &mut dvc)?;
                    Ok(b)
                };
                Some(super::fewshot::Shots::load(
                    f,
                    d,
                    &items,
                    root,
                    &mut pin,
                    &mut datasets,
                )?)
            }
            None => None,
        };
        if let Some(n) = config.run.limit {
            items.truncate(n);
        }
        patterns.push(
            d.pattern
                .as_deref()
                .map(|p| regex::Regex::new(p).expect("validated")),
        );
        for (index, mut item) in items.into_iter().enumerate() {
            let examples = match &shots {
                Some(s) => {
                    let (text, refs) = s.for_item(&d.name, index, &item)?;
                    item.fewshot = refs;
                    Some(text)
                }
                None => None,
            };
            let examples = examples.as_deref();
            let rendered = match d.kind {
                TaskKind::Generate => render(&gen_t, &item, examples)?,
                TaskKind::MultipleChoice => render(&mc_t, &item, examples)?,
            };
            // So long that no tokenisation fits the context: not tokenised.
            // (Each token stands for at most max_token_bytes bytes; the
            // margin of 3 covers a normaliser that shrinks text, as NFKC
            // folds a 3-byte fullwidth letter to 1 byte.)
            if rendered.len() / (3 * max_token_bytes) > ctx_len {
                samples.push(SampleSpec {
                    dataset: di,
                    item,
                    oversize_bytes: Some(rendered.len()),
                    prompt: String::new(),
                    prompt_ids: Vec::new(),
                    choices: Vec::new(),
                    prompt_hash: String::new(),
                    seed: None,
                });
                continue;
            }
            let (prompt, choices) = match d.kind {
                TaskKind::Generate => (rendered, Vec::new()),
                TaskKind::MultipleChoice => {
                    let ctx = rendered;
                    let ctx_ids = encode_prompt(&ctx)?;
                    let reqs = item
                        .choices
                        .iter()
                        .map(|c| {
                            let cont = format!("{}{c}", config.prompt.choice_prefix);
                            // Continuation tokens as in lm-evaluation-harness: encode the
                            // whole text and take what follows the context's tokens.
                            let whole = if chat {
                                Vec::new()
                            } else {
                                tok.encode(&format!("{ctx}{cont}"), false)?
                            };
                            let cont_ids =
                                if whole.len() > ctx_ids.len() && whole.starts_with(&ctx_ids) {
                                    whole[ctx_ids.len()..].to_vec()
                                } else {
                                    tok.encode_with(&cont, false, false)?
                                };
                            if cont_ids.is_empty() {
                                return Err(Error::Input(format!(
                                    "{}: choice {c:?} of item {} has no tokens",
                                    d.path, item.id
                                )));
                            }
                            Ok(LoglikRequest {
                                context: ctx_ids.clone(),
                                continuation: cont_ids,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    (ctx, reqs)
                }
            };
            let prompt_ids = match d.kind {
                TaskKind::Generate => encode_prompt(&prompt)?,
                TaskKind::MultipleChoice => choices[0].context.clone(),
            };
            let prompt_hash = prompt_hash(d.kind, &prompt_ids, &choices);
            samples.push(SampleSpec {
                dataset: di,
                item,
                prompt,
                prompt_ids,
                choices,
                prompt_hash,
                seed: None,
                oversize_bytes: None,
            });
        }
        // Several seeds: the dataset's samples once per seed, seed by seed.
        if let Some(seeds) = config.seeds().filter(|_| config.samples_with_seed(d)) {
            let once = samples.split_off(first);
            samples.extend(once_per_seed(once, &seeds));
        }
    }
    if config.seeds().is_some() && samples.iter().all(|s| s.seed.is_none()) {
        return Err(Error::Input(
            format!(
                "key 'run.seeds' / 'run.num_seeds': no task samples ({} generate greedily: generation_kwargs.temperature is 0 or absent), so every seed would give the same outputs",
                config.task.datasets.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let stop_ids = if config.task.datasets.iter().any(|d| d.stop_at_newline) {
        (0..tok.vocab_size as u32)
            .filter(|&i| tok.decode(&[i]).is_ok_and(|s| s.contains('\n')))
            .collect()
    } else {
        Vec::new()
    };
    let params_hash = config
        .task
        .datasets
        .iter()
        .zip(&lm_gen)
        .map(|(d, gen)| {
            if let Some(g) = gen {
                return g.params_hash(&tok.eos);
            }
            let mut sampling = config.sampling.clone();
            if let Some(m) = d.max_tokens {
                sampling.max_tokens = m;
            }
            let mut h = Sha256::new();
            match d.kind {
                TaskKind::Generate => {
                    h.update(b"generate\0");
                    h.update(serde_json::to_vec(&sampling).expect("serializes"));
                    ids_hash(&mut h, &tok.eos);
                    if d.stop_at_newline {
                        ids_hash(&mut h, &stop_ids);
                    }
                }
                TaskKind::MultipleChoice => h.update(b"multiple_choice\0"),
            }
            hex::encode(h.finalize())
        })
        .collect();
    let mut prep = Prepared {
        config: config.clone(),
        root: root.to_path_buf(),
        model,
        samples,
        datasets,
        templates,
        drifts,
        dvc,
        shard: None,
        stop_ids,
        patterns,
        lm_gen,
        params_hash,
        skipped: Vec::new(),
    };
    prep.fit_context()?;
    Ok(prep)
}

impl Prepared {
    /// Keep only `shard`'s samples (global index i with i mod N = I);
    /// `tree` is the resolved config, `source` where the shard came from.
    pub fn select_shard(
        &mut self,
        shard: super::shard::Shard,
        source: &str,
        tree: &serde_json::Value,
    ) {
        let total = self.samples.len();
        let all = std::mem::take(&mut self.samples);
        self.samples = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| shard.owns(*i))
            .map(|(_, s)| s)
            .collect();
        self.shard = Some(super::shard::ShardInfo {
            index: shard.index,
            count: shard.count,
            source: source.into(),
            total_samples: total,
            whole_config_sha256: super::shard::whole_config_sha256(tree),
        });
    }

    /// sha256 of the effective parameters of `s`'s dataset (baseline key).
    pub fn params_hash(&self, s: &SampleSpec) -> String {
        self.params_hash[s.dataset].clone()
    }

    /// `<dataset>/<item id>`, with `@seed=<S>` when the run has several seeds.
    pub fn sample_id(&self, s: &SampleSpec) -> String {
        let base = self.item_id(s);
        match s.seed {
            Some(seed) => format!("{base}@seed={seed}"),
            None => base,
        }
    }

    /// `<dataset>/<item id>`: also the RNG's sequence name, so an item's
    /// draws under seed S are those of a one-seed run with sampling.seed=S.
    fn item_id(&self, s: &SampleSpec) -> String {
        format!(
            "{}/{}",
            self.config.task.datasets[s.dataset].name, s.item.id
        )
    }

    /// Compute samples `idx` (all from one dataset) without scoring.
    pub fn compute_raw(&self, idx: &[usize]) -> Result<Vec<Raw>> {
        let specs: Vec<&SampleSpec> = idx.iter().map(|&i| &self.samples[i]).collect();
        let d = &self.config.task.datasets[specs[0].dataset];
        let run = &self.config.run;
        let t0 = Instant::now();
        let n = specs.len();
        match d.kind {
            TaskKind::Generate => {
                let gen = self.lm_gen[specs[0].dataset].as_ref();
                let reqs: Vec<Request> = specs
                    .iter()
                    .map(|s| Request {
                        // An lm-eval sampled task draws as the server does
                        // for lm-eval's one-prompt requests (`GenTask::sampled`).
                        id: match gen {
                            Some(g) if g.sampled() => "0".to_string(),
                            _ => self.item_id(s),
                        },
                        prompt_ids: s.prompt_ids.clone(),
                    })
                    .collect();
                let mut sampling = match gen {
                    Some(g) => g.sampling(),
                    None => self.config.sampling.clone(),
                };
                if let Some(m) = d.max_tokens {
                    sampling.max_tokens = m;
                }
                // A batch holds one seed's samples (`batches`).
                if let Some(seed) = specs[0].seed {
                    sampling.seed = seed;
                }
                let opts = GenOptions {
                    sampling,
                    batch_size: run.batch_size,
                    prefill_chunk: run.prefill_chunk,
                    keep_logits: false,
                };
                let mut stops = self.model.tokenizer.eos.clone();
                if d.stop_at_newline {
                    stops.extend(&self.stop_ids);
                }
                let rule = || -> Option<engine::core::StopRule> {
                    let stops = gen?.stops.clone();
                    let tok = self.model.tokenizer.clone();
                    Some(Box::new(crate::tokenizer::stop::stop_rule(tok, stops)))
                };
                let gens = engine::generate_with_stops(
                    &self.model.model,
                    &stops,
                    &reqs,
                    &opts,
                    &rule,
                    |_| {},
                )?;
                let batch_ms = t0.elapsed().as_secs_f64() * 1e3;
                Ok(gens
                    .into_iter()
                    .map(|g| Raw {
                        digest: engine::ids_digest(&g.output_ids),
                        output_ids: g.output_ids,
                        logits_digest: Some(g.logits_digest),
                        logprobs: g.logprobs,
                        latency: Latency {
                            ttft_ms: g.ttft_s * 1e3,
                            token_ms: g.token_times_s.iter().map(|t| t * 1e3).collect(),
                            batch_ms,
                            batch_len: n,
                        },
                        cached: false,
                    })
                    .collect())
            }
            TaskKind::MultipleChoice => {
                let reqs: Vec<LoglikRequest> = specs
                    .iter()
                    .flat_map(|s| s.choices.iter().cloned())
                    .collect();
                // (A batch of empty rolling documents has no windows.)
                let lls = if reqs.is_empty() {
                    Vec::new()
                } else {
                    engine::loglikelihoods(
                        &self.model.model,
                        &reqs,
                        run.batch_size,
                        run.prefill_chunk,
                    )?
                };
                let batch_ms = t0.elapsed().as_secs_f64() * 1e3;
                let mut at = 0;
                Ok(specs
                    .iter()
                    .map(|s| {
                        let outs = &lls[at..at + s.choices.len()];
                        let ll: Vec<f64> = outs.iter().map(|o| o.loglik).collect();
                        at += s.choices.len();
                        Raw {
                            // lm-eval loglikelihood: 1 where greedy decoding gives the continuation.
                            output_ids: if d.is_lm_loglikelihood() {
                                outs.iter().map(|o| o.is_greedy as u32).collect()
                            } else {
                                Vec::new()
                            },
                            digest: super::sample::logliks_digest(&ll),
                            logits_digest: None,
                            logprobs: ll,
                            latency: Latency {
                                ttft_ms: batch_ms,
                                token_ms: Vec::new(),
                                batch_ms,
                                batch_len: n,
                            },
                            cached: false,
                        }
                    })
                    .collect())
            }
        }
    }

    /// Score a computed (or stored) output of sample `i`.
    pub fn finish(&self, i: usize, raw: Raw) -> Result<SampleRecord> {
        let s = &self.samples[i];
        let d = &self.config.task.datasets[s.dataset];
        let common = |text: String,
                      score: f64,
                      score_norm: Option<f64>,
                      prediction: Option<usize>,
                      choice_logliks: Option<Vec<f64>>,
                      logprobs: Vec<f64>| SampleRecord {
            id: self.sample_id(s),
            task: d.name.clone(),
            prompt_sha256: sha_hex(s.prompt.as_bytes()),
            prompt_ids: s.prompt_ids.clone(),
            output_ids: raw.output_ids.clone(),
            text,
            choice_logliks,
            prediction,
            score,
            score_norm,
            digest: raw.digest.clone(),
            logits_digest: raw.logits_digest.clone(),
            logprobs,
            prompt_hash: s.prompt_hash.clone(),
            params_hash: self.params_hash[s.dataset].clone(),
            seed: s.seed,
            fewshot: s.item.fewshot.clone(),
            filtered: Vec::new(),
            cached: raw.cached,
            latency: raw.latency.clone(),
        };
        Ok(match d.kind {
            TaskKind::Generate if self.lm_gen[s.dataset].is_some() => {
                let g = self.lm_gen[s.dataset].as_ref().unwrap();
                let full = self.model.tokenizer.decode(&raw.output_ids)?;
                let text = crate::tokenizer::stop::cut_at_stop(&full, &g.stops).0;
                let filtered = g.score(&text, &s.item.choices).map_err(|m| {
                    Error::Input(format!("{}: sample {}: {m}", d.path, self.sample_id(s)))
                })?;
                let mut r = common(
                    text,
                    filtered[0].exact_match,
                    None,
                    None,
                    None,
                    raw.logprobs.clone(),
                );
                r.filtered = filtered;
                r
            }
            TaskKind::Generate => {
                let text = self.model.tokenizer.decode(&raw.output_ids)?;
                let score = score::score_generation(
                    d.scorer.unwrap_or(Scorer::ExactMatch),
                    self.patterns[s.dataset].as_ref(),
                    &text,
                    &s.item.answer,
                );
                common(text, score, None, None, None, raw.logprobs.clone())
            }
            TaskKind::MultipleChoice if d.is_lm_rolling() => {
                // The per-window log-likelihoods; the text scored is the
                // document (its words and bytes weigh the perplexities).
                if raw.logprobs.len() != s.choices.len() {
                    return Err(Error::Input(format!(
                        "sample {}: {} log-likelihoods for {} windows",
                        self.sample_id(s),
                        raw.logprobs.len(),
                        s.choices.len()
                    )));
                }
                let text = s.item.choices.first().cloned().unwrap_or_default();
                common(
                    text,
                    0.0,
                    None,
                    None,
                    Some(raw.logprobs.clone()),
                    Vec::new(),
                )
            }
            TaskKind::MultipleChoice if d.is_lm_loglikelihood() => {
                let ll = raw.logprobs.clone();
                let greedy = raw.output_ids.first() == Some(&1);
                let text = s.item.choices.first().cloned().unwrap_or_default();
                common(text, greedy as u8 as f64, None, None, Some(ll), Vec::new())
            }
            TaskKind::MultipleChoice => {
                let ll = raw.logprobs.clone();
                if ll.len() != s.item.choices.len() {
                    return Err(Error::Input(format!(
                        "sample {}: {} log-likelihoods for {} choices",
                        self.sample_id(s),
                        ll.len(),
                        s.item.choices.len()
                    )));
                }
                let pred = score::argmax_f64(&ll);
                let pred_norm = score::acc_norm_prediction(&ll, &s.item.choices);
                let score = (pred == s.item.correct) as u8 as f64;
                let score_norm = (pred_norm == s.item.correct) as u8 as f64;
                common(
                    s.item.choices[pred].clone(),
                    score,
                    Some(score_norm),
                    Some(pred),
                    Some(ll),
                    Vec::new(),
                )
            }
        })
    }

    /// Compute and score samples `idx` (all from one dataset).
    pub fn compute(&self, idx: &[usize]) -> Result<Vec<SampleRecord>> {
        let raws = self.compute_raw(idx)?;
        idx.iter()
            .zip(raws)
            .map(|(&i, r)| self.finish(i, r))
            .collect()
    }

    /// Compute samples `idx`, serving and filling the baseline store as
    /// `store` says (see `CacheMode`).
    pub fn compute_cached(
        &self,
        idx: &[usize],
        store: &mut Option<(&mut crate::baseline::Store, CacheMode)>,
    ) -> Result<Vec<SampleRecord>> {
        let Some((st, mode)) = store.as_mut().filter(|(_, m)| *m != CacheMode::Off) else {
            return self.compute(idx);
        };
        let mut raws: Vec<Option<Raw>> = Vec::with_capacity(idx.len());
        for &i in idx {
            let hit = if *mode == CacheMode::Read {
                st.get(&self.key(i))?
            } else {
                None
            };
            // A stored entry is served only if it holds (digest and all).
            if let Some(e) = &hit {
                self.check_stored(i, e, st.path())?;
            }
            raws.push(hit.map(|e| Raw {
                output_ids: e.output_ids,
                digest: e.digest,
                logits_digest: e.logits_digest,
                logprobs: e.logprobs,
                latency: Latency {
                    ttft_ms: 0.0,
                    token_ms: Vec::new(),
                    batch_ms: 0.0,
                    batch_len: 1,
                },
                cached: true,
            }));
        }
        let misses: Vec<usize> = idx
            .iter()
            .zip(&raws)
            .filter(|(_, r)| r.is_none())
            .map(|(&i, _)| i)
            .collect();
        if !misses.is_empty() {
            let computed = self.compute_raw(&misses)?;
            let now = crate::record::utc_timestamp();
            let run = self.config.name.clone();
            let entries: Vec<_> = misses
                .iter()
                .zip(&computed)
                .map(|(&i, r)| {
                    (
                        self.key(i),
                        crate::baseline::Entry {
                            output_ids: r.output_ids.clone(),
                            digest: r.digest.clone(),
                            logits_digest: r.logits_digest.clone(),
                            logprobs: r.logprobs.clone(),
                            run: run.clone(),
                            created_at: now.clone(),
                        },
                    )
                })
                .collect();
            st.record(&entries)?;
            let mut it = computed.into_iter();
            for r in raws.iter_mut().filter(|r| r.is_none()) {
                *r = it.next();
            }
        }
        idx.iter()
            .zip(raws)
            .map(|(&i, r)| self.finish(i, r.expect("filled")))
            .collect()
    }

    /// The baseline-store key of sample `i`.
    pub fn key(&self, i: usize) -> crate::baseline::Key {
        let s = &self.samples[i];
        crate::baseline::Key {
            determinism_version: crate::DETERMINISM_VERSION,
            model_sha256: self.model.info.sha256.clone(),
            tokenizer_sha256: self.model.tokenizer.sha256.clone(),
            prompt_hash: s.prompt_hash.clone(),
            params_hash: self.params_hash[s.dataset].clone(),
            seed: s.seed.unwrap_or(self.config.sampling.seed),
        }
    }

    /// Indices of samples grouped into batches that stay within one dataset
    /// (and one seed).
    pub fn batches(&self, skip: usize) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        for i in skip..self.samples.len() {
            match out.last_mut() {
                Some(b)
                    if b.len() < self.config.run.batch_size
                        && self.samples[b[0]].dataset == self.samples[i].dataset
                        && self.samples[b[0]].seed == self.samples[i].seed =>
                {
                    b.push(i)
                }
                _ => out.push(vec![i]),
            }
        }
        out
    }
}

/// A dataset's samples once per seed, seed by seed.
fn once_per_seed(once: Vec<SampleSpec>, seeds: &[u64]) -> Vec<SampleSpec> {
    seeds
        .iter()
        .flat_map(|&seed| {
            once.iter().cloned().map(move |mut s| {
                s.seed = Some(seed);
                s
            })
        })
        .collect()
}

pub fn run_digest(samples: &[SampleRecord]) -> String {
    engine::combine_digests(samples.iter().map(|s| s.digest.as_str()))
}

/// An item a run left out, and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    pub id: String,
    pub why: String,
}
