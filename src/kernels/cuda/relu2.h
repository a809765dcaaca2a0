#pragma once
// ReLU² on the GPU, as kernels/cpu/relu2.h: out = relu(h)² = max(h, 0)², the activation of the
// two-matrix FFN w2(relu(w1 x)²). h (N, F) is w1's output.
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// h (N,F) -> out (N,F).
template <typename T>
void relu2_forward(T* out, const T* h, int N, int F, cudaStream_t stream = nullptr);

// dh (N,F) += dout · 2·max(h, 0) (accumulate, as on the CPU), or = when accumulate is false (the
// model's backward: no zeroing pass).
template <typename T>
void relu2_backward(T* dh, const T* dout, const T* h, int N, int F, bool accumulate = true,
                    cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
