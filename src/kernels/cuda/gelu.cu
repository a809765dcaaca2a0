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

// Grid-stride loops: consecutive threads take consecutive elements (coalesced).
template <typename T>
__global__ void gelu_forward_kernel(T* out, const T* inp, long n) {
    const long stride = static_cast<long>(gridDim.x) * blockDim.x;
    for (long i = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = from_float<T>(gelu(to_float(inp[i])));
}

template <typename T>
__global__ void bias_gelu_forward_kernel(T* out, T* pre, const T* bias, int F, long n) {
    const long stride = static_cast<long>(gridDim.x) * blockDim.x;
    for (long i = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        // The GELU reads the stored (rounded) input, as its backward will.
        const T p = from_float<T>(to_float(pre[i]) + to_float(bias[i % F]));
        pre[i] = p;
        out[i] = from_float<T>(gelu(to_float(p)));
    }
}

template <typename T>
__global__ void gelu_backward_kernel(T* dinp, const T* dout, const T* inp, long n,
                                     bool accumulate) {
    const long stride = static_cast<long>(gridDim.x) * blockDim.x;
    for (long i = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float d = gelu_grad(to_float(inp[i])) * to_float(dout[i]);
        dinp[i] = from_float<T>(accumulate ? to_float(dinp[i]) + d : d);
    }
}

// Enough blocks to fill the device a few times over; the loops stride over the rest.
int grid_for(long n) {
    return static_cast<int>(ceil_div(n, kThreads) < 65536 ? ceil_div(n, kThreads) : 65536);
}

}  // namespace

template <typename T>
void gelu_forward(T* out, const T* inp, long n, cudaStream_t stream) {
    if (n <= 0) return;
    gelu_forward_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(out, inp, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void bias_gelu_forward(T* out, T* pre, const T* bias, int N, int F, cudaStream_t stream) {
    const long n = static_cast<long>(N) * F;
    if (n <= 0) return;
    bias_gelu_forward_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(out, pre, bias, F, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void gelu_backward(T* dinp, const T* dout, const T* inp, long n, bool accumulate,
                   cudaStream_t stream) {
    if (n <= 0) return;
    gelu_backward_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(dinp, dout, inp, n, accumulate);
    AGPT_CUDA_CHECK_LAUNCH();
}

template void gelu_forward<float>(float*, const float*, long, cudaStream_t);
template void gelu_forward<bf16>(bf16*, const bf16*, long, cudaStream_t);
template void bias_gelu_forward<float>(float*, float*, const float*, int, int, cudaStream_t);
template void bias_gelu_forward<bf16>(bf16*, bf16*, const bf16*, int, int, cudaStream_t);
template void gelu_backward<float>(float*, const float*, const float*, long, bool, cudaStream_t);
template void gelu_backward<bf16>(bf16*, const bf16*, const bf16*, long, bool, cudaStream_t);

}  // namespace agpt::cuda
