//! `loglikelihood_rolling` tasks (wikitext-style perplexity): each
//! evaluated document's `doc_to_target` is one text whose every token is
//! scored (`eval::perplexity` windows it as lm-eval does).

use super::docs;
use super::render::Fields;
use super::task::OutputType;
use crate::error::{Error, Result};
use crate::eval::perplexity::Document;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A rolling task's documents (the first `limit` of its evaluated split),
/// named `<task>/<index>`, and every file read (task, includes, data).
pub struct RollingTask {
    pub name: String,
    pub documents: Vec<Document>,
    pub files: Vec<PathBuf>,
}

/// Read task `file` (data paths relative to `cwd`, as lm-eval reads them).
pub fn documents(file: &Path, cwd: &Path, limit: Option<usize>) -> Result<RollingTask> {
    let loaded = super::load_task(file)?;
    let t = &loaded.task;
    if t.output_type != OutputType::LoglikelihoodRolling {
        return Err(Error::bad_file(
            file,
            format!(
                "output_type {}: `infer-eval perplexity --lm-eval-task` runs loglikelihood_rolling tasks (multiple_choice: `infer-eval eval --lm-eval-task`)",
                t.output_type.name()
            ),
        ));
    }
    let mut files = loaded.files.clone();
    let split = super::task::eval_split(t).to_string();
    let mut rows: BTreeMap<String, Vec<docs::Doc>> = BTreeMap::new();
    for (s, paths) in docs::data_files(t, cwd, file)? {
        if s != split {
            continue;
        }
        for p in paths {
            let b = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            rows.entry(s.clone()).or_default().extend(
                docs::read_file(&t.dataset_path, &p, &b)
                    .map_err(|e| Error::bad_file(file, format!("its data: {e}")))?,
            );
            files.push(p);
        }
    }
    let mut eval_docs = rows.remove(&split).ok_or_else(|| {
        Error::bad_file(file, format!("split '{split}' is not in the data files"))
    })?;
    docs::unify(&mut eval_docs);
    let target = t
        .doc_to_target
        .as_ref()
        .ok_or_else(|| Error::bad_file(file, "a loglikelihood_rolling task needs doc_to_target"))?;
    let f = Fields::new();
    let n = limit.map_or(eval_docs.len(), |l| l.min(eval_docs.len()));
    let documents = eval_docs[..n]
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let what = format!("{}: {split} document {i}", file.display());
            Ok(Document {
                name: format!("{}/{i}", t.task),
                text: f.text(target, d, &what)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(RollingTask {
        name: t.task.clone(),
        documents,
        files,
    })
}
