#!/usr/bin/env bash
# A CUDA 13.0 toolchain for building `--features cuda` on a machine with no CUDA
# toolkit and no GPU, from NVIDIA's PyPI wheels, plus a link-time stub of
# libcuda.so. Prints the environment to export (progress goes to stderr):
#
#   eval "$(scripts/cuda-toolchain.sh)"
#
# Why 13.0: the GPUs we verify on run driver 580 (CUDA 13.0); a newer nvcc
# writes PTX that driver refuses. Why a stub: Candle links cudarc with
# dynamic linking, so the linker wants libcuda.so; the stub has the driver
# API's symbols (read from the cudarc source cargo fetched) under the soname
# libcuda.so.1, and at run time the loader finds the real driver by that name.
# Our own kernels need none of this: NVRTC compiles them when the program starts.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${INFER_EVAL_CUDA_HOME:-$HOME/.cache/infer-eval/cuda-13.0}
WHEELS="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
        nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35"
ROOT=$DIR/root/nvidia/cu13
if [ ! -x "$ROOT/bin/nvcc" ] || [ ! -d "$ROOT/nvvm" ] || [ ! -e "$ROOT/lib/libcublas.so.13" ]; then
  mkdir -p "$DIR/wheels" "$DIR/root"
  echo "cuda-toolchain: downloading the CUDA 13.0 wheels into $DIR/wheels" >&2
  python3 -m pip download -q --no-deps -d "$DIR/wheels" $WHEELS >&2
  for w in "$DIR"/wheels/*.whl; do python3 -m zipfile -e "$w" "$DIR/root" >&2; done
  chmod +x "$ROOT"/bin/* "$ROOT"/nvvm/bin/* 2>/dev/null || true
fi
LINK=$DIR/link
mkdir -p "$LINK"
for l in cublas cublasLt cudart nvrtc; do ln -sf "$ROOT/lib/lib$l.so.13" "$LINK/lib$l.so"; done
ln -sf "$ROOT/lib/libcurand.so.10" "$LINK/libcurand.so"
# The driver API symbols cudarc binds: the `pub unsafe fn cu...` of its sys module.
cargo fetch --locked -q >&2 || cargo fetch -q >&2
CUDARC=$(cargo metadata --format-version 1 --features cuda 2>/dev/null |
  python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')
grep -o '^pub unsafe fn cu[A-Za-z0-9_]*' "$CUDARC/src/driver/sys/mod.rs" | awk '{print "void " $4 "(void) {}"}' | sort -u > "$LINK/libcuda-stub.c.new"
if ! cmp -s "$LINK/libcuda-stub.c.new" "$LINK/libcuda-stub.c" || [ ! -e "$LINK/libcuda.so" ]; then
  mv "$LINK/libcuda-stub.c.new" "$LINK/libcuda-stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 "$LINK/libcuda-stub.c" -o "$LINK/libcuda.so"
  echo "cuda-toolchain: libcuda stub with $(wc -l < "$LINK/libcuda-stub.c") symbols from $CUDARC" >&2
fi
rm -f "$LINK/libcuda-stub.c.new"
echo "export PATH=\"$ROOT/bin:\$PATH\""
echo "export CUDA_ROOT=\"$ROOT\" CUDA_PATH=\"$ROOT\""
echo "export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
echo "export LIBRARY_PATH=\"$LINK\${LIBRARY_PATH:+:\$LIBRARY_PATH}\""
