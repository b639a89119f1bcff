//! Config composition and overrides from a fuzzed experiment file.
//! The body is in ../bodies.rs, shared with tests/fuzz_replay.rs.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::config(data));
