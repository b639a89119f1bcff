//! Tokenizers: from a Hugging Face tokenizer.json, or built from GGUF
//! metadata (`tokenizer.ggml.*`) so that a GGUF gives llama.cpp's token ids.
//!
//! Special tokens follow llama.cpp: user-defined tokens are always matched in
//! the text; control tokens only when `parse_special` is set (chat prompts).

use crate::error::{Error, Result};
use crate::formats::gguf::GgufFile;
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;

#[derive(Debug, Clone)]
struct Special {
    text: String,
    id: u32,
    /// Control tokens are matched only when parsing specials; user-defined always.
    control: bool,
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    specials: Vec<Special>,
    /// true: `inner` already matches added tokens itself (tokenizer.json).
    inner_handles_specials: bool,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
    /// sha256 of the tokenizer definition (tokenizer.json bytes, or the GGUF
    /// tokenizer metadata in key order).
    pub sha256: String,
    pub vocab_size: usize,
}

/// Instructions a chat template may run for one prompt (a real one takes a
/// few thousand), and how deep it may recurse.
const CHAT_TEMPLATE_FUEL: u64 = 2_000_000;
const CHAT_TEMPLATE_RECURSION: usize = 64;

/// A JSON file's value: Null if the file is absent, an error naming it if it
/// is present but unreadable or not JSON.
fn read_json_if_present(path: &Path) -> Result<serde_json::Value> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| terr(path, format!("not valid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Value::Null),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn terr(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::bad_file(path, format!("tokenizer: {msg}"))
}

impl Tokenizer {
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let p = g.path.as_path();
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(terr(
                p,
                format!("tokenizer model '{model}' is not supported from GGUF metadata (supported: gpt2 byte-level BPE); put a tokenizer.json beside the model"),
            ));
        }
        let pre = g
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let tokens = g
            .get("tokenizer.ggml.tokens")?
            .as_array()
            .ok_or_else(|| terr(p, "tokenizer.ggml.tokens is not an array"))?;
        let types = g
            .metadata
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array());
        let merges = g
            .get("tokenizer.ggml.merges")?
            .as_array()
            .ok_or_else(|| terr(p, "tokenizer.ggml.merges is not an array"))?;
        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(tokens.len());
        let mut specials = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let s = t
                .as_str()
                .ok_or_else(|| terr(p, format!("token {i} is not a string")))?;
            vocab.insert(s.to_string(), i as u32);
            let ty = types
                .and_then(|ty| ty.get(i))
                .and_then(|v| v.as_u64())
                .unwrap_or(1);
            // 3 = control, 4 = user-defined (llama.cpp's llama_token_type)
            // An empty special token would match everywhere (found by fuzzing).
            if (ty == 3 || ty == 4) && !s.is_empty() {
                specials.push(Special {
                    text: s.to_string(),
                    id: i as u32,
                    control: ty == 3,
                });
            }
        }
        let mut merge_pairs = Vec::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            let s = m
                .as_str()
                .ok_or_else(|| terr(p, format!("merge {i} is not a string")))?;
            let (a, b) = s
                .split_once(' ')
                .ok_or_else(|| terr(p, format!("merge {i} '{s}' is not two tokens")))?;
            if !vocab.contains_key(a) || !vocab.contains_key(b) {
                return Err(terr(
                    p,
                    format!("merge {i} '{s}' names a token not in the vocabulary"),
                ));
            }
            merge_pairs.push((a.to_string(), b.to_string()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merge_pairs)
            .build()
            .map_err(|e| terr(p, format!("cannot build BPE: {e}")))?;
        let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
        let pre_tok = match pre {
            // llama.cpp's smollm and gpt2-style pre-tokenizers: digits one by one, then the GPT-2 split.
            "smollm" | "starcoder" | "refact" | "default" | "gpt-2" => Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(pre != "gpt-2" && pre != "default")),
                byte_level,
            ]),
            other => {
                return Err(terr(p, format!("pre-tokenizer '{other}' is not supported (supported: smollm, starcoder, refact, gpt-2, default)")));
            }
        };
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tok));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));

        let mut h = Sha256::new();
        for (k, v) in g.metadata.range("tokenizer.".to_string()..) {
            if !k.starts_with("tokenizer.") {
                break;
            }
            h.update(k.as_bytes());
            v.hash_into(&mut h);
        }
        let id = |k: &str| g.metadata.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        let n = tokens.len();
        let check = |name: &str, v: Option<u32>| -> Result<Option<u32>> {
            match v {
                Some(i) if i as usize >= n => Err(terr(
                    p,
                    format!("{name} {i} is outside the vocabulary ({n} tokens)"),
                )),
                _ => Ok(v),
            }
        };
        Ok(Tokenizer {
            inner,
            specials,
            inner_handles_specials: false,
            bos: check("bos_token_id", id("tokenizer.ggml.bos_token_id"))?,
            eos: vec![check("eos_token_id", id("tokenizer.ggml.eos_token_id"))?
                .ok_or_else(|| terr(p, "no tokenizer.ggml.eos_token_id: generation would never stop"))?],
            add_bos: g
                .metadata
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            chat_template: g
                .metadata
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(String::from),
            sha256: hex::encode(h.finalize()),
            vocab_size: n,
        })
    }

    /// A Hugging Face model folder: tokenizer.json, with EOS from
    /// generation_config.json and config.json (else the token string of
    /// tokenizer_config.json), BOS likewise and the chat template from tokenizer_config.json
    /// or chat_template.jinja. A file that is present but does not parse is
    /// an error naming it, and so is a folder that names no EOS token: they
    /// used to be ignored, and generation then ran silently to the limit.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| terr(&path, format!("invalid tokenizer.json: {e}")))?;
        let cfg = read_json_if_present(&dir.join("config.json"))?;
        let gen = read_json_if_present(&dir.join("generation_config.json"))?;
        let tc = read_json_if_present(&dir.join("tokenizer_config.json"))?;
        let ids = |file: &str, key: &str, v: &serde_json::Value| -> Result<Option<Vec<u32>>> {
            let bad = || {
                terr(
                    &dir.join(file),
                    format!("{key} must be a token id or a list of token ids, got {v}"),
                )
            };
            match v {
                serde_json::Value::Null => Ok(None),
                serde_json::Value::Number(n) => {
                    Ok(Some(vec![n.as_u64().filter(|&x| x <= u32::MAX as u64).ok_or_else(bad)? as u32]))
                }
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_u64().filter(|&x| x <= u32::MAX as u64).map(|x| x as u32).ok_or_else(bad))
                    .collect::<Result<Vec<_>>>()
                    .map(Some),
                _ => Err(bad()),
            }
        };
        // tokenizer_config.json names tokens by their text ("</s>" or {"content": "</s>"}).
        let by_text = |key: &str| -> Result<Option<u32>> {
            let text = match &tc[key] {
                serde_json::Value::String(t) => Some(t.clone()),
                serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
                _ => None,
            };
            match text {
                None => Ok(None),
                Some(t) => inner.token_to_id(&t).map(Some).ok_or_else(|| {
                    terr(
                        &dir.join("tokenizer_config.json"),
                        format!("{key} {t:?} is not a token of tokenizer.json"),
                    )
                }),
            }
        };
        // Every token that ends a sequence: generation_config.json's list
        // (which chat models extend with their end-of-turn token, as
        // Hugging Face `generate` reads it), then config.json's, then the
        // text of tokenizer_config.json's eos_token if neither names one.
        let mut eos: Vec<u32> = Vec::new();
        for (file, v) in [
            ("generation_config.json", &gen["eos_token_id"]),
            ("config.json", &cfg["eos_token_id"]),
        ] {
            for id in ids(file, "eos_token_id", v)?.unwrap_or_default() {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        if eos.is_empty() {
            eos.extend(by_text("eos_token")?);
        }
        if eos.is_empty() {
            return Err(terr(
                dir,
                "no end-of-sequence token: none of config.json (eos_token_id), generation_config.json (eos_token_id) or tokenizer_config.json (eos_token) names one",
            ));
        }
        let bos = match ids("config.json", "bos_token_id", &cfg["bos_token_id"])? {
            Some(v) if !v.is_empty() => Some(v[0]),
            _ => by_text("bos_token")?,
        };
        let vocab_size = inner.get_vocab_size(true);
        for (name, id) in eos.iter().map(|&i| ("eos_token_id", i)).chain(bos.map(|b| ("bos_token_id", b))) {
            if id as usize >= vocab_size {
                return Err(terr(dir, format!("{name} {id} is outside the vocabulary ({vocab_size} tokens)")));
            }
        }
        let chat_template = match &tc["chat_template"] {
            serde_json::Value::String(t) => Some(t.clone()),
            // A list of named templates: the one called "default".
            serde_json::Value::Array(a) => a
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(String::from),
            _ => {
                let jinja = dir.join("chat_template.jinja");
                if jinja.is_file() {
                    Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?)
                } else {
                    None
                }
            }
        };
        Ok(Tokenizer {
            inner,
            specials: Vec::new(),
            inner_handles_specials: true,
            bos,
            eos,
            add_bos: false, // tokenizer.json's post-processor adds what the model wants
            chat_template,
            sha256: hex::encode(Sha256::digest(&bytes)),
            vocab_size,
        })
    }

    /// Token ids of `text`. `parse_special`: match control tokens such as
    /// `<|im_start|>` written in the text (chat prompts), as llama.cpp does.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.inner_handles_specials {
            let enc = self
                .inner
                .encode(text, true)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            return Ok(enc.get_ids().to_vec());
        }
        if self.add_bos {
            ids.extend(self.bos);
        }
        let mut rest = text;
        while !rest.is_empty() {
            // leftmost match; among matches at one place, the longest (specials are sorted so)
            let found = self
                .specials
                .iter()
                .filter(|s| parse_special || !s.control)
                .filter_map(|s| rest.find(&s.text).map(|at| (at, s)))
                .min_by_key(|(at, _)| *at);
            let (plain, special) = match found {
                Some((at, s)) => (&rest[..at], Some(s)),
                None => (rest, None),
            };
            if !plain.is_empty() {
                let enc = self
                    .inner
                    .encode(plain, false)
                    .map_err(|e| Error::Tokenizer(e.to_string()))?;
                ids.extend_from_slice(enc.get_ids());
            }
            match special {
                Some(s) => {
                    ids.push(s.id);
                    rest = &rest[plain.len() + s.text.len()..];
                }
                None => break,
            }
        }
        Ok(ids)
    }

    /// Text of `ids`; special tokens are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if self.inner_handles_specials {
            return self
                .inner
                .decode(ids, true)
                .map_err(|e| Error::Tokenizer(e.to_string()));
        }
        let plain: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|i| !self.specials.iter().any(|s| s.id == *i))
            .collect();
        self.inner
            .decode(&plain, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Token ids of a user prompt: wrapped in the chat template (and special
    /// tokens parsed) when `chat`; an empty prompt starts from BOS, as in llama.cpp.
    pub fn encode_prompt(&self, prompt: &str, chat: bool) -> Result<Vec<u32>> {
        let text = if chat {
            self.apply_chat_template(prompt)?
        } else {
            prompt.to_string()
        };
        let mut ids = self.encode(&text, chat)?;
        if ids.is_empty() {
            ids.extend(self.bos);
        }
        Ok(ids)
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::Value;
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
            g.metadata.insert(
                "tokenizer.chat_template".into(),
                Value::String(tpl.into()),
            );
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
            Value::String("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}".into()),
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
