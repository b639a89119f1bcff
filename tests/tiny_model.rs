//! A tiny random Llama (generated here as a Hugging Face folder): agreement
//! with an independent f64 implementation, and bit-invariance of logits
//! across threads, prefill chunking, batching and sampling.

mod common;

use common::*;
use infer_eval::engine::{GenOptions, Request};
use infer_eval::sampling::SamplingParams;

fn prompts() -> Vec<Request> {
    let lens = [13, 5, 21, 1, 9];
    lens.iter()
        .enumerate()
        .map(|(i, &n)| Request {
            id: format!("p{i}"),
            prompt_ids: (0..n).map(|j| (3 + (i * 7 + j * 5) % 61) as u32).collect(),
        })
        .collect()
}

#[test]
fn forward_matches_f64_reference() {
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let t = tiny_model(dtype, 11);
        let m = load(t.dir.path());
        let ids: Vec<u32> = (0..40).map(|j| (3 + j * 11 % 61) as u32).collect();
        let cfg = common::families::RefConfig::read(t.dir.path());
        let want = common::families::reference_logits(&cfg, &t.weights, &ids);
        let got = all_logits(&m, &ids);
        let scale = want.iter().flatten().fold(0f64, |a, v| a.max(v.abs()));
        let mut worst = 0f64;
        for (g, w) in got.iter().zip(&want) {
            for (a, b) in g.iter().zip(w) {
                worst = worst.max((*a as f64 - b).abs() / scale);
            }
        }
        assert!(
            worst < 1e-4,
            "max relative difference {worst:e} against the f64 reference"
        );
        assert!(scale > 0.1, "logits should not be trivially small");
    }
}

#[test]
fn two_runs_give_the_same_bits() {
    let t = tiny_model(Dtype::F32, 1);
    let m = load(t.dir.path());
    let a = run(&m, &prompts(), &greedy(12), 2);
    let m2 = load(t.dir.path());
    let b = run(&m2, &prompts(), &greedy(12), 2);
    assert_same_bits(&a, &b, "two runs");
}

#[test]
fn thread_count_does_not_change_bits() {
    let t = tiny_model(Dtype::F32, 2);
    let m = load(t.dir.path());
    let one = run(&m, &prompts(), &greedy(12), 1);
    for threads in [2, 4] {
        assert_same_bits(
            &one,
            &run(&m, &prompts(), &greedy(12), threads),
            &format!("threads 1 vs {threads}"),
        );
    }
}

#[test]
fn prefill_chunking_does_not_change_bits() {
    let t = tiny_model(Dtype::BF16, 3);
    let m = load(t.dir.path());
    let whole = run(&m, &prompts(), &greedy(8), 2);
    for chunk in [1, 7] {
        let opts = GenOptions {
            prefill_chunk: chunk,
            ..greedy(8)
        };
        assert_same_bits(
            &whole,
            &run(&m, &prompts(), &opts, 2),
            &format!("prefill chunk {chunk}"),
        );
    }
}

#[test]
fn batching_does_not_change_bits() {
    let t = tiny_model(Dtype::F32, 4);
    let m = load(t.dir.path());
    let all = prompts();
    let batched = run(
        &m,
        &all,
        &GenOptions {
            batch_size: 5,
            ..greedy(10)
        },
        2,
    );
    for (i, r) in all.iter().enumerate() {
        let alone = run(&m, std::slice::from_ref(r), &greedy(10), 2);
        assert_same_bits(
            &alone,
            &batched[i..i + 1],
            &format!("prompt {} alone vs in a batch of 5", r.id),
        );
    }
    // batch of 2 with chunked prefill as well
    let mixed = run(
        &m,
        &all,
        &GenOptions {
            batch_size: 2,
            prefill_chunk: 3,
            ..greedy(10)
        },
        4,
    );
    assert_same_bits(&batched, &mixed, "batch 5 vs batch 2 with chunks of 3");
}

#[test]
fn seeded_sampling_is_reproducible_across_threads_and_batches() {
    let t = tiny_model(Dtype::F32, 5);
    let m = load(t.dir.path());
    let sampled = |batch_size: usize, seed: u64| GenOptions {
        sampling: SamplingParams {
            temperature: 1.3,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.01,
            repetition_penalty: 1.1,
            // OpenAI's penalties and a bias: the same bits across threads
            // and batches as everything else.
            presence_penalty: 0.3,
            frequency_penalty: 0.2,
            logit_bias: [(5, 1.5), (9, -100.0)].into_iter().collect(),
            seed,
            max_tokens: 16,
        },
        batch_size,
        prefill_chunk: 512,
        keep_logits: true,
    };
    let a = run(&m, &prompts(), &sampled(1, 42), 1);
    let b = run(&m, &prompts(), &sampled(1, 42), 1);
    assert_same_bits(&a, &b, "sampled run repeated");
    let c = run(&m, &prompts(), &sampled(5, 42), 4);
    assert_same_bits(
        &a,
        &c,
        "sampled: 1 thread alone vs 4 threads in a batch of 5",
    );
    let greedy_out = run(&m, &prompts(), &greedy(16), 1);
    assert!(
        a.iter()
            .zip(&greedy_out)
            .any(|(x, y)| x.output_ids != y.output_ids),
        "sampling at temperature 1.3 should differ from greedy somewhere"
    );
    let d = run(&m, &prompts(), &sampled(1, 43), 1);
    assert!(
        a.iter().zip(&d).any(|(x, y)| x.output_ids != y.output_ids),
        "another seed should change some draw"
    );
}

