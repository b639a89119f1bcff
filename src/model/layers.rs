//! Shared transformer blocks. Every arithmetic step is one of our ops.

use super::weights::Matrix;
use crate::error::Result;
use crate::kernels::attention::AttnShape;
use crate::kernels::rope::{self, RopeLayout};
use crate::kernels::Isa;
use crate::ops;
use candle_core::{DType, Device, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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
    pub fn forward(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        Ok(ops::matmul(
            x, &self.data, self.fmt, self.rows, self.cols, isa,
        )?)
    }

    /// Bytes of the stored weights.
    pub fn bytes(&self) -> u64 {
        self.data.elem_count() as u64
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
    pub fn forward(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        Ok(x.apply_op2_no_bwd(&self.weight, &ops::RmsNorm { eps: self.eps, isa })?)
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

    pub fn forward(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        let gu = self.gate_up.forward(x, isa)?;
        let inter = self.gate_up.rows / 2;
        let g = gu.narrow(1, 0, inter)?.contiguous()?;
        let u = gu.narrow(1, inter, inter)?.contiguous()?;
        let op = ops::Elementwise {
            kind: ops::ElementwiseKind::SwiGlu,
            isa,
        };
        self.down.forward(&g.apply_op2_no_bwd(&u, &op)?, isa)
    }
}

/// Rotary embedding tables shared by all layers, [positions][head_dim / 2].
/// Built for the positions in use and grown on demand (a 128k context does
/// not cost 128k rows up front); an entry depends only on its position, so
/// growing never changes a bit.
pub struct Rotary {
    inv_freqs: Vec<f64>,
    tables: RwLock<(Tensor, Tensor, usize)>,
    pub head_dim: usize,
    pub layout: RopeLayout,
    pub max_positions: usize,
    device: Device,
}

/// Rows a table starts with, and grows by at least.
const ROPE_STEP: usize = 1024;

impl Rotary {
    pub fn new(
        inv_freqs: Vec<f64>,
        head_dim: usize,
        layout: RopeLayout,
        max_positions: usize,
        dev: &Device,
    ) -> Result<Self> {
        let n = ROPE_STEP.min(max_positions);
        let (cos, sin) = Self::build(&inv_freqs, n, dev)?;
        Ok(Rotary {
            inv_freqs,
            tables: RwLock::new((cos, sin, n)),
            head_dim,
            layout,
            max_positions,
            device: dev.clone(),
        })
    }

    fn build(inv_freqs: &[f64], n: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
        let (cos, sin) = rope::tables(inv_freqs, n);
        let h = inv_freqs.len();
        Ok((
            Tensor::from_vec(cos, (n, h), dev)?,
            Tensor::from_vec(sin, (n, h), dev)?,
        ))
    }

    /// Bytes the tables take for `positions` rows.
    pub fn table_bytes(head_dim: usize, positions: usize) -> u64 {
        2 * positions as u64 * (head_dim / 2) as u64 * 4
    }

    /// Rows the tables hold now.
    pub fn positions(&self) -> usize {
        self.tables.read().unwrap_or_else(|e| e.into_inner()).2
    }

    /// Make sure positions 0..n have table rows (n <= max_positions).
    pub fn ensure(&self, n: usize) -> Result<()> {
        if n <= self.positions() {
            return Ok(());
        }
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if n <= t.2 {
            return Ok(());
        }
        let grown = n
            .max(2 * t.2)
            .div_ceil(ROPE_STEP)
            .saturating_mul(ROPE_STEP)
            .min(self.max_positions)
            .max(n);
        let (cos, sin) = Self::build(&self.inv_freqs, grown, &self.device)?;
        *t = (cos, sin, grown);
        Ok(())
    }

    pub fn apply(&self, x: &Tensor, pos0: usize, isa: Isa) -> Result<Tensor> {
        let op = ops::Rope {
            head_dim: self.head_dim,
            layout: self.layout,
            pos0,
            isa,
        };
        let (cos, sin) = {
            let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
            (t.0.clone(), t.1.clone())
        };
        Ok(x.apply_op3_no_bwd(&cos, &sin, &op)?)
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
        isa: Isa,
    ) -> Result<Tensor> {
        let qkv = self.qkv.forward(x, isa)?;
        let q_dim = self.shape.n_heads * self.shape.head_dim;
        let kv_dim = self.shape.n_kv_heads * self.shape.head_dim;
        let q = qkv.narrow(1, 0, q_dim)?.contiguous()?;
        let k = qkv.narrow(1, q_dim, kv_dim)?.contiguous()?;
        let v = qkv.narrow(1, q_dim + kv_dim, kv_dim)?.contiguous()?;
        let mut outs = Vec::with_capacity(segments.len());
        for (off, len, cache) in segments.iter_mut() {
            let pos0 = cache.len;
            let qs = rotary.apply(&q.narrow(0, *off, *len)?, pos0, isa)?;
            let ks = rotary.apply(&k.narrow(0, *off, *len)?, pos0, isa)?;
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
        self.o.forward(&att, isa)
    }
}
