//! An independent f64 forward pass for every family, written from the
//! Hugging Face modeling code (not from our kernels): RMSNorm, RoPE with
//! rotate_half over the first rope_dims dimensions, grouped-query attention
//! with an optional soft-cap and sliding window, SwiGLU or GeGLU (tanh),
//! Gemma's embedding scale and post norms. Weights in Hugging Face names,
//! norms as the factors they multiply by.

use infer_eval::bench::tiny::Weights;
use infer_eval::model::arch::{Activation, ArchSpec};

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
pub fn reference_logits(c: &ArchSpec, w: &Weights, ids: &[u32]) -> Vec<Vec<f64>> {
    let get = |n: &str| -> &Vec<f64> { &w.get(n).unwrap_or_else(|| panic!("no weight {n}")).1 };
    let (h, hd, nh, nkv) = (c.hidden_size, c.head_dim, c.n_heads, c.n_kv_heads);
    let eps = c.rms_norm_eps as f64;
    let rd = c.rope_dims;
    let inv = |theta: f64, scale: f64| -> Vec<f64> {
        (0..rd / 2)
            .map(|i| {
                let f = theta.powf(-((2 * i) as f64) / rd as f64) * scale;
                // Hugging Face rope_type "llama3".
                match &c.rope_scaling {
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
        inv(c.rope_theta, c.rope_freq_scale),
        inv(c.rope_theta_local, c.rope_freq_scale_local),
    );
    let emb = get("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| {
            let row = &emb[i as usize * h..(i as usize + 1) * h];
            match c.embed_scale {
                Some(_) => row.iter().map(|v| v * (h as f64).sqrt()).collect(),
                None => row.to_vec(),
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
        let scale = match c.q_prescale {
            Some(s) => s as f64,
            None => 1.0 / (hd as f64).sqrt(),
        };
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
                            Some(cap) => cap as f64 * (d / cap as f64).tanh(),
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
                .map(|(g, u)| match c.activation {
                    Activation::SwiGlu => g / (1.0 + (-g).exp()) * u,
                    Activation::GeGluTanh => gelu_tanh(*g) * u,
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
                Some(cap) => l
                    .iter()
                    .map(|v| cap as f64 * (v / cap as f64).tanh())
                    .collect(),
                None => l,
            }
        })
        .collect()
}
