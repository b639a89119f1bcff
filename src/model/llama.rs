//! The Llama forward pass (Touvron et al. 2023; Llama 3 rope scaling), read
//! top to bottom: embed, then per layer x += attn(norm(x)); x += mlp(norm(x)),
//! then a final norm and the output projection.

use super::config::LlamaConfig;
use super::layers::{KvCache, Mlp, RmsNorm, Rotary, SelfAttention};
use super::weights::{Matrix, Part, WeightSource};
use crate::error::{Error, Result};
use crate::kernels::attention::AttnShape;
use crate::kernels::rope;
use crate::ops;
use candle_core::{Device, Tensor};

pub struct Block {
    pub attn_norm: RmsNorm,
    pub attn: SelfAttention,
    pub ffn_norm: RmsNorm,
    pub mlp: Mlp,
}

pub struct Llama {
    pub config: LlamaConfig,
    pub embed: Matrix,
    pub blocks: Vec<Block>,
    pub norm: RmsNorm,
    pub lm_head: Matrix,
    pub rotary: Rotary,
    pub device: Device,
}

/// Which positions of a sequence want logits back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    None,
    Last,
    All,
}

/// New tokens of one sequence in a batched forward call.
pub struct SeqStep<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub logits: Logits,
}

impl Llama {
    pub fn load(
        src: &dyn WeightSource,
        config: LlamaConfig,
        rope_factors: Option<&[f32]>,
        dev: &Device,
    ) -> Result<Self> {
        let c = &config;
        let (h, kv) = (c.hidden_size, c.n_kv_heads * c.head_dim);
        let q_dim = c.n_heads * c.head_dim;
        let embed = src.matrix(Part::Embed, c.vocab_size, h, dev)?;
        let lm_head = if src.has(Part::Output)? {
            src.matrix(Part::Output, c.vocab_size, h, dev)?
        } else if c.tie_word_embeddings || src.path().extension().is_some_and(|e| e == "gguf") {
            embed.clone()
        } else {
            return Err(Error::bad_file(
                src.path(),
                format!(
                    "missing tensor '{}' (and tie_word_embeddings is false)",
                    src.name_of(Part::Output)
                ),
            ));
        };
        let norm = |p: Part| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: src.vector(p, h, dev)?,
                eps: c.rms_norm_eps,
            })
        };
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            blocks.push(Block {
                attn_norm: norm(Part::AttnNorm(i))?,
                attn: SelfAttention::new(
                    &src.matrix(Part::Q(i), q_dim, h, dev)?,
                    &src.matrix(Part::K(i), kv, h, dev)?,
                    &src.matrix(Part::V(i), kv, h, dev)?,
                    src.matrix(Part::O(i), h, q_dim, dev)?,
                    AttnShape {
                        n_heads: c.n_heads,
                        n_kv_heads: c.n_kv_heads,
                        head_dim: c.head_dim,
                    },
                )?,
                ffn_norm: norm(Part::FfnNorm(i))?,
                mlp: Mlp::new(
                    &src.matrix(Part::Gate(i), c.intermediate_size, h, dev)?,
                    &src.matrix(Part::Up(i), c.intermediate_size, h, dev)?,
                    src.matrix(Part::Down(i), h, c.intermediate_size, dev)?,
                )?,
            });
        }
        let freqs = rope::inv_freqs(
            c.head_dim,
            c.rope_theta,
            c.rope_scaling.as_ref(),
            rope_factors,
        );
        let (cos, sin) = rope::tables(&freqs, c.max_position_embeddings);
        let half = c.head_dim / 2;
        let rotary = Rotary {
            cos: Tensor::from_vec(cos, (c.max_position_embeddings, half), dev)?,
            sin: Tensor::from_vec(sin, (c.max_position_embeddings, half), dev)?,
            head_dim: c.head_dim,
            layout: c.rope_layout,
            max_positions: c.max_position_embeddings,
        };
        Ok(Llama {
            norm: norm(Part::OutputNorm)?,
            config,
            embed,
            blocks,
            lm_head,
            rotary,
            device: dev.clone(),
        })
    }

    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.config;
        KvCache::new(
            c.n_layers,
            capacity,
            c.n_kv_heads * c.head_dim,
            &self.device,
        )
    }

    /// Run new tokens of several sequences together. Returns, per sequence,
    /// the logits it asked for ([rows, vocab], or None).
    pub fn forward(&self, batch: &mut [SeqStep]) -> Result<Vec<Option<Tensor>>> {
        let mut ids = Vec::new();
        for s in batch.iter() {
            if s.tokens.is_empty() {
                return Err(Error::Input("a sequence step has no tokens".into()));
            }
            if s.cache.len + s.tokens.len() > s.cache.capacity.min(self.rotary.max_positions) {
                return Err(Error::Input(format!(
                    "sequence of {} tokens exceeds the context ({} positions)",
                    s.cache.len + s.tokens.len(),
                    s.cache.capacity.min(self.rotary.max_positions)
                )));
            }
            ids.extend_from_slice(s.tokens);
        }
        let n = ids.len();
        let mut x = self
            .embed
            .gather(&Tensor::from_vec(ids, n, &self.device)?)?;

        let wants: Vec<Logits> = batch.iter().map(|s| s.logits).collect();
        let mut segments = Vec::with_capacity(batch.len());
        let mut off = 0;
        for s in batch.iter_mut() {
            segments.push((off, s.tokens.len(), &mut *s.cache));
            off += s.tokens.len();
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let a = b
                .attn
                .forward(&b.attn_norm.forward(&x)?, &self.rotary, i, &mut segments)?;
            x = ops::add(&x, &a)?;
            let m = b.mlp.forward(&b.ffn_norm.forward(&x)?)?;
            x = ops::add(&x, &m)?;
        }
        let mut out = Vec::with_capacity(segments.len());
        for ((off, len, cache), s) in segments.into_iter().zip(wants) {
            cache.len += len;
            out.push(match s {
                Logits::None => None,
                Logits::Last => Some(self.logits(&x.narrow(0, off + len - 1, 1)?)?),
                Logits::All => Some(self.logits(&x.narrow(0, off, len)?)?),
            });
        }
        Ok(out)
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(&self.norm.forward(&x.contiguous()?)?)
    }
}
