//! The forward pass of every supported family, read top to bottom: embed
//! (times a scale for Gemma), then per layer x += post_norm(attn(norm(x)));
//! x += post_norm(mlp(norm(x))) (the post norms only where the family has
//! them), then a final norm, the output projection and, for Gemma 2, a soft
//! cap. What differs between families is data (`ArchSpec`), not code.

use super::arch::ArchSpec;
use super::attention::{KvCache, SelfAttention};
use super::layers::{scale, softcap, Mlp, RmsNorm, Rotary, Stacked};
use super::names::Part;
use super::weights::{Matrix, WeightReader, WeightSource};
use super::{LoadOptions, Tap};
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
    pub post_attn_norm: Option<RmsNorm>,
    pub ffn_norm: RmsNorm,
    pub mlp: Mlp,
    pub post_ffn_norm: Option<RmsNorm>,
    /// Sliding-window layer: its RoPE is `rotary_local`.
    pub local: bool,
}

pub struct Transformer {
    pub config: ArchSpec,
    pub embed: Matrix,
    pub blocks: Vec<Block>,
    pub norm: RmsNorm,
    pub lm_head: Matrix,
    /// RoPE of the global layers, and of the local ones where their base differs.
    pub rotary: Rotary,
    pub rotary_local: Option<Rotary>,
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
    /// The last n positions of this step (log-likelihoods need only the
    /// continuation's; the output head is the largest product of all).
    Tail(usize),
}

/// New tokens of one sequence in a batched forward call.
pub struct SeqStep<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub logits: Logits,
}

