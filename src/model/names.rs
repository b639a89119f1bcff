//! Tensor names: the parts of a checkpoint, named as GGUF files (llama.cpp's
//! `LLM_TENSOR_*`) and Hugging Face checkpoints (per family) write them.

use super::arch::Family;

/// The parts of a checkpoint the forward pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Embed,
    Output,
    OutputNorm,
    AttnNorm(usize),
    Q(usize),
    K(usize),
    V(usize),
    /// Q, K and V in one matrix (Phi-3).
    Qkv(usize),
    QBias(usize),
    KBias(usize),
    VBias(usize),
    /// Per-head norms of Q and K before RoPE (Qwen3, Gemma 3).
    QNorm(usize),
    KNorm(usize),
    O(usize),
    /// The norm of the attention output before its residual add (Gemma).
    PostAttnNorm(usize),
    FfnNorm(usize),
    Gate(usize),
    Up(usize),
    /// Gate and up in one matrix, gate rows first (Phi-3).
    GateUp(usize),
    Down(usize),
    /// The norm of the feed-forward output before its residual add (Gemma).
    PostFfnNorm(usize),
    /// GGUF `rope_freqs.weight`: per-frequency divisors (Llama 3 scaling baked in).
    RopeFreqs,
    /// Phi-3 LongRoPE divisors, for long and short contexts.
    RopeFactorsLong,
    RopeFactorsShort,
}

pub fn gguf(part: Part) -> String {
    let b = |i: usize, s: &str| format!("blk.{i}.{s}");
    match part {
        Part::Embed => "token_embd.weight".into(),
        Part::Output => "output.weight".into(),
        Part::OutputNorm => "output_norm.weight".into(),
        Part::AttnNorm(i) => b(i, "attn_norm.weight"),
        Part::Q(i) => b(i, "attn_q.weight"),
        Part::K(i) => b(i, "attn_k.weight"),
        Part::V(i) => b(i, "attn_v.weight"),
        Part::Qkv(i) => b(i, "attn_qkv.weight"),
        Part::QBias(i) => b(i, "attn_q.bias"),
        Part::KBias(i) => b(i, "attn_k.bias"),
        Part::VBias(i) => b(i, "attn_v.bias"),
        Part::QNorm(i) => b(i, "attn_q_norm.weight"),
        Part::KNorm(i) => b(i, "attn_k_norm.weight"),
        Part::O(i) => b(i, "attn_output.weight"),
        Part::PostAttnNorm(i) => b(i, "post_attention_norm.weight"),
        Part::FfnNorm(i) => b(i, "ffn_norm.weight"),
        Part::Gate(i) => b(i, "ffn_gate.weight"),
        Part::Up(i) | Part::GateUp(i) => b(i, "ffn_up.weight"),
        Part::Down(i) => b(i, "ffn_down.weight"),
        Part::PostFfnNorm(i) => b(i, "post_ffw_norm.weight"),
        Part::RopeFreqs => "rope_freqs.weight".into(),
        Part::RopeFactorsLong => "rope_factors_long.weight".into(),
        Part::RopeFactorsShort => "rope_factors_short.weight".into(),
    }
}

pub fn hf(part: Part, family: Family) -> String {
    let l = |i: usize, s: &str| format!("model.layers.{i}.{s}");
    let gemma = matches!(family, Family::Gemma2 | Family::Gemma3);
    match part {
        Part::Embed => "model.embed_tokens.weight".into(),
        Part::Output => "lm_head.weight".into(),
        Part::OutputNorm => "model.norm.weight".into(),
        Part::AttnNorm(i) => l(i, "input_layernorm.weight"),
        Part::Q(i) => l(i, "self_attn.q_proj.weight"),
        Part::K(i) => l(i, "self_attn.k_proj.weight"),
        Part::V(i) => l(i, "self_attn.v_proj.weight"),
        Part::Qkv(i) => l(i, "self_attn.qkv_proj.weight"),
        Part::QBias(i) => l(i, "self_attn.q_proj.bias"),
        Part::KBias(i) => l(i, "self_attn.k_proj.bias"),
        Part::VBias(i) => l(i, "self_attn.v_proj.bias"),
        Part::QNorm(i) => l(i, "self_attn.q_norm.weight"),
        Part::KNorm(i) => l(i, "self_attn.k_norm.weight"),
        Part::O(i) => l(i, "self_attn.o_proj.weight"),
        // Gemma's post_attention_layernorm is the attention output's norm;
        // everywhere else it is the norm before the feed-forward.
        Part::PostAttnNorm(i) => l(i, "post_attention_layernorm.weight"),
        Part::FfnNorm(i) if gemma => l(i, "pre_feedforward_layernorm.weight"),
        Part::FfnNorm(i) => l(i, "post_attention_layernorm.weight"),
        Part::Gate(i) => l(i, "mlp.gate_proj.weight"),
        Part::Up(i) => l(i, "mlp.up_proj.weight"),
        Part::GateUp(i) => l(i, "mlp.gate_up_proj.weight"),
        Part::Down(i) => l(i, "mlp.down_proj.weight"),
        Part::PostFfnNorm(i) => l(i, "post_feedforward_layernorm.weight"),
        // Hugging Face checkpoints carry these in config.json.
        Part::RopeFreqs => "rope_freqs.weight".into(),
        Part::RopeFactorsLong => "rope_factors_long.weight".into(),
        Part::RopeFactorsShort => "rope_factors_short.weight".into(),
    }
}
