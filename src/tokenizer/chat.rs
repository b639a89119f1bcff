//! Chat templates (Jinja, from the model file) rendered with minijinja,
//! with a bound on the work a template may do.

use super::Tokenizer;
use crate::error::{Error, Result};

/// llama.cpp's built-in Gemma format, for Gemma files that carry no
/// template (base models): each turn `<start_of_turn>{role}\n{content}<end_of_turn>\n`
/// (assistant named model, content trimmed), then `<start_of_turn>model\n`.
/// BOS comes from the vocabulary's add_bos, not from the template.
const GEMMA_TEMPLATE: &str = "{%- for m in messages -%}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n{{ m.content | trim }}<end_of_turn>\n{%- endfor -%}{%- if add_generation_prompt -%}<start_of_turn>model\n{%- endif -%}";

impl Tokenizer {
    fn has_piece(&self, text: &str) -> bool {
        self.pieces.iter().any(|p| p == text)
    }

    /// The prompt wrapped in the model's chat template as one user turn.
    pub fn apply_chat_template(&self, user: &str) -> Result<String> {
        self.apply_chat_messages(&[("user".to_string(), user.to_string())])
    }

    /// Messages (role, content) rendered by the model's chat template, with
    /// the generation prompt for the assistant's turn.
    pub fn apply_chat_messages(&self, messages: &[(String, String)]) -> Result<String> {
        let tpl = match self.chat_template.as_deref() {
            Some(t) => t,
            None if self.has_piece("<start_of_turn>") && self.has_piece("<end_of_turn>") => GEMMA_TEMPLATE,
            None => {
                return Err(Error::Input(
                    "--chat: this model has no chat template (and its vocabulary is not one of a built-in format: Gemma)".into(),
                ))
            }
        };
        let mut env = minijinja::Environment::new();
        // A template comes from the model file: bound its work (loops over
        // huge ranges, deep recursion) so a crafted file cannot hang us.
        super::jinja::bound(&mut env);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", tpl)
            .map_err(|e| Error::Tokenizer(format!("chat template does not parse: {e}")))?;
        let tok = |id: Option<u32>| id.and_then(|i| self.token_text(i)).unwrap_or_default();
        let ctx = minijinja::context! {
            messages => messages
                .iter()
                .map(|(role, content)| minijinja::context! { role => role, content => content })
                .collect::<Vec<_>>(),
            add_generation_prompt => true,
            bos_token => tok(self.bos),
            eos_token => tok(self.eos.first().copied()),
        };
        env.get_template("chat")
            .and_then(|t| super::jinja::render_capped(&t, ctx))
            .map_err(|e| Error::Tokenizer(format!("chat template failed: {e}")))
    }
}
