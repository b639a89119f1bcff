//! Tiny random models of every supported family, as GGUF (llama.cpp's
//! names and keys) and as Hugging Face folders: for the tests (against an
//! independent f64 forward pass and against llama.cpp's logits) and the
//! bit-exactness suite. Weights are F32; every value a function of the seed.

use super::tiny::{write_safetensors, write_tokenizer, Dtype, Lcg, Weights};
use crate::formats::gguf::Value;
use crate::formats::gguf_write::{write_gguf, TensorOut};
use crate::model::arch::Family;
use std::collections::BTreeMap;
use std::path::Path;

pub const FAMILIES: [Family; 6] = [
    Family::Llama,
    Family::Qwen2,
    Family::Qwen3,
    Family::Gemma2,
    Family::Gemma3,
    Family::Phi3,
];

/// The shape of a family's tiny model.
#[derive(Debug, Clone, Copy)]
pub struct TinyShape {
    pub vocab: usize,
    pub hidden: usize,
    pub inter: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Rotated dimensions of each head.
    pub rope_dims: usize,
    pub max_pos: usize,
    pub window: Option<usize>,
}

pub fn shape(f: Family) -> TinyShape {
    let base = TinyShape {
        vocab: 64,
        hidden: 64,
        inter: 96,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        rope_dims: 16,
        max_pos: 256,
        window: None,
    };
    match f {
        Family::Llama | Family::Qwen2 => base,
        // head_dim from key_length, not hidden / heads.
        Family::Qwen3 => TinyShape {
            head_dim: 24,
            rope_dims: 24,
            ..base
        },
        Family::Gemma2 => TinyShape {
            head_dim: 16,
            window: Some(4),
            ..base
        },
        // Six layers: five local, one global (llama.cpp's pattern of 6).
        Family::Gemma3 => TinyShape {
            layers: 6,
            head_dim: 24,
            rope_dims: 24,
            window: Some(5),
            ..base
        },
        // Partial rotary: half of each head.
        Family::Phi3 => TinyShape {
            rope_dims: 8,
            ..base
        },
    }
}

pub const EPS: f64 = 1e-5;
pub const THETA: f64 = 10000.0;
pub const THETA_GLOBAL_GEMMA3: f64 = 1_000_000.0;
pub const ATTN_SOFTCAP: f64 = 8.0;
pub const FINAL_SOFTCAP: f64 = 3.0;

fn gemma(f: Family) -> bool {
    matches!(f, Family::Gemma2 | Family::Gemma3)
}

