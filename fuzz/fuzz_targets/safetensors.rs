//! The safetensors header and index on arbitrary bytes.
#![no_main]
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(index) = infer_eval::formats::safetensors::index_safetensors(data, Path::new("fuzz.safetensors")) {
        for (_, (fmt, shape, a, b)) in index {
            assert!(a <= b && b <= data.len(), "tensor range inside the file");
            let _ = (fmt, shape);
        }
    }
});
