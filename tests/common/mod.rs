//! Shared test helpers: a tiny random Llama written as a Hugging Face folder
//! (config.json, model.safetensors, tokenizer.json), an independent f64
//! reference forward pass, and helpers to run generation under a thread pool.
#![allow(dead_code)]

pub mod families;

use infer_eval::engine::{self, GenOptions, Request, SeqOutput};
use infer_eval::loader::{self, LoadedModel};
use std::path::{Path, PathBuf};

pub use infer_eval::bench::tiny::*;

pub struct Tiny {
    pub dir: tempfile::TempDir,
    /// Every tensor's values as stored (after rounding to the dtype), row-major.
    pub weights: Weights,
}

pub fn tiny_model(dtype: Dtype, seed: u64) -> Tiny {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_tiny_model(dir.path(), dtype, seed).unwrap();
    Tiny { dir, weights }
}

pub fn load(path: &Path) -> LoadedModel {
    loader::load(path, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

pub fn run(m: &LoadedModel, reqs: &[Request], opts: &GenOptions, threads: usize) -> Vec<SeqOutput> {
    run_counted(m, reqs, opts, threads).0
}

/// `run`, and how many kernel worker threads the run started beside the
/// calling one (so a test can show that `threads` really ran).
pub fn run_counted(
    m: &LoadedModel,
    reqs: &[Request],
    opts: &GenOptions,
    threads: usize,
) -> (Vec<SeqOutput>, usize) {
    pool(threads).install(|| {
        let out = engine::generate(&m.model, &m.tokenizer.eos, reqs, opts, |_| {}).unwrap();
        (out, infer_eval::kernels::pool::workers())
    })
}

/// Greedy decoding of `max_tokens`, one sequence at a time, keeping logits.
pub fn greedy(max_tokens: usize) -> GenOptions {
    GenOptions {
        sampling: infer_eval::sampling::SamplingParams {
            max_tokens,
            ..Default::default()
        },
        batch_size: 1,
        prefill_chunk: 512,
        keep_logits: true,
    }
}

/// Bits of every step's logits, for exact comparison.
pub fn logit_bits(o: &SeqOutput) -> Vec<Vec<u32>> {
    o.step_logits
        .iter()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

pub fn assert_same_bits(a: &[SeqOutput], b: &[SeqOutput], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: sequence count");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.id, y.id);
        assert!(!x.step_logits.is_empty(), "{what}: run with keep_logits");
        assert_eq!(x.output_ids, y.output_ids, "{what}: tokens of {}", x.id);
        assert!(
            logit_bits(x) == logit_bits(y),
            "{what}: logits bits of {} differ",
            x.id
        );
        assert_eq!(
            x.logits_digest, y.logits_digest,
            "{what}: logits digest of {}",
            x.id
        );
    }
}

/// Plain f64 Llama forward over a whole token sequence, written from the
/// Hugging Face modeling code; returns logits for every position.
pub fn reference_logits(t: &Tiny, ids: &[u32]) -> Vec<Vec<f64>> {
    let w = |n: &str| &t.weights[n].1;
    let (h, hd, nh, nkv) = (HIDDEN, HEAD_DIM, HEADS, KV_HEADS);
    let n = ids.len();
    let matvec = |m: &[f64], rows: usize, x: &[f64]| -> Vec<f64> {
        let cols = x.len();
        (0..rows)
            .map(|r| (0..cols).map(|c| m[r * cols + c] * x[c]).sum())
            .collect()
    };
    let rms = |x: &[f64], g: &[f64]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let r = 1.0 / (ms + EPS).sqrt();
        x.iter().zip(g).map(|(v, g)| g * v * r).collect()
    };
    // inverse frequencies with llama3 scaling (factor 8, low 1, high 4, original 64)
    let inv: Vec<f64> = (0..hd / 2)
        .map(|i| {
            let f = THETA.powf(-((2 * i) as f64) / hd as f64);
            let (factor, low, high, orig) = (8.0, 1.0, 4.0, 64.0);
            let wl = 2.0 * std::f64::consts::PI / f;
            if wl < orig / high {
                f
            } else if wl > orig / low {
                f / factor
            } else {
                let s = (orig / wl - low) / (high - low);
                (1.0 - s) * f / factor + s * f
            }
        })
        .collect();
    let rope = |v: &mut [f64], pos: usize| {
        for head in v.chunks_mut(hd) {
            for i in 0..hd / 2 {
                let a = pos as f64 * inv[i];
                let (x0, x1) = (head[i], head[i + hd / 2]);
                head[i] = x0 * a.cos() - x1 * a.sin();
                head[i + hd / 2] = x0 * a.sin() + x1 * a.cos();
            }
        }
    };
    let emb = w("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| emb[i as usize * h..(i as usize + 1) * h].to_vec())
        .collect();
    for l in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{l}.{s}.weight");
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        let mut qs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let hn = rms(x, w(&p("input_layernorm")));
            let mut q = matvec(w(&p("self_attn.q_proj")), nh * hd, &hn);
            let mut k = matvec(w(&p("self_attn.k_proj")), nkv * hd, &hn);
            let v = matvec(w(&p("self_attn.v_proj")), nkv * hd, &hn);
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for pos in 0..n {
            let mut att = vec![0f64; nh * hd];
            for head in 0..nh {
                let g = head / (nh / nkv);
                let q = &qs[pos][head * hd..(head + 1) * hd];
                let s: Vec<f64> = (0..=pos)
                    .map(|i| {
                        q.iter()
                            .zip(&ks[i][g * hd..(g + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for i in 0..=pos {
                    for d in 0..hd {
                        att[head * hd + d] += e[i] / z * vs[i][g * hd + d];
                    }
                }
            }
            let o = matvec(w(&p("self_attn.o_proj")), h, &att);
            for (x, y) in xs[pos].iter_mut().zip(o) {
                *x += y;
            }
            let hn = rms(&xs[pos], w(&p("post_attention_layernorm")));
            let g = matvec(w(&p("mlp.gate_proj")), INTER, &hn);
            let u = matvec(w(&p("mlp.up_proj")), INTER, &hn);
            let a: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = matvec(w(&p("mlp.down_proj")), h, &a);
            for (x, y) in xs[pos].iter_mut().zip(d) {
                *x += y;
            }
        }
    }
    xs.iter()
        .map(|x| matvec(w("lm_head.weight"), VOCAB, &rms(x, w("model.norm.weight"))))
        .collect()
}

/// The default model (SmolLM2 GGUF), fetched into the cache if needed.
pub fn smollm2_path() -> PathBuf {
    infer_eval::fetch::resolve("llama", &mut |s| eprintln!("{s}"))
        .expect("fetch the default model (SmolLM2)")
}
