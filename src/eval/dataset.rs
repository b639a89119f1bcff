//! Datasets: JSONL files pinned by sha256 in the config.

use super::config::{DatasetConfig, TaskKind};
use crate::error::{Error, Result};
use crate::record::dvc::DvcRecord;
use serde_json::{Map, Value};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    /// Every field of the line, for the prompt template.
    pub fields: Map<String, Value>,
    /// Generation: the expected answer text. Multiple choice: the choices.
    pub answer: String,
    pub choices: Vec<String>,
    pub correct: usize,
    /// lm-eval tasks: the few-shot examples in the prompt.
    pub fewshot: Vec<FewshotRef>,
}

/// A hash that differs from the pinned one (recorded with --allow-data-drift).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Drift {
    pub file: String,
    pub expected: String,
    pub actual: String,
}

/// Largest data, template or task file read (a larger one is refused by its
/// size before it is read).
pub const MAX_DATA_BYTES: u64 = 4 << 30;

/// Most choices one multiple-choice item may have (each is a forward pass).
pub const MAX_CHOICES: usize = 1024;

/// Check a file's sha256 against the pinned value.
pub fn check_pinned(
    root: &Path,
    rel: &str,
    expected: &str,
    allow_drift: bool,
    drifts: &mut Vec<Drift>,
) -> Result<Vec<u8>> {
    let path = root.join(rel);
    let bytes = crate::fsio::read_regular(&path, MAX_DATA_BYTES)?;
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if actual != expected {
        if !allow_drift {
            return Err(Error::HashMismatch {
                what: format!(
                    "{} (pinned in the config; pass --allow-data-drift to run anyway)",
                    path.display()
                ),
                expected: expected.into(),
                actual,
            });
        }
        drifts.push(Drift {
            file: rel.into(),
            expected: expected.into(),
            actual,
        });
    }
    Ok(bytes)
}

/// Where DVC tracks `rel` (its own `.dvc`, a tracked folder above it, or a
/// `dvc.lock` output), record the facts and check `bytes` against DVC's md5:
/// a mismatch is refused, or with `allow_drift` recorded as drift.
pub fn check_dvc(
    root: &Path,
    rel: &str,
    bytes: &[u8],
    allow_drift: bool,
    drifts: &mut Vec<Drift>,
    records: &mut Vec<DvcRecord>,
) -> Result<()> {
    let path = root.join(rel);
    let Some(rec) = crate::record::dvc::inspect(&path, rel, bytes)? else {
        return Ok(());
    };
    if !rec.matches {
        if !allow_drift {
            return Err(Error::HashMismatch {
                what: format!(
                    "{} (DVC md5 of {} as recorded in {}; `dvc checkout` restores it, `dvc add` records the new bytes, --allow-data-drift runs anyway)",
                    path.display(),
                    rec.out_path,
                    rec.tracked_by
                ),
                expected: rec.md5.clone(),
                actual: rec.actual_md5.clone(),
            });
        }
        drifts.push(Drift {
            file: rel.into(),
            expected: format!("dvc-md5:{}", rec.md5),
            actual: format!("dvc-md5:{}", rec.actual_md5),
        });
    }
    if !records.contains(&rec) {
        records.push(rec);
    }
    Ok(())
}

