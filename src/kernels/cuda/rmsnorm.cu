#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rmsnorm.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Rows per block of the backward: its dweight partial sums these rows, in order.
constexpr int kRowBlock = 64;

// Where row r = n·heads + h of a per-head norm starts in rows of the given stride.
__device__ __forceinline__ long row_start(long r, int heads, long stride, int C) {
    return r / heads * stride + r % heads * C;
}

// One warp per row; rows of C elements, `heads` of them side by side in each strided row, read
// as packs of VEC elements (16 bytes when C, the strides and the pointers allow it; else 1).
// Two passes over the row (it stays in L1).
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_forward_kernel(T* out, long out_stride, float* rstd, const T* inp, long in_stride,
                           const T* weight, long rows, int heads, int C, float eps) {
    using P = Pack<T, VEC>;
    const long row = static_cast<long>(blockIdx.x) * kWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int CP = C / VEC;
    const P* x = vec_ptr<P>(inp + row_start(row, heads, in_stride, C));
    const P* w = vec_ptr<P>(weight);
    P* o = vec_ptr<P>(out + row_start(row, heads, out_stride, C));
    float ss = 0.0f;
    for (int j = lane; j < CP; j += 32) {
        const P v = x[j];
#pragma unroll
        for (int k = 0; k < VEC; k++) ss += to_float(v.v[k]) * to_float(v.v[k]);
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
    if (lane == 0) rstd[row] = r;
    for (int j = lane; j < CP; j += 32) {
        const P v = x[j], wv = w[j];
        P y;
#pragma unroll
        for (int k = 0; k < VEC; k++)
            y.v[k] = from_float<T>(to_float(v.v[k]) * r * to_float(wv.v[k]));
        o[j] = y;
    }
}

// Block b owns rows [b·kRowBlock, (b+1)·kRowBlock): first each warp forms Σ g·w·x of its rows,
// then each thread walks its columns down the rows, updating dinp and summing its dweight
// partial, written to partial[b·C + c].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_backward_kernel(T* dinp, long dinp_stride, float* partial, const T* dout,
                            long dout_stride, const T* inp, long in_stride, const T* weight,
                            const float* rstd, long n_rows, int heads, int C) {
    __shared__ float coef[kRowBlock];
    __shared__ float rs[kRowBlock];
    const long row0 = static_cast<long>(blockIdx.x) * kRowBlock;
    const int rows = static_cast<int>(min(static_cast<long>(kRowBlock), n_rows - row0));
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int i = warp; i < rows; i += kWarps) {
        const T* g = dout + row_start(row0 + i, heads, dout_stride, C);
        const T* x = inp + row_start(row0 + i, heads, in_stride, C);
        float dot = 0.0f;
        for (int j = lane; j < C; j += 32)
            dot += to_float(g[j]) * to_float(weight[j]) * to_float(x[j]);
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
            const long r0 = row0 + i;
            const float g = to_float(dout[row_start(r0, heads, dout_stride, C) + c]);
            const float x = to_float(inp[row_start(r0, heads, in_stride, C) + c]);
            const float r = rs[i];
            add_to(dinp + row_start(r0, heads, dinp_stride, C) + c, r * w * g - coef[i] * x);
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
void rmsnorm_heads_forward(T* out, long out_stride, float* rstd, const T* inp, long in_stride,
                           const T* weight, int N, int heads, int C, float eps,
                           cudaStream_t stream) {
    const long rows = static_cast<long>(N) * heads;
    if (rows <= 0) return;
    constexpr int V = kVec<T>;
    const bool packs = C % V == 0 && in_stride % V == 0 && out_stride % V == 0 && aligned16(out) &&
                       aligned16(inp) && aligned16(weight);
    const long blocks = ceil_div(rows, kWarps);
    if (packs)
        rmsnorm_forward_kernel<T, V><<<blocks, kThreads, 0, stream>>>(
            out, out_stride, rstd, inp, in_stride, weight, rows, heads, C, eps);
    else
        rmsnorm_forward_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(
            out, out_stride, rstd, inp, in_stride, weight, rows, heads, C, eps);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void rmsnorm_heads_backward(T* dinp, long dinp_stride, float* dweight, const T* dout,
                            long dout_stride, const T* inp, long in_stride, const T* weight,
                            const float* rstd, int N, int heads, int C, cudaStream_t stream) {
    const long rows = static_cast<long>(N) * heads;
    if (rows <= 0 || C <= 0) return;
    const int blocks = static_cast<int>(ceil_div(rows, kRowBlock));
    StreamScratch partial(sizeof(float) * blocks * static_cast<std::size_t>(C), stream);
    rmsnorm_backward_kernel<T>
        <<<blocks, kThreads, 0, stream>>>(dinp, dinp_stride, partial.as<float>(), dout, dout_stride,
                                          inp, in_stride, weight, rstd, rows, heads, C);
    AGPT_CUDA_CHECK_LAUNCH();
    sum_partials_kernel<<<ceil_div(C, 256), 256, 0, stream>>>(dweight, partial.as<float>(), blocks,
                                                              C);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C, float eps,
                     cudaStream_t stream) {
    rmsnorm_heads_forward<T>(out, C, rstd, inp, C, weight, N, 1, C, eps, stream);
}

template <typename T>
void rmsnorm_backward(T* dinp, float* dweight, const T* dout, const T* inp, const T* weight,
                      const float* rstd, int N, int C, cudaStream_t stream) {
    rmsnorm_heads_backward<T>(dinp, C, dweight, dout, C, inp, C, weight, rstd, N, 1, C, stream);
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, float,
                                     cudaStream_t);
template void rmsnorm_forward<bf16>(bf16*, float*, const bf16*, const bf16*, int, int, float,
                                    cudaStream_t);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*,
                                      const float*, int, int, cudaStream_t);
template void rmsnorm_backward<bf16>(bf16*, float*, const bf16*, const bf16*, const bf16*,
                                     const float*, int, int, cudaStream_t);
template void rmsnorm_heads_forward<float>(float*, long, float*, const float*, long, const float*,
                                           int, int, int, float, cudaStream_t);
template void rmsnorm_heads_forward<bf16>(bf16*, long, float*, const bf16*, long, const bf16*, int,
                                          int, int, float, cudaStream_t);
template void rmsnorm_heads_backward<float>(float*, long, float*, const float*, long, const float*,
                                            long, const float*, const float*, int, int, int,
                                            cudaStream_t);
template void rmsnorm_heads_backward<bf16>(bf16*, long, float*, const bf16*, long, const bf16*,
                                           long, const bf16*, const float*, int, int, int,
                                           cudaStream_t);

}  // namespace agpt::cuda
