//! Prompt templates: versioned text files with `{name}` variables filled from
//! a dataset item's fields. `{{` and `}}` are literal braces. One trailing
//! newline of the file is not part of the template.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Template {
    pub path: PathBuf,
    pub text: String,
}

impl Template {
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let mut text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::bad_file(path, "template is not valid UTF-8"))?;
        if text.ends_with('\n') {
            text.pop();
        }
        let t = Template {
            path: path.to_path_buf(),
            text,
        };
        t.variables()?;
        Ok(t)
    }

    /// The variable names, in order; an error for an unclosed brace.
    pub fn variables(&self) -> Result<Vec<String>> {
        let mut vars = Vec::new();
        let mut chars = self.text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|x| x.1) == Some('{') => {
                    chars.next();
                }
                '}' if chars.peek().map(|x| x.1) == Some('}') => {
                    chars.next();
                }
                '{' => {
                    let rest = &self.text[i + 1..];
                    let end = rest.find('}').ok_or_else(|| {
                        Error::bad_file(&self.path, format!("unclosed '{{' at byte {i}"))
                    })?;
                    let name = &rest[..end];
                    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        return Err(Error::bad_file(
                            &self.path,
                            format!("bad variable name '{{{name}}}' at byte {i}"),
                        ));
                    }
                    vars.push(name.to_string());
                    for _ in 0..=end {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(Error::bad_file(
                        &self.path,
                        format!("unmatched '}}' at byte {i}"),
                    ))
                }
                _ => {}
            }
        }
        Ok(vars)
    }

    pub fn render(&self, fields: &Map<String, Value>) -> Result<String> {
        let mut out = String::with_capacity(self.text.len() + 64);
        let mut rest = self.text.as_str();
        while let Some(pos) = rest.find(['{', '}']) {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                out.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            let end = tail.find('}').expect("checked at load");
            let name = &tail[1..end];
            let v = fields.get(name).ok_or_else(|| {
                Error::bad_file(
                    &self.path,
                    format!("variable '{{{name}}}' is not a field of the dataset item"),
                )
            })?;
            match v {
                Value::String(s) => out.push_str(s),
                other => out.push_str(&other.to_string()),
            }
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_variables_and_literal_braces() {
        let t = Template::from_bytes(Path::new("t.txt"), b"Q: {question} {{x}}\nA:\n").unwrap();
        assert_eq!(t.variables().unwrap(), vec!["question"]);
        let mut f = Map::new();
        f.insert("question".into(), "2+2?".into());
        assert_eq!(t.render(&f).unwrap(), "Q: 2+2? {x}\nA:");
        let e = Template::from_bytes(Path::new("t.txt"), b"{answer}")
            .unwrap()
            .render(&f)
            .unwrap_err();
        assert!(e.to_string().contains("'{answer}'"));
        assert!(Template::from_bytes(Path::new("t.txt"), b"oops {question").is_err());
    }
}
