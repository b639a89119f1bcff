//! The architecture description: every way the supported families differ,
//! as data. Each family's structural traits are one row of `FAMILIES`; the
//! readers (`gguf.rs` for GGUF metadata, `hf.rs` for a Hugging Face
//! config.json) only read numbers into an `ArchSpec` and take the rest
//! from the row. One forward pass (`transformer.rs`) reads the spec; no
//! family has code of its own. What each GGUF key means follows llama.cpp
//! (`src/llama-model.cpp`, `src/models/*.cpp`; ../shared/ARCHITECTURES.md),
//! what each config.json key means follows the Hugging Face modeling code.
//! Adding a family: one row here, its tensor names in `names.rs`.

mod gguf;
mod hf;

use crate::error::{Error, Result};
use crate::kernels::rope::{Llama3Scaling, RopeLayout};
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

/// How Q and the attention scores are scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QScale {
    /// Scores times 1/sqrt(head_dim) (Llama, Qwen).
    Scores,
    /// Q times 1/sqrt(head_dim) after RoPE, scores unscaled (Phi-3).
    HeadDim,
    /// Q times 1/sqrt(query_pre_attn_scalar) (config.json; head_dim when
    /// absent); from GGUF, llama.cpp's rule by size: 1/sqrt(n_embd/n_head)
    /// for the 27B models (`n_layers_27b` layers), else 1/sqrt(head_dim).
    Gemma { n_layers_27b: usize },
}

/// Which layers attend through a sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// Full causal attention on every layer. `hf_every_layer`: a window a
    /// config.json names applies to every layer (Mistral's modeling code;
    /// Llama's ignores the key). `hf_refuse_use_sliding_window`: Qwen's
    /// `use_sliding_window = true` is refused (its pattern differs per
    /// checkpoint).
    Full {
        hf_every_layer: bool,
        hf_refuse_use_sliding_window: bool,
    },
    /// Local layers by llama.cpp's period (il % period < period - 1), the
    /// window `default_window` where the file names none (None: only with
    /// a window named), local RoPE base `local_theta` (None: the global
    /// one), local position scaling the global one's or none.
    Periodic {
        period: usize,
        default_window: Option<usize>,
        local_theta: Option<f64>,
        local_freq_scale_is_global: bool,
    },
}

/// One family's structure, written once.
#[derive(Debug, Clone, Copy)]
pub struct Traits {
    pub family: Family,
    /// `general.architecture` values of GGUF files.
    pub gguf_names: &'static [&'static str],
    /// config.json `architectures` and `model_type` values.
    pub hf_names: &'static [&'static str],
    /// RoPE pairs in GGUF files (llama.cpp's converter permutes Llama's Q/K
    /// for interleaved pairs; config.json weights are always `Half`).
    pub gguf_rope_layout: RopeLayout,
    /// Gemma's block: RMSNorm of each sub-layer's output before its residual
    /// add, GeGLU(tanh), the embedding times sqrt(hidden), norm weights
    /// stored as w for 1 + w in config.json checkpoints (llama.cpp's
    /// converter bakes the 1 in), tied embeddings by default.
    pub gemma_block: bool,
    pub q_scale: QScale,
    pub window: Window,
    /// Soft-caps of attention scores and final logits where a GGUF file
    /// names none (Gemma 2: llama.cpp's 50 and 30); attention soft-capping
    /// exists only where this is Some.
    pub gguf_softcaps: Option<(f64, f64)>,
    /// Structure a config.json does not state (GGUF files show it by their
    /// tensors): Q/K/V biases, per-head Q/K norms, fused Q/K/V and gate/up.
    pub hf_qkv_bias: bool,
    pub hf_qk_norm: bool,
    pub fused: bool,
}

/// Llama's structure: the plain pre-norm decoder the others differ from.
const LLAMA: Traits = Traits {
    family: Family::Llama,
    gguf_names: &["llama"],
    hf_names: &["LlamaForCausalLM", "llama"],
    gguf_rope_layout: RopeLayout::Interleaved,
    gemma_block: false,
    q_scale: QScale::Scores,
    window: Window::Full {
        hf_every_layer: false,
        hf_refuse_use_sliding_window: false,
    },
    gguf_softcaps: None,
    hf_qkv_bias: false,
    hf_qk_norm: false,
    fused: false,
};

/// Qwen's sliding window is refused (its layer pattern differs per checkpoint).
const QWEN_WINDOW: Window = Window::Full {
    hf_every_layer: false,
    hf_refuse_use_sliding_window: true,
};

