//! The CUDA side of our ops: kernels/*.cu, compiled once per process by NVRTC
//! with the flags of docs/DETERMINISM.md §7, launched on Candle's stream.
//!
//! Every function here mirrors a `cpu_fwd` in ops/mod.rs: same checks, same
//! output shape, and kernels that compute each output in the canonical order,
//! so the bits equal the CPU's whatever the batch or launch shape.

use crate::kernels::{attention::AttnShape, qdot, quant::WeightFormat, rope::RopeLayout};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{bail, Layout, Result, Shape};
use std::collections::HashMap;
use std::sync::Mutex;

/// NVRTC flags: no fused multiply-add contraction, no flush to zero, IEEE
/// division and square root. Recorded in every CUDA run's environment.
pub const COMPILE_FLAGS: [&str; 4] = [
    "--fmad=false",
    "--ftz=false",
    "--prec-div=true",
    "--prec-sqrt=true",
];

const MODULE: &str = "infer_eval_kernels";
const THREADS: u32 = super::defs::CUDA_BLOCK;

/// The kernel sources as one translation unit (NVRTC has no file system:
/// the local `#include`s and include guards are resolved here, in order).
pub fn kernel_source() -> String {
    let parts = [
        include_str!("../../kernels/det_math.cuh"),
        include_str!("../../kernels/dequant.cuh"),
        include_str!("../../kernels/matmul.cu"),
        include_str!("../../kernels/layers.cu"),
    ];
    let mut src = String::new();
    for p in parts {
        for line in p.lines() {
            let t = line.trim_start();
            if t.starts_with("#include \"") || t.starts_with("#pragma once") {
                continue;
            }
            src.push_str(line);
            src.push('\n');
        }
    }
    src
}

/// PTX per compute capability ("compute_90"), compiled on first use.
static PTX: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

pub fn compute_capability(dev: &CudaDevice) -> Result<(i32, i32)> {
    use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute as A;
    let stream = dev.cuda_stream();
    let ctx = stream.context();
    let major = ctx
        .attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .w()?;
    let minor = ctx
        .attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
        .w()?;
    Ok((major, minor))
}

fn ptx(dev: &CudaDevice) -> Result<String> {
    let (major, minor) = compute_capability(dev)?;
    let arch = format!("compute_{major}{minor}");
    let mut cache = PTX.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(&arch) {
        return Ok(p.clone());
    }
    let opts = CompileOptions {
        fmad: Some(false),
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        use_fast_math: Some(false),
        // cudarc wants a 'static str; one per architecture per process.
        arch: Some(Box::leak(arch.clone().into_boxed_str())),
        name: Some("infer_eval_kernels.cu".into()),
        ..Default::default()
    };
    let p = compile_ptx_with_opts(kernel_source(), opts)
        .map_err(|e| {
            candle_core::Error::Cuda(format!("NVRTC could not compile kernels/*.cu: {e}").into())
        })?
        .to_src();
    map.insert(arch, p.clone());
    Ok(p)
}

/// Compile the kernels for this device now (so that a toolchain problem shows
/// at start-up, not in the middle of a run).
pub fn warm_up(dev: &CudaDevice) -> Result<()> {
    let p = ptx(dev)?;
    dev.get_or_load_custom_func("swiglu", MODULE, &p)?;
    Ok(())
}

/// Device memory for an output the kernels write in full (every element is
/// stored before anything reads it), so it needs no zeroing launch.
fn alloc<T: candle_core::cuda_backend::cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    len: usize,
) -> Result<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>> {
    // Safety: see above; callers only pass buffers their kernels fill.
    unsafe { dev.alloc::<T>(len) }
}

/// Kernels index threads in 64 bits (kernels/*.cu); the grid is computed
/// in 64 bits too, so no launch wraps.
fn launch_cfg(threads: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig {
        grid_dim: (super::defs::cuda_grid(threads as u64)?, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

fn format_id(fmt: WeightFormat) -> i32 {
    // The enum of kernels/dequant.cuh.
    match fmt {
        WeightFormat::F32 => 0,
        WeightFormat::F16 => 1,
        WeightFormat::BF16 => 2,
        WeightFormat::Q4_0 => 3,
        WeightFormat::Q4_1 => 4,
        WeightFormat::Q8_0 => 5,
        WeightFormat::Q4K => 6,
        WeightFormat::Q6K => 7,
        WeightFormat::Q5_0 => 8,
    }
}

fn view<'a, T: candle_core::cuda_backend::CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
    op: &str,
) -> Result<CudaView<'a, T>> {
    let slice = s
        .as_cuda_slice::<T>()
        .map_err(|_| candle_core::Error::Msg(format!("{op}: unexpected dtype {:?}", s.dtype())))?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(slice.slice(a..b)),
        None => bail!("{op}: input must be contiguous"),
    }
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        candle_core::Error::Msg(format!("{what} = {v} is too large for the CUDA kernels"))
    })
}

