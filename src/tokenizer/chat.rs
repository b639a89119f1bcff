//! Chat templates (Jinja, from the model file) rendered with minijinja,
//! with a bound on the work a template may do.

use super::Tokenizer;
use crate::error::{Error, Result};

/// Instructions a chat template may run for one prompt (a real one takes a
/// few thousand), and how deep it may recurse.
const CHAT_TEMPLATE_FUEL: u64 = 2_000_000;
const CHAT_TEMPLATE_RECURSION: usize = 64;

impl Tokenizer {
    /// The prompt wrapped in the model's chat template as one user turn.
    pub fn apply_chat_template(&self, user: &str) -> Result<String> {
        let tpl = self
            .chat_template
            .as_deref()
            .ok_or_else(|| Error::Input("--chat: this model has no chat template".into()))?;
        let mut env = minijinja::Environment::new();
        // A template comes from the model file: bound its work (loops over
        // huge ranges, deep recursion) so a crafted file cannot hang us.
        env.set_fuel(Some(CHAT_TEMPLATE_FUEL));
        env.set_recursion_limit(CHAT_TEMPLATE_RECURSION);
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
            messages => vec![minijinja::context!{ role => "user", content => user }],
            add_generation_prompt => true,
            bos_token => tok(self.bos),
            eos_token => tok(self.eos.first().copied()),
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| Error::Tokenizer(format!("chat template failed: {e}")))
    }
}
