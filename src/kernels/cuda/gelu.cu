#include <initializer_list>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gelu.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kCubic = 0.044715f;

__device__ __forceinline__ float gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kCubic * x * x * x)));
}

__device__ __forceinline__ float gelu_grad(float x) {
    const float t = tanhf(kSqrt2OverPi * (x + kCubic * x * x * x));
    return 0.5f * (1.0f + t) +
           0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
}

// Grid-stride loops over packs of VEC consecutive elements: kVec<T> (one 16-byte access) where
// the sizes and pointers allow it, else 1. Consecutive threads take consecutive packs.
template <typename T, int VEC>
__global__ void gelu_forward_kernel(T* out, const T* inp, long n_packs) {
    using P = Pack<T, VEC>;
    const long stride = static_cast<long>(gridDim.x) * blockDim.x;
    for (long p = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; p < n_packs;
         p += stride) {
        const P x = vec_ptr<P>(inp)[p];
        P o;
#pragma unroll
        for (int k = 0; k < VEC; k++) o.v[k] = from_float<T>(gelu(to_float(x.v[k])));
        vec_ptr<P>(out)[p] = o;
    }
}

// VEC divides F: a pack never straddles two rows.
template <typename T, int VEC>
__global__ void bias_gelu_forward_kernel(T* out, T* pre, const T* bias, int F, long n_packs) {
    using P = Pack<T, VEC>;
    const long stride = static_cast<long>(gridDim.x) * blockDim.x;
    for (long p = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; p < n_packs;
         p += stride) {
        P x = vec_ptr<P>(pre)[p];
        const P b = *vec_ptr<P>(bias + (p * VEC) % F);
        P o;
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            // The GELU reads the stored (rounded) input, as its backward will.
            x.v[k] = from_float<T>(to_float(x.v[k]) + to_float(b.v[k]));
            o.v[k] = from_float<T>(gelu(to_float(x.v[k])));
        }
        vec_ptr<P>(pre)[p] = x;
        vec_ptr<P>(out)[p] = o;
    }
}

template <typename T, int VEC>
__global__ void gelu_backward_kernel(T* dinp, const T* dout, const T* inp, long n_packs,
                                     bool accumulate) {
    using P = Pack<T, VEC>;
    const long stride = static_cast<long>(gridDim.x) * blockDim.x;
    for (long p = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; p < n_packs;
         p += stride) {
        const P x = vec_ptr<P>(inp)[p];
        const P g = vec_ptr<P>(dout)[p];
        P d{};
        if (accumulate) d = vec_ptr<P>(dinp)[p];
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            const float v = gelu_grad(to_float(x.v[k])) * to_float(g.v[k]);
            d.v[k] = from_float<T>(accumulate ? to_float(d.v[k]) + v : v);
        }
        vec_ptr<P>(dinp)[p] = d;
    }
}

// Enough blocks to fill the device a few times over; the loops stride over the rest.
int grid_for(long n) {
    return static_cast<int>(ceil_div(n, kThreads) < 65536 ? ceil_div(n, kThreads) : 65536);
}

// 16-byte packs when n is a multiple of the pack and every pointer is 16-byte aligned.
template <typename T>
bool packs_fit(long n, std::initializer_list<const void*> pointers) {
    if (n % kVec<T> != 0) return false;
    for (const void* p : pointers)
        if (!aligned16(p)) return false;
    return true;
}

}  // namespace

template <typename T>
void gelu_forward(T* out, const T* inp, long n, cudaStream_t stream) {
    if (n <= 0) return;
    constexpr int V = kVec<T>;
    if (packs_fit<T>(n, {out, inp}))
        gelu_forward_kernel<T, V><<<grid_for(n / V), kThreads, 0, stream>>>(out, inp, n / V);
    else
        gelu_forward_kernel<T, 1><<<grid_for(n), kThreads, 0, stream>>>(out, inp, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void bias_gelu_forward(T* out, T* pre, const T* bias, int N, int F, cudaStream_t stream) {
    const long n = static_cast<long>(N) * F;
    if (n <= 0) return;
    constexpr int V = kVec<T>;
    if (packs_fit<T>(F, {out, pre, bias}))
        bias_gelu_forward_kernel<T, V>
            <<<grid_for(n / V), kThreads, 0, stream>>>(out, pre, bias, F, n / V);
    else
        bias_gelu_forward_kernel<T, 1><<<grid_for(n), kThreads, 0, stream>>>(out, pre, bias, F, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void gelu_backward(T* dinp, const T* dout, const T* inp, long n, bool accumulate,
                   cudaStream_t stream) {
    if (n <= 0) return;
    constexpr int V = kVec<T>;
    if (packs_fit<T>(n, {dinp, dout, inp}))
        gelu_backward_kernel<T, V>
            <<<grid_for(n / V), kThreads, 0, stream>>>(dinp, dout, inp, n / V, accumulate);
    else
        gelu_backward_kernel<T, 1>
            <<<grid_for(n), kThreads, 0, stream>>>(dinp, dout, inp, n, accumulate);
    AGPT_CUDA_CHECK_LAUNCH();
}

template void gelu_forward<float>(float*, const float*, long, cudaStream_t);
template void gelu_forward<bf16>(bf16*, const bf16*, long, cudaStream_t);
template void bias_gelu_forward<float>(float*, float*, const float*, int, int, cudaStream_t);
template void bias_gelu_forward<bf16>(bf16*, bf16*, const bf16*, int, int, cudaStream_t);
template void gelu_backward<float>(float*, const float*, const float*, long, bool, cudaStream_t);
template void gelu_backward<bf16>(bf16*, const bf16*, const bf16*, long, bool, cudaStream_t);

}  // namespace agpt::cuda
