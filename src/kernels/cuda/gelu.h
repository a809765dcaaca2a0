#pragma once
// GELU with the tanh approximation on the GPU, as kernels/cpu/gelu.h:
//   out = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))),
// elementwise, fp32 arithmetic on T (float or bf16) storage.
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// inp (n) -> out (n).
template <typename T>
void gelu_forward(T* out, const T* inp, long n, cudaStream_t stream = nullptr);

// The bias of the linear layer before the GELU fused with it (GPT-2's c_fc): pre (N,F) += bias
// (F) in place — pre is the GELU's input saved for backward — and out (N,F) = gelu(pre).
template <typename T>
void bias_gelu_forward(T* out, T* pre, const T* bias, int N, int F, cudaStream_t stream = nullptr);

// dinp (n) += gelu'(inp) ⊙ dout, or = when accumulate is false (no zeroing pass).
template <typename T>
void gelu_backward(T* dinp, const T* dout, const T* inp, long n, bool accumulate = true,
                   cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