/// The weights in Hugging Face names (model.layers.N.self_attn.q_proj.weight
/// ...), shape [rows, cols], values as stored. Gemma norms are stored as the
/// value they multiply by (1 + w in Hugging Face files, baked in GGUF).
pub fn weights(f: Family, seed: u64) -> Weights {
    let s = shape(f);
    let mut rng = Lcg(seed ^ (f as u64 + 1) * 0x9e37_79b9_7f4a_7c15);
    let mut w: Weights = BTreeMap::new();
    let mut add = |name: String, sh: Vec<usize>, kind: u8, rng: &mut Lcg| {
        let n: usize = sh.iter().product();
        let scale = 1.0 / (sh[sh.len() - 1] as f64).sqrt();
        let vals = (0..n)
            .map(|_| {
                let u = rng.next() * 2.0 - 1.0;
                let v = match kind {
                    0 => 2.0 * u * scale, // matrix
                    1 => 1.0 + 0.2 * u,   // norm
                    _ => 0.3 * u,         // bias
                };
                v as f32 as f64
            })
            .collect();
        w.insert(name, (sh, vals));
    };
    let (h, q, kv) = (s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim);
    add(
        "model.embed_tokens.weight".into(),
        vec![s.vocab, h],
        0,
        &mut rng,
    );
    for l in 0..s.layers {
        let p = |x: &str| format!("model.layers.{l}.{x}");
        add(p("input_layernorm.weight"), vec![h], 1, &mut rng);
        if f == Family::Phi3 {
            add(
                p("self_attn.qkv_proj.weight"),
                vec![q + 2 * kv, h],
                0,
                &mut rng,
            );
        } else {
            add(p("self_attn.q_proj.weight"), vec![q, h], 0, &mut rng);
            add(p("self_attn.k_proj.weight"), vec![kv, h], 0, &mut rng);
            add(p("self_attn.v_proj.weight"), vec![kv, h], 0, &mut rng);
        }
        if f == Family::Qwen2 {
            add(p("self_attn.q_proj.bias"), vec![q], 2, &mut rng);
            add(p("self_attn.k_proj.bias"), vec![kv], 2, &mut rng);
            add(p("self_attn.v_proj.bias"), vec![kv], 2, &mut rng);
        }
        if matches!(f, Family::Qwen3 | Family::Gemma3) {
            add(p("self_attn.q_norm.weight"), vec![s.head_dim], 1, &mut rng);
            add(p("self_attn.k_norm.weight"), vec![s.head_dim], 1, &mut rng);
        }
        add(p("self_attn.o_proj.weight"), vec![h, q], 0, &mut rng);
        if gemma(f) {
            add(p("post_attention_layernorm.weight"), vec![h], 1, &mut rng);
            add(p("pre_feedforward_layernorm.weight"), vec![h], 1, &mut rng);
            add(p("post_feedforward_layernorm.weight"), vec![h], 1, &mut rng);
        } else {
            add(p("post_attention_layernorm.weight"), vec![h], 1, &mut rng);
        }
        if f == Family::Phi3 {
            add(
                p("mlp.gate_up_proj.weight"),
                vec![2 * s.inter, h],
                0,
                &mut rng,
            );
        } else {
            add(p("mlp.gate_proj.weight"), vec![s.inter, h], 0, &mut rng);
            add(p("mlp.up_proj.weight"), vec![s.inter, h], 0, &mut rng);
        }
        add(p("mlp.down_proj.weight"), vec![h, s.inter], 0, &mut rng);
    }
    add("model.norm.weight".into(), vec![h], 1, &mut rng);
    if !gemma(f) {
        add("lm_head.weight".into(), vec![s.vocab, h], 0, &mut rng);
    }
    w
}

