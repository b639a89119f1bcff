#!/usr/bin/env python3
"""Compile every kernels/*.cu to PTX with NVRTC, with the flags the CUDA
backend uses, on a machine without a GPU. NVRTC comes from NVIDIA's PyPI
wheel at 13.0 (the verified H100 driver refuses PTX from newer compilers).

  python3 scripts/cuda-ptx-check.py [--arch compute_90] [--out DIR]
"""
import argparse, ctypes, glob, os, pathlib, subprocess, sys, tempfile, zipfile

FLAGS = ["--fmad=false", "--ftz=false", "--prec-div=true", "--prec-sqrt=true", "-default-device", "--std=c++17"]

def nvrtc_lib(cache):
    libs = glob.glob(os.path.join(cache, "**", "libnvrtc.so*"), recursive=True)
    if not libs:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", cache,
                        "nvidia-cuda-nvrtc==13.0.88"], check=True)
        for whl in glob.glob(os.path.join(cache, "*.whl")):
            zipfile.ZipFile(whl).extractall(cache)
        libs = glob.glob(os.path.join(cache, "**", "libnvrtc.so*"), recursive=True)
    # load the builtins library first, then nvrtc itself
    for b in glob.glob(os.path.join(cache, "**", "libnvrtc-builtins.so*"), recursive=True):
        ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
    return ctypes.CDLL(sorted(libs, key=len)[0])

def compile_one(lib, path, arch, include):
    prog = ctypes.c_void_p()
    src = pathlib.Path(path).read_bytes()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src, os.path.basename(path).encode(), 0, None, None) != 0:
        raise RuntimeError("nvrtcCreateProgram failed")
    opts = [o.encode() for o in FLAGS + [f"--gpu-architecture={arch}", f"--include-path={include}"]]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    if rc != 0:
        return None, log.value.decode(errors="replace")
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(prog, ptx)
    return ptx.value.decode(), log.value.decode(errors="replace")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="compute_90")
    ap.add_argument("--out", default=None, help="write the PTX files here")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "infer-eval-nvrtc"))
    a = ap.parse_args()
    root = pathlib.Path(__file__).resolve().parent.parent
    lib = nvrtc_lib(a.cache)
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    print(f"NVRTC {major.value}.{minor.value}, {a.arch}, flags {' '.join(FLAGS)}")
    failed = 0
    for cu in sorted(root.glob("kernels/*.cu")):
        ptx, log = compile_one(lib, str(cu), a.arch, str(root / "kernels"))
        if ptx is None:
            failed += 1
            print(f"FAIL {cu.name}\n{log}")
            continue
        entries = [l.split()[-1].rstrip("(") for l in ptx.splitlines() if l.startswith(".visible .entry")]
        fma = sum(1 for l in ptx.splitlines() if "fma.rn.f32" in l)
        print(f"ok   {cu.name}: {len(ptx)} bytes of PTX, kernels {', '.join(entries)}; {fma} explicit fma.rn.f32")
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            pathlib.Path(a.out, cu.stem + ".ptx").write_text(ptx)
    sys.exit(1 if failed else 0)

if __name__ == "__main__":
    main()
