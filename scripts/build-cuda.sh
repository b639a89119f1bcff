#!/usr/bin/env bash
# Build the CUDA binary, on a machine with or without a CUDA toolkit or GPU:
#
#   scripts/build-cuda.sh           # -> target/cuda/release/infer-eval, and a stripped
#                                   #    copy at target/cuda/infer-eval-cuda
#   scripts/build-cuda.sh --check   # type-check the cuda feature only
#
# With an installed toolkit (nvcc on PATH and libcuda.so found by the linker) it
# is used; otherwise scripts/cuda-toolchain.sh assembles CUDA 13.0 from PyPI.
# CUDA_COMPUTE_CAP (default 90, the H100) only affects Candle's own kernels;
# ours are compiled by NVRTC at run time for the GPU that runs them.
# The first build compiles Candle's CUDA kernels with nvcc (about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvcc >/dev/null && ldconfig -p 2>/dev/null | grep -q 'libcuda.so '; then
  echo "build-cuda: using the installed toolkit ($(command -v nvcc))" >&2
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
else
  eval "$(scripts/cuda-toolchain.sh)"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
if [ "${1:-}" = "--check" ]; then
  exec cargo check --locked --release --features cuda,contrast --all-targets
fi
cargo build --locked --release --features cuda,contrast
cp "$CARGO_TARGET_DIR/release/infer-eval" "$CARGO_TARGET_DIR/infer-eval-cuda"
strip "$CARGO_TARGET_DIR/infer-eval-cuda"
ls -l "$CARGO_TARGET_DIR/infer-eval-cuda" >&2
echo "build-cuda: run it where the NVIDIA driver is, e.g. LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib $CARGO_TARGET_DIR/infer-eval-cuda --device cuda" >&2