/// The model's ISA is its own field, not a process global: each run below
/// uses exactly the ISA it names, whatever other tests do meanwhile.
#[test]
fn every_isa_gives_the_same_bits() {
    use infer_eval::kernels::Isa;
    let t = tiny_model(Dtype::F32, 6);
    let mut m = load(t.dir.path());
    let mut results = Vec::new();
    for isa in Isa::available() {
        m.model.isa = isa;
        results.push((isa, run(&m, &prompts(), &greedy(8), 2)));
    }
    for (isa, r) in &results[1..] {
        assert_same_bits(
            &results[0].1,
            r,
            &format!("{} vs {}", results[0].0.name(), isa.name()),
        );
    }
    eprintln!(
        "tiny model: compared {} end to end",
        results
            .iter()
            .map(|(i, _)| i.name())
            .collect::<Vec<_>>()
            .join(" vs ")
    );
    assert!(
        results.len() >= 2,
        "this CPU has only the scalar ISA: nothing was compared"
    );
}

/// Finding 15 of issue 11: a long-context model does not build RoPE tables
/// for its whole context up front; they grow with the positions in use, and
/// growing changes no bit (an entry depends only on its position).
#[test]
fn rope_tables_grow_on_demand_with_the_same_bits() {
    let t = tiny_model(Dtype::F32, 61);
    let short = load(t.dir.path());
    let long_dir = t.dir.path().join("long");
    std::fs::create_dir_all(&long_dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(t.dir.path().join(f), long_dir.join(f)).unwrap();
    }
    let mut cfg = config_json();
    cfg["max_position_embeddings"] = serde_json::json!(131_072);
    std::fs::write(long_dir.join("config.json"), cfg.to_string()).unwrap();
    let long = load(&long_dir);
    assert_eq!(long.model.rotary.max_positions, 131_072);
    assert!(
        long.model.rotary.positions() <= 1024,
        "built {} table rows up front",
        long.model.rotary.positions()
    );
    assert_same_bits(
        &run(&short, &prompts(), &greedy(8), 2),
        &run(&long, &prompts(), &greedy(8), 2),
        "context 256 vs 131072",
    );
    // A prompt past the first table rows: the tables grow, and a chunked
    // prefill (which grows them in steps) gives the same bits.
    let req = [Request {
        id: "long".into(),
        prompt_ids: (0..1500).map(|j| (3 + (j * 11) % 61) as u32).collect(),
    }];
    let whole = run(&long, &req, &greedy(3), 2);
    assert!(long.model.rotary.positions() >= 1503);
    let fresh = load(&long_dir);
    let chunked = run(
        &fresh,
        &req,
        &GenOptions {
            prefill_chunk: 700,
            ..greedy(3)
        },
        2,
    );
    assert_same_bits(&whole, &chunked, "1500-token prompt, tables grown in steps");
}

/// Finding 8 of issue 11: a forward pass whose activations overflow gives
/// an error naming the sequence, never a token picked from NaN or infinity
/// (in F16 files such logits used to come out NaN, in Q8 paths finite).
#[test]
fn non_finite_logits_are_an_error() {
    let t = tiny_model(Dtype::F32, 71);
    let mut w = t.weights.clone();
    // A finite but enormous final norm: the normed activations (RMS 1, so
    // some above 1) overflow to infinity, and the logits with them.
    for v in &mut w.get_mut("model.norm.weight").unwrap().1 {
        *v = f32::MAX as f64;
    }
    write_safetensors(&t.dir.path().join("model.safetensors"), &w, Dtype::F32).unwrap();
    let m = load(t.dir.path());
    let reqs = &prompts()[..1];
    let e = pool(1)
        .install(|| {
            infer_eval::engine::generate(&m.model, &m.tokenizer.eos, reqs, &greedy(4), |_| {})
        })
        .err()
        .expect("overflowing logits must be an error");
    let msg = e.to_string();
    assert!(
        msg.contains("non-finite logit") && msg.contains("p0"),
        "{msg}"
    );
    let ll = infer_eval::engine::loglikelihoods(
        &m.model,
        &[infer_eval::engine::LoglikRequest {
            context: vec![3, 4],
            continuation: vec![5],
        }],
        1,
        512,
    );
    assert!(ll.unwrap_err().to_string().contains("non-finite logit"));
}
