//! Shared transformer blocks. Every arithmetic step is one of our ops.

use super::arch::Activation;
use super::weights::Matrix;
use crate::error::Result;
use crate::kernels::rope::{self, RopeLayout};
use crate::kernels::Isa;
use crate::ops;
use candle_core::{Device, Tensor};
use std::sync::RwLock;

impl Matrix {
    /// One matrix holding the rows of `parts` in order (same format and
    /// width): one product instead of several, with the same bits per row.
    pub fn stack(parts: &[&Matrix]) -> Result<Matrix> {
        let first = parts[0];
        if parts.iter().any(|p| {
            p.fmt != first.fmt || p.cols != first.cols || p.interleaved != first.interleaved
        }) {
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
            // Groups of 8 rows are self-contained: stacked ones stay interleaved.
            interleaved: first.interleaved,
        })
    }

    /// x [rows, cols] -> x W^T [rows, self.rows]
    pub fn forward(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        Ok(ops::matmul(
            x,
            &self.data,
            self.fmt,
            self.rows,
            self.cols,
            isa,
            self.interleaved,
        )?)
    }

    /// Rows `ids` of the matrix (an embedding lookup).
    pub fn gather(&self, ids: &Tensor) -> Result<Tensor> {
        if self.interleaved {
            return Err(crate::error::Error::Input(
                "an interleaved matrix cannot be gathered by row (the loader keeps embeddings in the GGUF layout)".into(),
            ));
        }
        Ok(ids.apply_op2_no_bwd(
            &self.data,
            &ops::Embedding {
                fmt: self.fmt,
                rows: self.rows,
                k: self.cols,
            },
        )?)
    }

    /// Bytes of the stored weights.
    pub fn bytes(&self) -> u64 {
        self.data.elem_count() as u64
    }
}

/// Several projections of the same input, their outputs side by side (Q, K
/// and V; gate and up): one stacked matrix where formats agree, else one
/// product per run of equal format, concatenated. Every output row is its
/// own dot product, so the bits are the same either way.
pub struct Stacked {
    pub parts: Vec<Matrix>,
    /// Output columns in all.
    pub rows: usize,
}

impl Stacked {
    pub fn new(parts: &[&Matrix]) -> Result<Self> {
        let mut runs: Vec<Vec<&Matrix>> = Vec::new();
        for &p in parts {
            match runs.last_mut() {
                Some(run)
                    if run[0].fmt == p.fmt
                        && run[0].cols == p.cols
                        && run[0].interleaved == p.interleaved =>
                {
                    run.push(p)
                }
                _ => runs.push(vec![p]),
            }
        }
        Ok(Stacked {
            parts: runs
                .iter()
                .map(|r| Matrix::stack(r))
                .collect::<Result<Vec<_>>>()?,
            rows: parts.iter().map(|p| p.rows).sum(),
        })
    }

    pub fn one(m: Matrix) -> Self {
        Stacked {
            rows: m.rows,
            parts: vec![m],
        }
    }

    pub fn forward(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        if self.parts.len() == 1 {
            return self.parts[0].forward(x, isa);
        }
        let outs = self
            .parts
            .iter()
            .map(|p| p.forward(x, isa))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&outs, 1)?)
    }

    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes()).sum()
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

    /// Each head of each row on its own: x [rows, heads * n] with a weight of n.
    pub fn forward_heads(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        let (rows, width) = x.dims2()?;
        let n = self.weight.elem_count();
        let per_head = x.reshape((rows * (width / n), n))?;
        Ok(self.forward(&per_head, isa)?.reshape((rows, width))?)
    }
}

/// x * s, element by element.
pub fn scale(x: &Tensor, s: f32, isa: Isa) -> Result<Tensor> {
    let op = ops::Map {
        kind: ops::MapKind::Scale(s),
        isa,
    };
    Ok(x.apply_op1_no_bwd(&op)?)
}

/// tanh(x / cap) * cap, element by element.
pub fn softcap(x: &Tensor, cap: f32, isa: Isa) -> Result<Tensor> {
    let op = ops::Map {
        kind: ops::MapKind::Softcap(cap),
        isa,
    };
    Ok(x.apply_op1_no_bwd(&op)?)
}

