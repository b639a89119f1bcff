// Deterministic math for the CUDA backend: the same operations, in the same
// order, as src/numerics/math.rs and docs/DETERMINISM.md. Compile with
// --fmad=false --ftz=false --prec-div=true --prec-sqrt=true (no fast math).
#pragma once

__device__ __forceinline__ float det_exp(float x) {
    if (isnan(x)) return x;
    if (x > 88.0f) return __int_as_float(0x7f800000);
    if (x < -87.0f) return 0.0f;
    float n = rintf(__fmul_rn(x, 1.44269504088896341f));  // round half to even
    float r = __fmaf_rn(-n, 0.693145751953125f, x);
    r = __fmaf_rn(-n, 1.428606765330187045e-06f, r);
    float p = 1.0f / 5040.0f;
    p = __fmaf_rn(p, r, 1.0f / 720.0f);
    p = __fmaf_rn(p, r, 1.0f / 120.0f);
    p = __fmaf_rn(p, r, 1.0f / 24.0f);
    p = __fmaf_rn(p, r, 1.0f / 6.0f);
    p = __fmaf_rn(p, r, 0.5f);
    p = __fmaf_rn(p, r, 1.0f);
    p = __fmaf_rn(p, r, 1.0f);
    int e = (int)n + 127;
    return __fmul_rn(p, __int_as_float(e << 23));
}

__device__ __forceinline__ float det_silu(float x) { return __fdiv_rn(x, __fadd_rn(1.0f, det_exp(-x))); }

// f16 <-> f32 with PTX conversions (exact one way, round-to-nearest-even the
// other), so that no CUDA header is needed by NVRTC. The CPU emulator of
// tests/cuda_emulator uses the same conversions from F16C.
#ifdef INFER_EVAL_EMULATE
__device__ __forceinline__ float h2f(unsigned short h) { return _cvtsh_ss(h); }
__device__ __forceinline__ float round_to_half(float x) { return h2f(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)); }
#else
__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ float round_to_half(float x) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h2f(h);
}
#endif
__device__ __forceinline__ float half_at(const unsigned char* p) {
    return h2f((unsigned short)(p[0] | (p[1] << 8)));
}

// The canonical 32-lane dot (docs §2) across one warp: lane j accumulates
// k = j, j+32, ... with fma, then the fixed tree 16, 8, 4, 2, 1.
// Every lane must call it; the result is in lane 0.
__device__ __forceinline__ float warp_tree(float acc) {
    for (int off = 16; off > 0; off >>= 1) acc = __fadd_rn(acc, __shfl_down_sync(0xffffffffu, acc, off));
    return acc;
}
