//! The Llama configuration, parsed once into a typed struct: from GGUF
//! metadata, or from a Hugging Face config.json through a serde mirror.

use crate::formats::gguf::GgufFile;
use crate::error::{Error, Result};
use crate::kernels::rope::{Llama3Scaling, RopeLayout};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub rope_layout: RopeLayout,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
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
        if !(self.rms_norm_eps > 0.0) || !(self.rope_theta > 0.0) {
            return bad("rms_norm_eps and rope_theta must be positive".into());
        }
        Ok(())
    }

    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::bad_file(
                &g.path,
                format!("architecture '{arch}' is not supported (supported: llama)"),
            ));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let u = |s: &str| g.get_u64(&k(s)).map(|v| v as usize);
        let n_heads = u("attention.head_count")?;
        let hidden = u("embedding_length")?;
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| Error::bad_file(&g.path, "missing tensor 'token_embd.weight'"))?;
        let vocab = match g.metadata.get(&k("vocab_size")).and_then(|v| v.as_u64()) {
            Some(v) => v as usize,
            None => *embd.dims.get(1).unwrap_or(&0),
        };
        let head_dim = match g
            .metadata
            .get(&k("rope.dimension_count"))
            .and_then(|v| v.as_u64())
        {
            Some(d) => d as usize,
            None if n_heads > 0 => hidden / n_heads,
            None => 0,
        };
        let rope_scaling = match g
            .metadata
            .get(&k("rope.scaling.type"))
            .and_then(|v| v.as_str())
        {
            None | Some("none") => None,
            Some(t) => {
                return Err(Error::bad_file(
                    &g.path,
                    format!("rope scaling '{t}' is not supported"),
                ));
            }
        };
        let cfg = LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            n_layers: u("block_count")?,
            n_heads,
            n_kv_heads: match g.metadata.get(&k("attention.head_count_kv")) {
                Some(v) => v.as_u64().unwrap_or(0) as usize,
                None => n_heads,
            },
            head_dim,
            rms_norm_eps: g.get_f64(&k("attention.layer_norm_rms_epsilon"))? as f32,
            rope_theta: match g.metadata.get(&k("rope.freq_base")) {
                Some(v) => v.as_f64().unwrap_or(0.0),
                None => 10000.0,
            },
            rope_scaling,
            rope_layout: RopeLayout::Interleaved,
            max_position_embeddings: u("context_length")?,
            tie_word_embeddings: g.tensor("output.weight").is_none(),
        };
        cfg.validate(&g.path)?;
        Ok(cfg)
    }

    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let c: HfConfig = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("invalid config.json: {e}")))?;
        if let Some(archs) = &c.architectures {
            if !archs.iter().any(|a| a == "LlamaForCausalLM") {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "architectures {archs:?} are not supported (supported: LlamaForCausalLM)"
                    ),
                ));
            }
        }
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
                            format!("rope_scaling type '{other}' is not supported"),
                        ))
                    }
                }
            }
        };
        let n_kv = c.num_key_value_heads.unwrap_or(c.num_attention_heads);
        let cfg = LlamaConfig {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            n_layers: c.num_hidden_layers,
            n_heads: c.num_attention_heads,
            n_kv_heads: n_kv,
            head_dim: c.head_dim.unwrap_or(if c.num_attention_heads > 0 {
                c.hidden_size / c.num_attention_heads
            } else {
                0
            }),
            rms_norm_eps: c.rms_norm_eps as f32,
            rope_theta: c.rope_theta.unwrap_or(10000.0),
            rope_scaling,
            rope_layout: RopeLayout::Half,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }
}

/// Mirror of the config.json fields we read.
#[derive(Deserialize)]
struct HfConfig {
    architectures: Option<Vec<String>>,
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
}

#[derive(Deserialize)]
struct HfRopeScaling {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}
