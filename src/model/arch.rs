//! The architecture description: every way the supported families differ,
//! as data, parsed once from GGUF metadata or a Hugging Face config.json.
//! One forward pass (`transformer.rs`) reads it; no family has code of its
//! own. What each GGUF key means follows llama.cpp (`src/llama-model.cpp`,
//! `src/models/*.cpp`; ../shared/ARCHITECTURES.md), what each config.json
//! key means follows the Hugging Face modeling code.

use crate::error::{Error, Result};
use crate::formats::gguf::GgufFile;
use crate::kernels::rope::{Llama3Scaling, RopeLayout};
use serde::Deserialize;
use std::path::Path;

/// The families, by their GGUF `general.architecture` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama 2/3, Mistral, SmolLM.
    Llama,
    Qwen2,
    Qwen3,
    Gemma2,
    Gemma3,
    Phi3,
}

pub const SUPPORTED: &str =
    "llama (Llama 2/3, Mistral, SmolLM), qwen2, qwen3, gemma2, gemma3, phi3";

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma2 => "gemma2",
            Family::Gemma3 => "gemma3",
            Family::Phi3 => "phi3",
        }
    }

    fn from_gguf(name: &str) -> Option<Self> {
        Some(match name {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "gemma2" => Family::Gemma2,
            "gemma3" => Family::Gemma3,
            "phi3" => Family::Phi3,
            _ => return None,
        })
    }

    /// From config.json's `architectures` (or `model_type`).
    fn from_hf(name: &str) -> Option<Self> {
        Some(match name {
            "LlamaForCausalLM" | "MistralForCausalLM" | "llama" | "mistral" => Family::Llama,
            "Qwen2ForCausalLM" | "qwen2" => Family::Qwen2,
            "Qwen3ForCausalLM" | "qwen3" => Family::Qwen3,
            "Gemma2ForCausalLM" | "gemma2" => Family::Gemma2,
            "Gemma3ForCausalLM" | "gemma3_text" => Family::Gemma3,
            "Phi3ForCausalLM" | "phi3" => Family::Phi3,
            _ => return None,
        })
    }

    fn gemma(self) -> bool {
        matches!(self, Family::Gemma2 | Family::Gemma3)
    }
}

