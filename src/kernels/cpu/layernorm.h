#pragma once
// LayerNorm over the last dimension, as PyTorch's nn.LayerNorm (GPT-2's norm):
//   out = (inp − mean) · rstd · weight + bias,   rstd = 1 / sqrt(var + eps),
// with var the biased variance (divided by C).
namespace agpt::cpu {

// inp (N,C), weight (C), bias (C) -> out (N,C); mean (N) and rstd (N) are saved for backward.
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int N, int C, T eps);

// Accumulates dinp (N,C), dweight (C) and dbias (C). dweight and dbias are summed over fixed
// blocks of rows and then block by block in order, so they do not depend on the thread count.
template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int N, int C);

}  // namespace agpt::cpu
