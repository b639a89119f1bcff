//! Prompt files: JSONL, one object per line with a "prompt" string and an
//! optional "id" (string or number). Errors name the file and line.

use crate::error::{Error, Result};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub id: String,
    pub prompt: String,
}

/// Built-in prompts for a run with no --prompt or --prompts.
pub fn builtin() -> Vec<Prompt> {
    [
        "The capital of France is",
        "Here is a short poem about the sea:\n",
        "def fibonacci(n):",
        "The three primary colors are",
        "Question: What is 12 + 7?\nAnswer:",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| Prompt {
        id: format!("builtin-{i}"),
        prompt: p.to_string(),
    })
    .collect()
}

pub fn read_jsonl(path: &Path) -> Result<Vec<Prompt>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_jsonl(path, bytes)
}

/// Parse prompt JSONL held in memory; `path` names it in errors.
pub fn parse_jsonl(path: &Path, bytes: Vec<u8>) -> Result<Vec<Prompt>> {
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: String| Error::bad_file(path, format!("line {lineno}: {m}"));
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".into()))?;
        let prompt = obj
            .get("prompt")
            .ok_or_else(|| bad("missing field \"prompt\"".into()))?
            .as_str()
            .ok_or_else(|| bad("\"prompt\" must be a string".into()))?
            .to_string();
        let id = match obj.get("id") {
            None | Some(serde_json::Value::Null) => format!("{}", out.len()),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(x)) => x.to_string(),
            Some(_) => return Err(bad("\"id\" must be a string or a number".into())),
        };
        if !seen.insert(id.clone()) {
            return Err(bad(format!("duplicate id \"{id}\"")));
        }
        out.push(Prompt { id, prompt });
    }
    if out.is_empty() {
        return Err(Error::bad_file(path, "no prompts (the file is empty)"));
    }
    Ok(out)
}
