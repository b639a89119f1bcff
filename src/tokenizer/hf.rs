//! A Hugging Face model folder's tokenizer: tokenizer.json (the tokenizers
//! crate does the splitting and added tokens), with EOS, BOS and the chat
//! template from the folder's other files.

use super::{terr, Model, Tokenizer};
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A JSON file's value: Null if the file is absent, an error naming it if it
/// is present but unreadable or not JSON.
fn read_json_if_present(path: &Path) -> Result<serde_json::Value> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| terr(path, format!("not valid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Value::Null),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl Tokenizer {
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
                serde_json::Value::Number(n) => Ok(Some(vec![n
                    .as_u64()
                    .filter(|&x| x <= u32::MAX as u64)
                    .ok_or_else(bad)?
                    as u32])),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_u64()
                            .filter(|&x| x <= u32::MAX as u64)
                            .map(|x| x as u32)
                            .ok_or_else(bad)
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some),
                _ => Err(bad()),
            }
        };
        // tokenizer_config.json names tokens by their text ("</s>" or {"content": "</s>"}).
        let by_text = |key: &str| -> Result<Option<u32>> {
            let text = match &tc[key] {
                serde_json::Value::String(t) => Some(t.clone()),
                serde_json::Value::Object(o) => {
                    o.get("content").and_then(|c| c.as_str()).map(String::from)
                }
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
        for (name, id) in eos
            .iter()
            .map(|&i| ("eos_token_id", i))
            .chain(bos.map(|b| ("bos_token_id", b)))
        {
            if id as usize >= vocab_size {
                return Err(terr(
                    dir,
                    format!("{name} {id} is outside the vocabulary ({vocab_size} tokens)"),
                ));
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
            model: Model::Hf(inner),
            pieces: Vec::new(),
            types: Vec::new(),
            specials: Vec::new(),
            rstrip: Vec::new(),
            bos,
            eos,
            add_bos: false, // tokenizer.json's post-processor adds what the model wants
            add_eos: false,
            add_space_prefix: false,
            chat_template,
            sha256: hex::encode(Sha256::digest(&bytes)),
            vocab_size,
        })
    }
}
