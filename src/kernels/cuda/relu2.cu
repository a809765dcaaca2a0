#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/relu2.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;

// Elementwise over the flat (N·F) tensors, a grid-stride loop of coalesced accesses.
template <typename T>
__global__ void __launch_bounds__(kThreads) relu2_forward_kernel(T* out, const T* h, long n) {
    for (long i = static_cast<long>(blockIdx.x) * kThreads + threadIdx.x; i < n;
         i += static_cast<long>(gridDim.x) * kThreads) {
        const float r = fmaxf(to_float(h[i]), 0.0f);
        out[i] = from_float<T>(r * r);
    }
}

template <typename T, bool ACCUMULATE>
__global__ void __launch_bounds__(kThreads)
    relu2_backward_kernel(T* dh, const T* dout, const T* h, long n) {
    for (long i = static_cast<long>(blockIdx.x) * kThreads + threadIdx.x; i < n;
         i += static_cast<long>(gridDim.x) * kThreads) {
        const float g = 2.0f * fmaxf(to_float(h[i]), 0.0f) * to_float(dout[i]);
        if (ACCUMULATE)
            add_to(dh + i, g);
        else
            dh[i] = from_float<T>(g);
    }
}

// Enough blocks to fill any current GPU several times over; the loops stride past that.
unsigned grid_for(long n) {
    return static_cast<unsigned>(std::min<long>(ceil_div(n, kThreads), 65536));
}

}  // namespace

template <typename T>
void relu2_forward(T* out, const T* h, int N, int F, cudaStream_t stream) {
    const long n = static_cast<long>(N) * F;
    if (n <= 0) return;
    relu2_forward_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(out, h, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void relu2_backward(T* dh, const T* dout, const T* h, int N, int F, bool accumulate,
                    cudaStream_t stream) {
    const long n = static_cast<long>(N) * F;
    if (n <= 0) return;
    if (accumulate)
        relu2_backward_kernel<T, true><<<grid_for(n), kThreads, 0, stream>>>(dh, dout, h, n);
    else
        relu2_backward_kernel<T, false><<<grid_for(n), kThreads, 0, stream>>>(dh, dout, h, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template void relu2_forward<float>(float*, const float*, int, int, cudaStream_t);
template void relu2_forward<bf16>(bf16*, const bf16*, int, int, cudaStream_t);
template void relu2_backward<float>(float*, const float*, const float*, int, int, bool,
                                    cudaStream_t);
template void relu2_backward<bf16>(bf16*, const bf16*, const bf16*, int, int, bool, cudaStream_t);

}  // namespace agpt::cuda
