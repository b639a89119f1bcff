//! The SentencePiece tokenizer against llama.cpp's ids
//! (scripts/make_spm_reference.py, llama-cpp-python 0.3.36): a small Llama
//! 2-flavoured vocabulary the test writes as a vocab-only GGUF (space
//! prefix, byte fallback, user-defined and control tokens), and the real
//! Gemma 3 270M vocabulary (no space prefix, 262,144 tokens, whitespace-run
//! and HTML user-defined tokens), each string in all four combinations of
//! add_special and parse_special.

mod common;

use infer_eval::formats::gguf::{GgufFile, Value};
use infer_eval::formats::gguf_write::gguf_bytes;
use infer_eval::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

fn golden(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// The vocab-only GGUF of tests/golden/spm_vocab.json.
fn spm_gguf() -> Vec<u8> {
    let v = golden("spm_vocab.json");
    let strs = |k: &str| {
        Value::Array(
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|s| Value::String(s.as_str().unwrap().into()))
                .collect(),
        )
    };
    let mut md = vec![
        (
            "general.architecture".to_string(),
            Value::String("llama".into()),
        ),
        ("tokenizer.ggml.tokens".to_string(), strs("tokens")),
        (
            "tokenizer.ggml.scores".to_string(),
            Value::Array(
                v["scores"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| Value::F32(s.as_f64().unwrap() as f32))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            Value::Array(
                v["token_type"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| Value::I32(s.as_i64().unwrap() as i32))
                    .collect(),
            ),
        ),
    ];
    for (k, val) in v["metadata"].as_object().unwrap() {
        md.push((
            k.clone(),
            match val {
                serde_json::Value::Bool(b) => Value::Bool(*b),
                serde_json::Value::Number(n) => Value::U32(n.as_u64().unwrap() as u32),
                serde_json::Value::String(s) => Value::String(s.clone()),
                other => panic!("metadata {k}: {other}"),
            },
        ));
    }
    gguf_bytes(&md, &[])
}

#[test]
fn a_llama2_style_vocabulary_gives_llamacpps_ids() {
    let bytes = spm_gguf();
    let g = GgufFile::from_bytes(Path::new("spm.gguf"), bytes).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.kind(), "llama");
    assert!(tok.add_space_prefix && tok.add_bos);
    let n = common::compare_token_ids(
        &tok,
        &golden("spm_llamacpp.json"),
        "small SentencePiece vocabulary",
    );
    eprintln!("small SentencePiece vocabulary: {n} id lists equal llama.cpp's");
    // Decoding gives the text back (the space prefix removed) where no byte
    // was lost to a missing token.
    for s in [
        "Hello world",
        "the cat sat on the mat",
        "naïve café 東京",
        "x = [1, 2, 3]",
    ] {
        let ids = tok.encode_with(s, false, false).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), s);
    }
}

/// `infer-eval tokenize` on a vocab-only GGUF (no tensors): ids and, with
/// `--json`, the pieces.
#[test]
fn tokenize_reads_a_vocab_only_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let p: PathBuf = dir.path().join("vocab-only.gguf");
    std::fs::write(&p, spm_gguf()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .args([
            "tokenize",
            "--model",
            p.to_str().unwrap(),
            "--json",
            "Hello world",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = golden("spm_llamacpp.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == "Hello world")
        .unwrap()["add_special=true,parse_special=false"]
        .clone();
    assert_eq!(j["ids"], want);
    assert_eq!(j["pieces"][0], "<s>");
    assert_eq!(j["tokenizer"], "llama");
}

#[test]
fn gemma3_tokenizer_gives_llamacpps_ids() {
    let r = golden("gemma3_tokens.json");
    let path =
        infer_eval::fetch::resolve("gemma3", &mut |s| eprintln!("{s}")).expect("fetch gemma3");
    assert_eq!(
        infer_eval::formats::sha256_file(&path).unwrap(),
        r["model_sha256"].as_str().unwrap()
    );
    let tok = infer_eval::loader::load_tokenizer(&path).unwrap();
    assert!(!tok.add_space_prefix && tok.add_bos);
    let cases = r["cases"].as_array().unwrap().len();
    assert!(cases >= 80, "{cases} strings");
    let n = common::compare_token_ids(&tok, &r, "Gemma 3 270M");
    eprintln!("Gemma 3 270M: {n} id lists ({cases} strings x 4 modes) equal llama.cpp's");
    // End of turn ends generation, as in llama.cpp.
    let eot = tok.encode_with("<end_of_turn>", false, true).unwrap();
    assert_eq!(eot.len(), 1);
    assert!(tok.eos.contains(&eot[0]), "{:?} {:?}", tok.eos, eot);
}
