// y = x W^T (docs §2, §3, §3b). One warp per output for the f32 path; eight
// threads per output for the integer path. Each output is computed whole by
// one warp or group, so neither batch size nor launch shape changes a bit.
// Thread, warp and output indices are 64-bit: all-position logits of a
// 262k vocabulary over a 512-token chunk are 2^32 threads.
#include "dequant.cuh"

// Float formats (F32, F16, BF16, Q4_K, Q6_K): y[t][r] = dot(dequant(W[r]), x[t]).
extern "C" __global__ void matmul_float(int fmt, const unsigned char* w, long row_bytes, const float* x,
                                        float* y, int m, int n, int k) {
    long warp = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (warp >= (long)m * n) return;
    long t = warp / n, r = warp % n;
    const unsigned char* row = w + (long)r * row_bytes;
    const float* xt = x + (long)t * k;
    float acc = 0.0f;
    for (int kk = lane; kk < k; kk += 32) acc = __fmaf_rn(dequant(fmt, row, kk), xt[kk], acc);
    acc = warp_tree(acc);
    if (lane == 0) y[(long)t * n + r] = acc;
}

// Activation quantisation (§3b): one warp per 32-element block of x.
extern "C" __global__ void quantize_q8(const float* x, signed char* q, float* d, float* s, int blocks) {
    long b = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (b >= blocks) return;
    float v = x[b * 32 + lane];
    // As the CPU: a block holding a NaN or an infinity gets NaN scales (and
    // q = 0), so every output reading it is NaN, as in the float formats.
    int bad = !isfinite(v);
    for (int off = 16; off > 0; off >>= 1) bad |= __shfl_xor_sync(0xffffffffu, bad, off);
    if (bad) {
        q[b * 32 + lane] = 0;
        if (lane == 0) {
            d[b] = __int_as_float(0x7fc00000);
            s[b] = __int_as_float(0x7fc00000);
        }
        return;
    }
    float a = fabsf(v);
    float amax = a > 0.0f ? a : 0.0f;
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));  // max is exact
    float dd = __fdiv_rn(amax, 127.0f);
    float id = amax != 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    float qf = rintf(__fmul_rn(v, id));  // round half to even
    int qi = qf != qf ? 0 : (int)fminf(fmaxf(qf, -127.0f), 127.0f);
    q[b * 32 + lane] = (signed char)qi;
    int sum = qi;
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);  // integers: exact
    if (lane == 0) {
        d[b] = round_to_half(dd);
        s[b] = round_to_half(__fmul_rn(dd, (float)sum));
    }
}

// Integer formats (Q4_0, Q4_1, Q5_0, Q8_0) against quantised x (§3b). Eight lanes
// per output, lane l holding the canonical lane l: for each block in order,
// the exact sum of its 4 products, folded in with fma; then the fixed tree
// of 8 (+4, +2, +1) by shuffles, and lane 0 adds the Q4_1 term, which it
// alone accumulates in block order. Launch m * n * 8 threads, blocks of a
// multiple of 32: no lane returns early, as every lane takes part in the
// shuffles; lanes past the last output compute a copy of output 0 and
// store nothing.
extern "C" __global__ void matmul_int(int fmt, const unsigned char* w, long row_bytes, const signed char* xq,
                                      const float* xd, const float* xs, float* y, int m, int n, int k) {
    long gid = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 8;
    int l = threadIdx.x % 8;
    bool live = gid < (long)m * n;
    long i = live ? gid : 0;
    long t = i / n, r = i % n;
    int nb = k / 32;
    int bb = fmt == Q4_0 ? 18 : (fmt == Q4_1 ? 20 : (fmt == Q5_0 ? 22 : 34));
    const unsigned char* row = w + (long)r * row_bytes;
    float acc = 0.0f, acc_m = 0.0f;
    for (int b = 0; b < nb; b++) {
        const unsigned char* blk = row + (long)b * bb;
        const signed char* q = xq + ((long)t * nb + b) * 32;
        float scale = __fmul_rn(half_at(blk), xd[(long)t * nb + b]);
        int isum = 0;
        for (int j = 4 * l; j < 4 * l + 4; j++) {
            int wj;
            if (fmt == Q8_0) wj = (signed char)blk[2 + j];
            else if (fmt == Q5_0) wj = q5_0_int(blk, j);
            else {
                const unsigned char* qs = blk + (fmt == Q4_0 ? 2 : 4);
                wj = j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4);
                if (fmt == Q4_0) wj -= 8;
            }
            isum += wj * (int)q[j];
        }
        acc = __fmaf_rn(scale, (float)isum, acc);
        if (fmt == Q4_1 && l == 0) acc_m = __fmaf_rn(half_at(blk + 2), xs[(long)t * nb + b], acc_m);
    }
    // Lanes 0..3 take lanes 4..7, then 0..1 take 2..3, then 0 takes 1; the
    // values other lanes pick up from the next group are never used.
    acc = __fadd_rn(acc, __shfl_down_sync(0xffffffffu, acc, 4));
    acc = __fadd_rn(acc, __shfl_down_sync(0xffffffffu, acc, 2));
    acc = __fadd_rn(acc, __shfl_down_sync(0xffffffffu, acc, 1));
    if (live && l == 0) y[(long)t * n + r] = fmt == Q4_1 ? __fadd_rn(acc, acc_m) : acc;
}

// Embedding lookup: out[i] = dequant(W[ids[i]]).
extern "C" __global__ void gather_rows(int fmt, const unsigned char* w, long row_bytes, const unsigned int* ids,
                                       float* out, int count, int k) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)count * k) return;
    long t = i / k;
    int kk = i % k;
    out[i] = dequant(fmt, w + (long)ids[t] * row_bytes, kk);
}
