#pragma once
// RMSNorm on the GPU: out = inp / sqrt(mean(inp²) + eps) · weight over the last dimension, as
// kernels/cpu/rmsnorm.h. Statistics (rstd) and reductions are fp32 whatever T (float or bf16).
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// inp (N,C), weight (C) -> out (N,C), rstd (N) = 1/sqrt(mean(inp²)+eps), saved for backward.
template <typename T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C, float eps,
                     cudaStream_t stream = nullptr);

// Accumulates dinp (N,C) and dweight (C, fp32). dweight is reduced over fixed blocks of rows
// and then over the blocks in order: deterministic. Uses stream-ordered scratch.
template <typename T>
void rmsnorm_backward(T* dinp, float* dweight, const T* dout, const T* inp, const T* weight,
                      const float* rstd, int N, int C, cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
