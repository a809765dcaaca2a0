#pragma once
// SwiGLU gate on the GPU, as kernels/cpu/swiglu.h: out = silu(h1) ⊙ h3 with h1 and h3 side by
// side in one row of the fused w1|w3 projection: h13 (N, 2F) holds h1 in columns [0,F) and h3
// in [F,2F).
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// out (N, F).
template <typename T>
void swiglu_forward(T* out, const T* h13, int N, int F, cudaStream_t stream = nullptr);

// Accumulates dh13 (N, 2F) from dout (N, F).
template <typename T>
void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F,
                     cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
