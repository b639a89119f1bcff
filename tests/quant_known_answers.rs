//! Dequantisation against an independent implementation: gguf-py's
//! `gguf.quants.dequantize` (PyPI `gguf` 0.19.0), which computes every
//! format in float32 numpy with one rounding per operation, as our contract
//! says (docs/DETERMINISM.md §3). scripts/make_quant_vectors.py wrote the
//! known answers; it also checks them against a transliteration of ours.

use infer_eval::formats::gguf::GgufFile;
use infer_eval::kernels::quant::{dequantize_row, WeightFormat};
use sha2::{Digest, Sha256};
use std::path::Path;

fn golden(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn format(name: &str) -> Option<WeightFormat> {
    Some(match name {
        "F32" => WeightFormat::F32,
        "F16" => WeightFormat::F16,
        "BF16" => WeightFormat::BF16,
        "Q4_0" => WeightFormat::Q4_0,
        "Q4_1" => WeightFormat::Q4_1,
        "Q8_0" => WeightFormat::Q8_0,
        "Q4_K" => WeightFormat::Q4K,
        "Q6_K" => WeightFormat::Q6K,
        "Q5_0" => WeightFormat::Q5_0,
        _ => return None,
    })
}

/// Finding 4 of issue 11: every block of every format we read, including
/// zero, negative, subnormal and extreme f16 scales, Q4_K's packed 6-bit
/// scales of sub-blocks 4..7 and Q6_K's negative scales, bit for bit.
#[test]
fn dequantisation_matches_gguf_py_known_answers() {
    let g = golden("quant_vectors.json");
    let mut compared = Vec::new();
    for case in g["cases"].as_array().unwrap() {
        let name = case["format"].as_str().unwrap();
        let Some(fmt) = format(name) else { continue };
        let raw = hex::decode(case["hex"].as_str().unwrap()).unwrap();
        let want: Vec<u32> = case["f32_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let blocks = case["blocks"].as_u64().unwrap() as usize;
        assert_eq!(raw.len(), blocks * fmt.block_bytes(), "{name}");
        assert_eq!(want.len(), blocks * fmt.block_elems(), "{name}");
        let mut got = vec![0f32; want.len()];
        dequantize_row(fmt, &raw, &mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                *w,
                "{name} element {i} (block {}): ours {g:e}, gguf-py {:e}",
                i / fmt.block_elems(),
                f32::from_bits(*w)
            );
        }
        compared.push(name);
    }
    eprintln!("dequantisation equals gguf-py for {}", compared.join(", "));
    for must in ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"] {
        assert!(compared.contains(&must), "no known answers for {must}");
    }
}

/// The same on a real Q4_K_M file (Gemma 3 270M, fetched from PyPI): whole
/// tensors of each type we read (Q4_K attention and FFN matrices, Q6_K FFN
/// matrices, the Q8_0 embedding, F32 norms), hashed as gguf-py dequantised them.
#[test]
fn a_real_q4_k_m_file_dequantises_as_gguf_py_does() {
    let g = golden("gemma3_dequant.json");
    let path = infer_eval::fetch::resolve("gemma3", &mut |s| eprintln!("{s}"))
        .expect("fetch the Gemma 3 270M Q4_K_M GGUF (models/gemma3.toml)");
    assert_eq!(
        infer_eval::formats::sha256_file(&path).unwrap(),
        g["file_sha256"].as_str().unwrap()
    );
    let file = GgufFile::open(&path).unwrap();
    let mut compared = Vec::new();
    for t in g["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let Some(fmt) = format(t["type"].as_str().unwrap()) else {
            continue;
        };
        let info = file
            .tensor(name)
            .unwrap_or_else(|| panic!("no tensor {name}"));
        assert_eq!(info.format(), Some(fmt), "{name}");
        let dims: Vec<usize> = t["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(info.dims, dims, "{name}");
        let bytes = file.tensor_bytes(info).unwrap();
        let cols = dims[0];
        let rb = fmt.row_bytes(cols).unwrap();
        let mut row = vec![0f32; cols];
        let mut h = Sha256::new();
        let mut first = Vec::new();
        for r in bytes.chunks_exact(rb) {
            dequantize_row(fmt, r, &mut row);
            if first.len() < 8 {
                first.extend(row.iter().take(8 - first.len()).map(|v| v.to_bits() as u64));
            }
            let mut le = Vec::with_capacity(cols * 4);
            row.iter()
                .for_each(|v| le.extend_from_slice(&v.to_le_bytes()));
            h.update(&le);
        }
        let want_first: Vec<u64> = t["first_f32_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(first, want_first, "{name}: first values");
        assert_eq!(
            hex::encode(h.finalize()),
            t["f32_sha256"].as_str().unwrap(),
            "{name}: whole tensor"
        );
        compared.push(format!("{name} ({})", fmt.name()));
    }
    eprintln!(
        "Gemma 3 270M Q4_K_M: {} tensors equal gguf-py's: {}",
        compared.len(),
        compared.join(", ")
    );
    for must in ["Q4_K", "Q5_0", "Q6_K", "Q8_0"] {
        assert!(
            compared.iter().filter(|c| c.contains(must)).count() >= 2,
            "fewer than two {must} tensors compared"
        );
    }
}
