//! Shared transformer blocks. Every arithmetic step is one of our ops.

use super::weights::Matrix;
use crate::error::Result;
use crate::kernels::attention::AttnShape;
use crate::kernels::rope::RopeLayout;
use crate::ops;
use candle_core::{DType, Device, Tensor};

impl Matrix {
    /// One matrix holding the rows of `parts` in order (same format and
    /// width): one product instead of several, with the same bits per row.
    pub fn stack(parts: &[&Matrix]) -> Result<Matrix> {
        let first = parts[0];
        if parts
            .iter()
            .any(|p| p.fmt != first.fmt || p.cols != first.cols)
        {
            return Err(crate::error::Error::Input(
                "stacked matrices must share format and width".into(),
            ));
        }
        let data: Vec<Tensor> = parts.iter().map(|p| p.data.clone()).collect();
        Ok(Matrix {
            data: Tensor::cat(&data, 0)?,
            fmt: first.fmt,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
        })
    }

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
    /// gate and up projections stacked: [2 * intermediate, hidden].
    pub gate_up: Matrix,
    pub down: Matrix,
}

impl Mlp {
    pub fn new(gate: &Matrix, up: &Matrix, down: Matrix) -> Result<Self> {
        Ok(Mlp {
            gate_up: Matrix::stack(&[gate, up])?,
            down,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gu = self.gate_up.forward(x)?;
        let inter = self.gate_up.rows / 2;
        let g = gu.narrow(1, 0, inter)?.contiguous()?;
        let u = gu.narrow(1, inter, inter)?.contiguous()?;
        self.down
            .forward(&g.apply_op2_no_bwd(&u, &ops::Elementwise::SwiGlu)?)
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
    /// q, k and v projections stacked: [q_dim + 2 * kv_dim, hidden].
    pub qkv: Matrix,
    pub o: Matrix,
    pub shape: AttnShape,
}

impl SelfAttention {
    pub fn new(q: &Matrix, k: &Matrix, v: &Matrix, o: Matrix, shape: AttnShape) -> Result<Self> {
        Ok(SelfAttention {
            qkv: Matrix::stack(&[q, k, v])?,
            o,
            shape,
        })
    }

    /// x holds the new rows of several sequences back to back; `segments`
    /// gives each one's (row offset, row count, cache).
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        layer: usize,
        segments: &mut [(usize, usize, &mut KvCache)],
    ) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        let q_dim = self.shape.n_heads * self.shape.head_dim;
        let kv_dim = self.shape.n_kv_heads * self.shape.head_dim;
        let q = qkv.narrow(1, 0, q_dim)?.contiguous()?;
        let k = qkv.narrow(1, q_dim, kv_dim)?.contiguous()?;
        let v = qkv.narrow(1, q_dim + kv_dim, kv_dim)?.contiguous()?;
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
