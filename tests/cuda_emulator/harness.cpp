// Runs one kernel of kernels/*.cu on the CPU (see cuda_shim.h) for
// tests/cuda_emulation.rs: `harness KERNEL ARGS...`, inputs as raw
// little-endian arrays on stdin, the output array on stdout. The launch
// shapes are those of src/ops/cuda.rs.
#include "cuda_shim.h"
#include "det_math.cuh"
#include "dequant.cuh"
#include "matmul.cu"
#include "layers.cu"
#include <cstdio>
#include <cstdlib>
#include <string>

static const unsigned THREADS = 256;
static unsigned grid_for(long threads) { return threads <= 0 ? 1 : (unsigned)((threads + THREADS - 1) / THREADS); }

template <class T> std::vector<T> read(size_t n) {
    std::vector<T> v(n);
    if (n && fread(v.data(), sizeof(T), n, stdin) != n) { fprintf(stderr, "short input\n"); exit(2); }
    return v;
}
template <class T> void write(const std::vector<T>& v) { fwrite(v.data(), sizeof(T), v.size(), stdout); }

static long row_bytes(int fmt, long k) {
    switch (fmt) {
    case F32: return 4 * k;
    case F16: case BF16: return 2 * k;
    case Q4_0: return k / 32 * 18;
    case Q4_1: return k / 32 * 20;
    case Q8_0: return k / 32 * 34;
    case Q5_0: return k / 32 * 22;
    case Q4K: return k / 256 * 144;
    default: return k / 256 * 210;
    }
}

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    std::string k = argv[1];
    auto arg = [&](int i) { return atol(argv[i]); };
    if (k == "matmul") {  // fmt m n k
        int fmt = arg(2), m = arg(3), n = arg(4), kk = arg(5);
        long rb = row_bytes(fmt, kk);
        auto w = read<unsigned char>(rb * n);
        auto x = read<float>((size_t)m * kk);
        std::vector<float> y((size_t)m * n);
        if (fmt == Q4_0 || fmt == Q4_1 || fmt == Q5_0 || fmt == Q8_0) {
            int blocks = m * kk / 32;
            std::vector<signed char> xq((size_t)m * kk);
            std::vector<float> xd(blocks), xs(blocks);
            launch(grid_for((long)blocks * 32), THREADS, true, [&] { quantize_q8(x.data(), xq.data(), xd.data(), xs.data(), blocks); });
            launch(grid_for((long)m * n * 8), THREADS, true, [&] { matmul_int(fmt, w.data(), rb, xq.data(), xd.data(), xs.data(), y.data(), m, n, kk); });
        } else {
            launch(grid_for((long)m * n * 32), THREADS, true, [&] { matmul_float(fmt, w.data(), rb, x.data(), y.data(), m, n, kk); });
        }
        write(y);
    } else if (k == "matmul_far") {  // m n k block...: F32 weights, only the listed blocks run
        // A launch of m*n*32 threads, past 2^32 for a real vocabulary over a
        // long chunk; the weights are w[r][c] = (r % 251 - 125) / 64 + c / 32
        // and x[t][c] = (t % 13 - 6) / 8 + c / 64, all exact in f32. Prints
        // the outputs of the listed blocks' warps, then how many outputs
        // anywhere else are non-zero (a wrapped index writes elsewhere).
        long m = arg(2), n = arg(3), kk = arg(4);
        std::vector<unsigned> blocks;
        for (int i = 5; i < argc; i++) blocks.push_back((unsigned)atol(argv[i]));
        std::vector<float> wf((size_t)n * kk), x((size_t)m * kk);
        for (long r = 0; r < n; r++)
            for (long c = 0; c < kk; c++) wf[r * kk + c] = (float)(r % 251 - 125) / 64.0f + (float)c / 32.0f;
        for (long t = 0; t < m; t++)
            for (long c = 0; c < kk; c++) x[t * kk + c] = (float)(t % 13 - 6) / 8.0f + (float)c / 64.0f;
        float* y = (float*)calloc((size_t)m * n, sizeof(float));  // untouched pages cost nothing
        launch_blocks(blocks, THREADS, true, [&] {
            matmul_float(F32, (const unsigned char*)wf.data(), 4 * kk, x.data(), y, (int)m, (int)n, (int)kk);
        });
        std::vector<float> picked;
        for (unsigned b : blocks)
            for (long w = 0; w < THREADS / 32; w++) {
                long out = (long)b * (THREADS / 32) + w;
                if (out < m * n) {
                    picked.push_back(y[out]);
                    y[out] = 0.0f;
                }
            }
        long others = 0;
        for (long i = 0; i < m * n; i++) others += y[i] != 0.0f;
        picked.push_back((float)others);
        write(picked);
        free(y);
    } else if (k == "gather") {  // fmt rows k count
        int fmt = arg(2), rows = arg(3), kk = arg(4), count = arg(5);
        long rb = row_bytes(fmt, kk);
        auto w = read<unsigned char>(rb * rows);
        auto ids = read<unsigned int>(count);
        std::vector<float> out((size_t)count * kk);
        launch(grid_for((long)count * kk), THREADS, false, [&] { gather_rows(fmt, w.data(), rb, ids.data(), out.data(), count, kk); });
        write(out);
    } else if (k == "rms_norm") {  // rows n eps
        int rows = arg(2), n = arg(3);
        float eps = strtof(argv[4], nullptr);
        auto x = read<float>((size_t)rows * n);
        auto w = read<float>(n);
        std::vector<float> y(x.size());
        launch(grid_for((long)rows * 32), THREADS, true, [&] { rms_norm(x.data(), w.data(), y.data(), rows, n, eps); });
        write(y);
    } else if (k == "rope") {  // rows row_len head_dim rope_dims interleaved pos0 table_rows
        int rows = arg(2), len = arg(3), hd = arg(4), rd = arg(5), inter = arg(6), pos0 = arg(7), table = arg(8);
        auto x = read<float>((size_t)rows * len);
        auto c = read<float>((size_t)table * rd / 2);
        auto s = read<float>((size_t)table * rd / 2);
        launch(grid_for((long)rows * (len / hd) * (rd / 2)), THREADS, false,
               [&] { rope(x.data(), c.data(), s.data(), rows, len, hd, rd, inter, pos0); });
        write(x);
    } else if (k == "swiglu" || k == "add" || k == "geglu") {  // n
        long n = arg(2);
        auto a = read<float>(n);
        auto b = read<float>(n);
        std::vector<float> y(n);
        launch(grid_for(n), THREADS, false, [&] {
            if (k == "swiglu") swiglu(a.data(), b.data(), y.data(), n);
            else if (k == "geglu") geglu(a.data(), b.data(), y.data(), n);
            else add(a.data(), b.data(), y.data(), n);
        });
        write(y);
    } else if (k == "scale" || k == "softcap") {  // n value
        long n = arg(2);
        float v = strtof(argv[3], nullptr);
        auto a = read<float>(n);
        std::vector<float> y(n);
        launch(grid_for(n), THREADS, false, [&] {
            if (k == "scale") scale(a.data(), y.data(), n, v);
            else softcap(a.data(), y.data(), n, v);
        });
        write(y);
    } else if (k == "add_bias") {  // rows cols
        long rows = arg(2), cols = arg(3), n = rows * cols;
        auto x = read<float>(n);
        auto b = read<float>(cols);
        std::vector<float> y(n);
        launch(grid_for(n), THREADS, false, [&] { add_bias(x.data(), b.data(), y.data(), n, (int)cols); });
        write(y);
    } else if (k == "attention") {  // rows n_heads n_kv hd pos0 capacity scale softcap window
        int rows = arg(2), nh = arg(3), nkv = arg(4), hd = arg(5), pos0 = arg(6), cap = arg(7);
        float scale = strtof(argv[8], nullptr), softcap = strtof(argv[9], nullptr);
        int window = arg(10);
        auto q = read<float>((size_t)rows * nh * hd);
        auto kc = read<float>((size_t)cap * nkv * hd);
        auto vc = read<float>((size_t)cap * nkv * hd);
        int max_pos = pos0 + rows;
        std::vector<float> out(q.size()), scores((size_t)rows * nh * max_pos);
        launch(grid_for((long)rows * nh * 32), THREADS, true, [&] {
            attention(q.data(), kc.data(), vc.data(), out.data(), scores.data(), rows, nh, nkv, hd, pos0, max_pos,
                      scale, softcap, window);
        });
        write(out);
    } else {
        fprintf(stderr, "unknown kernel %s\n", k.c_str());
        return 2;
    }
    return 0;
}
