//! A tokenizer rebuilt from GGUF metadata (`tokenizer.ggml.*`), giving
//! llama.cpp's token ids: byte-level BPE (`gpt2`) through the tokenizers
//! crate, SentencePiece (`llama`) through `spm.rs`. Only metadata is read,
//! so a vocab-only GGUF (no tensors) is enough.

use super::spm::SpmVocab;
use super::{terr, Model, TokenType, Tokenizer};
use crate::error::Result;
use crate::formats::gguf::{GgufFile, Value};
use sha2::{Digest, Sha256};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

/// Texts llama.cpp (as vendored by llama-cpp-python 0.3.36,
/// `src/llama-vocab.cpp`) treats as end of generation, and forces to
/// CONTROL (split out of text only with special-token parsing).
const EOG_TEXTS: [&str; 22] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

/// Fill-in-the-middle texts llama.cpp forces to CONTROL; the pad, repo and
/// file-separator ones also end generation.
const FIM_TEXTS: [(&str, bool); 35] = [
    ("<|fim_prefix|>", false),
    ("<fim-prefix>", false),
    ("<fim_prefix>", false),
    ("<\u{ff5c}fim\u{2581}begin\u{ff5c}>", false),
    ("<PRE>", false),
    ("\u{2581}<PRE>", false),
    ("<|code_prefix|>", false),
    ("<|prefix|>", false),
    ("<|fim_suffix|>", false),
    ("<fim-suffix>", false),
    ("<fim_suffix>", false),
    ("<\u{ff5c}fim\u{2581}hole\u{ff5c}>", false),
    ("<SUF>", false),
    ("\u{2581}<SUF>", false),
    ("<|code_suffix|>", false),
    ("<|suffix|>", false),
    ("<|fim_middle|>", false),
    ("<fim-middle>", false),
    ("<fim_middle>", false),
    ("<\u{ff5c}fim\u{2581}end\u{ff5c}>", false),
    ("<MID>", false),
    ("\u{2581}<MID>", false),
    ("<|code_middle|>", false),
    ("<|middle|>", false),
    ("<|fim_pad|>", true),
    ("<fim-pad>", true),
    ("<fim_pad>", true),
    ("<PAD>", true),
    ("[PAD]", true),
    ("<|fim_repo|>", true),
    ("<|repo_name|>", true),
    ("<fim-repo>", true),
    ("<REPO>", true),
    ("<reponame>", true),
    ("<|file_sep|>", true),
];

impl Tokenizer {
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let p = g.path.as_path();
        let model = g.get_str("tokenizer.ggml.model")?;
        let tokens = g
            .get("tokenizer.ggml.tokens")?
            .as_array()
            .ok_or_else(|| terr(p, "tokenizer.ggml.tokens is not an array"))?;
        let pieces = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.as_str()
                    .map(String::from)
                    .ok_or_else(|| terr(p, format!("token {i} is not a string")))
            })
            .collect::<Result<Vec<String>>>()?;
        let n = pieces.len();
        let type_values = g
            .metadata
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array());
        let mut types: Vec<TokenType> = (0..n)
            .map(|i| {
                let raw = type_values.and_then(|t| t.get(i)).map(int_of);
                TokenType::from_gguf(raw.unwrap_or(1))
            })
            .collect();
        let flag = |k: &str, default: bool| {
            g.metadata
                .get(k)
                .and_then(|v| v.as_bool())
                .unwrap_or(default)
        };
        let id = |k: &str| g.metadata.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        let mut bpe_add_bos = false;
        let (inner, spm_defaults) = match model {
            "gpt2" => {
                let (t, add_bos) = bpe(g, &pieces)?;
                bpe_add_bos = add_bos;
                (Model::Bpe(t), false)
            }
            "llama" => {
                let scores = match g.metadata.get("tokenizer.ggml.scores") {
                    Some(v) => {
                        let a = v.as_array().filter(|a| a.len() == n).ok_or_else(|| {
                            terr(p, format!("tokenizer.ggml.scores must be {n} numbers"))
                        })?;
                        a.iter()
                            .map(|s| s.as_f64().map(|x| x as f32))
                            .collect::<Option<Vec<f32>>>()
                            .ok_or_else(|| terr(p, "tokenizer.ggml.scores holds a non-number"))?
                    }
                    None => vec![0.0; n],
                };
                (Model::Spm(SpmVocab::new(&pieces, scores)), true)
            }
            other => {
                return Err(terr(
                    p,
                    format!("tokenizer model '{other}' is not supported from GGUF metadata (supported: gpt2 byte-level BPE, llama SentencePiece); put a tokenizer.json beside the model"),
                ));
            }
        };
        // llama.cpp's defaults where the metadata is silent: SentencePiece
        // vocabularies have BOS 1, EOS 2 and add BOS; BPE ones name theirs.
        let (bos, eos) = if spm_defaults {
            (
                Some(id("tokenizer.ggml.bos_token_id").unwrap_or(1)),
                Some(id("tokenizer.ggml.eos_token_id").unwrap_or(2)),
            )
        } else {
            (
                id("tokenizer.ggml.bos_token_id"),
                id("tokenizer.ggml.eos_token_id"),
            )
        };
        for (name, v) in [("bos_token_id", bos), ("eos_token_id", eos)] {
            if let Some(i) = v.filter(|&i| i as usize >= n) {
                return Err(terr(
                    p,
                    format!("{name} {i} is outside the vocabulary ({n} tokens)"),
                ));
            }
        }
        let eos = eos.ok_or_else(|| {
            terr(
                p,
                "no tokenizer.ggml.eos_token_id: generation would never stop",
            )
        })?;
        // End of generation: EOS, and the end-of-turn tokens llama.cpp
        // recognises by their text (forced to CONTROL, as llama.cpp does).
        let mut eog = vec![eos];
        for (i, piece) in pieces.iter().enumerate() {
            let fim = FIM_TEXTS.iter().find(|(t, _)| *t == piece.as_str());
            let ends = EOG_TEXTS.contains(&piece.as_str()) || fim.is_some_and(|f| f.1);
            if ends || fim.is_some() {
                types[i] = TokenType::Control;
            }
            if ends && !eog.contains(&(i as u32)) {
                eog.push(i as u32);
            }
        }
        for extra in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            if let Some(i) = id(extra).filter(|&i| (i as usize) < n) {
                if !eog.contains(&i) {
                    eog.push(i);
                }
            }
        }
        let mut h = Sha256::new();
        for (k, v) in g.metadata.range("tokenizer.".to_string()..) {
            if !k.starts_with("tokenizer.") {
                break;
            }
            h.update(k.as_bytes());
            v.hash_into(&mut h);
        }
        let specials = super::special_order(&pieces, &types);
        let rstrip = phi3_rstrip(g, &pieces, &specials);
        Ok(Tokenizer {
            model: inner,
            specials,
            rstrip,
            bos,
            eos: eog,
            add_bos: flag("tokenizer.ggml.add_bos_token", spm_defaults || bpe_add_bos),
            add_eos: flag("tokenizer.ggml.add_eos_token", false),
            add_space_prefix: spm_defaults && flag("tokenizer.ggml.add_space_prefix", true),
            chat_template: g
                .metadata
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(String::from),
            sha256: hex::encode(h.finalize()),
            vocab_size: n,
            pieces,
            types,
        })
    }
}