impl Transformer {
    /// Build the model from `src`. Returns it and the tensors of the file it
    /// did not use (an error instead unless `opts.allow_extra_tensors`).
    pub fn load(
        src: &dyn WeightSource,
        config: ArchSpec,
        dev: &Device,
        opts: &LoadOptions,
    ) -> Result<(Self, Vec<String>)> {
        let isa = crate::kernels::default_isa().map_err(Error::Input)?;
        crate::kernels::fp_env::check().map_err(Error::Input)?;
        let w = WeightReader::new(src, config.family, dev);
        let c = &config;
        let (h, kv) = (c.hidden_size, c.attn.n_kv_heads * c.attn.head_dim);
        let q_dim = c.attn.n_heads * c.attn.head_dim;
        let embed = w.matrix(Part::Embed, c.vocab_size, h)?;
        let separate_head = w.has(Part::Output)?;
        let lm_head = if separate_head {
            w.matrix(Part::Output, c.vocab_size, h)?
        } else if c.head.tie_word_embeddings || src.path().extension().is_some_and(|e| e == "gguf")
        {
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
        let norm_of = |p: Part, len: usize| -> Result<RmsNorm> {
            let mut v = w.host_vector(p, len)?;
            if c.norm.plus_one {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            Ok(RmsNorm {
                weight: Tensor::from_vec(v, len, dev)?,
                eps: c.norm.eps,
            })
        };
        let norm = |p: Part| norm_of(p, h);
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let qkv = if c.attn.fused_qkv {
                Stacked::one(w.matrix(Part::Qkv(i), q_dim + 2 * kv, h)?)
            } else {
                Stacked::new(&[
                    &w.matrix(Part::Q(i), q_dim, h)?,
                    &w.matrix(Part::K(i), kv, h)?,
                    &w.matrix(Part::V(i), kv, h)?,
                ])?
            };
            let local = c.attn.local_layers[i];
            let shape = AttnShape {
                scale: c.attn_scale(),
                softcap: c.attn.softcap,
                window: if local { c.attn.sliding_window } else { None },
                ..AttnShape::causal(c.attn.n_heads, c.attn.n_kv_heads, c.attn.head_dim)
            };
            let mut attn = SelfAttention::new(qkv, w.matrix(Part::O(i), h, q_dim)?, shape);
            if c.attn.qkv_bias {
                let mut b = w.host_vector(Part::QBias(i), q_dim)?;
                b.extend(w.host_vector(Part::KBias(i), kv)?);
                b.extend(w.host_vector(Part::VBias(i), kv)?);
                attn.qkv_bias = Some(Tensor::from_vec(b, q_dim + 2 * kv, dev)?);
            }
            if c.attn.qk_norm {
                attn.q_norm = Some(norm_of(Part::QNorm(i), c.attn.head_dim)?);
                attn.k_norm = Some(norm_of(Part::KNorm(i), c.attn.head_dim)?);
            }
            attn.q_prescale = c.attn.q_prescale;
            let gate_up = if c.mlp.fused_gate_up {
                Stacked::one(w.matrix(Part::GateUp(i), 2 * c.mlp.intermediate_size, h)?)
            } else {
                Stacked::new(&[
                    &w.matrix(Part::Gate(i), c.mlp.intermediate_size, h)?,
                    &w.matrix(Part::Up(i), c.mlp.intermediate_size, h)?,
                ])?
            };
            blocks.push(Block {
                attn_norm: norm(Part::AttnNorm(i))?,
                attn,
                post_attn_norm: if c.norm.post_norms {
                    Some(norm(Part::PostAttnNorm(i))?)
                } else {
                    None
                },
                ffn_norm: norm(Part::FfnNorm(i))?,
                mlp: Mlp::new(
                    gate_up,
                    w.matrix(Part::Down(i), h, c.mlp.intermediate_size)?,
                    c.mlp.activation,
                ),
                post_ffn_norm: if c.norm.post_norms {
                    Some(norm(Part::PostFfnNorm(i))?)
                } else {
                    None
                },
                local,
            });
        }
        let (rotary, rotary_local) = Self::rotaries(&w, c, dev)?;
        let norm = norm(Part::OutputNorm)?;
        let ignored = w.check_unused(opts.allow_extra_tensors)?;
        let weight_bytes = embed.bytes()
            + if separate_head { lm_head.bytes() } else { 0 }
            + blocks
                .iter()
                .map(|b| {
                    b.attn.qkv.bytes()
                        + b.attn.o.bytes()
                        + b.mlp.gate_up.bytes()
                        + b.mlp.down.bytes()
                })
                .sum::<u64>();
        Ok((
            Transformer {
                norm,
                config,
                embed,
                blocks,
                lm_head,
                rotary,
                rotary_local,
                device: dev.clone(),
                isa,
                weight_bytes,
                live_cache_bytes: Arc::new(AtomicU64::new(0)),
            },
            ignored,
        ))
    }

    /// The RoPE tables: the global layers', and the local layers' where
    /// their base differs (Gemma 3). Frequencies per docs/DETERMINISM.md §5.
    fn rotaries(w: &WeightReader, c: &ArchSpec, dev: &Device) -> Result<(Rotary, Option<Rotary>)> {
        let half = c.rope.dims / 2;
        // GGUF divisors: Llama 3's rope_freqs, or Phi-3's LongRoPE factors.
        // LongRoPE: the short divisors, which both references use within the
        // original context (Hugging Face per sequence, llama.cpp by its
        // configured context, 512 in llama-cpp-python by default), and no
        // position past it: one table per model file, whatever the request
        // (docs/DETERMINISM.md §5).
        let mut max_positions = c.max_position_embeddings;
        let factors = if w.has(Part::RopeFreqs)? {
            Some(w.host_vector(Part::RopeFreqs, half)?)
        } else if w.has(Part::RopeFactorsLong)? {
            if let Some(o) = c.rope.original_context {
                max_positions = max_positions.min(o);
            }
            Some(w.host_vector(Part::RopeFactorsShort, half)?)
        } else {
            None
        };
        let freqs = |theta: f64, scale: f64, factors: Option<&[f32]>| -> Vec<f64> {
            let mut f = rope::inv_freqs(c.rope.dims, theta, c.rope.scaling.as_ref(), factors);
            if scale != 1.0 {
                f.iter_mut().for_each(|v| *v *= scale);
            }
            f
        };
        let global = Rotary::new(
            freqs(c.rope.theta, c.rope.freq_scale, factors.as_deref()),
            c.rope.attn_factor,
            c.attn.head_dim,
            c.rope.layout,
            max_positions,
            dev,
        )?;
        let local = if c.attn.local_layers.iter().any(|&l| l)
            && (c.rope.theta_local != c.rope.theta || c.rope.freq_scale_local != c.rope.freq_scale)
        {
            Some(Rotary::new(
                freqs(c.rope.theta_local, c.rope.freq_scale_local, None),
                1.0,
                c.attn.head_dim,
                c.rope.layout,
                max_positions,
                dev,
            )?)
        } else {
            None
        };
        Ok((global, local))
    }

    /// Bytes of the RoPE tables now.
    fn table_bytes(&self) -> u64 {
        let d = self.config.rope.dims;
        Rotary::table_bytes(d, self.rotary.positions())
            + self
                .rotary_local
                .as_ref()
                .map_or(0, |r| Rotary::table_bytes(d, r.positions()))
    }

    /// Memory a model needs beside its `weight_bytes` when it is loaded: the
    /// first RoPE tables and a tenth of the weights for activations and
    /// buffers. KV caches are checked when they are made (`new_cache`).
    pub fn load_overhead_bytes(c: &ArchSpec, weight_bytes: u64) -> u64 {
        Rotary::table_bytes(c.rope.dims, c.max_position_embeddings.min(1024)) * 2
            + weight_bytes / 10
    }

    /// A KV cache for `capacity` positions; a Resource error if it would not
    /// fit in memory (with $INFER_EVAL_MEMORY_LIMIT: on top of the weights,
    /// tables and live caches; otherwise within MemAvailable now).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.config;
        let kv_dim = c.attn.n_kv_heads * c.attn.head_dim;
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
                let held = self.weight_bytes + self.table_bytes() + live;
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
                    format!(
                        "{} (and the {:.2} GiB of caches already made)",
                        what(),
                        crate::model::gib(live)
                    )
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
        self.forward_tapped(batch, &mut |_, _, _| Ok(()))
    }