pub fn parse(cfg: &DatasetConfig, path: &Path, bytes: &[u8]) -> Result<Vec<Item>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    // A UTF-8 byte-order mark (as some editors write) is not part of the data.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut items = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: String| Error::bad_file(path, format!("line {}: {m}", n + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let Value::Object(fields) = v else {
            return Err(bad("expected a JSON object".into()));
        };
        let id = match fields.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(x)) => x.to_string(),
            _ => return Err(bad("missing \"id\" (string or number)".into())),
        };
        if !seen.insert(id.clone()) {
            return Err(bad(format!("duplicate id \"{id}\"")));
        }
        let question = fields.get("question").and_then(|q| q.as_str());
        if question.is_none() {
            return Err(bad("missing \"question\" (string)".into()));
        }
        let (answer, choices, correct) = match cfg.kind {
            TaskKind::Generate => {
                let a = match fields.get("answer") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(x)) => x.to_string(),
                    _ => return Err(bad("missing \"answer\" (string or number)".into())),
                };
                // Every output contains the empty string: it would score all right.
                if cfg.scorer == Some(super::config::Scorer::Contains) && a.trim().is_empty() {
                    return Err(bad(
                        "\"answer\" is empty: the contains scorer would count every output as right"
                            .into(),
                    ));
                }
                (a, Vec::new(), 0)
            }
            TaskKind::MultipleChoice => {
                let list = fields
                    .get("choices")
                    .and_then(|c| c.as_array())
                    .filter(|c| c.len() >= 2)
                    .ok_or_else(|| {
                        bad("\"choices\" must be a list of at least two strings".into())
                    })?;
                if list.len() > MAX_CHOICES {
                    return Err(bad(format!(
                        "\"choices\" has {} entries; at most {MAX_CHOICES} per item are scored",
                        list.len()
                    )));
                }
                // Every choice must be a string: dropping one would shift
                // the answer index onto another choice.
                let mut choices = Vec::with_capacity(list.len());
                for (i, c) in list.iter().enumerate() {
                    match c.as_str() {
                        Some(t) => choices.push(t.to_string()),
                        None => {
                            return Err(bad(format!(
                                "choice {i} of \"choices\" is {c}, not a string"
                            )))
                        }
                    }
                }
                let k = fields
                    .get("answer")
                    .and_then(|a| a.as_u64())
                    .map(|a| a as usize)
                    .filter(|&a| a < choices.len())
                    .ok_or_else(|| {
                        bad(format!(
                            "\"answer\" must be a choice index below {}",
                            choices.len()
                        ))
                    })?;
                (choices[k].clone(), choices, k)
            }
        };
        items.push(Item {
            id,
            fields,
            answer,
            choices,
            correct,
            fewshot: Vec::new(),
        });
    }
    if items.is_empty() {
        return Err(Error::bad_file(path, "the dataset is empty"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mc() -> DatasetConfig {
        DatasetConfig {
            name: "d".into(),
            path: "d.jsonl".into(),
            sha256: String::new(),
            kind: TaskKind::MultipleChoice,
            scorer: None,
            pattern: None,
            max_tokens: None,
            stop_at_newline: false,
            lm_eval: None,
        }
    }

    /// Finding 13 of issue 11: a non-string choice is refused with its line
    /// and position, never dropped (which moved the answer index).
    #[test]
    fn non_string_choices_are_refused() {
        let p = Path::new("d.jsonl");
        let good = br#"{"id": 1, "question": "q", "choices": ["a", "b", "c"], "answer": 2}"#;
        assert_eq!(parse(&mc(), p, good).unwrap()[0].answer, "c");
        for bad in [
            r#"{"id": 1, "question": "q", "choices": [3, "b", "c"], "answer": 2}"#,
            r#"{"id": 1, "question": "q", "choices": ["a", null, "c"], "answer": 2}"#,
            r#"{"id": 1, "question": "q", "choices": ["a", "b", ["c"]], "answer": 2}"#,
        ] {
            let text = format!(
                "{}\n{bad}\n",
                std::str::from_utf8(good)
                    .unwrap()
                    .replace("\"id\": 1", "\"id\": 0")
            );
            let e = parse(&mc(), p, text.as_bytes()).unwrap_err().to_string();
            assert!(
                e.contains("d.jsonl") && e.contains("line 2") && e.contains("not a string"),
                "{e}"
            );
        }
    }
}

/// A few-shot example a sample's prompt holds: its index in the few-shot
/// split and the sha256 of its rendered text (question, answer, delimiters).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct FewshotRef {
    pub split: String,
    pub index: usize,
    pub sha256: String,
}
