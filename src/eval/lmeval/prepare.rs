//! An lm-eval task's samples for a run: its pinned files checked, its
//! documents built, each context and continuation tokenized as lm-eval's
//! `local-completions` model does through `infer-eval serve`.

use super::docs;
use super::generate::GenTask;
use super::task::OutputType;
use crate::engine::LoglikRequest;
use crate::error::{Error, Result};
use crate::eval::config::{DatasetConfig, LmEvalSource, TaskKind};
use crate::eval::dataset::Item;
use crate::eval::sample::{prompt_hash, sha_hex, FileHash, SampleSpec};
use std::collections::BTreeMap;
use std::path::Path;

/// The samples of dataset `di` (`d.path` is the task file), and for a
/// `generate_until` task its generation settings and scoring. `pin` reads
/// a file, checking it against its pinned sha256 (and DVC); every file read
/// is listed in `files`.
#[allow(clippy::too_many_arguments)]
pub fn samples(
    root: &Path,
    d: &DatasetConfig,
    src: &LmEvalSource,
    di: usize,
    limit: Option<usize>,
    tok: &crate::tokenizer::Tokenizer,
    pin: &mut dyn FnMut(&str, &str) -> Result<Vec<u8>>,
    files: &mut Vec<FileHash>,
) -> Result<(Vec<SampleSpec>, Option<GenTask>)> {
    for inc in &src.includes {
        let b = pin(&inc.path, &inc.sha256)?;
        files.push(FileHash {
            name: format!("{}:include", d.name),
            path: inc.path.clone(),
            sha256: sha_hex(&b),
        });
    }
    let task_path = root.join(&d.path);
    let loaded = super::load_task(&task_path)?;
    let task = loaded.task;
    let mut splits: BTreeMap<String, Vec<docs::Doc>> = BTreeMap::new();
    for f in &src.data {
        let b = pin(&f.path, &f.sha256)?;
        files.push(FileHash {
            name: format!("{}:{}", d.name, f.split),
            path: f.path.clone(),
            sha256: sha_hex(&b),
        });
        let rows = docs::read_file(&task.dataset_path, &root.join(&f.path), &b)
            .map_err(|e| Error::bad_file(&task_path, format!("its data: {e}")))?;
        splits.entry(f.split.clone()).or_default().extend(rows);
    }
    splits.values_mut().for_each(|v| docs::unify(v));
    let rolling = task.output_type == OutputType::LoglikelihoodRolling;
    // A rolling request is the document alone: lm-eval draws no examples
    // into it, whatever num_fewshot says.
    let built = super::build(
        &task,
        &splits,
        if rolling { 0 } else { src.num_fewshot },
        src.fewshot_seed,
        limit,
        &task_path,
    )?;
    let prefix = super::prefix_token(tok);
    let gen = match task.output_type {
        OutputType::GenerateUntil => {
            let eos = tok.eos.first().and_then(|&e| tok.token_text(e));
            Some(
                GenTask::from_task(&task, eos.as_deref(), &built[0].target)
                    .map_err(|m| Error::bad_file(&task_path, m))?,
            )
        }
        _ => None,
    };
    let max_length = src.max_length();
    let mut out = Vec::with_capacity(built.len());
    for mut b in built {
        let (prompt_ids, choices) = match d.kind {
            TaskKind::MultipleChoice if rolling => {
                // lm-eval's loglikelihood_rolling: the document's
                // doc_to_target, every token scored once in disjoint windows
                // of max_length - 2 (as local-completions cuts them).
                let text = match &b.target {
                    super::render::Target::Text(t) => t.clone(),
                    other => {
                        return Err(Error::Input(format!(
                            "{}: document {}: a loglikelihood_rolling target must be text, got {other:?}",
                            d.path, b.index
                        )))
                    }
                };
                // An empty document has no windows: log-likelihood 0, one
                // (empty) word and no bytes, as lm-eval counts it.
                let ids = tok.encode_with(&text, false, true)?;
                let window = super::generate::rolling_window(max_length).ok_or_else(|| {
                    Error::Input(format!(
                        "{}: max_length {max_length} leaves no rolling window (at least 3)",
                        d.path
                    ))
                })?;
                let windows = crate::eval::perplexity::rolling_windows(&ids, prefix, window, 1);
                b.context = text.clone();
                b.choices = vec![text];
                b.gold = 0;
                (ids, windows)
            }
            TaskKind::MultipleChoice if task.output_type == OutputType::Loglikelihood => {
                // lm-eval's loglikelihood request: (context, doc_to_target),
                // no target delimiter between them.
                let cont = match &b.target {
                    super::render::Target::Text(t) => t.clone(),
                    other => {
                        return Err(Error::Input(format!(
                            "{}: document {}: a loglikelihood target must be text, got {other:?}",
                            d.path, b.index
                        )))
                    }
                };
                let (context, continuation) = super::encode_pair(tok, &b.context, &cont, prefix)?;
                let context = fit(context, &continuation, max_length, &d.path, b.index)?;
                if continuation.is_empty() {
                    return Err(Error::Input(format!(
                        "{}: document {}: the target {cont:?} has no tokens",
                        d.path, b.index
                    )));
                }
                b.choices = vec![cont];
                b.gold = 0;
                (
                    context.clone(),
                    vec![LoglikRequest {
                        context,
                        continuation,
                    }],
                )
            }
            TaskKind::MultipleChoice => {
                if b.choices.len() > crate::eval::dataset::MAX_CHOICES {
                    return Err(Error::Input(format!(
                        "{}: document {}: {} choices; at most {} per document are scored",
                        d.path,
                        b.index,
                        b.choices.len(),
                        crate::eval::dataset::MAX_CHOICES
                    )));
                }
                let reqs = b
                    .choices
                    .iter()
                    .map(|c| {
                        let cont = format!("{}{c}", task.target_delimiter);
                        let (context, continuation) =
                            super::encode_pair(tok, &b.context, &cont, prefix)?;
                        let context = fit(context, &continuation, max_length, &d.path, b.index)?;
                        if continuation.is_empty() {
                            return Err(Error::Input(format!(
                                "{}: document {}: choice {c:?} has no tokens",
                                d.path, b.index
                            )));
                        }
                        Ok(LoglikRequest {
                            context,
                            continuation,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                (reqs[0].context.clone(), reqs)
            }
            TaskKind::Generate => {
                let g = gen.as_ref().expect("generate_until");
                let ids = super::generate::left_truncate(
                    tok.encode_with(&b.context, false, true)?,
                    g.max_gen_toks,
                    max_length,
                )
                .map_err(|e| {
                    Error::Input(format!(
                        "{}: generation_kwargs.max_gen_toks / --max-length: {e}",
                        d.path
                    ))
                })?;
                // The answers accepted, kept where a generation item keeps
                // its answer (the first) and, for several, its choices.
                let choices = (!b.choices.is_empty()).then_some(b.choices.as_slice());
                let golds = g
                    .golds(&b.target, choices)
                    .map_err(|m| Error::Input(format!("{}: document {}: {m}", d.path, b.index)))?;
                b.choices = golds;
                (ids, Vec::new())
            }
        };
        let hash = prompt_hash(d.kind, &prompt_ids, &choices);
        out.push(SampleSpec {
            dataset: di,
            item: Item {
                id: b.index.to_string(),
                answer: b.choices.get(b.gold).cloned().unwrap_or_default(),
                fields: b.doc,
                choices: b.choices,
                correct: b.gold,
                fewshot: b.fewshot,
            },
            prompt: b.context,
            prompt_ids,
            choices,
            prompt_hash: hash,
            seed: None,
            oversize_bytes: None,
        });
    }
    Ok((out, gen))
}

/// A loglikelihood request as `local-completions` sends it: context and
/// continuation together cut to their last `max_length - 1` tokens, the
/// cut taken from the context (lm-eval's `self.max_length = max_length -
/// 1` and `(context_enc + continuation_enc)[-self.max_length:]`). A
/// continuation that does not fit with one context token is refused.
fn fit(
    context: Vec<u32>,
    continuation: &[u32],
    max_length: usize,
    path: &str,
    index: usize,
) -> Result<Vec<u32>> {
    let over = (context.len() + continuation.len()).saturating_sub(max_length - 1);
    if over == 0 {
        return Ok(context);
    }
    if over >= context.len() {
        return Err(Error::Input(format!(
            "{path}: document {index}: a continuation of {} tokens does not fit lm-eval's max_length {max_length} (less 1) with its context",
            continuation.len()
        )));
    }
    Ok(context[over..].to_vec())
}

/// `path` as a config names it: relative to the project root when inside
/// it, else absolute.
fn config_path(path: &Path, root: &Path) -> Result<String> {
    let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let root = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    Ok(match abs.strip_prefix(&root) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => abs.to_string_lossy().into_owned(),
    })
}

/// The config's dataset entry for an lm-eval task: `arg` is a task file,
/// or a task name looked up under `include_paths`. Data file paths in the
/// task are relative to the current folder, as lm-eval reads them.
pub fn dataset_config(
    arg: &str,
    include_paths: &[std::path::PathBuf],
    root: &Path,
    num_fewshot: Option<usize>,
    seed: u64,
    max_length: Option<usize>,
) -> Result<DatasetConfig> {
    let file = if Path::new(arg).is_file() {
        Path::new(arg).to_path_buf()
    } else if arg.ends_with(".yaml") || arg.ends_with(".yml") || include_paths.is_empty() {
        return Err(Error::Input(format!(
            "--lm-eval-task {arg}: no such file{}",
            if include_paths.is_empty() {
                " (a task name needs --include-path DIR)"
            } else {
                ""
            }
        )));
    } else {
        super::task::find_by_name(arg, include_paths)?
    };
    let loaded = super::load_task(&file)?;
    let t = &loaded.task;
    // Every kind but generation is scored by log-likelihoods.
    let kind = match t.output_type {
        OutputType::GenerateUntil => TaskKind::Generate,
        OutputType::MultipleChoice
        | OutputType::Loglikelihood
        | OutputType::LoglikelihoodRolling => TaskKind::MultipleChoice,
    };
    let pinned = |p: &Path| -> Result<crate::eval::config::TemplateRef> {
        Ok(crate::eval::config::TemplateRef {
            path: config_path(p, root)?,
            sha256: crate::formats::sha256_file(p)?,
        })
    };
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let mut data = Vec::new();
    for (split, paths) in docs::data_files(t, &cwd, &file)? {
        for p in paths {
            let r = pinned(&p)?;
            data.push(crate::eval::config::DataFile {
                split: split.clone(),
                path: r.path,
                sha256: r.sha256,
            });
        }
    }
    let me = pinned(&file)?;
    Ok(DatasetConfig {
        name: t.task.clone(),
        path: me.path,
        sha256: me.sha256,
        kind,
        scorer: None,
        pattern: None,
        max_tokens: None,
        stop_at_newline: false,
        lm_eval: Some(LmEvalSource {
            num_fewshot: num_fewshot.or(t.num_fewshot).unwrap_or(0),
            fewshot_seed: seed,
            includes: loaded.files[1..]
                .iter()
                .map(|p| pinned(p))
                .collect::<Result<_>>()?,
            data,
            output_type: Some(t.output_type.name().to_string()),
            max_length,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::fit;

    /// lm-eval 0.4.13's batch_loglikelihood_requests with max_length 6
    /// (self.max_length 5): inp = (ctx + cont)[-5:], ctxlen = len(ctx) - 2.
    #[test]
    fn a_long_request_loses_the_start_of_its_context() {
        assert_eq!(fit(vec![1, 2], &[3, 4], 6, "t", 0).unwrap(), [1, 2]);
        assert_eq!(
            fit(vec![1, 2, 3, 4], &[5, 6, 7], 6, "t", 0).unwrap(),
            [3, 4]
        );
        let e = fit(vec![1, 2], &[3, 4, 5, 6, 7], 6, "t.yaml", 3).unwrap_err();
        assert!(e.to_string().contains("t.yaml: document 3"), "{e}");
    }
}
