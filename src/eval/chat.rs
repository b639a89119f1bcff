//! Chat-format prompts: `prompt.messages` (each a role and a content
//! template with `{field}` variables, `{prompt}` being the rendered prompt
//! file) and `prompt.turns_field` (a dataset field holding further turns,
//! a list of `{role, content}`), rendered by the model's chat template with
//! the assistant's generation prompt. The rendered text is the sample's
//! prompt, so its sha256 is recorded with each sample.

use super::config::PromptConfig;
use super::template::Template;
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// The checked message templates of a prompt config.
pub struct ChatPrompt {
    messages: Vec<(String, Template)>,
    turns_field: Option<String>,
}

impl ChatPrompt {
    /// None when the config builds plain (or `chat: true` single-turn) prompts.
    pub fn from_config(p: &PromptConfig) -> Result<Option<ChatPrompt>> {
        if p.messages.is_empty() && p.turns_field.is_none() {
            return Ok(None);
        }
        let mut messages = Vec::new();
        for (i, m) in p.messages.iter().enumerate() {
            let at = format!("prompt.messages.{i}");
            if !ROLES.contains(&m.role.as_str()) {
                return Err(Error::Input(format!(
                    "key '{at}.role': '{}' is not one of {}",
                    m.role,
                    ROLES.join(", ")
                )));
            }
            let t =
                Template::from_bytes(Path::new(&format!("{at}.content")), m.content.as_bytes())?;
            messages.push((m.role.clone(), t));
        }
        Ok(Some(ChatPrompt {
            messages,
            turns_field: p.turns_field.clone(),
        }))
    }

    /// Whether a message holds `{prompt}` (the rendered prompt file).
    pub fn uses_prompt(&self) -> bool {
        self.messages
            .iter()
            .any(|(_, t)| t.variables().is_ok_and(|v| v.iter().any(|n| n == "prompt")))
    }

    /// The messages of one item: the templates filled from its fields (and
    /// `{prompt}`), then its turns.
    pub fn messages(
        &self,
        fields: &Map<String, Value>,
        rendered: &str,
        item: &str,
    ) -> Result<Vec<(String, String)>> {
        let mut f = fields.clone();
        f.insert("prompt".into(), Value::String(rendered.to_string()));
        let mut out = Vec::new();
        for (role, t) in &self.messages {
            out.push((role.clone(), t.render(&f)?));
        }
        if let Some(name) = &self.turns_field {
            let bad = |why: &str| {
                Error::Input(format!(
                    "item {item}: field '{name}' (prompt.turns_field): {why}"
                ))
            };
            let turns = fields
                .get(name)
                .ok_or_else(|| bad("missing"))?
                .as_array()
                .ok_or_else(|| bad("not a list of {role, content}"))?;
            for (k, t) in turns.iter().enumerate() {
                let role = t.get("role").and_then(|r| r.as_str());
                let content = t.get("content").and_then(|c| c.as_str());
                match (role, content) {
                    (Some(r), Some(c)) if ROLES.contains(&r) => {
                        out.push((r.to_string(), c.to_string()))
                    }
                    _ => {
                        return Err(bad(&format!(
                            "turn {k} needs a role ({}) and a string content",
                            ROLES.join(", ")
                        )))
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(Error::Input(format!(
                "item {item}: the chat prompt has no messages"
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::config::MessageTemplate;

    fn cfg(messages: Vec<(&str, &str)>, turns: Option<&str>) -> PromptConfig {
        let mut p: PromptConfig = serde_json::from_value(serde_json::json!({
            "name": "t",
            "generate": {"path": "p", "sha256": "x"},
            "multiple_choice": {"path": "p", "sha256": "x"},
        }))
        .unwrap();
        p.messages = messages
            .into_iter()
            .map(|(r, c)| MessageTemplate {
                role: r.into(),
                content: c.into(),
            })
            .collect();
        p.turns_field = turns.map(String::from);
        p
    }

    #[test]
    fn messages_fill_fields_prompt_and_turns() {
        let c = ChatPrompt::from_config(&cfg(
            vec![("system", "Be brief about {topic}."), ("user", "{prompt}")],
            Some("turns"),
        ))
        .unwrap()
        .unwrap();
        let f: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "topic": "maths",
            "turns": [{"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
        }))
        .unwrap();
        let m = c.messages(&f, "2+2?", "a").unwrap();
        let want: Vec<(String, String)> = [
            ("system", "Be brief about maths."),
            ("user", "2+2?"),
            ("assistant", "4"),
            ("user", "And 3+3?"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(m, want);
        assert!(ChatPrompt::from_config(&cfg(vec![], None))
            .unwrap()
            .is_none());
        let e = ChatPrompt::from_config(&cfg(vec![("robot", "x")], None))
            .err()
            .unwrap();
        assert!(e.to_string().contains("prompt.messages.0.role"));
        let mut bad = f.clone();
        bad.insert("turns".into(), serde_json::json!([{"role": "user"}]));
        let e = c.messages(&bad, "q", "item-7").unwrap_err().to_string();
        assert!(e.contains("item-7") && e.contains("turn 0"), "{e}");
    }
}
