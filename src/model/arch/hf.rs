//! `ArchSpec` from a Hugging Face config.json: the numbers from its keys
//! (transformers v4 and v5 spellings), the structure from the family's row.

use super::{
    supported, Activation, ArchSpec, AttnSpec, HeadSpec, MlpSpec, NormSpec, QScale, RopeSpec,
    Window,
};
use crate::error::{Error, Result};
use crate::kernels::rope::{Llama3Scaling, RopeLayout};
use serde::Deserialize;
use std::path::Path;

impl ArchSpec {
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut c: HfConfig = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("invalid config.json: {e}")))?;
        // transformers v5 writes RoPE under rope_parameters (Gemma 3: per
        // attention type); older files at the top level.
        let mut theta_local_v5 = None;
        if let Some(rp) = c.rope_parameters.take() {
            let (global, local) = match (rp.get("full_attention"), rp.get("sliding_attention")) {
                (Some(g), l) => (g.clone(), l.cloned()),
                _ => (rp.clone(), None),
            };
            let g: HfRopeScaling = serde_json::from_value(global)
                .map_err(|e| Error::bad_file(path, format!("invalid rope_parameters: {e}")))?;
            c.rope_theta = g.rope_theta.or(c.rope_theta);
            c.partial_rotary_factor = g.partial_rotary_factor.or(c.partial_rotary_factor);
            if g.rope_type.as_deref().is_some_and(|t| t != "default") {
                c.rope_scaling = Some(g);
            }
            if let Some(l) = local {
                let l: HfRopeScaling = serde_json::from_value(l)
                    .map_err(|e| Error::bad_file(path, format!("invalid rope_parameters: {e}")))?;
                theta_local_v5 = l.rope_theta;
            }
        }
        let t = c
            .architectures
            .iter()
            .flatten()
            .chain(c.model_type.iter())
            .find_map(|a| super::by_hf_name(a))
            .ok_or_else(|| {
                Error::bad_file(
                    path,
                    format!(
                        "architectures {:?} (model_type {:?}) are not supported (supported: {})",
                        c.architectures.clone().unwrap_or_default(),
                        c.model_type.clone().unwrap_or_default(),
                        supported()
                    ),
                )
            })?;
        let mut freq_scale = 1.0;
        let rope_scaling = match &c.rope_scaling {
            None => None,
            Some(s) => {
                let kind = s
                    .rope_type
                    .as_deref()
                    .or(s.kind.as_deref())
                    .unwrap_or("default");
                match kind {
                    "default" => None,
                    "linear" => {
                        freq_scale = 1.0 / s.factor.filter(|f| *f > 0.0).unwrap_or(1.0);
                        None
                    }
                    "llama3" => Some(Llama3Scaling {
                        factor: s.factor.unwrap_or(8.0),
                        low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                        high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                        original_max_position_embeddings: s
                            .original_max_position_embeddings
                            .unwrap_or(8192.0),
                    }),
                    other => {
                        return Err(Error::bad_file(
                            path,
                            format!("rope_scaling type '{other}' is not supported (supported: default, linear, llama3)"),
                        ))
                    }
                }
            }
        };
        let n_kv = c.num_key_value_heads.unwrap_or(c.num_attention_heads);
        let head_dim = c.head_dim.unwrap_or(if c.num_attention_heads > 0 {
            c.hidden_size / c.num_attention_heads
        } else {
            0
        });
        let rope_dims = (head_dim as f64 * c.partial_rotary_factor.unwrap_or(1.0)) as usize;
        let theta = c.rope_theta.unwrap_or(10000.0);
        let n_layers = c.num_hidden_layers;
        let window = c.sliding_window.filter(|&w| w > 0);
        let (local_layers, theta_local, freq_scale_local) = match t.window {
            Window::Periodic {
                period,
                local_theta,
                local_freq_scale_is_global,
                ..
            } => (
                match &c.layer_types {
                    Some(l) if l.len() == n_layers => {
                        l.iter().map(|s| s == "sliding_attention").collect()
                    }
                    _ => {
                        ArchSpec::swa_pattern(n_layers, c.sliding_window_pattern.unwrap_or(period))
                    }
                },
                match local_theta {
                    Some(d) => theta_local_v5.or(c.rope_local_base_freq).unwrap_or(d),
                    None => theta,
                },
                if local_freq_scale_is_global {
                    freq_scale
                } else {
                    1.0
                },
            ),
            Window::Full {
                hf_every_layer: true,
                ..
            } if window.is_some() => (vec![true; n_layers], theta, 1.0),
            Window::Full {
                hf_refuse_use_sliding_window: true,
                ..
            } if window.is_some() && c.use_sliding_window == Some(true) => {
                return Err(Error::bad_file(
                    path,
                    "use_sliding_window = true is not supported for qwen (its layer pattern differs per checkpoint)",
                ));
            }
            Window::Full { .. } => (vec![false; n_layers], theta, 1.0),
        };
        let sliding_window = window.filter(|_| local_layers.iter().any(|&l| l));
        let q_prescale = match t.q_scale {
            QScale::Scores => None,
            QScale::HeadDim => Some(1.0 / (head_dim as f32).sqrt()),
            QScale::Gemma { .. } => {
                Some(1.0 / (c.query_pre_attn_scalar.unwrap_or(head_dim as f64) as f32).sqrt())
            }
        };
        let activation = match c.hidden_activation.as_deref().or(c.hidden_act.as_deref()) {
            Some("gelu_pytorch_tanh") | Some("gelu_tanh") => Activation::GeGluTanh,
            Some("silu") | Some("swish") | None => Activation::SwiGlu,
            Some(other) => {
                let msg = format!(
                    "hidden_act '{other}' is not supported (supported: silu, gelu_pytorch_tanh)"
                );
                return Err(Error::bad_file(path, msg));
            }
        };
        let spec = ArchSpec {
            family: t.family,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            n_layers,
            max_position_embeddings: c.max_position_embeddings,
            rope: RopeSpec {
                theta,
                theta_local,
                scaling: rope_scaling,
                freq_scale,
                freq_scale_local,
                attn_factor: 1.0,
                original_context: None,
                layout: RopeLayout::Half,
                dims: rope_dims,
            },
            attn: AttnSpec {
                n_heads: c.num_attention_heads,
                n_kv_heads: n_kv,
                head_dim,
                qkv_bias: t.hf_qkv_bias || c.attention_bias.unwrap_or(false),
                qk_norm: t.hf_qk_norm,
                q_prescale,
                softcap: t
                    .gguf_softcaps
                    .and(c.attn_logit_softcapping)
                    .map(|v| v as f32),
                sliding_window,
                local_layers,
                fused_qkv: t.fused,
            },
            norm: NormSpec {
                eps: c.rms_norm_eps as f32,
                post_norms: t.gemma_block,
                plus_one: t.gemma_block,
            },
            mlp: MlpSpec {
                intermediate_size: c.intermediate_size,
                activation,
                fused_gate_up: t.fused,
            },
            head: HeadSpec {
                tie_word_embeddings: c.tie_word_embeddings.unwrap_or(t.gemma_block),
                embed_scale: t.gemma_block.then(|| (c.hidden_size as f32).sqrt()),
                final_softcap: c.final_logit_softcapping.map(|v| v as f32),
            },
        };
        spec.validate(path)?;
        Ok(spec)
    }
}

/// Mirror of the config.json fields we read.
#[derive(Deserialize)]
struct HfConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<HfRopeScaling>,
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    partial_rotary_factor: Option<f64>,
    attention_bias: Option<bool>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    sliding_window_pattern: Option<usize>,
    layer_types: Option<Vec<String>>,
    rope_local_base_freq: Option<f64>,
    rope_parameters: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct HfRopeScaling {
    rope_theta: Option<f64>,
    partial_rotary_factor: Option<f64>,
    rope_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}
