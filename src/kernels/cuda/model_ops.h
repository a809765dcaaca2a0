#pragma once
// Small whole-model operations for the GPU transformer (model/gpu/transformer_gpu.h): the bf16
// compute copy of the weights, a deterministic sum of per-token losses, and global gradient-norm
// clipping over the flat fp32 gradient buffer with torch.nn.utils.clip_grad_norm_'s semantics
// (optim/grad_clip.h). Everything stays on the device: no host synchronisation.
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/device.h"

namespace agpt::cuda {

// out[i] = bf16(in[i]) (round to nearest even), i < n.
void cast_to_bf16(bf16* out, const float* in, std::size_t n, cudaStream_t stream = nullptr);
// out[i] = float(in[i]) (exact), i < n.
void cast_to_float(float* out, const bf16* in, std::size_t n, cudaStream_t stream = nullptr);

// *acc += Σ x[0..n) in double, in a fixed order (one block; deterministic).
void accumulate_sum(double* acc, const float* x, int n, cudaStream_t stream = nullptr);

// Elements per partial sum of grad_norm_clip (as kGradNormBlock on the CPU).
inline constexpr std::size_t kGpuGradNormBlock = 4096;

// Bytes of scratch grad_norm_clip needs for n gradients.
std::size_t grad_norm_scratch_bytes(std::size_t n);

// norm_out (device, one double) = ‖g‖₂ summed in double over fixed blocks of
// kGpuGradNormBlock elements, then over the blocks in order (deterministic). When
// max_norm > 0 and coef = max_norm / (norm + 1e-6) is below 1 (or NaN), g *= float(coef).
void grad_norm_clip(float* g, std::size_t n, double max_norm, double* norm_out, void* scratch,
                    cudaStream_t stream = nullptr);
// grad_norm_clip's scaling of g for a gradient whose norm (device, one double) was computed
// elsewhere: ZeRO-1's is summed over the ranks that each hold a part of the gradient, expert
// parallelism's over every rank's expert shards.
void clip_to_norm(float* g, std::size_t n, const double* norm, double max_norm,
                  cudaStream_t stream = nullptr);

// SwiGLU with 16-byte vector loads (the model's hot path; kernels/cuda/swiglu.h computes the same
// values one element per thread). h13 (N, 2F) holds h1 | h3 per row. The forward writes out
// (N, F); the backward OVERWRITES dh13 (N, 2F) rather than accumulating into it (no zeroing
// pass). Both fall back to the swiglu.h kernels when F or the pointers do not fit the vectors.
template <typename T>
void swiglu_forward_vec(T* out, const T* h13, int N, int F, cudaStream_t stream = nullptr);
template <typename T>
void swiglu_backward_overwrite(T* dh13, const T* dout, const T* h13, int N, int F,
                               cudaStream_t stream = nullptr);

// RoPE (rope.h's rope_forward / rope_backward, same arguments and arithmetic) with 16-byte
// vector accesses; falls back to rope.h when hd/2 or the pointers do not fit the vectors.
template <typename T>
void rope_forward_vec(T* x, const float* cos_table, const float* sin_table, int B, int T_len,
                      int n_heads, int hd, int row_stride, cudaStream_t stream = nullptr);
template <typename T>
void rope_backward_vec(T* dx, const float* cos_table, const float* sin_table, int B, int T_len,
                       int n_heads, int hd, int row_stride, cudaStream_t stream = nullptr);

// The LM head fused with cross-entropy (cross_entropy.h's function) for bf16
// storage with bf16 logits, as PyTorch's autocast computes them: per chunk of rows one GEMM
// writes bf16 logits, one kernel forms the row's max and Σexp in one online pass (fp32) and
// overwrites the logits in place with dlogits = grad_scale·(softmax − onehot), then the dx
// (bf16, accumulated) and dweight (fp32, accumulated) GEMMs. softcap c > 0 caps the logits to
// c·tanh(z/c) inside the row kernel (fp32, from the bf16 logits), as cross_entropy.h does. Half the
// memory traffic of the fp32 logits. losses (N, fp32) = -log p(target), 0 for targets of -1.
// row_scale (N, device) or null weighs each row's gradient as cross_entropy.h's does.
// scratch: lm_head_bf16_logits_scratch_bytes(chunk, V): chunk rows of lm_head_logits_ld(V)
// bf16, a row stride padded to 64 elements so that every row of logits starts 128-byte aligned
// (GPT-2's 50257 would leave the three head GEMMs' largest operand with 2-byte aligned rows,
// which rules out cuBLASLt's vectorized and TMA kernels).
void lm_head_cross_entropy_bf16_logits(Blas& blas, float* losses, bf16* dx, float* dweight,
                                       const bf16* x, const bf16* weight, const int32_t* targets,
                                       int N, int C, int V, float grad_scale, void* scratch,
                                       int chunk, float softcap = 0.0f,
                                       const float* row_scale = nullptr);
std::size_t lm_head_bf16_logits_scratch_bytes(int chunk, int V);
int lm_head_logits_ld(int V);

}  // namespace agpt::cuda
