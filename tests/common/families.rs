//! An independent f64 forward pass for every family, written from the
//! Hugging Face modeling code (not from our kernels): RMSNorm, RoPE with
//! rotate_half over the first rope_dims dimensions, grouped-query attention
//! with an optional soft-cap and sliding window, SwiGLU or GeGLU (tanh),
//! Gemma's embedding scale and post norms. Weights in Hugging Face names,
//! norms as the factors they multiply by. Its settings come from the
//! model's config.json, read here by the rules of the Hugging Face config
//! classes (`RefConfig::read`), not through the parser under test.

use infer_eval::bench::tiny::Weights;
use serde_json::Value;
use std::path::Path;

/// Hugging Face's rope_type "llama3".
pub struct Llama3Rope {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// What the reference needs of an architecture, as the Hugging Face
/// modeling code reads it from config.json.
pub struct RefConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rope_dims: usize,
    pub rms_norm_eps: f64,
    /// Global layers: base, linear frequency scale, llama3 scaling.
    pub rope_theta: f64,
    pub rope_freq_scale: f64,
    pub rope_llama3: Option<Llama3Rope>,
    /// Gemma 3: the sliding-window layers' own RoPE base
    /// (rope_local_base_freq), unscaled; else they use the global RoPE.
    pub rope_local: Option<f64>,
    /// Attention scores are multiplied by this.
    pub attn_scale: f64,
    pub attn_softcap: Option<f64>,
    pub final_softcap: Option<f64>,
    pub sliding_window: Option<usize>,
    pub local_layers: Vec<bool>,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    pub post_norms: bool,
    pub gelu_tanh: bool,
    pub embed_scale: bool,
    pub fused_qkv: bool,
    pub fused_gate_up: bool,
    pub tie_word_embeddings: bool,
}

impl RefConfig {
    /// `dir`/config.json.
    pub fn read(dir: &Path) -> RefConfig {
        let p = dir.join("config.json");
        let v: Value = serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap();
        Self::from_json(&v)
    }

    pub fn from_json(c: &Value) -> RefConfig {
        let arch = c["architectures"][0].as_str().expect("architectures");
        let u = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("config.json: {k}")) as usize;
        let f = |k: &str, default: f64| c[k].as_f64().unwrap_or(default);
        let opt_f = |k: &str, default: Option<f64>| match &c[k] {
            Value::Null if c.get(k).is_some() => None,
            Value::Null => default,
            v => Some(v.as_f64().unwrap()),
        };
        let (gemma2, gemma3) = (arch == "Gemma2ForCausalLM", arch == "Gemma3ForCausalLM");
        let (qwen2, qwen3, phi3) = (
            arch == "Qwen2ForCausalLM",
            arch == "Qwen3ForCausalLM",
            arch == "Phi3ForCausalLM",
        );
        assert!(
            gemma2 || gemma3 || qwen2 || qwen3 || phi3 || arch == "LlamaForCausalLM",
            "the reference does not know {arch}"
        );
        let gemma = gemma2 || gemma3;
        let (hidden, n_heads, n_layers) = (
            u("hidden_size"),
            u("num_attention_heads"),
            u("num_hidden_layers"),
        );
        let head_dim = c["head_dim"]
            .as_u64()
            .map_or(hidden / n_heads, |h| h as usize);
        let mut rope_freq_scale = 1.0;
        let mut rope_llama3 = None;
        if let Some(s) = c.get("rope_scaling").filter(|s| !s.is_null()) {
            let kind = s["rope_type"].as_str().or(s["type"].as_str()).unwrap();
            let g = |k: &str| s[k].as_f64().unwrap();
            match kind {
                "llama3" => {
                    rope_llama3 = Some(Llama3Rope {
                        factor: g("factor"),
                        low_freq_factor: g("low_freq_factor"),
                        high_freq_factor: g("high_freq_factor"),
                        original_max_position_embeddings: g("original_max_position_embeddings"),
                    })
                }
                "linear" => rope_freq_scale = 1.0 / g("factor"),
                k => panic!("the reference does not know rope_type {k}"),
            }
        }
        // Which layers slide: Gemma 2 every even one, Gemma 3 all but every
        // sliding_window_pattern-th (or as layer_types lists them).
        let local_layers: Vec<bool> = (0..n_layers)
            .map(|i| {
                if let Some(t) = c["layer_types"].as_array() {
                    t[i] == "sliding_attention"
                } else if gemma2 {
                    i % 2 == 0
                } else if gemma3 {
                    (i + 1) % c["sliding_window_pattern"].as_u64().unwrap_or(6) as usize != 0
                } else {
                    false
                }
            })
            .collect();
        RefConfig {
            vocab_size: u("vocab_size"),
            hidden_size: hidden,
            intermediate_size: u("intermediate_size"),
            n_layers,
            n_heads,
            n_kv_heads: c["num_key_value_heads"]
                .as_u64()
                .map_or(n_heads, |h| h as usize),
            head_dim,
            rope_dims: (head_dim as f64 * f("partial_rotary_factor", 1.0)) as usize,
            rms_norm_eps: f("rms_norm_eps", 1e-6),
            rope_theta: f("rope_theta", 10000.0),
            rope_freq_scale,
            rope_llama3,
            rope_local: gemma3.then(|| f("rope_local_base_freq", 10000.0)),
            attn_scale: if gemma {
                let default = if gemma2 { 224.0 } else { 256.0 };
                1.0 / f("query_pre_attn_scalar", default).sqrt()
            } else {
                1.0 / (head_dim as f64).sqrt()
            },
            attn_softcap: if gemma2 {
                opt_f("attn_logit_softcapping", Some(50.0))
            } else {
                opt_f("attn_logit_softcapping", None)
            },
            final_softcap: if gemma2 {
                opt_f("final_logit_softcapping", Some(30.0))
            } else {
                opt_f("final_logit_softcapping", None)
            },
            sliding_window: if gemma {
                Some(c["sliding_window"].as_u64().unwrap_or(4096) as usize)
            } else {
                None
            },
            local_layers,
            qkv_bias: qwen2 || c["attention_bias"].as_bool().unwrap_or(false),
            qk_norm: qwen3 || gemma3,
            post_norms: gemma,
            gelu_tanh: gemma,
            embed_scale: gemma,
            fused_qkv: phi3,
            fused_gate_up: phi3,
            tie_word_embeddings: c["tie_word_embeddings"].as_bool().unwrap_or(gemma),
        }
    }
}