/// Our wrapper of Candle's launch: the function of our module, on Candle's stream.
macro_rules! launch {
    ($dev:expr, $name:expr, $threads:expr, $($arg:expr),+ $(,)?) => {{
        let f = $dev.get_or_load_custom_func($name, MODULE, &ptx($dev)?)?;
        let mut b = f.builder();
        $( b.arg($arg); )+
        // Safety: argument types and order match the kernel's signature in kernels/*.cu.
        let cfg = launch_cfg($threads)?;
        unsafe { b.launch(cfg) }.w()?;
    }};
}

pub fn matmul(
    op: &super::defs::MatMul,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let x = view::<f32>(s1, l1, "det-matmul")?;
    let w = view::<u8>(s2, l2, "det-matmul")?;
    let (m, shape) = op.check(l1.shape(), w.len())?;
    let (fmt, n, k) = (op.fmt, op.n, op.k);
    let rb = fmt.row_bytes(k).expect("checked") as i64;
    let mut y = alloc::<f32>(dev, m * n)?;
    let (fi, mi, ni, ki) = (
        format_id(fmt),
        i32_of(m, "rows")?,
        i32_of(n, "n")?,
        i32_of(k, "k")?,
    );
    if m > 0 && n > 0 {
        if qdot::is_integer_format(fmt) {
            let blocks = m * k / 32;
            let bi = i32_of(blocks, "blocks")?;
            let mut xq = alloc::<i8>(dev, m * k)?;
            let mut xd = alloc::<f32>(dev, blocks)?;
            let mut xs = alloc::<f32>(dev, blocks)?;
            launch!(
                dev,
                "quantize_q8",
                blocks * 32,
                &x,
                &mut xq,
                &mut xd,
                &mut xs,
                &bi
            );
            launch!(
                dev,
                "matmul_int",
                m * n * 8,
                &fi,
                &w,
                &rb,
                &xq,
                &xd,
                &xs,
                &mut y,
                &mi,
                &ni,
                &ki
            );
        } else {
            launch!(
                dev,
                "matmul_float",
                m * n * 32,
                &fi,
                &w,
                &rb,
                &x,
                &mut y,
                &mi,
                &ni,
                &ki
            );
        }
    }
    Ok((CudaStorage::wrap_cuda_slice(y, dev.clone()), shape))
}

pub fn embedding(
    op: &super::defs::Embedding,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let ids = view::<u32>(s1, l1, "det-embedding")?;
    // Ids are few (one per new token): check them on the host, as the CPU does.
    let host = dev.clone_dtoh(&ids)?;
    op.check_ids(&host)?;
    let (fmt, k) = (op.fmt, op.k);
    let w = view::<u8>(s2, l2, "det-embedding")?;
    let rb = fmt.row_bytes(k).unwrap_or(0) as i64;
    let count = host.len();
    let mut out = alloc::<f32>(dev, count * k)?;
    if count > 0 {
        let (fi, ci, ki) = (format_id(fmt), i32_of(count, "ids")?, i32_of(k, "k")?);
        launch!(
            dev,
            "gather_rows",
            count * k,
            &fi,
            &w,
            &rb,
            &ids,
            &mut out,
            &ci,
            &ki
        );
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        Shape::from((count, k)),
    ))
}

pub fn rms_norm(
    op: &super::defs::RmsNorm,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let x = view::<f32>(s1, l1, "det-rms-norm")?;
    let w = view::<f32>(s2, l2, "det-rms-norm")?;
    let n = w.len();
    let rows = super::defs::RmsNorm::check(l1.shape(), n)?;
    let eps = op.eps;
    let mut y = alloc::<f32>(dev, x.len())?;
    if rows > 0 {
        let (ri, ni) = (i32_of(rows, "rows")?, i32_of(n, "n")?);
        launch!(dev, "rms_norm", rows * 32, &x, &w, &mut y, &ri, &ni, &eps);
    }
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev.clone()),
        l1.shape().clone(),
    ))
}

