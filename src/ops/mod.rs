//! Candle custom ops over our kernels: the boundary every backend implements.
//!
//! Candle tensors carry the data; every arithmetic step of the forward pass is
//! one of these ops, whose CPU side calls `crate::kernels` and whose CUDA side
//! (`cuda.rs`, with the `cuda` feature) runs kernels/*.cu in the same
//! canonical order.

use crate::kernels::{self, attention::AttnShape, quant::WeightFormat, rope::RopeLayout};
use candle_core::backend::BackendStorage;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

#[cfg(feature = "cuda")]
pub mod cuda;

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
        let dims = l1.shape().dims();
        if dims.last() != Some(&self.k) {
            bail!("det-matmul: input {:?} does not end in k={}", dims, self.k);
        }
        let m = x.len() / self.k;
        let mut out = vec![0f32; m * self.n];
        kernels::matmul::matmul(x, m, self.k, w, self.fmt, self.n, &mut out);
        let mut od = dims.to_vec();
        *od.last_mut().unwrap() = self.n;
        Ok((CpuStorage::F32(out), Shape::from(od)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        cuda::matmul(self.fmt, self.n, self.k, s1, l1, s2, l2)
    }
}

/// Embedding lookup: rows `ids` of W, dequantised.
pub struct Embedding {
    pub fmt: WeightFormat,
    pub rows: usize,
    pub k: usize,
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
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.rows) {
            bail!(
                "det-embedding: token id {bad} is out of range (vocabulary has {} rows)",
                self.rows
            );
        }
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
        cuda::embedding(self.fmt, self.rows, self.k, s1, l1, s2, l2)
    }
}

pub struct RmsNorm {
    pub eps: f32,
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
        if l1.shape().dims().last() != Some(&w.len()) {
            bail!("det-rms-norm: input {:?} vs weight {}", l1.shape(), w.len());
        }
        let mut out = vec![0f32; x.len()];
        kernels::norm::rms_norm(x, w, self.eps, &mut out);
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
        cuda::rms_norm(self.eps, s1, l1, s2, l2)
    }
}

/// Rotary embedding of rows at positions pos0, pos0+1, ...; inputs x, cos, sin.
pub struct Rope {
    pub head_dim: usize,
    pub layout: RopeLayout,
    pub pos0: usize,
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
        let row = *l1.shape().dims().last().unwrap_or(&0);
        let rows = if row == 0 { 0 } else { x.len() / row };
        if (self.pos0 + rows) * (self.head_dim / 2) > cos.len() {
            bail!(
                "det-rope: position {} beyond the rope table",
                self.pos0 + rows
            );
        }
        let mut out = x.to_vec();
        kernels::rope::apply(
            &mut out,
            self.head_dim,
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
        cuda::rope(
            self.head_dim,
            self.layout,
            self.pos0,
            s1,
            l1,
            s2,
            l2,
            s3,
            l3,
        )
    }
}

/// Element-wise ops of two equal-length f32 inputs.
#[derive(Debug, Clone, Copy)]
pub enum Elementwise {
    /// silu(a) * b (the MLP gate).
    SwiGlu,
    /// a + b (the residual connection).
    Add,
}

impl CustomOp2 for Elementwise {
    fn name(&self) -> &'static str {
        match self {
            Elementwise::SwiGlu => "det-swiglu",
            Elementwise::Add => "det-add",
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
        if a.len() != b.len() {
            bail!("{}: shapes differ", self.name());
        }
        let mut out = vec![0f32; a.len()];
        match self {
            Elementwise::SwiGlu => kernels::elementwise::swiglu(a, b, &mut out),
            Elementwise::Add => kernels::elementwise::add(a, b, &mut out),
        }
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
        let kernel = match self {
            Elementwise::SwiGlu => "swiglu",
            Elementwise::Add => "add",
        };
        cuda::binary(kernel, self.name(), s1, l1, s2, l2)
    }
}

/// Causal attention of q rows (positions pos0..) over a KV cache.
pub struct Attention {
    pub shape: AttnShape,
    pub pos0: usize,
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
        let AttnShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = self.shape;
        let rows = q.len() / (n_heads * head_dim);
        if (self.pos0 + rows) * n_kv_heads * head_dim > k.len() || k.len() != v.len() {
            bail!(
                "det-attention: KV cache too small for position {}",
                self.pos0 + rows
            );
        }
        let mut out = vec![0f32; q.len()];
        kernels::attention::attention(q, k, v, self.pos0, self.shape, &mut out);
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
        cuda::attention(self.shape, self.pos0, s1, l1, s2, l2, s3, l3)
    }
}

/// Convenience wrappers.
pub fn matmul(x: &Tensor, w: &Tensor, fmt: WeightFormat, n: usize, k: usize) -> Result<Tensor> {
    x.apply_op2_no_bwd(w, &MatMul { fmt, n, k })
}

/// a + b through our Add op (the residual connection).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.apply_op2_no_bwd(b, &Elementwise::Add)
}
