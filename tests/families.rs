//! Every supported family on a tiny random model, written as GGUF (as
//! llama.cpp's converter would) and as a Hugging Face folder: logits at
//! every position against an independent f64 implementation
//! (common/families.rs) and against llama.cpp on the same GGUF
//! (tests/golden/tiny_llamacpp.json, scripts/llamacpp_tiny_logits.py), and
//! every bit-invariance of the Llama path.

mod common;

use common::families::{reference_logits, RefConfig};
use common::*;
use infer_eval::bench::tiny_family::{self, FAMILIES};
use infer_eval::engine::{GenOptions, Request};
use infer_eval::model::arch::Family;
use infer_eval::sampling::SamplingParams;

const SEED: u64 = 1;

fn golden() -> serde_json::Value {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tiny_llamacpp.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn tokens() -> Vec<u32> {
    golden()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// Gemma's query_pre_attn_scalar in the Hugging Face folder of
/// `every_family_matches_the_f64_reference_and_llamacpp`: not the head
/// dimension the writer puts there (which is also the scale GGUF's rule
/// gives), so a parser that ignored the key would fail.
const QUERY_PRE_ATTN_SCALAR: f64 = 40.0;

/// The family's tiny model in both formats: (GGUF model, HF model, dir).
fn models(
    f: Family,
) -> (
    infer_eval::loader::LoadedModel,
    infer_eval::loader::LoadedModel,
    tempfile::TempDir,
) {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("m.gguf");
    tiny_family::write_gguf_model(&g, f, SEED).unwrap();
    let hf = d.path().join("hf");
    tiny_family::write_hf(&hf, f, SEED).unwrap();
    (load(&g), load(&hf), d)
}

/// max over positions of max |a - b| / max |b|.
fn rel_err(a: &[Vec<f32>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let scale = y.iter().fold(0f64, |m, v| m.max(v.abs()));
            x.iter()
                .zip(y)
                .fold(0f64, |m, (p, q)| m.max((*p as f64 - q).abs()))
                / scale
        })
        .fold(0.0, f64::max)
}

#[test]
fn every_family_matches_the_f64_reference_and_llamacpp() {
    let g = golden();
    let ids = tokens();
    let mut report = Vec::new();
    let mut checks = Vec::new();
    for f in FAMILIES {
        let (gguf, hf, d) = models(f);
        assert_eq!(gguf.model.config.family, f);
        assert_eq!(hf.model.config.family, f);
        let w = tiny_family::weights(f, SEED);
        // The reference reads config.json itself. The GGUF holds what the
        // folder the writer made holds; the Hugging Face folder is then
        // given a non-default query_pre_attn_scalar (Gemma), and the
        // reference of each is read from its own config.json.
        let hf_dir = d.path().join("hf");
        let want = reference_logits(&RefConfig::read(&hf_dir), &w, &ids);
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hf_dir.join("config.json")).unwrap()).unwrap();
        let hf = if cfg.get("query_pre_attn_scalar").is_some() {
            assert_ne!(
                cfg["query_pre_attn_scalar"].as_f64(),
                Some(QUERY_PRE_ATTN_SCALAR)
            );
            cfg["query_pre_attn_scalar"] = QUERY_PRE_ATTN_SCALAR.into();
            std::fs::write(hf_dir.join("config.json"), cfg.to_string()).unwrap();
            load(&hf_dir)
        } else {
            hf
        };
        let want_hf = reference_logits(&RefConfig::read(&hf_dir), &w, &ids);
        if matches!(f, Family::Gemma2 | Family::Gemma3) {
            assert!(
                rel_err(&all_logits(&hf, &ids), &want) > 1e-2,
                "{}: query_pre_attn_scalar {QUERY_PRE_ATTN_SCALAR} changed nothing",
                f.name()
            );
        }
        let ours_gguf = all_logits(&gguf, &ids);
        let ours_hf = all_logits(&hf, &ids);
        let (e_gguf, e_hf) = (rel_err(&ours_gguf, &want), rel_err(&ours_hf, &want_hf));
        let lcpp: Vec<Vec<f64>> = g["families"][f.name()]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let e_lcpp = rel_err(&ours_gguf, &lcpp);
        let e_lcpp_ref = rel_err(
            &lcpp
                .iter()
                .map(|r| r.iter().map(|v| *v as f32).collect())
                .collect::<Vec<_>>(),
            &want,
        );
        report.push(format!(
            "{}: vs f64 GGUF {e_gguf:.2e}, HF {e_hf:.2e}; vs llama.cpp {e_lcpp:.2e} (llama.cpp vs f64 {e_lcpp_ref:.2e})",
            f.name()
        ));
        checks.push((f, e_gguf, e_hf, e_lcpp));
    }
    eprintln!("{}", report.join("\n"));
    for (f, e_gguf, e_hf, e_lcpp) in checks {
        assert!(
            e_gguf < 1e-4 && e_hf < 1e-4,
            "{}: relative error to f64 GGUF {e_gguf:e}, HF {e_hf:e}",
            f.name()
        );
        // llama.cpp's CPU GELU reads an f16 table (Gemma), and it sums in
        // other orders: a tolerance, not an identity.
        let tol = if matches!(f, Family::Gemma2 | Family::Gemma3) {
            3e-3
        } else {
            1e-4
        };
        assert!(
            e_lcpp < tol,
            "{}: relative difference to llama.cpp {e_lcpp:e} (tolerance {tol:e})",
            f.name()
        );
    }
}

