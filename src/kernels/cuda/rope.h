#pragma once
// Rotary position embedding on the GPU, in Hugging Face's rotate_half layout as
// kernels/cpu/rope.h: within a head, element i < hd/2 pairs with i + hd/2 and the pair is
// rotated by pos · theta^(-2i/hd). The cos/sin tables (T, hd/2) are fp32 on the device: build
// them with cpu::rope_tables<float> (angles in double) and upload them once.
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// Rotates, in place, the first n_heads heads of each row of x (B·T rows of row_stride
// elements, row b·T+t at position t): the q and k heads at the start of each fused qkv row.
template <typename T>
void rope_forward(T* x, const float* cos_table, const float* sin_table, int B, int T_len,
                  int n_heads, int hd, int row_stride, cudaStream_t stream = nullptr);

// The inverse rotation, in place on dx.
template <typename T>
void rope_backward(T* dx, const float* cos_table, const float* sin_table, int B, int T_len,
                   int n_heads, int hd, int row_stride, cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
