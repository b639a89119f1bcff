//! The tokenizer built from GGUF metadata, from fuzzed vocabularies, merges,
//! token types and special ids, then encoding and decoding fuzzed text.
#![no_main]
use infer_eval::formats::gguf::{GgufFile, Value};
use std::collections::BTreeMap;
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{0}');
    let vocab: Vec<String> = parts.next().unwrap_or("").split('\n').map(String::from).collect();
    let merges: Vec<String> = parts.next().unwrap_or("").split('\n').filter(|s| !s.is_empty()).map(String::from).collect();
    let input = parts.next().unwrap_or("hello world 123");
    let mut md = BTreeMap::new();
    md.insert("tokenizer.ggml.model".to_string(), Value::String("gpt2".into()));
    md.insert("tokenizer.ggml.pre".to_string(), Value::String(if data.len() % 2 == 0 { "smollm" } else { "gpt-2" }.into()));
    md.insert("tokenizer.ggml.tokens".to_string(), Value::Array(vocab.iter().cloned().map(Value::String).collect()));
    md.insert(
        "tokenizer.ggml.token_type".to_string(),
        Value::Array(vocab.iter().enumerate().map(|(i, _)| Value::I32(1 + (i % 5) as i32)).collect()),
    );
    md.insert("tokenizer.ggml.merges".to_string(), Value::Array(merges.into_iter().map(Value::String).collect()));
    md.insert("tokenizer.ggml.bos_token_id".to_string(), Value::U32(data.first().copied().unwrap_or(0) as u32));
    md.insert("tokenizer.ggml.add_bos_token".to_string(), Value::Bool(data.len() % 3 == 0));
    let g = GgufFile::from_metadata(Path::new("fuzz.gguf"), md);
    if let Ok(t) = infer_eval::tokenizer::Tokenizer::from_gguf(&g) {
        for special in [false, true] {
            if let Ok(ids) = t.encode(input, special) {
                assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size), "ids inside the vocabulary");
                let _ = t.decode(&ids);
            }
        }
    }
});
