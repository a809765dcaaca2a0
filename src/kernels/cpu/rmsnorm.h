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

// Per-head RMSNorm inside wider rows (QK-norm): for n < N and h < heads the C elements at
// inp[n·in_stride + h·C] are normalised with one weight (C) shared by every head and written to
// out[n·out_stride + h·C]; rstd (N, heads). out may equal inp (with equal strides): each row is
// read before it is written.
template <typename T>
void rmsnorm_heads_forward(T* out, long out_stride, T* rstd, const T* inp, long in_stride,
                           const T* weight, int N, int heads, int C, T eps);

// Accumulates dinp (rows at dinp[n·dinp_stride + h·C]) and dweight (C), from dout (rows at
// dout[n·dout_stride + h·C]), inp (as in the forward) and rstd (N, heads). dweight is summed in
// a fixed order whatever the thread count.
template <typename T>
void rmsnorm_heads_backward(T* dinp, long dinp_stride, T* dweight, const T* dout, long dout_stride,
                            const T* inp, long in_stride, const T* weight, const T* rstd, int N,
                            int heads, int C);

}  // namespace agpt::cpu
