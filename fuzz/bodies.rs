//! The fuzz targets' bodies, one function per target. The cargo-fuzz
//! binaries in fuzz_targets/ call them on libFuzzer's inputs, and
//! tests/fuzz_replay.rs calls them on the seeds and on deterministic
//! mutations of them, so CI exercises the same code without the
//! instrumented build.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use infer_eval::eval::config::{DatasetConfig, TaskKind};
use infer_eval::eval::template::Template;
use infer_eval::formats::gguf::{GgufFile, Value};

/// Every target, by the name of its cargo-fuzz binary.
pub const TARGETS: [(&str, fn(&[u8])); 6] = [
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("gguf_tokenizer", gguf_tokenizer),
    ("config", config),
    ("dataset", dataset),
    ("lmeval_task", lmeval_task),
];

/// The non-empty lines of a part of the input.
fn lines(part: Option<&str>) -> Vec<String> {
    part.unwrap_or("")
        .split('\n')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The GGUF reader on arbitrary bytes: it must return an error, never panic,
/// and never allocate by a size it has not checked against the input.
pub fn gguf(data: &[u8]) {
    if let Ok(g) = GgufFile::from_bytes(Path::new("fuzz.gguf"), data.to_vec()) {
        for t in &g.tensors {
            let _ = g.tensor_bytes(t);
        }
        let _ = infer_eval::model::arch::ArchSpec::from_gguf(&g);
        let _ = infer_eval::tokenizer::Tokenizer::from_gguf(&g);
    }
}

/// The safetensors header and index on arbitrary bytes.
pub fn safetensors(data: &[u8]) {
    if let Ok(index) =
        infer_eval::formats::safetensors::index_safetensors(data, Path::new("fuzz.safetensors"))
    {
        for (_, (fmt, shape, a, b)) in index {
            assert!(a <= b && b <= data.len(), "tensor range inside the file");
            let _ = (fmt, shape);
        }
    }
}

/// The tokenizer built from GGUF metadata, from fuzzed vocabularies, merges,
/// token types and special ids, then encoding and decoding fuzzed text.
pub fn gguf_tokenizer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{0}');
    let vocab: Vec<String> = parts
        .next()
        .unwrap_or("")
        .split('\n')
        .map(String::from)
        .collect();
    let merges = lines(parts.next());
    let input = parts.next().unwrap_or("hello world 123");
    let mut md = BTreeMap::new();
    md.insert(
        "tokenizer.ggml.model".to_string(),
        Value::String("gpt2".into()),
    );
    md.insert(
        "tokenizer.ggml.pre".to_string(),
        Value::String(
            if data.len() % 2 == 0 {
                "smollm"
            } else {
                "gpt-2"
            }
            .into(),
        ),
    );
    md.insert(
        "tokenizer.ggml.tokens".to_string(),
        Value::Array(vocab.iter().cloned().map(Value::String).collect()),
    );
    md.insert(
        "tokenizer.ggml.token_type".to_string(),
        Value::Array(
            vocab
                .iter()
                .enumerate()
                .map(|(i, _)| Value::I32(1 + (i % 5) as i32))
                .collect(),
        ),
    );
    md.insert(
        "tokenizer.ggml.merges".to_string(),
        Value::Array(merges.into_iter().map(Value::String).collect()),
    );
    md.insert(
        "tokenizer.ggml.bos_token_id".to_string(),
        Value::U32(data.first().copied().unwrap_or(0) as u32),
    );
    md.insert(
        "tokenizer.ggml.add_bos_token".to_string(),
        Value::Bool(data.len() % 3 == 0),
    );
    let g = GgufFile::from_metadata(Path::new("fuzz.gguf"), md);
    if let Ok(t) = infer_eval::tokenizer::Tokenizer::from_gguf(&g) {
        for special in [false, true] {
            if let Ok(ids) = t.encode(input, special) {
                assert!(
                    ids.iter().all(|&i| (i as usize) < t.vocab_size),
                    "ids inside the vocabulary"
                );
                let _ = t.decode(&ids);
            }
        }
    }
}

