// Dequantisation of one element, with the formulas of docs §3
// (src/kernels/quant.rs): every product and sum rounded as written.
#pragma once
#include "det_math.cuh"

enum WeightFormat { F32 = 0, F16 = 1, BF16 = 2, Q4_0 = 3, Q4_1 = 4, Q8_0 = 5, Q4K = 6, Q6K = 7, Q5_0 = 8 };

// Q5_0's 5-bit integer of element j (0..32) of block b: the nibble, and bit j of qh as bit 4.
__device__ __forceinline__ int q5_0_int(const unsigned char* b, int j) {
    unsigned int qh = b[2] | (b[3] << 8) | (b[4] << 16) | ((unsigned int)b[5] << 24);
    int nib = j < 16 ? (b[6 + j] & 0xF) : (b[6 + j - 16] >> 4);
    return (nib | (((qh >> j) & 1u) << 4)) - 16;
}

__device__ __forceinline__ float dequant(int fmt, const unsigned char* row, int k) {
    switch (fmt) {
    case F32: return __int_as_float(row[4*k] | (row[4*k+1] << 8) | (row[4*k+2] << 16) | (row[4*k+3] << 24));
    case F16: return half_at(row + 2*k);
    case BF16: return __int_as_float((row[2*k] | (row[2*k+1] << 8)) << 16);
    case Q4_0: {
        const unsigned char* b = row + (k / 32) * 18; int j = k % 32;
        int q = j < 16 ? (b[2 + j] & 0xF) : (b[2 + j - 16] >> 4);
        return __fmul_rn(half_at(b), (float)(q - 8));
    }
    case Q4_1: {
        const unsigned char* b = row + (k / 32) * 20; int j = k % 32;
        int q = j < 16 ? (b[4 + j] & 0xF) : (b[4 + j - 16] >> 4);
        return __fadd_rn(__fmul_rn(half_at(b), (float)q), half_at(b + 2));
    }
    case Q5_0: {
        const unsigned char* b = row + (k / 32) * 22;
        return __fmul_rn(half_at(b), (float)q5_0_int(b, k % 32));
    }
    case Q8_0: {
        const unsigned char* b = row + (k / 32) * 34; int j = k % 32;
        return __fmul_rn(half_at(b), (float)(signed char)b[2 + j]);
    }
    case Q4K: {
        const unsigned char* b = row + (k / 256) * 144; int e = k % 256;
        int g = e / 64, l = e % 32, hi = (e % 64) >= 32, sub = 2 * g + hi;
        const unsigned char* sc = b + 4;
        int s, m;
        if (sub < 4) { s = sc[sub] & 63; m = sc[sub + 4] & 63; }
        else { s = (sc[sub + 4] & 0xF) | ((sc[sub - 4] >> 6) << 4); m = (sc[sub + 4] >> 4) | ((sc[sub] >> 6) << 4); }
        int q = hi ? (b[16 + g * 32 + l] >> 4) : (b[16 + g * 32 + l] & 0xF);
        float dl = __fmul_rn(half_at(b), (float)s), ml = __fmul_rn(half_at(b + 2), (float)m);
        return __fsub_rn(__fmul_rn(dl, (float)q), ml);
    }
    default: {  // Q6K
        const unsigned char* b = row + (k / 256) * 210; int e = k % 256;
        int half_ = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
        const unsigned char* ql = b + half_ * 64; const unsigned char* qh = b + 128 + half_ * 32;
        const signed char* sc = (const signed char*)(b + 192 + half_ * 8);
        int lo = (quarter & 1) ? ql[l + 32] : ql[l];
        lo = (quarter >= 2) ? (lo >> 4) : (lo & 0xF);
        int q = (lo | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
        float d = half_at(b + 208);
        return __fmul_rn(__fmul_rn(d, (float)sc[l / 16 + 2 * quarter]), (float)q);
    }
    }
}
