#pragma once
// Internal to attention.cu: the tensor-core flash attention (attention_tc.cu) for bf16 storage
// and head sizes 64, 128 and 192. Each returns false, launching nothing, when it does not take the
// call (another head size, unaligned pointers); attention.cu then runs the plain kernels.
#include "kernels/cuda/device.h"

namespace agpt::cuda::detail {

bool attention_forward_tc(bf16* out, float* lse, const bf16* qkv, int B, int T_len, int H, int KV,
                          int hd, float softcap, cudaStream_t stream);

bool attention_backward_tc(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                           const float* lse, int B, int T_len, int H, int KV, int hd, float softcap,
                           cudaStream_t stream);

}  // namespace agpt::cuda::detail