/// A copy of the repository's config tree in a temporary folder, made once.
fn tree() -> &'static PathBuf {
    static T: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &T.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        // The including crate is fuzz/ or the repository root.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let src = if manifest.join("configs").is_dir() {
            manifest.join("configs")
        } else {
            manifest.join("../configs")
        };
        for group in ["experiment", "model", "sampling", "task", "prompt"] {
            std::fs::create_dir_all(d.path().join(group)).unwrap();
            for e in std::fs::read_dir(src.join(group)).unwrap().flatten() {
                std::fs::copy(e.path(), d.path().join(group).join(e.file_name())).unwrap();
            }
        }
        let p = d.path().to_path_buf();
        (d, p)
    })
    .1
}

/// Config composition and overrides: a fuzzed experiment file, group file
/// and override list (NUL-separated), against a real config tree.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let experiment = parts.next().unwrap_or("");
    let sampling = parts.next().unwrap_or("");
    let overrides = lines(parts.next());
    let dir = tree();
    std::fs::write(dir.join("experiment/fuzz.yaml"), experiment).unwrap();
    std::fs::write(dir.join("sampling/fuzz.yaml"), sampling).unwrap();
    let mut args = vec!["experiment=fuzz".to_string()];
    if data.len() % 2 == 0 {
        args.push("sampling=fuzz".into());
    }
    args.extend(overrides);
    if let Ok(c) = infer_eval::eval::config::compose(dir, &args) {
        let _ = infer_eval::eval::config::to_yaml(&c.tree);
    }
}

/// Dataset and prompt-file readers, and template rendering, on fuzzed bytes.
pub fn dataset(data: &[u8]) {
    let p = Path::new("fuzz.jsonl");
    for kind in [TaskKind::Generate, TaskKind::MultipleChoice] {
        let cfg = DatasetConfig {
            name: "fuzz".into(),
            path: "fuzz.jsonl".into(),
            sha256: String::new(),
            kind,
            scorer: None,
            pattern: None,
            max_tokens: None,
            stop_at_newline: false,
            lm_eval: None,
        };
        if let Ok(items) = infer_eval::eval::dataset::parse(&cfg, p, data) {
            if let Ok(t) = Template::from_bytes(Path::new("t.txt"), b"Q: {question}\nA:") {
                for it in &items {
                    let _ = t.render(&it.fields);
                }
            }
        }
    }
    let _ = infer_eval::prompts::parse_jsonl(p, data.to_vec());
    if let Ok(t) = Template::from_bytes(Path::new("fuzz.txt"), data) {
        let _ = t.render(&serde_json::Map::new());
    }
}

/// An lm-evaluation-harness task file (the part before the first NUL, with
/// the part after it as the file it includes) read, then its templates
/// rendered on the documents of the last part (JSON lines): errors, never a
/// panic or a hang (the templates' work is bounded).
pub fn lmeval_task(data: &[u8]) {
    use infer_eval::eval::lmeval::{render::Fields, task};
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let main = parts.next().unwrap_or("");
    let base = parts.next().unwrap_or("");
    let docs = parts.next().unwrap_or("{\"q\": \"x\", \"a\": 1}");
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("task.yaml"), main).unwrap();
    std::fs::write(d.path().join("base.yaml"), base).unwrap();
    let _ = task::find_by_name("fuzz", &[d.path().to_path_buf()]);
    let Ok(loaded) = infer_eval::eval::lmeval::load_task(&d.path().join("task.yaml")) else {
        return;
    };
    let t = loaded.task;
    let fields = Fields::new();
    for line in docs.lines().take(8) {
        let Ok(serde_json::Value::Object(doc)) = serde_json::from_str::<serde_json::Value>(line)
        else {
            continue;
        };
        if let Some(f) = &t.doc_to_text {
            let _ = fields.text(f, &doc, "doc_to_text");
        }
        if let Some(f) = &t.doc_to_choice {
            let _ = fields.choices(f, &doc, "doc_to_choice");
        }
    }
}
