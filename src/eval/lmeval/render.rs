//! lm-eval's `doc_to_text` / `doc_to_target` / `doc_to_choice` and its
//! prompt assembly (description, few-shot turns, delimiters), with Jinja
//! rendered by minijinja as lm-eval's jinja2 environment renders it
//! (StrictUndefined, trailing newline kept, the `regex_replace` filter, and
//! Python's string methods through minijinja-contrib's pycompat).

use super::docs::Doc;
use crate::error::{Error, Result};
use serde_json::Value;

/// A task field: a column name, a Jinja template, a literal list, or an index.
pub struct Fields {
    env: minijinja::Environment<'static>,
}

/// What `doc_to_target` gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Index(usize),
    Text(String),
    List(Vec<String>),
}

/// A template's error, naming the document's fields when it used one the
/// document does not have.
fn template_error(e: minijinja::Error, template: &str, doc: &Doc, what: &str) -> Error {
    let fields = if e.kind() == minijinja::ErrorKind::UndefinedError {
        let names: Vec<&str> = doc.keys().map(|k| k.as_str()).collect();
        format!(" (the document's fields: {})", names.join(", "))
    } else {
        String::new()
    };
    Error::Input(format!("{what}: template {template:?}: {e}{fields}"))
}

fn regex_replace(
    s: String,
    pattern: String,
    repl: String,
    count: Option<usize>,
) -> std::result::Result<String, minijinja::Error> {
    let re = regex::Regex::new(&pattern).map_err(|e| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
    })?;
    // Python's \1 back-references are the regex crate's ${1}.
    let repl = regex::Regex::new(r"\\(\d+)")
        .unwrap()
        .replace_all(&repl, "$${$1}")
        .into_owned();
    Ok(re
        .replacen(&s, count.unwrap_or(0), repl.as_str())
        .into_owned())
}

impl Fields {
    pub fn new() -> Self {
        let mut env = minijinja::Environment::new();
        // A task file's templates are input: bound their work (nested loops
        // over large ranges) and recursion, so a crafted file cannot hang us.
        crate::tokenizer::jinja::bound(&mut env);
        env.set_keep_trailing_newline(true);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // Python's string methods, with str.format's widths bounded too.
        env.set_unknown_method_callback(|state, value, method, args| {
            if method == "format"
                && value
                    .as_str()
                    .is_some_and(crate::tokenizer::jinja::spec_too_wide)
            {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!(
                        "str.format: a width or precision over {} is refused",
                        crate::tokenizer::jinja::MAX_WIDTH
                    ),
                ));
            }
            minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
        });
        env.add_filter("regex_replace", regex_replace);
        Fields { env }
    }

    pub fn render(&self, template: &str, doc: &Doc, what: &str) -> Result<String> {
        // (The output is capped while it is written: tokenizer::jinja.)
        self.env
            .template_from_str(template)
            .and_then(|t| {
                crate::tokenizer::jinja::render_capped(&t, minijinja::Value::from_serialize(doc))
            })
            .map_err(|e| template_error(e, template, doc, what))
    }

    /// A template that is one `{{ expression }}`: its value, not its text.
    fn eval_expr(&self, template: &str, doc: &Doc, what: &str) -> Result<Option<Value>> {
        let t = template.trim();
        let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) else {
            return Ok(None);
        };
        if inner.contains("{{") || inner.contains("}}") {
            return Ok(None);
        }
        let inner = inner.trim_start_matches('-').trim_end_matches('-');
        let expr = self
            .env
            .compile_expression(inner)
            .map_err(|e| template_error(e, template, doc, what))?;
        let v = expr
            .eval(minijinja::Value::from_serialize(doc))
            .map_err(|e| template_error(e, template, doc, what))?;
        Ok(Some(serde_json::to_value(&v).map_err(|e| {
            Error::Input(format!("{what}: template {template:?}: {e}"))
        })?))
    }

    /// `doc_to_text`: the prompt text of `doc`.
    pub fn text(&self, field: &Value, doc: &Doc, what: &str) -> Result<String> {
        match field {
            Value::String(s) if doc.contains_key(s) => Ok(scalar_text(&doc[s])),
            Value::String(s) => self.render(s, doc, what),
            Value::Number(_) => Err(Error::Input(format!(
                "{what}: an index (a multiple-input task) is not supported"
            ))),
            other => Err(Error::Input(format!(
                "{what}: expected a template or a column name, got {other}"
            ))),
        }
    }

    /// `doc_to_choice`: the list of choices.
    pub fn choices(&self, field: &Value, doc: &Doc, what: &str) -> Result<Vec<String>> {
        let v = match field {
            Value::String(s) if doc.contains_key(s) => doc[s].clone(),
            Value::String(s) => match self.eval_expr(s, doc, what)? {
                Some(v) => v,
                None => py_literal(&self.render(s, doc, what)?).ok_or_else(|| {
                    Error::Input(format!("{what}: {s:?} does not render to a list"))
                })?,
            },
            Value::Object(m) => Value::Array(m.values().cloned().collect()),
            other => other.clone(),
        };
        match v {
            Value::Array(a) if !a.is_empty() => Ok(a.iter().map(scalar_text).collect()),
            other => Err(Error::Input(format!(
                "{what}: the choices must be a non-empty list, got {other}"
            ))),
        }
    }

    /// `doc_to_target`: an index into the choices, a text, or several texts.
    pub fn target(
        &self,
        field: &Value,
        doc: &Doc,
        has_choices: bool,
        what: &str,
    ) -> Result<Target> {
        let from_value = |v: &Value| -> Target {
            match v {
                Value::Number(n) if n.as_u64().is_some() => {
                    Target::Index(n.as_u64().unwrap() as usize)
                }
                Value::Array(a) => Target::List(a.iter().map(scalar_text).collect()),
                other => Target::Text(scalar_text(other)),
            }
        };
        Ok(match field {
            Value::Number(n) => Target::Index(n.as_u64().unwrap_or(0) as usize),
            Value::Array(a) => Target::List(a.iter().map(scalar_text).collect()),
            Value::String(s) if doc.contains_key(s) => from_value(&doc[s]),
            Value::String(s) => {
                let t = self.render(s, doc, what)?;
                if has_choices && !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
                    Target::Index(
                        t.parse()
                            .map_err(|_| Error::Input(format!("{what}: index {t} is too large")))?,
                    )
                } else if t.len() >= 2 && t.starts_with('[') && t.ends_with(']') {
                    match py_literal(&t) {
                        Some(Value::Array(a)) => Target::List(a.iter().map(scalar_text).collect()),
                        _ => Target::Text(t),
                    }
                } else {
                    Target::Text(t)
                }
            }
            other => {
                return Err(Error::Input(format!(
                    "{what}: expected a template, a column name or an index, got {other}"
                )))
            }
        })
    }
}

