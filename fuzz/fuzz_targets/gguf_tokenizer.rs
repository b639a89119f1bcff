//! The tokenizer built from fuzzed GGUF metadata, encoding fuzzed text.
//! The body is in ../bodies.rs, shared with tests/fuzz_replay.rs.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::gguf_tokenizer(data));
