//! lm-evaluation-harness task files run natively: `eval --lm-eval-task
//! FILE.yaml` reads the task (`task`), its documents (`docs`), builds each
//! document's prompt as lm-eval does (`render`, with few-shot examples drawn
//! as lm-eval's samplers draw them, `pyrandom`), and hands the run the
//! contexts and continuations to score. The task file, its includes and its
//! data files are pinned by sha256 in the run's config.

pub mod arrow;
pub mod docs;
pub mod generate;
pub mod hfcache;
pub mod prepare;
pub mod pyrandom;
pub mod render;
pub mod rolling;
pub mod task;

use crate::error::{Error, Result};
use crate::eval::dataset::FewshotRef;
use docs::Doc;
use render::{Fields, Target};
use std::collections::BTreeMap;
use std::path::Path;
use task::{OutputType, Task};

/// lm-eval's default `--fewshot_random_seed`.
pub const DEFAULT_FEWSHOT_SEED: u64 = 1234;

/// Read a task file and its `include` chain, checked as a task file and
/// for what generation needs of it (filters, `exact_match` options,
/// generation settings).
pub fn load_task(path: &Path) -> Result<task::Loaded> {
    let loaded = task::read(path)?;
    generate::check_task(&loaded.task).map_err(|m| Error::bad_file(path, m))?;
    Ok(loaded)
}

/// One evaluated document.
pub struct BuiltDoc {
    pub index: usize,
    pub doc: Doc,
    /// The full prompt: description, few-shot examples, the document's text.
    pub context: String,
    /// The choices (without the target delimiter), where the task has them.
    pub choices: Vec<String>,
    /// Multiple choice: the gold choice.
    pub gold: usize,
    pub target: Target,
    pub fewshot: Vec<FewshotRef>,
}

/// The few-shot split and whether the evaluated document is left out of it
/// (only when it is named and is the test split, as lm-eval does).
fn fewshot_split(t: &Task) -> (String, bool) {
    let named = t
        .fewshot_config
        .as_ref()
        .and_then(|f| f.split.clone())
        .or_else(|| t.fewshot_split.clone());
    match named {
        Some(s) => {
            let exclude = Some(&s) == t.test_split.as_ref();
            (s, exclude)
        }
        None => (
            t.training_split
                .clone()
                .or_else(|| t.validation_split.clone())
                .unwrap_or_else(|| task::eval_split(t).to_string()),
            false,
        ),
    }
}

/// The answer text of a few-shot example (lm-eval's `build_qa_turn`).
fn answer_text(target: &Target, choices: Option<&[String]>) -> Option<String> {
    match (target, choices) {
        (Target::Index(i), Some(c)) => c.get(*i).cloned(),
        (Target::Index(i), None) => Some(i.to_string()),
        (Target::List(l), _) => l.first().cloned(),
        (Target::Text(t), _) => Some(t.clone()),
    }
}

