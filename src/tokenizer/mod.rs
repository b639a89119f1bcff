//! Tokenizers: from a Hugging Face tokenizer.json, or rebuilt from GGUF
//! metadata (`tokenizer.ggml.*`: byte-level BPE or SentencePiece) so that a
//! GGUF gives llama.cpp's token ids.
//!
//! Special tokens follow llama.cpp (`tokenizer_st_partition`): before the
//! model sees the text, every control, user-defined and unknown token is
//! split out of it, the longest texts first, each left to right; control and
//! unknown ones only when `parse_special` is set (chat prompts),
//! user-defined ones always.

mod chat;
mod gguf;
mod hf;
pub mod jinja;
pub mod spm;
pub mod stop;

use crate::error::{Error, Result};
use std::path::Path;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    pub fn from_gguf(v: i64) -> Self {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }

    /// Split out of the text before the model sees it (with `parse_special`
    /// for control and unknown tokens).
    fn is_special(self) -> bool {
        matches!(
            self,
            TokenType::Control | TokenType::UserDefined | TokenType::Unknown
        )
    }
}

enum Model {
    /// tokenizer.json: the tokenizers crate does everything, added tokens too.
    Hf(tokenizers::Tokenizer),
    /// GGUF `gpt2`: pre-tokenizer and merges in the tokenizers crate.
    Bpe(tokenizers::Tokenizer),
    /// GGUF `llama`: SentencePiece merges by score, byte fallback.
    Spm(spm::SpmVocab),
}

pub struct Tokenizer {
    model: Model,
    /// GGUF vocabularies: every piece and its type (empty for tokenizer.json).
    pieces: Vec<String>,
    types: Vec<TokenType>,
    /// Ids split out of the text before the model sees it, in llama.cpp's
    /// order: longest text first, then lowest id.
    specials: Vec<u32>,
    /// Special tokens after which the text's leading whitespace is dropped
    /// (llama.cpp's RSTRIP attribute, which it sets for Phi-3 vocabularies).
    rstrip: Vec<u32>,
    pub bos: Option<u32>,
    /// Every token that ends generation: EOS and, for GGUF, llama.cpp's
    /// end-of-turn tokens (`<end_of_turn>`, `<|im_end|>`, ...).
    pub eos: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// SentencePiece: a space before the text and after every special token.
    pub add_space_prefix: bool,
    pub chat_template: Option<String>,
    /// sha256 of the tokenizer definition (tokenizer.json bytes, or the GGUF
    /// tokenizer metadata in key order).
    pub sha256: String,
    pub vocab_size: usize,
}

/// One piece of the text after special tokens are split out.
enum Fragment {
    Raw(usize, usize),
    Token(u32),
}

pub(crate) fn terr(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::bad_file(path, format!("tokenizer: {msg}"))
}

/// The special tokens of a GGUF vocabulary in the order they are split
/// out: longest text first, then lowest id. An empty text would match
/// everywhere (found by fuzzing) and is skipped.
fn special_order(pieces: &[String], types: &[TokenType]) -> Vec<u32> {
    let mut s: Vec<u32> = (0..pieces.len() as u32)
        .filter(|&i| types[i as usize].is_special() && !pieces[i as usize].is_empty())
        .collect();
    s.sort_by(|&a, &b| {
        pieces[b as usize]
            .len()
            .cmp(&pieces[a as usize].len())
            .then(a.cmp(&b))
    });
    s
}