/// Every supported family, one row each (Mistral is Llama's structure
/// under its own names: its config.json window is used on every layer).
pub const FAMILIES: &[Traits] = &[
    LLAMA,
    Traits {
        gguf_names: &["mistral"],
        hf_names: &["MistralForCausalLM", "mistral"],
        window: Window::Full {
            hf_every_layer: true,
            hf_refuse_use_sliding_window: false,
        },
        ..LLAMA
    },
    Traits {
        family: Family::Qwen2,
        gguf_names: &["qwen2"],
        hf_names: &["Qwen2ForCausalLM", "qwen2"],
        gguf_rope_layout: RopeLayout::Half,
        window: QWEN_WINDOW,
        hf_qkv_bias: true,
        ..LLAMA
    },
    Traits {
        family: Family::Qwen3,
        gguf_names: &["qwen3"],
        hf_names: &["Qwen3ForCausalLM", "qwen3"],
        gguf_rope_layout: RopeLayout::Half,
        window: QWEN_WINDOW,
        hf_qk_norm: true,
        ..LLAMA
    },
    Traits {
        family: Family::Gemma2,
        gguf_names: &["gemma2"],
        hf_names: &["Gemma2ForCausalLM", "gemma2"],
        gguf_rope_layout: RopeLayout::Half,
        gemma_block: true,
        q_scale: QScale::Gemma { n_layers_27b: 46 },
        window: Window::Periodic {
            period: 2,
            default_window: Some(4096),
            local_theta: None,
            local_freq_scale_is_global: true,
        },
        gguf_softcaps: Some((50.0, 30.0)),
        ..LLAMA
    },
    Traits {
        family: Family::Gemma3,
        gguf_names: &["gemma3"],
        hf_names: &["Gemma3ForCausalLM", "gemma3_text"],
        gguf_rope_layout: RopeLayout::Half,
        gemma_block: true,
        q_scale: QScale::Gemma { n_layers_27b: 62 },
        window: Window::Periodic {
            period: 6,
            default_window: None,
            local_theta: Some(10000.0),
            local_freq_scale_is_global: false,
        },
        hf_qk_norm: true,
        ..LLAMA
    },
    // Phi-3 writes a window that llama.cpp does not use: full attention.
    Traits {
        family: Family::Phi3,
        gguf_names: &["phi3"],
        hf_names: &["Phi3ForCausalLM", "phi3"],
        gguf_rope_layout: RopeLayout::Half,
        q_scale: QScale::HeadDim,
        fused: true,
        ..LLAMA
    },
];

/// The supported names, from the table (error messages).
pub fn supported() -> String {
    let mut out: Vec<String> = Vec::new();
    for t in FAMILIES {
        let name = t.gguf_names.join("/");
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out.join(", ")
}

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
}

/// The row of a GGUF `general.architecture` name.
fn by_gguf_name(name: &str) -> Option<&'static Traits> {
    FAMILIES.iter().find(|t| t.gguf_names.contains(&name))
}

/// The row of a config.json `architectures` or `model_type` value.
fn by_hf_name(name: &str) -> Option<&'static Traits> {
    FAMILIES.iter().find(|t| t.hf_names.contains(&name))
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

/// Rotary position embedding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RopeSpec {
    /// Base of the global (full-attention) layers.
    pub theta: f64,
    /// Base of the sliding-window layers (Gemma: 10000).
    pub theta_local: f64,
    pub scaling: Option<Llama3Scaling>,
    /// Linear position scaling of the global layers (1 / factor; 1: none).
    pub freq_scale: f64,
    /// The same for the sliding-window layers (Gemma 2: the global one;
    /// Gemma 3: 1).
    pub freq_scale_local: f64,
    /// LongRoPE: the factor cos and sin are multiplied by (1: none).
    pub attn_factor: f64,
    /// LongRoPE: the original context; the long factors are used past it.
    pub original_context: Option<usize>,
    pub layout: RopeLayout,
    /// Rotated dimensions of each head (the rest pass through).
    pub dims: usize,
}

/// Self-attention.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttnSpec {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Biases on the Q, K and V projections (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Q is multiplied by this after RoPE (Gemma, Phi-3), and scores are
    /// not scaled; None: scores are scaled by 1/sqrt(head_dim) (Llama).
    pub q_prescale: Option<f32>,
    /// tanh soft-capping of attention scores (Gemma 2).
    pub softcap: Option<f32>,
    /// Sliding-window size of the local layers.
    pub sliding_window: Option<usize>,
    /// Per layer: local (sliding window, local RoPE base) or global.
    pub local_layers: Vec<bool>,
    /// Q, K and V in one tensor (Phi-3).
    pub fused_qkv: bool,
}

/// RMSNorm.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NormSpec {
    pub eps: f32,
    /// RMSNorm of the attention and feed-forward outputs before each
    /// residual add (Gemma).
    pub post_norms: bool,
    /// Norm weights are stored as w and used as 1 + w (Gemma checkpoints
    /// from Hugging Face; llama.cpp's converter bakes the 1 in).
    pub plus_one: bool,
}

/// The gated feed-forward network.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MlpSpec {
    pub intermediate_size: usize,
    pub activation: Activation,
    /// Gate and up in one tensor (Phi-3).
    pub fused_gate_up: bool,
}

/// The embedding and the output head.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeadSpec {
    pub tie_word_embeddings: bool,
    /// The embedding is multiplied by this (Gemma: sqrt(hidden), in f32).
    pub embed_scale: Option<f32>,
    /// tanh soft-capping of the final logits (Gemma 2).
    pub final_softcap: Option<f32>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchSpec {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub max_position_embeddings: usize,
    pub rope: RopeSpec,
    pub attn: AttnSpec,
    pub norm: NormSpec,
    pub mlp: MlpSpec,
    pub head: HeadSpec,
}

