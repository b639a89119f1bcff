//! Shared transformer blocks. Every arithmetic step is one of our ops.

use super::weights::Matrix;
use crate::error::Result;
use crate::kernels::attention::AttnShape;
use crate::kernels::rope::RopeLayout;
use crate::ops;
use candle_core::{DType, Device, Tensor};

impl Matrix {
    /// x [rows, cols] -> x W^T [rows, self.rows]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::matmul(x, &self.data, self.fmt, self.rows, self.cols)?)
    }

    /// Rows `ids` of the matrix (an embedding lookup).
    pub fn gather(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(ids.apply_op2_no_bwd(
            &self.data,
            &ops::Embedding {
                fmt: self.fmt,
                rows: self.rows,
                k: self.cols,
            },
        )?)
    }
}

pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f32,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.apply_op2_no_bwd(&self.weight, &ops::RmsNorm { eps: self.eps })?)
    }
}

/// SwiGLU feed-forward: down(silu(gate(x)) * up(x)).
pub struct Mlp {
    pub gate: Matrix,
    pub up: Matrix,
    pub down: Matrix,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = self.gate.forward(x)?;
        let u = self.up.forward(x)?;
        self.down.forward(&g.apply_op2_no_bwd(&u, &ops::SwiGlu)?)
    }
}

/// Rotary embedding tables shared by all layers.
pub struct Rotary {
    pub cos: Tensor,
    pub sin: Tensor,
    pub head_dim: usize,
    pub layout: RopeLayout,
    pub max_positions: usize,
}

impl Rotary {
    pub fn apply(&self, x: &Tensor, pos0: usize) -> Result<Tensor> {
        let op = ops::Rope {
            head_dim: self.head_dim,
            layout: self.layout,
            pos0,
        };
        Ok(x.apply_op3_no_bwd(&self.cos, &self.sin, &op)?)
    }
}

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
        })
    }
}

/// Grouped-query self-attention with rotary positions.
pub struct SelfAttention {
    pub q: Matrix,
    pub k: Matrix,
    pub v: Matrix,
    pub o: Matrix,
    pub shape: AttnShape,
}

impl SelfAttention {
    /// x holds the new rows of several sequences back to back; `segments`
    /// gives each one's (row offset, row count, cache).
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        layer: usize,
        segments: &mut [(usize, usize, &mut KvCache)],
    ) -> Result<Tensor> {
        let q = self.q.forward(x)?;
        let k = self.k.forward(x)?;
        let v = self.v.forward(x)?;
        let mut outs = Vec::with_capacity(segments.len());
        for (off, len, cache) in segments.iter_mut() {
            let pos0 = cache.len;
            let qs = rotary.apply(&q.narrow(0, *off, *len)?, pos0)?;
            let ks = rotary.apply(&k.narrow(0, *off, *len)?, pos0)?;
            let c = &cache.layers[layer];
            c.k.slice_set(&ks, 0, pos0)?;
            c.v.slice_set(&v.narrow(0, *off, *len)?.contiguous()?, 0, pos0)?;
            let op = ops::Attention {
                shape: self.shape,
                pos0,
            };
            outs.push(qs.apply_op3_no_bwd(&c.k, &c.v, &op)?);
        }
        let att = if outs.len() == 1 {
            outs.pop().unwrap()
        } else {
            Tensor::cat(&outs, 0)?
        };
        self.o.forward(&att)
    }
}
