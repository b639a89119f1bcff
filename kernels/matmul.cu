// y = x W^T (docs §2, §3, §3b). One warp per output for the f32 path; one
// thread per output for the integer path. Each output is computed whole by
// one warp or thread, so neither batch size nor launch shape changes a bit.
#include "dequant.cuh"

// Float formats (F32, F16, BF16, Q4_K, Q6_K): y[t][r] = dot(dequant(W[r]), x[t]).
extern "C" __global__ void matmul_float(int fmt, const unsigned char* w, long row_bytes, const float* x,
                                        float* y, int m, int n, int k) {
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (warp >= m * n) return;
    int t = warp / n, r = warp % n;
    const unsigned char* row = w + (long)r * row_bytes;
    const float* xt = x + (long)t * k;
    float acc = 0.0f;
    for (int kk = lane; kk < k; kk += 32) acc = __fmaf_rn(dequant(fmt, row, kk), xt[kk], acc);
    acc = warp_tree(acc);
    if (lane == 0) y[(long)t * n + r] = acc;
}

// Activation quantisation (§3b): one warp per 32-element block of x.
extern "C" __global__ void quantize_q8(const float* x, signed char* q, float* d, float* s, int blocks) {
    int b = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (b >= blocks) return;
    float v = x[b * 32 + lane];
    // As the CPU: amax starts at 0 and ignores NaN; a NaN product quantises to 0.
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

// Integer formats (Q4_0, Q4_1, Q8_0) against quantised x: 8 exact lane sums
// per block, combined with fma in block order, then the fixed tree of 8.
extern "C" __global__ void matmul_int(int fmt, const unsigned char* w, long row_bytes, const signed char* xq,
                                      const float* xd, const float* xs, float* y, int m, int n, int k) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)m * n) return;
    int t = i / n, r = i % n, nb = k / 32;
    int bb = fmt == Q4_0 ? 18 : (fmt == Q4_1 ? 20 : 34);
    const unsigned char* row = w + (long)r * row_bytes;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float acc_m = 0.0f;
    for (int b = 0; b < nb; b++) {
        const unsigned char* blk = row + (long)b * bb;
        const signed char* q = xq + ((long)t * nb + b) * 32;
        float scale = __fmul_rn(half_at(blk), xd[(long)t * nb + b]);
        for (int l = 0; l < 8; l++) {
            int isum = 0;
            for (int j = 4 * l; j < 4 * l + 4; j++) {
                int wj;
                if (fmt == Q8_0) wj = (signed char)blk[2 + j];
                else {
                    const unsigned char* qs = blk + (fmt == Q4_0 ? 2 : 4);
                    wj = j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4);
                    if (fmt == Q4_0) wj -= 8;
                }
                isum += wj * (int)q[j];
            }
            acc[l] = __fmaf_rn(scale, (float)isum, acc[l]);
        }
        if (fmt == Q4_1) acc_m = __fmaf_rn(half_at(blk + 2), xs[(long)t * nb + b], acc_m);
    }
    for (int l = 0; l < 4; l++) acc[l] = __fadd_rn(acc[l], acc[l + 4]);
    for (int l = 0; l < 2; l++) acc[l] = __fadd_rn(acc[l], acc[l + 2]);
    float v = __fadd_rn(acc[0], acc[1]);
    y[(long)t * n + r] = fmt == Q4_1 ? __fadd_rn(v, acc_m) : v;
}

// Embedding lookup: out[i] = dequant(W[ids[i]]).
extern "C" __global__ void gather_rows(int fmt, const unsigned char* w, long row_bytes, const unsigned int* ids,
                                       float* out, int count, int k) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)count * k) return;
    int t = i / k, kk = i % k;
    out[i] = dequant(fmt, w + (long)ids[t] * row_bytes, kk);
}