/// Gated feed-forward: down(act(gate(x)) * up(x)), act silu (SwiGLU) or
/// the tanh GELU (GeGLU).
pub struct Mlp {
    /// gate and up projections stacked: [2 * intermediate, hidden].
    pub gate_up: Stacked,
    pub down: Matrix,
    pub gate: ops::ElementwiseKind,
}

impl Mlp {
    pub fn new(gate_up: Stacked, down: Matrix, act: Activation) -> Self {
        Mlp {
            gate_up,
            down,
            gate: match act {
                Activation::SwiGlu => ops::ElementwiseKind::SwiGlu,
                Activation::GeGluTanh => ops::ElementwiseKind::GeGlu,
            },
        }
    }

    pub fn forward(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        self.forward_tapped(x, isa, None, &mut |_, _, _| Ok(()))
    }

    /// `forward`, naming the gated product `ffn_act` to `tap`.
    pub fn forward_tapped(
        &self,
        x: &Tensor,
        isa: Isa,
        layer: Option<usize>,
        tap: &mut super::Tap,
    ) -> Result<Tensor> {
        let gu = self.gate_up.forward(x, isa)?;
        let inter = self.gate_up.rows / 2;
        let g = gu.narrow(1, 0, inter)?.contiguous()?;
        let u = gu.narrow(1, inter, inter)?.contiguous()?;
        let op = ops::Elementwise {
            kind: self.gate,
            isa,
        };
        let act = g.apply_op2_no_bwd(&u, &op)?;
        tap(layer, "ffn_act", &act)?;
        self.down.forward(&act, isa)
    }
}

/// Rotary embedding tables shared by all layers, [positions][head_dim / 2].
/// Built for the positions in use and grown on demand (a 128k context does
/// not cost 128k rows up front); an entry depends only on its position, so
/// growing never changes a bit.
pub struct Rotary {
    inv_freqs: Vec<f64>,
    /// cos and sin are multiplied by this (LongRoPE's attention factor).
    mscale: f64,
    tables: RwLock<(Tensor, Tensor, usize)>,
    pub head_dim: usize,
    pub layout: RopeLayout,
    pub max_positions: usize,
    device: Device,
}

/// Rows a table starts with, and grows by at least.
const ROPE_STEP: usize = 1024;

impl Rotary {
    /// `inv_freqs`: one per rotated pair (rope_dims / 2 of them).
    pub fn new(
        inv_freqs: Vec<f64>,
        mscale: f64,
        head_dim: usize,
        layout: RopeLayout,
        max_positions: usize,
        dev: &Device,
    ) -> Result<Self> {
        let n = ROPE_STEP.min(max_positions);
        let (cos, sin) = Self::build(&inv_freqs, mscale, n, dev)?;
        Ok(Rotary {
            inv_freqs,
            mscale,
            tables: RwLock::new((cos, sin, n)),
            head_dim,
            layout,
            max_positions,
            device: dev.clone(),
        })
    }

    fn build(inv_freqs: &[f64], mscale: f64, n: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
        let (cos, sin) = rope::tables(inv_freqs, n, mscale);
        let h = inv_freqs.len();
        Ok((
            Tensor::from_vec(cos, (n, h), dev)?,
            Tensor::from_vec(sin, (n, h), dev)?,
        ))
    }

    /// Bytes the tables take for `positions` rows of `rope_dims` / 2 pairs.
    pub fn table_bytes(rope_dims: usize, positions: usize) -> u64 {
        2 * positions as u64 * (rope_dims / 2) as u64 * 4
    }

    /// Rotated dimensions per head.
    pub fn rope_dims(&self) -> usize {
        2 * self.inv_freqs.len()
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
        let (cos, sin) = Self::build(&self.inv_freqs, self.mscale, grown, &self.device)?;
        *t = (cos, sin, grown);
        Ok(())
    }

    pub fn apply(&self, x: &Tensor, pos0: usize, isa: Isa) -> Result<Tensor> {
        let op = ops::Rope {
            head_dim: self.head_dim,
            rope_dims: self.rope_dims(),
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
