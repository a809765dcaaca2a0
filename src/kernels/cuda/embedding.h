#pragma once
#include <cstdint>

#include "kernels/cuda/device.h"
// Token embedding lookup on the GPU, as kernels/cpu/embedding.h. Tokens must lie in [0, V).
namespace agpt::cuda {

// tokens (N) in [0,V), table (V,C) -> out (N,C).
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int N, int C,
                       cudaStream_t stream = nullptr);

// Accumulates dtable (V,C, fp32) from dout (N,C). Deterministic: the token positions are
// stably sorted by token (CUB radix sort), then one block owns each distinct token's row and
// adds its gradients in token order, as the CPU does (bit-identical to it in fp32). Uses
// stream-ordered scratch.
template <typename T>
void embedding_backward(float* dtable, const T* dout, const int32_t* tokens, int N, int C,
                        cudaStream_t stream = nullptr);

// The same over rows [first, first + rows) of a table split between ranks (tensor parallelism's
// vocabulary-parallel embedding, as kernels/cpu/embedding.h): table/dtable hold only those
// rows; other tokens look up zeros and add no gradient.
template <typename T>
void embedding_forward_rows(T* out, const int32_t* tokens, const T* table, int N, int C, int first,
                            int rows, cudaStream_t stream = nullptr);
template <typename T>
void embedding_backward_rows(float* dtable, const T* dout, const int32_t* tokens, int N, int C,
                             int first, int rows, cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
