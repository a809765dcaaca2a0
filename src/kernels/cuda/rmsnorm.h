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

// Per-head RMSNorm inside wider rows (QK-norm), as kernels/cpu/rmsnorm.h: for n < N and
// h < heads the C elements at inp[n·in_stride + h·C] are normalised with one weight (C) shared
// by every head and written to out[n·out_stride + h·C]; rstd (N, heads). out may equal inp
// (with equal strides).
template <typename T>
void rmsnorm_heads_forward(T* out, long out_stride, float* rstd, const T* inp, long in_stride,
                           const T* weight, int N, int heads, int C, float eps,
                           cudaStream_t stream = nullptr);

// Accumulates dinp (rows at dinp[n·dinp_stride + h·C]) and dweight (C, fp32, deterministic as
// rmsnorm_backward) from dout (rows at dout[n·dout_stride + h·C]), inp and rstd (N, heads).
template <typename T>
void rmsnorm_heads_backward(T* dinp, long dinp_stride, float* dweight, const T* dout,
                            long dout_stride, const T* inp, long in_stride, const T* weight,
                            const float* rstd, int N, int heads, int C,
                            cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
