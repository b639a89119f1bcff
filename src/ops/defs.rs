//! The parameters of each op and their shape checks, shared by the CPU side
//! (`ops/mod.rs`) and the CUDA side (`ops/cuda.rs`).

use crate::kernels::{attention::AttnShape, quant::WeightFormat, rope::RopeLayout, Isa};
use candle_core::{bail, CustomOp2, Result, Shape};

/// y = x W^T, W stored in `fmt` as raw bytes, `n` rows of `k` columns.
pub struct MatMul {
    pub fmt: WeightFormat,
    pub n: usize,
    pub k: usize,
    /// The CPU code to run (same bits on every ISA); unused on other devices.
    pub isa: Isa,
    /// W in `kernels::gemm_int`'s interleaved layout (CPU only; the loader
    /// interleaves only what stays on the CPU).
    pub interleaved: bool,
}

/// Embedding lookup: rows `ids` of W, dequantised.
pub struct Embedding {
    pub fmt: WeightFormat,
    pub rows: usize,
    pub k: usize,
}

pub struct RmsNorm {
    pub eps: f32,
    pub isa: Isa,
}

/// Rotary embedding of rows at positions pos0, pos0+1, ...; inputs x, cos, sin.
pub struct Rope {
    pub head_dim: usize,
    /// Rotated dimensions of each head (the tables have rope_dims / 2 columns).
    pub rope_dims: usize,
    pub layout: RopeLayout,
    pub pos0: usize,
    pub isa: Isa,
}

/// Element-wise ops of two equal-length f32 inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementwiseKind {
    /// silu(a) * b (the MLP gate).
    SwiGlu,
    /// a + b (the residual connection).
    Add,
    /// gelu_tanh(a) * b (Gemma's gate).
    GeGlu,
}

#[derive(Debug, Clone, Copy)]
pub struct Elementwise {
    pub kind: ElementwiseKind,
    pub isa: Isa,
}

/// One-input element-wise maps.
#[derive(Debug, Clone, Copy)]
pub enum MapKind {
    /// x * s (Gemma's embedding scale, Q pre-scaling).
    Scale(f32),
    /// tanh(x * (1 / cap)) * cap (Gemma 2's final logits).
    Softcap(f32),
}

#[derive(Debug, Clone, Copy)]
pub struct Map {
    pub kind: MapKind,
    pub isa: Isa,
}

/// A bias on every row: x [.., n] + b [n].
pub struct AddBias;

/// Causal attention of q rows (positions pos0..) over a KV cache.
pub struct Attention {
    pub shape: AttnShape,
    pub pos0: usize,
    pub isa: Isa,
}

impl MatMul {
    /// Checks x [.., k] and W (n rows of k in `fmt`, `w_len` bytes); returns
    /// the rows of x and the output shape [.., n]. Shared by every backend.
    pub(super) fn check(&self, x: &Shape, w_len: usize) -> Result<(usize, Shape)> {
        let dims = x.dims();
        if dims.last() != Some(&self.k) {
            bail!("det-matmul: input {:?} does not end in k={}", dims, self.k);
        }
        match self.fmt.row_bytes(self.k) {
            Some(rb) if rb * self.n == w_len => {}
            _ => bail!(
                "det-matmul: weight bytes do not match {} rows of {} {}",
                self.n,
                self.k,
                self.fmt.name()
            ),
        }
        let mut od = dims.to_vec();
        *od.last_mut().unwrap() = self.n;
        Ok((x.elem_count() / self.k, Shape::from(od)))
    }
}

impl Embedding {
    pub(super) fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.rows) {
            bail!(
                "det-embedding: token id {bad} is out of range (vocabulary has {} rows)",
                self.rows
            );
        }
        Ok(())
    }
}

impl RmsNorm {
    /// Checks x [.., n] against a weight of n; returns the rows of x.
    pub(super) fn check(x: &Shape, n: usize) -> Result<usize> {
        if x.dims().last() != Some(&n) {
            bail!("det-rms-norm: input {x:?} vs weight {n}");
        }
        Ok(x.elem_count() / n.max(1))
    }
}

impl Rope {
    /// Checks that rows of x reach no further than the `table_len` entries of
    /// the cos table; returns (rows, row length).
    pub(super) fn check(&self, x: &Shape, table_len: usize) -> Result<(usize, usize)> {
        let row = *x.dims().last().unwrap_or(&0);
        let rows = if row == 0 { 0 } else { x.elem_count() / row };
        if (self.pos0 + rows) * (self.rope_dims / 2) > table_len
            || self.rope_dims > self.head_dim
            || (self.head_dim > 0 && row % self.head_dim != 0)
        {
            bail!(
                "det-rope: position {} beyond the rope table",
                self.pos0 + rows
            );
        }
        Ok((rows, row))
    }
}

impl Elementwise {
    pub(super) fn check(&self, a: usize, b: usize) -> Result<()> {
        if a != b {
            bail!("{}: shapes differ", self.name());
        }
        Ok(())
    }
}

impl AddBias {
    /// Checks x [.., n] against a bias of n.
    pub(super) fn check(x: &Shape, n: usize) -> Result<()> {
        if x.dims().last() != Some(&n) {
            bail!("det-add-bias: input {x:?} vs bias {n}");
        }
        Ok(())
    }
}

impl Attention {
    /// Checks that the KV cache holds every position the q rows attend to;
    /// returns the rows of q.
    pub(super) fn check(&self, q_len: usize, k_len: usize, v_len: usize) -> Result<usize> {
        let AttnShape {
            n_heads,
            n_kv_heads,
            head_dim,
            ..
        } = self.shape;
        let rows = q_len / (n_heads * head_dim);
        if (self.pos0 + rows) * n_kv_heads * head_dim > k_len || k_len != v_len {
            bail!(
                "det-attention: KV cache too small for position {}",
                self.pos0 + rows
            );
        }
        Ok(rows)
    }
}

/// Threads per block of every CUDA launch (src/ops/cuda.rs).
pub const CUDA_BLOCK: u32 = 256;

/// Blocks of `CUDA_BLOCK` threads that cover `threads` threads, computed in
/// 64 bits (a 262k-vocabulary logits launch is past 2^32 threads); an error
/// past CUDA's grid limit of 2^31 - 1 blocks.
pub fn cuda_grid(threads: u64) -> Result<u32> {
    let blocks = threads.div_ceil(CUDA_BLOCK as u64).max(1);
    match u32::try_from(blocks) {
        Ok(b) if b <= i32::MAX as u32 => Ok(b),
        _ => bail!(
            "a CUDA launch of {threads} threads needs {blocks} blocks, past the limit of 2^31 - 1"
        ),
    }
}