fn requests() -> Vec<Request> {
    [13usize, 5, 21, 1, 9]
        .iter()
        .enumerate()
        .map(|(i, &n)| Request {
            id: format!("p{i}"),
            prompt_ids: (0..n).map(|j| (4 + (i * 7 + j * 5) % 60) as u32).collect(),
        })
        .collect()
}

/// Threads 1/2/4, alone vs in a batch of 5, prefill whole / token by token /
/// chunks of 7, a seeded sampled run repeated and unbatched, every ISA: the
/// same logit bits, for every family in both formats.
#[test]
fn every_family_keeps_every_invariance() {
    use infer_eval::kernels::Isa;
    for f in FAMILIES {
        let (gguf, hf, _d) = models(f);
        for (fmt, mut m) in [("gguf", gguf), ("hf", hf)] {
            let what = |s: &str| format!("{} {fmt}: {s}", f.name());
            let reqs = requests();
            let base = run(&m, &reqs, &greedy(6), 1);
            for t in [2, 4] {
                assert_same_bits(
                    &base,
                    &run(&m, &reqs, &greedy(6), t),
                    &what(&format!("threads 1 vs {t}")),
                );
            }
            let batched = run(
                &m,
                &reqs,
                &GenOptions {
                    batch_size: 5,
                    ..greedy(6)
                },
                2,
            );
            assert_same_bits(&base, &batched, &what("alone vs batch of 5"));
            for chunk in [1, 7] {
                let o = GenOptions {
                    prefill_chunk: chunk,
                    ..greedy(6)
                };
                assert_same_bits(
                    &base,
                    &run(&m, &reqs, &o, 2),
                    &what(&format!("prefill chunk {chunk}")),
                );
            }
            let sampled = GenOptions {
                sampling: SamplingParams {
                    temperature: 0.8,
                    top_k: 20,
                    seed: 3,
                    max_tokens: 6,
                    ..Default::default()
                },
                batch_size: 3,
                prefill_chunk: 4,
                keep_logits: true,
            };
            let a = run(&m, &reqs, &sampled, 2);
            assert_same_bits(
                &a,
                &run(
                    &m,
                    &reqs,
                    &GenOptions {
                        batch_size: 1,
                        prefill_chunk: 512,
                        ..sampled.clone()
                    },
                    1,
                ),
                &what("sampled, batched+chunked vs not"),
            );
            assert!(
                Isa::available().len() >= 2,
                "this CPU has only the scalar ISA: nothing would be compared"
            );
            for isa in Isa::available() {
                m.model.isa = isa;
                assert_same_bits(
                    &base,
                    &run(&m, &reqs, &greedy(6), 2),
                    &what(&format!("isa {}", isa.name())),
                );
            }
        }
    }
}

/// Item 7 of issue 12: an unsupported architecture or a missing tensor of a
/// supported one is one error line naming the file and what is wrong.
#[test]
fn unsupported_architecture_and_missing_tensor_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.gguf");
    tiny_family::write_gguf_model(&p, Family::Gemma3, SEED).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    // Same-length replacements keep every offset of the file valid.
    let edited = |name: &str, from: &str, to: &str| {
        assert_eq!(from.len(), to.len());
        let (f, t) = (from.as_bytes(), to.as_bytes());
        let mut b = bytes.clone();
        let mut hits = 0;
        let mut i = 0;
        while i + f.len() <= b.len() {
            if &b[i..i + f.len()] == f {
                b[i..i + f.len()].copy_from_slice(t);
                hits += 1;
                i += f.len();
            } else {
                i += 1;
            }
        }
        assert!(hits > 0, "{from} not in the file");
        let q = d.path().join(name);
        std::fs::write(&q, b).unwrap();
        let e = match infer_eval::loader::load(&q, &candle_core::Device::Cpu) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(q.to_str().unwrap()), "{name}: {e}");
        assert_eq!(e.lines().count(), 1, "{name}: one line: {e}");
        e
    };
    // The architecture's name and its keys' prefix: "gemma3" -> "gemma9".
    let e = edited("arch.gguf", "gemma3", "gemma9");
    assert!(
        e.contains("architecture 'gemma9' is not supported") && e.contains("gemma3"),
        "{e}"
    );
    // A tensor the architecture needs, renamed away.
    let e = edited(
        "tensor.gguf",
        "blk.1.ffn_down.weight",
        "blk.1.ffn_dxwn.weight",
    );
    assert!(e.contains("missing tensor 'blk.1.ffn_down.weight'"), "{e}");
}
