//! Candle custom ops over our kernels: the boundary every backend implements.
//!
//! Candle tensors carry the data; every arithmetic step of the forward pass is
//! one of these ops, whose CPU side calls `crate::kernels` and whose CUDA side
//! (`cuda.rs`, with the `cuda` feature) runs kernels/*.cu in the same
//! canonical order.

use crate::kernels::{self, quant::WeightFormat, Isa};
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
mod defs;
pub use defs::*;

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