/// Write the family's tiny model as a Hugging Face folder (config.json,
/// model.safetensors, tokenizer.json). Returns the weights as stored.
pub fn write_hf(dir: &Path, f: Family, seed: u64) -> std::io::Result<Weights> {
    let s = shape(f);
    let mut w = weights(f, seed);
    if gemma(f) {
        // Hugging Face Gemma stores w and multiplies by 1 + w.
        for (name, (_, vals)) in w.iter_mut() {
            if name.ends_with("norm.weight") || name.ends_with("layernorm.weight") {
                vals.iter_mut().for_each(|v| *v = (*v as f32 - 1.0) as f64);
            }
        }
    }
    std::fs::create_dir_all(dir)?;
    write_safetensors(&dir.join("model.safetensors"), &w, Dtype::F32)?;
    let arch = match f {
        Family::Llama => "LlamaForCausalLM",
        Family::Qwen2 => "Qwen2ForCausalLM",
        Family::Qwen3 => "Qwen3ForCausalLM",
        Family::Gemma2 => "Gemma2ForCausalLM",
        Family::Gemma3 => "Gemma3ForCausalLM",
        Family::Phi3 => "Phi3ForCausalLM",
    };
    let mut cfg = serde_json::json!({
        "architectures": [arch],
        "vocab_size": s.vocab,
        "hidden_size": s.hidden,
        "intermediate_size": s.inter,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "head_dim": s.head_dim,
        "rms_norm_eps": EPS,
        "rope_theta": THETA,
        "max_position_embeddings": s.max_pos,
        "tie_word_embeddings": gemma(f),
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    let c = cfg.as_object_mut().unwrap();
    match f {
        Family::Gemma2 => {
            c.insert("hidden_activation".into(), "gelu_pytorch_tanh".into());
            c.insert("query_pre_attn_scalar".into(), (s.head_dim as u64).into());
            c.insert("attn_logit_softcapping".into(), ATTN_SOFTCAP.into());
            c.insert("final_logit_softcapping".into(), FINAL_SOFTCAP.into());
            c.insert("sliding_window".into(), (s.window.unwrap() as u64).into());
        }
        Family::Gemma3 => {
            c.insert("hidden_activation".into(), "gelu_pytorch_tanh".into());
            c.insert("query_pre_attn_scalar".into(), (s.head_dim as u64).into());
            c.insert("sliding_window".into(), (s.window.unwrap() as u64).into());
            c.insert("sliding_window_pattern".into(), 6.into());
            c.insert("rope_theta".into(), THETA_GLOBAL_GEMMA3.into());
            c.insert("rope_local_base_freq".into(), THETA.into());
        }
        Family::Phi3 => {
            c.insert(
                "partial_rotary_factor".into(),
                (s.rope_dims as f64 / s.head_dim as f64).into(),
            );
        }
        _ => {}
    }
    std::fs::write(dir.join("config.json"), cfg.to_string())?;
    write_tokenizer(&dir.join("tokenizer.json"))?;
    Ok(w)
}

/// llama.cpp's Q/K row order for interleaved RoPE (convert_hf_to_gguf.py
/// `permute`): within each head, rows (i, i + d/2) become (2i, 2i + 1).
fn permute_rows(vals: &[f64], rows: usize, cols: usize, heads: usize) -> Vec<f64> {
    let d = rows / heads;
    let mut out = vec![0f64; vals.len()];
    for hd in 0..heads {
        for i in 0..d / 2 {
            for (dst, src) in [(2 * i, i), (2 * i + 1, i + d / 2)] {
                let (r_out, r_in) = (hd * d + dst, hd * d + src);
                out[r_out * cols..(r_out + 1) * cols]
                    .copy_from_slice(&vals[r_in * cols..(r_in + 1) * cols]);
            }
        }
    }
    out
}

/// Write the family's tiny model as a GGUF file, as llama.cpp's converter
/// would from `weights` (Llama's Q/K rows permuted for interleaved RoPE).
/// Returns the weights in Hugging Face names and order.
pub fn write_gguf_model(path: &Path, f: Family, seed: u64) -> crate::error::Result<Weights> {
    let s = shape(f);
    let w = weights(f, seed);
    let arch = f.name();
    let k = |x: &str| format!("{arch}.{x}");
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        // Not "tiny-phi3": llama.cpp gives Phi-3 names special-token rules that need its full vocabulary.
        (
            "general.name".into(),
            Value::String("tiny random model".into()),
        ),
        (k("context_length"), Value::U32(s.max_pos as u32)),
        (k("embedding_length"), Value::U32(s.hidden as u32)),
        (k("block_count"), Value::U32(s.layers as u32)),
        (k("feed_forward_length"), Value::U32(s.inter as u32)),
        (k("attention.head_count"), Value::U32(s.heads as u32)),
        (k("attention.head_count_kv"), Value::U32(s.kv_heads as u32)),
        (k("attention.key_length"), Value::U32(s.head_dim as u32)),
        (k("attention.value_length"), Value::U32(s.head_dim as u32)),
        (
            k("attention.layer_norm_rms_epsilon"),
            Value::F32(EPS as f32),
        ),
        (
            k("rope.freq_base"),
            Value::F32(if f == Family::Gemma3 {
                THETA_GLOBAL_GEMMA3
            } else {
                THETA
            } as f32),
        ),
        (k("rope.dimension_count"), Value::U32(s.rope_dims as u32)),
        (k("vocab_size"), Value::U32(s.vocab as u32)),
    ];
    match f {
        Family::Gemma2 => {
            md.push((
                k("attention.sliding_window"),
                Value::U32(s.window.unwrap() as u32),
            ));
            md.push((k("attn_logit_softcapping"), Value::F32(ATTN_SOFTCAP as f32)));
            md.push((
                k("final_logit_softcapping"),
                Value::F32(FINAL_SOFTCAP as f32),
            ));
        }
        Family::Gemma3 => {
            md.push((
                k("attention.sliding_window"),
                Value::U32(s.window.unwrap() as u32),
            ));
        }
        _ => {}
    }
    // A SentencePiece vocabulary of single characters (llama.cpp needs one
    // to load; tests feed token ids): <unk> <s> </s>, the word boundary,
    // a-z, A-Z, 0-7.
    let mut words: Vec<String> = ["<unk>", "<s>", "</s>", "\u{2581}"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    words.extend(
        ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='7')
            .map(|c| c.to_string()),
    );
    debug_assert_eq!(words.len(), s.vocab);
    md.extend([
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(words.iter().map(|w| Value::String(w.clone())).collect()),
        ),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array((0..words.len()).map(|i| Value::F32(-(i as f32))).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..words.len())
                    .map(|i| Value::I32(if i < 3 { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ]);
    let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f64>)> = Vec::new();
    let mut put = |name: String, hf: &str, permute: Option<usize>| {
        let (sh, vals) = &w[hf];
        let vals = match permute {
            Some(heads) => permute_rows(vals, sh[0], sh[1], heads),
            None => vals.clone(),
        };
        let dims: Vec<usize> = sh.iter().rev().copied().collect();
        tensors.push((name, dims, vals));
    };
    put(
        "token_embd.weight".into(),
        "model.embed_tokens.weight",
        None,
    );
    let llama = f == Family::Llama;
    for l in 0..s.layers {
        let hp = |x: &str| format!("model.layers.{l}.{x}");
        let g = |x: &str| format!("blk.{l}.{x}");
        put(g("attn_norm.weight"), &hp("input_layernorm.weight"), None);
        if f == Family::Phi3 {
            put(g("attn_qkv.weight"), &hp("self_attn.qkv_proj.weight"), None);
        } else {
            put(
                g("attn_q.weight"),
                &hp("self_attn.q_proj.weight"),
                llama.then_some(s.heads),
            );
            put(
                g("attn_k.weight"),
                &hp("self_attn.k_proj.weight"),
                llama.then_some(s.kv_heads),
            );
            put(g("attn_v.weight"), &hp("self_attn.v_proj.weight"), None);
        }
        if f == Family::Qwen2 {
            put(g("attn_q.bias"), &hp("self_attn.q_proj.bias"), None);
            put(g("attn_k.bias"), &hp("self_attn.k_proj.bias"), None);
            put(g("attn_v.bias"), &hp("self_attn.v_proj.bias"), None);
        }
        if matches!(f, Family::Qwen3 | Family::Gemma3) {
            put(
                g("attn_q_norm.weight"),
                &hp("self_attn.q_norm.weight"),
                None,
            );
            put(
                g("attn_k_norm.weight"),
                &hp("self_attn.k_norm.weight"),
                None,
            );
        }
        put(
            g("attn_output.weight"),
            &hp("self_attn.o_proj.weight"),
            None,
        );
        if gemma(f) {
            put(
                g("post_attention_norm.weight"),
                &hp("post_attention_layernorm.weight"),
                None,
            );
            put(
                g("ffn_norm.weight"),
                &hp("pre_feedforward_layernorm.weight"),
                None,
            );
            put(
                g("post_ffw_norm.weight"),
                &hp("post_feedforward_layernorm.weight"),
                None,
            );
        } else {
            put(
                g("ffn_norm.weight"),
                &hp("post_attention_layernorm.weight"),
                None,
            );
        }
        if f == Family::Phi3 {
            put(g("ffn_up.weight"), &hp("mlp.gate_up_proj.weight"), None);
        } else {
            put(g("ffn_gate.weight"), &hp("mlp.gate_proj.weight"), None);
            put(g("ffn_up.weight"), &hp("mlp.up_proj.weight"), None);
        }
        put(g("ffn_down.weight"), &hp("mlp.down_proj.weight"), None);
    }
    put("output_norm.weight".into(), "model.norm.weight", None);
    if !gemma(f) {
        put("output.weight".into(), "lm_head.weight", None);
    }
    let _ = (q, kv);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect())
        .collect();
    let outs: Vec<TensorOut> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, dims, _), b)| TensorOut {
            name: name.clone(),
            dims: dims.clone(),
            ggml_type: 0,
            data: b,
        })
        .collect();
    write_gguf(path, &md, &outs)?;
    Ok(w)
}
