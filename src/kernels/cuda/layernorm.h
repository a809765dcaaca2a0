#pragma once
// LayerNorm on the GPU, as kernels/cpu/layernorm.h (GPT-2's norm, nn.LayerNorm):
//   out = (inp − mean) · rstd · weight + bias,  rstd = 1 / sqrt(var + eps), var biased.
// Statistics (mean, rstd), reductions and the weight/bias gradients are fp32 whatever T.
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// inp (N,C), weight (C), bias (C) -> out (N,C); mean (N) and rstd (N) are saved for backward.
template <typename T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                       const T* bias, int N, int C, float eps, cudaStream_t stream = nullptr);

// Accumulates dinp (N,C), dweight (C, fp32) and dbias (C, fp32). The weight and bias gradients
// are reduced over fixed blocks of rows, then over the blocks in order: deterministic. Uses
// stream-ordered scratch. dinp_column_sums (C, fp32), when given, accumulates Σ_rows dinp as
// stored after the update: the bias gradient of the linear layer that last added to the
// residual stream dinp is the gradient of (GPT-2's projections), in the same pass.
template <typename T>
void layernorm_backward(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                        const T* weight, const float* mean, const float* rstd, int N, int C,
                        cudaStream_t stream = nullptr, float* dinp_column_sums = nullptr);

}  // namespace agpt::cuda
