//! The Llama forward pass (Touvron et al. 2023; Llama 3 rope scaling), read
//! top to bottom: embed, then per layer x += attn(norm(x)); x += mlp(norm(x)),
//! then a final norm and the output projection.

use super::config::LlamaConfig;
use super::layers::{KvCache, Mlp, RmsNorm, Rotary, SelfAttention};
use super::weights::{Matrix, Part, WeightReader, WeightSource};
use super::LoadOptions;
use crate::error::{Error, Result};
use crate::kernels::attention::AttnShape;
use crate::kernels::{rope, Isa};
use crate::ops;
use candle_core::{Device, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// The CPU kernels' instruction set (same bits on every ISA; set by
    /// `load` to `kernels::default_isa()`).
    pub isa: Isa,
    /// Bytes of the weights on the device.
    weight_bytes: u64,
    /// Bytes held by this model's live KV caches.
    live_cache_bytes: Arc<AtomicU64>,
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
    /// Build the model from `src`. Returns it and the tensors of the file it
    /// did not use (an error instead unless `opts.allow_extra_tensors`).
    pub fn load(
        src: &dyn WeightSource,
        config: LlamaConfig,
        dev: &Device,
        opts: &LoadOptions,
    ) -> Result<(Self, Vec<String>)> {
        let isa = crate::kernels::default_isa().map_err(Error::Input)?;
        crate::kernels::fp_env::check().map_err(Error::Input)?;
        let w = WeightReader::new(src, dev);
        let c = &config;
        let (h, kv) = (c.hidden_size, c.n_kv_heads * c.head_dim);
        let q_dim = c.n_heads * c.head_dim;
        let embed = w.matrix(Part::Embed, c.vocab_size, h)?;
        let separate_head = w.has(Part::Output)?;
        let lm_head = if separate_head {
            w.matrix(Part::Output, c.vocab_size, h)?
        } else if c.tie_word_embeddings || src.path().extension().is_some_and(|e| e == "gguf") {
            embed.clone()
        } else {
            return Err(Error::bad_file(
                src.path(),
                format!(
                    "missing tensor '{}' (and tie_word_embeddings is false)",
                    w.name_of(Part::Output)
                ),
            ));
        };
        let norm = |p: Part| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: w.vector(p, h)?,
                eps: c.rms_norm_eps,
            })
        };
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            blocks.push(Block {
                attn_norm: norm(Part::AttnNorm(i))?,
                attn: SelfAttention::new(
                    &w.matrix(Part::Q(i), q_dim, h)?,
                    &w.matrix(Part::K(i), kv, h)?,
                    &w.matrix(Part::V(i), kv, h)?,
                    w.matrix(Part::O(i), h, q_dim)?,
                    AttnShape {
                        n_heads: c.n_heads,
                        n_kv_heads: c.n_kv_heads,
                        head_dim: c.head_dim,
                    },
                )?,
                ffn_norm: norm(Part::FfnNorm(i))?,
                mlp: Mlp::new(
                    &w.matrix(Part::Gate(i), c.intermediate_size, h)?,
                    &w.matrix(Part::Up(i), c.intermediate_size, h)?,
                    w.matrix(Part::Down(i), h, c.intermediate_size)?,
                )?,
            });
        }
        // GGUF files of Llama 3 carry the rope scaling as per-frequency divisors.
        let factors = if w.has(Part::RopeFreqs)? {
            Some(w.host_vector(Part::RopeFreqs, c.head_dim / 2)?)
        } else {
            None
        };
        let freqs = rope::inv_freqs(
            c.head_dim,
            c.rope_theta,
            c.rope_scaling.as_ref(),
            factors.as_deref(),
        );
        let rotary = Rotary::new(
            freqs,
            c.head_dim,
            c.rope_layout,
            c.max_position_embeddings,
            dev,
        )?;
        let norm = norm(Part::OutputNorm)?;
        let ignored = w.check_unused(opts.allow_extra_tensors)?;
        let weight_bytes = embed.bytes()
            + if separate_head { lm_head.bytes() } else { 0 }
            + blocks
                .iter()
                .map(|b| {
                    b.attn.qkv.bytes() + b.attn.o.bytes() + b.mlp.gate_up.bytes() + b.mlp.down.bytes()
                })
                .sum::<u64>();
        Ok((
            Llama {
                norm,
                config,
                embed,
                blocks,
                lm_head,
                rotary,
                device: dev.clone(),
                isa,
                weight_bytes,
                live_cache_bytes: Arc::new(AtomicU64::new(0)),
            },
            ignored,
        ))
    }

    /// Memory a model needs beside its `weight_bytes` when it is loaded: the
    /// first RoPE tables and a tenth of the weights for activations and
    /// buffers. KV caches are checked when they are made (`new_cache`).
    pub fn load_overhead_bytes(c: &LlamaConfig, weight_bytes: u64) -> u64 {
        Rotary::table_bytes(c.head_dim, c.max_position_embeddings.min(1024)) + weight_bytes / 10
    }

    /// A KV cache for `capacity` positions; a Resource error if it would not
    /// fit in memory (with $INFER_EVAL_MEMORY_LIMIT: on top of the weights,
    /// tables and live caches; otherwise within MemAvailable now).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.config;
        let kv_dim = c.n_kv_heads * c.head_dim;
        let bytes = KvCache::bytes_for(c.n_layers, capacity, kv_dim);
        // Count the bytes first, so two threads making caches at once cannot
        // both pass the check; given back below if the check fails.
        let live = self.live_cache_bytes.fetch_add(bytes, Ordering::Relaxed);
        let refuse = |e: Error| {
            self.live_cache_bytes.fetch_sub(bytes, Ordering::Relaxed);
            Err(e)
        };
        let what = || format!("a KV cache for {capacity} positions");
        match crate::model::env_memory_limit() {
            Err(e) => return refuse(e),
            Ok(Some(limit)) => {
                let held = self.weight_bytes
                    + Rotary::table_bytes(c.head_dim, self.rotary.positions())
                    + live;
                if held + bytes > limit {
                    return refuse(Error::Resource(format!(
                        "{}: needs {:.2} GiB on top of the {:.2} GiB in use (weights, tables, other caches), over INFER_EVAL_MEMORY_LIMIT = {:.2} GiB",
                        what(),
                        crate::model::gib(bytes),
                        crate::model::gib(held),
                        crate::model::gib(limit)
                    )));
                }
            }
            // MemAvailable does not yet see caches that were made but not
            // written (zeroed pages are mapped lazily): count them too.
            Ok(None) => {
                if let Err(e) = crate::model::check_memory(bytes + live, || {
                    format!("{} (and the {:.2} GiB of caches already made)", what(), crate::model::gib(live))
                }) {
                    return refuse(e);
                }
            }
        }
        match KvCache::new(c.n_layers, capacity, kv_dim, &self.device) {
            Ok(mut cache) => {
                cache.account(&self.live_cache_bytes, bytes);
                Ok(cache)
            }
            Err(e) => refuse(e),
        }
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
                return Err(Error::Resource(format!(
                    "sequence of {} tokens exceeds the context ({} positions)",
                    s.cache.len + s.tokens.len(),
                    s.cache.capacity.min(self.rotary.max_positions)
                )));
            }
            ids.extend_from_slice(s.tokens);
        }
        crate::kernels::fp_env::check().map_err(Error::Input)?;
        let end = batch
            .iter()
            .map(|s| s.cache.len + s.tokens.len())
            .max()
            .unwrap_or(0);
        self.rotary.ensure(end)?;
        let isa = self.isa;
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
            let a = b.attn.forward(
                &b.attn_norm.forward(&x, isa)?,
                &self.rotary,
                i,
                &mut segments,
                isa,
            )?;
            x = ops::add(&x, &a, isa)?;
            let m = b.mlp.forward(&b.ffn_norm.forward(&x, isa)?, isa)?;
            x = ops::add(&x, &m, isa)?;
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
        self.lm_head
            .forward(&self.norm.forward(&x.contiguous()?, self.isa)?, self.isa)
    }
}
