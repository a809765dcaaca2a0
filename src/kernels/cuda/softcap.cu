#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/softcap.h"

namespace agpt::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) softcap_kernel(float* x, long n, float cap) {
    for (long i = static_cast<long>(blockIdx.x) * kThreads + threadIdx.x; i < n;
         i += static_cast<long>(gridDim.x) * kThreads)
        x[i] = cap * tanhf(x[i] / cap);
}

}  // namespace

void softcap_forward(float* x, long n, float cap, cudaStream_t stream) {
    if (n <= 0 || !(cap > 0.0f)) return;
    const unsigned grid = static_cast<unsigned>(std::min<long>(ceil_div(n, kThreads), 65536));
    softcap_kernel<<<grid, kThreads, 0, stream>>>(x, n, cap);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace agpt::cuda