impl Tokenizer {
    /// Which implementation runs: "tokenizer.json", "gpt2" (GGUF BPE) or
    /// "llama" (GGUF SentencePiece).
    pub fn kind(&self) -> &'static str {
        match self.model {
            Model::Hf(_) => "tokenizer.json",
            Model::Bpe(_) => "gpt2",
            Model::Spm(_) => "llama",
        }
    }

    /// Split `text` at its special tokens (llama.cpp's partition).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        // An empty text has no fragment (so no SentencePiece space prefix).
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Fragment::Raw(0, text.len())];
        for &id in &self.specials {
            if !parse_special && self.types[id as usize] != TokenType::UserDefined {
                continue;
            }
            let pat = self.pieces[id as usize].as_str();
            let mut out = Vec::with_capacity(frags.len());
            for f in frags {
                let Fragment::Raw(mut s, e) = f else {
                    out.push(f);
                    continue;
                };
                while let Some(at) = text[s..e].find(pat) {
                    if at > 0 {
                        out.push(Fragment::Raw(s, s + at));
                    }
                    out.push(Fragment::Token(id));
                    s += at + pat.len();
                    if self.rstrip.binary_search(&id).is_ok() {
                        // C isspace: space, \t, \n, \v, \f, \r
                        while s < e && matches!(text.as_bytes()[s], b' ' | b'\t'..=b'\r') {
                            s += 1;
                        }
                    }
                }
                if s < e {
                    out.push(Fragment::Raw(s, e));
                }
            }
            frags = out;
        }
        frags
    }

    /// Token ids of `text`, with BOS (and EOS) as the model's metadata asks.
    /// `parse_special`: match control tokens such as `<|im_start|>` written
    /// in the text (chat prompts), as llama.cpp does.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        self.encode_with(text, true, parse_special)
    }

    /// `encode`, choosing whether BOS/EOS are added (`add_special`, as
    /// llama.cpp's tokenize; tokenizer.json's post-processor likewise).
    pub fn encode_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        if let Model::Hf(inner) = &self.model {
            let enc = inner
                .encode(text, add_special)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            return Ok(enc.get_ids().to_vec());
        }
        let mut ids = Vec::new();
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        // SentencePiece prefixes a space at the start and after each special token.
        let mut prev_special = true;
        for f in self.partition(text, parse_special) {
            match f {
                Fragment::Token(id) => {
                    ids.push(id);
                    prev_special = true;
                }
                Fragment::Raw(s, e) => {
                    let raw = &text[s..e];
                    match &self.model {
                        Model::Bpe(inner) => {
                            let enc = inner
                                .encode(raw, false)
                                .map_err(|e| Error::Tokenizer(e.to_string()))?;
                            ids.extend_from_slice(enc.get_ids());
                        }
                        Model::Spm(v) => {
                            let mut t = String::with_capacity(raw.len() + 3);
                            if self.add_space_prefix && prev_special {
                                t.push(' ');
                            }
                            t.push_str(raw);
                            let escaped = t.replace(' ', "\u{2581}");
                            spm::encode(v, &escaped, &mut ids).map_err(Error::Tokenizer)?;
                        }
                        Model::Hf(_) => unreachable!("handled above"),
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            ids.extend(self.eos.first().copied());
        }
        Ok(ids)
    }

    /// Text of `ids`; control and unknown tokens are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.model {
            Model::Hf(inner) => inner
                .decode(ids, true)
                .map_err(|e| Error::Tokenizer(e.to_string())),
            Model::Bpe(inner) => {
                let plain: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|&i| !self.types.get(i as usize).is_some_and(|t| t.is_special()))
                    .collect();
                inner
                    .decode(&plain, false)
                    .map_err(|e| Error::Tokenizer(e.to_string()))
            }
            Model::Spm(_) => {
                // As llama.cpp's detokenize with remove_special: a leading
                // BOS is dropped, and the first token's piece loses one
                // leading space when the vocabulary prefixes one.
                let ids = match ids.split_first() {
                    Some((&b, rest)) if self.add_bos && Some(b) == self.bos => rest,
                    _ => ids,
                };
                let mut bytes = Vec::new();
                for (n, &i) in ids.iter().enumerate() {
                    let start = bytes.len();
                    let (Some(piece), Some(ty)) =
                        (self.pieces.get(i as usize), self.types.get(i as usize))
                    else {
                        return Err(Error::Tokenizer(format!(
                            "token id {i} is outside the vocabulary"
                        )));
                    };
                    match ty {
                        TokenType::Normal => {
                            bytes.extend_from_slice(piece.replace('\u{2581}', " ").as_bytes())
                        }
                        TokenType::Byte => match spm_byte(piece) {
                            Some(b) => bytes.push(b),
                            None => bytes.extend_from_slice(piece.as_bytes()),
                        },
                        TokenType::UserDefined => bytes.extend_from_slice(piece.as_bytes()),
                        TokenType::Control | TokenType::Unknown | TokenType::Unused => {}
                    }
                    if n == 0 && self.add_space_prefix && bytes.get(start) == Some(&b' ') {
                        bytes.remove(start);
                    }
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }

    /// The piece of a token as the vocabulary writes it.
    pub fn token_text(&self, id: u32) -> Option<String> {
        match &self.model {
            Model::Hf(inner) => inner.id_to_token(id),
            _ => self.pieces.get(id as usize).cloned(),
        }
    }

    /// Token ids of a user prompt: wrapped in the chat template (and special
    /// tokens parsed) when `chat`; an empty prompt starts from BOS, as in
    /// llama.cpp. A template that writes BOS itself gets no second one.
    pub fn encode_prompt(&self, prompt: &str, chat: bool) -> Result<Vec<u32>> {
        let text = if chat {
            self.apply_chat_template(prompt)?
        } else {
            prompt.to_string()
        };
        self.encode_rendered(&text, chat)
    }

    /// Token ids of chat messages rendered by the model's template.
    pub fn encode_chat(&self, messages: &[(String, String)]) -> Result<Vec<u32>> {
        let text = self.apply_chat_messages(messages)?;
        self.encode_rendered(&text, true)
    }

    /// Token ids of text a chat template rendered (`chat`: special tokens
    /// parsed, a doubled BOS dropped); an empty text is BOS.
    pub fn encode_rendered(&self, text: &str, chat: bool) -> Result<Vec<u32>> {
        let mut ids = self.encode(text, chat)?;
        if chat && self.add_bos && ids.len() >= 2 && ids[0] == ids[1] && Some(ids[0]) == self.bos {
            ids.remove(0);
        }
        if ids.is_empty() {
            ids.extend(self.bos);
        }
        Ok(ids)
    }
}

/// The byte of a `<0xXX>` piece.
fn spm_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::{GgufFile, Value};
    use std::collections::BTreeMap;

    fn gguf(tokens: &[&str], types: &[i32], merges: &[&str]) -> GgufFile {
        let mut md = BTreeMap::new();
        let s = |v: &str| Value::String(v.into());
        md.insert("tokenizer.ggml.model".into(), s("gpt2"));
        md.insert("tokenizer.ggml.pre".into(), s("smollm"));
        md.insert(
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        );
        md.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        );
        md.insert(
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.iter().map(|m| s(m)).collect()),
        );
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(0));
        GgufFile::from_metadata(Path::new("t.gguf"), md)
    }

    #[test]
    fn special_tokens_follow_llamacpp_rules() {
        let t = Tokenizer::from_gguf(&gguf(
            &["<s>", "a", "b", "ab", "<u>"],
            &[3, 1, 1, 1, 4],
            &["a b"],
        ))
        .unwrap();
        // control tokens only with parse_special; user-defined always
        assert_eq!(t.encode("ab<s>ab", true).unwrap(), vec![3, 0, 3]);
        assert_eq!(t.encode("ab<u>", false).unwrap(), vec![3, 4]);
        assert_ne!(t.encode("<s>", false).unwrap(), vec![0]);
    }

    /// llama.cpp's Phi-3 rule (by `general.name`): whitespace after a
    /// special token is dropped, except after <s>, <unk> and <|endoftext|>.
    #[test]
    fn phi3_special_tokens_strip_the_whitespace_after_them() {
        let toks = ["<s>", "a", "\u{120}", "<|end|>", "<|endoftext|>"];
        let mut g = gguf(&toks, &[3, 1, 1, 3, 3], &[]);
        let plain = Tokenizer::from_gguf(&g).unwrap();
        g.metadata
            .insert("general.name".into(), Value::String("Phi-3 Mini".into()));
        let phi3 = Tokenizer::from_gguf(&g).unwrap();
        // (byte-level BPE: a space is the token Ġ, id 2)
        assert_eq!(phi3.encode("<|end|> \t\na", true).unwrap(), vec![3, 1]);
        assert_eq!(plain.encode("<|end|> a", true).unwrap(), vec![3, 2, 1]);
        assert_eq!(phi3.encode("<s> a", true).unwrap(), vec![0, 2, 1]);
        assert_eq!(phi3.encode("<|endoftext|> a", true).unwrap(), vec![4, 2, 1]);
        // The empty text has no fragment at all.
        assert_eq!(
            phi3.encode_with("", false, true).unwrap(),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn an_empty_special_token_does_not_loop() {
        // Found by fuzzing: an empty control token matched everywhere, forever.
        let t = Tokenizer::from_gguf(&gguf(&["a", "", "b"], &[1, 3, 1], &[])).unwrap();
        assert_eq!(t.encode("ab", true).unwrap(), vec![0, 2]);
    }

    #[test]
    fn bad_metadata_is_an_error() {
        assert!(Tokenizer::from_gguf(&gguf(&["a"], &[1], &["a zz"])).is_err());
    }

    /// Finding 14 of issue 11: a chat template from a model file cannot
    /// hang the CLI: loops and recursion are bounded, and end in an error.
    #[test]
    fn a_crafted_chat_template_is_stopped() {
        for tpl in [
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        ] {
            let mut g = gguf(&["<s>", "a"], &[3, 1], &[]);
            g.metadata
                .insert("tokenizer.chat_template".into(), Value::String(tpl.into()));
            let t = Tokenizer::from_gguf(&g).unwrap();
            let t0 = std::time::Instant::now();
            let e = t.apply_chat_template("hi").unwrap_err().to_string();
            assert!(e.contains("chat template failed"), "{e}");
            assert!(t0.elapsed().as_secs() < 20, "took {:?}", t0.elapsed());
        }
        // A real template still renders.
        let mut g = gguf(&["<s>", "a"], &[3, 1], &[]);
        g.metadata.insert(
            "tokenizer.chat_template".into(),
            Value::String(
                "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}".into(),
            ),
        );
        let t = Tokenizer::from_gguf(&g).unwrap();
        assert_eq!(t.apply_chat_template("hi").unwrap(), "<|user|>hi");
    }

    #[test]
    fn a_gguf_without_eos_is_refused() {
        let mut g = gguf(&["a"], &[1], &[]);
        g.metadata.remove("tokenizer.ggml.eos_token_id");
        let e = Tokenizer::from_gguf(&g).err().unwrap().to_string();
        assert!(e.contains("eos_token_id"), "{e}");
    }
}
