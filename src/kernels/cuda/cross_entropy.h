#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "kernels/cuda/device.h"
// The LM head fused with softmax cross-entropy on the GPU, chunked over tokens as
// kernels/cpu/cross_entropy.h: only (chunk, V) logits exist at a time. Per chunk: one GEMM for
// the logits (fp32 output, whatever T), one kernel for the row losses and dlogits =
// grad_scale · (softmax − onehot), then the dx and dweight GEMMs.
namespace agpt::cuda {

// x (N,C) final hidden states, weight (V,C) the head, targets (N) in [0,V) or -1 to ignore.
// Writes losses (N, fp32, device) = -log p(target) per token (0 for ignored ones); their sum is
// the CPU function's return value (see sum_losses). When dx/dweight are not null, also
// accumulates the gradient of grad_scale · Σ losses: dx (N,C, type T) and dweight (V,C, fp32).
// softcap c > 0 caps the logits to c·tanh(z/c) first, as on the CPU. row_scale (N, device) or
// null weighs each token's loss in the gradient: grad_scale · Σ row_scale[i]·losses[i], the CPU
// function's row_scale (a row of weight 0 contributes nothing). scratch must hold
// lm_head_scratch_bytes<T>(chunk, V) bytes. Runs on blas.stream().
template <typename T>
void lm_head_cross_entropy(Blas& blas, float* losses, T* dx, float* dweight, const T* x,
                           const T* weight, const int32_t* targets, int N, int C, int V,
                           float grad_scale, void* scratch, int chunk, float softcap = 0.0f,
                           const float* row_scale = nullptr);

// Bytes of scratch for one chunk: fp32 logits, plus a bf16 copy of dlogits for bf16 GEMMs.
template <typename T>
std::size_t lm_head_scratch_bytes(int chunk, int V);

// Tensor parallelism's vocabulary-parallel head (model/tensor_parallel.h's
// vocab_parallel_cross_entropy on the device): weight holds rows [vocab_first, vocab_first +
// vocab_rows) of the (V, C) head; targets are full-vocabulary ids. Per chunk: the fp32 logits
// GEMM, each row's (capped) max, reduce(max), each row's Σexp and target logit (0 where the
// target is another rank's), reduce(sum), then the losses and dlogits and the dx / dweight GEMMs.
// reduce(data, n, max) combines n device floats over the group (max when `max`, else sum), in
// place, ordered on blas.stream(). losses as lm_head_cross_entropy's (the same on every rank);
// dx (type T) accumulates this rank's part of the input gradient only: the caller sums it over
// the group. dweight accumulates the local rows' gradient. scratch:
// vocab_parallel_scratch_bytes<T>(chunk, vocab_rows).
using GroupReduce = std::function<void(float* data, std::size_t n, bool max)>;
template <typename T>
void vocab_parallel_cross_entropy(Blas& blas, float* losses, T* dx, float* dweight, const T* x,
                                  const T* weight, const int32_t* targets, int N, int C,
                                  int vocab_first, int vocab_rows, float grad_scale, void* scratch,
                                  int chunk, float softcap, const float* row_scale,
                                  const GroupReduce& reduce);
template <typename T>
std::size_t vocab_parallel_scratch_bytes(int chunk, int vocab_rows);

// Σ losses[0..N) in double, in a fixed order (deterministic); synchronises the stream.
// The head's backward over one chunk of n rows from its dlogits (n, V; rows ld apart): dx (n, C)
// += dlogits·W, dweight (V, C) += dlogitsᵀ·x in fp32; either may be null. The fused heads' last
// step.
template <typename T>
void lm_head_chunk_backward(Blas& blas, const T* dlogits, int ld, const T* weight, const T* x,
                            T* dx, float* dweight, int n, int C, int V);

double sum_losses(const float* losses, int N, cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