fn matvec(m: &[f64], rows: usize, x: &[f64]) -> Vec<f64> {
    let cols = x.len();
    (0..rows)
        .map(|r| (0..cols).map(|c| m[r * cols + c] * x[c]).sum())
        .collect()
}

fn rms(x: &[f64], g: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(g).map(|(v, g)| g * v * r).collect()
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// Logits at every position of `ids`.
pub fn reference_logits(c: &RefConfig, w: &Weights, ids: &[u32]) -> Vec<Vec<f64>> {
    let get = |n: &str| -> &Vec<f64> { &w.get(n).unwrap_or_else(|| panic!("no weight {n}")).1 };
    let (h, hd, nh, nkv) = (c.hidden_size, c.head_dim, c.n_heads, c.n_kv_heads);
    let eps = c.rms_norm_eps;
    let rd = c.rope_dims;
    let inv = |theta: f64, scale: f64, llama3: Option<&Llama3Rope>| -> Vec<f64> {
        (0..rd / 2)
            .map(|i| {
                let f = theta.powf(-((2 * i) as f64) / rd as f64) * scale;
                // Hugging Face rope_type "llama3".
                match llama3 {
                    None => f,
                    Some(s) => {
                        let (lo, hi) = (
                            s.original_max_position_embeddings / s.low_freq_factor,
                            s.original_max_position_embeddings / s.high_freq_factor,
                        );
                        let wl = 2.0 * std::f64::consts::PI / f;
                        if wl < hi {
                            f
                        } else if wl > lo {
                            f / s.factor
                        } else {
                            let sm = (s.original_max_position_embeddings / wl - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - sm) * f / s.factor + sm * f
                        }
                    }
                }
            })
            .collect()
    };
    let rope = |v: &mut [f64], pos: usize, inv: &[f64]| {
        for head in v.chunks_mut(hd) {
            for i in 0..rd / 2 {
                let a = pos as f64 * inv[i];
                let (x0, x1) = (head[i], head[i + rd / 2]);
                head[i] = x0 * a.cos() - x1 * a.sin();
                head[i + rd / 2] = x0 * a.sin() + x1 * a.cos();
            }
        }
    };
    let (inv_global, inv_local) = (
        inv(c.rope_theta, c.rope_freq_scale, c.rope_llama3.as_ref()),
        match c.rope_local {
            Some(theta) => inv(theta, 1.0, None),
            None => inv(c.rope_theta, c.rope_freq_scale, c.rope_llama3.as_ref()),
        },
    );
    let emb = get("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| {
            let row = &emb[i as usize * h..(i as usize + 1) * h];
            if c.embed_scale {
                row.iter().map(|v| v * (h as f64).sqrt()).collect()
            } else {
                row.to_vec()
            }
        })
        .collect();
    let n = ids.len();
    let (q_dim, kv_dim) = (nh * hd, nkv * hd);
    for l in 0..c.n_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let local = c.local_layers[l];
        let inv = if local { &inv_local } else { &inv_global };
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (pos, x) in xs.iter().enumerate() {
            let hn = rms(x, get(&p("input_layernorm.weight")), eps);
            let (mut q, mut k, mut v) = if c.fused_qkv {
                let all = matvec(
                    get(&p("self_attn.qkv_proj.weight")),
                    q_dim + 2 * kv_dim,
                    &hn,
                );
                (
                    all[..q_dim].to_vec(),
                    all[q_dim..q_dim + kv_dim].to_vec(),
                    all[q_dim + kv_dim..].to_vec(),
                )
            } else {
                (
                    matvec(get(&p("self_attn.q_proj.weight")), q_dim, &hn),
                    matvec(get(&p("self_attn.k_proj.weight")), kv_dim, &hn),
                    matvec(get(&p("self_attn.v_proj.weight")), kv_dim, &hn),
                )
            };
            if c.qkv_bias {
                for (t, b) in [(&mut q, "q"), (&mut k, "k"), (&mut v, "v")] {
                    let bias = get(&p(&format!("self_attn.{b}_proj.bias")));
                    t.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
                }
            }
            if c.qk_norm {
                for (t, nm) in [(&mut q, "q_norm"), (&mut k, "k_norm")] {
                    let g = get(&p(&format!("self_attn.{nm}.weight")));
                    for head in t.chunks_mut(hd) {
                        let normed = rms(head, g, eps);
                        head.copy_from_slice(&normed);
                    }
                }
            }
            rope(&mut q, pos, inv);
            rope(&mut k, pos, inv);
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        let scale = c.attn_scale;
        let window = if local { c.sliding_window } else { None };
        for pos in 0..n {
            let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let mut att = vec![0f64; q_dim];
            for head in 0..nh {
                let g = head / (nh / nkv);
                let q = &qs[pos][head * hd..(head + 1) * hd];
                let s: Vec<f64> = (first..=pos)
                    .map(|i| {
                        let d = q
                            .iter()
                            .zip(&ks[i][g * hd..(g + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            * scale;
                        match c.attn_softcap {
                            Some(cap) => cap * (d / cap).tanh(),
                            None => d,
                        }
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, i) in (first..=pos).enumerate() {
                    for d in 0..hd {
                        att[head * hd + d] += e[j] / z * vs[i][g * hd + d];
                    }
                }
            }
            let mut o = matvec(get(&p("self_attn.o_proj.weight")), h, &att);
            if c.post_norms {
                o = rms(&o, get(&p("post_attention_layernorm.weight")), eps);
            }
            for (x, y) in xs[pos].iter_mut().zip(o) {
                *x += y;
            }
            let pre = if c.post_norms {
                "pre_feedforward_layernorm.weight"
            } else {
                "post_attention_layernorm.weight"
            };
            let hn = rms(&xs[pos], get(&p(pre)), eps);
            let (gt, up) = if c.fused_gate_up {
                let all = matvec(
                    get(&p("mlp.gate_up_proj.weight")),
                    2 * c.intermediate_size,
                    &hn,
                );
                (
                    all[..c.intermediate_size].to_vec(),
                    all[c.intermediate_size..].to_vec(),
                )
            } else {
                (
                    matvec(get(&p("mlp.gate_proj.weight")), c.intermediate_size, &hn),
                    matvec(get(&p("mlp.up_proj.weight")), c.intermediate_size, &hn),
                )
            };
            let a: Vec<f64> = gt
                .iter()
                .zip(&up)
                .map(|(g, u)| {
                    if c.gelu_tanh {
                        gelu_tanh(*g) * u
                    } else {
                        g / (1.0 + (-g).exp()) * u
                    }
                })
                .collect();
            let mut d = matvec(get(&p("mlp.down_proj.weight")), h, &a);
            if c.post_norms {
                d = rms(&d, get(&p("post_feedforward_layernorm.weight")), eps);
            }
            for (x, y) in xs[pos].iter_mut().zip(d) {
                *x += y;
            }
        }
    }
    let head = if c.tie_word_embeddings {
        emb
    } else {
        get("lm_head.weight")
    };
    xs.iter()
        .map(|x| {
            let l = matvec(head, c.vocab_size, &rms(x, get("model.norm.weight"), eps));
            match c.final_softcap {
                Some(cap) => l.iter().map(|v| cap * (v / cap).tanh()).collect(),
                None => l,
            }
        })
        .collect()
}