impl ArchSpec {
    /// The score scale the attention kernel applies: 1/sqrt(head_dim), or 1
    /// where Q was pre-scaled.
    pub fn attn_scale(&self) -> f32 {
        match self.attn.q_prescale {
            Some(_) => 1.0,
            None => 1.0 / (self.attn.head_dim as f32).sqrt(),
        }
    }

    /// Shape checks shared by every source.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::bad_file(path, m));
        if self.attn.n_heads == 0
            || self.attn.n_kv_heads == 0
            || self.attn.n_heads % self.attn.n_kv_heads != 0
        {
            return bad(format!(
                "attention heads ({}) must be a non-zero multiple of key-value heads ({})",
                self.attn.n_heads, self.attn.n_kv_heads
            ));
        }
        if self.attn.head_dim == 0 || self.attn.head_dim % 2 != 0 {
            return bad(format!(
                "head dimension {} must be even and non-zero",
                self.attn.head_dim
            ));
        }
        if self.rope.dims == 0 || self.rope.dims % 2 != 0 || self.rope.dims > self.attn.head_dim {
            return bad(format!(
                "rotary dimensions {} must be even, non-zero and at most the head dimension {}",
                self.rope.dims, self.attn.head_dim
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.mlp.intermediate_size),
            ("num_hidden_layers", self.n_layers),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 || v > 1 << 24 {
                return bad(format!("{name} = {v} is out of range"));
            }
        }
        if !(self.norm.eps > 0.0)
            || !(self.rope.theta > 0.0)
            || !(self.rope.theta_local > 0.0)
            || !(self.rope.freq_scale > 0.0)
        {
            return bad("rms_norm_eps, rope bases and rope scale must be positive".into());
        }
        for (name, cap) in [
            ("attention", self.attn.softcap),
            ("final", self.head.final_softcap),
        ] {
            if cap.is_some_and(|c| !(c > 0.0) || !c.is_finite()) {
                return bad(format!("{name} logit soft-cap must be positive"));
            }
        }
        if self.attn.sliding_window == Some(0) {
            return bad("sliding window must be at least 1".into());
        }
        if self.attn.local_layers.len() != self.n_layers {
            return bad("local layer pattern does not cover every layer".into());
        }
        Ok(())
    }

    /// llama.cpp's `set_swa_pattern(n)`: layer il is local iff il % n < n - 1.
    pub(crate) fn swa_pattern(n_layers: usize, n: usize) -> Vec<bool> {
        (0..n_layers).map(|il| n > 1 && il % n < n - 1).collect()
    }
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
            assert_eq!((s.rope.theta, s.rope.theta_local), (1e6, 1e4));
            assert_eq!((s.rope.freq_scale, s.rope.freq_scale_local), (0.125, 1.0));
            assert_eq!(
                s.attn.local_layers,
                vec![true, true, true, true, true, false]
            );
            assert_eq!(s.attn.sliding_window, Some(16));
        }
        let llama = hf(serde_json::json!({
            "model_type": "llama", "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}
        }))
        .unwrap();
        assert_eq!((llama.rope.theta, llama.rope.freq_scale), (500000.0, 1.0));
        assert!(llama.rope.scaling.is_none() && llama.attn.sliding_window.is_none());
    }

    /// Every family has a row; no name leads to two rows; the supported
    /// list in errors is the table's.
    #[test]
    fn the_family_table_is_whole_and_unambiguous() {
        for f in [
            Family::Llama,
            Family::Qwen2,
            Family::Qwen3,
            Family::Gemma2,
            Family::Gemma3,
            Family::Phi3,
        ] {
            assert!(FAMILIES.iter().any(|t| t.family == f), "{f:?} has no row");
            assert_eq!(by_gguf_name(f.name()).map(|t| t.family), Some(f));
        }
        for names in [
            FAMILIES
                .iter()
                .flat_map(|t| t.gguf_names)
                .collect::<Vec<_>>(),
            FAMILIES.iter().flat_map(|t| t.hf_names).collect(),
        ] {
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "a name in two rows: {names:?}");
        }
        let e = hf(serde_json::json!({"model_type": "falcon"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&supported()) && e.contains("mistral, qwen2"),
            "{e}"
        );
    }

    /// A window only Mistral's modeling code uses; Llama's ignores the key.
    #[test]
    fn sliding_window_only_for_mistral() {
        let m = hf(serde_json::json!({"model_type": "mistral", "sliding_window": 32})).unwrap();
        assert_eq!(m.attn.sliding_window, Some(32));
        assert!(m.attn.local_layers.iter().all(|&l| l));
        let l = hf(serde_json::json!({"model_type": "llama", "sliding_window": 32})).unwrap();
        assert_eq!(l.attn.sliding_window, None);
        let e = hf(serde_json::json!({"model_type": "qwen2", "sliding_window": 32, "use_sliding_window": true}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use_sliding_window"), "{e}");
    }
}
