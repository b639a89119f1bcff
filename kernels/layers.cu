// RMSNorm, RoPE, SwiGLU and attention (docs §5, §6), one canonical order each.
#include "det_math.cuh"

// One warp per row: mean = dot(x, x) / n; r = 1 / sqrt(mean + eps); y = w * (x * r).
extern "C" __global__ void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps) {
    long row = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (long)row * n;
    float acc = 0.0f;
    for (int k = lane; k < n; k += 32) acc = __fmaf_rn(xr[k], xr[k], acc);
    acc = __shfl_sync(0xffffffffu, warp_tree(acc), 0);
    float mean = __fdiv_rn(acc, (float)n);
    float r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
    for (int k = lane; k < n; k += 32) y[(long)row * n + k] = __fmul_rn(w[k], __fmul_rn(xr[k], r));
}

// In place; row t at position pos0 + t; of each head the first rope_dims
// dimensions rotate, pairs (2i, 2i+1) if interleaved, else (i, i + rope_dims/2).
extern "C" __global__ void rope(float* x, const float* cos_t, const float* sin_t, int rows, int row_len,
                                int head_dim, int rope_dims, int interleaved, int pos0) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    int h = rope_dims / 2, heads = row_len / head_dim, pairs_per_row = heads * h;
    if (i >= (long)rows * pairs_per_row) return;
    long t = i / pairs_per_row;
    int p = i % pairs_per_row, head = p / h, j = p % h;
    float* hd = x + (long)t * row_len + head * head_dim;
    int ia = interleaved ? 2 * j : j, ib = interleaved ? 2 * j + 1 : j + h;
    float c = cos_t[(long)(pos0 + t) * h + j], s = sin_t[(long)(pos0 + t) * h + j];
    float a = hd[ia], b = hd[ib];
    hd[ia] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    hd[ib] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
}

extern "C" __global__ void swiglu(const float* g, const float* u, float* y, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fmul_rn(det_silu(g[i]), u[i]);
}

extern "C" __global__ void geglu(const float* g, const float* u, float* y, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fmul_rn(det_gelu_tanh(g[i]), u[i]);
}

extern "C" __global__ void scale(const float* x, float* y, long n, float s) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fmul_rn(x[i], s);
}

extern "C" __global__ void softcap(const float* x, float* y, long n, float cap) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    float inv = __fdiv_rn(1.0f, cap);
    if (i < n) y[i] = det_softcap(x[i], inv, cap);
}

// A bias on every row: y[r][c] = x[r][c] + b[c].
extern "C" __global__ void add_bias(const float* x, const float* b, float* y, long n, int cols) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(x[i], b[i % cols]);
}

// The residual connection: one IEEE single addition per element.
extern "C" __global__ void add(const float* a, const float* b, float* y, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(a[i], b[i]);
}

// One warp per (query row, head). scores: scratch of n_pos floats per warp.
// Scores are dot * scale, soft-capped if softcap > 0; a window > 0 keeps the
// last `window` positions of each query.
extern "C" __global__ void attention(const float* q, const float* k, const float* v, float* out, float* scores,
                                     int rows, int n_heads, int n_kv, int hd, int pos0, int max_pos,
                                     float scale, float softcap, int window) {
    long wid = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (wid >= (long)rows * n_heads) return;
    int t = wid / n_heads, h = wid % n_heads, g = h / (n_heads / n_kv);
    int n_pos = pos0 + t + 1, kv_row = n_kv * hd;
    int first = (window > 0 && n_pos > window) ? n_pos - window : 0;
    const float* qh = q + (long)t * n_heads * hd + h * hd;
    float* sc = scores + (long)wid * max_pos;
    float inv_cap = softcap > 0.0f ? __fdiv_rn(1.0f, softcap) : 0.0f;
    for (int i = first; i < n_pos; i++) {
        const float* kr = k + (long)i * kv_row + g * hd;
        float acc = 0.0f;
        for (int d = lane; d < hd; d += 32) acc = __fmaf_rn(qh[d], kr[d], acc);
        acc = warp_tree(acc);
        float s = __fmul_rn(acc, scale);
        if (softcap > 0.0f) s = det_softcap(s, inv_cap, softcap);
        if (lane == 0) sc[i] = s;
    }
    __syncwarp();
    float mx = __int_as_float(0xff800000);  // -inf
    for (int i = first; i < n_pos; i++) mx = fmaxf(mx, sc[i]);
    float sum = 0.0f;  // sequential in position order, as on the CPU
    for (int i = first; i < n_pos; i++) sum = __fadd_rn(sum, det_exp(__fsub_rn(sc[i], mx)));
    for (int d = lane; d < hd; d += 32) {
        float o = 0.0f;
        for (int i = first; i < n_pos; i++) {
            float p = __fdiv_rn(det_exp(__fsub_rn(sc[i], mx)), sum);
            o = __fmaf_rn(p, v[(long)i * kv_row + g * hd + d], o);
        }
        out[(long)t * n_heads * hd + h * hd + d] = o;
    }
}