pub fn rope(
    op: &super::defs::Rope,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let x = view::<f32>(s1, l1, "det-rope")?;
    let cos = view::<f32>(s2, l2, "det-rope")?;
    let sin = view::<f32>(s3, l3, "det-rope")?;
    let (rows, row) = op.check(l1.shape(), cos.len())?;
    let (head_dim, rope_dims, layout, pos0) = (op.head_dim, op.rope_dims, op.layout, op.pos0);
    let mut out = alloc::<f32>(dev, x.len())?;
    dev.memcpy_dtod(&x, &mut out)?;
    if rows > 0 {
        let inter = i32::from(matches!(layout, RopeLayout::Interleaved));
        let (ri, li, hi, di, pi) = (
            i32_of(rows, "rows")?,
            i32_of(row, "row length")?,
            i32_of(head_dim, "head_dim")?,
            i32_of(rope_dims, "rope_dims")?,
            i32_of(pos0, "position")?,
        );
        launch!(
            dev,
            "rope",
            rows * (row / head_dim.max(1)) * (rope_dims / 2),
            &mut out,
            &cos,
            &sin,
            &ri,
            &li,
            &hi,
            &di,
            &inter,
            &pi
        );
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        l1.shape().clone(),
    ))
}

pub fn elementwise(
    op: &super::defs::Elementwise,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    use candle_core::CustomOp2;
    let kernel = match op.kind {
        super::defs::ElementwiseKind::SwiGlu => "swiglu",
        super::defs::ElementwiseKind::Add => "add",
        super::defs::ElementwiseKind::GeGlu => "geglu",
    };
    let dev = &s1.device;
    let a = view::<f32>(s1, l1, op.name())?;
    let b = view::<f32>(s2, l2, op.name())?;
    op.check(a.len(), b.len())?;
    let n = a.len();
    let mut y = alloc::<f32>(dev, n)?;
    if n > 0 {
        let n64 = n as i64;
        launch!(dev, kernel, n, &a, &b, &mut y, &n64);
    }
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev.clone()),
        l1.shape().clone(),
    ))
}

pub fn attention(
    op: &super::defs::Attention,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let q = view::<f32>(s1, l1, "det-attention")?;
    let k = view::<f32>(s2, l2, "det-attention")?;
    let v = view::<f32>(s3, l3, "det-attention")?;
    let AttnShape {
        n_heads,
        n_kv_heads,
        head_dim,
        scale,
        softcap,
        window,
    } = op.shape;
    let softcap = softcap.unwrap_or(0.0);
    let window = i32_of(window.unwrap_or(0), "window")?;
    let pos0 = op.pos0;
    let rows = op.check(q.len(), k.len(), v.len())?;
    let max_pos = pos0 + rows;
    let mut out = alloc::<f32>(dev, q.len())?;
    if rows > 0 {
        // One row of scores per (query row, head): the softmax is over all of them.
        let mut scores = alloc::<f32>(dev, rows * n_heads * max_pos)?;
        let (ri, hi, kvi, di, pi, mpi) = (
            i32_of(rows, "rows")?,
            i32_of(n_heads, "heads")?,
            i32_of(n_kv_heads, "kv heads")?,
            i32_of(head_dim, "head_dim")?,
            i32_of(pos0, "position")?,
            i32_of(max_pos, "positions")?,
        );
        launch!(
            dev,
            "attention",
            rows * n_heads * 32,
            &q,
            &k,
            &v,
            &mut out,
            &mut scores,
            &ri,
            &hi,
            &kvi,
            &di,
            &pi,
            &mpi,
            &scale,
            &softcap,
            &window
        );
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        l1.shape().clone(),
    ))
}

pub fn map(op: &super::defs::Map, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    use candle_core::CustomOp1;
    let dev = &s.device;
    let x = view::<f32>(s, l, op.name())?;
    let n = x.len();
    let mut y = alloc::<f32>(dev, n)?;
    if n > 0 {
        let n64 = n as i64;
        match op.kind {
            super::defs::MapKind::Scale(v) => launch!(dev, "scale", n, &x, &mut y, &n64, &v),
            super::defs::MapKind::Softcap(c) => launch!(dev, "softcap", n, &x, &mut y, &n64, &c),
        }
    }
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev.clone()),
        l.shape().clone(),
    ))
}

pub fn add_bias(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let x = view::<f32>(s1, l1, "det-add-bias")?;
    let b = view::<f32>(s2, l2, "det-add-bias")?;
    super::defs::AddBias::check(l1.shape(), b.len())?;
    let n = x.len();
    let mut y = alloc::<f32>(dev, n)?;
    if n > 0 {
        let (n64, ci) = (n as i64, i32_of(b.len(), "bias length")?);
        launch!(dev, "add_bias", n, &x, &b, &mut y, &n64, &ci);
    }
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev.clone()),
        l1.shape().clone(),
    ))
}
