//! Candle custom ops over our kernels: the boundary every backend implements.
//!
//! Candle tensors carry the data; every arithmetic step of the forward pass is
//! one of these ops, whose CPU side calls `crate::kernels` and whose CUDA side
//! (`cuda.rs`, with the `cuda` feature) runs kernels/*.cu in the same
//! canonical order.

use crate::kernels::{self, attention::AttnShape, quant::WeightFormat, rope::RopeLayout, Isa};
use candle_core::backend::BackendStorage;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};

/// Elements one task of an elementwise op takes on the CPU (prefill's
/// 256 x 2048 GeGLU is 32 tasks; a decode step's is one).
const ELEMENTWISE_CHUNK: usize = 16384;

#[cfg(feature = "cuda")]
pub mod cuda;

#[cfg(test)]
mod tests {
    /// Finding 9 of issue 11: the grid of a launch past 2^32 threads is not
    /// truncated to 32 bits (it was `threads as u32`).
    #[test]
    fn cuda_grid_is_computed_in_64_bits() {
        assert_eq!(super::cuda_grid(0).unwrap(), 1);
        assert_eq!(super::cuda_grid(257).unwrap(), 2);
        let threads = 512u64 * 262_144 * 32 + 1000;
        assert!(threads > 1 << 32);
        assert_eq!(
            super::cuda_grid(threads).unwrap() as u64,
            threads.div_ceil(256)
        );
        assert!(super::cuda_grid(u64::MAX / 2).is_err());
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => bail!("{op}: expected an f32 tensor, got {:?}", s.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

fn u8_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [u8]> {
    let data = match s {
        CpuStorage::U8(d) => d,
        _ => bail!("{op}: expected raw weight bytes (u8), got {:?}", s.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: weights must be contiguous"),
    }
}

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

impl MatMul {
    /// Checks x [.., k] and W (n rows of k in `fmt`, `w_len` bytes); returns
    /// the rows of x and the output shape [.., n]. Shared by every backend.
    fn check(&self, x: &Shape, w_len: usize) -> Result<(usize, Shape)> {
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

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "det-matmul"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = u8_slice(s2, l2, self.name())?;
        let (m, shape) = self.check(l1.shape(), w.len())?;
        let mut out = vec![0f32; m * self.n];
        if self.interleaved {
            kernels::matmul::matmul_interleaved(
                self.isa, x, m, self.k, w, self.fmt, self.n, &mut out,
            );
        } else {
            kernels::matmul::matmul(self.isa, x, m, self.k, w, self.fmt, self.n, &mut out);
        }
        Ok((CpuStorage::F32(out), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if self.interleaved {
            bail!("det-matmul: interleaved weights are a CPU layout; a CUDA model is loaded without them");
        }
        cuda::matmul(self, s1, l1, s2, l2)
    }
}

/// Embedding lookup: rows `ids` of W, dequantised.
pub struct Embedding {
    pub fmt: WeightFormat,
    pub rows: usize,
    pub k: usize,
}

impl Embedding {
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.rows) {
            bail!(
                "det-embedding: token id {bad} is out of range (vocabulary has {} rows)",
                self.rows
            );
        }
        Ok(())
    }
}

impl CustomOp2 for Embedding {
    fn name(&self) -> &'static str {
        "det-embedding"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ids = match (s1, l1.contiguous_offsets()) {
            (CpuStorage::U32(d), Some((a, b))) => &d[a..b],
            _ => bail!("det-embedding: ids must be a contiguous u32 tensor"),
        };
        self.check_ids(ids)?;
        let w = u8_slice(s2, l2, self.name())?;
        let mut out = vec![0f32; ids.len() * self.k];
        kernels::matmul::gather_rows(w, self.fmt, self.k, ids, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((ids.len(), self.k))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        cuda::embedding(self, s1, l1, s2, l2)
    }
}

pub struct RmsNorm {
    pub eps: f32,
    pub isa: Isa,
}

impl RmsNorm {
    /// Checks x [.., n] against a weight of n; returns the rows of x.
    fn check(x: &Shape, n: usize) -> Result<usize> {
        if x.dims().last() != Some(&n) {
            bail!("det-rms-norm: input {x:?} vs weight {n}");
        }
        Ok(x.elem_count() / n.max(1))
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "det-rms-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        Self::check(l1.shape(), w.len())?;
        let mut out = vec![0f32; x.len()];
        kernels::norm::rms_norm(self.isa, x, w, self.eps, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        cuda::rms_norm(self, s1, l1, s2, l2)
    }
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

impl Rope {
    /// Checks that rows of x reach no further than the `table_len` entries of
    /// the cos table; returns (rows, row length).
    fn check(&self, x: &Shape, table_len: usize) -> Result<(usize, usize)> {
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

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "det-rope"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let cos = f32_slice(s2, l2, self.name())?;
        let sin = f32_slice(s3, l3, self.name())?;
        let (_, row) = self.check(l1.shape(), cos.len())?;
        let mut out = x.to_vec();
        kernels::rope::apply(
            self.isa,
            &mut out,
            self.head_dim,
            self.rope_dims,
            self.layout,
            cos,
            sin,
            self.pos0,
            row,
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        cuda::rope(self, s1, l1, s2, l2, s3, l3)
    }
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

impl Elementwise {
    fn check(&self, a: usize, b: usize) -> Result<()> {
        if a != b {
            bail!("{}: shapes differ", self.name());
        }
        Ok(())
    }
}

impl CustomOp2 for Elementwise {
    fn name(&self) -> &'static str {
        match self.kind {
            ElementwiseKind::SwiGlu => "det-swiglu",
            ElementwiseKind::Add => "det-add",
            ElementwiseKind::GeGlu => "det-geglu",
        }
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = f32_slice(s1, l1, self.name())?;
        let b = f32_slice(s2, l2, self.name())?;
        self.check(a.len(), b.len())?;
        let mut out = vec![0f32; a.len()];
        // Element by element, so splitting the work cannot change a bit.
        kernels::pool::for_each_chunk_mut(&mut out, ELEMENTWISE_CHUNK, |i, o| {
            let r = i * ELEMENTWISE_CHUNK..i * ELEMENTWISE_CHUNK + o.len();
            let (a, b) = (&a[r.clone()], &b[r]);
            match self.kind {
                ElementwiseKind::SwiGlu => kernels::elementwise::swiglu(self.isa, a, b, o),
                ElementwiseKind::Add => kernels::elementwise::add(a, b, o),
                ElementwiseKind::GeGlu => kernels::elementwise::geglu(self.isa, a, b, o),
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        cuda::elementwise(self, s1, l1, s2, l2)
    }
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

impl CustomOp1 for Map {
    fn name(&self) -> &'static str {
        match self.kind {
            MapKind::Scale(_) => "det-scale",
            MapKind::Softcap(_) => "det-softcap",
        }
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let mut out = vec![0f32; x.len()];
        match self.kind {
            MapKind::Scale(v) => kernels::elementwise::scale(x, v, &mut out),
            MapKind::Softcap(c) => kernels::elementwise::softcap(self.isa, x, c, &mut out),
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        cuda::map(self, s, l)
    }
}

/// A bias on every row: x [.., n] + b [n].
pub struct AddBias;

impl AddBias {
    /// Checks x [.., n] against a bias of n.
    fn check(x: &Shape, n: usize) -> Result<()> {
        if x.dims().last() != Some(&n) {
            bail!("det-add-bias: input {x:?} vs bias {n}");
        }
        Ok(())
    }
}

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "det-add-bias"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let b = f32_slice(s2, l2, self.name())?;
        Self::check(l1.shape(), b.len())?;
        let mut out = vec![0f32; x.len()];
        kernels::elementwise::add_bias(x, b, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        cuda::add_bias(s1, l1, s2, l2)
    }
}

/// Causal attention of q rows (positions pos0..) over a KV cache.
pub struct Attention {
    pub shape: AttnShape,
    pub pos0: usize,
    pub isa: Isa,
}

impl Attention {
    /// Checks that the KV cache holds every position the q rows attend to;
    /// returns the rows of q.
    fn check(&self, q_len: usize, k_len: usize, v_len: usize) -> Result<usize> {
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

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "det-attention"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = f32_slice(s1, l1, self.name())?;
        let k = f32_slice(s2, l2, self.name())?;
        let v = f32_slice(s3, l3, self.name())?;
        self.check(q.len(), k.len(), v.len())?;
        let mut out = vec![0f32; q.len()];
        kernels::attention::attention(self.isa, q, k, v, self.pos0, self.shape, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        cuda::attention(self, s1, l1, s2, l2, s3, l3)
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

/// Convenience wrappers.
pub fn matmul(
    x: &Tensor,
    w: &Tensor,
    fmt: WeightFormat,
    n: usize,
    k: usize,
    isa: Isa,
    interleaved: bool,
) -> Result<Tensor> {
    x.apply_op2_no_bwd(
        w,
        &MatMul {
            fmt,
            n,
            k,
            isa,
            interleaved,
        },
    )
}

/// a + b through our Add op (the residual connection).
pub fn add(a: &Tensor, b: &Tensor, isa: Isa) -> Result<Tensor> {
    a.apply_op2_no_bwd(
        b,
        &Elementwise {
            kind: ElementwiseKind::Add,
            isa,
        },
    )
}
