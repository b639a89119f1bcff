//! lm-evaluation-harness task files and their Jinja templates from fuzzed
//! bytes. The body is in ../bodies.rs, shared with tests/fuzz_replay.rs.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::lmeval_task(data));