/// The feed-forward gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// silu(gate) * up.
    SwiGlu,
    /// gelu_tanh(gate) * up (Gemma).
    GeGluTanh,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchSpec {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    /// RoPE base of the global (full-attention) layers.
    pub rope_theta: f64,
    /// RoPE base of the sliding-window layers (Gemma: 10000).
    pub rope_theta_local: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    /// Linear position scaling of the global layers (1 / factor; 1: none).
    pub rope_freq_scale: f64,
    /// The same for the sliding-window layers (Gemma 2: the global one;
    /// Gemma 3: 1).
    pub rope_freq_scale_local: f64,
    /// LongRoPE: the factor cos and sin are multiplied by (1: none).
    pub rope_attn_factor: f64,
    /// LongRoPE: the original context; the long factors are used past it.
    pub rope_original_context: Option<usize>,
    pub rope_layout: RopeLayout,
    /// Rotated dimensions of each head (the rest pass through).
    pub rope_dims: usize,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on the Q, K and V projections (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm of the attention and feed-forward outputs before each
    /// residual add (Gemma).
    pub post_norms: bool,
    pub activation: Activation,
    /// The embedding is multiplied by this (Gemma: sqrt(hidden), in f32).
    pub embed_scale: Option<f32>,
    /// Q is multiplied by this after RoPE (Gemma, Phi-3), and scores are
    /// not scaled; None: scores are scaled by 1/sqrt(head_dim) (Llama).
    pub q_prescale: Option<f32>,
    /// tanh soft-capping of attention scores and of the final logits (Gemma 2).
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Sliding-window size of the local layers.
    pub sliding_window: Option<usize>,
    /// Per layer: local (sliding window, local RoPE base) or global.
    pub local_layers: Vec<bool>,
    /// Q, K and V in one tensor, and gate and up in one (Phi-3).
    pub fused_qkv: bool,
    pub fused_gate_up: bool,
    /// Norm weights are stored as w and used as 1 + w (Gemma checkpoints
    /// from Hugging Face; llama.cpp's converter bakes the 1 in).
    pub norm_plus_one: bool,
}

impl ArchSpec {
    /// The score scale the attention kernel applies: 1/sqrt(head_dim), or 1
    /// where Q was pre-scaled.
    pub fn attn_scale(&self) -> f32 {
        match self.q_prescale {
            Some(_) => 1.0,
            None => 1.0 / (self.head_dim as f32).sqrt(),
        }
    }

    /// Shape checks shared by every source.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::bad_file(path, m));
        if self.n_heads == 0 || self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return bad(format!(
                "attention heads ({}) must be a non-zero multiple of key-value heads ({})",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return bad(format!(
                "head dimension {} must be even and non-zero",
                self.head_dim
            ));
        }
        if self.rope_dims == 0 || self.rope_dims % 2 != 0 || self.rope_dims > self.head_dim {
            return bad(format!(
                "rotary dimensions {} must be even, non-zero and at most the head dimension {}",
                self.rope_dims, self.head_dim
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.n_layers),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 || v > 1 << 24 {
                return bad(format!("{name} = {v} is out of range"));
            }
        }
        if !(self.rms_norm_eps > 0.0)
            || !(self.rope_theta > 0.0)
            || !(self.rope_theta_local > 0.0)
            || !(self.rope_freq_scale > 0.0)
        {
            return bad("rms_norm_eps, rope bases and rope scale must be positive".into());
        }
        for (name, cap) in [
            ("attention", self.attn_softcap),
            ("final", self.final_softcap),
        ] {
            if cap.is_some_and(|c| !(c > 0.0) || !c.is_finite()) {
                return bad(format!("{name} logit soft-cap must be positive"));
            }
        }
        if self.sliding_window == Some(0) {
            return bad("sliding window must be at least 1".into());
        }
        if self.local_layers.len() != self.n_layers {
            return bad("local layer pattern does not cover every layer".into());
        }
        Ok(())
    }

    /// llama.cpp's `set_swa_pattern(n)`: layer il is local iff il % n < n - 1.
    fn swa_pattern(n_layers: usize, n: usize) -> Vec<bool> {
        (0..n_layers).map(|il| n > 1 && il % n < n - 1).collect()
    }

    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g.get_str("general.architecture")?;
        let family = Family::from_gguf(arch).ok_or_else(|| {
            Error::bad_file(
                &g.path,
                format!("architecture '{arch}' is not supported (supported: {SUPPORTED})"),
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
                Some(crate::formats::gguf::Value::Array(a)) if a.len() == n_layers => a
                    .iter()
                    .map(|v| v.as_bool().unwrap_or(v.as_u64() == Some(1)))
                    .collect(),
                _ => Self::swa_pattern(
                    n_layers,
                    opt_u("attention.sliding_window_pattern").unwrap_or(default),
                ),
            }
        };
        let (local_layers, sliding_window, theta_local) = match family {
            // Gemma 2's defaults when the keys are absent: a 4096 window,
            // and local layers with the global base.
            Family::Gemma2 => (
                pattern(2),
                Some(window.unwrap_or(4096)),
                opt_f("rope.freq_base_swa").unwrap_or(theta),
            ),
            Family::Gemma3 if window.is_some() => (
                pattern(6),
                window,
                opt_f("rope.freq_base_swa").unwrap_or(10000.0),
            ),
            // Phi-3 writes a window that llama.cpp does not use; Mistral's
            // is not written: full causal attention, as llama.cpp runs them.
            _ => (vec![false; n_layers], None, theta),
        };
        // Gemma's Q scale is llama.cpp's, by model size (27B: n_embd/n_head).
        let gemma_27b = (family == Family::Gemma2 && n_layers == 46)
            || (family == Family::Gemma3 && n_layers == 62);
        let q_prescale = match family {
            Family::Gemma2 | Family::Gemma3 => Some(if gemma_27b {
                1.0 / ((hidden / n_heads.max(1)) as f32).sqrt()
            } else {
                1.0 / (head_dim as f32).sqrt()
            }),
            Family::Phi3 => Some(1.0 / (head_dim as f32).sqrt()),
            _ => None,
        };
        // Gemma 2's caps default to llama.cpp's 50 and 30 when absent.
        let softcap = |s: &str, default: f64| {
            Some(opt_f(s).unwrap_or(default))
                .filter(|c| *c != 0.0)
                .map(|c| c as f32)
        };
        let spec = ArchSpec {
            family,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            n_layers,
            n_heads,
            n_kv_heads: opt_u("attention.head_count_kv").unwrap_or(n_heads),
            head_dim,
            rms_norm_eps: g.get_f64(&k("attention.layer_norm_rms_epsilon"))? as f32,
            rope_theta: theta,
            rope_theta_local: theta_local,
            rope_scaling: None,
            rope_freq_scale: freq_scale,
            rope_freq_scale_local: if family == Family::Gemma2 {
                freq_scale
            } else {
                1.0
            },
            rope_attn_factor: attn_factor,
            rope_original_context: opt_u("rope.scaling.original_context_length"),
            // llama.cpp's converter permutes Llama's Q/K for interleaved
            // pairs; every other family keeps the Hugging Face order.
            rope_layout: if family == Family::Llama {
                RopeLayout::Interleaved
            } else {
                RopeLayout::Half
            },
            rope_dims,
            max_position_embeddings: u("context_length")?,
            tie_word_embeddings: g.tensor("output.weight").is_none(),
            qkv_bias: g.tensor("blk.0.attn_q.bias").is_some(),
            qk_norm: g.tensor("blk.0.attn_q_norm.weight").is_some(),
            post_norms: family.gemma(),
            activation: if family.gemma() {
                Activation::GeGluTanh
            } else {
                Activation::SwiGlu
            },
            embed_scale: family.gemma().then(|| (hidden as f32).sqrt()),
            q_prescale,
            attn_softcap: if family == Family::Gemma2 {
                softcap("attn_logit_softcapping", 50.0)
            } else {
                None
            },
            final_softcap: softcap(
                "final_logit_softcapping",
                if family == Family::Gemma2 { 30.0 } else { 0.0 },
            ),
            sliding_window,
            local_layers,
            fused_qkv: g.tensor("blk.0.attn_qkv.weight").is_some(),
            fused_gate_up: family == Family::Phi3 && g.tensor("blk.0.ffn_gate.weight").is_none(),
            norm_plus_one: false,
        };
        spec.validate(&g.path)?;
        Ok(spec)
    }

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
        let named = c
            .architectures
            .iter()
            .flatten()
            .chain(c.model_type.iter())
            .find_map(|a| Family::from_hf(a).map(|f| (a, f)));
        let family = match named {
            Some((_, f)) => f,
            None => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "architectures {:?} (model_type {:?}) are not supported (supported: {SUPPORTED})",
                        c.architectures.clone().unwrap_or_default(),
                        c.model_type.clone().unwrap_or_default()
                    ),
                ))
            }
        };
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
        let (local_layers, sliding_window, theta_local) = match family {
            Family::Gemma2 => (Self::swa_pattern(n_layers, 2), window, theta),
            Family::Gemma3 => match &c.layer_types {
                Some(t) if t.len() == n_layers => (
                    t.iter().map(|s| s == "sliding_attention").collect(),
                    window,
                    theta_local_v5.or(c.rope_local_base_freq).unwrap_or(10000.0),
                ),
                _ => (
                    Self::swa_pattern(n_layers, c.sliding_window_pattern.unwrap_or(6)),
                    window,
                    theta_local_v5.or(c.rope_local_base_freq).unwrap_or(10000.0),
                ),
            },
            // Mistral's config.json names its window: Hugging Face uses it
            // on every layer (Llama's modeling code ignores the key).
            Family::Llama
                if window.is_some()
                    && (c.model_type.as_deref() == Some("mistral")
                        || c.architectures
                            .iter()
                            .flatten()
                            .any(|a| a == "MistralForCausalLM")) =>
            {
                (vec![true; n_layers], window, theta)
            }
            Family::Qwen2 | Family::Qwen3
                if window.is_some() && c.use_sliding_window == Some(true) =>
            {
                return Err(Error::bad_file(
                    path,
                    "use_sliding_window = true is not supported for qwen (its layer pattern differs per checkpoint)",
                ));
            }
            _ => (vec![false; n_layers], None, theta),
        };
        let window = if local_layers.iter().any(|&l| l) {
            sliding_window
        } else {
            None
        };
        let q_prescale = match family {
            Family::Gemma2 | Family::Gemma3 => {
                Some(1.0 / (c.query_pre_attn_scalar.unwrap_or(head_dim as f64) as f32).sqrt())
            }
            Family::Phi3 => Some(1.0 / (head_dim as f32).sqrt()),
            _ => None,
        };
        let act = match c.hidden_activation.as_deref().or(c.hidden_act.as_deref()) {
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
            family,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            n_layers,
            n_heads: c.num_attention_heads,
            n_kv_heads: n_kv,
            head_dim,
            rms_norm_eps: c.rms_norm_eps as f32,
            rope_theta: theta,
            rope_theta_local: theta_local,
            rope_scaling,
            rope_freq_scale: freq_scale,
            rope_freq_scale_local: if family == Family::Gemma2 {
                freq_scale
            } else {
                1.0
            },
            rope_attn_factor: 1.0,
            rope_original_context: None,
            rope_layout: RopeLayout::Half,
            rope_dims,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(family.gemma()),
            qkv_bias: family == Family::Qwen2 || c.attention_bias.unwrap_or(false),
            qk_norm: matches!(family, Family::Qwen3 | Family::Gemma3),
            post_norms: family.gemma(),
            activation: act,
            embed_scale: family.gemma().then(|| (c.hidden_size as f32).sqrt()),
            q_prescale,
            attn_softcap: if family == Family::Gemma2 {
                c.attn_logit_softcapping.map(|v| v as f32)
            } else {
                None
            },
            final_softcap: c.final_logit_softcapping.map(|v| v as f32),
            sliding_window: window,
            local_layers,
            fused_qkv: family == Family::Phi3,
            fused_gate_up: family == Family::Phi3,
            norm_plus_one: family.gemma(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hf(extra: serde_json::Value) -> Result<ArchSpec> {
        let mut c = serde_json::json!({
            "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 8, "rms_norm_eps": 1e-6, "max_position_embeddings": 256,
        });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, c.to_string()).unwrap();
        ArchSpec::from_hf_json(&p)
    }

    /// transformers v5 writes RoPE under rope_parameters, per attention type
    /// for Gemma 3; v4 at the top level. Both give the same description.
    #[test]
    fn rope_parameters_of_transformers_v5_and_v4_agree() {
        let v5 = hf(serde_json::json!({
            "model_type": "gemma3_text", "sliding_window": 16,
            "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention",
                            "sliding_attention", "sliding_attention", "full_attention"],
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}
            }
        }))
        .unwrap();
        let v4 = hf(serde_json::json!({
            "model_type": "gemma3_text", "sliding_window": 16, "sliding_window_pattern": 6,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0}
        }))
        .unwrap();
        for s in [&v5, &v4] {
            assert_eq!(s.family, Family::Gemma3);
            assert_eq!((s.rope_theta, s.rope_theta_local), (1e6, 1e4));
            assert_eq!((s.rope_freq_scale, s.rope_freq_scale_local), (0.125, 1.0));
            assert_eq!(s.local_layers, vec![true, true, true, true, true, false]);
            assert_eq!(s.sliding_window, Some(16));
        }
        let llama = hf(serde_json::json!({
            "model_type": "llama", "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}
        }))
        .unwrap();
        assert_eq!((llama.rope_theta, llama.rope_freq_scale), (500000.0, 1.0));
        assert!(llama.rope_scaling.is_none() && llama.sliding_window.is_none());
    }

    /// A window only Mistral's modeling code uses; Llama's ignores the key.
    #[test]
    fn sliding_window_only_for_mistral() {
        let m = hf(serde_json::json!({"model_type": "mistral", "sliding_window": 32})).unwrap();
        assert_eq!(m.sliding_window, Some(32));
        assert!(m.local_layers.iter().all(|&l| l));
        let l = hf(serde_json::json!({"model_type": "llama", "sliding_window": 32})).unwrap();
        assert_eq!(l.sliding_window, None);
        let e = hf(serde_json::json!({"model_type": "qwen2", "sliding_window": 32, "use_sliding_window": true}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use_sliding_window"), "{e}");
    }
}
