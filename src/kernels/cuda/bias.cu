#include <algorithm>

#include "kernels/cuda/bias.h"
#include "kernels/cuda/common.cuh"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Rows per block of the backward (each warp takes every kWarps-th of them).
constexpr int kRowBlock = 256;

// Thread: VEC consecutive columns (one 16-byte access for VEC = kVec<T>) of rows blockIdx.y,
// blockIdx.y + gridDim.y, ...
template <typename T, int VEC>
__global__ void bias_forward_kernel(T* out, const T* inp, const T* bias, int N, int OC) {
    using P = Pack<T, VEC>;
    const int c = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (c >= OC) return;
    const P b = *vec_ptr<P>(bias + c);
    for (long i = blockIdx.y; i < N; i += gridDim.y) {
        const long idx = i * OC + c;
        P o = b;
        if (inp) {
            const P x = *vec_ptr<P>(inp + idx);
#pragma unroll
            for (int k = 0; k < VEC; k++)
                o.v[k] = from_float<T>(to_float(x.v[k]) + to_float(b.v[k]));
        }
        *vec_ptr<P>(out + idx) = o;
    }
}

// Block (x, y): columns [32x, 32x + 32) of rows [y·kRowBlock, (y+1)·kRowBlock); lane = column,
// warp w sums rows w, w + kWarps, ... (coalesced 32-column rows), then warp 0 adds the warps'
// sums in order. One row block: straight into dbias; more: into partial[y·OC + c].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    bias_backward_kernel(float* dbias, float* partial, const T* dout, int N, int OC) {
    __shared__ float sums[kWarps][32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int c = blockIdx.x * 32 + lane;
    const int row0 = blockIdx.y * kRowBlock;
    const int row1 = min(N, row0 + kRowBlock);
    float s = 0.0f;
    if (c < OC)
        for (int i = row0 + warp; i < row1; i += kWarps)
            s += to_float(dout[static_cast<long>(i) * OC + c]);
    sums[warp][lane] = s;
    __syncthreads();
    if (warp != 0 || c >= OC) return;
    float t = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) t += sums[w][lane];
    if (partial)
        partial[static_cast<long>(blockIdx.y) * OC + c] = t;
    else
        dbias[c] += t;
}

__global__ void add_block_sums_kernel(float* out, const float* partial, int blocks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int b = 0; b < blocks; ++b) s += partial[static_cast<long>(b) * C + c];
    out[c] += s;
}

}  // namespace

template <typename T>
void bias_forward(T* out, const T* inp, const T* bias, int N, int OC, cudaStream_t stream) {
    if (N <= 0 || OC <= 0) return;
    constexpr int V = kVec<T>;
    const bool packs = OC % V == 0 && aligned16(out) && aligned16(bias) && (!inp || aligned16(inp));
    const int vec = packs ? V : 1;
    const long col_blocks = ceil_div(ceil_div(OC, vec), kThreads);
    // About 2^15 blocks in all; each strides over its share of the rows.
    const long row_blocks = std::min<long>(N, std::max<long>(1, 32768 / col_blocks));
    const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(row_blocks));
    if (packs)
        bias_forward_kernel<T, V><<<grid, kThreads, 0, stream>>>(out, inp, bias, N, OC);
    else
        bias_forward_kernel<T, 1><<<grid, kThreads, 0, stream>>>(out, inp, bias, N, OC);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void bias_backward(float* dbias, const T* dout, int N, int OC, cudaStream_t stream) {
    if (N <= 0 || OC <= 0) return;
    const int row_blocks = static_cast<int>(ceil_div(N, kRowBlock));
    const dim3 grid(static_cast<unsigned>(ceil_div(OC, 32)), static_cast<unsigned>(row_blocks));
    if (row_blocks == 1) {
        bias_backward_kernel<T><<<grid, kThreads, 0, stream>>>(dbias, nullptr, dout, N, OC);
        AGPT_CUDA_CHECK_LAUNCH();
        return;
    }
    StreamScratch partial(sizeof(float) * row_blocks * static_cast<std::size_t>(OC), stream);
    bias_backward_kernel<T><<<grid, kThreads, 0, stream>>>(dbias, partial.as<float>(), dout, N, OC);
    AGPT_CUDA_CHECK_LAUNCH();
    add_block_sums(dbias, partial.as<float>(), row_blocks, OC, stream);
}

void add_block_sums(float* out, const float* partial, int blocks, int C, cudaStream_t stream) {
    if (C <= 0) return;
    add_block_sums_kernel<<<ceil_div(C, 256), 256, 0, stream>>>(out, partial, blocks, C);
    AGPT_CUDA_CHECK_LAUNCH();
}

template void bias_forward<float>(float*, const float*, const float*, int, int, cudaStream_t);
template void bias_forward<bf16>(bf16*, const bf16*, const bf16*, int, int, cudaStream_t);
template void bias_backward<float>(float*, const float*, int, int, cudaStream_t);
template void bias_backward<bf16>(float*, const bf16*, int, int, cudaStream_t);

}  // namespace agpt::cuda