impl Default for Fields {
    fn default() -> Self {
        Self::new()
    }
}

/// Python's `str()` of a JSON scalar as a template sees it.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        other => other.to_string(),
    }
}

/// `ast.literal_eval` of a list of strings and numbers (either quote style,
/// backslash escapes), as lm-eval reads a rendered `doc_to_choice`.
pub fn py_literal(s: &str) -> Option<Value> {
    let mut p = s.trim().chars().peekable();
    if p.next()? != '[' {
        return None;
    }
    let mut out = Vec::new();
    loop {
        while p.peek().is_some_and(|c| c.is_whitespace()) {
            p.next();
        }
        match p.peek()? {
            ']' => {
                p.next();
                break;
            }
            '\'' | '"' => {
                let q = p.next()?;
                let mut t = String::new();
                loop {
                    match p.next()? {
                        '\\' => match p.next()? {
                            'n' => t.push('\n'),
                            't' => t.push('\t'),
                            '\\' => t.push('\\'),
                            '\'' => t.push('\''),
                            '"' => t.push('"'),
                            c => {
                                t.push('\\');
                                t.push(c)
                            }
                        },
                        c if c == q => break,
                        c => t.push(c),
                    }
                }
                out.push(Value::String(t));
            }
            _ => {
                let mut t = String::new();
                while p.peek().is_some_and(|c| *c != ',' && *c != ']') {
                    t.push(p.next()?);
                }
                let t = t.trim();
                out.push(
                    t.parse::<i64>()
                        .map(Value::from)
                        .ok()
                        .or_else(|| t.parse::<f64>().ok().map(Value::from))?,
                );
            }
        }
        while p.peek().is_some_and(|c| c.is_whitespace()) {
            p.next();
        }
        match p.next()? {
            ',' => continue,
            ']' => break,
            _ => return None,
        }
    }
    p.all(|c| c.is_whitespace()).then_some(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Doc {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fields_as_lm_eval_reads_them() {
        let f = Fields::new();
        let d =
            doc(serde_json::json!({"q": " Is it? ", "opts": ["a", "b"], "label": 1, "ans": "b"}));
        let t = Value::from("Q: {{q.strip()}}\nA:");
        assert_eq!(f.text(&t, &d, "t").unwrap(), "Q: Is it?\nA:");
        assert_eq!(
            f.choices(&Value::from("{{opts}}"), &d, "c").unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            f.choices(&Value::from("opts"), &d, "c").unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            f.choices(&serde_json::json!(["yes", "no"]), &d, "c")
                .unwrap(),
            ["yes", "no"]
        );
        assert_eq!(
            f.target(&Value::from("{{label}}"), &d, true, "t").unwrap(),
            Target::Index(1)
        );
        assert_eq!(
            f.target(&Value::from("label"), &d, true, "t").unwrap(),
            Target::Index(1)
        );
        assert_eq!(
            f.target(&Value::from("{{ans}}"), &d, true, "t").unwrap(),
            Target::Text("b".into())
        );
        let e = f
            .text(&Value::from("{{missing}}"), &d, "doc 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("doc 3"), "{e}");
        let r = f
            .text(
                &Value::from("{{q | regex_replace('(\\\\w+) it', '\\\\1 X')}}"),
                &d,
                "t",
            )
            .unwrap();
        assert_eq!(r, " Is X? ");
    }

    #[test]
    fn python_list_literals() {
        assert_eq!(
            py_literal(r#"['it\'s', "b", 3]"#).unwrap(),
            serde_json::json!(["it's", "b", 3])
        );
        assert_eq!(py_literal("[]").unwrap(), serde_json::json!([]));
        assert!(py_literal("['a'").is_none());
        assert!(py_literal("['a'] x").is_none());
    }
}
