#include <algorithm>
#include <initializer_list>

#include "kernels/cuda/bias.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rmsnorm.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Rows per block of the backward: its dweight partial sums these rows, in order.
constexpr int kRowBlock = 32;
// Rows whose loads one thread of the backward issues together.
constexpr int kRowBatch = 4;

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
// then thread t walks packs t, t + blockDim.x, ... of the columns down the rows, updating dinp
// and summing its dweight partial, written to partial[b·C + c].
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_backward_kernel(T* dinp, long dinp_stride, float* partial, const T* dout,
                            long dout_stride, const T* inp, long in_stride, const T* weight,
                            const float* rstd, long n_rows, int heads, int C) {
    using P = Pack<T, VEC>;
    __shared__ float coef[kRowBlock];
    __shared__ float rs[kRowBlock];
    const long row0 = static_cast<long>(blockIdx.x) * kRowBlock;
    const int rows = static_cast<int>(min(static_cast<long>(kRowBlock), n_rows - row0));
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const int CP = C / VEC;
    const P* w = vec_ptr<P>(weight);
    for (int i = warp; i < rows; i += warps) {
        const P* g = vec_ptr<P>(dout + row_start(row0 + i, heads, dout_stride, C));
        const P* x = vec_ptr<P>(inp + row_start(row0 + i, heads, in_stride, C));
        float dot = 0.0f;
        for (int j = lane; j < CP; j += 32) {
            const P gv = g[j], xv = x[j], wv = w[j];
#pragma unroll
            for (int k = 0; k < VEC; k++)
                dot += to_float(gv.v[k]) * to_float(wv.v[k]) * to_float(xv.v[k]);
        }
        dot = warp_sum(dot);
        if (lane == 0) {
            const float r = rstd[row0 + i];
            rs[i] = r;
            coef[i] = dot * r * r * r / static_cast<float>(C);
        }
    }
    __syncthreads();
    for (int j = threadIdx.x; j < CP; j += blockDim.x) {
        const P wv = w[j];
        float dw[VEC];
#pragma unroll
        for (int k = 0; k < VEC; k++) dw[k] = 0.0f;
        // kRowBatch rows' loads are issued before any of their stores: the stores to dinp may not
        // be reordered above later loads the compiler cannot prove distinct, and one row at a
        // time would wait out a memory latency per row.
        for (int i0 = 0; i0 < rows; i0 += kRowBatch) {
            P g[kRowBatch], x[kRowBatch], d[kRowBatch];
#pragma unroll
            for (int u = 0; u < kRowBatch; u++)
                if (i0 + u < rows) {
                    const long r = row0 + i0 + u;
                    g[u] = vec_ptr<P>(dout + row_start(r, heads, dout_stride, C))[j];
                    x[u] = vec_ptr<P>(inp + row_start(r, heads, in_stride, C))[j];
                    d[u] = vec_ptr<P>(dinp + row_start(r, heads, dinp_stride, C))[j];
                }
#pragma unroll
            for (int u = 0; u < kRowBatch; u++) {
                const int i = i0 + u;
                if (i >= rows) break;
                const float r = rs[i], c = coef[i];
#pragma unroll
                for (int k = 0; k < VEC; k++) {
                    const float gf = to_float(g[u].v[k]), xf = to_float(x[u].v[k]);
                    d[u].v[k] =
                        from_float<T>(to_float(d[u].v[k]) + (r * to_float(wv.v[k]) * gf - c * xf));
                    dw[k] += gf * xf * r;
                }
                vec_ptr<P>(dinp + row_start(row0 + i, heads, dinp_stride, C))[j] = d[u];
            }
        }
#pragma unroll
        for (int k = 0; k < VEC; k++)
            partial[static_cast<long>(blockIdx.x) * C + static_cast<long>(j) * VEC + k] = dw[k];
    }
}

// 16-byte packs when C and the strides are multiples of the pack and the pointers 16-byte aligned
// (every row start then is).
template <typename T>
bool packs_fit(int C, std::initializer_list<long> strides,
               std::initializer_list<const void*> ptrs) {
    if (C % kVec<T> != 0) return false;
    for (const long s : strides)
        if (s % kVec<T> != 0) return false;
    for (const void* p : ptrs)
        if (!aligned16(p)) return false;
    return true;
}

}  // namespace

template <typename T>
void rmsnorm_heads_forward(T* out, long out_stride, float* rstd, const T* inp, long in_stride,
                           const T* weight, int N, int heads, int C, float eps,
                           cudaStream_t stream) {
    const long rows = static_cast<long>(N) * heads;
    if (rows <= 0) return;
    const long blocks = ceil_div(rows, kWarps);
    if (packs_fit<T>(C, {in_stride, out_stride}, {out, inp, weight}))
        rmsnorm_forward_kernel<T, kVec<T>><<<blocks, kThreads, 0, stream>>>(
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
    // One thread per pack of a row (up to kThreads; the rest loop), whole warps.
    const auto threads = [&](int vec) {
        return static_cast<int>(std::min<long>(kThreads, ceil_div(C / vec, 32) * 32));
    };
    if (packs_fit<T>(C, {dinp_stride, dout_stride, in_stride}, {dinp, dout, inp, weight}))
        rmsnorm_backward_kernel<T, kVec<T>><<<blocks, threads(kVec<T>), 0, stream>>>(
            dinp, dinp_stride, partial.as<float>(), dout, dout_stride, inp, in_stride, weight, rstd,
            rows, heads, C);
    else
        rmsnorm_backward_kernel<T, 1><<<blocks, threads(1), 0, stream>>>(
            dinp, dinp_stride, partial.as<float>(), dout, dout_stride, inp, in_stride, weight, rstd,
            rows, heads, C);
    AGPT_CUDA_CHECK_LAUNCH();
    add_block_sums(dweight, partial.as<float>(), blocks, C, stream);
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
