#pragma once
// A vector added to every row of a matrix on the GPU, as kernels/cpu/bias.h: the bias of a
// linear layer, and GPT-2's position embeddings (wpe (T,C) seen as one T·C vector added to each
// of B sequences); and its gradient, the sum of the rows.
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// out (N,OC) = inp (N,OC) + bias (OC) on every row. inp may be out (in place: the CPU's
// accumulate) or null (out = bias); a distinct inp fuses a residual copy with the bias.
template <typename T>
void bias_forward(T* out, const T* inp, const T* bias, int N, int OC,
                  cudaStream_t stream = nullptr);

// Accumulates dbias (OC, fp32) += Σ_rows dout (N,OC). Deterministic: blocks of rows sum their
// columns in a fixed order, then the blocks are added in order. Uses stream-ordered scratch.
template <typename T>
void bias_backward(float* dbias, const T* dout, int N, int OC, cudaStream_t stream = nullptr);

// out (C, fp32) += Σ_b partial[b·C ..], the `blocks` rows of partial sums added in order
// (deterministic): the last step of the column reductions here and in the norms' backward, and,
// with one block, the bias gradient a GEMM's epilogue wrote.
void add_block_sums(float* out, const float* partial, int blocks, int C,
                    cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