/// Build every evaluated document of `task` (the first `limit`), with
/// `num_fewshot` examples drawn with `seed` by the task's sampler.
pub fn build(
    task: &Task,
    splits: &BTreeMap<String, Vec<Doc>>,
    num_fewshot: usize,
    seed: u64,
    limit: Option<usize>,
    origin: &Path,
) -> Result<Vec<BuiltDoc>> {
    let f = Fields::new();
    let missing = |s: &str| {
        Error::bad_file(
            origin,
            format!(
                "split '{s}' is not in the data files (splits: {})",
                splits.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    };
    let split = task::eval_split(task);
    let docs = splits.get(split).ok_or_else(|| missing(split))?;
    let (fs_split, exclude) = fewshot_split(task);
    let fs_docs = if num_fewshot > 0 {
        splits
            .get(&fs_split)
            .ok_or_else(|| missing(&fs_split))?
            .as_slice()
    } else {
        &[]
    };
    let first_n = task
        .fewshot_config
        .as_ref()
        .and_then(|c| c.sampler.as_deref())
        == Some("first_n");
    let mut rnd = pyrandom::PyRandom::new(seed);
    let has_choices = task.doc_to_choice.is_some();
    let mc = task.output_type == OutputType::MultipleChoice;
    let text_field = task
        .doc_to_text
        .clone()
        .unwrap_or(serde_json::Value::from(""));
    let target_field = task.doc_to_target.as_ref().expect("validated");
    let n = limit.map_or(docs.len(), |l| l.min(docs.len()));
    let mut out = Vec::with_capacity(n);
    for (index, doc) in docs.iter().take(n).enumerate() {
        let what = format!("{}: {split} document {index}", origin.display());
        let fs_what =
            |i: usize| format!("{}: {fs_split} document {i} (few-shot)", origin.display());
        // The few-shot examples, as lm-eval's samplers pick them.
        let picked: Vec<usize> = if num_fewshot == 0 {
            Vec::new()
        } else {
            let eval_doc = exclude.then_some(doc);
            let pool: Vec<usize> = (0..fs_docs.len())
                .filter(|&i| eval_doc != Some(&fs_docs[i]))
                .collect();
            if pool.len() < num_fewshot {
                return Err(Error::bad_file(
                    origin,
                    format!(
                        "num_fewshot {num_fewshot}: split '{fs_split}' has only {} documents to draw from",
                        pool.len()
                    ),
                ));
            }
            if first_n {
                pool[..num_fewshot].to_vec()
            } else if let Some(ed) = eval_doc {
                // lm-eval draws one more and drops documents equal to the
                // one asked (so a duplicate of it leaves fewer examples).
                let k = (num_fewshot + 1).min(fs_docs.len());
                rnd.sample(fs_docs.len(), k)
                    .into_iter()
                    .filter(|&i| &fs_docs[i] != ed)
                    .take(num_fewshot)
                    .collect()
            } else {
                rnd.sample(fs_docs.len(), num_fewshot)
            }
        };
        let mut context = match &task.description {
            Some(d) => f.render(d, doc, &format!("{what}: description"))?,
            None => String::new(),
        };
        let mut fewshot = Vec::new();
        for &i in &picked {
            let fd = &fs_docs[i];
            let w = fs_what(i);
            let q = f.text(&text_field, fd, &w)?;
            let c = match &task.doc_to_choice {
                Some(c) => Some(f.choices(c, fd, &w)?),
                None => None,
            };
            let a = f.target(target_field, fd, has_choices, &w)?;
            let mut ex = q;
            if let Some(ans) = answer_text(&a, c.as_deref()).filter(|s| !s.is_empty()) {
                ex.push_str(&task.target_delimiter);
                ex.push_str(&ans);
                ex.push_str(&task.fewshot_delimiter);
            }
            fewshot.push(FewshotRef {
                split: fs_split.clone(),
                index: i,
                sha256: crate::eval::sample::sha_hex(ex.as_bytes()),
            });
            context.push_str(&ex);
        }
        let target = f.target(target_field, doc, has_choices, &what)?;
        let (choices, gold) = if mc {
            let choices = f.choices(task.doc_to_choice.as_ref().unwrap(), doc, &what)?;
            let gold = match &target {
                Target::Index(i) if *i < choices.len() => *i,
                Target::Text(t) if choices.contains(t) => {
                    choices.iter().position(|c| c == t).unwrap()
                }
                other => {
                    let t = match other {
                        Target::Index(i) => format!("index {i}"),
                        Target::Text(t) => format!("{t:?}"),
                        Target::List(l) => format!("list {l:?}"),
                    };
                    return Err(Error::Input(format!(
                        "{what}: the target {t} is not one of the {} choices {choices:?}",
                        choices.len()
                    )));
                }
            };
            (choices, gold)
        } else if let Some(c) = &task.doc_to_choice {
            // generate_until with choices: the target indexes them.
            (f.choices(c, doc, &what)?, 0)
        } else {
            (Vec::new(), 0)
        };
        if task.output_type != OutputType::LoglikelihoodRolling {
            context.push_str(&f.text(&text_field, doc, &what)?);
        }
        out.push(BuiltDoc {
            index,
            doc: doc.clone(),
            context,
            choices,
            gold,
            target,
            fewshot,
        });
    }
    if out.is_empty() {
        return Err(Error::bad_file(
            origin,
            format!("split '{split}' has no documents"),
        ));
    }
    Ok(out)
}

/// lm-eval's `_encode_pair` for a causal model: trailing spaces of the
/// context move to the continuation; the continuation's tokens are those of
/// the whole text after the context's. An empty context is `prefix`.
pub fn encode_pair(
    tok: &crate::tokenizer::Tokenizer,
    context: &str,
    continuation: &str,
    prefix: u32,
) -> Result<(Vec<u32>, Vec<u32>)> {
    // lm-eval's remote tokenizer: no special tokens added, their strings parsed.
    let enc = |s: &str| tok.encode_with(s, false, true);
    if context.is_empty() {
        let c = enc(continuation)?;
        return Ok(if c.first() != Some(&prefix) {
            (vec![prefix], c)
        } else {
            (c[..1].to_vec(), c[1..].to_vec())
        });
    }
    let trimmed = context.trim_end();
    let (ctx, cont) = (
        trimmed,
        format!("{}{continuation}", &context[trimmed.len()..]),
    );
    let whole = enc(&format!("{ctx}{cont}"))?;
    let ctx_ids = enc(ctx)?;
    let cont_ids = whole.get(ctx_ids.len()..).unwrap_or(&[]).to_vec();
    Ok((ctx_ids, cont_ids))
}

/// The token a document's first window (or an empty context) is
/// conditioned on: lm-eval's `bos_token_id or eos_token_id` (Python's `or`,
/// so a BOS of id 0 gives EOS).
pub fn prefix_token(tok: &crate::tokenizer::Tokenizer) -> u32 {
    match (tok.bos, tok.eos.first().copied()) {
        (Some(b), _) if b != 0 => b,
        (_, Some(e)) => e,
        (b, None) => b.unwrap_or(0),
    }
}
