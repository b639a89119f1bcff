//! `ArchSpec` from GGUF metadata: the numbers from the `{arch}.*` keys and
//! the tensors present, the structure from the family's row.

use super::{
    supported, Activation, ArchSpec, AttnSpec, HeadSpec, MlpSpec, NormSpec, QScale, RopeSpec,
    Window,
};
use crate::error::{Error, Result};
use crate::formats::gguf::{GgufFile, Value};

impl ArchSpec {
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g.get_str("general.architecture")?;
        let t = super::by_gguf_name(arch).ok_or_else(|| {
            Error::bad_file(
                &g.path,
                format!(
                    "architecture '{arch}' is not supported (supported: {})",
                    supported()
                ),
            )
        })?;
        let k = |s: &str| format!("{arch}.{s}");
        let u = |s: &str| g.get_u64(&k(s)).map(|v| v as usize);
        let opt_u = |s: &str| {
            g.metadata
                .get(&k(s))
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
        };
        let opt_f = |s: &str| g.metadata.get(&k(s)).and_then(|v| v.as_f64());
        let n_heads = u("attention.head_count")?;
        let hidden = u("embedding_length")?;
        let n_layers = u("block_count")?;
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| Error::bad_file(&g.path, "missing tensor 'token_embd.weight'"))?;
        let vocab = opt_u("vocab_size").unwrap_or(*embd.dims.get(1).unwrap_or(&0));
        let head_dim =
            opt_u("attention.key_length").unwrap_or(if n_heads > 0 { hidden / n_heads } else { 0 });
        let rope_dims = opt_u("rope.dimension_count").unwrap_or(head_dim);
        // llama.cpp: the scaling type defaults to linear, and a factor key
        // scales positions whatever the type (LongRoPE's own divisors come
        // from tensors); attn_factor multiplies cos and sin for every family.
        let mut freq_scale = 1.0;
        match g
            .metadata
            .get(&k("rope.scaling.type"))
            .and_then(|v| v.as_str())
        {
            None | Some("none") | Some("linear") | Some("longrope") => {
                if let Some(f) = opt_f("rope.scaling.factor").filter(|f| *f > 0.0) {
                    freq_scale = 1.0 / f;
                }
            }
            Some(t) => {
                return Err(Error::bad_file(
                    &g.path,
                    format!(
                        "rope scaling '{t}' is not supported (supported: none, linear, longrope)"
                    ),
                ));
            }
        }
        let attn_factor = opt_f("rope.scaling.attn_factor")
            .filter(|f| *f > 0.0)
            .unwrap_or(1.0);
        let theta = opt_f("rope.freq_base").unwrap_or(10000.0);
        let window = opt_u("attention.sliding_window").filter(|&w| w > 0);
        // llama.cpp's load_swa_pattern: a per-layer array, else a period.
        let pattern = |default: usize| -> Vec<bool> {
            match g.metadata.get(&k("attention.sliding_window_pattern")) {
                Some(Value::Array(a)) if a.len() == n_layers => a
                    .iter()
                    .map(|v| v.as_bool().unwrap_or(v.as_u64() == Some(1)))
                    .collect(),
                _ => Self::swa_pattern(
                    n_layers,
                    opt_u("attention.sliding_window_pattern").unwrap_or(default),
                ),
            }
        };
        let (local_layers, sliding_window, theta_local, freq_scale_local) = match t.window {
            // The family's default window where the key is absent (Gemma 2:
            // 4096); with no default, local layers only where one is named.
            Window::Periodic {
                period,
                default_window,
                local_theta,
                local_freq_scale_is_global,
            } if window.or(default_window).is_some() => (
                pattern(period),
                window.or(default_window),
                opt_f("rope.freq_base_swa").unwrap_or(local_theta.unwrap_or(theta)),
                if local_freq_scale_is_global {
                    freq_scale
                } else {
                    1.0
                },
            ),
            // A window the family does not use (Phi-3 writes one; Mistral's
            // is not written): full causal attention, as llama.cpp runs it.
            _ => (vec![false; n_layers], None, theta, 1.0),
        };
        let q_prescale = match t.q_scale {
            QScale::Scores => None,
            QScale::HeadDim => Some(1.0 / (head_dim as f32).sqrt()),
            // llama.cpp's rule by model size (27B: n_embd/n_head).
            QScale::Gemma { n_layers_27b } if n_layers == n_layers_27b => {
                Some(1.0 / ((hidden / n_heads.max(1)) as f32).sqrt())
            }
            QScale::Gemma { .. } => Some(1.0 / (head_dim as f32).sqrt()),
        };
        // The family's caps where the keys are absent; 0 means none.
        let softcap = |s: &str, default: f64| {
            Some(opt_f(s).unwrap_or(default))
                .filter(|c| *c != 0.0)
                .map(|c| c as f32)
        };
        let (attn_cap, final_cap) = t.gguf_softcaps.unwrap_or((0.0, 0.0));
        let spec = ArchSpec {
            family: t.family,
            vocab_size: vocab,
            hidden_size: hidden,
            n_layers,
            max_position_embeddings: u("context_length")?,
            rope: RopeSpec {
                theta,
                theta_local,
                scaling: None,
                freq_scale,
                freq_scale_local,
                attn_factor,
                original_context: opt_u("rope.scaling.original_context_length"),
                layout: t.gguf_rope_layout,
                dims: rope_dims,
            },
            attn: AttnSpec {
                n_heads,
                n_kv_heads: opt_u("attention.head_count_kv").unwrap_or(n_heads),
                head_dim,
                qkv_bias: g.tensor("blk.0.attn_q.bias").is_some(),
                qk_norm: g.tensor("blk.0.attn_q_norm.weight").is_some(),
                q_prescale,
                softcap: t
                    .gguf_softcaps
                    .and_then(|_| softcap("attn_logit_softcapping", attn_cap)),
                sliding_window,
                local_layers,
                fused_qkv: g.tensor("blk.0.attn_qkv.weight").is_some(),
            },
            norm: NormSpec {
                eps: g.get_f64(&k("attention.layer_norm_rms_epsilon"))? as f32,
                post_norms: t.gemma_block,
                plus_one: false,
            },
            mlp: MlpSpec {
                intermediate_size: u("feed_forward_length")?,
                activation: if t.gemma_block {
                    Activation::GeGluTanh
                } else {
                    Activation::SwiGlu
                },
                fused_gate_up: t.fused && g.tensor("blk.0.ffn_gate.weight").is_none(),
            },
            head: HeadSpec {
                tie_word_embeddings: g.tensor("output.weight").is_none(),
                embed_scale: t.gemma_block.then(|| (hidden as f32).sqrt()),
                final_softcap: softcap("final_logit_softcapping", final_cap),
            },
        };
        spec.validate(&g.path)?;
        Ok(spec)
    }
}
