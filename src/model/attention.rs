//! Self-attention and the KV cache: one implementation for every family,
//! its variations (biases, per-head Q/K norms, Q pre-scaling, soft-capped
//! scores, a sliding window) set by the architecture description.

use super::layers::{scale, RmsNorm, Rotary, Stacked};
use super::weights::Matrix;
use super::Tap;
use crate::error::Result;
use crate::kernels::attention::AttnShape;
use crate::kernels::Isa;
use crate::ops;
use candle_core::{DType, Device, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One layer's keys and values for one sequence, preallocated to capacity.
pub struct LayerCache {
    pub k: Tensor,
    pub v: Tensor,
}

/// A sequence's KV cache: `len` positions filled, room for `capacity`.
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    pub len: usize,
    pub capacity: usize,
    /// The model's count of bytes held by live caches, which this one is part of.
    accounted: Option<(Arc<AtomicU64>, u64)>,
}

impl KvCache {
    pub fn new(n_layers: usize, capacity: usize, kv_dim: usize, dev: &Device) -> Result<Self> {
        let layers = (0..n_layers)
            .map(|_| {
                Ok(LayerCache {
                    k: Tensor::zeros((capacity, kv_dim), DType::F32, dev)?,
                    v: Tensor::zeros((capacity, kv_dim), DType::F32, dev)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
            accounted: None,
        })
    }

    /// Bytes of a cache of `capacity` positions.
    pub fn bytes_for(n_layers: usize, capacity: usize, kv_dim: usize) -> u64 {
        2 * n_layers as u64 * capacity as u64 * kv_dim as u64 * 4
    }

    /// Copy the first `n` positions of `src` (the same model's) into this
    /// empty cache: a prefix-cache hit. The values are copied bit for bit.
    pub fn copy_prefix_from(&mut self, src: &KvCache, n: usize) -> Result<()> {
        if self.len != 0
            || n > src.len
            || n > self.capacity
            || self.layers.len() != src.layers.len()
        {
            return Err(crate::Error::Input(format!(
                "KV prefix copy of {n} positions: source holds {}, destination {} of {} positions",
                src.len, self.len, self.capacity
            )));
        }
        if n > 0 {
            for (d, s) in self.layers.iter().zip(&src.layers) {
                d.k.slice_set(&s.k.narrow(0, 0, n)?.contiguous()?, 0, 0)?;
                d.v.slice_set(&s.v.narrow(0, 0, n)?.contiguous()?, 0, 0)?;
            }
        }
        self.len = n;
        Ok(())
    }

    /// Bytes this cache holds.
    pub fn bytes(&self) -> u64 {
        let kv_dim = self
            .layers
            .first()
            .map_or(0, |l| l.k.dims().get(1).copied().unwrap_or(0));
        Self::bytes_for(self.layers.len(), self.capacity, kv_dim)
    }

    /// This cache's `bytes`, already added to `live`, are taken back from it
    /// when the cache is dropped.
    pub(crate) fn account(&mut self, live: &Arc<AtomicU64>, bytes: u64) {
        self.accounted = Some((live.clone(), bytes));
    }
}

impl Drop for KvCache {
    fn drop(&mut self) {
        if let Some((live, bytes)) = &self.accounted {
            live.fetch_sub(*bytes, Ordering::Relaxed);
        }
    }
}

/// Grouped-query self-attention with rotary positions.
pub struct SelfAttention {
    /// q, k and v projections stacked: [q_dim + 2 * kv_dim, hidden].
    pub qkv: Stacked,
    /// Their biases, stacked the same way (Qwen2).
    pub qkv_bias: Option<Tensor>,
    /// Per-head RMSNorm of Q and of K before RoPE (Qwen3, Gemma 3).
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    /// Q is multiplied by this after RoPE (Gemma, Phi-3).
    pub q_prescale: Option<f32>,
    pub o: Matrix,
    /// Heads, score scale, soft-cap and window of this layer.
    pub shape: AttnShape,
}

impl SelfAttention {
    /// y = o(attention(rope(q), rope(k), v)) over `segments`; see `forward`.
    pub fn new(qkv: Stacked, o: Matrix, shape: AttnShape) -> Self {
        SelfAttention {
            qkv,
            qkv_bias: None,
            q_norm: None,
            k_norm: None,
            q_prescale: None,
            o,
            shape,
        }
    }

    /// x holds the new rows of several sequences back to back; `segments`
    /// gives each one's (row offset, row count, cache).
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        layer: usize,
        segments: &mut [(usize, usize, &mut KvCache)],
        isa: Isa,
        tap: &mut Tap,
    ) -> Result<Tensor> {
        let l = Some(layer);
        let mut qkv = self.qkv.forward(x, isa)?;
        if let Some(b) = &self.qkv_bias {
            qkv = qkv.apply_op2_no_bwd(b, &ops::AddBias)?;
        }
        let q_dim = self.shape.n_heads * self.shape.head_dim;
        let kv_dim = self.shape.n_kv_heads * self.shape.head_dim;
        let mut q = qkv.narrow(1, 0, q_dim)?.contiguous()?;
        let mut k = qkv.narrow(1, q_dim, kv_dim)?.contiguous()?;
        let v = qkv.narrow(1, q_dim + kv_dim, kv_dim)?.contiguous()?;
        tap(l, "Qcur", &q)?;
        tap(l, "Kcur", &k)?;
        tap(l, "Vcur", &v)?;
        if let Some(n) = &self.q_norm {
            q = n.forward_heads(&q, isa)?;
            tap(l, "Qcur_normed", &q)?;
        }
        if let Some(n) = &self.k_norm {
            k = n.forward_heads(&k, isa)?;
            tap(l, "Kcur_normed", &k)?;
        }
        let mut outs = Vec::with_capacity(segments.len());
        for (off, len, cache) in segments.iter_mut() {
            let pos0 = cache.len;
            let mut qs = rotary.apply(&q.narrow(0, *off, *len)?, pos0, isa)?;
            if let Some(s) = self.q_prescale {
                qs = scale(&qs, s, isa)?;
            }
            let ks = rotary.apply(&k.narrow(0, *off, *len)?, pos0, isa)?;
            tap(l, "Qcur_rope", &qs)?;
            tap(l, "Kcur_rope", &ks)?;
            let c = &cache.layers[layer];
            c.k.slice_set(&ks, 0, pos0)?;
            c.v.slice_set(&v.narrow(0, *off, *len)?.contiguous()?, 0, pos0)?;
            let op = ops::Attention {
                shape: self.shape,
                pos0,
                isa,
            };
            outs.push(qs.apply_op3_no_bwd(&c.k, &c.v, &op)?);
        }
        let att = if outs.len() == 1 {
            outs.pop().unwrap()
        } else {
            Tensor::cat(&outs, 0)?
        };
        tap(l, "kqv_out", &att)?;
        self.o.forward(&att, isa)
    }
}
