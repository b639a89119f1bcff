//! Dataset and prompt-file readers, and template rendering, on fuzzed bytes.
#![no_main]
use infer_eval::eval::config::{DatasetConfig, TaskKind};
use infer_eval::eval::template::Template;
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
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
});
