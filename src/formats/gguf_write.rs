//! Writing GGUF files (version 3, 32-byte alignment): the tiny models of
//! the tests and the bit-exactness suite, and vocab-only tokenizer files.
//! Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md

use super::gguf::Value;
use crate::error::Result;
use std::path::Path;

const ALIGN: usize = 32;

/// One tensor to write: `dims` in GGUF order (the fastest-varying first),
/// `data` its bytes in the stored format of `ggml_type`.
pub struct TensorOut<'a> {
    pub name: String,
    pub dims: Vec<usize>,
    pub ggml_type: u32,
    pub data: &'a [u8],
}

fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(b) => out.push(*b as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            // An empty array is written as an array of strings.
            out.extend_from_slice(&items.first().map_or(8, type_id).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// The bytes of a GGUF file with `metadata` (in the given order) and `tensors`.
pub fn gguf_bytes(metadata: &[(String, Value)], tensors: &[TensorOut]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut out, k);
        out.extend_from_slice(&type_id(v).to_le_bytes());
        put_value(&mut out, v);
    }
    let mut offset = 0usize;
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        out.extend_from_slice(&t.ggml_type.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + t.data.len()).div_ceil(ALIGN) * ALIGN;
    }
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    for t in tensors {
        out.extend_from_slice(t.data);
        out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    }
    out
}

/// Write a GGUF file atomically.
pub fn write_gguf(path: &Path, metadata: &[(String, Value)], tensors: &[TensorOut]) -> Result<()> {
    crate::fsio::write_atomic(path, &gguf_bytes(metadata, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::GgufFile;

    /// What we write, our reader reads back: metadata of every type, and
    /// tensors at aligned offsets.
    #[test]
    fn round_trips_through_the_reader() {
        let md = vec![
            (
                "general.architecture".to_string(),
                Value::String("llama".into()),
            ),
            ("a.u32".into(), Value::U32(7)),
            ("a.f32".into(), Value::F32(1.5)),
            ("a.bool".into(), Value::Bool(true)),
            ("a.i64".into(), Value::I64(-3)),
            (
                "a.strs".into(),
                Value::Array(vec![Value::String("x".into()), Value::String("".into())]),
            ),
            (
                "a.ints".into(),
                Value::Array(vec![Value::I32(1), Value::I32(-2)]),
            ),
        ];
        let w: Vec<u8> = (0..3 * 4 * 4).map(|i| i as u8).collect();
        let t = [
            TensorOut {
                name: "w".into(),
                dims: vec![4, 3],
                ggml_type: 0,
                data: &w,
            },
            TensorOut {
                name: "v".into(),
                dims: vec![5],
                ggml_type: 0,
                data: &w[..20],
            },
        ];
        let g = GgufFile::from_bytes(Path::new("t.gguf"), gguf_bytes(&md, &t)).unwrap();
        for (k, v) in &md {
            assert_eq!(g.metadata.get(k), Some(v), "{k}");
        }
        assert_eq!(g.tensor_bytes(g.tensor("w").unwrap()).unwrap(), &w[..]);
        assert_eq!(g.tensor_bytes(g.tensor("v").unwrap()).unwrap(), &w[..20]);
        assert_eq!(g.tensor("w").unwrap().dims, vec![4, 3]);
    }
}