/// llama.cpp gives a Phi-3 vocabulary (`general.name` containing "phi-3"
/// or "phi3", any case) the RSTRIP attribute on every special token and on
/// `</s>`, but not on `<unk>`, `<s>` and `<|endoftext|>`: whitespace after
/// them is dropped from the text. Sorted ids.
fn phi3_rstrip(g: &GgufFile, pieces: &[String], specials: &[u32]) -> Vec<u32> {
    let name = g
        .metadata
        .get("general.name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !(name.contains("phi-3") || name.contains("phi3")) {
        return Vec::new();
    }
    // llama.cpp looks texts up in a map built in id order: the last id wins.
    let last = |text: &str| pieces.iter().rposition(|t| t == text).map(|i| i as u32);
    let mut ids: Vec<u32> = specials.to_vec();
    ids.extend(last("</s>"));
    let off: Vec<u32> = ["<unk>", "<s>", "<|endoftext|>"]
        .into_iter()
        .filter_map(last)
        .collect();
    ids.retain(|i| !off.contains(i));
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn int_of(v: &Value) -> i64 {
    match *v {
        Value::I8(x) => x as i64,
        Value::I16(x) => x as i64,
        Value::I32(x) => x as i64,
        Value::I64(x) => x,
        _ => v.as_u64().map(|x| x as i64).unwrap_or(1),
    }
}

/// llama.cpp's pre-tokenizer regexes (`llama-vocab.cpp`), as tokenizer.json
/// files write them for the tokenizers crate's Split.
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The byte-level BPE of a `gpt2` GGUF, with llama.cpp's pre-tokenizer;
/// also whether that pre-tokenizer adds BOS by default (Llama 3).
fn bpe(g: &GgufFile, pieces: &[String]) -> Result<(tokenizers::Tokenizer, bool)> {
    let p = g.path.as_path();
    let pre = g
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let merges = g
        .get("tokenizer.ggml.merges")?
        .as_array()
        .ok_or_else(|| terr(p, "tokenizer.ggml.merges is not an array"))?;
    let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(pieces.len());
    for (i, s) in pieces.iter().enumerate() {
        vocab.insert(s.clone(), i as u32);
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
    // Llama 3: a word that is a token is taken whole (llama.cpp's ignore_merges).
    let llama3 = matches!(pre, "llama3" | "llama-v3" | "llama-bpe");
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merge_pairs)
        .ignore_merges(llama3)
        .build()
        .map_err(|e| terr(p, format!("cannot build BPE: {e}")))?;
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        let s = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| terr(p, format!("pre-tokenizer regex: {e}")))?;
        Ok(PreTokenizerWrapper::Split(s))
    };
    let pre_tok = match pre {
        // llama.cpp's smollm and gpt2-style pre-tokenizers: digits one by one, then the GPT-2 split.
        "smollm" | "starcoder" | "refact" | "default" | "gpt-2" => Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(pre != "gpt-2" && pre != "default")),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]),
        _ if llama3 => Sequence::new(vec![
            split(LLAMA3_REGEX)?,
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ]),
        "qwen2" | "deepseek-r1-qwen" => Sequence::new(vec![
            split(QWEN2_REGEX)?,
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ]),
        other => {
            return Err(terr(p, format!("pre-tokenizer '{other}' is not supported (supported: smollm, starcoder, refact, gpt-2, default, llama-bpe/llama3, qwen2)")));
        }
    };
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pre_tok));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    Ok((inner, llama3))
}
