#include "kernels/cuda/common.cuh"
#include "kernels/cuda/swiglu.h"

namespace agpt::cuda {

namespace {

using namespace detail;

// One thread per output element (i, j).
template <typename T>
__global__ void swiglu_forward_kernel(T* out, const T* h13, int F, long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long i = idx / F, j = idx % F;
    const float a = to_float(h13[i * 2 * F + j]);
    const float b = to_float(h13[i * 2 * F + F + j]);
    out[idx] = from_float<T>(a / (1.0f + expf(-a)) * b);
}

template <typename T>
__global__ void swiglu_backward_kernel(T* dh13, const T* dout, const T* h13, int F, long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long i = idx / F, j = idx % F;
    const long ia = i * 2 * F + j, ib = ia + F;
    const float a = to_float(h13[ia]);
    const float b = to_float(h13[ib]);
    const float g = to_float(dout[idx]);
    const float sig = 1.0f / (1.0f + expf(-a));
    const float silu = a * sig;
    add_to(dh13 + ia, g * b * sig * (1.0f + a * (1.0f - sig)));
    add_to(dh13 + ib, g * silu);
}

}  // namespace

template <typename T>
void swiglu_forward(T* out, const T* h13, int N, int F, cudaStream_t stream) {
    const long n = static_cast<long>(N) * F;
    if (n <= 0) return;
    swiglu_forward_kernel<T><<<ceil_div(n, 256), 256, 0, stream>>>(out, h13, F, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F, cudaStream_t stream) {
    const long n = static_cast<long>(N) * F;
    if (n <= 0) return;
    swiglu_backward_kernel<T><<<ceil_div(n, 256), 256, 0, stream>>>(dh13, dout, h13, F, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template void swiglu_forward<float>(float*, const float*, int, int, cudaStream_t);
template void swiglu_forward<bf16>(bf16*, const bf16*, int, int, cudaStream_t);
template void swiglu_backward<float>(float*, const float*, const float*, int, int, cudaStream_t);
template void swiglu_backward<bf16>(bf16*, const bf16*, const bf16*, int, int, cudaStream_t);

}  // namespace agpt::cuda
