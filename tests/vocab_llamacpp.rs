//! Our GGUF tokenizers against llama.cpp's ids on llama.cpp's own
//! vocab-only test files (the manifests vocab-*: Llama 2 SentencePiece,
//! Phi-3 SentencePiece with its whitespace-stripping special tokens, Qwen2
//! and Llama 3 byte-level BPE with their pre-tokenizer regexes). Reference:
//! tests/golden/vocab_llamacpp.json from scripts/make_spm_reference.py
//! vocabs (llama-cpp-python 0.3.36), every string in all four combinations
//! of add_special and parse_special.

mod common;

use std::path::Path;

fn golden() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/vocab_llamacpp.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn check(manifest: &str, kind: &str) -> infer_eval::tokenizer::Tokenizer {
    let g = golden();
    let r = g["vocabularies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["manifest"] == manifest)
        .unwrap_or_else(|| panic!("{manifest} is not in vocab_llamacpp.json"))
        .clone();
    let path = infer_eval::fetch::resolve(manifest, &mut |s| eprintln!("{s}"))
        .unwrap_or_else(|e| panic!("fetch {manifest}: {e}"));
    assert_eq!(
        infer_eval::formats::sha256_file(&path).unwrap(),
        r["model_sha256"].as_str().unwrap()
    );
    let tok = infer_eval::loader::load_tokenizer(&path).unwrap();
    assert_eq!(tok.kind(), kind);
    let cases = r["cases"].as_array().unwrap().len();
    assert!(cases >= 120, "{cases} strings");
    let n = common::compare_token_ids(&tok, &r, manifest);
    eprintln!("{manifest}: {n} id lists ({cases} strings x 4 modes) equal llama.cpp's");
    tok
}

#[test]
fn llama2_sentencepiece() {
    let tok = check("vocab-llama-spm", "llama");
    for s in [
        "Hello world",
        "naïve café 東京",
        "def f(x):\n    return x * 2\n",
    ] {
        let ids = tok.encode_with(s, true, false).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), s);
    }
}

#[test]
fn phi3_sentencepiece_strips_whitespace_after_special_tokens() {
    let tok = check("vocab-phi-3", "llama");
    // The golden data holds the stripping; make sure it is exercised.
    let end = tok.encode_with("<|end|>", false, true).unwrap();
    assert_eq!(end.len(), 1);
    assert_eq!(
        tok.encode_with("<|end|>   after", false, true).unwrap(),
        tok.encode_with("<|end|>after", false, true).unwrap()
    );
    // <s> keeps what follows it.
    assert_ne!(
        tok.encode_with("<s> x", false, true).unwrap(),
        tok.encode_with("<s>x", false, true).unwrap()
    );
    assert!(tok.eos.contains(&end[0]), "<|end|> ends generation");
}

#[test]
fn qwen2_byte_level_bpe() {
    let tok = check("vocab-qwen2", "gpt2");
    assert!(!tok.add_bos);
    let s = "I'm sure they'll say 12345 東京 🙂\n\n  x";
    assert_eq!(
        tok.decode(&tok.encode_with(s, true, false).unwrap())
            .unwrap(),
        s
    );
}

#[test]
fn llama3_byte_level_bpe() {
    let tok = check("vocab-llama-bpe", "gpt2");
    assert!(tok.add_bos);
    let s = "DON'T YOU'RE 1234567890 naïve\r\n\tend";
    let ids = tok.encode_with(s, true, false).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), s);
}
