//! Which device runs the forward pass: `--device cpu|cuda|cuda:N`.
//!
//! One device per process, chosen at start-up like the kernel ISA. The CUDA
//! device is opened once, its kernels compiled by NVRTC right away, and its
//! facts (GPU, driver, NVRTC, flags) kept for the run record.

use crate::error::{Error, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The GPU facts a CUDA run records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CudaInfo {
    pub gpu_name: String,
    pub compute_capability: String,
    /// The kernel driver, from /proc/driver/nvidia/version.
    pub driver_version: String,
    /// The CUDA version the driver API speaks (cuDriverGetVersion).
    pub cuda_runtime_version: String,
    pub nvrtc_version: String,
    pub kernel_compile_flags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::Input(format!("--device '{s}': expected cpu, cuda or cuda:N"));
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            t => match t.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceSpec::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }

    pub fn name(&self) -> String {
        match self {
            DeviceSpec::Cpu => "cpu".into(),
            DeviceSpec::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

struct Selected {
    spec: DeviceSpec,
    opened: Option<(Device, Option<CudaInfo>)>,
}

static SELECTED: Mutex<Selected> = Mutex::new(Selected {
    spec: DeviceSpec::Cpu,
    opened: None,
});

/// Choose the device for this process (before the first `open`).
pub fn select(spec: DeviceSpec) -> Result<()> {
    let mut s = SELECTED.lock().unwrap_or_else(|e| e.into_inner());
    if s.opened.is_some() && s.spec != spec {
        return Err(Error::Input(format!(
            "the device is already {}; it cannot change to {} in one process",
            s.spec.name(),
            spec.name()
        )));
    }
    s.spec = spec;
    Ok(())
}

pub fn selected() -> DeviceSpec {
    SELECTED.lock().unwrap_or_else(|e| e.into_inner()).spec
}

/// The selected device, opened on first use.
pub fn open() -> Result<Device> {
    let mut s = SELECTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((d, _)) = &s.opened {
        return Ok(d.clone());
    }
    let opened = match s.spec {
        DeviceSpec::Cpu => (Device::Cpu, None),
        DeviceSpec::Cuda(n) => open_cuda(n)?,
    };
    s.opened = Some(opened.clone());
    Ok(opened.0)
}

/// The name and GPU facts of the device runs use ("cpu", or "cuda:0" and its facts).
pub fn describe() -> (String, Option<CudaInfo>) {
    let s = SELECTED.lock().unwrap_or_else(|e| e.into_inner());
    let info = s.opened.as_ref().and_then(|(_, i)| i.clone());
    (s.spec.name(), info)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(n: usize) -> Result<(Device, Option<CudaInfo>)> {
    Err(Error::Input(format!(
        "--device cuda:{n}: this binary was built without CUDA; build one with scripts/build-cuda.sh \
         (cargo build --release --features cuda)"
    )))
}

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> Result<(Device, Option<CudaInfo>)> {
    use candle_core::cuda_backend::cudarc;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::Resource(format!("--device cuda:{n}: {what}: {e}"))
    };
    let dev = Device::new_cuda(n).map_err(|e| fail("cannot open the GPU", &e))?;
    let cd = dev
        .as_cuda_device()
        .map_err(|e| fail("not a CUDA device", &e))?;
    crate::ops::cuda::warm_up(cd).map_err(|e| fail("kernels", &e))?;
    let stream = cd.cuda_stream();
    let (major, minor) =
        crate::ops::cuda::compute_capability(cd).map_err(|e| fail("device query", &e))?;
    let mut api = 0i32;
    // Safety: plain queries of the driver and NVRTC libraries, already loaded above.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut api) };
    let (mut vmaj, mut vmin) = (0i32, 0i32);
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut vmaj, &mut vmin) };
    let driver = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .skip_while(|w| *w != "Module")
                .nth(1)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    let info = CudaInfo {
        gpu_name: stream.context().name().unwrap_or_else(|_| "unknown".into()),
        compute_capability: format!("{major}.{minor}"),
        driver_version: driver,
        cuda_runtime_version: format!("{}.{}", api / 1000, (api % 1000) / 10),
        nvrtc_version: format!("{vmaj}.{vmin}"),
        kernel_compile_flags: crate::ops::cuda::COMPILE_FLAGS
            .iter()
            .map(|s| s.to_string())
            .chain([format!("--gpu-architecture=compute_{major}{minor}")])
            .collect(),
    };
    Ok((dev, Some(info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("cuda:3").unwrap(), DeviceSpec::Cuda(3));
        for bad in ["", "cuda:", "cuda:x", "tpu", "cuda:-1"] {
            assert!(DeviceSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
