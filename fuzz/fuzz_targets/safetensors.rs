//! The safetensors header and index on arbitrary bytes.
//! The body is in ../bodies.rs, shared with tests/fuzz_replay.rs.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::safetensors(data));
