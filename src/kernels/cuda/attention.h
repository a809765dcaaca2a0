#pragma once
// Causal grouped-query attention on the GPU (FlashAttention-2 style, own kernels), computing
// the function of kernels/cpu/attention.h: memory linear in T, fp32 scores, softmax and
// accumulators whatever the storage type T (float or bf16).
//
// qkv (B,T,(H+2·KV)·hd): each row holds H query heads, then KV key heads, then KV value heads.
// Query head h reads key/value head h / (H/KV). Scores s = q·k/√hd, masked to keys t' <= t;
// softcap c > 0 caps them to c·tanh(s/c) before the softmax. hd <= 192 (MLA's padded heads).
//
// bf16 with hd 64, 128 or 192 runs tensor-core kernels (mma.sync; attention_tc.cu), everything
// else the plain fp32-FMA kernels; attention_plan.h says which a call runs (with the comparison
// switches, read at each call) and what scratch its backward takes.
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// out (B,T,H·hd); lse (B,H,T, fp32) = log-sum-exp of each query's (capped) scores.
template <typename T>
void attention_forward(T* out, float* lse, const T* qkv, int B, int T_len, int H, int KV, int hd,
                       float softcap = 0.0f, cudaStream_t stream = nullptr);

// Writes dqkv (B,T,(H+2·KV)·hd) from dout (B,T,H·hd), recomputing the probabilities from qkv
// and lse; out is the forward output. Every element is written, none read: callers need not
// zero dqkv (the CPU twin accumulates; a zeroing pass here would cost a write and a read of
// the whole buffer per layer). Deterministic: one kernel owns each key tile's dK/dV rows, a
// second each query tile's dQ rows (it recomputes the scores instead of adding dQ with
// atomics).
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const float* lse, int B,
                        int T_len, int H, int KV, int hd, float softcap = 0.0f,
                        cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
