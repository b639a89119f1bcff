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

// tanh (docs §4b, src/numerics/math.rs tanh_f32): Taylor for |x| < 0.5,
// 1 - 2 / (exp(2|x|) + 1) below 9, +-1 beyond.
__device__ __forceinline__ float det_tanh(float x) {
    if (isnan(x)) return x;
    float a = fabsf(x);
    if (a >= 9.0f) return copysignf(1.0f, x);
    if (a == 0.0f) return x;
    if (a < 0.5f) {
        const float q[8] = {-1.0f / 3.0f, 2.0f / 15.0f, -17.0f / 315.0f, 62.0f / 2835.0f,
                            -1382.0f / 155925.0f, 21844.0f / 6081075.0f, -929569.0f / 638512875.0f,
                            6404582.0f / 10854718875.0f};
        float y2 = __fmul_rn(x, x);
        float p = q[7];
        for (int i = 6; i >= 0; i--) p = __fmaf_rn(p, y2, q[i]);
        return __fmaf_rn(__fmul_rn(x, y2), p, x);
    }
    float e = det_exp(__fmul_rn(2.0f, a));
    return copysignf(__fsub_rn(1.0f, __fdiv_rn(2.0f, __fadd_rn(e, 1.0f))), x);
}

// The tanh GELU: (0.5 x)(1 + tanh((c x)(1 + (a x) x))), c = sqrt(2/pi), a = 0.044715.
__device__ __forceinline__ float det_gelu_tanh(float x) {
    float u = __fmul_rn(__fmul_rn(0.7978846f, x), __fadd_rn(1.0f, __fmul_rn(__fmul_rn(0.044715f, x), x)));
    return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, det_tanh(u)));
}

// Soft-capping: tanh(x * inv_cap) * cap.
__device__ __forceinline__ float det_softcap(float x, float inv_cap, float cap) {
    return __fmul_rn(det_tanh(__fmul_rn(x, inv_cap)), cap);
}

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
