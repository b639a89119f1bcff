//! The GGUF reader on arbitrary bytes: it must return an error, never panic,
//! and never allocate by a size it has not checked against the input.
#![no_main]
use infer_eval::formats::gguf::GgufFile;
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(g) = GgufFile::from_bytes(Path::new("fuzz.gguf"), data.to_vec()) {
        for t in &g.tensors {
            let _ = g.tensor_bytes(t);
        }
        let _ = infer_eval::model::arch::ArchSpec::from_gguf(&g);
        let _ = infer_eval::tokenizer::Tokenizer::from_gguf(&g);
    }
});
