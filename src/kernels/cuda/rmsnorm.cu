#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rmsnorm.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Rows per block of the backward: its dweight partial sums these rows, in order.
constexpr int kRowBlock = 64;

// One warp per row.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_forward_kernel(T* out, float* rstd, const T* inp, const T* weight, int N, int C,
                           float eps) {
    const int row = blockIdx.x * kWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T* x = inp + static_cast<long>(row) * C;
    T* o = out + static_cast<long>(row) * C;
    float ss = 0.0f;
    for (int j = lane; j < C; j += 32) {
        const float v = to_float(x[j]);
        ss += v * v;
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
    if (lane == 0) rstd[row] = r;
    for (int j = lane; j < C; j += 32)
        o[j] = from_float<T>(to_float(x[j]) * r * to_float(weight[j]));
}

// Block b owns rows [b·kRowBlock, (b+1)·kRowBlock): first each warp forms Σ g·w·x of its rows,
// then each thread walks its columns down the rows, updating dinp and summing its dweight
// partial, written to partial[b·C + c].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_backward_kernel(T* dinp, float* partial, const T* dout, const T* inp, const T* weight,
                            const float* rstd, int N, int C) {
    __shared__ float coef[kRowBlock];
    __shared__ float rs[kRowBlock];
    const int row0 = blockIdx.x * kRowBlock;
    const int rows = min(kRowBlock, N - row0);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int i = warp; i < rows; i += kWarps) {
        const long off = static_cast<long>(row0 + i) * C;
        float dot = 0.0f;
        for (int j = lane; j < C; j += 32)
            dot += to_float(dout[off + j]) * to_float(weight[j]) * to_float(inp[off + j]);
        dot = warp_sum(dot);
        if (lane == 0) {
            const float r = rstd[row0 + i];
            rs[i] = r;
            coef[i] = dot * r * r * r / static_cast<float>(C);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += kThreads) {
        const float w = to_float(weight[c]);
        float dw = 0.0f;
        for (int i = 0; i < rows; ++i) {
            const long idx = static_cast<long>(row0 + i) * C + c;
            const float g = to_float(dout[idx]);
            const float x = to_float(inp[idx]);
            const float r = rs[i];
            add_to(dinp + idx, r * w * g - coef[i] * x);
            dw += g * x * r;
        }
        partial[static_cast<long>(blockIdx.x) * C + c] = dw;
    }
}

// dweight[c] += Σ_b partial[b·C + c], blocks in order.
__global__ void sum_partials_kernel(float* dweight, const float* partial, int blocks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int b = 0; b < blocks; ++b) s += partial[static_cast<long>(b) * C + c];
    dweight[c] += s;
}

}  // namespace

template <typename T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C, float eps,
                     cudaStream_t stream) {
    if (N <= 0) return;
    rmsnorm_forward_kernel<T>
        <<<ceil_div(N, kWarps), kThreads, 0, stream>>>(out, rstd, inp, weight, N, C, eps);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void rmsnorm_backward(T* dinp, float* dweight, const T* dout, const T* inp, const T* weight,
                      const float* rstd, int N, int C, cudaStream_t stream) {
    if (N <= 0 || C <= 0) return;
    const int blocks = static_cast<int>(ceil_div(N, kRowBlock));
    StreamScratch partial(sizeof(float) * blocks * static_cast<std::size_t>(C), stream);
    rmsnorm_backward_kernel<T>
        <<<blocks, kThreads, 0, stream>>>(dinp, partial.as<float>(), dout, inp, weight, rstd, N, C);
    AGPT_CUDA_CHECK_LAUNCH();
    sum_partials_kernel<<<ceil_div(C, 256), 256, 0, stream>>>(dweight, partial.as<float>(), blocks,
                                                              C);
    AGPT_CUDA_CHECK_LAUNCH();
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, float,
                                     cudaStream_t);
template void rmsnorm_forward<bf16>(bf16*, float*, const bf16*, const bf16*, int, int, float,
                                    cudaStream_t);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*,
                                      const float*, int, int, cudaStream_t);
template void rmsnorm_backward<bf16>(bf16*, float*, const bf16*, const bf16*, const bf16*,
                                     const float*, int, int, cudaStream_t);

}  // namespace agpt::cuda