    /// `forward`, handing every named intermediate (`TAP_ORDER`) to `tap`.
    pub fn forward_tapped(
        &self,
        batch: &mut [SeqStep],
        tap: &mut Tap,
    ) -> Result<Vec<Option<Tensor>>> {
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
        if let Some(r) = &self.rotary_local {
            r.ensure(end)?;
        }
        let isa = self.isa;
        let n = ids.len();
        let mut x = self
            .embed
            .gather(&Tensor::from_vec(ids, n, &self.device)?)?;
        if let Some(s) = self.config.head.embed_scale {
            x = scale(&x, s, isa)?;
        }
        tap(None, "inp_embd", &x)?;

        let wants: Vec<Logits> = batch.iter().map(|s| s.logits).collect();
        let mut segments = Vec::with_capacity(batch.len());
        let mut off = 0;
        for s in batch.iter_mut() {
            segments.push((off, s.tokens.len(), &mut *s.cache));
            off += s.tokens.len();
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let rotary = match (&self.rotary_local, b.local) {
                (Some(r), true) => r,
                _ => &self.rotary,
            };
            let l = Some(i);
            let h = b.attn_norm.forward(&x, isa)?;
            tap(l, "attn_norm", &h)?;
            let mut a = b.attn.forward(&h, rotary, i, &mut segments, isa, tap)?;
            tap(l, "attn_out", &a)?;
            if let Some(n) = &b.post_attn_norm {
                a = n.forward(&a, isa)?;
                tap(l, "attn_post_norm", &a)?;
            }
            x = ops::add(&x, &a, isa)?;
            tap(l, "ffn_inp", &x)?;
            let h = b.ffn_norm.forward(&x, isa)?;
            tap(l, "ffn_norm", &h)?;
            let mut m = b.mlp.forward_tapped(&h, isa, l, tap)?;
            tap(l, "ffn_out", &m)?;
            if let Some(n) = &b.post_ffn_norm {
                m = n.forward(&m, isa)?;
                tap(l, "ffn_post_norm", &m)?;
            }
            x = ops::add(&x, &m, isa)?;
            tap(l, "l_out", &x)?;
        }
        let mut out = Vec::with_capacity(segments.len());
        for ((off, len, cache), s) in segments.into_iter().zip(wants) {
            cache.len += len;
            out.push(match s {
                Logits::None => None,
                Logits::Last => Some(self.logits(&x.narrow(0, off + len - 1, 1)?)?),
                Logits::All => Some(self.logits_tapped(&x.narrow(0, off, len)?, tap)?),
                Logits::Tail(0) => None,
                Logits::Tail(n) => {
                    let n = n.min(len);
                    Some(self.logits(&x.narrow(0, off + len - n, n)?)?)
                }
            });
        }
        Ok(out)
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.logits_tapped(x, &mut |_, _, _| Ok(()))
    }

    fn logits_tapped(&self, x: &Tensor, tap: &mut Tap) -> Result<Tensor> {
        let n = self.norm.forward(&x.contiguous()?, self.isa)?;
        tap(None, "result_norm", &n)?;
        let l = self.lm_head.forward(&n, self.isa)?;
        let l = match self.config.head.final_softcap {
            Some(cap) => softcap(&l, cap, self.isa)?,
            None => l,
        };
        tap(None, "result_output", &l)?;
        Ok(l)
    }
}
