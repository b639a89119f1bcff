// Just enough of CUDA to run kernels/*.cu on the CPU, bit for bit: one OS
// thread per lane, warps run one at a time, shuffles through a barrier.
// Float intrinsics map to the same IEEE operations (the harness is built
// with -ffp-contract=off, so nothing is fused that the source does not fuse).
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <immintrin.h>
#include <math.h>
#include <thread>
#include <vector>

#define INFER_EVAL_EMULATE 1
#define __global__
#define __device__
#define __forceinline__ inline

struct Dim3 { unsigned x = 0, y = 0, z = 0; };
inline thread_local Dim3 threadIdx, blockIdx, blockDim;

struct Warp {
    std::barrier<> bar{32};
    uint32_t slot[32];
};
inline thread_local Warp* cur_warp = nullptr;
inline thread_local int cur_lane = 0;

template <class T> T exchange(T v, int src, bool valid) {
    static_assert(sizeof(T) == 4);
    Warp* w = cur_warp;
    std::memcpy(&w->slot[cur_lane], &v, 4);
    w->bar.arrive_and_wait();
    T r = v;
    if (valid) std::memcpy(&r, &w->slot[src], 4);
    w->bar.arrive_and_wait();
    return r;
}
template <class T> T __shfl_down_sync(unsigned, T v, int off) { return exchange(v, cur_lane + off, cur_lane + off < 32); }
template <class T> T __shfl_xor_sync(unsigned, T v, int off) { return exchange(v, cur_lane ^ off, true); }
template <class T> T __shfl_sync(unsigned, T v, int src) { return exchange(v, src, true); }
inline void __syncwarp() { cur_warp->bar.arrive_and_wait(); }

inline float __fmaf_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
using std::isfinite;
using std::isnan;

// Run the listed blocks of a launch of `block` threads per block (a multiple
// of 32; blocks may run in any order on a GPU, so a subset is a faithful
// part of a huge launch). Warp kernels need every lane live at once;
// `warps = false` runs threads one by one.
template <class F> void launch_blocks(const std::vector<unsigned>& blocks, unsigned block, bool warps, F kernel) {
    for (unsigned b : blocks) {
        if (!warps) {
            for (unsigned t = 0; t < block; t++) {
                blockIdx.x = b; threadIdx.x = t; blockDim.x = block;
                kernel();
            }
            continue;
        }
        for (unsigned w = 0; w < block / 32; w++) {
            Warp warp;
            std::vector<std::thread> lanes;
            for (int lane = 0; lane < 32; lane++)
                lanes.emplace_back([&, lane] {
                    blockIdx.x = b; threadIdx.x = w * 32 + lane; blockDim.x = block;
                    cur_warp = &warp; cur_lane = lane;
                    kernel();
                });
            for (auto& l : lanes) l.join();
        }
    }
}

// Run a kernel on grid x block threads.
template <class F> void launch(unsigned grid, unsigned block, bool warps, F kernel) {
    std::vector<unsigned> all(grid);
    for (unsigned b = 0; b < grid; b++) all[b] = b;
    launch_blocks(all, block, warps, kernel);
}
