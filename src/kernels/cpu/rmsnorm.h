#pragma once
// RMSNorm: out = inp / sqrt(mean(inp²) + eps) · weight, over the last dimension.
namespace agpt::cpu {

// inp (N,C), weight (C) -> out (N,C), rstd (N) = 1/sqrt(mean(inp²)+eps), saved for backward.
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C, T eps);

// Accumulates dinp (N,C) and dweight (C).
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int N, int C);

}  // namespace agpt::cpu
